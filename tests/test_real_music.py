"""Learning on real music (slow; run with ``pytest -m slow``): the seed's recipes on the
gtzan-dev excerpts, 2 s segments, 5-fold song-level stratified cross-validation (seed 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genre_jax.config import FeatureConfig, TrainConfig
from genre_jax.inference import load_predictor
from genre_jax.runner import make_split, train_run
from genre_jax.store import prepare
from tests.conftest import shared

pytestmark = pytest.mark.slow

REFERENCE_SVM = 0.599  # ../shared/data/README.md: seed's SVM recipe, same protocol


def crossval(store, run_root: Path, **overrides) -> list[float]:
    accuracies = []
    for fold in range(5):
        config = TrainConfig(split="kfold", folds=5, fold=fold, **overrides)
        run = run_root / f"fold{fold}"
        train_run(store.path, run, config, progress=False, log=lambda _: None)
        index = make_split(store, config).segment_indices("test", store.tracks)
        predicted = load_predictor(run).predict(np.asarray(store.features[index]))
        accuracies.append(float(np.mean(predicted == store.labels[index])))
    return accuracies


def test_svm_reproduces_the_reference_on_gtzan_dev(tmp_path: Path) -> None:
    store = prepare(
        shared("gtzan-dev"),
        tmp_path / "features",
        FeatureConfig(segment_seconds=2.0),
        progress=False,
        log=lambda _: None,
    )
    assert len(store) == 409  # every excerpt is 2 to 3 s: one full 2 s segment each
    # The reference recipe (scaler + RBF SVC, C=1, gamma='scale') lists no augmentation.
    accuracies = crossval(store, tmp_path, model="svm", val_per_genre=0, time_flip=False)
    mean = float(np.mean(accuracies))
    print(f"SVM 5-fold accuracy {100 * mean:.1f} % (+-{100 * np.std(accuracies):.1f})")
    assert abs(mean - REFERENCE_SVM) <= 0.03, f"{mean:.3f} vs reference {REFERENCE_SVM}"
