"""Ensembles: the mean of the members' probabilities, usable wherever a run is, refusing
members that do not fit together; an ensemble experiment through ``crossval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genre_jax.cli import main
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.ensemble import make_ensemble
from genre_jax.evaluate import evaluate_run
from genre_jax.experiment import load_experiment
from genre_jax.inference import load_predictor
from genre_jax.prepare import prepare
from genre_jax.runner import train_run

QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture(scope="module")
def members(synthetic_store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("members")
    configs = {
        "svm": TrainConfig(model="svm", time_flip=False),
        "statsvm": TrainConfig(model="statsvm", time_flip=False),
        "svm-other-split": TrainConfig(model="svm", time_flip=False, split_seed=1),
    }
    for name, config in configs.items():
        train_run(synthetic_store.path, root / name, config, **QUIET)
    return {name: root / name for name in configs}


def test_ensemble_is_the_mean_of_its_members(members, synthetic_store, tmp_path: Path) -> None:
    out = tmp_path / "ensemble"
    assert main(["ensemble", str(members["svm"]), str(members["statsvm"]), "--out", str(out)]) == 0
    x = np.asarray(synthetic_store.features[:40])
    expected = np.mean(
        [load_predictor(members[m]).predict_proba(x) for m in ("svm", "statsvm")], axis=0
    )
    predictor = load_predictor(out)
    np.testing.assert_allclose(predictor.predict_proba(x), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(predictor.predict(x), expected.argmax(axis=1))
    report = evaluate_run(out)
    assert report["model"] == "ensemble(svm+statsvm)" and report["songs"] == 10
    assert (out / "report.md").is_file()


def test_members_that_do_not_fit_together_are_named(
    members, synthetic_small, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="other test songs"):
        make_ensemble([members["svm"], members["svm-other-split"]], tmp_path / "a")
    # Other features are fine (a mixed ensemble), other segments are not: the mean is taken
    # segment by segment.
    other = FeatureConfig(kind="logmel", n_mels=32, segment_seconds=5.0)
    logmel = prepare(synthetic_small, tmp_path / "features", other, **QUIET)
    train_run(
        logmel.path, tmp_path / "logmel", TrainConfig(model="statsvm", time_flip=False), **QUIET
    )
    with pytest.raises(ConfigError, match="segment_seconds"):
        make_ensemble([members["svm"], tmp_path / "logmel"], tmp_path / "b")
    with pytest.raises(ConfigError, match="at least two"):
        make_ensemble([members["svm"]], tmp_path / "c")
    with pytest.raises(ConfigError, match="not a finished run"):
        make_ensemble([members["svm"], tmp_path / "missing"], tmp_path / "d")
    assert not any((tmp_path / n).exists() for n in "abcd")  # nothing written when refused


def test_ensemble_experiment_through_crossval(synthetic_store, tmp_path: Path) -> None:
    for name, train in {
        "svm": {"model": "svm", "time_flip": False, "folds": 2},
        "statsvm": {"model": "statsvm", "time_flip": False, "folds": 2},
    }.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"train": train}))
    (tmp_path / "both.json").write_text(
        json.dumps({"description": "both", "members": ["svm.json", "statsvm.json"]})
    )
    assert load_experiment(tmp_path / "both.json").is_ensemble
    out = tmp_path / "cv"
    args = ["crossval", "--config", str(tmp_path / "both.json"), "--no-progress"]
    assert main([*args, "--features", str(synthetic_store.path), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "ensemble(svm+statsvm)"
    folds = [json.loads((out / f"fold-{i}" / "report.json").read_text()) for i in range(2)]
    assert report["mean"]["song_accuracy"] == pytest.approx(
        np.mean([f["song_accuracy"] for f in folds])
    )
    for i in range(2):
        assert (out / f"fold-{i}" / "svm" / "svm.skops").is_file()
        assert (out / f"fold-{i}" / "statsvm" / "summary.json").is_file()
    # train takes one model: an ensemble file is refused, naming it.
    train = ["train", "--config", str(tmp_path / "both.json"), "--no-progress"]
    assert main([*train, "--features", str(synthetic_store.path), "--run-dir", "x"]) == 2
    assert not Path("x").exists()
    # Members that split songs differently cannot form an ensemble file.
    (tmp_path / "svm3.json").write_text(json.dumps({"train": {"model": "svm", "folds": 3}}))
    (tmp_path / "bad.json").write_text(json.dumps({"members": ["svm.json", "svm3.json"]}))
    with pytest.raises(ConfigError, match="folds"):
        load_experiment(tmp_path / "bad.json")
