"""Live metrics of a run: one JSON line per epoch in ``metrics.jsonl``, and TensorBoard.

``metrics.jsonl`` (in the run directory) gets one line per finished epoch of a network, or one
for a pipeline's fit, each flushed and fsynced as it is written::

    {"epoch": 3, "step": 24, "loss": 1.93, "accuracy": 0.41, "val_loss": 2.02,
     "val_accuracy": 0.37, "learning_rate": 0.0001, "seconds": 1.8, "samples_per_second": 133.3}

A killed run keeps the line of every finished epoch; ``--resume`` first rewrites the file to the
epochs its checkpoint holds (the lines of epochs finished after that checkpoint go), then
appends, so every epoch is there once. ``evaluate`` and ``crossval`` add their headline figures
as lines with an ``"event"`` (``evaluate``, ``fold``, ``crossval``).

With ``--tensorboard`` the same scalars go to event files under ``tensorboard/`` in the run
directory (``train/loss``, ``val/accuracy``, ``time/samples_per_second`` ..., the epoch as the
step), with ``evaluate``'s figures and confusion matrix image. The writer is ``tensorboardX``,
the optional extra ``tensorboard`` (no TensorFlow needed).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from genre_jax.fileio import atomic_write_bytes
from genre_jax.settings import ConfigError

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
EXTRA_HINT = "pip install 'genre-jax[tensorboard]'"
STEP_KEYS = ("epoch", "step", "fold")  # what orders the records: the steps, not scalars
# Record fields and their TensorBoard tags.
TAGS = {
    "loss": "train/loss",
    "accuracy": "train/accuracy",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
    "learning_rate": "train/learning_rate",
    "seconds": "time/seconds_per_epoch",
    "samples_per_second": "time/samples_per_second",
}


def _line(record: Mapping[str, Any]) -> str:
    """One JSON line; NaN (no validation data) is written as null, as JSON has no NaN."""
    clean = {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()
    }
    return json.dumps(clean, sort_keys=False) + "\n"


class MetricsLog:
    """``metrics.jsonl``: appended line by line, each line on disk before the next epoch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def restart(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Replace the file (atomically) with ``records``: a fresh run's empty start, or a
        resumed run's epochs up to its checkpoint."""
        atomic_write_bytes(self.path, "".join(_line(r) for r in records).encode())

    def append(self, record: Mapping[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(_line(record))
            handle.flush()
            os.fsync(handle.fileno())


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (a run directory, or the file itself)."""
    path = Path(path)
    path = path / METRICS_FILE if path.is_dir() else path
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tensorboard_available() -> bool:
    try:
        import tensorboardX  # noqa: F401  (optional extra: only probing for it)
    except ImportError:
        return False
    return True


def require_tensorboard() -> None:
    """Refuse ``--tensorboard`` in one line when the optional extra is not installed."""
    if not tensorboard_available():
        raise ConfigError(f"--tensorboard: the tensorboardX writer is not installed ({EXTRA_HINT})")


class TensorBoardLog:
    """Event files under ``log_dir`` written by tensorboardX (the optional extra).

    ``purge_step``: a resumed run's first epoch; TensorBoard drops the events the killed run
    wrote from that step on, so no epoch shows twice.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        require_tensorboard()
        # Optional extra: imported only when event files are asked for.
        from tensorboardX import SummaryWriter

        # Event files are named by the second they start in: a second writer within the same
        # second (evaluate right after training, two folds' figures) would truncate the first.
        unique = f".{os.getpid()}.{time.time_ns()}"
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step, filename_suffix=unique)

    def scalars(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        for key, value in values.items():
            if key in STEP_KEYS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                tag = f"{prefix}{key}" if prefix else TAGS.get(key, key)
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()

    def image(self, tag: str, png: str | Path, step: int) -> None:
        """A PNG file (a confusion matrix) as an image summary."""
        import matplotlib.image  # matplotlib is a dependency; only images need its reader

        pixels = matplotlib.image.imread(str(png))[..., :3]
        self.writer.add_image(tag, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class RunLog:
    """A training run's live metrics: ``metrics.jsonl`` always, TensorBoard when asked."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.metrics = MetricsLog(self.run_dir / METRICS_FILE)
        self.tensorboard = tensorboard
        self.board: TensorBoardLog | None = None

    def restart(self, records: list[Mapping[str, Any]]) -> None:
        """Start the logs at ``records`` (the epochs a resumed checkpoint holds; none for a
        fresh run)."""
        self.metrics.restart(records)
        if self.tensorboard:
            self.board = TensorBoardLog(
                self.run_dir / TENSORBOARD_DIR, purge_step=len(records) + 1 if records else None
            )

    def epoch(self, record: Mapping[str, Any]) -> None:
        self.metrics.append(record)
        if self.board is not None:
            self.board.scalars(record, int(record["epoch"]))

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def log_event(
    directory: str | Path,
    event: str,
    values: Mapping[str, Any],
    step: int,
    images: Mapping[str, Path] | None = None,
) -> None:
    """Append ``{"event": event, **values}`` to ``directory``'s ``metrics.jsonl``; and, when
    the directory has event files (a run trained with ``--tensorboard``), write the numbers
    as ``<event>/<name>`` scalars at ``step`` and the ``images`` (tag -> PNG)."""
    directory = Path(directory)
    MetricsLog(directory / METRICS_FILE).append({"event": event, **values})
    if (directory / TENSORBOARD_DIR).is_dir() and tensorboard_available():
        board = TensorBoardLog(directory / TENSORBOARD_DIR)
        try:
            board.scalars(values, step, prefix=f"{event}/")
            for tag, png in (images or {}).items():
                board.image(tag, png, step)
        finally:
            board.close()
