"""The SVM: the JAX distance-matrix path equals scikit-learn's own RBF path; safe loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from genre_jax.config import TrainConfig
from genre_jax.models.svm import (
    UntrustedModelError,
    fit_svm,
    flatten,
    load_svm,
    predict_labels,
    save_svm,
    squared_distances,
)


def test_squared_distances_match_numpy_float64() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 50)), rng.normal(size=(5, 50))
    reference = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(a, b, block_rows=3), reference, rtol=1e-12)


@pytest.mark.parametrize("gamma", ["scale", "auto", "0.002"])
def test_jax_backend_equals_scikit_learn_rbf(synthetic_store, gamma: str) -> None:
    x = np.asarray(synthetic_store.features)[:, ::4]  # every 4th frame keeps this test quick
    y = np.asarray(synthetic_store.labels)
    train, test = np.arange(len(y)) % 5 != 0, np.arange(len(y)) % 5 == 0
    models = {
        backend: fit_svm(x[train], y[train], TrainConfig(svm_backend=backend, svm_gamma=gamma))
        for backend in ("jax", "sklearn")
    }
    labels = {k: predict_labels(m, x[test]) for k, m in models.items()}
    probs = {k: m.predict_proba(flatten(x[test])) for k, m in models.items()}
    assert np.mean(labels["jax"] == labels["sklearn"]) == 1.0
    np.testing.assert_allclose(probs["jax"], probs["sklearn"], atol=1e-6)


def test_saved_svm_round_trips(synthetic_small, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 8, 3)), np.repeat(np.arange(6), 10)
    model = fit_svm(x, y, TrainConfig())
    save_svm(model, tmp_path / "svm.skops")
    loaded = load_svm(tmp_path / "svm.skops")
    np.testing.assert_array_equal(predict_labels(loaded, x), predict_labels(model, x))
    np.testing.assert_array_equal(loaded.predict_proba(flatten(x)), model.predict_proba(flatten(x)))


def test_untrusted_or_corrupt_files_are_refused(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.skops"
    hostile.write_bytes(sio.dumps({"payload": os.system}))
    with pytest.raises(UntrustedModelError, match="untrusted types"):
        load_svm(hostile)
    broken = tmp_path / "broken.skops"
    broken.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(UntrustedModelError, match=r"broken\.skops"):
        load_svm(broken)
