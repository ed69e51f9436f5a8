"""Cross-validation: every fold trained and evaluated, the summary equal to the fold reports,
a re-run keeping finished folds, experiment files, and our model end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genre_jax.cli import main
from genre_jax.config import ConfigError, TrainConfig, model_name
from genre_jax.crossval import crossval
from genre_jax.experiment import load_experiment
from genre_jax.store_splits import make_split

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture(scope="module")
def svm_cv(synthetic_store, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cv") / "svm"
    config = TrainConfig(model="svm", time_flip=False, folds=3)
    return out, crossval(synthetic_store.path, out, config, protocol="synthetic, 3 folds", **QUIET)


def test_report_summarises_the_fold_reports(svm_cv, synthetic_store) -> None:
    out, report = svm_cv
    folds = [json.loads((out / f"fold-{i}" / "report.json").read_text()) for i in range(3)]
    accuracies = np.array([f["song_accuracy"] for f in folds])
    assert report["mean"]["song_accuracy"] == pytest.approx(accuracies.mean())
    assert report["std"]["song_accuracy"] == pytest.approx(accuracies.std())
    segment = np.array([f["segment_accuracy"] for f in folds])
    assert report["mean"]["segment_accuracy"] == pytest.approx(segment.mean())
    # The test folds partition the songs: the pooled confusion counts every song once.
    assert report["songs"] == sum(f["songs"] for f in folds) == len(synthetic_store.manifest.tracks)
    confusion = np.array(report["confusion_song_counts"])
    correct = sum(round(f["song_accuracy"] * f["songs"]) for f in folds)
    assert np.trace(confusion) == correct
    tests = [
        set(make_split(synthetic_store, TrainConfig(split="kfold", folds=3, fold=i)).test)
        for i in range(3)
    ]
    assert not (tests[0] & tests[1] or tests[0] & tests[2] or tests[1] & tests[2])
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    text = (out / "report.md").read_text()
    assert "mean +- std" in text and "synthetic, 3 folds" in text
    for kind in ("counts", "normalized"):
        assert (out / "plots" / f"confusion_song_{kind}.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_keeps_finished_folds_and_retrains_a_missing_one(svm_cv, synthetic_store) -> None:
    out, report = svm_cv
    kept = (out / "fold-0" / "summary.json").stat().st_mtime_ns
    # Fold 2 as a run killed during training: its run directory without summary or report.
    for name in ("summary.json", "report.json", "svm.skops"):
        (out / "fold-2" / name).unlink()
    config = TrainConfig(model="svm", time_flip=False, folds=3)
    again = crossval(synthetic_store.path, out, config, protocol="synthetic, 3 folds", **QUIET)
    assert (out / "fold-0" / "summary.json").stat().st_mtime_ns == kept
    assert (out / "fold-2" / "svm.skops").is_file()
    assert again["mean"] == report["mean"]  # the SVM refits to the same model
    timing = ("train_seconds",)
    assert {k: v for k, v in again["per_fold"][2].items() if k not in timing} == {
        k: v for k, v in report["per_fold"][2].items() if k not in timing
    }


def test_other_settings_in_the_same_folder_are_refused(svm_cv, synthetic_store) -> None:
    out, _ = svm_cv
    config = TrainConfig.from_flat({"model": "svm", "time_flip": False, "folds": 3, "c": 10.0})
    with pytest.raises(ConfigError, match=r"\bc: expected 10\.0, found 1\.0"):
        crossval(synthetic_store.path, out, config, **QUIET)


def test_experiment_files_are_read_and_bad_ones_named(tmp_path: Path) -> None:
    for path in sorted((ROOT / "configs").glob("*.json")):
        experiment = load_experiment(path)
        assert experiment.train.split == "kfold" and experiment.protocol
        assert experiment.features is not None and experiment.features.segment_seconds == 2.0
    # The demo's recipes for our models are the experiment files'.
    from genre_jax.models import get_spec

    for name in ("melstat", "statsvm"):
        recipe = get_spec(name).demo.train
        assert recipe  # each has its own recipe
        train = load_experiment(ROOT / "configs" / f"gtzan-dev-{name}.json").train
        tree = {**train.to_json(), **train.to_json()["model"]}  # shared and own side by side
        assert train.model == name and {k: tree[k] for k in recipe} == recipe
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"model": "cnn", "epochs": 0}}')
    with pytest.raises(ConfigError, match=r"bad\.json.*epochs"):
        load_experiment(bad)
    bad.write_text('{"train": {"modle": "cnn"}}')
    with pytest.raises(ConfigError, match=r"bad\.json.*modle"):
        load_experiment(bad)
    bad.write_text('{"optimizer": {}}')
    with pytest.raises(ConfigError, match="optimizer"):
        load_experiment(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "missing.json")


def test_crossval_command_with_an_experiment_file(synthetic_store, tmp_path: Path, capsys) -> None:
    """Our model through the command: file settings, command-line overrides, one report."""
    experiment = {
        "description": "melstat on synthetic MFCCs",
        "protocol": "synthetic, 2 folds",
        "features": synthetic_store.config.to_json(),
        "train": {
            "model": "melstat",
            "folds": 2,
            "epochs": 30,
            "learning_rate": 1e-3,
            "lr_schedule": "cosine",
            "warmup_steps": 10,
            "patience": 0,
            "select": "last",
            "time_flip_mode": "random",
            "label_smoothing": 0.1,
            "specaug_masks": 1,
            "specaug_freq": 3,
            "val_per_genre": 0,  # select=last needs no validation songs
        },
    }
    path = tmp_path / "melstat.json"
    path.write_text(json.dumps(experiment))
    out = tmp_path / "cv"
    args = ["crossval", "--config", str(path), "--features", str(synthetic_store.path)]
    code = main([*args, "--out", str(out), "--epochs", "20", "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["epochs"] == 20 and model_name(report["train"]) == "melstat"
    assert report["description"] == "melstat on synthetic MFCCs"
    # 50 held-out songs per fold, chance 10 %: >= 40 % has probability < 1e-6 by chance.
    assert report["mean"]["song_accuracy"] >= 0.4, report["per_fold"]
    assert "melstat: 2-fold" in capsys.readouterr().out
    # Trained without validation songs: evaluating the empty part is a one-line error.
    assert main(["evaluate", "--run-dir", str(out / "fold-0"), "--part", "val"]) == 2
    assert "val part of the split is empty" in capsys.readouterr().err
    # A store with other feature settings than the file names is refused, naming the field.
    experiment["features"]["n_mfcc"] = 20
    path.write_text(json.dumps(experiment))
    assert main([*args, "--out", str(tmp_path / "cv2"), "--no-progress"]) == 2
    assert "n_mfcc" in capsys.readouterr().err
