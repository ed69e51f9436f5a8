"""genre_jax: music genre classification in JAX."""
