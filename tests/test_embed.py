"""``genre-jax embed`` and the per-store cache of frozen embeddings (issue 17).

musicnn's rows are checked against the network run directly on the same features, outside any
cache (and against the statistics a trained ``musicnnsvm``'s scaler kept); a network's rows are
checked by its own output layer, which must turn them into the run's probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genre_jax.cli import main
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.models import musicnn
from genre_jax.models.musicnn import INPUT_FEATURES, PATCH_SECONDS, MusicnnEmbedding
from genre_jax.prepare import prepare
from tests.conftest import shared

MUSICNN_FEATURES = FeatureConfig(**INPUT_FEATURES, segment_seconds=PATCH_SECONDS)


@pytest.fixture
def weights_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """musicnn's weights from the session's wheel, cached under a temporary folder."""
    monkeypatch.setenv(musicnn.WHEEL_ENV, str(wheel))
    monkeypatch.setenv(musicnn.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "weights-cache"))


@pytest.fixture(scope="module")
def real_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gtzan-mini's ten clips and the 61 s Ogg (as jazz), linked into one genre tree."""
    clips = shared("gtzan-mini/genres_original")
    ogg = shared("other/vibe_ace_44k_stereo.ogg")
    if not clips.is_dir() or not ogg.is_file():
        pytest.skip(f"real audio not found under {shared('')} (set GENRE_JAX_SHARED_DATA)")
    data = tmp_path_factory.mktemp("real") / "data"
    for clip in sorted(clips.glob("*/*.wav")):
        (data / clip.parent.name).mkdir(parents=True, exist_ok=True)
        (data / clip.parent.name / clip.name).symlink_to(clip)
    (data / "jazz" / ogg.name).symlink_to(ogg)
    return data


def load(path: Path) -> dict:
    with np.load(path) as archive:  # no pickled objects: allow_pickle stays False
        arrays = {name: archive[name] for name in archive.files}
    arrays["settings"] = json.loads(str(arrays["settings"]))
    return arrays


def test_embed_of_real_music_is_what_musicnnsvm_feeds_its_scaler(
    weights_env, real_data: Path, tmp_path: Path
) -> None:
    """A store of gtzan-mini and the Ogg, and the same files as audio: every segment's row is
    musicnn on that segment's features (what ``musicnnsvm``'s embedding step gives its scaler)."""
    store = prepare(real_data, tmp_path / "features", MUSICNN_FEATURES, progress=False, log=print)
    assert (
        main(["embed", str(store.path), "--model", "musicnn", "--out", str(tmp_path / "s.npz")])
        == 0
    )
    from_store = load(tmp_path / "s.npz")
    rows = np.asarray(store.features).reshape(len(store), -1)
    step = MusicnnEmbedding(store.config.n_frames, store.config.n_features).fit(None)
    direct = step.embed_rows(rows)  # outside any cache: the network itself
    np.testing.assert_array_equal(from_store["segment_embeddings"], direct)
    assert from_store["segment_embeddings"].shape == (len(store), musicnn.EMBEDDING_WIDTH)
    # what the pipeline's embedding step hands its scaler (no store cache active here)
    np.testing.assert_array_equal(step.transform(rows[:7]), direct[:7].astype(np.float64))
    assert (store.path / "embeddings").is_dir()  # the cache, kept beside the store
    settings = from_store["settings"]
    assert settings["embedder"]["model"] == "musicnn" and settings["segment_seconds"] == 3.0
    assert settings["inputs"]["store"] == str(store.path.resolve())

    out = tmp_path / "a.npz"
    argv = ["embed", str(real_data), "--model", "musicnn", "--segment-seconds", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    from_audio = load(out)
    assert len(from_audio["track_ids"]) == 11
    ogg = [i for i, t in enumerate(from_audio["track_ids"]) if t.endswith(".ogg")]
    assert len(ogg) == 1 and from_audio["track_genres"][ogg[0]] == "jazz"
    assert np.sum(from_audio["segment_track"] == ogg[0]) == 20  # 61 s in 3 s segments
    # the same segments decoded from the files: the features come through predict's path
    # (other batch shapes than prepare's), so equal to float32 rounding, not bit for bit
    by_path = {Path(t).name: i for i, t in enumerate(from_store["track_paths"])}
    for track, path in enumerate(from_audio["track_ids"]):
        mine = from_audio["segment_embeddings"][from_audio["segment_track"] == track]
        theirs = from_store["segment_embeddings"][
            from_store["segment_track"] == by_path[Path(path).name]
        ]
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    means = from_audio["track_embeddings"]
    segments = from_audio["segment_embeddings"][from_audio["segment_track"] == ogg[0]]
    # against a float64 mean: numpy's float32 mean of 20 rows that nearly cancel is off by
    # more than the float32 rounding of the exact mean that track_embeddings holds
    np.testing.assert_allclose(means[ogg[0]], segments.astype(np.float64).mean(0), rtol=1e-6)


def test_crossval_of_musicnnsvm_embeds_each_segment_once(
    weights_env, synthetic_small: Path, tmp_path: Path, monkeypatch
) -> None:
    """Three folds, each fitting, scoring its training, validation and test segments: the
    network sees every segment of the store once, and each fold's scaler was fitted on
    exactly ``embed``'s rows of that fold's training segments."""
    from genre_jax.crossval import crossval
    from genre_jax.models.sklearn_io import PIPELINE_FILE, load_pipeline
    from genre_jax.splits import Split

    store = prepare(
        synthetic_small, tmp_path / "features", MUSICNN_FEATURES, progress=False, log=print
    )
    seen: list[int] = []
    network = MusicnnEmbedding.embed_rows

    def counted(self, x):
        seen.append(len(x))
        return network(self, x)

    monkeypatch.setattr(MusicnnEmbedding, "embed_rows", counted)
    config = TrainConfig(
        model="musicnnsvm", time_flip=False, split="kfold", folds=3, val_per_genre=1
    )
    crossval(store.path, tmp_path / "cv", config, progress=False, log=lambda _: None)
    assert sum(seen) == len(store), seen
    monkeypatch.setattr(MusicnnEmbedding, "embed_rows", network)

    out = tmp_path / "e.npz"
    assert main(["embed", str(store.path), "--model", "musicnn", "--out", str(out)]) == 0
    assert sum(seen) == len(store)  # embed read the same cache
    rows = load(out)["segment_embeddings"].astype(np.float64)
    for fold in range(3):
        run = tmp_path / "cv" / f"fold-{fold}"
        split = Split.from_json(json.loads((run / "config.json").read_text())["split"])
        train = split.segment_indices("train", np.asarray(store.tracks))
        scaler = load_pipeline(run / PIPELINE_FILE).named_steps["scale"]
        assert scaler.n_samples_seen_ == len(train)
        np.testing.assert_allclose(scaler.mean_, rows[train].mean(axis=0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(scaler.var_, rows[train].var(axis=0), rtol=1e-7, atol=1e-12)


def test_network_rows_are_what_its_output_layer_reads(
    cnn_run: Path, synthetic_store, tmp_path: Path
) -> None:
    """The CNN's 128 penultimate values per segment, from the store and from its audio files:
    the network's own output layer turns them into the run's probabilities."""
    import jax.numpy as jnp

    from genre_jax.checkpoint import load_model
    from genre_jax.inference import load_predictor

    out = tmp_path / "cnn.npz"
    assert (
        main(["embed", str(synthetic_store.path), "--run-dir", str(cnn_run), "--out", str(out)])
        == 0
    )
    arrays = load(out)
    rows = arrays["segment_embeddings"]
    assert rows.shape == (len(synthetic_store), 128)
    model, _ = load_model(cnn_run)
    logits = np.asarray(model.out(jnp.asarray(rows)), np.float64)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    expected = load_predictor(cnn_run).predict_proba(np.asarray(synthetic_store.features))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    manifest = synthetic_store.manifest
    assert list(arrays["track_genres"]) == [
        manifest.tracks[t].genre for t in sorted(set(synthetic_store.tracks))
    ]
    assert arrays["settings"]["embedder"]["run_dir"] == str(cnn_run)

    files = sorted(Path(manifest.root).rglob("*.wav"))[:2]
    audio = tmp_path / "audio.npz"
    assert main(["embed", *map(str, files), "--run-dir", str(cnn_run), "--out", str(audio)]) == 0
    from_audio = load(audio)
    for track, path in enumerate(from_audio["track_ids"]):
        index = [t.path for t in manifest.tracks].index(path)
        theirs = rows[np.asarray(synthetic_store.tracks) == index]
        mine = from_audio["segment_embeddings"][from_audio["segment_track"] == track]
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    assert list(from_audio["track_genres"]) == ["", ""]  # files given by name: genre unknown


def test_embed_refuses_bad_settings_and_names_bad_files(
    cnn_run: Path, synthetic_store, tmp_path: Path, capsys
) -> None:
    from genre_jax.embed import embed

    run = ["--run-dir", str(cnn_run)]
    with pytest.raises(ConfigError, match=r"x\.npy: the file must end in \.npz"):
        embed([str(synthetic_store.path)], tmp_path / "x.npy", run_dir=cnn_run)
    with pytest.raises(ConfigError, match="exactly one of --model musicnn or --run-dir"):
        embed([str(synthetic_store.path)], tmp_path / "x.npz", model="musicnn", run_dir=cnn_run)
    with pytest.raises(ConfigError, match="the segments are the run's own"):
        embed([str(synthetic_store.path)], tmp_path / "x.npz", run_dir=cnn_run, segment_seconds=3)
    shorter = prepare(
        Path(synthetic_store.manifest.root),
        tmp_path / "f5",
        FeatureConfig(segment_seconds=5.0),
        progress=False,
        log=lambda _: None,
    )
    with pytest.raises(ConfigError, match=r"segment_seconds"):  # the run's own segments only
        embed([str(shorter.path)], tmp_path / "x.npz", run_dir=cnn_run)
    existing = tmp_path / "kept.npz"
    existing.write_bytes(b"mine")
    assert main(["embed", str(synthetic_store.path), *run, "--out", str(existing)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert existing.read_bytes() == b"mine"

    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    good = sorted(Path(synthetic_store.manifest.root).rglob("*.wav"))[0]
    out = tmp_path / "mixed.npz"
    assert main(["embed", str(bad), str(good), *run, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"error: {bad}: extension '.txt' is not an audio extension" in err
    assert load(out)["settings"]["failed"][0]["path"] == str(bad)
    nothing = tmp_path / "nothing.npz"
    assert main(["embed", str(bad), *run, "--out", str(nothing)]) == 1
    assert not nothing.exists() and "not written" in capsys.readouterr().err

    svm = tmp_path / "svm"
    config = ["--model", "svm", "--no-time-flip", "--no-progress"]
    assert (
        main(["train", "--features", str(synthetic_store.path), "--run-dir", str(svm), *config])
        == 0
    )
    assert main(["embed", str(good), "--run-dir", str(svm), "--out", str(tmp_path / "s.npz")]) == 2
    assert "is a scikit-learn pipeline, not a network" in capsys.readouterr().err


def test_embed_takes_the_prepare_out_folder_of_one_store(
    cnn_run: Path, synthetic_store, tmp_path: Path
) -> None:
    """Issue 35, item 25: ``embed OUT`` of a ``prepare --out`` folder said "no audio files";
    it embeds the one store inside, as the store's own folder does."""
    from genre_jax.embed import embed

    direct, _ = embed([str(synthetic_store.path)], tmp_path / "store.npz", run_dir=cnn_run)
    found, _ = embed([str(synthetic_store.path.parent)], tmp_path / "out.npz", run_dir=cnn_run)
    np.testing.assert_allclose(found.segment_embeddings, direct.segment_embeddings, atol=1e-6)
    assert found.track_ids == direct.track_ids and len(found.track_ids) == 100
