"""Kernel ``dropout_mask``: ``jax.random.bernoulli``'s very values, in one fused loop.

JAX lowers the Threefry-2x32 hash on CPU as a rolled loop of five iterations, each writing the
two 32-bit words of every draw back to memory. :func:`bernoulli` writes the hash out as one
elementwise expression, which XLA fuses into a single loop: the same counters (each draw's
row-major index), the same 20 rounds and key schedule, the same uniform in [0, 1) from the top
23 bits, so its values are bitwise ``jax.random.bernoulli(key, p, shape)``'s
(``tests/test_threefry.py``), and a model trains to the same bits either way.

The hash is Salmon, Moraes, Dror and Shaw's Threefry-2x32 with 20 rounds ("Parallel random
numbers: as easy as 1, 2, 3", SC 2011), keyed and counted as ``jax.random`` does with
``jax_threefry_partitionable`` on (JAX's default). Anything else (another key
implementation, the flag off, 64-bit floats, 2**32 draws or more) goes to
``jax.random.bernoulli`` itself (:func:`draws_applies`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)
_ONE = np.float32(1.0)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
    return lax.shift_left(x, np.uint32(bits)) | lax.shift_right_logical(x, np.uint32(32 - bits))


def threefry2x32(
    key: tuple[jax.Array, jax.Array], counts: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32, 20 rounds, of the counter words ``counts`` (uint32 arrays alike) under
    the two uint32 key words ``key``: the hash's two output words."""
    k0, k1 = key
    schedule = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = counts[0] + schedule[0], counts[1] + schedule[1]
    for group in range(5):
        for bits in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, bits)
        x0 = x0 + schedule[(group + 1) % 3]
        x1 = x1 + schedule[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def _row_major_index(shape: tuple[int, ...]) -> jax.Array:
    """Each element's row-major position in ``shape``, uint32, as a sum of broadcast iotas
    (which a sharded batch partitions without gathering)."""
    index = jnp.zeros(shape, np.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(np.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    return index


def _is_plain_threefry(key: jax.Array) -> bool:
    """Whether ``key`` draws as this module does: a typed Threefry-2x32 key (or a raw uint32
    pair under that default), partitionable counters, 32-bit floats."""
    if jax.config.jax_enable_x64 or not jax.config.jax_threefry_partitionable:
        return False
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32"
    return (
        key.shape == (2,)
        and key.dtype == jnp.uint32
        and jax.config.jax_default_prng_impl == "threefry2x32"
    )


def _uniform_below(words: jax.Array, index: jax.Array, p: float) -> jax.Array:
    """Whether the uniform draw of each counter ``index`` under the key ``words`` is below
    ``p``: a float in [1, 2) from the top 23 bits of the hash, less one (jax.random.uniform's
    construction), compared in float32."""
    high, low = threefry2x32((words[0], words[1]), (jnp.zeros_like(index), index))
    bits = (high ^ low) >> np.uint32(9)
    uniform = lax.bitcast_convert_type(bits | np.uint32(0x3F800000), jnp.float32) - _ONE
    return uniform < np.float32(p)


def bernoulli(
    key: jax.Array, p: float, shape: tuple[int, ...], *, halves: bool = False
) -> jax.Array:
    """``jax.random.bernoulli(key, p, shape)``, bitwise, for a probability ``p`` given as a
    Python float (compared in float32, as JAX compares it): True with probability ``p``.

    With ``halves`` (and an even number of draws), the draws are computed in a loop of two
    iterations, half each. Without it XLA fuses the whole hash into every computation that
    reads the mask, and a training step reads each dropout mask several times (the forward
    pass, the backward pass, and the copies a convolution's matrix products make); a loop's
    output it writes to memory once. The values are the same.
    """
    size = math.prod(shape)
    if not draws_applies(key, p, shape):
        return jax.random.bernoulli(key, p, shape)
    words = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if not halves or size % 2:
        return _uniform_below(words, _row_major_index(shape), p)
    half = size // 2

    def draws(part: jax.Array) -> jax.Array:
        return _uniform_below(words, lax.iota(np.uint32, half) + part * np.uint32(half), p)

    return lax.map(draws, jnp.arange(2, dtype=np.uint32)).reshape(shape)


def draws_applies(key: jax.Array, p: float, shape: tuple[int, ...]) -> bool:
    """Whether :func:`bernoulli` computes the draws itself: a plain Threefry key
    (:func:`_is_plain_threefry`) and fewer than 2**32 of them."""
    return _is_plain_threefry(key) and math.prod(shape) < 2**32


def dropout_mask(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
    """The reference op ``dropout_mask`` (``jax.random.bernoulli(key, p, shape)``) by
    :func:`bernoulli`, bitwise: in two halves with one device, so that the mask is written
    once, not fused into every computation that reads it (with several, a sharded batch's
    draws are left whole)."""
    return bernoulli(key, p, shape, halves=jax.device_count() == 1)
