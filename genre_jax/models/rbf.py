"""RBF support-vector classifiers shared by the pipeline models (``svm``, ``statsvm``,
``musicnnsvm``): the RBF kernel matrix computed by JAX, calibrated SVCs, and the figures a run
reports of them.

:class:`GramRBFSVM` is ``CalibratedClassifierCV(SVC(kernel='rbf', C, gamma), ensemble=False)``
with the training distances computed as one float64 matmul by JAX (on the accelerator when
there is one) instead of libsvm's kernel evaluations; libsvm's solver and the calibration run on
them unchanged, so its predictions are scikit-learn's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from genre_jax.settings import ConfigError

TRUSTED_TYPES = frozenset(
    {
        "genre_jax.models.rbf.GramRBFSVM",
        "genre_jax.models.rbf.SupportVectorRBF",
        # Pipelines saved before this module was split out of genre_jax.models.svm (2026-12).
        "genre_jax.models.svm.GramRBFSVM",
        "genre_jax.models.svm.SupportVectorRBF",
    }
)


def flatten(features: np.ndarray) -> np.ndarray:
    """``(segments, frames, coefficients)`` -> ``(segments, frames * coefficients)`` float32."""
    return np.ascontiguousarray(features.reshape(features.shape[0], -1), dtype=np.float32)


def check_gamma(gamma: str, what: str = "model setting gamma") -> str | float:
    """``gamma`` as scikit-learn takes it: ``'scale'``, ``'auto'`` or a positive number."""
    if gamma in ("scale", "auto"):
        return gamma
    try:
        value = float(gamma)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{what}={gamma!r}: 'scale', 'auto' or a positive number")
    return value


# --- the RBF kernel matrix computed by JAX ---------------------------------------------------


@contextlib.contextmanager
def _float64() -> Iterator[None]:
    """JAX in float64 inside the block (libsvm computes its kernel in double precision)."""
    with jax.enable_x64(True):
        yield


@jax.jit
def _distance_block(a: jax.Array, b: jax.Array, b_sq: jax.Array) -> jax.Array:
    distances = jnp.sum(a * a, axis=1)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return jnp.maximum(distances, 0.0)


def squared_distances(a: np.ndarray, b: np.ndarray, block_rows: int = 2048) -> np.ndarray:
    """``||a_i - b_j||^2`` as a ``(len(a), len(b))`` float64 array, computed by JAX.

    One float64 matmul per block of ``block_rows`` rows of ``a``, expanded as
    ``|a|^2 + |b|^2 - 2 a.b`` as libsvm expands its RBF kernel, on the default device.
    """
    with _float64():
        b64 = jnp.asarray(b, jnp.float64)
        b_sq = jnp.sum(b64 * b64, axis=1)
        blocks = [
            np.asarray(_distance_block(jnp.asarray(a[i : i + block_rows], jnp.float64), b64, b_sq))
            for i in range(0, len(a), block_rows)
        ]
    return np.concatenate(blocks) if blocks else np.zeros((0, len(b)))


def resolve_gamma(gamma: str | float, n_values: int, mean: float, mean_square: float) -> float:
    """scikit-learn's RBF ``gamma`` from the training data's size and moments.

    ``'scale'``: 1 / (features * variance of all values); ``'auto'``: 1 / features.
    ``n_values`` is the number of features per row; ``mean`` and ``mean_square`` are over every
    value of the training matrix.
    """
    if gamma == "scale":
        variance = mean_square - mean * mean
        return 1.0 / (n_values * variance) if variance > 0 else 1.0
    if gamma == "auto":
        return 1.0 / n_values
    return float(gamma)


class _SharedDistances:
    """Training distances and row moments, shared (never copied) by the calibration's clones."""

    def __init__(
        self, distances: np.ndarray, row_sums: np.ndarray, row_squares: np.ndarray, n_features: int
    ) -> None:
        self.distances = distances
        self.row_sums = row_sums
        self.row_squares = row_squares
        self.n_features = n_features

    def __deepcopy__(self, memo: dict) -> _SharedDistances:
        return self


class _IndexedRBFSVC(ClassifierMixin, BaseEstimator):
    """Training-time SVC: rows are indices into shared distances; gamma from its own rows.

    Exactly what ``SVC(kernel='rbf', gamma=...)`` computes when fitted on those rows, so the
    calibration's folds see the same kernels as with scikit-learn's own RBF path.
    """

    def __init__(
        self, shared: _SharedDistances | None = None, C: float = 1.0, gamma: str | float = "scale"
    ) -> None:
        self.shared = shared
        self.C = C
        self.gamma = gamma

    def fit(self, rows: np.ndarray, y: np.ndarray) -> _IndexedRBFSVC:
        shared, self.rows_ = self.shared, np.asarray(rows)[:, 0].astype(np.int64)
        count = len(self.rows_) * shared.n_features
        self.gamma_ = resolve_gamma(
            self.gamma,
            shared.n_features,
            shared.row_sums[self.rows_].sum() / count,
            shared.row_squares[self.rows_].sum() / count,
        )
        self.svc_ = SVC(kernel="precomputed", C=self.C).fit(self._kernel(self.rows_), y)
        self.classes_ = self.svc_.classes_
        return self

    def _kernel(self, rows: np.ndarray) -> np.ndarray:
        return np.exp(-self.gamma_ * self.shared.distances[np.ix_(rows, self.rows_)])

    def decision_function(self, rows: np.ndarray) -> np.ndarray:
        return self.svc_.decision_function(self._kernel(np.asarray(rows)[:, 0].astype(np.int64)))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.svc_.predict(self._kernel(np.asarray(rows)[:, 0].astype(np.int64)))


class SupportVectorRBF(ClassifierMixin, BaseEstimator):
    """Prediction-time SVC: kernel values against the kept support vectors only.

    The precomputed-kernel SVC reads only its support columns, so the others stay zero.
    """

    def __init__(
        self,
        svc: SVC | None = None,
        support_vectors: np.ndarray | None = None,
        n_train: int = 0,
        gamma: float = 1.0,
    ) -> None:
        self.svc = svc
        self.support_vectors = support_vectors
        self.n_train = n_train
        self.gamma = gamma

    @property
    def classes_(self) -> np.ndarray:
        return self.svc.classes_

    def kernel(self, x: np.ndarray) -> np.ndarray:
        full = np.zeros((len(x), self.n_train))
        distances = squared_distances(np.asarray(x, np.float64), self.support_vectors)
        full[:, self.svc.support_] = np.exp(-self.gamma * distances)
        return full

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.svc.decision_function(self.kernel(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.svc.predict(self.kernel(x))


class GramRBFSVM(ClassifierMixin, BaseEstimator):
    """Calibrated RBF SVC whose distance matrix JAX computes; libsvm and the calibration run
    on it unchanged.

    The same model as ``CalibratedClassifierCV(SVC(kernel='rbf', C, gamma), ensemble=False)``:
    the same libsvm solver, the same calibration folds, each fold's SVC with the gamma its own
    rows give. The training squared distances are one float64 matmul (on the accelerator when
    there is one) instead of libsvm's kernel evaluations; prediction keeps the support vectors.
    ``cv`` is the calibration's number of stratified folds (:func:`calibration_folds`).
    """

    cv = 5  # what pipelines saved before it was a parameter were calibrated with

    def __init__(self, C: float = 1.0, gamma: str | float = "scale", cv: int = 5) -> None:
        self.C = C
        self.gamma = gamma
        self.cv = cv

    def fit(self, x: np.ndarray, y: np.ndarray) -> GramRBFSVM:
        x = np.asarray(x, np.float64)
        shared = _SharedDistances(
            squared_distances(x, x), x.sum(axis=1), np.square(x).sum(axis=1), x.shape[1]
        )
        inner = _IndexedRBFSVC(shared, C=self.C, gamma=self.gamma)
        calibrated = CalibratedClassifierCV(inner, method="sigmoid", cv=self.cv, ensemble=False)
        calibrated.fit(np.arange(len(x))[:, None], y)
        fitted = calibrated.calibrated_classifiers_[0].estimator
        final = SupportVectorRBF(fitted.svc_, x[fitted.svc_.support_], len(x), fitted.gamma_)
        # Prediction goes through scikit-learn's calibrated classifier with the support-vector
        # SVC in place of the index-based one; the training distances are dropped.
        calibrated.calibrated_classifiers_[0].estimator = final
        calibrated.estimator = SVC(kernel="precomputed", C=self.C)
        self.calibrated_ = calibrated
        self.classes_ = calibrated.classes_
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.calibrated_.predict_proba(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.calibrated_.predict(x)


def calibrated_svc(c: float, gamma: str) -> CalibratedClassifierCV:
    """RBF SVC whose probabilities are isotonic calibrations averaged over 5 folds."""
    return CalibratedClassifierCV(
        SVC(kernel="rbf", C=c, gamma=check_gamma(gamma)), method="isotonic", ensemble=True
    )


def calibration_folds(pipeline: Pipeline, labels: np.ndarray, name: str) -> Pipeline:
    """Set the calibration's folds of ``pipeline``'s ``svm`` step for ``labels``: stratified
    folds need at least 2 segments of every genre, and no more folds than the rarest has."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    smallest = int(counts.min()) if len(counts) else 0
    if smallest < 2:
        raise ConfigError(
            f"model={name!r}: every genre needs at least 2 training segments for the "
            f"probability calibration; the rarest has {smallest}"
        )
    pipeline.named_steps["svm"].set_params(cv=min(5, smallest))
    return pipeline


def final_svc(model: Pipeline) -> SVC:
    """The SVC fitted on all the training data (inside the calibration) of a fitted pipeline."""
    step = model.named_steps["svm"]
    if isinstance(step, GramRBFSVM):
        return step.calibrated_.calibrated_classifiers_[0].estimator.svc
    return step.calibrated_classifiers_[0].estimator


def ensemble_svcs(model: Pipeline) -> list[SVC] | None:
    """The SVCs of a calibration ensemble (``statsvm``, ``musicnnsvm``; None for a single SVC)."""
    step = model.named_steps["svm"]
    if isinstance(step, CalibratedClassifierCV) and step.ensemble:
        return [c.estimator for c in step.calibrated_classifiers_]
    return None


def support_vector_count(model: Pipeline) -> int:
    """Support vectors kept: of the final SVC, or summed over the calibration ensemble's SVCs."""
    svcs = ensemble_svcs(model) or [final_svc(model)]
    return int(sum(svc.n_support_.sum() for svc in svcs))


def stored_values(model: Pipeline, input_width: int) -> int:
    """Values a fitted model's SVCs keep to predict: support vectors (``input_width`` values
    each, the width the SVC reads) and dual coefficients, over every SVC it holds."""
    svcs = ensemble_svcs(model) or [final_svc(model)]
    return int(sum(svc.n_support_.sum() * input_width + svc.dual_coef_.size for svc in svcs))


def describe(model: Pipeline) -> dict[str, int]:
    """A fitted RBF pipeline's summary figures: support vectors and values kept to predict."""
    width = model.named_steps["scale"].n_features_in_  # what the SVC reads
    return {
        "support_vectors": support_vector_count(model),
        "parameters": stored_values(model, width),
    }
