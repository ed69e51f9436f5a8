"""The kernels against their reference ops (values and gradients), the one switch
(``genre_jax.kernels``: modes, the environment variable, refusals), traces keyed by the mode, and
the golden first-step losses under both modes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genre_jax import kernels
from genre_jax.config import FeatureConfig, TrainConfig
from genre_jax.features import extract_jit, mfcc
from genre_jax.kernels import KERNEL_MODES, KERNELS, KERNELS_ENV, extraction, ops
from genre_jax.models.layers import keras_batch_norm
from genre_jax.settings import ConfigError
from genre_jax.step import make_train_step
from genre_jax.train import init_state


@pytest.fixture(autouse=True)
def _no_mode_from_outside(monkeypatch):
    """Each test starts from ``auto``: no environment variable, no process-wide mode."""
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    kernels.set_mode(None)
    yield
    kernels.set_mode(None)


def both_modes(fn, *args):
    """``fn(*args)`` traced under ``fast`` and under ``reference``: (fast's, reference's)."""
    out = []
    for mode in ("fast", "reference"):
        with kernels.use(mode):
            out.append(fn(*args))
    return tuple(out)


def assert_close(got, want, tolerance: float, name: str = "") -> None:
    """Within ``tolerance`` of the reference's largest magnitude, leaf by leaf."""
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = float(np.abs(np.asarray(b)).max())
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=0, atol=tolerance * scale, err_msg=name
        )


# --- the switch ------------------------------------------------------------------------------


def test_auto_resolves_by_backend_and_the_modes_are_three() -> None:
    assert KERNEL_MODES == ("auto", "reference", "fast") and KERNELS_ENV == "GENRE_JAX_KERNELS"
    assert kernels.requested() == "auto"
    assert kernels.active() == ("fast" if jax.default_backend() == "cpu" else "reference")
    assert set(KERNELS) == {
        "conv2d_same",
        "conv_block",
        "dropout_mask",
        "gru_recurrence",
        "extract_batch",
        "conv2d_valid",
    }
    for name, kernel in KERNELS.items():  # each names an implementation that exists
        assert kernel.op == name and callable(kernel.resolve()[0]) and hasattr(ops, name)


def test_the_environment_variable_and_its_precedence(monkeypatch) -> None:
    monkeypatch.setenv(KERNELS_ENV, "reference")
    assert kernels.requested() == kernels.active() == "reference"
    with kernels.use("fast"):
        assert kernels.requested() == kernels.active() == "fast"
    assert kernels.active() == "reference"
    kernels.set_mode("fast")
    assert kernels.active() == "fast"
    kernels.set_mode(None)
    monkeypatch.setenv(KERNELS_ENV, "auto")
    assert kernels.requested() == "auto"


def test_a_bad_mode_is_refused_naming_its_source_and_the_choices(monkeypatch) -> None:
    monkeypatch.setenv(KERNELS_ENV, "gpu")
    with pytest.raises(ConfigError) as refused:
        kernels.active()
    message = str(refused.value)
    assert "\n" not in message and KERNELS_ENV in message and "'gpu'" in message
    assert all(mode in message for mode in KERNEL_MODES)
    monkeypatch.delenv(KERNELS_ENV)
    for bad in ("Fast", "", None):
        with pytest.raises(ConfigError, match="auto, reference, fast"), kernels.use(bad):
            pass
    with pytest.raises(ConfigError, match="auto, reference, fast"):
        kernels.set_mode("cpu")
    assert kernels.requested() == "auto"  # nothing was set


def test_use_restores_the_mode_after_an_error() -> None:
    kernels.set_mode("reference")
    with pytest.raises(RuntimeError), kernels.use("fast"):
        assert kernels.active() == "fast"
        raise RuntimeError
    assert kernels.active() == "reference"


def test_the_mode_picks_what_is_traced() -> None:
    """The dropout mask's kernel is Threefry written out (shifts, no ``random_bits``); the
    reference is ``jax.random.bernoulli``."""
    key = jax.random.key(0)
    fast, reference = both_modes(
        lambda: str(jax.make_jaxpr(lambda k: ops.dropout_mask(k, 0.7, (8, 8)))(key))
    )
    assert "random_bits" not in fast and "shift_left" in fast
    assert "random_bits" in reference and "shift_left" not in reference


def test_a_switch_of_mode_retraces_extract_jit(monkeypatch) -> None:
    """``extract_jit`` keys its compiled program by the mode: after a switch the other
    formulation is traced (not the cached one served), and back again the first is reused."""
    traced = {"fast": 0, "reference": 0}
    chunks, whole = extraction.in_chunks, ops._extract_whole

    def counted(mode, fn):
        def run(*args):
            traced[mode] += 1
            return fn(*args)

        return run

    monkeypatch.setattr(extraction, "in_chunks", counted("fast", chunks))
    monkeypatch.setattr(ops, "_extract_whole", counted("reference", whole))
    # 9 frames a signal: 113 signals a chunk, so 121 signals (a shape no other test uses) split.
    signals = jax.random.normal(jax.random.key(3), (121, 4096)) * 0.1
    config = FeatureConfig()
    results = {}
    for mode, expected in [
        ("fast", (1, 0)),
        ("reference", (1, 1)),
        ("fast", (1, 1)),
        ("reference", (1, 1)),
    ]:
        with kernels.use(mode):
            results[mode] = np.asarray(extract_jit(signals, config))
        assert (traced["fast"], traced["reference"]) == expected, mode
    np.testing.assert_allclose(results["fast"], results["reference"], atol=1e-4)


# --- each kernel against its reference op ----------------------------------------------------


@pytest.mark.parametrize(
    ("image", "c_in", "c_out", "batch"),
    [((20, 17), 5, 7, 6), ((107, 3), 64, 16, 6), ((40, 13), 1, 8, 36)],
    ids=["patch gradient", "banded", "XLA's in chunks"],
)
def test_conv2d_same(image, c_in, c_out, batch) -> None:
    """Values and the gradients to the input, kernel and bias within 1e-5 of the reference's
    largest (``conv(x)``, JAX's gradient)."""
    conv = nnx.Conv(c_in, c_out, (3, 3), padding="SAME", rngs=nnx.Rngs(1))
    graphdef, params = nnx.split(conv)
    x = jax.random.normal(jax.random.key(2), (batch, *image, c_in))
    cotangent = jax.random.normal(jax.random.key(3), (batch, *image, c_out))

    def value_and_grads():
        def loss(params, x):
            y = ops.conv2d_same(nnx.merge(graphdef, params), x)
            return jnp.sum(y * cotangent), y

        return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(params, x)

    fast, reference = both_modes(value_and_grads)
    assert_close(fast, reference, 1e-5)


def _norm(channels: int) -> nnx.BatchNorm:
    norm = keras_batch_norm(channels, nnx.Rngs(0))
    norm.scale[...] = jnp.asarray(np.resize([1.5, -0.5, 0.25, 2.0, -1.0], channels), jnp.float32)
    norm.bias[...] = jnp.linspace(-0.3, 0.4, channels)
    return norm


@pytest.mark.parametrize("train", [True, False], ids=["training", "evaluation"])
def test_conv_block(train: bool) -> None:
    """The first block (one channel; in training by chunks, 11 rows with 2 masked): outputs
    and updated running averages within 1e-5, gradients to every parameter within 1e-5 of the
    reference's largest."""
    x = jax.random.normal(jax.random.key(4), (11, 40, 13, 1))
    mask = jnp.asarray([1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1], bool)
    cotangent = jax.random.normal(jax.random.key(5), (11, 20, 6, 32))
    modules = (nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=nnx.Rngs(3)), _norm(32))
    graphdef, params, stats = nnx.split(modules, nnx.Param, nnx.BatchStat)

    def value_and_grads():
        def loss(params):
            conv, norm = nnx.merge(graphdef, params, stats, copy=True)
            y = ops.conv_block(conv, norm, x, train=train, mask=mask)
            return jnp.sum(y * cotangent), (y, nnx.state((conv, norm), nnx.BatchStat))

        return jax.jit(jax.grad(loss, has_aux=True))(params)

    (fast_grads, fast_out), (grads, out) = both_modes(value_and_grads)
    assert_close(fast_out, out, 1e-5, "outputs and running averages")
    assert_close(fast_grads, grads, 1e-5, "gradients")


@pytest.mark.parametrize("shape", [(7,), (6, 40, 32), (4, 215, 6, 32)], ids=str)
def test_dropout_mask_is_bitwise_jax_random_bernoulli(shape) -> None:
    key = jax.random.fold_in(jax.random.key(11), 5)
    fast, reference = both_modes(lambda: jax.jit(lambda k: ops.dropout_mask(k, 0.7, shape))(key))
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(reference))


def test_dropout_mask_leaves_other_keys_to_jax() -> None:
    """An RBG key is no Threefry key: the kernel does not apply and the reference draws."""
    key = jax.random.key(5, impl="rbg")
    with kernels.use("fast"):
        jaxpr = str(jax.make_jaxpr(lambda k: ops.dropout_mask(k, 0.7, (9, 9)))(key))
        got = ops.dropout_mask(key, 0.7, (9, 9))
    assert "random_bits" in jaxpr
    np.testing.assert_array_equal(
        np.asarray(got), np.asarray(jax.random.bernoulli(key, 0.7, (9, 9)))
    )


@pytest.mark.parametrize("unroll", [1, 0])
def test_gru_recurrence(unroll: int) -> None:
    """Hidden states and the gradients to the input, kernels and biases within 1e-5 of the
    reference's largest (each mode's own unrolling for 0)."""
    rng = np.random.default_rng(3)
    args = [
        jnp.asarray(rng.normal(size=(3, 40, 13)), jnp.float32),
        jnp.asarray(rng.normal(0, 0.3, (13, 192)), jnp.float32),
        jnp.asarray(rng.normal(0, 0.2, (64, 192)), jnp.float32),
        jnp.asarray(rng.normal(0, 0.5, (2, 192)), jnp.float32),
    ]
    weights = jnp.asarray(rng.normal(size=(3, 40, 64)), jnp.float32)

    def value_and_grads():
        def loss(*a):
            hs = ops.gru_recurrence(*a, unroll)
            return jnp.sum(weights * hs), hs

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(*args)

    fast, reference = both_modes(value_and_grads)
    assert_close(fast, reference, 1e-5)


def test_extract_batch() -> None:
    """MFCCs of a (3, 2) batch of ten-second signals (three chunks of two under the kernel)
    within 1e-4 dB of the whole batch's."""
    signals = jax.random.normal(jax.random.key(6), (3, 2, 220500)) * 0.1
    fast, reference = both_modes(mfcc, signals)
    assert fast.shape == (3, 2, 431, 13)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(reference), atol=1e-4)


def test_conv2d_valid() -> None:
    """musicnn's front-end convolution: values and gradients within 1e-5 of the reference's
    largest (XLA's at the highest precision, JAX's gradient)."""
    x = jax.random.normal(jax.random.key(7), (3, 30, 24, 1))
    kernel = jax.random.normal(jax.random.key(8), (7, 12, 1, 5))
    probe = jax.random.normal(jax.random.key(9), (3, 24, 13, 5))

    def value_and_grads():
        def loss(x, kernel):
            y = ops.conv2d_valid(x, kernel)
            return jnp.sum(y * probe), y

        return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(x, kernel)

    fast, reference = both_modes(value_and_grads)
    assert_close(fast, reference, 1e-5)


# --- the networks under both -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "reference"])
@pytest.mark.parametrize(("model", "golden"), [("cnn", 2.649078), ("gru", 2.308188)])
def test_golden_first_step_loss_under_both_modes(model: str, golden: float, mode: str) -> None:
    """``tests/test_train.py``'s golden first-step losses (seed 0, a fixed batch), with the
    model built and its step traced under each mode; the parameters are the same tree."""
    with kernels.use(mode):
        graphdef, state, tx = init_state(TrainConfig(model=model, seed=0), 13, 10)
        x = jax.random.normal(jax.random.key(42), (32, 431, 13))
        y = jnp.arange(32) % 10
        step = jax.jit(make_train_step(graphdef, tx))
        _, (loss_sum, _) = step(state, x, y, jnp.ones(32, bool), jax.random.key(7))
    assert float(loss_sum) / 32 == pytest.approx(golden, rel=1e-5)
    other = "reference" if mode == "fast" else "fast"
    with kernels.use(other):
        _, twin, _ = init_state(TrainConfig(model=model, seed=0), 13, 10)
    ours, theirs = ((s["params"], s["rest"]) for s in (state, twin))
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    assert_close(theirs, ours, 0.0, "the same initial parameters and statistics")
