"""Small pieces shared by the networks: Keras-style initialisers, dropout from a key, pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Keras's defaults, so that a fresh model starts where the seed's did.
glorot_uniform = jax.nn.initializers.glorot_uniform()
orthogonal = jax.nn.initializers.orthogonal()
zeros = jax.nn.initializers.zeros


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each value with probability ``rate``; identity if ``key`` is None."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def layer_key(key: jax.Array | None, index: int) -> jax.Array | None:
    """A distinct dropout key for layer ``index`` (None stays None: evaluation)."""
    return None if key is None else jax.random.fold_in(key, index)


def masked_mean(x: jax.Array, axis: int, mask: jax.Array | None = None) -> jax.Array:
    """Mean over ``axis``; with ``mask`` (shape of x without its last axis), only where True."""
    if mask is None:
        return jnp.mean(x, axis=axis)
    weights = mask[..., None].astype(x.dtype)
    return jnp.sum(x * weights, axis=axis) / jnp.maximum(jnp.sum(weights, axis=axis), 1.0)
