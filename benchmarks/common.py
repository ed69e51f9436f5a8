"""What every benchmark shares: the sizes (:class:`Options`) and the device.

The timer, the row and the ratio live in :mod:`benchmarks.timing` and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from benchmarks.timing import Row, Timing, progress, ratio, report, time_call, time_interleaved

__all__ = [
    "CLASSES",
    "COEFFS",
    "FRAMES",
    "GTZAN_TEST",
    "GTZAN_TRAIN",
    "Options",
    "Row",
    "Timing",
    "cpu_model",
    "device_info",
    "progress",
    "ratio",
    "report",
    "run_script",
    "time_call",
    "time_interleaved",
]

ROOT = Path(__file__).resolve().parents[1]
FRAMES, COEFFS, CLASSES = 431, 13, 10  # the seed's 10 s MFCC segment and its 10 genres
GTZAN_TRAIN = 4752  # 2,376 training segments doubled by the time flip
GTZAN_TEST = 594


@dataclass(frozen=True)
class Options:
    """Sizes of every benchmark; :meth:`full` and :meth:`quick` are the two presets.

    Attributes:
        quick: tiny sizes, one repeat: a smoke test of every path.
        repeats: steady-state repeats of the cheap measurements (features, predict, peers).
        train_repeats: repeats of the train-step measurements.
        budget_s: steady-state seconds after which a train-step row stops repeating.
        epoch_repeats: repeats of the full-epoch measurements (after one warm-up epoch).
        feature_clips: 30 s clips per extraction batch.
        train_batches: batch sizes of the steady-state train-step rows.
        drivers: epoch drivers of the train-step rows; ``auto`` is the model's own.
        train_samples: samples per train-step measurement (at least two batches).
        epoch_samples: training set of the seconds-per-epoch rows.
        epoch_batch: batch size of the seconds-per-epoch rows (the seed's 32).
        predict_samples: segments of the prediction-throughput rows.
        predict_batch: batch size of ``make_predict``.
        svm_train: SVM training segments (GTZAN size is 4,752; the full fit takes minutes).
        svm_test: SVM test segments.
        svm_repeats: SVM fits timed (no warm-up: a fit has no compilation).
        svm_gtzan_variants: SVM variants fast enough to time again at full GTZAN size.
        peer_samples: samples per train-step measurement of the peer comparison.
        peer_batch: batch size of the peer comparison (the seed's 32).
        peer_large_batch: the CNN's peer comparison again at this batch (None: not), with
            ``2 * peer_large_batch`` samples per call.
        file_row: time the end-to-end 30 s file prediction (trains a tiny run first).
        flops: the training rows count FLOPs per step (XLA cost analysis).
        gru_unrolls: GRU scan unrollings timed beside the backend's default at ``epoch_batch``.
        command_songs: synthetic songs per genre of the command rows' store (100: GTZAN's
            size).
        command_epochs: epochs of the ``train`` command rows (at least 2: a steady rate).
        predict_files: 30 s files of the ``predict`` command row.
        crossval_songs: synthetic songs per genre of the ``crossval`` command rows.
        crossval_epochs: ``--epochs`` given to the ``crossval`` command rows.
        crossval_skip: shell patterns (``fnmatch``) of experiment files in ``configs/``
            whose ``crossval`` rows are skipped, each skipped row naming its pattern (the
            four musicnn fine-tuning files take about an hour of a full run on 2 cores).
        stream_segments: segments of the smaller store of the streaming memory rows (the
            larger holds ten times as many).
    """

    quick: bool = False
    repeats: int = 5
    train_repeats: int = 3
    budget_s: float = 60.0
    epoch_repeats: int = 2
    feature_clips: int = 16
    train_batches: tuple[int, ...] = (32, 256)
    drivers: tuple[str, ...] = ("steps", "scan")
    train_samples: int = 512
    epoch_samples: int = GTZAN_TRAIN
    epoch_batch: int = 32
    predict_samples: int = GTZAN_TEST
    predict_batch: int = 64
    svm_train: int = 1188
    svm_test: int = GTZAN_TEST
    svm_repeats: int = 2
    svm_gtzan_variants: tuple[str, ...] = ("jax-gram",)
    peer_samples: int = 256
    peer_batch: int = 32
    peer_large_batch: int | None = 256
    file_row: bool = True
    flops: bool = True
    gru_unrolls: tuple[int, ...] = (4, 16)
    command_songs: int = 100
    command_epochs: int = 20
    predict_files: int = 10
    crossval_songs: int = 10
    crossval_epochs: int = 5
    crossval_skip: tuple[str, ...] = ()
    stream_segments: int = 2000

    @classmethod
    def full(cls, **changes: Any) -> Options:
        """The default run: GTZAN-sized epochs, a quarter-sized SVM (see ``svm_train``)."""
        return dataclasses.replace(cls(), **changes)

    @classmethod
    def quick_preset(cls, **changes: Any) -> Options:
        """Tiny sizes and one repeat, every path exercised (well under a minute of work).

        The train-step, epoch and peer rows share one shape (batch 8, 16 samples) and the
        model's own driver, so each network compiles once.
        """
        tiny = cls(
            quick=True, repeats=1, train_repeats=1, epoch_repeats=1, feature_clips=1,
            train_batches=(8,), drivers=("auto",), train_samples=16, epoch_samples=16,
            epoch_batch=8, predict_samples=16, predict_batch=8, svm_train=60, svm_test=20,
            svm_repeats=1, svm_gtzan_variants=(), peer_samples=16, peer_batch=8,
            peer_large_batch=None, file_row=False, flops=False, gru_unrolls=(), command_songs=3,
            command_epochs=2, predict_files=2, stream_segments=64,
        )  # fmt: skip
        return dataclasses.replace(tiny, **changes)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_info() -> dict[str, Any]:
    """The accelerator JAX uses, the CPU, its core count and the load when asked."""
    device = jax.devices()[0]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "jax_device": str(device),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def run_script(script: str, args: list[str], timeout: float, **env: str) -> dict[str, Any]:
    """Run ``python -c script args...`` in a fresh process (the repository importable, ``env``
    added to this environment) and return the JSON it prints after ``RESULT ``."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=timeout, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])
