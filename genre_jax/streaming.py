"""Training data read from the feature store batch by batch, for stores no device holds whole.

The device-resident path (:func:`genre_jax.store_splits.split_arrays`) gathers a split's
segments into memory and puts them on every device: the fastest, and the default wherever they
fit. A streamed split (:func:`streamed_split`) holds only row indices and labels; its segments
are read from the store's shards when a batch needs them (:class:`Rows`), so host and device memory
stay bounded whatever the store's size.
:func:`genre_jax.streamed_epochs.make_streamed_epoch` reads each
global batch's rows in the order the device-resident epoch visits them (the same permutation of
``(seed, epoch)``), each process only its slice of the batch, a few batches ahead on a thread
pool while the device works.

``feed="auto"`` (:func:`choose_feed`) streams when the training and validation segments
would take more than :data:`DEVICE_FEED_BYTES` (or a quarter of a device's memory, where the
device reports its size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from genre_jax.splits import Split

DEVICE_FEED_BYTES = 4 << 30
"""Largest training + validation set ``feed="auto"`` puts on the device (when the device does
not report its memory)."""


class Rows:
    """Selected rows of a store's features, read on demand: ``(n, frames, coefficients)``.

    With ``time_flip``, the seed's doubling is virtual: rows ``n .. 2n - 1`` are rows
    ``0 .. n - 1`` reversed in time, as :func:`genre_jax.store_splits.split_arrays`
    concatenates them. Indexing takes an integer array or a slice along the first axis and
    returns an in-memory float32 array.
    """

    def __init__(self, features: Any, index: np.ndarray, time_flip: bool = False) -> None:
        self.features = features
        self.index = np.asarray(index, np.int64)
        self.time_flip = bool(time_flip)
        rows = len(self.index) * (2 if self.time_flip else 1)
        self.shape = (rows, *features.shape[1:])
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            positions = np.arange(*key.indices(len(self)), dtype=np.int64)
        else:
            positions = np.asarray(key, np.int64)
            if positions.ndim != 1:
                raise IndexError(f"rows are read by a 1-D index, got shape {positions.shape}")
        base = positions % max(len(self.index), 1)
        rows = np.array(self.features[self.index[base]], np.float32, copy=True)
        if self.time_flip:
            flipped = positions >= len(self.index)
            rows[flipped] = rows[flipped, ::-1]
        return rows


@dataclass
class StreamedSplit:
    """A split's segments as :class:`Rows` and its labels in memory: what
    :class:`~genre_jax.splits.SplitArrays` holds, read from the store when needed."""

    x_train: Rows
    y_train: np.ndarray
    x_val: Rows
    y_val: np.ndarray
    x_test: Rows
    y_test: np.ndarray


def streamed_split(store: Any, split: Split, time_flip: bool) -> StreamedSplit:
    """The split's segments of ``store`` as a :class:`StreamedSplit`; with ``time_flip``,
    every training segment also reversed (virtually)."""
    parts = {}
    for part in ("train", "val", "test"):
        index = split.segment_indices(part, store.tracks)
        parts[part] = (index, np.asarray(store.labels[index]))
    index, labels = parts["train"]
    y_train = np.concatenate([labels, labels]) if time_flip else labels
    return StreamedSplit(
        Rows(store.features, index, time_flip),
        y_train,
        Rows(store.features, parts["val"][0]),
        parts["val"][1],
        Rows(store.features, parts["test"][0]),
        parts["test"][1],
    )


def device_budget() -> int:
    """Bytes of data ``feed="auto"`` puts on a device: a quarter of its memory where it says,
    else :data:`DEVICE_FEED_BYTES`."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except (RuntimeError, NotImplementedError):
        stats = {}
    limit = stats.get("bytes_limit")
    return int(limit) // 4 if limit else DEVICE_FEED_BYTES


def choose_feed(feed: str, train_and_val_bytes: int) -> str:
    """``"device"`` or ``"stream"``: the configured feed, or for ``"auto"`` the device while
    ``train_and_val_bytes`` fit :func:`device_budget`."""
    if feed != "auto":
        return feed
    return "device" if train_and_val_bytes <= device_budget() else "stream"
