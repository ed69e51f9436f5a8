"""Frozen embeddings, computed once per feature store and kept beside it.

A pretrained network that a pipeline does not train (musicnn inside ``musicnnsvm``) gives a
segment the same embedding in every fold, every run and every command. Inside
``with store_cache(store):`` (opened by training and evaluation around a pipeline's fit and
predictions, and by ``genre-jax embed`` on a store), :func:`frozen_rows` answers such a network
from ``STORE/embeddings/<key>.npy``: the embedding of every segment of the store, computed in
one pass the first time any of its segments is asked for, and written atomically with a JSON
sidecar. ``key`` names the network and its weights' digest, so other weights get another file.

Rows are matched to the store's segments by content (a 16-byte BLAKE2b digest of each row's
float32 bytes), never by position: a fold's training rows, a time-reversed copy (not a segment
of the store: computed, not cached) and rows decoded from audio all get exactly what the
network gives them. The table is computed with the same function as a cache miss, in the same
fixed-size blocks, so a cached row equals the computed one bit for bit. The sidecar records the
table file's SHA-256, checked before the table is served (:func:`verify_tables` checks every
table, for ``check --store``): a table altered on disk is computed again, never used. A store
on a read-only disk keeps its table in memory for the process instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genre_jax import legacy
from genre_jax.fileio import (
    JSONFileError,
    atomic_write_bytes,
    atomic_write_json,
    file_digest,
    read_json_object,
)

if TYPE_CHECKING:  # a store is only read here; the models that use this module load before it
    from genre_jax.store import FeatureStore

EMBEDDINGS_DIR = "embeddings"
HASH_BLOCK = 256  # store rows hashed (and embedded) at a time

Compute = Callable[[np.ndarray], np.ndarray]

_ACTIVE: list[FeatureStore] = []
# Per process: each store's row digests (digest -> row), and the tables loaded or computed,
# keyed by the store's resolved path and what identifies its contents.
_INDEXES: dict[tuple[str, str], tuple[dict[bytes, int], str]] = {}
_TABLES: dict[tuple[str, str, str], np.ndarray] = {}


@contextlib.contextmanager
def store_cache(store: FeatureStore) -> Iterator[FeatureStore]:
    """Within the block, :func:`frozen_rows` answers rows of ``store`` from its cache."""
    _ACTIVE.append(store)
    try:
        yield store
    finally:
        _ACTIVE.remove(store)


def _flat(rows: np.ndarray) -> np.ndarray:
    """Segments ``(n, frames, coefficients)`` as float32 rows ``(n, frames * coefficients)``."""
    rows = np.asarray(rows, np.float32)
    return rows.reshape(len(rows), -1)


def row_digests(rows: np.ndarray) -> list[bytes]:
    """16-byte BLAKE2b digests of each row's float32 bytes (``rows``: ``(n, ...)``)."""
    rows = np.ascontiguousarray(rows, np.float32)
    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]


def _identity(store: FeatureStore) -> tuple[str, str]:
    """The store's resolved path and the digests of its feature shards, in order (of a
    format-1 store: :func:`genre_jax.legacy.whole_features_key`)."""
    path = store.path.resolve()
    shards = store.info.get("shards")
    if shards is None:
        return str(path), legacy.whole_features_key(path, store.info)
    return str(path), hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()


def _index(store: FeatureStore) -> tuple[dict[bytes, int], str]:
    """Digest -> first row of ``store`` with those contents, and a SHA-256 of all digests in
    order (what the cached table is bound to)."""
    identity = _identity(store)
    if identity not in _INDEXES:
        index: dict[bytes, int] = {}
        whole = hashlib.sha256()
        features = store.features
        for start in range(0, len(features), HASH_BLOCK):
            for offset, digest in enumerate(row_digests(features[start : start + HASH_BLOCK])):
                index.setdefault(digest, start + offset)
                whole.update(digest)
        _INDEXES[identity] = (index, whole.hexdigest())
    return _INDEXES[identity]


def cache_files(store: FeatureStore, key: str) -> tuple[Path, Path]:
    """The table and its sidecar for ``key`` in ``store``."""
    folder = store.path / EMBEDDINGS_DIR
    return folder / f"{key}.npy", folder / f"{key}.json"


def _read_table(table_path: Path, sidecar: Path, expected: dict[str, Any]) -> np.ndarray | None:
    """The cached table if its sidecar matches ``expected``, its shape the sidecar and its
    bytes the digest the sidecar recorded (a table that recorded none, or altered since, is
    computed again)."""
    try:
        recorded = read_json_object(sidecar)
        if {k: recorded.get(k) for k in expected} != expected:
            return None
        if not table_path.is_file() or file_digest(table_path) != recorded.get("sha256"):
            return None
        table = np.load(table_path, mmap_mode="r")
    except (OSError, ValueError, JSONFileError):
        return None
    if table.dtype != np.float32 or table.shape != (expected["segments"], recorded.get("width")):
        return None
    return table


def verify_tables(store: FeatureStore) -> list[str]:
    """Every cached table of ``store`` checked against the digest its sidecar recorded: what is
    wrong with each, by file name (an empty list when all hold what was written; a table that
    recorded no digest, :mod:`genre_jax.legacy`, is not checked). A table that fails is never
    served: :func:`store_table` computes it again."""
    folder = store.path / EMBEDDINGS_DIR
    problems = []
    for table_path in sorted(folder.glob("*.npy")) if folder.is_dir() else []:
        sidecar = table_path.with_suffix(".json")
        try:
            recorded = read_json_object(sidecar)
        except JSONFileError as error:
            problems.append(f"{sidecar.name} {error}")
            continue
        if recorded.get("sha256") is None:
            continue  # no digest recorded (genre_jax.legacy): computed again when next needed
        if file_digest(table_path) != recorded["sha256"]:
            problems.append(f"{table_path.name} does not match its digest (altered or damaged)")
    return problems


def store_table(store: FeatureStore, key: str, compute: Compute) -> np.ndarray:
    """``(segments, width)`` float32: ``compute`` of every segment of ``store``, read from its
    cache when that was made from the same rows with the same ``key``, else computed in
    blocks of :data:`HASH_BLOCK` segments and written to the cache."""
    identity = _identity(store)
    memo = (*identity, key)
    if memo in _TABLES:
        return _TABLES[memo]
    _, rows_digest = _index(store)
    expected = {"key": key, "segments": len(store), "rows_sha256": rows_digest}
    table_path, sidecar = cache_files(store, key)
    table = _read_table(table_path, sidecar, expected)
    if table is None:
        features = store.features
        parts = [
            np.asarray(compute(_flat(features[i : i + HASH_BLOCK])), np.float32)
            for i in range(0, len(features), HASH_BLOCK)
        ]
        table = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        with contextlib.suppress(OSError):  # a read-only store: keep it in memory only
            buffer = io.BytesIO()
            np.save(buffer, table)
            data = buffer.getvalue()
            atomic_write_bytes(table_path, data)
            digest = hashlib.sha256(data).hexdigest()
            atomic_write_json(sidecar, {**expected, "width": int(table.shape[1]), "sha256": digest})
    _TABLES[memo] = table
    return table


def frozen_rows(key: Callable[[], str], rows: np.ndarray, compute: Compute) -> np.ndarray:
    """``compute(rows)`` (``(n, width)`` float32) for flattened segments ``rows``, with rows of
    an active store (:func:`store_cache`) taken from its cached table (:func:`store_table`).

    ``key()`` names the frozen network and its weights, asked only when rows of an active
    store are found (a digest of the weights need not be taken for every call); ``compute``
    must give each row the same values whatever the other rows of its call.
    """
    rows = np.asarray(rows, np.float32)
    width = rows.shape[1] if rows.ndim == 2 else None
    stores = [s for s in _ACTIVE if width is not None and s.features[0].size == width]
    if not stores or len(rows) == 0:
        return np.asarray(compute(rows), np.float32)
    store = stores[-1]
    index, _ = _index(store)
    found = np.array([index.get(d, -1) for d in row_digests(rows)])
    hit = found >= 0
    if not hit.any():
        return np.asarray(compute(rows), np.float32)
    table = store_table(store, key(), compute)
    out = np.empty((len(rows), table.shape[1]), np.float32)
    out[hit] = table[found[hit]]
    if not hit.all():
        out[~hit] = compute(rows[~hit])
    return out
