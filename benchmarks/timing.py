"""The timer, the result row and the speed-up ratio every benchmark uses.

Timing rules (every module follows them):

- a callable is timed with :func:`time.perf_counter` around the call and
  :func:`jax.block_until_ready` of what it returns, so asynchronous dispatch is not mistaken
  for speed;
- the first call (tracing, compilation, first run) is timed apart: ``first_call_s``, and
  ``compile_s = first_call_s - median`` as the estimate of the one-off cost;
- then ``repeats`` steady-state calls; a row reports their median, min, max and quartiles;
- paths compared with each other (ours against librosa, against torch and Keras) are timed
  round-robin in the same loop (:func:`time_interleaved`), so the noise of a shared machine
  falls on all of them alike, and their ratio is also taken round by round.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One line of progress on stderr, with the seconds since import (results go to files)."""
    print(f"[bench {time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


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


def report(row: Row) -> None:
    """One progress line with a row's median (and its first call, when timed apart)."""
    first = "" if row.first_call_s is None else f" (first call {row.first_call_s:.2f} s)"
    progress(f"  {row.name}: {row.median:.4g} {row.unit}{first}")
