"""The reference ops the models and the feature extraction call: each is written here in plain
JAX, as an accelerator runs it, and runs its kernel (:data:`genre_jax.kernels.KERNELS`) where
the active mode is ``fast`` and the kernel applies (:func:`genre_jax.kernels.dispatch`).

Parameters are the same under both: an op reads the modules and arrays it is given, never
holds any.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax import kernels

# Time steps per loop iteration of the reference GRU recurrence when the model's setting leaves
# it to the kernels (unroll 0): the fastest measured on an H100 for its compilation time
# (docs/benchmarks.md, "Kernels").
REFERENCE_GRU_UNROLL = 8


def conv2d_same(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """``conv(x)`` for a 'SAME', stride-1 ``nnx.Conv`` with odd kernel sizes: ``x (b, h, w,
    c_in)`` to ``(b, h, w, c_out)``. Kernel: :func:`genre_jax.kernels.conv.conv2d_same`."""
    return kernels.dispatch("conv2d_same", _conv2d_same, conv, x)


def _conv2d_same(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    return conv(x)


def conv_block(
    conv: nnx.Conv,
    norm: nnx.BatchNorm,
    x: jax.Array,
    *,
    train: bool,
    mask: jax.Array | None = None,
) -> jax.Array:
    """The seed CNN's block, ``max_pool_2x2(norm(relu(conv(x))))`` for ``x (b, h, w, c_in)``
    to ``(b, h // 2, w // 2, c_out)``: a 'SAME', stride-1 ``conv`` with odd kernel sizes
    (:func:`conv2d_same`), ``norm`` over its channels (batch statistics in training, rows where
    ``mask`` is False left out, running averages updated; the running averages otherwise),
    computed as :func:`~genre_jax.models.layers.relu_batch_norm_pool` does. Kernel:
    :func:`genre_jax.kernels.conv_block.conv_block` (training, one input channel)."""
    return kernels.dispatch("conv_block", _conv_block, conv, norm, x, train=train, mask=mask)


def _conv_block(
    conv: nnx.Conv,
    norm: nnx.BatchNorm,
    x: jax.Array,
    *,
    train: bool,
    mask: jax.Array | None = None,
) -> jax.Array:
    # Imported here: the feature extraction imports this module, and importing the models
    # package imports every model.
    from genre_jax.models.layers import relu_batch_norm_pool

    return relu_batch_norm_pool(norm, conv2d_same(conv, x), train=train, mask=mask)


def dropout_mask(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.bernoulli(key, p, shape)``: bool, True with probability ``p`` (a Python
    float). Kernel: :func:`genre_jax.kernels.threefry.dropout_mask` (bitwise the same)."""
    return kernels.dispatch("dropout_mask", jax.random.bernoulli, key, p, shape)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: each value zeroed with probability ``rate`` (the others divided by
    ``1 - rate``) by :func:`dropout_mask` of ``key`` over ``x``'s shape; identity if ``key`` is
    None (evaluation) or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    keep = dropout_mask(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def gru_recurrence(
    x: jax.Array, kernel: jax.Array, recurrent: jax.Array, bias: jax.Array, unroll: int
) -> jax.Array:
    """The hidden state of every step ``(batch, time, units)`` of Keras's
    ``GRU(reset_after=True)`` on ``x (batch, time, features)``: input ``kernel (features,
    3 units)``, ``recurrent`` kernel ``(units, 3 units)``, ``bias (2, 3 units)`` (input,
    recurrent), gates in the order update, reset, candidate; ``unroll`` steps per loop
    iteration (0: :func:`gru_unroll`). Kernel: :func:`genre_jax.kernels.gru.gru_by_gate`."""
    return kernels.dispatch(
        "gru_recurrence", _gru_fused, x, kernel, recurrent, bias, unroll or gru_unroll()
    )


def gru_unroll() -> int:
    """The GRU recurrence's steps per loop iteration under the active kernels, for a model
    that leaves it to them: the kernel's (:data:`genre_jax.kernels.gru.UNROLL`) or the
    reference's (:data:`REFERENCE_GRU_UNROLL`)."""
    if kernels.active() == "fast":
        from genre_jax.kernels.gru import UNROLL

        return UNROLL
    return REFERENCE_GRU_UNROLL


def _gates(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    units = a.shape[-1] // 3
    return a[..., :units], a[..., units : 2 * units], a[..., 2 * units :]


def _gru_fused(
    x: jax.Array, kernel: jax.Array, recurrent: jax.Array, bias: jax.Array, unroll: int
) -> jax.Array:
    projected = x @ kernel + bias[0]  # (batch, time, 3 units), all steps at once
    hs = recurrence_fused(jnp.swapaxes(projected, 0, 1), recurrent, bias[1], unroll)
    return jnp.swapaxes(hs, 0, 1)


def recurrence_fused(
    projected: jax.Array, recurrent: jax.Array, recurrent_bias: jax.Array, unroll: int
) -> jax.Array:
    """The hidden states ``(time, batch, units)`` from the input projections ``(time, batch,
    3 units)``: one recurrent product per step, its gates sliced from it; JAX differentiates."""

    def step(h: jax.Array, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        (xz, xr, xh), (hz, hr, hh) = _gates(xp), _gates(h @ recurrent + recurrent_bias)
        z = jax.nn.sigmoid(xz + hz)
        r = jax.nn.sigmoid(xr + hr)
        h = z * h + (1.0 - z) * jnp.tanh(xh + r * hh)
        return h, h

    h0 = jnp.zeros((projected.shape[1], recurrent.shape[0]), projected.dtype)
    return jax.lax.scan(step, h0, projected, unroll=unroll)[1]


def extract_batch(
    fn: Callable[[jax.Array], jax.Array], signals: jax.Array, frames: int
) -> jax.Array:
    """``fn`` (signals ``(n, samples)`` to features ``(n, ...)``, each signal's from that
    signal alone) on ``signals (..., samples)`` of ``frames`` frames each: ``(..., *features)``,
    the whole batch at once. Kernel: :func:`genre_jax.kernels.extraction.in_chunks`."""
    return kernels.dispatch("extract_batch", _extract_whole, fn, signals, frames)


def _extract_whole(
    fn: Callable[[jax.Array], jax.Array], signals: jax.Array, frames: int
) -> jax.Array:
    return fn(signals)


def conv2d_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 'VALID', stride-1 convolution of ``x (b, h, w, c_in)`` with an HWIO ``kernel (kh,
    kw, c_in, c_out)``: ``(b, h - kh + 1, w - kw + 1, c_out)``, XLA's at the highest precision.
    Kernel: :func:`genre_jax.kernels.conv.conv2d_valid_patch_gradient`."""
    return kernels.dispatch("conv2d_valid", _conv2d_valid, x, kernel)


def _conv2d_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=dims, precision=jax.lax.Precision.HIGHEST
    )
