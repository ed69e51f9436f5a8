"""Dropout's draws on CPU: ``genre_jax.kernels.threefry.bernoulli`` against
``jax.random.bernoulli`` itself, bit for bit, and the keys it hands back to JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genre_jax import kernels
from genre_jax.kernels import threefry
from genre_jax.kernels.ops import dropout

SHAPES = [(), (1,), (7,), (3, 5), (2, 431, 64), (4, 215, 6, 32), (5, 1, 1)]


@pytest.mark.parametrize("halves", [False, True], ids=["one loop", "halves"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.6, 0.7, 1.0])
def test_bernoulli_is_bitwise_jax_random_bernoulli(shape, p, halves) -> None:
    """Typed keys, as the training step folds them (seed, then step, then layer); drawn at
    once, or in two halves (an odd count at once)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(11), 2), 3)
    ours = jax.jit(lambda k: threefry.bernoulli(k, p, shape, halves=halves))(key)
    want = jax.random.bernoulli(key, p, shape)
    assert ours.shape == want.shape and ours.dtype == want.dtype
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(want))


def test_bernoulli_draws_with_the_asked_probability() -> None:
    """Not a copy of a constant: 100,000 draws at 0.7 keep 70 % within 0.5 points, and
    another key draws another mask."""
    shape = (100, 1000)
    keys = jax.random.split(jax.random.key(0))
    first, second = (np.asarray(threefry.bernoulli(k, 0.7, shape)) for k in keys)
    assert abs(first.mean() - 0.7) < 0.005
    assert (first != second).mean() > 0.3


def test_raw_keys_draw_alike_and_other_implementations_go_to_jax() -> None:
    raw = jax.random.PRNGKey(5)  # a raw uint32 pair: the default (Threefry) implementation
    np.testing.assert_array_equal(
        np.asarray(threefry.bernoulli(raw, 0.7, (9, 9))),
        np.asarray(jax.random.bernoulli(raw, 0.7, (9, 9))),
    )
    rbg = jax.random.key(5, impl="rbg")
    assert not threefry._is_plain_threefry(rbg)
    np.testing.assert_array_equal(
        np.asarray(threefry.bernoulli(rbg, 0.7, (9, 9))),
        np.asarray(jax.random.bernoulli(rbg, 0.7, (9, 9))),
    )


@pytest.mark.parametrize("mode", ["fast", "reference"])
def test_dropout_keeps_what_jax_random_bernoulli_keeps(mode: str) -> None:
    x = jax.random.normal(jax.random.key(1), (6, 40, 32))
    key = jax.random.key(9)
    keep = jax.random.bernoulli(key, 0.7, x.shape)
    want = jnp.where(keep, x / 0.7, 0.0)
    with kernels.use(mode):
        got = jax.jit(dropout, static_argnums=1)(x, 0.3, key)
    np.testing.assert_array_equal(np.asarray(got), want)
    assert dropout(x, 0.3, None) is x
