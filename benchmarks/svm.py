"""SVM baseline: fit and prediction time on GTZAN-shaped flattened MFCCs (5,603 values each).

The data are random but class-structured: ten class means plus unit Gaussian noise, scaled so
that the RBF SVM reaches roughly the accuracy it has on real GTZAN MFCCs (about 60 %), which
makes nearly every training point a support vector, as on the real data. GTZAN size is 4,752
training segments (2,376 doubled by the time flip) and 594 test segments; the full fit takes
minutes on a small CPU, so the default run fits ``Options.svm_train`` segments and every row
names the size it used.

Each way of fitting the SVM is one :class:`SvmVariant` in :data:`VARIANTS` (today libsvm's own
kernel, ``sklearn-rbf``, and the Gram matrix computed by JAX, ``jax-gram``; both the pipeline of
:mod:`genre_jax.models.svm`, fitted by :func:`genre_jax.fit_pipeline.fit_pipeline` with its
``backend`` setting); a new path is one more entry and gets the same rows on the same
data: fit seconds, label and probability throughput, test accuracy and support vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from benchmarks.common import CLASSES, COEFFS, FRAMES, GTZAN_TEST, GTZAN_TRAIN, Options
from benchmarks.timing import Row, progress, ratio, report, time_call
from genre_jax.config import TrainConfig
from genre_jax.fit_pipeline import fit_pipeline, segment_labels
from genre_jax.models import get_spec, rbf

CLASS_SEPARATION = 0.05  # scale of the class means against unit noise (about 60 % accuracy)


@dataclass(frozen=True)
class SvmVariant:
    """One way of fitting and applying the SVM.

    Attributes:
        name: short tag shown in the rows (``sklearn-rbf``, ``jax-gram`` ...).
        description: what the variant computes, for the table's setting column.
        fit: ``fit(features, labels, config) -> model`` on ``(n, frames, coeffs)`` features.
        labels: ``labels(model, features) -> (n,)`` segment labels.
        proba: ``proba(model, features) -> (n, classes)`` probabilities.
        describe: optional facts about a fitted model (support vectors ...) for ``extra``.
    """

    name: str
    description: str
    fit: Callable[[np.ndarray, np.ndarray, TrainConfig], Any]
    labels: Callable[[Any, np.ndarray], np.ndarray]
    proba: Callable[[Any, np.ndarray], np.ndarray]
    describe: Callable[[Any], dict[str, Any]] = field(default=lambda model: {})


def _pipeline_variant(name: str, backend: str, description: str) -> SvmVariant:
    """A variant of :mod:`genre_jax.models.svm`'s pipeline, chosen by its ``backend``
    setting."""

    def fit(features: np.ndarray, labels: np.ndarray, config: TrainConfig) -> Any:
        settings = replace(config.model_settings, backend=backend)
        return fit_pipeline(features, labels, replace(config, model_settings=settings))

    def labels(model: Any, features: np.ndarray) -> np.ndarray:
        return segment_labels(get_spec("svm"), model, features)  # the seed's vote

    def proba(model: Any, features: np.ndarray) -> np.ndarray:
        return model.predict_proba(rbf.flatten(features))

    def describe(model: Any) -> dict[str, Any]:
        return {"support_vectors": int(rbf.final_svc(model).n_support_.sum())}

    return SvmVariant(name, description, fit, labels, proba, describe)


VARIANTS: dict[str, SvmVariant] = {
    "sklearn-rbf": _pipeline_variant(
        "sklearn-rbf",
        "sklearn",
        "StandardScaler + CalibratedClassifierCV(SVC rbf, ensemble=False); libsvm kernel",
    ),
    "jax-gram": _pipeline_variant(
        "jax-gram",
        "jax",
        "StandardScaler + calibrated SVC on a float64 RBF Gram matrix computed by JAX",
    ),
}


def make_data(
    n_train: int, n_test: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class-structured features ``(n, 431, 13)`` float32 and balanced labels, train and test."""
    rng = np.random.default_rng(seed)
    means = CLASS_SEPARATION * rng.standard_normal((CLASSES, FRAMES, COEFFS))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % CLASSES).astype(np.int32)
        noise = rng.standard_normal((n, FRAMES, COEFFS), dtype=np.float32)
        return (means[labels] + noise).astype(np.float32), labels

    return *draw(n_train), *draw(n_test)


def bench_variant(variant: SvmVariant, data: tuple[np.ndarray, ...], options: Options) -> list[Row]:
    """Fit seconds, label and probability throughput of one variant on ``data``."""
    x_train, y_train, x_test, y_test = data
    config = TrainConfig(model="svm")
    fitted: dict[str, Any] = {}

    def fit() -> None:
        fitted["model"] = variant.fit(x_train, y_train, config)

    setting = {
        "variant": variant.name,
        "pipeline": variant.description,
        "train": f"{len(y_train)} x {FRAMES * COEFFS}",
        "test": len(y_test),
        "classes": CLASSES,
        "C": config.model_settings.c,
        "gamma": config.model_settings.gamma,
        "gtzan_size": len(y_train) == GTZAN_TRAIN and len(y_test) == GTZAN_TEST,
    }
    progress(f"svm {variant.name}: fit on {len(y_train)} segments ({options.svm_repeats} fits)")
    fit_timing = time_call(fit, options.svm_repeats, warmup=0)
    model = fitted["model"]
    accuracy = float(np.mean(variant.labels(model, x_test) == y_test))
    extra = {"test_accuracy": accuracy, **variant.describe(model)}
    tag = f"{variant.name}, {len(y_train)} train"
    fit_row = Row.duration("svm", f"svm fit ({tag})", "s", fit_timing, setting=setting, extra=extra)
    report(fit_row)
    rows = [fit_row]
    for what, fn in (("labels", variant.labels), ("proba", variant.proba)):
        progress(f"svm {variant.name}: predict {what} on {len(y_test)} segments")
        timing = time_call(lambda fn=fn: fn(model, x_test), options.repeats)
        name = f"svm predict {what} ({tag})"
        rows.append(Row.rate("svm", name, "segments/s", timing, len(y_test), setting=setting))
        report(rows[-1])
    return rows


def run(options: Options, variants: tuple[str, ...] | None = None) -> tuple[list[Row], list[dict]]:
    """Every variant (or those named) on one shared data set of ``Options.svm_train`` segments,
    then the variants of ``Options.svm_gtzan_variants`` again at GTZAN size."""
    data = make_data(options.svm_train, options.svm_test)
    chosen = variants or tuple(VARIANTS)
    by_variant = {name: bench_variant(VARIANTS[name], data, options) for name in chosen}
    ratios = []
    if {"jax-gram", "sklearn-rbf"} <= set(by_variant):
        for ours, theirs in zip(by_variant["jax-gram"], by_variant["sklearn-rbf"], strict=True):
            what = ours.name.split(" (")[0]
            ratios.append(ratio(f"{what}: jax-gram / sklearn-rbf", ours, theirs))
    rows = [row for rows in by_variant.values() for row in rows]
    if (options.svm_train, options.svm_test) != (GTZAN_TRAIN, GTZAN_TEST):
        gtzan = [name for name in options.svm_gtzan_variants if name in chosen]
        data = make_data(GTZAN_TRAIN, GTZAN_TEST) if gtzan else data
        for name in gtzan:
            rows += bench_variant(VARIANTS[name], data, options)
    return rows, ratios
