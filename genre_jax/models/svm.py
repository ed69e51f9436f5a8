"""The seed study's SVM baseline, on exactly the arrays the networks see, flattened.

Each segment's ``(frames, coefficients)`` features become one vector (431 x 13 = 5,603 values for
a 10 s segment); a StandardScaler and an RBF SVC (``C=1``, ``gamma='scale'``) follow. Probability
outputs come from ``CalibratedClassifierCV(SVC(...), ensemble=False)``: one SVC fitted on all the
training data, its decision values calibrated by sigmoids fitted on cross-validated decisions
(scikit-learn >= 1.9 deprecates ``SVC(probability=True)``).

Segment labels are the SVC's own vote (:func:`predict_labels`), as the seed's
``SVC(probability=True).predict`` returned; the calibrated probabilities feed song-level
aggregation.

Persistence uses skops: loading checks every type the file names against a fixed list of
scikit-learn and numpy types, so a tampered file can name no code to run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genre_jax.config import TrainConfig
from genre_jax.fileio import atomic_write_bytes

# Every type a saved pipeline may name; anything else in a file is refused unread.
TRUSTED_TYPES = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.svm._classes.SVC",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.int32",
        "builtins.slice",
    }
)


class UntrustedModelError(ValueError):
    """A saved model names types outside :data:`TRUSTED_TYPES`; it was not loaded."""


def flatten(features: np.ndarray) -> np.ndarray:
    """``(segments, frames, coefficients)`` -> ``(segments, frames * coefficients)`` float32."""
    return np.ascontiguousarray(features.reshape(features.shape[0], -1), dtype=np.float32)


def _gamma(config: TrainConfig) -> str | float:
    return config.svm_gamma if config.svm_gamma in ("scale", "auto") else float(config.svm_gamma)


def build_svm(config: TrainConfig) -> Pipeline:
    """Unfitted StandardScaler -> calibrated RBF SVC pipeline with the config's C and gamma."""
    svc = SVC(kernel="rbf", C=config.svm_c, gamma=_gamma(config))
    calibrated = CalibratedClassifierCV(svc, method="sigmoid", ensemble=False)
    return Pipeline([("scale", StandardScaler()), ("svm", calibrated)])


def fit_svm(features: np.ndarray, labels: np.ndarray, config: TrainConfig) -> Pipeline:
    """Fit the pipeline on ``(segments, frames, coefficients)`` features and integer labels."""
    return build_svm(config).fit(flatten(features), np.asarray(labels))


def predict_labels(model: Pipeline, features: np.ndarray) -> np.ndarray:
    """Labels by the SVC's own one-vs-one vote, as the seed's ``SVC(probability=True).predict``.

    The calibrated probabilities (``model.predict_proba``) come from sigmoids fitted on
    cross-validated decisions; their argmax can differ from the vote, exactly as with
    scikit-learn's ``probability=True``. Segment labels follow the seed (the vote); song-level
    aggregation uses the probabilities.
    """
    scaled = model.named_steps["scale"].transform(flatten(features))
    svc = model.named_steps["svm"].calibrated_classifiers_[0].estimator
    return np.asarray(svc.predict(scaled))


def save_svm(model: Pipeline, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` with skops, atomically."""
    atomic_write_bytes(path, sio.dumps(model))


def load_svm(path: str | os.PathLike) -> Pipeline:
    """Load a pipeline written by :func:`save_svm`, refusing any type outside the trusted list.

    Raises:
        UntrustedModelError: the file names a type we do not trust, or is not a skops file.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        named = set(sio.get_untrusted_types(data=data))
    except Exception as error:  # skops raises zipfile, JSON and key errors on corrupt files
        raise UntrustedModelError(f"{path}: not a readable skops model file ({error})") from error
    unexpected = sorted(named - TRUSTED_TYPES)
    if unexpected:
        raise UntrustedModelError(f"{path}: refuses to load untrusted types {unexpected}")
    try:
        return sio.loads(data, trusted=sorted(named))
    except Exception as error:  # same: any failure means the file is corrupt
        raise UntrustedModelError(f"{path}: corrupt skops model file ({error})") from error
