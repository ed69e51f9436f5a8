"""Fine-tuning the pretrained musicnn (``model=musicnn``): the head-only phase, the learning-rate
split against a hand-computed Adam step, mixup, the patch-gradient convolution, and a fine-tuned
run evaluated and predicted from its directory with an empty weights cache.

The weights come from the ``musicnn`` wheel (the ``wheel`` fixture: downloaded once per session,
skipped where it cannot be had).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from genre_jax.augment import mixup
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.kernels.conv import conv2d_valid_patch_gradient
from genre_jax.models import musicnn
from genre_jax.models.layers import Pretrained
from genre_jax.models.musicnn_net import MusicnnSettings
from genre_jax.optimizer import pretrained_labels
from genre_jax.step import make_train_epoch, make_train_step, training_loss
from genre_jax.train import init_state
from tests.conftest import converted_weights

QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture(scope="module")
def weights_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory):
    """The wheel's MSD musicnn weights converted once into a cache of this module's own."""
    cache = tmp_path_factory.mktemp("finetune-cache")
    with converted_weights(wheel, cache, [musicnn.DEFAULT_CHECKPOINT]):
        yield cache


def variables(params) -> list:
    return jax.tree.leaves(params, is_leaf=lambda v: isinstance(v, nnx.Variable))


def test_frozen_epochs_leave_every_pretrained_parameter_bit_identical(
    weights_env, logc_store
) -> None:
    config = TrainConfig(
        model="musicnn", epochs=2, freeze_epochs=1, learning_rate=1e-2, mixup=0.4, specaug_masks=1
    )
    x = jnp.asarray(np.asarray(logc_store.features[:16]))
    y = jnp.asarray(np.asarray(logc_store.labels[:16]))
    graphdef, state, tx = init_state(config, 96, 10, None, steps_per_epoch=2, log=lambda _: None)
    before = [np.array(v[...]) for v in variables(state["params"])]
    kinds = [isinstance(v, Pretrained) for v in variables(state["params"])]
    assert sum(kinds) == 38 and len(kinds) == 42  # 9 kernels + biases, 10 norms x 2; head 4
    published = musicnn.load_weights(fetch=False)
    frozen = make_train_epoch(graphdef, tx, 8, "steps", None, config, frozen=True)
    state, _ = frozen(state, x, y, np.int32(0), jax.random.key(0))
    after = [np.asarray(v[...]) for v in variables(state["params"])]
    for is_pretrained, old, new in zip(kinds, before, after, strict=True):
        same = old.tobytes() == new.tobytes()  # bit for bit, the sign of zero included
        assert same == is_pretrained
    conv = next(v for v in variables(state["params"]) if v.shape == (7, 38, 1, 204))
    assert np.asarray(conv[...]).tobytes() == published["conv2d/kernel"].tobytes()
    # The pretrained Adam has not started: its moments are still zero.
    moments = [
        np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state["opt"])
        if "pretrained" in jax.tree_util.keystr(path) and leaf.ndim == 4
    ]
    assert moments and all(not m.any() for m in moments)


def test_the_learning_rate_split_is_one_adam_step_of_each_rate(weights_env, logc_store) -> None:
    """One step from fresh state against Adam's first update computed by hand in float64:
    ``p - rate * m_hat / (sqrt(v_hat) + eps)`` with m = (1 - b1) g and v = (1 - b2) g^2
    bias-corrected (about ``rate * sign(g)``), the head's rate 1e-3 and the pretrained
    layers' 0.1 of it."""
    settings = MusicnnSettings(dropout_rate=0.0)  # no dropout: the gradient is deterministic
    config = TrainConfig(
        model="musicnn", model_settings=settings, learning_rate=1e-3, pretrained_lr_scale=0.1
    )
    x = jnp.asarray(np.asarray(logc_store.features[:4]))
    y = jnp.asarray(np.asarray(logc_store.labels[:4]))
    mask = jnp.ones(4, bool)
    graphdef, state, tx = init_state(config, 96, 10, None, log=lambda _: None)
    labels = [label for label in jax.tree.leaves(pretrained_labels(state["params"]))]
    assert labels.count("new") == 4 and labels.count("pretrained") == 38

    def loss(params):
        model = nnx.merge(graphdef, params, state["rest"], copy=True)
        logits = model(x, train=True, key=jax.random.key(1), mask=mask)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    gradient = jax.jit(jax.grad(loss))(state["params"])
    updates, _ = tx.update(gradient, state["opt"], state["params"])
    grads = [np.asarray(g[...], np.float64) for g in variables(gradient)]
    old = [np.asarray(v[...], np.float64) for v in variables(state["params"])]
    kinds = [isinstance(v, Pretrained) for v in variables(state["params"])]
    step = jax.jit(make_train_step(graphdef, tx, None, config))
    new_state, _ = step(state, x, y, mask, jax.random.key(1))
    new = [np.asarray(v[...], np.float64) for v in variables(new_state["params"])]
    # optax corrects the bias with float32 powers of b1 and b2 (1 - 0.999 is 1.3e-5 off there)
    b1, b2 = (np.float64(np.float32(b)) for b in (0.9, 0.999))
    for pretrained, p, g, update, got in zip(
        kinds, old, grads, variables(updates), new, strict=True
    ):
        rate = 1e-4 if pretrained else 1e-3
        m_hat, v_hat = (1 - 0.9) * g / (1 - b1), (1 - 0.999) * g**2 / (1 - b2)
        expected = -rate * m_hat / (np.sqrt(v_hat) + 1e-7)
        # The optimiser on this gradient: float32 arithmetic, ~1e-7 relative.
        np.testing.assert_allclose(np.asarray(update[...]), expected, rtol=1e-6, atol=1e-12)
        # The step (its own gradient, rounded otherwise): rate * sign(g) where |g| is well
        # above Adam's epsilon, and never more than the rate anywhere.
        # (p + update is rounded to p's float32 spacing).
        spacing = np.spacing(np.abs(p).astype(np.float32)).astype(np.float64)
        clear = np.abs(g) > 1e-3
        moved = got - p
        assert np.all(np.abs(moved + rate * np.sign(g))[clear] <= 1e-3 * rate + spacing[clear])
        assert np.all(np.abs(moved) <= rate + spacing)


def test_pretrained_settings_are_refused_for_a_network_without_pretrained_layers() -> None:
    """Refused when the config is built (before any folder), and by the step's own check
    for a config made without that check."""
    with pytest.raises(ConfigError, match=r"freeze_epochs=2: model 'cnn' has no pretrained"):
        TrainConfig(model="cnn", freeze_epochs=2)
    unchecked = dataclasses.replace(TrainConfig(model="cnn"))
    object.__setattr__(unchecked, "freeze_epochs", 2)
    with pytest.raises(ConfigError, match=r"freeze_epochs=2: model 'cnn' has no pretrained"):
        init_state(unchecked, 13, 10)
    with pytest.raises(ConfigError, match=r"mixup.*apply to networks only"):
        TrainConfig(model="svm", mixup=0.2)


def test_mixup_mixes_inputs_and_targets_in_one_proportion() -> None:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 5, 3)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 4, 16))
    mixed, partners, share = mixup(x, y, jax.random.key(3), 0.4)
    share = np.asarray(share, np.float64)
    assert np.all((share > 0) & (share < 1))
    # Every row is s * itself + (1 - s) * one row of the batch, whose label is its partner's.
    xs, ms = np.asarray(x, np.float64), np.asarray(mixed, np.float64)
    for i in range(16):
        other = (ms[i] - share[i] * xs[i]) / (1 - share[i])
        j = int(np.argmin(np.abs(xs - other).reshape(16, -1).sum(1)))
        np.testing.assert_allclose(other, xs[j], atol=1e-4)
        assert int(partners[i]) == int(y[j])
    logits = jnp.asarray(rng.normal(size=(16, 4)).astype(np.float32))
    valid = jnp.asarray(np.arange(16) < 13)
    got = float(training_loss(logits, y, valid, 0.1, (partners, jnp.asarray(share))))
    log_p = np.log(np.exp(np.asarray(logits, np.float64)).T / np.exp(logits).sum(1)).T
    smooth = lambda labels: np.eye(4)[np.asarray(labels)] * 0.9 + 0.1 / 4  # noqa: E731
    targets = share[:, None] * smooth(y) + (1 - share[:, None]) * smooth(partners)
    expected = -(targets * log_p).sum(1)[:13].mean()
    assert got == pytest.approx(expected, rel=1e-5)


# musicnn's front end (one input channel, tall or wide kernels) and VGG's blocks (3 x 3 over
# many channels, padded 'same' by the caller).
SHAPES = [
    ((2, 13, 20, 1), (7, 6, 1, 5)),
    ((2, 30, 8, 1), (16, 1, 1, 3)),
    ((3, 12, 10, 6), (3, 3, 6, 4)),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_patch_gradient_convolution_equals_xla_forward_and_in_gradients(shape) -> None:
    x_shape, k_shape = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape).astype(np.float32))
    kernel = jnp.asarray(rng.normal(size=k_shape).astype(np.float32))

    def reference(x, kernel):
        dims = ("NHWC", "HWIO", "NHWC")
        precision = jax.lax.Precision.HIGHEST
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "VALID", dimension_numbers=dims, precision=precision
        )

    ours = conv2d_valid_patch_gradient(x, kernel)
    expected = reference(x, kernel)
    scale = float(jnp.abs(expected).max())
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5 * scale)
    probe = jnp.asarray(rng.normal(size=expected.shape).astype(np.float32))
    got = jax.grad(lambda a, b: jnp.sum(conv2d_valid_patch_gradient(a, b) * probe), (0, 1))(
        x, kernel
    )
    want = jax.grad(lambda a, b: jnp.sum(reference(a, b) * probe), (0, 1))(x, kernel)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * float(jnp.abs(w).max()))


def test_a_fine_tuned_run_evaluates_and_predicts_with_an_empty_cache(
    weights_env, logc_store, short_songs: Path, tmp_path: Path, monkeypatch
) -> None:
    from genre_jax.checkpoint import load_model
    from genre_jax.evaluate import evaluate_run
    from genre_jax.inference import load_predictor
    from genre_jax.predict import predict_file
    from genre_jax.runner import train_run

    config = TrainConfig(
        model="musicnn",
        epochs=2,
        freeze_epochs=1,
        batch_size=20,
        learning_rate=1e-3,
        pretrained_lr_scale=0.1,
        time_flip=False,
        patience=0,
        select="last",
        split="kfold",
        folds=3,
        val_per_genre=0,
    )
    run = tmp_path / "run"
    train_run(logc_store.path, run, config, **QUIET)
    published = musicnn.load_weights(fetch=False)
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv(musicnn.CACHE_ENV, str(empty))
    monkeypatch.delenv(musicnn.WHEEL_ENV)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # a download attempt would fail, not pass unseen
    report = evaluate_run(run)
    assert report["segments"] > 0 and 0.0 <= report["song_accuracy"] <= 1.0
    predictor = load_predictor(run)
    track = sorted(short_songs.rglob("*.wav"))[0]
    result = predict_file(track, predictor)
    assert result.error is None and result.genre in logc_store.genres
    assert list(empty.iterdir()) == []  # nothing fetched, nothing converted
    # The checkpoint holds the fine-tuned weights (epoch 2 trained them), not the published.
    model, _ = load_model(run)
    kernel = np.asarray(model.layers["conv2d"]["kernel"][...])
    assert kernel.shape == published["conv2d/kernel"].shape
    assert not np.array_equal(kernel, published["conv2d/kernel"])
