"""Streamed training: its speed where the data would fit on the device, and its memory.

Rows:

- ``cnn epoch, GTZAN size, device-resident`` and ``..., streamed from a sharded store``:
  samples per second of one epoch of ``Options.epoch_samples`` 431 x 13 segments at the
  seed's batch, the model's ``auto`` driver, timed round-robin in one loop; the ratio is the
  cost of streaming where the data would fit. The store is written once with the real shard
  writer (random features, :data:`genre_jax.store_shards.DEFAULT_SHARD_SEGMENTS` rows per
  shard) and read by the real :class:`~genre_jax.store_shards.ShardedFeatures`.
- ``peak RSS of an epoch, <feed>, <n> segments``: the largest resident set of a fresh process
  during one epoch (sampled every 5 ms from ``/proc/self/statm``) after a first, compiling
  epoch, for a store of ``Options.stream_segments`` segments and one ten times larger, streamed
  and device-resident. Each runs in its own process; the larger store's row gives the growth
  from the smaller one (``growth_from_<n>_segments_mb``): what the data costs in memory.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks.common import CLASSES, COEFFS, FRAMES, Options, run_script
from benchmarks.timing import Row, progress, ratio, report, time_interleaved
from genre_jax.store_shards import DEFAULT_SHARD_SEGMENTS, ShardedFeatures, ShardWriter

MODEL = "cnn"


def write_store(folder: Path, segments: int, seed: int = 0) -> ShardedFeatures:
    """Random ``(segments, 431, 13)`` features written as feature shards in ``folder``."""
    rng = np.random.default_rng(seed)
    writer = ShardWriter(folder, "0000", DEFAULT_SHARD_SEGMENTS)
    for start in range(0, segments, 512):
        count = min(512, segments - start)
        writer.add(rng.normal(size=(count, FRAMES, COEFFS)).astype(np.float32))
    return ShardedFeatures(folder, writer.close(), (FRAMES, COEFFS))


def epoch_callables(features: ShardedFeatures, batch: int) -> dict[str, Callable[[], Any]]:
    """One more epoch of ``features`` per call: device-resident and streamed, each with its
    own state, the model's ``auto`` driver and recipe."""
    from benchmarks.training import model_config
    from genre_jax.step import make_train_epoch
    from genre_jax.streamed_epochs import make_streamed_epoch
    from genre_jax.streaming import Rows
    from genre_jax.train import epoch_driver, init_state

    config = model_config(MODEL)
    n = len(features)
    y = (np.arange(n) % CLASSES).astype(np.int32)
    rows = Rows(features, np.arange(n))
    driver = epoch_driver(config)
    key = jax.random.key(0)
    calls = {}
    for feed in ("device", "streamed"):
        graphdef, state, tx = init_state(config, COEFFS, CLASSES)
        if feed == "device":
            epoch = make_train_epoch(graphdef, tx, batch, driver, config=config)
            x, labels, extra = jax.device_put(rows[:]), jax.device_put(y), ()
        else:
            epoch = make_streamed_epoch(graphdef, tx, batch, driver, config=config)
            x, labels, extra = rows, y, (key,)
        holder = {"state": state, "epoch": 0}

        def call(holder=holder, epoch=epoch, x=x, labels=labels, extra=extra) -> Any:
            holder["state"], metrics = epoch(
                holder["state"], x, labels, np.int32(holder["epoch"]), key, *extra
            )
            holder["epoch"] += 1
            return metrics

        calls[feed] = call
    return calls


_RSS_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
from benchmarks.streaming import peak_rss_of_epoch
feed, segments, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with tempfile.TemporaryDirectory() as folder:
    print("RESULT " + json.dumps(peak_rss_of_epoch(Path(folder), feed, segments, batch)))
"""


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_of_epoch(folder: Path, feed: str, segments: int, batch: int) -> dict[str, float]:
    """In this process: write a store of ``segments``, run a first (compiling) epoch, then
    the largest resident set while a second epoch runs, sampled every 5 ms."""
    features = write_store(folder, segments)
    call = epoch_callables(features, batch)[feed]
    jax.block_until_ready(call())
    before, peak, running = _rss_bytes(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.perf_counter()
    jax.block_until_ready(call())
    seconds = time.perf_counter() - started
    running[0] = False
    watcher.join()
    peak[0] = max(peak[0], _rss_bytes())
    return {"before_mb": before / 2**20, "peak_mb": peak[0] / 2**20, "epoch_s": seconds}


def _measure_rss(feed: str, segments: int, batch: int) -> dict[str, float]:
    args = [feed, str(segments), str(batch)]
    return run_script(_RSS_SCRIPT, args, 1800, JAX_PLATFORMS=jax.default_backend())


def run(options: Options) -> tuple[list[Row], list[dict[str, Any]]]:
    batch = options.epoch_batch
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        progress(f"streaming: writing a store of {options.epoch_samples} segments")
        features = write_store(Path(folder), options.epoch_samples)
        calls = epoch_callables(features, batch)
        progress(f"streaming: {MODEL} epochs, device-resident and streamed, round-robin")
        timings = time_interleaved(calls, options.epoch_repeats)
        setting = {
            "model": MODEL,
            "batch": batch,
            "samples": options.epoch_samples,
            "input": f"({batch}, {FRAMES}, {COEFFS})",
            "shard_segments": DEFAULT_SHARD_SEGMENTS,
        }
        names = {
            "device": f"{MODEL} epoch, GTZAN size, device-resident",
            "streamed": f"{MODEL} epoch, GTZAN size, streamed from a sharded store",
        }
        for feed, timing in timings.items():
            row = Row.rate(
                "streaming", names[feed], "samples/s", timing, options.epoch_samples,
                setting={**setting, "feed": feed},
            )  # fmt: skip
            rows.append(row)
            report(row)
    ratios = [ratio("cnn epoch: streamed / device-resident", rows[1], rows[0], paired=True)]
    small = options.stream_segments
    for feed in ("streamed", "device"):
        peaks = []
        for segments in (small, 10 * small):
            progress(f"streaming: peak RSS of a {feed} epoch, {segments} segments")
            measured = _measure_rss(feed, segments, batch)
            peaks.append(measured["peak_mb"])
            name = f"peak RSS of an epoch, {feed}, {segments} segments"
            setting = {"model": MODEL, "batch": batch, "segments": segments, "feed": feed}
            extra = {
                "rss_before_epoch_mb": round(measured["before_mb"], 1),
                "epoch_s": round(measured["epoch_s"], 2),
                "store_mb": round(segments * FRAMES * COEFFS * 4 / 2**20, 1),
            }
            if len(peaks) == 2:
                extra[f"growth_from_{small}_segments_mb"] = round(peaks[1] - peaks[0], 1)
            row = Row("streaming", name, "MB", [measured["peak_mb"]], setting=setting, extra=extra)
            rows.append(row)
            report(row)
    return rows, ratios
