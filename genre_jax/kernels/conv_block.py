"""Kernel ``conv_block``: the seed CNN's first block, Conv 3x3 -> ReLU -> BatchNorm ->
MaxPool 2x2, trained on CPU by chunks of samples, from the same parameters.

The reference op (:func:`genre_jax.kernels.ops.conv_block`) is ``conv2d_same`` then
:func:`~genre_jax.models.layers.relu_batch_norm_pool`. In training, a block whose convolution
reads one channel (the first: the MFCC image) runs here as :func:`conv_relu_pool_sums`. Its 32
channels at full resolution are 184 MB at batch 256, and JAX's own gradient of the block passes
over them about ten times: the ReLU, the pooling's indicators and their counts, the
statistics, and the same again backwards. Here each chunk of :data:`CHUNK` samples is
convolved, rectified, pooled and summed while it is in cache, and only the pooled image (a
quarter) and each row's sums leave the chunk; the backward pass convolves each chunk again (9
products per value from one channel: cheaper than keeping 32 channels) and takes the gradients
from it. The outputs are the same values, computed by the same operations; the gradients sum in
another order (within 1e-5 of JAX's own, ``tests/test_conv_block.py``). The figures are in
``docs/benchmarks.md`` ("Kernels").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.kernels.conv import same_patches, xla_conv
from genre_jax.models.layers import batch_statistics, normalize, pooling_sign

# Samples per chunk: the fastest of 4, 8 and 16 measured (docs/benchmarks.md, "Kernels").
CHUNK = 8


def conv_block(
    conv: nnx.Conv,
    norm: nnx.BatchNorm,
    x: jax.Array,
    *,
    train: bool,
    mask: jax.Array | None = None,
) -> jax.Array:
    """The reference op ``conv_block`` in training, ``max_pool_2x2(norm(relu(conv(x))))`` for
    ``x (b, h, w, 1)`` (a 'SAME', stride-1 ``conv`` with odd kernel sizes and bias; ``norm``'s
    batch statistics over the rows where ``mask`` is not False, its running averages updated),
    by :func:`conv_relu_pool_sums`: the batch zero-padded to whole chunks, the padding cut off
    before the statistics. Where :func:`fused_applies` is False the reference runs instead.
    """
    b, h, w, _ = x.shape
    sign = pooling_sign(norm)
    padded = jnp.pad(x, [(0, -b % CHUNK), (0, 0), (0, 0), (0, 0)])
    pooled, sums, square_sums = conv_relu_pool_sums(padded, conv.kernel[...], conv.bias[...], sign)
    mean, var = batch_statistics(norm, sums[:b], square_sums[:b], h * w, mask)
    return normalize(norm, pooled[:b], mean, var)


def fused_applies(
    conv: nnx.Conv,
    norm: nnx.BatchNorm,
    x: jax.Array,
    *,
    train: bool,
    mask: jax.Array | None = None,
) -> bool:
    """Whether :func:`conv_block` computes the block: in training, for one input channel, a
    concrete batch (an exported program's is symbolic) and one device (a data-parallel batch
    is split over the devices already, and chunks of it would be gathered to one)."""
    return train and x.shape[-1] == 1 and isinstance(x.shape[0], int) and jax.device_count() == 1


def _in_chunks(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0] // CHUNK, CHUNK, *a.shape[1:])


def _whole(a: jax.Array) -> jax.Array:
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def _quarters(v: jax.Array) -> tuple[jax.Array, ...]:
    """The four corners of each 2 x 2 window over axes 1 and 2 of ``v (b, h, w, c)`` ('valid':
    an odd last row or column is left out): top left, top right, bottom left, bottom right."""
    _, h, w, _ = v.shape
    v = v[:, : h // 2 * 2, : w // 2 * 2]
    return v[:, 0::2, 0::2], v[:, 0::2, 1::2], v[:, 1::2, 0::2], v[:, 1::2, 1::2]


def _window_max(corners: tuple[jax.Array, ...]) -> jax.Array:
    """Each 2 x 2 window's maximum from its :func:`_quarters`: bitwise
    :func:`~genre_jax.models.layers.max_pool_2x2`'s values, which inside the chunks' loops
    made the block's forward and backward slower (docs/benchmarks.md, "Kernels")."""
    top_left, top_right, bottom_left, bottom_right = corners
    return jnp.maximum(jnp.maximum(top_left, top_right), jnp.maximum(bottom_left, bottom_right))


def _pool_gradient(v: jax.Array, cotangent: jax.Array) -> jax.Array:
    """The gradient of ``max_pool_2x2(v)`` (``v (b, h, w, c)``) for the pooled ``cotangent``:
    each window's cotangent split evenly over the values equal to its maximum, as JAX
    differentiates a maximum; zero on an odd last row or column."""
    b, h, w, c = v.shape
    corners = _quarters(v)
    top = _window_max(corners)
    at_max = [(corner == top).astype(v.dtype) for corner in corners]
    share = cotangent / (at_max[0] + at_max[1] + at_max[2] + at_max[3])
    g = [where * share for where in at_max]
    rows = jnp.stack([jnp.stack(g[:2], axis=3), jnp.stack(g[2:], axis=3)], axis=2)
    full = rows.reshape(b, h // 2 * 2, w // 2 * 2, c)
    return jnp.pad(full, [(0, 0), (0, h % 2), (0, w % 2), (0, 0)])


def _chunk_forward(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, sign: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r = jax.nn.relu(xla_conv(x, kernel) + bias)
    pooled = _window_max(_quarters(r * sign)) * sign
    return pooled, jnp.sum(r, axis=(1, 2)), jnp.sum(r * r, axis=(1, 2))


@jax.custom_vjp
def conv_relu_pool_sums(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, sign: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """For ``x (b, h, w, c_in)`` (``b`` a multiple of :data:`CHUNK`), ``r = relu(conv(x) +
    bias)`` ('SAME', XLA's convolution, HWIO ``kernel``) and per channel ``sign`` (+-1):
    ``(max_pool_2x2(r * sign) * sign, r summed over axes 1 and 2, r * r summed so)``, shapes
    ``(b, h // 2, w // 2, c_out)``, ``(b, c_out)``, ``(b, c_out)``, one chunk at a time.

    Differentiable in ``x``, ``kernel`` and ``bias`` (``sign`` is a constant: its gradient is
    zero); the backward pass convolves each chunk again instead of keeping ``r``.
    """
    return _forward(x, kernel, bias, sign)[0]


def _forward(x: jax.Array, kernel: jax.Array, bias: jax.Array, sign: jax.Array):
    outputs = jax.lax.map(lambda chunk: _chunk_forward(chunk, kernel, bias, sign), _in_chunks(x))
    return tuple(_whole(a) for a in outputs), (x, kernel, bias, sign)


def _backward(residuals: tuple, cotangents: tuple) -> tuple:
    x, kernel, bias, sign = residuals
    kh, kw, c_in, c_out = kernel.shape
    # The input's gradient is the cotangent convolved with the kernel turned half round.
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)

    def chunk(totals: tuple, inputs: tuple) -> tuple[tuple, jax.Array]:
        x, d_pooled, d_sums, d_square_sums = inputs
        z = xla_conv(x, kernel) + bias
        r = jax.nn.relu(z)
        d_r = _pool_gradient(r * sign, d_pooled * sign) * sign
        d_r = d_r + d_sums[:, None, None] + 2.0 * r * d_square_sums[:, None, None]
        d_z = jnp.where(z > 0, d_r, 0.0)
        rows = same_patches(x, kh, kw).reshape(-1, kh * kw * c_in)
        d_kernel = totals[0] + (rows.T @ d_z.reshape(-1, c_out)).reshape(kernel.shape)
        d_bias = totals[1] + jnp.sum(d_z, axis=(0, 1, 2))
        return (d_kernel, d_bias), xla_conv(d_z, flipped)

    zeros = (jnp.zeros_like(kernel), jnp.zeros_like(bias))
    per_chunk = (_in_chunks(x), *(_in_chunks(c) for c in cotangents))
    (d_kernel, d_bias), d_x = jax.lax.scan(chunk, zeros, per_chunk)
    return _whole(d_x), d_kernel, d_bias, jnp.zeros_like(sign)


conv_relu_pool_sums.defvjp(_forward, _backward)
