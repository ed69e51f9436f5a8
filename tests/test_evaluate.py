"""Evaluation from checkpoints, comparison, and the demo in its quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genre_jax.cli import main
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.evaluate import aggregate_songs, compare_runs, evaluate_run
from genre_jax.inference import load_predictor
from genre_jax.runner import make_split, train_run
from genre_jax.store import prepare

PNG = b"\x89PNG\r\n\x1a\n"


def test_song_aggregation_against_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    tracks = np.repeat([7, 3, 9, 4], 3)
    labels = np.repeat([1, 0, 2, 2], 3)
    probs = rng.dirichlet(np.ones(3), size=12)
    predicted = probs.argmax(1)
    predicted[9:] = [0, 1, 2]  # track 4: a three-way vote tie
    songs = aggregate_songs(tracks, labels, probs, predicted)
    for i, track in enumerate(songs.tracks):
        rows = tracks == track
        mean = probs[rows].mean(0)
        assert songs.by_mean[i] == mean.argmax()
        votes = np.bincount(predicted[rows], minlength=3)
        best = np.flatnonzero(votes == votes.max())
        assert songs.by_vote[i] == best[np.argmax(mean[best])]
        assert songs.labels[i] == labels[rows][0]
    assert list(songs.tracks) == [3, 4, 7, 9]


@pytest.fixture(scope="module")
def runs(synthetic_store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-runs")
    configs = {
        "cnn": TrainConfig(model="cnn", epochs=2, patience=0, time_flip=False),
        "gru": TrainConfig(model="gru", epochs=2, patience=0, time_flip=False),
        "svm": TrainConfig(model="svm", time_flip=False),
        "melstat": TrainConfig(model="melstat", epochs=2, patience=0, time_flip=False),
        "statsvm": TrainConfig(model="statsvm", time_flip=False),
    }
    for name, config in configs.items():
        train_run(synthetic_store.path, root / name, config, progress=False, log=lambda _: None)
    return {name: root / name for name in configs}


@pytest.mark.parametrize("model", ["cnn", "gru", "svm", "melstat", "statsvm"])
def test_evaluate_round_trip(runs, synthetic_store, model: str) -> None:
    run = runs[model]
    report = evaluate_run(run)
    saved = json.loads((run / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    for key in ("segment_accuracy", "song_accuracy", "per_genre", "confusion"):
        assert key in saved
    index = make_split(synthetic_store, TrainConfig(model=model)).segment_indices(
        "test", synthetic_store.tracks
    )
    predicted = load_predictor(run).predict(np.asarray(synthetic_store.features[index]))
    assert report["segment_accuracy"] == pytest.approx(
        np.mean(predicted == synthetic_store.labels[index])
    )
    assert report["segments"] == 30 and report["songs"] == 10
    assert set(report["per_genre"]) == set(synthetic_store.genres)
    assert sum(m["support"] for m in report["per_genre"].values()) == 10
    assert np.sum(report["confusion"]["segment"]["counts"]) == 30
    normalized = np.array(report["confusion"]["song"]["normalized"])
    np.testing.assert_allclose(normalized.sum(1), 1.0, atol=1e-6)
    for level in ("song", "segment"):
        for kind in ("counts", "normalized"):
            assert (run / "plots" / f"confusion_{level}_{kind}.png").read_bytes()[:8] == PNG
    assert "| blues |" in (run / "report.md").read_text()


def test_evaluate_refuses_a_store_with_other_feature_settings(runs, synthetic_small, tmp_path):
    other = prepare(
        synthetic_small,
        tmp_path / "f",
        FeatureConfig(segment_seconds=5.0),
        progress=False,
        log=lambda _: None,
    )
    with pytest.raises(ConfigError, match="segment_seconds"):
        evaluate_run(runs["svm"], features=other.path)
    assert main(["evaluate", "--run-dir", str(runs["svm"]), "--features", str(other.path)]) == 2


def test_compare_lists_runs_and_the_seed_reference(runs, capsys) -> None:
    rows = compare_runs([runs["cnn"], runs["svm"]])
    assert [r["model"] for r in rows] == ["cnn", "svm", "cnn", "gru", "svm"]
    seed = [r for r in rows if r["run"] == "seed report"]
    assert all("leaky" in r["protocol"] for r in seed)
    assert {r["model"]: r["segment_accuracy"] for r in seed} == {
        "cnn": 0.8249,
        "gru": 0.7114,
        "svm": 0.65,
    }
    assert main(["compare", str(runs["gru"])]) == 0
    assert "leaky" in capsys.readouterr().out


def test_demo_quick_runs_end_to_end(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GENRE_JAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    code = main(["demo", "--quick", "--tracks-per-genre", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    table = (out / "comparison.md").read_text()
    for model in ("cnn", "gru", "svm", "melstat", "statsvm"):
        assert (out / model / "report.json").is_file()
        assert f"| {out / model} | {model} |" in table
    assert table.count("seed report") == 3
    melstat = json.loads((out / "melstat" / "config.json").read_text())
    assert melstat["features"]["kind"] == "logmel" and melstat["train"]["label_smoothing"] == 0.1
