"""Small pieces shared by the networks: Keras-style initialisers, dropout from a key, pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# Keras's defaults, so that a fresh model starts where the seed's did.
glorot_uniform = jax.nn.initializers.glorot_uniform()
orthogonal = jax.nn.initializers.orthogonal()
zeros = jax.nn.initializers.zeros


def keras_batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm with Keras's defaults (momentum 0.99, epsilon 1e-3), over the last axis."""
    return nnx.BatchNorm(features, momentum=0.99, epsilon=1e-3, rngs=rngs)


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


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 and 'valid' padding over axes 1 and 2 of ``(b, h, w, c)``.

    A reshape and a max instead of a reduce-window: the same values, and on CPU a backward pass
    several times cheaper than the select-and-scatter of ``nnx.max_pool``.
    """
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
