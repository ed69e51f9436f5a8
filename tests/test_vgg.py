"""The wheel's VGG taggers (``MSD_vgg``, ``MTT_vgg``): our JAX network against TensorFlow running
each checkpoint's own saved graph, their embedding against numpy on TensorFlow's feature maps,
and both uses of a VGG checkpoint: ``musicnnsvm``'s embeddings and ``musicnn``'s initialisation.

The weights come from the ``musicnn`` wheel (the ``wheel`` fixture: downloaded once per
session, skipped where it cannot be had); TensorFlow is in the ``test`` extra.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.musicnn import VGG_GRAPH_OUTPUTS, tensorflow_musicnn, unpack_checkpoint
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.models import musicnn, vgg
from genre_jax.models.musicnn import architecture_of, weights_from_wheel
from tests.conftest import converted_weights
from tests.test_musicnn import real_inputs

QUIET = {"progress": False, "log": lambda _: None}
# float32 on both sides, convolutions summed in other orders: measured <= 2.2e-6 of each
# tensor's largest value, so 1e-5 of it is the bound.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def weights_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory):
    """The VGG checkpoints converted once into a cache of this module's own."""
    with converted_weights(wheel, tmp_path_factory.mktemp("vgg-cache"), list(vgg.POOLS)) as cache:
        yield cache


@pytest.mark.parametrize("checkpoint", ["MSD_vgg", "MTT_vgg"])
def test_vgg_matches_tensorflow_on_real_music(checkpoint: str, wheel: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorflow", reason="TensorFlow (the reference) is not installed")
    x = real_inputs()
    expected = tensorflow_musicnn(
        unpack_checkpoint(wheel, tmp_path, checkpoint), VGG_GRAPH_OUTPUTS
    )(x)
    weights = weights_from_wheel(wheel, checkpoint)
    ours = {k: np.asarray(v) for k, v in vgg.network(weights, jnp.asarray(x), checkpoint).items()}
    for name, reference in expected.items():  # the tags and every pooled map
        assert ours[name].shape == reference.shape, name
        scale = np.abs(reference).max()
        np.testing.assert_allclose(ours[name], reference, rtol=0, atol=TOLERANCE * scale)
    # The two graphs pool the first blocks differently (the variables alone do not say so).
    assert expected["pool1"].shape[1:3] == {"MSD_vgg": (46, 96), "MTT_vgg": (92, 48)}[checkpoint]
    # The embedding: each of TensorFlow's pooled maps' maximum and mean per filter (float64).
    maps = [expected[f"pool{i}"].astype(np.float64) for i in range(1, 6)]
    reference = np.concatenate(
        [r for m in maps for r in (m.max(axis=(1, 2)), m.mean(axis=(1, 2)))], 1
    )
    network = architecture_of(checkpoint)
    got = np.asarray(network.embeddings({k: jnp.asarray(v) for k, v in weights.items()}, x))
    assert got.shape == (4, network.embedding_width) == (4, 1280)
    np.testing.assert_allclose(got, reference, rtol=0, atol=TOLERANCE * np.abs(reference).max())
    # Tags that make sense: the jazz excerpt's top MSD tag is 'jazz'; classical's top
    # MagnaTagATune tag is one of its classical ones.
    if checkpoint == "MSD_vgg":
        assert musicnn.MSD_TAGS[int(np.argmax(ours["tags"][2]))] == "jazz"
    else:
        top = musicnn.MTT_TAGS[int(np.argmax(ours["tags"][1]))]
        assert top in ("classical", "strings", "violin", "cello", "slow", "piano", "harpsichord")


def test_musicnnsvm_embeds_with_a_vgg_checkpoint_and_predicts_without_it(
    weights_env, logc_store, tmp_path: Path, monkeypatch
) -> None:
    from genre_jax.inference import load_predictor
    from genre_jax.models.sklearn_io import PIPELINE_FILE, load_pipeline
    from genre_jax.runner import train_run

    config = TrainConfig.from_flat(
        {
            "model": "musicnnsvm",
            "weights": "MSD_vgg",
            "time_flip": False,
            "split": "kfold",
            "folds": 3,
            "val_per_genre": 0,
        }
    )
    summary = train_run(logc_store.path, tmp_path / "run", config, **QUIET)
    assert summary["train_accuracy"] >= 0.9
    monkeypatch.setenv(musicnn.CACHE_ENV, str(tmp_path / "no-cache"))  # the run keeps its weights
    monkeypatch.delenv(musicnn.WHEEL_ENV)
    predictor = load_predictor(tmp_path / "run")
    x = np.asarray(logc_store.features[:6])
    embed = load_pipeline(tmp_path / "run" / PIPELINE_FILE).named_steps["embed"]
    assert embed.checkpoint == "MSD_vgg"
    rows = embed.transform(x.reshape(len(x), -1))
    network = architecture_of("MSD_vgg")
    direct = network.embeddings(
        {k: jnp.asarray(v) for k, v in embed.weights_.items()}, jnp.asarray(x)
    )
    np.testing.assert_allclose(rows, np.asarray(direct), rtol=1e-6, atol=1e-6)
    assert rows.shape == (6, 1280)
    probs = predictor.predict_proba(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("head_input", ["embedding", "penultimate"])
def test_fine_tuning_starts_from_a_vgg_checkpoint(weights_env, logc_store, head_input) -> None:
    """``musicnn --model-weights MTT_vgg``: the VGG layers loaded as published, the head reading
    the embedding (or pool5), and one full training step (batch statistics updated) moving
    every trained layer."""
    import jax
    from flax import nnx

    from genre_jax.models.layers import Pretrained
    from genre_jax.models.musicnn_net import InputNorm
    from genre_jax.step import make_train_step
    from genre_jax.train import init_state

    config = TrainConfig.from_flat(
        {
            "model": "musicnn",
            "weights": "MTT_vgg",
            "head_input": head_input,
            "batchnorm": "updated",
            "dropout_rate": 0.0,
            "pretrained_lr_scale": 0.1,
        }
    )
    graphdef, state, tx = init_state(config, 96, 10, None, log=lambda _: None)
    model = nnx.merge(graphdef, state["params"], state["rest"], copy=True)
    published = musicnn.load_weights(fetch=False, checkpoint="MTT_vgg")
    for layer, variables in model.layers.items():
        for name, variable in variables.items():
            np.testing.assert_array_equal(np.asarray(variable[...]), published[f"{layer}/{name}"])
            kind = InputNorm if layer == "batch_normalization" else (Pretrained, nnx.BatchStat)
            assert isinstance(variable, kind), (layer, name)
    leaves = jax.tree.leaves(state["params"], is_leaf=lambda v: isinstance(v, nnx.Variable))
    # 5 kernels and biases, 5 norms' scales and shifts
    assert sum(isinstance(v, Pretrained) for v in leaves) == 20
    x = jnp.asarray(np.asarray(logc_store.features[:8]))
    y = jnp.asarray(np.asarray(logc_store.labels[:8]))
    # What the head reads is the published network's embedding (or pool5), computed apart on
    # each 2 s segment (126 frames) repeated to one 187-frame patch.
    patch = jnp.concatenate([x, x], axis=1)[:, :187]
    out = vgg.features(published, patch, pools=vgg.POOLS["MTT_vgg"])
    expected = vgg.embedding(out) if head_input == "embedding" else out["penultimate"]
    got = np.asarray(model.embed(x))
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-5)
    step = jax.jit(make_train_step(graphdef, tx, None, config))
    new, _ = step(state, x, y, jnp.ones(8, bool), jax.random.key(0))
    trained = nnx.merge(graphdef, new["params"], new["rest"], copy=True)
    for layer in ("1CNN", "5CNN"):
        before = model.layers[layer]["kernel"][...]
        assert not np.array_equal(
            np.asarray(trained.layers[layer]["kernel"][...]), np.asarray(before)
        )
    moved = trained.layers["batch_normalization_3"]["moving_mean"][...]
    assert not np.array_equal(np.asarray(moved), published["batch_normalization_3/moving_mean"])
    np.testing.assert_array_equal(  # the input's norm stays as published
        np.asarray(trained.layers["batch_normalization"]["gamma"][...]),
        published["batch_normalization/gamma"],
    )


def test_embed_writes_a_vgg_checkpoints_embeddings(weights_env, logc_store, tmp_path: Path) -> None:
    """``genre-jax embed STORE --model musicnn --weights MTT_vgg``: each segment's row is the
    published VGG's embedding of that segment repeated to one patch; the store caches it
    apart from other checkpoints' rows."""
    from genre_jax.cli import main
    from genre_jax.embed import embed

    out = tmp_path / "vgg.npz"
    argv = ["embed", str(logc_store.path), "--model", "musicnn", "--weights", "MTT_vgg"]
    assert main([*argv, "--out", str(out)]) == 0
    with np.load(out) as archive:
        rows, settings = archive["segment_embeddings"], json.loads(str(archive["settings"]))
    x = jnp.asarray(np.asarray(logc_store.features))
    published = musicnn.load_weights(fetch=False, checkpoint="MTT_vgg")
    patch = jnp.concatenate([x, x], axis=1)[:, :187]
    maps = vgg.features(published, patch, pools=vgg.POOLS["MTT_vgg"])
    np.testing.assert_allclose(rows, np.asarray(vgg.embedding(maps)), rtol=1e-5, atol=1e-5)
    assert rows.shape == (len(logc_store), 1280) and settings["width"] == 1280
    assert settings["embedder"]["checkpoint"] == "MTT_vgg"
    assert settings["embedder"]["weights"] == musicnn.cache_key(published)
    with pytest.raises(ConfigError, match="--weights: a run embeds with its own weights"):
        embed([str(logc_store.path)], tmp_path / "x.npz", run_dir=tmp_path, weights="MSD_vgg")
