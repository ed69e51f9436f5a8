"""The files a feature store's features live in, and those of a multi-process ``prepare``.

**Feature shards.** A store's features are ``features/<process>-<n>.npy`` files of at most
``shard_segments`` rows each (:class:`ShardWriter`, the last of each process's files shorter),
listed in order with their row counts and SHA-256 digests in ``store.json``. Rows are written as
they are extracted, so ``prepare`` never holds more than one shard of features, whatever the
dataset's size. :class:`ShardedFeatures` reads them back as one read-only array of every
segment: the rows asked for are read with positioned reads (``os.pread``), nothing is
memory-mapped, so what a process has read does not stay in its memory.

**Parts of a multi-process prepare.** Process ``i`` of ``n`` extracts the ``i``-th of ``n``
contiguous blocks of the manifest's tracks (:func:`genre_jax.parallel.process_block`), writes
its feature shards into the store's building folder (:func:`building_dir`, shared by every
process) and, in its part file (:func:`part_path`, :func:`write_part`), the statuses of its
tracks and the labels, track indices and positions of its rows. Process 0 reads the parts
back in process order (:func:`read_parts`), which is the order one process would have
written, and completes the store. This module knows these files only, not the store, so
:mod:`genre_jax.store`, :mod:`genre_jax.store_checks` and :mod:`genre_jax.prepare` import it,
one way.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import math
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.datasets import Manifest, Track
from genre_jax.fileio import atomic_write_bytes, atomic_writer, file_kind

FEATURES_DIR = "features"
DEFAULT_SHARD_SEGMENTS = 1024
"""Rows per feature shard unless ``prepare --shard-segments`` says otherwise: 22 MB of the
seed's MFCCs, 226 MB of 10 s log-mel segments."""
SMALL_ARRAYS = ("labels", "tracks", "positions")


class ShardError(ValueError):
    """A feature shard is missing, cut short or not what the store's index says."""


def building_dir(store: Path) -> Path:
    """The folder a multi-process ``prepare`` builds the store ``store`` in: its hidden sibling
    ``.<name>.shards``, renamed to ``store`` when complete."""
    return store.with_name(f".{store.name}.shards")


def part_path(store: Path, index: int, count: int) -> Path:
    """Where process ``index`` of ``count`` writes its part (read back by process 0)."""
    return building_dir(store) / f"part-{index:05d}-of-{count:05d}.npz"


class _Hashing:
    """A file that updates a SHA-256 digest with everything written through it."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


class ShardWriter:
    """Writes rows, as they come, into ``folder/features/<prefix>-<n>.npy`` files of
    ``shard_segments`` rows each (the last one what remains); each is written atomically."""

    def __init__(self, folder: Path, prefix: str, shard_segments: int) -> None:
        self.folder, self.prefix, self.size = folder, prefix, shard_segments
        self.pending: list[np.ndarray] = []
        self.pending_rows = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, rows: np.ndarray) -> None:
        """Queue ``rows`` ``(n, frames, coefficients)``; write every full shard queued."""
        self.pending.append(np.asarray(rows, np.float32))
        self.pending_rows += len(rows)
        while self.pending_rows >= self.size:
            queued = np.concatenate(self.pending)
            self._write(queued[: self.size])
            self.pending = [queued[self.size :]]
            self.pending_rows = len(self.pending[0])

    def close(self) -> list[dict[str, Any]]:
        """Write what remains; every shard written, in order: ``{"file", "rows", "sha256"}``."""
        if self.pending_rows:
            self._write(np.concatenate(self.pending))
        self.pending, self.pending_rows = [], 0
        return self.shards

    def _write(self, rows: np.ndarray) -> None:
        name = f"{FEATURES_DIR}/{self.prefix}-{len(self.shards):05d}.npy"
        with atomic_writer(self.folder / name) as handle:
            hashing = _Hashing(handle)
            np.lib.format.write_array(hashing, np.ascontiguousarray(rows), allow_pickle=False)
        self.shards.append({"file": name, "rows": len(rows), "sha256": hashing.digest.hexdigest()})


def _open_regular(path: Path, name: str) -> int:
    """A read-only descriptor of ``path`` (``name`` in messages), which must be a regular file:
    it is opened without blocking and checked before anything is read, so a FIFO or a device in
    a shard's place is refused rather than read forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise ShardError(f"{name} cannot be read ({error.strerror})") from None
    kind = file_kind(os.fstat(fd).st_mode)
    if kind != "a regular file":
        os.close(fd)
        raise ShardError(f"{name} is {kind}, not a regular file")
    return fd


def _header(path: Path, name: str) -> tuple[tuple[int, ...], np.dtype, bool, int, int]:
    """Shape, dtype, Fortran order, data offset and size in bytes of the ``.npy`` file ``path``
    (``name`` in messages), which must be a regular file."""
    fd = _open_regular(path, name)
    try:
        with os.fdopen(fd, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                version, np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(handle)
            return shape, dtype, fortran, handle.tell(), os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise ShardError(f"{name} cannot be read ({error.strerror})") from None
    except ValueError as error:
        raise ShardError(f"{name} is not a .npy array file ({error})") from None


OPEN_SHARDS = 64
"""The most shard files a :class:`ShardedFeatures` keeps open (the least recently read are
closed first): one descriptor per shard ran out of the usual 1,024 on a store of a thousand
shards. Reopening a shard costs microseconds, a read of its rows far more."""


class ShardedFeatures:
    """The feature shards of a store as one read-only ``(segments, frames, coefficients)``
    float32 array.

    Indexing takes an integer, a slice, an integer array or list, or a boolean mask, along the
    first axis (then any further indices), and returns a new in-memory array of those rows.
    Rows are read with ``os.pread``, runs of consecutive rows in one read, so nothing stays
    mapped into the process: reading a whole epoch of a store costs only the rows in hand.
    At most :data:`OPEN_SHARDS` shard files are open at once, however many the store has
    (more only while more threads than that read at the same moment). Safe to read from
    several threads; picklable (each process opens its own files).
    """

    def __init__(self, folder: Path, shards: Sequence[dict[str, Any]], row_shape: tuple) -> None:
        self.folder = Path(folder)
        self.names = [s["file"] for s in shards]
        self.files = [self.folder / name for name in self.names]
        rows = np.array([s["rows"] for s in shards], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self.row_shape = tuple(int(n) for n in row_shape)
        self.dtype = np.dtype(np.float32)
        self.shape = (int(self.offsets[-1]), *self.row_shape)
        self.row_bytes = math.prod(self.row_shape) * self.dtype.itemsize
        self._starts: list[int] = []
        for name, path, count in zip(self.names, self.files, rows.tolist(), strict=True):
            shape, dtype, fortran, start, size = _header(path, name)
            expected = (count, *self.row_shape)
            if shape != expected or dtype != self.dtype or fortran:
                raise ShardError(
                    f"{name} holds {dtype} {shape}{' (Fortran order)' if fortran else ''}, "
                    f"where store.json lists float32 {expected}"
                )
            if size < start + count * self.row_bytes:
                raise ShardError(
                    f"{name} is cut short: {size} bytes, where its {count} rows need "
                    f"{start + count * self.row_bytes}"
                )
            self._starts.append(start)
        self._open_shards()

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    def __len__(self) -> int:
        return self.shape[0]

    def _open_shards(self) -> None:
        """No shard open yet: ``_fds`` maps a shard to its descriptor, least recently used
        first, and ``_users`` counts the reads under way on each (never closed while read)."""
        self._fds: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._users: collections.Counter[int] = collections.Counter()
        self._opening = threading.Lock()  # reads come from several threads

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_fds", "_users", "_opening")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open_shards()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the files opened for reading (they are opened again when needed)."""
        lock = getattr(self, "_opening", None)
        if lock is None:  # __init__ failed before its files were opened
            return
        with lock:
            for shard in [s for s in self._fds if not self._users[s]]:
                os.close(self._fds.pop(shard))
                self._users.pop(shard, None)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = self[:]
        return rows if dtype is None else rows.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        if isinstance(key, int | np.integer):
            index = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"row {int(key)} out of range for {len(self)} segments")
            rows = self._gather(np.array([index], np.int64))[0]
        elif isinstance(key, slice):
            rows = self._gather(np.arange(*key.indices(len(self)), dtype=np.int64))
            rest = (slice(None), *rest) if rest else ()
        else:
            index = np.asarray(key)
            if index.dtype == bool:
                if index.shape != (len(self),):
                    raise IndexError(f"boolean index of shape {index.shape}, not ({len(self)},)")
                index = np.flatnonzero(index)
            elif index.size and not np.issubdtype(index.dtype, np.integer):
                raise IndexError(f"rows must be integers, got {index.dtype}")
            index = index.astype(np.int64)
            index = np.where(index < 0, index + len(self), index)
            if index.size and (index.min() < 0 or index.max() >= len(self)):
                raise IndexError(f"row index out of range for {len(self)} segments")
            rows = self._gather(index.reshape(-1)).reshape(*index.shape, *self.row_shape)
            rest = (slice(None),) * index.ndim + rest if rest else ()
        return rows[rest] if rest else rows

    @contextlib.contextmanager
    def _reading(self, shard: int) -> Iterator[int]:
        """A descriptor of ``shard``'s file for the block's reads: opened if needed (then the
        least recently read idle files beyond :data:`OPEN_SHARDS` are closed), and not closed
        by another thread while the block runs."""
        with self._opening:  # two threads must not both open a shard (one descriptor leaks)
            if shard in self._fds:
                self._fds.move_to_end(shard)
            else:
                self._fds[shard] = _open_regular(self.files[shard], self.names[shard])
            self._users[shard] += 1
            self._close_idle()
            fd = self._fds[shard]
        try:
            yield fd
        finally:
            with self._opening:
                self._users[shard] -= 1
                self._close_idle()

    def _close_idle(self) -> None:
        """Close the least recently read files no read is using, down to :data:`OPEN_SHARDS`
        (the caller holds ``_opening``)."""
        excess = len(self._fds) - OPEN_SHARDS
        for shard in list(self._fds):
            if excess <= 0:
                break
            if not self._users[shard]:
                os.close(self._fds.pop(shard))
                del self._users[shard]
                excess -= 1

    def _gather(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((index.size, *self.row_shape), self.dtype)
        if not index.size:
            return out
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        shard = np.searchsorted(self.offsets, wanted, side="right") - 1
        breaks = np.flatnonzero((np.diff(wanted) != 1) | (np.diff(shard) != 0)) + 1
        for start, stop in zip(
            np.concatenate([[0], breaks]), np.concatenate([breaks, [wanted.size]]), strict=True
        ):
            s, first, count = int(shard[start]), int(wanted[start]), int(stop - start)
            local = first - int(self.offsets[s])
            at = self._starts[s] + local * self.row_bytes
            with self._reading(s) as fd:
                data = os.pread(fd, count * self.row_bytes, at)
            if len(data) != count * self.row_bytes:
                raise ShardError(f"{self.files[s]}: cut short while its rows were read")
            block = np.frombuffer(data, self.dtype).reshape(count, *self.row_shape)
            out[order[start:stop]] = block
        return out


def write_part(
    path: Path,
    statuses: Sequence[dict[str, Any]],
    arrays: dict[str, np.ndarray],
    shards: Sequence[dict[str, Any]],
) -> None:
    """Write one process's part atomically: ``statuses`` (each of its tracks as a
    :class:`~genre_jax.datasets.Track` dict), the :data:`SMALL_ARRAYS` of its rows and the
    feature shards it wrote."""
    buffer = io.BytesIO()
    small = {name: arrays[name] for name in SMALL_ARRAYS}
    record = {"statuses": list(statuses), "shards": list(shards)}
    np.savez(buffer, record=np.asarray(json.dumps(record)), **small)
    atomic_write_bytes(path, buffer.getvalue())


def read_parts(
    paths: Sequence[Path], manifest: Manifest
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The small arrays of all parts ``paths`` (in process order) and their shards in order.

    Each part's track statuses replace those tracks in ``manifest`` (matched by id).
    """
    position = {track_id: i for i, track_id in enumerate(manifest.track_ids)}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SMALL_ARRAYS}
    shards: list[dict[str, Any]] = []
    for path in paths:
        with np.load(path) as part:
            record = json.loads(str(part["record"]))
            for status in record["statuses"]:
                manifest.tracks[position[status["id"]]] = Track(**status)
            for name in SMALL_ARRAYS:
                parts[name].append(part[name])
        shards += record["shards"]
    return {name: np.concatenate(values) for name, values in parts.items()}, shards
