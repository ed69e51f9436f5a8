"""The shard files of a multi-host ``prepare``: each process's part of the extraction on disk.

Every process extracts every ``count``-th track of the manifest (starting at its own index,
:func:`genre_jax.store.extract_shard`) and writes the arrays and the statuses of its tracks
to a shard file next to the store (:func:`write_shard`); process 0 reads the shards back, in
the order a single process would have written the rows (:func:`read_shards`), and
:func:`genre_jax.store.merge_shards` writes them as one store with
:func:`genre_jax.store.write_store`, so it records the digest of each array file exactly as a
single process's store does.

Each shard is extracted by :func:`genre_jax.extraction.extract_tracks`, so a track whose
features are not finite is already marked an error and left out of its shard. This module
knows the shard files only, not the store, so :mod:`genre_jax.store` imports it, one way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.datasets import Manifest, Track
from genre_jax.extraction import ARRAYS
from genre_jax.fileio import atomic_write_bytes


def shard_dir(store: Path) -> Path:
    """The folder of the shards of the store ``store``: its hidden sibling ``.<name>.shards``."""
    return store.with_name(f".{store.name}.shards")


def shard_path(store: Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` of the store ``store`` is written (and read back)."""
    return shard_dir(store) / f"shard-{index:05d}-of-{count:05d}.npz"


def write_shard(
    path: Path, statuses: Sequence[dict[str, Any]], arrays: dict[str, np.ndarray]
) -> None:
    """Write one shard atomically: the :data:`~genre_jax.extraction.ARRAYS` of its segments
    and ``statuses``, each of its tracks as a :class:`~genre_jax.datasets.Track` dict."""
    buffer = io.BytesIO()
    np.savez(buffer, statuses=np.asarray(json.dumps(list(statuses))), **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_shards(paths: Sequence[Path], manifest: Manifest) -> dict[str, np.ndarray]:
    """The arrays of all shards ``paths``, rows in single-process order (track, position).

    Each shard's track statuses replace those tracks in ``manifest`` (matched by id).
    """
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    for path in paths:
        with np.load(path) as shard:
            for status in json.loads(str(shard["statuses"])):
                track_index = manifest.track_ids.index(status["id"])
                manifest.tracks[track_index] = Track(**status)
            for name in ARRAYS:
                parts[name].append(shard[name])
    arrays = {name: np.concatenate(values) for name, values in parts.items()}
    order = np.lexsort((arrays["positions"], arrays["tracks"]))
    return {name: values[order] for name, values in arrays.items()}
