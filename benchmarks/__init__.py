"""Benchmarks of genre_jax: one module per path timed, ``benchmarks.run`` runs them all.

Run from the repository root: ``python -m benchmarks.run`` (``--quick`` for a smoke test).
"""
