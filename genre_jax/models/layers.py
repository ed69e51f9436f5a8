"""Small pieces shared by the networks: Keras-style initialisers, dropout keys, pooling, the
seed CNN's BatchNorm-and-pool after its convolution. (Dropout itself and the convolutions are
reference ops: :mod:`genre_jax.kernels.ops`.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Pretrained(nnx.Param):
    """A trainable parameter whose initial value is published weights (a pretrained network's
    layers). Training treats these apart from the rest (:mod:`genre_jax.optimizer`): the settings
    ``freeze_epochs`` and ``pretrained_lr_scale`` apply to them."""


# Keras's defaults, so that a fresh model starts where the seed's did.
glorot_uniform = jax.nn.initializers.glorot_uniform()
orthogonal = jax.nn.initializers.orthogonal()
zeros = jax.nn.initializers.zeros


def keras_batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm with Keras's defaults (momentum 0.99, epsilon 1e-3), over the last axis."""
    return nnx.BatchNorm(features, momentum=0.99, epsilon=1e-3, rngs=rngs)


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


def pooling_sign(norm: nnx.BatchNorm) -> jax.Array:
    """Per channel, +1 where BatchNorm's map ``x -> (x - mean) * scale / sqrt(var + eps) +
    bias`` is increasing (``scale >= 0``: the square root is positive), -1 where it is
    decreasing; no gradient flows through it."""
    scale = norm.scale[...]
    return jax.lax.stop_gradient(jnp.where(scale >= 0, 1.0, -1.0).astype(scale.dtype))


def batch_statistics(
    norm: nnx.BatchNorm,
    sums: jax.Array,
    square_sums: jax.Array,
    pixels: int,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The batch's mean and variance per channel from each row's ``sums`` and
    ``square_sums`` over its ``pixels`` values (``(b, c)`` each), as nnx.BatchNorm computes
    them (``E[x]`` and ``E[x^2] - E[x]^2``, rows where ``mask`` is False left out); the
    running averages are updated as nnx.BatchNorm updates them."""
    rows = jnp.ones(sums.shape[:1], sums.dtype) if mask is None else mask.astype(sums.dtype)
    count = jnp.sum(rows) * pixels
    mean = rows @ sums / count
    mean_square = rows @ square_sums / count
    var = jnp.maximum(0.0, mean_square - mean * mean)
    momentum = norm.momentum
    norm.mean[...] = jax.lax.stop_gradient(momentum * norm.mean[...] + (1 - momentum) * mean)
    norm.var[...] = jax.lax.stop_gradient(momentum * norm.var[...] + (1 - momentum) * var)
    return mean, var


def normalize(norm: nnx.BatchNorm, x: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
    """BatchNorm's map of ``x`` with the given statistics and its own scale and bias."""
    multiplier = jax.lax.rsqrt(var + norm.epsilon) * norm.scale[...]
    return (x - mean) * multiplier + norm.bias[...]


def relu_batch_norm_pool(
    norm: nnx.BatchNorm, z: jax.Array, *, train: bool, mask: jax.Array | None = None
) -> jax.Array:
    """``max_pool_2x2(norm(relu(z)))`` for ``z (b, h, w, c)``, the seed CNN's block after its
    convolution, computed with the pooling first: the same values, a quarter of the work.

    BatchNorm is, per channel, ``x -> (x - mean) * m + bias`` with ``m = scale / sqrt(var +
    eps)``: increasing where ``m >= 0``, decreasing elsewhere (:func:`pooling_sign`). The
    maximum of an increasing map is the map of the maximum, and of a decreasing one the map
    of the minimum, so each channel's 2 x 2 maximum (minimum where ``m < 0``: the maximum of
    the negated values) is taken before normalising, in float32 the very values
    ``nnx.BatchNorm`` then the pool give. Gradients are the same too, except the scale's
    where it is exactly 0 (a kink: every pooled value ties; this takes the side of positive
    scales).

    In training the batch statistics come from per-row sums (:func:`batch_statistics`), so
    the row mask is never broadcast over the image; otherwise the running averages are read.
    """
    r = jax.nn.relu(z)
    _, h, w, _ = r.shape
    if train:
        sums, square_sums = jnp.sum(r, axis=(1, 2)), jnp.sum(r * r, axis=(1, 2))
        mean, var = batch_statistics(norm, sums, square_sums, h * w, mask)
    else:
        mean, var = norm.mean[...], norm.var[...]
    sign = pooling_sign(norm)
    return normalize(norm, max_pool_2x2(r * sign) * sign, mean, var)
