"""The network family's training in a run directory: :func:`genre_jax.train.fit` with the
run's checkpoints (:class:`~genre_jax.checkpoint.RunCheckpoints`), a progress bar over epochs,
then ``history.json``, the training curves and the summary's figures (``genre-jax train`` for
every ``network`` model; :mod:`genre_jax.fit_pipeline` is the pipelines' counterpart).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from genre_jax.checkpoint import RunCheckpoints
from genre_jax.config import TrainConfig
from genre_jax.fileio import atomic_write_json
from genre_jax.metrics import RunLog
from genre_jax.parallel import default_mesh, is_main_process
from genre_jax.plots import training_curves
from genre_jax.train import fit


def train_network(
    run_dir: Path,
    config: TrainConfig,
    data: Any,
    meta: dict[str, Any],
    resuming: bool,
    progress: bool,
    log: Callable[[str], None],
    run_log: RunLog | None,
) -> dict[str, Any]:
    """Train ``config``'s network on ``data`` in ``run_dir`` (from its latest checkpoint when
    ``resuming``), each epoch shown on the bar and logged to ``run_log``; process 0 writes
    ``history.json`` and the training curves. Returns the summary's figures (best epoch, its
    validation figures, parameters, time)."""
    checkpoints = RunCheckpoints(run_dir)
    main = is_main_process()
    bar = _EpochBar(config.epochs, config.model, enabled=progress and main)

    def on_epoch(record: dict[str, float]) -> None:
        bar.update(record)
        if run_log is not None:
            run_log.epoch(record)

    try:
        with bar:
            result = fit(
                config,
                data,
                len(meta["genres"]),
                checkpoints=checkpoints,
                meta=meta,
                resume=resuming,
                on_epoch=on_epoch,
                on_restore=run_log.restart if run_log is not None else None,
                mesh=default_mesh(),
            )
    finally:
        checkpoints.close()
    plots_started = time.perf_counter()
    if main:
        atomic_write_json(run_dir / "history.json", result.history)
        training_curves(
            result.history,
            run_dir / "plots" / "training_curves.png",
            title=f"{config.model.upper()} training ({run_dir.name})",
        )
    timing = {**result.timing, "history_and_plots": time.perf_counter() - plots_started}
    best = result.history[result.best_epoch - 1]
    parameters = int(sum(np.size(x) for x in jax.tree.leaves(result.model_state)))
    log(
        f"best epoch {result.best_epoch}/{len(result.history)}: validation accuracy "
        f"{100 * best['val_accuracy']:.2f} %, loss {best['val_loss']:.4f} "
        f"({'early stop' if result.stopped_early else 'all epochs'}; {result.seconds:.1f} s)"
    )
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val_accuracy": best["val_accuracy"],
        "val_loss": best["val_loss"],
        "parameters": parameters,
        "train_seconds": round(result.seconds, 2),
        "timing": _rounded(timing),
    }


def _rounded(timing: dict[str, Any]) -> dict[str, Any]:
    """``timing``'s seconds to the millisecond (lists element by element)."""
    return {
        k: [round(s, 3) for s in v] if isinstance(v, list) else round(v, 3)
        for k, v in timing.items()
    }


class _EpochBar:
    """A rich progress bar over epochs showing the latest loss and accuracy."""

    def __init__(self, epochs: int, name: str, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} epochs"),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
            )
            self.task = self.progress.add_task(f"train {name}", total=epochs, metrics="")

    def __enter__(self) -> _EpochBar:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def update(self, record: dict[str, float]) -> None:
        if self.enabled:
            text = (
                f"loss {record['loss']:.3f} acc {100 * record['accuracy']:.1f}% | "
                f"val loss {record['val_loss']:.3f} acc {100 * record['val_accuracy']:.1f}%"
            )
            self.progress.update(self.task, completed=record["epoch"], metrics=text)
