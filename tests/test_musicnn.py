"""The pretrained musicnn: our checkpoint reader and JAX network against TensorFlow running the
published graph (the independent reference), and ``musicnnsvm`` through the commands.

The reference is :func:`benchmarks.musicnn.tensorflow_musicnn` (the benchmark times the same
graph); TensorFlow is in the ``test`` extra. The weights come from the ``musicnn`` wheel on
PyPI, downloaded once per session with pip (or ``$GENRE_JAX_MUSICNN_WHEEL``); tests that need
it skip, saying why, where it cannot be had.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from benchmarks.musicnn import tensorflow_musicnn, unpack_checkpoint
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.models import musicnn
from genre_jax.models.musicnn import (
    CHECKPOINT,
    INPUT_FEATURES,
    PATCH_FRAMES,
    PATCH_SECONDS,
    WeightsError,
    embeddings,
    network,
    weights_from_wheel,
)
from genre_jax.tf_checkpoint import TFCheckpointError, read_checkpoint, read_checkpoint_files
from tests.conftest import shared


@pytest.fixture(scope="session")
def checkpoint(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The wheel's MSD checkpoint unpacked: its prefix (a folder plus the empty file stem)."""
    return unpack_checkpoint(wheel, tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="session")
def weights(wheel: Path) -> dict[str, np.ndarray]:
    return weights_from_wheel(wheel)


def tensorflow_reference(checkpoint: str):
    pytest.importorskip("tensorflow", reason="TensorFlow (the reference) is not installed")
    return tensorflow_musicnn(checkpoint)


def real_inputs() -> np.ndarray:
    """musicnn inputs computed by librosa: 3 s of four GTZAN genres' first tracks."""
    root = shared("gtzan-mini/genres_original")
    patches = []
    for genre in ("blues", "classical", "jazz", "metal"):
        y, _ = librosa.load(root / genre / f"{genre}.00000.wav", sr=16000, offset=5, duration=3.0)
        power = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96)
        patches.append(np.log10(1 + 10000 * power).T[:PATCH_FRAMES])
    return np.stack(patches).astype(np.float32)


# --- the checkpoint reader ---------------------------------------------------------------------


def test_reader_matches_tensorflow_on_every_variable(checkpoint: str) -> None:
    tf = pytest.importorskip("tensorflow", reason="TensorFlow (the reference) is not installed")
    ours = read_checkpoint_files(checkpoint)
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint)
    names = reader.get_variable_to_shape_map()
    assert set(ours) == set(names) and len(ours) == 150  # the network, Adam's slots, 2 scalars
    for name in names:
        expected = reader.get_tensor(name)
        assert ours[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(ours[name], expected, err_msg=name)


def test_reader_refuses_what_is_not_a_checkpoint(checkpoint: str, tmp_path: Path) -> None:
    with pytest.raises(TFCheckpointError, match="shorter than a table footer"):
        read_checkpoint(b"not an index", [])
    with pytest.raises(TFCheckpointError, match="table magic"):
        read_checkpoint(bytes(100), [])
    index = Path(checkpoint + ".index").read_bytes()
    with pytest.raises(TFCheckpointError, match="1 data shards, given 0"):
        read_checkpoint(index, [])
    with pytest.raises(TFCheckpointError, match="outside data shard 0"):
        read_checkpoint(index, [b"\0" * 1000])  # a truncated data file
    with pytest.raises(TFCheckpointError, match="no such checkpoint index"):
        read_checkpoint_files(tmp_path / "model")


def test_weights_are_refused_from_a_file_other_than_the_published_wheel(tmp_path: Path) -> None:
    forged = tmp_path / musicnn.WHEEL_NAME
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr(CHECKPOINT + ".index", b"")
    with pytest.raises(WeightsError, match=f"{forged}: SHA-256 .* is not that of"):
        weights_from_wheel(forged)
    with pytest.raises(FileNotFoundError, match="no such musicnn wheel"):
        weights_from_wheel(tmp_path / "missing.whl")


def test_cached_weights_are_the_wheels(wheel: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(musicnn.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(musicnn.WHEEL_ENV, str(wheel))
    first = musicnn.load_weights(log=lambda _: None)
    monkeypatch.delenv(musicnn.WHEEL_ENV)  # the second call reads the cache alone
    cached = musicnn.load_weights(fetch=False, log=lambda _: None)
    assert set(first) == set(cached) and not any("Adam" in k for k in cached)
    for name, value in first.items():
        np.testing.assert_array_equal(cached[name], value)
    monkeypatch.setenv(musicnn.CACHE_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="fetch-musicnn"):
        musicnn.load_weights(fetch=False)


# --- the network -------------------------------------------------------------------------------


def test_network_matches_tensorflow_on_real_music(checkpoint: str, weights) -> None:
    x = real_inputs()
    expected = tensorflow_reference(checkpoint)(x)
    ours = {k: np.asarray(v) for k, v in network(weights, jnp.asarray(x)).items()}
    pooled = np.stack([ours["max_pool"], ours["mean_pool"]], axis=-1)
    # float32 on both sides, convolutions summed in other orders: measured <= 1.2e-6 relative
    # L2 (largest pooled value ~110), so 1e-5 of each tensor's scale is the bound.
    for name, got in (
        ("tags", ours["tags"]),
        ("pooled", pooled),
        ("penultimate", ours["penultimate"]),
    ):
        reference = expected[name]
        assert got.shape == reference.shape, name
        scale = np.abs(reference).max()
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5 * scale, err_msg=name)
    # The tags make musical sense: the jazz excerpt's strongest tag is 'jazz'.
    assert musicnn.MSD_TAGS[int(np.argmax(ours["tags"][2]))] == "jazz"


def test_the_mtt_checkpoint_matches_tensorflow_on_real_music(wheel: Path, tmp_path: Path) -> None:
    """The wheel's MagnaTagATune checkpoint: same reader, same network, its own tags."""
    prefix = unpack_checkpoint(wheel, tmp_path, "MTT_musicnn")
    expected = tensorflow_reference(prefix)(real_inputs())
    weights = weights_from_wheel(wheel, "MTT_musicnn")
    ours = {k: np.asarray(v) for k, v in network(weights, jnp.asarray(real_inputs())).items()}
    for name in ("tags", "penultimate"):
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(ours[name], expected[name], rtol=0, atol=1e-5 * scale)
    # Other weights than the MSD checkpoint's, with tags that make sense: classical's top tag
    # is one of MagnaTagATune's classical ones.
    msd = weights_from_wheel(wheel)
    assert not np.array_equal(weights["conv2d/kernel"], msd["conv2d/kernel"])
    top = musicnn.MTT_TAGS[int(np.argmax(ours["tags"][1]))]
    assert top in ("classical", "strings", "violin", "cello", "slow", "piano", "harpsichord")


def test_embeddings_average_the_repeated_patches(weights) -> None:
    w = {k: jnp.asarray(v) for k, v in weights.items()}
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, (2, 200, 96)).astype(np.float32)

    def one_patch(p: np.ndarray) -> np.ndarray:
        out = network(w, jnp.asarray(p))
        return np.concatenate(
            [np.asarray(out[k]) for k in ("max_pool", "mean_pool", "penultimate")], 1
        )

    # 200 frames -> 2 patches of 187 cut from the item repeated: frames 0-186, then 187-199, 0-173.
    tiled = np.concatenate([x, x], axis=1)[:, : 2 * PATCH_FRAMES]
    expected = (one_patch(tiled[:, :PATCH_FRAMES]) + one_patch(tiled[:, PATCH_FRAMES:])) / 2
    got = np.asarray(embeddings(w, jnp.asarray(x)))
    assert got.shape == (2, musicnn.EMBEDDING_WIDTH)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # A 2 s segment (126 frames) is repeated once to fill its single patch.
    short = x[:, :126]
    filled = np.concatenate([short, short], axis=1)[:, :PATCH_FRAMES]
    np.testing.assert_allclose(
        np.asarray(embeddings(w, jnp.asarray(short))), one_patch(filled), rtol=1e-5, atol=1e-5
    )


# --- musicnnsvm through the commands -------------------------------------------------------------


def test_musicnnsvm_names_the_feature_settings_it_needs(synthetic_store, tmp_path: Path) -> None:
    from genre_jax.runner import train_run

    with pytest.raises(ConfigError, match=r"kind='mfcc'.*sample_rate=22050.* must be kind='logc'"):
        train_run(
            synthetic_store.path, tmp_path / "run", TrainConfig(model="musicnnsvm"), progress=False
        )
    assert not (tmp_path / "run" / "svm.skops").exists()


def test_musicnnsvm_trains_saves_and_predicts(
    wheel: Path, synthetic_small: Path, tmp_path: Path, monkeypatch
) -> None:
    from genre_jax.inference import load_predictor
    from genre_jax.predict import predict_file
    from genre_jax.prepare import prepare
    from genre_jax.runner import train_run

    monkeypatch.setenv(musicnn.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(musicnn.WHEEL_ENV, str(wheel))
    features = FeatureConfig(**INPUT_FEATURES, segment_seconds=PATCH_SECONDS)  # one patch each
    store = prepare(
        synthetic_small, tmp_path / "features", features, progress=False, log=lambda _: None
    )
    config = TrainConfig(
        model="musicnnsvm", time_flip=False, split="kfold", folds=3, val_per_genre=0
    )
    summary = train_run(store.path, tmp_path / "run", config, progress=False, log=lambda _: None)
    assert summary["train_accuracy"] >= 0.9
    assert summary["parameters"] > 792_079  # the network's weights and the support vectors
    predictor = load_predictor(tmp_path / "run")  # from the saved file: no download needed
    monkeypatch.setenv(musicnn.CACHE_ENV, str(tmp_path / "no-cache"))
    monkeypatch.delenv(musicnn.WHEEL_ENV)
    x = np.asarray(store.features[:5])
    probs = predictor.predict_proba(x)
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    track = sorted(synthetic_small.rglob("*.wav"))[0]  # a whole file, 16 kHz features on the fly
    result = predict_file(track, predictor)
    assert result.error is None and result.genre in store.genres
    assert abs(sum(result.probabilities.values()) - 1.0) < 1e-6
