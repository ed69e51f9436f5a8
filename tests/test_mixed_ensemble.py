"""Ensembles whose members read different features: one experiment file through ``crossval``
(a store prepared per feature setting, the same test songs checked by track id), evaluated
segment by segment across the members' stores, and predicting audio files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from genre_jax.cli import main
from genre_jax.config import ConfigError
from genre_jax.experiment import load_experiment
from genre_jax.fileio import read_json
from genre_jax.splits import Split

STATSVM = {
    "features": {"kind": "logmel", "n_mels": 64, "segment_seconds": 2.0},
    "train": {
        "model": {"name": "statsvm"},
        "time_flip": False,
        "split": "kfold",
        "folds": 3,
        "val_per_genre": 0,
    },
}
SVM_16K = {  # the seed's SVM on MFCCs at another rate: other frames, other store
    "features": {"kind": "mfcc", "sample_rate": 16000, "segment_seconds": 2.0},
    "train": {"model": {"name": "svm"}, "split": "kfold", "folds": 3, "val_per_genre": 0},
}


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from genre_jax.datasets import generate_synthetic

    out = tmp_path_factory.mktemp("mixed") / "data"
    generate_synthetic(out, tracks_per_genre=3, seconds=4.0, seed=0)
    return out


def experiment_files(folder: Path, second: dict = SVM_16K) -> Path:
    (folder / "statsvm.json").write_text(json.dumps(STATSVM))
    (folder / "svm16k.json").write_text(json.dumps(second))
    ensemble = folder / "ensemble.json"
    ensemble.write_text(json.dumps({"members": ["statsvm.json", "svm16k.json"]}))
    return ensemble


def test_an_ensemble_of_members_on_different_features_runs_through_crossval(
    songs: Path, tmp_path: Path
) -> None:
    from genre_jax.evaluate import evaluate_run
    from genre_jax.inference import load_predictor
    from genre_jax.predict import predict_file
    from genre_jax.store import FeatureStore

    out = tmp_path / "cv"
    args = ["crossval", "--config", str(experiment_files(tmp_path)), "--data-dir", str(songs)]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    report = read_json(out / "report.json")
    assert set(report["member_features"]) == {"statsvm", "svm"}
    assert report["member_features"]["svm"]["sample_rate"] == 16000
    stores = sorted(p for p in (out / "features").iterdir() if p.is_dir())
    assert [p.name.split("-")[0] for p in stores] == ["logmel", "mfcc"]  # one store each
    assert "statsvm: logmel, 64 coefficients at 22050 Hz" in (out / "report.md").read_text()
    # Every song was tested once, both segments of each.
    assert report["songs"] == 30 and sum(r["segments"] for r in report["per_fold"]) == 60
    fold = out / "fold-1"
    config = read_json(fold / "config.json")
    assert [f["kind"] for f in config["member_features"]] == ["logmel", "mfcc"]
    # The fold's figures are the mean of each member's probabilities on its own store,
    # matched by song and position.
    ensemble = load_predictor(fold)
    means = []
    for member in ensemble.members:
        own = read_json(member.run_dir / "config.json")
        store = FeatureStore.open(own["store"])
        test = np.flatnonzero(np.isin(store.tracks, Split.from_json(own["split"]).test))
        probabilities = member.predict_proba(np.asarray(store.features[test]))
        ids = [store.manifest.tracks[int(t)].id for t in store.tracks[test]]
        order = np.lexsort((store.positions[test], ids))
        means.append((probabilities[order], np.asarray(store.labels[test])[order]))
    mean = (means[0][0] + means[1][0]) / 2
    report_fold = evaluate_run(fold, write=False)
    assert report_fold["segments"] == len(mean)
    assert report_fold["segment_accuracy"] == pytest.approx(np.mean(mean.argmax(1) == means[0][1]))
    # Either member alone predicts other probabilities than the mean (it is not one member's).
    assert not np.allclose(mean, means[0][0]) and not np.allclose(mean, means[1][0])
    # One store cannot serve it; an audio file can.
    with pytest.raises(ConfigError, match="different features"):
        ensemble.predict_proba(np.zeros((1, 87, 64), np.float32))
    track = sorted(songs.rglob("*.wav"))[0]
    result = predict_file(track, ensemble)
    assert result.error is None and result.segments == 2
    assert sum(result.probabilities.values()) == pytest.approx(1.0)


def test_members_cutting_other_segments_are_refused(tmp_path: Path) -> None:
    other = json.loads(json.dumps(SVM_16K))
    other["features"]["segment_seconds"] = 1.0
    with pytest.raises(ConfigError, match=r"svm16k.json cuts 1 s segments.*2 s"):
        load_experiment(experiment_files(tmp_path, other))


def test_one_store_for_members_on_different_features_is_refused(
    songs: Path, tmp_path: Path, capsys
) -> None:
    args = ["crossval", "--config", str(experiment_files(tmp_path)), "--features", str(songs)]
    assert main([*args, "--out", str(tmp_path / "cv")]) != 0
    error = capsys.readouterr().err
    assert "ensemble.json: its members read different features" in error
    assert "give --data-dir" in error and not (tmp_path / "cv").exists()


def test_windows_are_every_hop_of_the_audio() -> None:
    from genre_jax.windows import windows

    audio = np.arange(10, dtype=np.float32)
    expected = np.array([audio[s : s + 4] for s in range(0, 7, 3)])  # starts 0, 3, 6
    np.testing.assert_array_equal(windows(audio, 4, 3), expected)
    assert windows(audio[:3], 4, 1).shape == (0, 4)
    with pytest.raises(ConfigError, match="at least one sample"):
        windows(audio, 4, 0)


def test_evaluation_over_overlapping_windows(songs: Path, tmp_path: Path, monkeypatch) -> None:
    """A hop of one segment scores the store's own segments again (the same figures); a
    shorter hop scores more windows and writes its own report beside the run's."""
    from genre_jax.config import FeatureConfig, TrainConfig
    from genre_jax.evaluate import evaluate_run
    from genre_jax.prepare import prepare
    from genre_jax.runner import train_run

    quiet = {"progress": False, "log": lambda _: None}
    features = FeatureConfig(kind="logmel", n_mels=64, segment_seconds=2.0)
    store = prepare(songs, tmp_path / "features", features, **quiet)
    config = TrainConfig(model="statsvm", time_flip=False, split="kfold", folds=3, val_per_genre=0)
    run = tmp_path / "run"
    train_run(store.path, run, config, **quiet)
    plain = evaluate_run(run, write=False)
    same = evaluate_run(run, write=False, window_hop=2.0)
    assert same["windows"] == plain["segments"] == 2 * plain["songs"]
    assert same["song_accuracy"] == plain["song_accuracy"]
    assert same["confusion"]["song"] == plain["confusion"]["song"]
    dense = evaluate_run(run, window_hop=0.5)
    assert dense["windows"] == 5 * plain["songs"]  # 4 s songs: windows at 0, 0.5 ... 2 s
    assert dense["segment_accuracy"] == plain["segment_accuracy"]  # the store's segments
    assert Path(dense["report_file"]).name == "report-hop0.5s.json"
    assert not (run / "report.json").exists()  # the run's own report is not this one
    with pytest.raises(ConfigError, match="window_hop=0"):
        evaluate_run(run, window_hop=0.0)

    # Windows of several songs are scored together (in calls of BATCH_WINDOWS, here 7, so a
    # song's windows straddle two calls): each song's answer is the one it gets alone.
    from genre_jax import windows as windowing
    from genre_jax.inference import load_predictor

    predictor = load_predictor(run)
    short = tmp_path / "short.wav"  # 1 s: shorter than a window
    soundfile.write(short, np.zeros(22050, np.float32), 22050)
    paths = [str(p) for p in sorted(songs.rglob("*.wav"))[:4]] + [str(short)]
    alone = [windowing.song_windows(predictor, [path], 0.5)[0] for path in paths]
    monkeypatch.setattr(windowing, "BATCH_WINDOWS", 7)
    together = windowing.song_windows(predictor, paths, 0.5)
    assert alone[-1] is None and together[-1] is None
    for one, many in zip(alone[:-1], together[:-1], strict=True):
        assert one.windows == many.windows == 5
        np.testing.assert_allclose(many.mean, one.mean, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(many.votes, one.votes)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    with pytest.raises(ConfigError, match=f"{broken}: cannot be decoded again for windows"):
        windowing.song_windows(predictor, [paths[0], str(broken)], 0.5)
