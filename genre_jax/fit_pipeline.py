"""The pipeline family's training: fit a scikit-learn-style model once on the flattened
training segments, save it, report its accuracy (``genre-jax train`` for ``svm``, ``statsvm``,
``musicnnsvm`` and any registered ``pipeline`` model).

The model's spec builds the unfitted estimator (:class:`~genre_jax.models.spec.ModelSpec`),
labels segments (its ``predict_labels``, or the estimator's ``predict``) and names the figures
its summary reports (its ``describe``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.config import TrainConfig
from genre_jax.fileio import atomic_write_json
from genre_jax.models import ModelSpec
from genre_jax.models.rbf import flatten
from genre_jax.models.sklearn_io import PIPELINE_FILE, save_pipeline


def fit_pipeline(features: np.ndarray, labels: np.ndarray, config: TrainConfig) -> Any:
    """Fit ``config.model``'s pipeline on ``(segments, frames, coefficients)`` features and
    integer labels."""
    labels = np.asarray(labels)
    estimator = config.spec.build(config.model_settings, *features.shape[1:], labels)
    return estimator.fit(flatten(features), labels)


def segment_labels(spec: ModelSpec, model: Any, features: np.ndarray) -> np.ndarray:
    """Each segment's label by a fitted pipeline, as its spec labels them."""
    rows = flatten(features)
    if spec.predict_labels is not None:
        return np.asarray(spec.predict_labels(model, rows))
    return np.asarray(model.predict(rows))


def _accuracy(spec: ModelSpec, model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(segment_labels(spec, model, x) == y)) if len(y) else float("nan")


def train_pipeline(
    run_dir: Path,
    config: TrainConfig,
    data: Any,
    log: Callable[[str], None],
    on_fit: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fit, save to ``run_dir/svm.skops`` and summarise a pipeline model on ``data``
    (:class:`~genre_jax.splits.SplitArrays`); writes ``history.json``, gives ``on_fit`` the
    fit's record (its one "epoch", with timing: a line of ``metrics.jsonl``), returns the
    summary."""
    spec = config.spec
    started = time.perf_counter()
    model = fit_pipeline(data.x_train, data.y_train, config)
    seconds = time.perf_counter() - started
    save_pipeline(model, run_dir / PIPELINE_FILE)
    train_acc = _accuracy(spec, model, data.x_train, data.y_train)
    val_acc = _accuracy(spec, model, data.x_val, data.y_val)
    history = [{"epoch": 1, "accuracy": train_acc, "val_accuracy": val_acc}]
    atomic_write_json(run_dir / "history.json", history)
    if on_fit is not None:
        samples = len(data.y_train)
        on_fit(
            {
                **history[0],
                "step": 1,
                "seconds": round(seconds, 4),
                "samples_per_second": round(samples / seconds, 2) if seconds > 0 else None,
            }
        )
    figures = spec.describe(model) if spec.describe is not None else {}
    extra = (
        f"{figures['support_vectors']} support vectors; " if "support_vectors" in figures else ""
    )
    log(
        f"{config.model}: training accuracy {100 * train_acc:.2f} %, validation "
        f"{100 * val_acc:.2f} % ({extra}fit {seconds:.1f} s)"
    )
    return {
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        **figures,
        "train_seconds": round(seconds, 2),
    }
