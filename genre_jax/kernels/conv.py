"""Kernels ``conv2d_same`` and ``conv2d_valid``: convolutions whose CPU formulations beat
XLA's CPU convolution and its kernel gradient, from the same parameters.

- :func:`conv2d_same` (for ``conv(x)``, an ``nnx.Conv``, 'SAME', stride 1, odd kernels):
  banded kernel rows as one matrix product (:func:`conv2d_same_banded`) where the image is at
  most the kernel's width, where XLA's convolution is slow; else XLA's convolution with the
  kernel's gradient as patch matrix products (:func:`conv2d_same_patch_gradient`), XLA's
  convolutions of a large batch in chunks (:func:`conv2d_same_in_chunks`).
- :func:`conv2d_valid_patch_gradient` (for XLA's 'VALID' convolution at the highest precision,
  musicnn's front end): the kernel's gradient as patch matrix products.

Values within 1e-5 of XLA's, gradients too (``tests/test_models.py``,
``tests/test_finetune.py``); the figures that justified each are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def _band(width: int, size: int, dtype: jnp.dtype) -> jax.Array:
    """``(size, width, width)`` 0/1: ``[k, i, o]`` is 1 where input column ``i`` is output
    column ``o``'s tap ``k`` (``i = o + k - size // 2``): one kernel row laid out as a band."""
    k = jnp.arange(size)[:, None, None]
    i = jnp.arange(width)[None, :, None]
    o = jnp.arange(width)[None, None, :]
    return (i == o + k - size // 2).astype(dtype)


def conv2d_same_banded(x: jax.Array, kernel: jax.Array, bias: jax.Array | None) -> jax.Array:
    """A 'SAME' 2-D cross-correlation of ``x (b, h, w, c_in)`` with ``kernel (kh, kw, c_in,
    c_out)`` (odd sizes, stride 1: ``nnx.Conv``'s layout), as one matrix product.

    Each output row ``t`` reads input rows ``t - kh // 2 .. t + kh // 2``; each of those rows,
    flattened over ``(w, c_in)``, meets the kernel row laid out as a banded ``(w * c_in,
    w * c_out)`` matrix (the 'SAME' zeros of the ``w`` edges are the band's missing corners).
    The ``kh`` shifted rows side by side times the stacked bands is the convolution: the same
    sums in another order. The band is dense, so this does ``w / kw`` times the convolution's
    multiplications: worth it only where ``w`` is about ``kw`` (the seed CNN's third layer,
    3 coefficients wide).
    """
    b, h, w, c_in = x.shape
    kh, kw, _, c_out = kernel.shape
    band = _band(w, kw, kernel.dtype)
    # [dt, (w_in, c_in), (w_out, c_out)]
    weights = jnp.einsum("dkio,kfg->dfigo", kernel, band).reshape(kh * w * c_in, w * c_out)
    rows = jnp.pad(x.reshape(b, h, w * c_in), [(0, 0), (kh // 2, kh // 2), (0, 0)])
    shifted = jnp.concatenate([rows[:, d : d + h] for d in range(kh)], axis=-1)
    y = (shifted @ weights).reshape(b, h, w, c_out)
    return y if bias is None else y + bias


def _valid_patches(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """The ``kh * kw`` shifts of ``x (b, h, w, c)`` a 'VALID' convolution reads, side by side:
    ``(b, h - kh + 1, w - kw + 1, kh * kw * c)``, ordered as a ``(kh, kw, c)`` kernel
    flattens."""
    _, h, w, _ = x.shape
    return jnp.concatenate(
        [x[:, i : i + h - kh + 1, j : j + w - kw + 1] for i in range(kh) for j in range(kw)],
        axis=-1,
    )


def same_patches(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """The ``kh * kw`` 'SAME'-padded shifts of ``x (b, h, w, c)`` side by side: ``(b, h, w,
    kh * kw * c)``, ordered as a ``(kh, kw, c)`` kernel flattens (odd kernels)."""
    padded = jnp.pad(x, [(0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])
    return _valid_patches(padded, kh, kw)


# Samples per chunk of the kernel gradient's patch matrix: 4 keeps the seed CNN's widest
# chunk (215 x 6 x 288 values a sample) in cache (docs/benchmarks.md, "Kernels").
KERNEL_GRADIENT_CHUNK = 4


def _kernel_gradient(
    x: jax.Array,
    cotangent: jax.Array,
    kh: int,
    kw: int,
    padding: str = "SAME",
    most: int = KERNEL_GRADIENT_CHUNK,
) -> jax.Array:
    """The gradient of a 'SAME' (or 'VALID') convolution's ``(kh, kw, c_in, c_out)`` kernel:
    patches of ``x`` transposed times ``cotangent``, summed over chunks of at most ``most``
    samples (a ``lax.scan``), so that no chunk's patch matrix leaves the cache."""
    b, _, _, c_in = x.shape
    c_out = cotangent.shape[-1]
    chunk = max(n for n in range(1, min(b, most) + 1) if b % n == 0)
    patches = same_patches if padding == "SAME" else _valid_patches

    def add(total: jax.Array, pair: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        xs, gs = pair
        rows = patches(xs, kh, kw).reshape(-1, kh * kw * c_in)
        return total + rows.T @ gs.reshape(-1, c_out), None

    split = lambda a: a.reshape(b // chunk, chunk, *a.shape[1:])  # noqa: E731
    zero = jnp.zeros((kh * kw * c_in, c_out), jnp.result_type(x, cotangent))
    total, _ = jax.lax.scan(add, zero, (split(x), split(cotangent)))
    return total.reshape(kh, kw, c_in, c_out)


def conv2d_valid_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 'VALID', stride-1 NHWC convolution with an HWIO kernel, XLA's, highest precision."""
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=dims, precision=jax.lax.Precision.HIGHEST
    )


@jax.custom_vjp
def conv2d_valid_patch_gradient(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 'VALID', stride-1 convolution of ``x (b, h, w, c_in)`` with an HWIO ``kernel`` (XLA's,
    at the highest precision), whose kernel gradient is computed as patch matrix products
    over one sample at a time instead of by XLA's CPU kernel-gradient convolution.

    Made for musicnn's front end (one input channel, kernels of 7 x 38 up to 128 x 1 values),
    whose kernel gradients XLA's CPU runtime computes slowly. The input's gradient is XLA's
    own."""
    return conv2d_valid_xla(x, kernel)


def _valid_forward(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple]:
    return conv2d_valid_xla(x, kernel), (x, kernel)


def _valid_backward(saved: tuple, cotangent: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = saved
    kh, kw = kernel.shape[:2]
    _, input_gradient = jax.vjp(lambda v: conv2d_valid_xla(v, kernel), x)
    (dx,) = input_gradient(cotangent)
    # One sample per chunk: musicnn's front end has ~10 MB of patches a sample.
    return dx, _kernel_gradient(x, cotangent, kh, kw, "VALID", most=1)


conv2d_valid_patch_gradient.defvjp(_valid_forward, _valid_backward)


def xla_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """XLA's 'SAME', stride-1 NHWC convolution with an HWIO kernel, at default precision."""
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dims)


# Samples per call of XLA's CPU convolution in :func:`conv2d_same_patch_gradient` for a batch
# larger than CONV_WHOLE_BATCH, which runs as chunks of this many, one after the other, so that
# each chunk's images stay in cache (docs/benchmarks.md, "Kernels").
CONV_CHUNK = 16
# The largest batch that XLA's CPU convolutions take whole: at the seed's batch of 32 the
# chunks gain nothing (docs/benchmarks.md, "Kernels").
CONV_WHOLE_BATCH = 32


def conv2d_same_in_chunks(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """:func:`xla_conv` of ``x (b, h, w, c)`` in chunks of :data:`CONV_CHUNK` samples (a
    ``lax.map``; the batch zero-padded to whole chunks), bitwise the same values: each
    sample's output is computed from that sample alone, in the same order.

    The batch runs whole where chunks would not help or are unknown: up to
    :data:`CONV_WHOLE_BATCH` samples, with more than one device (a data-parallel batch is
    split over devices already, and chunks of it would be gathered to one), and for a
    symbolic batch (an exported program's, :mod:`genre_jax.export`).
    """
    b = x.shape[0]
    whole = max(CONV_WHOLE_BATCH, CONV_CHUNK)
    if not isinstance(b, int) or b <= whole or jax.device_count() > 1:
        return xla_conv(x, kernel)
    chunks = -(-b // CONV_CHUNK)
    padded = jnp.pad(x, [(0, chunks * CONV_CHUNK - b)] + [(0, 0)] * (x.ndim - 1))
    split = padded.reshape(chunks, CONV_CHUNK, *x.shape[1:])
    y = jax.lax.map(lambda xs: xla_conv(xs, kernel), split)
    return y.reshape(chunks * CONV_CHUNK, *y.shape[2:])[:b]


@jax.custom_vjp
def _conv_same_cpu(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return conv2d_same_in_chunks(x, kernel)


def _conv_same_cpu_forward(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple]:
    return conv2d_same_in_chunks(x, kernel), (x, kernel)


def _conv_same_cpu_backward(saved: tuple, cotangent: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = saved
    kh, kw = kernel.shape[:2]
    # The input's gradient is the cotangent convolved with the kernel turned half round (its
    # channel axes swapped): a forward convolution, which XLA's CPU runtime does well.
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    return conv2d_same_in_chunks(cotangent, flipped), _kernel_gradient(x, cotangent, kh, kw)


_conv_same_cpu.defvjp(_conv_same_cpu_forward, _conv_same_cpu_backward)


def conv2d_same_patch_gradient(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None
) -> jax.Array:
    """:func:`conv2d_same_banded`'s convolution by XLA's own, with its kernel's gradient
    computed by :func:`_kernel_gradient` (patch matrix products over chunks of the batch)
    instead of XLA's CPU kernel-gradient convolution, slower at these shapes; the
    input's gradient is XLA's convolution of the cotangent with the flipped kernel. Both of
    XLA's convolutions run over chunks of :data:`CONV_CHUNK` samples in batches larger than
    :data:`CONV_WHOLE_BATCH`."""
    y = _conv_same_cpu(x, kernel)
    return y if bias is None else y + bias


def conv2d_same(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """The reference op ``conv2d_same`` (``conv(x)`` for a 'SAME', stride-1 ``nnx.Conv`` with
    odd kernel sizes, ``x (b, h, w, c_in)``) from the module's own kernel and bias: banded
    kernel rows (:func:`conv2d_same_banded`) when the image is at most the kernel's width
    (XLA's CPU convolution is slow there), else XLA's convolution with the kernel's gradient
    as patch matrix products (:func:`conv2d_same_patch_gradient`).
    """
    kernel = conv.kernel[...]
    bias = conv.bias[...] if conv.bias is not None else None
    if x.shape[2] <= kernel.shape[1]:
        return conv2d_same_banded(x, kernel, bias)
    return conv2d_same_patch_gradient(x, kernel, bias)
