"""What every benchmark shares: the size options, the timer, the result row, the device.

Timing rules (every module follows them):

- a callable is timed with :func:`time.perf_counter` around the call and
  :func:`jax.block_until_ready` of what it returns, so asynchronous dispatch is not mistaken
  for speed;
- the first call (tracing, compilation, first run) is timed apart: ``first_call_s``, and
  ``compile_s = first_call_s - median`` as the estimate of the one-off cost;
- then ``repeats`` steady-state calls; a row reports their median, min, max and quartiles;
- paths compared with each other (ours against librosa, against torch and Keras) are timed
  round-robin in the same loop (:func:`time_interleaved`), so the noise of a shared machine
  falls on all of them alike.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

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
        file_row: time the end-to-end 30 s file prediction (trains a tiny run first).
        flops: the training rows count FLOPs per step (XLA cost analysis).
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
    file_row: bool = True
    flops: bool = True

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
            svm_repeats=1, svm_gtzan_variants=(), peer_samples=16, peer_batch=8, file_row=False,
            flops=False,
        )  # fmt: skip
        return dataclasses.replace(tiny, **changes)


@dataclass
class Timing:
    """Seconds of the steady-state calls, and of the first call (``None`` if not separate)."""

    seconds: list[float]
    first_s: float | None = None

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    @property
    def compile_s(self) -> float | None:
        """First call minus a steady call: trace + compile (+ any other one-off cost)."""
        return None if self.first_s is None else max(self.first_s - self.median, 0.0)


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    out = fn()
    if out is not None:
        jax.block_until_ready(out)
    return time.perf_counter() - start


def time_call(
    fn: Callable[[], Any], repeats: int, warmup: int = 1, budget_s: float = math.inf
) -> Timing:
    """Time ``fn()``: ``warmup`` calls first (the first one reported), then ``repeats`` calls."""
    return time_interleaved({"fn": fn}, repeats, warmup, budget_s)["fn"]


def time_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1, budget_s: float = math.inf
) -> dict[str, Timing]:
    """Time several callables round-robin (A B C A B C ...) so they share the machine's noise.

    Rounds stop early once the steady-state rounds have taken ``budget_s`` seconds in all
    (at least one round runs), so a pathologically slow path cannot hold the run for long;
    each row reports how many repeats it got.
    """
    first: dict[str, float | None] = dict.fromkeys(fns)
    for name, fn in fns.items():
        for i in range(warmup):
            seconds = _timed(fn)
            if i == 0:
                first[name] = seconds
    steady: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            steady[name].append(_timed(fn))
        if sum(map(sum, steady.values())) >= budget_s:
            break
    return {name: Timing(steady[name], first[name]) for name in fns}


@dataclass
class Row:
    """One measured quantity with its spread and the setting it was measured under.

    ``values`` are per-repeat values of the metric in ``unit`` (a rate, or seconds).
    A skipped row (or a ``failed`` one: its path raised) has no values and says why in
    ``reason``.
    """

    path: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    first_call_s: float | None = None
    compile_s: float | None = None
    setting: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    failed: bool = False

    @classmethod
    def rate(cls, path: str, name: str, unit: str, timing: Timing, work: float, **kw: Any) -> Row:
        """A throughput row: ``work`` units done per call, e.g. samples/s."""
        values = [work / s for s in timing.seconds]
        return cls(path, name, unit, values, timing.first_s, timing.compile_s, **kw)

    @classmethod
    def duration(
        cls, path: str, name: str, unit: str, timing: Timing, per: float = 1.0, **kw: Any
    ) -> Row:
        """A seconds row, ``per`` items per call (``unit`` e.g. ``s/epoch``, ``s/file``)."""
        values = [s / per for s in timing.seconds]
        return cls(path, name, unit, values, timing.first_s, timing.compile_s, **kw)

    @classmethod
    def skipped(cls, path: str, name: str, reason: str, **kw: Any) -> Row:
        return cls(path, name, "", reason=reason, **kw)

    @classmethod
    def failed_path(cls, path: str, name: str, reason: str) -> Row:
        return cls(path, name, "", reason=reason, failed=True)

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else math.nan

    def to_json(self) -> dict[str, Any]:
        status = "failed" if self.failed else "ok" if self.ok else "skipped"
        stats: dict[str, Any] = {"status": status}
        if self.ok:
            q1, q3 = np.percentile(self.values, [25, 75])
            stats |= {
                "median": self.median,
                "min": float(min(self.values)),
                "max": float(max(self.values)),
                "q1": float(q1),
                "q3": float(q3),
                "repeats": len(self.values),
                "values": [float(v) for v in self.values],
                "first_call_s": self.first_call_s,
                "compile_s": self.compile_s,
            }
        else:
            stats["reason"] = self.reason
        head = {"path": self.path, "name": self.name, "unit": self.unit}
        return {**head, **stats, "setting": self.setting, "extra": self.extra}


def ratio(name: str, ours: Row, theirs: Row, paired: bool = False) -> dict[str, Any]:
    """How many times faster ``ours`` is than ``theirs`` (> 1 when ours is faster).

    ``ratio`` compares the medians: ``ours / theirs`` for rates, ``theirs / ours`` for
    durations (units ``s`` and ``s/...``). With ``paired`` (rows timed round-robin, repeat ``i``
    of both in the same round), ``paired_ratio`` is the median of the per-round ratios, which
    cancels the load the two shared in each round.
    """
    seconds = ours.unit == "s" or ours.unit.startswith("s/")

    def speedup(a: float, b: float) -> float:
        return b / a if seconds else a / b

    result = {
        "name": name,
        "ours": ours.name,
        "theirs": theirs.name,
        "unit": ours.unit,
        "ratio": speedup(ours.median, theirs.median),
        "paired_ratio": None,
    }
    if paired and len(ours.values) == len(theirs.values):
        rounds = [speedup(a, b) for a, b in zip(ours.values, theirs.values, strict=True)]
        result["paired_ratio"] = float(np.median(rounds))
    return result


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


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One line of progress on stderr, with the seconds since import (results go to files)."""
    print(f"[bench {time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def report(row: Row) -> None:
    """One progress line with a row's median (and its first call, when timed apart)."""
    first = "" if row.first_call_s is None else f" (first call {row.first_call_s:.2f} s)"
    progress(f"  {row.name}: {row.median:.4g} {row.unit}{first}")
