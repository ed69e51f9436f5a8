"""The SVM: the JAX distance-matrix path equals scikit-learn's own RBF path; safe loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from genre_jax.config import TrainConfig
from genre_jax.fit_pipeline import fit_pipeline, segment_labels
from genre_jax.models import get_spec
from genre_jax.models.rbf import flatten, squared_distances
from genre_jax.models.sklearn_io import UntrustedModelError, load_pipeline, save_pipeline
from genre_jax.models.svm import SVMSettings, vote_labels


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
        backend: fit_pipeline(
            x[train],
            y[train],
            TrainConfig(model="svm", model_settings=SVMSettings(backend=backend, gamma=gamma)),
        )
        for backend in ("jax", "sklearn")
    }
    labels = {k: vote_labels(m, flatten(x[test])) for k, m in models.items()}
    probs = {k: m.predict_proba(flatten(x[test])) for k, m in models.items()}
    assert np.mean(labels["jax"] == labels["sklearn"]) == 1.0
    np.testing.assert_allclose(probs["jax"], probs["sklearn"], atol=1e-6)


def test_saved_svm_round_trips(synthetic_small, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 8, 3)), np.repeat(np.arange(6), 10)
    model = fit_pipeline(x, y, TrainConfig(model="svm"))
    save_pipeline(model, tmp_path / "svm.skops")
    loaded = load_pipeline(tmp_path / "svm.skops")
    np.testing.assert_array_equal(vote_labels(loaded, flatten(x)), vote_labels(model, flatten(x)))
    np.testing.assert_array_equal(loaded.predict_proba(flatten(x)), model.predict_proba(flatten(x)))


def test_untrusted_or_corrupt_files_are_refused(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.skops"
    hostile.write_bytes(sio.dumps({"payload": os.system}))
    with pytest.raises(UntrustedModelError, match="untrusted types"):
        load_pipeline(hostile)
    broken = tmp_path / "broken.skops"
    broken.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(UntrustedModelError, match=r"broken\.skops"):
        load_pipeline(broken)


def numpy_summary(x: np.ndarray, groups: int, bins: int, cepstral: int) -> np.ndarray:
    """The summary statistics in float64 numpy/scipy, written independently of the JAX code."""
    from scipy.fft import dct

    def spread(a: np.ndarray) -> np.ndarray:
        return np.sqrt(a.var(axis=1) + 1e-5)

    parts = [x.mean(1), spread(x), spread(np.diff(x, axis=1))]
    c = dct(x, type=2, norm="ortho", axis=2)[:, :, :cepstral]
    parts += [c.mean(1), spread(c), spread(np.diff(c, axis=1))]
    g = x.reshape(len(x), x.shape[1], groups, -1).mean(3)
    g = g - g.mean(1, keepdims=True)
    parts.append(np.log1p(np.abs(np.fft.rfft(g, axis=1))[:, 1 : bins + 1]).reshape(len(x), -1))
    return np.concatenate(parts, 1)


def test_summary_statistics_match_numpy_float64() -> None:
    from genre_jax.models.statsvm import SummaryStatistics

    rng = np.random.default_rng(2)
    x = (rng.normal(size=(9, 87, 32)) * 10 - 40).astype(np.float32)  # dB-like values
    got = SummaryStatistics(87, 32, modulation_groups=8, cepstral=5, block=4).transform(flatten(x))
    reference = numpy_summary(x.astype(np.float64), groups=8, bins=11, cepstral=5)
    assert got.shape == (9, 3 * 32 + 3 * 5 + 8 * 11)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=2e-4)


def test_statsvm_equals_scikit_learn_on_numpy_statistics(synthetic_store, tmp_path: Path) -> None:
    """Our pipeline against a plain scikit-learn one on independently computed statistics."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x = np.asarray(synthetic_store.features)  # 13 MFCCs: no modulation groups, 13 DCT values
    y = np.asarray(synthetic_store.labels)
    train, test = np.arange(len(y)) % 5 != 0, np.arange(len(y)) % 5 == 0
    model = fit_pipeline(x[train], y[train], TrainConfig.from_flat({"model": "statsvm", "c": 3.0}))
    stats = numpy_summary(x.astype(np.float64), groups=1, bins=0, cepstral=13)
    stats = stats[:, : 3 * 13 + 3 * 13]  # no modulation spectrum for 13 coefficients
    scaler = StandardScaler().fit(stats[train])
    reference = CalibratedClassifierCV(SVC(C=3.0), method="isotonic", ensemble=True)
    reference.fit(scaler.transform(stats[train]), y[train])
    expected = reference.predict_proba(scaler.transform(stats[test]))
    got = model.predict_proba(flatten(x[test]))
    labels = segment_labels(get_spec("statsvm"), model, x[test])
    assert np.mean(labels == expected.argmax(1)) >= 0.95
    # float32 statistics against float64 ones: measured 3e-4 apart, agreement 1.0.
    np.testing.assert_allclose(got, expected, atol=5e-3)
    save_pipeline(model, tmp_path / "statsvm.skops")  # its transformer is on the trusted list
    np.testing.assert_array_equal(
        load_pipeline(tmp_path / "statsvm.skops").predict_proba(flatten(x[test])), got
    )


def test_statsvm_names_a_genre_too_small_to_calibrate() -> None:
    from genre_jax.config import ConfigError

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(13, 20, 16)), np.array([0] * 6 + [1] * 6 + [2])
    with pytest.raises(ConfigError, match="at least 2 training segments"):
        fit_pipeline(x, y, TrainConfig(model="statsvm", time_flip=False))
    model = fit_pipeline(x[:12], y[:12], TrainConfig(model="statsvm", time_flip=False))
    assert model.named_steps["svm"].cv == 5
