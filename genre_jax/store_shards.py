"""Feature extraction split over the processes of a multi-host run.

Every process extracts every ``count``-th track of the manifest (starting at its own index) into
a shard file next to the store; process 0 assembles the shards, in the order a single process
would have written them, into one store; every process then opens that same store.

Each shard is extracted by :func:`genre_jax.store._extract`, so a track whose features are not
finite is already marked an error and left out of its shard; the assembled store is written by
:func:`genre_jax.store._write_store`, so it records the digest of each array file exactly as a
single process's store does.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genre_jax.config import FeatureConfig
from genre_jax.datasets import Track, discover
from genre_jax.fileio import atomic_write_bytes
from genre_jax.store import (
    _ARRAYS,
    FeatureStore,
    StoreError,
    _extract,
    _write_store,
    store_path,
)


def _shard_dir(out_dir: str | os.PathLike, config: FeatureConfig) -> Path:
    final = store_path(out_dir, config)
    return final.with_name(f".{final.name}.shards")


def _shard_path(out_dir: str | os.PathLike, config: FeatureConfig, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` is written (and read back by process 0)."""
    return _shard_dir(out_dir, config) / f"shard-{index:05d}-of-{count:05d}.npz"


def extract_shard(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FeatureConfig,
    index: int,
    count: int,
    *,
    batch_size: int = 16,
    workers: int = 2,
    progress: bool = False,
) -> Path:
    """Extract tracks ``index, index + count, ...`` of the manifest into one shard file.

    The shard (arrays and the statuses of its tracks) is written atomically next to the
    store; :func:`merge_shards` assembles the store from all ``count`` shards.
    """
    manifest = discover(data_dir)
    indices = range(index, len(manifest.tracks), count)
    arrays = _extract(manifest, indices, config, batch_size, workers, progress)
    statuses = [dataclasses.asdict(manifest.tracks[i]) for i in indices]
    buffer = io.BytesIO()
    np.savez(buffer, statuses=np.asarray(json.dumps(statuses)), **arrays)
    path = _shard_path(out_dir, config, index, count)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def merge_shards(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FeatureConfig,
    count: int,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> FeatureStore:
    """Assemble the store from ``count`` shards, in the order one process would have written."""
    started = time.perf_counter()
    manifest = discover(data_dir)
    shard_dir = _shard_dir(out_dir, config)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS}
    for index in range(count):
        path = _shard_path(out_dir, config, index, count)
        if not path.is_file():
            raise StoreError(f"{path}: shard missing; did every process finish extracting?")
        with np.load(path) as shard:
            for status in json.loads(str(shard["statuses"])):
                track_index = manifest.track_ids.index(status["id"])
                manifest.tracks[track_index] = Track(**status)
            for name in _ARRAYS:
                parts[name].append(shard[name])
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    order = np.lexsort((arrays["positions"], arrays["tracks"]))
    arrays = {name: values[order] for name, values in arrays.items()}
    store = _write_store(
        store_path(out_dir, config), manifest, arrays, config, started, overwrite, log
    )
    shutil.rmtree(shard_dir, ignore_errors=True)
    return store


def prepare_distributed(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FeatureConfig,
    *,
    batch_size: int,
    workers: int,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
) -> FeatureStore:
    """Every process extracts its shard; process 0 assembles; all open the same store."""
    import jax

    from genre_jax.parallel import barrier

    index, count = jax.process_index(), jax.process_count()
    extract_shard(
        data_dir,
        out_dir,
        config,
        index,
        count,
        batch_size=batch_size,
        workers=workers,
        progress=progress and index == 0,
    )
    barrier("feature-shards-written")
    if index == 0:
        merge_shards(data_dir, out_dir, config, count, overwrite=overwrite, log=log)
    barrier("feature-store-published")
    return FeatureStore.open(store_path(out_dir, config))
