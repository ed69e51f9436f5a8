"""Small pieces shared by the networks: Keras-style initialisers, dropout from a key, pooling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.models import threefry


class Pretrained(nnx.Param):
    """A trainable parameter whose initial value is published weights (a pretrained network's
    layers). Training treats these apart from the rest (:mod:`genre_jax.train`): the settings
    ``freeze_epochs`` and ``pretrained_lr_scale`` apply to them."""


# Keras's defaults, so that a fresh model starts where the seed's did.
glorot_uniform = jax.nn.initializers.glorot_uniform()
orthogonal = jax.nn.initializers.orthogonal()
zeros = jax.nn.initializers.zeros


def keras_batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm with Keras's defaults (momentum 0.99, epsilon 1e-3), over the last axis."""
    return nnx.BatchNorm(features, momentum=0.99, epsilon=1e-3, rngs=rngs)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each value with probability ``rate``; identity if ``key`` is None.

    The mask is ``jax.random.bernoulli(key, 1 - rate, x.shape)``. On CPU the same bits come
    from :func:`genre_jax.models.threefry.bernoulli`, which XLA runs as one fused loop instead
    of JAX's rolled one (the seed CNN's first dropout at batch 256: 4.7 against 125 ms), drawn
    in two halves with one device so that the mask is written once, not fused into every
    computation that reads it.
    """
    if key is None or rate == 0.0:
        return x
    if jax.default_backend() == "cpu":
        halves = jax.device_count() == 1
        keep = threefry.bernoulli(key, 1.0 - rate, x.shape, halves=halves)
    else:
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
    3 coefficients wide, runs forward and backward 3.6x faster than XLA's CPU convolution).
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
# chunk (215 x 6 x 288 values a sample) in cache; measured on a 2-core CPU, the gradient of
# its second convolution took 18 ms at batch 32 this way, 47 ms as XLA's own.
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

    For musicnn's front end (one input channel, kernels of 7 x 38 up to 128 x 1 values) this
    is 1.4 s against 0.1 s for the first timbral layer's kernel gradient at batch 32 on a
    2-core CPU (``docs/benchmarks.md``). The input's gradient is XLA's own."""
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
# each chunk's images stay in cache: the seed CNN's training step at batch 256 went from
# 168-189 to 186-228 samples/s on a 2-core AMD EPYC (docs/benchmarks.md).
CONV_CHUNK = 16
# The largest batch that XLA's CPU convolutions take whole. At the seed's batch of 32 the
# chunks gain nothing: on a 2-core AMD EPYC 1.04x, on a 2-core Intel Xeon the whole batch was
# 1.1-1.7x faster per round (docs/benchmarks.md).
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
    instead of XLA's CPU kernel-gradient convolution, about 3x slower at these shapes; the
    input's gradient is XLA's convolution of the cotangent with the flipped kernel. Both of
    XLA's convolutions run over chunks of :data:`CONV_CHUNK` samples in batches larger than
    :data:`CONV_WHOLE_BATCH`."""
    y = _conv_same_cpu(x, kernel)
    return y if bias is None else y + bias


def conv2d_same(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """``conv(x)`` for a 'SAME', stride-1 ``nnx.Conv`` with odd kernel sizes, computed the way
    measured fastest for the backend, from the same parameters (same checkpoint).

    On CPU: banded kernel rows (:func:`conv2d_same_banded`) when the image is at most the
    kernel's width (XLA's convolution is slow there), else XLA's convolution with the kernel's
    gradient as patch matrix products (:func:`conv2d_same_patch_gradient`). Elsewhere,
    ``conv(x)`` itself. The figures are in ``docs/benchmarks.md``.
    """
    if jax.default_backend() != "cpu":
        return conv(x)
    kernel = conv.kernel[...]
    bias = conv.bias[...] if conv.bias is not None else None
    if x.shape[2] <= kernel.shape[1]:
        return conv2d_same_banded(x, kernel, bias)
    return conv2d_same_patch_gradient(x, kernel, bias)
