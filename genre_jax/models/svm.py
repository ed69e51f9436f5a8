"""The seed study's SVM baseline, on exactly the arrays the networks see, flattened.

Each segment's ``(frames, coefficients)`` features become one vector (431 x 13 = 5,603 values for
a 10 s segment); a StandardScaler and an RBF SVC (``C=1``, ``gamma='scale'``) follow. Probability
outputs come from ``CalibratedClassifierCV(SVC(...), ensemble=False)``: one SVC fitted on all the
training data, its decision values calibrated by sigmoids fitted on cross-validated decisions
(scikit-learn >= 1.9 deprecates ``SVC(probability=True)``).

Segment labels are the SVC's own vote (:func:`predict_labels`), as the seed's
``SVC(probability=True).predict`` returned; the calibrated probabilities feed song-level
aggregation.

``statsvm`` (ours) is an RBF SVM on summary statistics of the same segments instead of their
flattened frames (:class:`SummaryStatistics`: 3 statistics per band, their cepstral shape and
the modulation spectrum of 16 band groups, 620 values for 128 log-mel bands; with
``harmonic_percussive`` the same again for the segment's harmonic and percussive parts, 1,860
values). Its probabilities come from isotonic calibration averaged over the 5 calibration folds
(``CalibratedClassifierCV(method='isotonic', ensemble=True)``), and its labels are their argmax:
on the gtzan-dev excerpts this argmax comes within 1-2.5 points of the SVC's vote (69.4 vs
70.4 % on split seed 0, with the harmonic and percussive statistics), where a single sigmoid
calibration lost 5. libsvm computes its kernel (the statistics are small; ``svm_backend``
applies to ``svm``).

Persistence uses skops: loading checks every type the file names against a fixed list of
scikit-learn and numpy types, so a tampered file can name no code to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import skops.io as sio
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.fileio import atomic_write_bytes, atomic_write_json

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
        "genre_jax.models.svm.GramRBFSVM",
        "genre_jax.models.svm.SupportVectorRBF",
        "genre_jax.models.svm.SummaryStatistics",
        "genre_jax.models.musicnn.MusicnnEmbedding",
        "sklearn.isotonic.IsotonicRegression",
    }
)


class UntrustedModelError(ValueError):
    """A saved model names types outside :data:`TRUSTED_TYPES`; it was not loaded."""


def flatten(features: np.ndarray) -> np.ndarray:
    """``(segments, frames, coefficients)`` -> ``(segments, frames * coefficients)`` float32."""
    return np.ascontiguousarray(features.reshape(features.shape[0], -1), dtype=np.float32)


def _gamma(config: TrainConfig) -> str | float:
    return config.svm_gamma if config.svm_gamma in ("scale", "auto") else float(config.svm_gamma)


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
    """

    def __init__(self, C: float = 1.0, gamma: str | float = "scale") -> None:
        self.C = C
        self.gamma = gamma

    def fit(self, x: np.ndarray, y: np.ndarray) -> GramRBFSVM:
        x = np.asarray(x, np.float64)
        shared = _SharedDistances(
            squared_distances(x, x), x.sum(axis=1), np.square(x).sum(axis=1), x.shape[1]
        )
        inner = _IndexedRBFSVC(shared, C=self.C, gamma=self.gamma)
        calibrated = CalibratedClassifierCV(inner, method="sigmoid", ensemble=False)
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


class SummaryStatistics(TransformerMixin, BaseEstimator):
    """Flattened segments ``(n, frames * coefficients)`` -> their summary statistics.

    :func:`genre_jax.models.summary.summary_statistics` computed by JAX (float32) in blocks of
    ``block`` segments; the modulation spectrum is left out when ``modulation_groups`` does
    not divide the coefficients, and ``cepstral`` is capped at the coefficient count.
    """

    def __init__(
        self,
        frames: int = 1,
        coefficients: int = 1,
        modulation_groups: int = 16,
        modulation_bins: int = 11,
        cepstral: int = 20,
        block: int = 256,
        harmonic_percussive: bool = False,
    ) -> None:
        self.frames = frames
        self.coefficients = coefficients
        self.modulation_groups = modulation_groups
        self.modulation_bins = modulation_bins
        self.cepstral = cepstral
        self.block = block
        self.harmonic_percussive = harmonic_percussive

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> SummaryStatistics:
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        from genre_jax.models.summary import summary_statistics

        groups = self.modulation_groups
        if not groups or self.coefficients % groups:
            groups = 0
        cepstral = min(self.cepstral, self.coefficients)
        # Models saved before the option existed have no such attribute: they had none.
        parts = getattr(self, "harmonic_percussive", False)
        x = np.asarray(x, np.float32).reshape(len(x), self.frames, self.coefficients)
        blocks = [
            np.asarray(
                summary_statistics(
                    jnp.asarray(x[i : i + self.block]),
                    groups,
                    self.modulation_bins,
                    cepstral,
                    parts,
                ),
                np.float64,
            )
            for i in range(0, len(x), self.block)
        ]
        return np.concatenate(blocks) if blocks else np.zeros((0, 0))


def _calibrated_svc(config: TrainConfig) -> CalibratedClassifierCV:
    """RBF SVC whose probabilities are isotonic calibrations averaged over 5 folds."""
    svc = SVC(kernel="rbf", C=config.svm_c, gamma=_gamma(config))
    return CalibratedClassifierCV(svc, method="isotonic", ensemble=True)


def build_statsvm(config: TrainConfig, frames: int, coefficients: int) -> Pipeline:
    """Unfitted ``statsvm``: summary statistics -> StandardScaler -> isotonic-calibrated RBF SVC."""
    parts = config.harmonic_percussive
    summary = SummaryStatistics(frames, coefficients, harmonic_percussive=parts)
    return Pipeline(
        [("summary", summary), ("scale", StandardScaler()), ("svm", _calibrated_svc(config))]
    )


def build_musicnnsvm(config: TrainConfig, frames: int, coefficients: int) -> Pipeline:
    """Unfitted ``musicnnsvm``: pretrained musicnn embeddings -> StandardScaler -> isotonic-
    calibrated RBF SVC (:mod:`genre_jax.models.musicnn`)."""
    from genre_jax.models.musicnn import MusicnnEmbedding

    embed = MusicnnEmbedding(frames, coefficients)
    return Pipeline(
        [("embed", embed), ("scale", StandardScaler()), ("svm", _calibrated_svc(config))]
    )


def final_svc(model: Pipeline) -> SVC:
    """The SVC fitted on all the training data (inside the calibration) of a fitted pipeline."""
    step = model.named_steps["svm"]
    if isinstance(step, GramRBFSVM):
        return step.calibrated_.calibrated_classifiers_[0].estimator.svc
    return step.calibrated_classifiers_[0].estimator


def build_svm(config: TrainConfig) -> Pipeline:
    """Unfitted StandardScaler -> calibrated RBF SVC pipeline with the config's C and gamma.

    ``config.svm_backend``: ``jax`` computes the kernel matrix with JAX (:class:`GramRBFSVM`);
    ``sklearn`` leaves it to libsvm. Both give the same predictions.
    """
    if config.svm_backend == "jax":
        svm = GramRBFSVM(C=config.svm_c, gamma=_gamma(config))
    else:
        svc = SVC(kernel="rbf", C=config.svm_c, gamma=_gamma(config))
        svm = CalibratedClassifierCV(svc, method="sigmoid", ensemble=False)
    return Pipeline([("scale", StandardScaler()), ("svm", svm)])


def fit_svm(features: np.ndarray, labels: np.ndarray, config: TrainConfig) -> Pipeline:
    """Fit the pipeline of ``config.model`` (``svm``, ``statsvm`` or ``musicnnsvm``) on
    ``(segments, frames, coefficients)`` features and integer labels."""
    builders = {"statsvm": build_statsvm, "musicnnsvm": build_musicnnsvm}
    if config.model in builders:
        pipeline = builders[config.model](config, *features.shape[1:])
        # Calibration folds are stratified: no more folds than the rarest genre has segments.
        counts = np.unique(np.asarray(labels), return_counts=True)[1]
        smallest = int(counts.min()) if len(counts) else 0
        if smallest < 2:
            raise ConfigError(
                f"model={config.model!r}: every genre needs at least 2 training segments for the "
                f"probability calibration; the rarest has {smallest}"
            )
        pipeline.named_steps["svm"].set_params(cv=min(5, smallest))
    else:
        pipeline = build_svm(config)
    return pipeline.fit(flatten(features), np.asarray(labels))


def _ensemble_svcs(model: Pipeline) -> list[SVC] | None:
    """The SVCs of a calibration ensemble (``statsvm``, ``musicnnsvm``; None for a single SVC)."""
    step = model.named_steps["svm"]
    if isinstance(step, CalibratedClassifierCV) and step.ensemble:
        return [c.estimator for c in step.calibrated_classifiers_]
    return None


def support_vector_count(model: Pipeline) -> int:
    """Support vectors kept: of the final SVC, or summed over the calibration ensemble's SVCs."""
    svcs = _ensemble_svcs(model) or [final_svc(model)]
    return int(sum(svc.n_support_.sum() for svc in svcs))


def stored_values(model: Pipeline, input_width: int) -> int:
    """Values a fitted model keeps to predict: support vectors (``input_width`` values each,
    the width the SVC reads) and dual coefficients, over every SVC it holds, and the weights
    of a pretrained network in front of them (``musicnnsvm``)."""
    svcs = _ensemble_svcs(model) or [final_svc(model)]
    count = sum(svc.n_support_.sum() * input_width + svc.dual_coef_.size for svc in svcs)
    if "embed" in model.named_steps:
        count += sum(v.size for v in model.named_steps["embed"].weights_.values())
    return int(count)


def predict_labels(model: Pipeline, features: np.ndarray) -> np.ndarray:
    """Labels by the SVC's own one-vs-one vote, as the seed's ``SVC(probability=True).predict``.

    The calibrated probabilities (``model.predict_proba``) come from sigmoids fitted on
    cross-validated decisions; their argmax can differ from the vote, exactly as with
    scikit-learn's ``probability=True``. Segment labels follow the seed (the vote); song-level
    aggregation uses the probabilities. ``statsvm`` and ``musicnnsvm`` have no single SVC (their
    calibration averages five): their labels are the argmax of their probabilities.
    """
    if _ensemble_svcs(model) is not None:  # statsvm, musicnnsvm: no single SVC
        return np.asarray(model.predict(flatten(features)))
    step = model.named_steps["svm"]
    scaled = model[:-1].transform(flatten(features))
    final = (
        step.calibrated_.calibrated_classifiers_[0].estimator
        if isinstance(step, GramRBFSVM)
        else step.calibrated_classifiers_[0].estimator
    )
    return np.asarray(final.predict(scaled))


def save_svm(model: Pipeline, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` with skops, atomically.

    In a run directory (a ``config.json`` beside ``path``) a sidecar ``<stem>.json`` follows,
    also atomically: the SHA-256 of the file's bytes, the run's model, genres, train and feature
    settings, the digests of its ``config.json`` and a binding digest over them all
    (:func:`genre_jax.checkpoint.bind`), which :func:`load_svm` checks. Without a
    ``config.json`` no sidecar is written.
    """
    path = Path(path)
    data = sio.dumps(model)
    atomic_write_bytes(path, data)
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        return
    from genre_jax.checkpoint import bind, read_run_config

    config = read_run_config(config_path, path)
    train = config.get("train")
    record = {
        "skops_sha256": hashlib.sha256(data).hexdigest(),
        "model": train.get("model") if isinstance(train, dict) else None,
        "genres": config.get("genres"),
        "train_config": train,
        "feature_config": config.get("features"),
        "feature_hash": config.get("feature_hash"),
    }
    atomic_write_json(path.with_suffix(".json"), bind(record, config_path, "skops_sha256"))


def load_svm(path: str | os.PathLike) -> Pipeline:
    """Load a pipeline written by :func:`save_svm`, refusing any type outside the trusted list.

    When the sidecar :func:`save_svm` writes in a run directory is there, the file's bytes,
    the sidecar and the run's ``config.json`` must be those it recorded (a file written before
    sidecars existed loads without these checks).

    Raises:
        UntrustedModelError: the file names a type we do not trust, or is not a skops file.
        CheckpointError: the sidecar was edited, the file is not the one it records (replaced,
            tampered), or ``config.json`` was edited since (the differing field named).
    """
    path = Path(path)
    data = path.read_bytes()
    if path.with_suffix(".json").is_file():
        _check_sidecar(path, data)
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


def _check_sidecar(path: Path, data: bytes) -> None:
    """Refuse ``data`` (the bytes of ``path``) unless its sidecar is intact, records these
    bytes, and the ``config.json`` beside it is the one it was saved with."""
    from genre_jax.checkpoint import (
        CheckpointError,
        check_binding,
        check_config,
        read_run_config,
    )

    sidecar = path.with_suffix(".json")
    record = read_run_config(sidecar, path)
    config_path = path.parent / "config.json"
    config = read_run_config(config_path, path) if config_path.is_file() else None
    check_binding(record, "skops_sha256", config, sidecar, "sidecar")
    if hashlib.sha256(data).hexdigest() != record.get("skops_sha256"):
        raise CheckpointError(
            f"{path}: its bytes are not those its sidecar {sidecar.name} records (replaced, "
            "tampered or corrupt)"
        )
    check_config(record, config, config_path, path)
