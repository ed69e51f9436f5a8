"""Decode, segment and extract tracks: the work shared by ``prepare``, its shards and ``check``.

:func:`extract_tracks` decodes the manifest's tracks on a thread pool (:func:`prefetch`, at
most a few tracks ahead), cuts each into segments and runs the jitted feature extraction on
fixed-size batches (:class:`Extractor`), recording each track's status in the manifest: a
track that cannot be decoded, holds no full segment, or gives features that are not finite is
marked and left out of the arrays it returns. :func:`genre_jax.store.prepare` writes those
arrays as a store, :func:`genre_jax.store.extract_shard` as one process's shard, and
:func:`genre_jax.check.check_dataset` decodes through :func:`prefetch` too.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

import numpy as np
from rich.progress import track as progress_bar

from genre_jax.audio import AudioError, load_audio, segment, truncation_warning
from genre_jax.config import FeatureConfig
from genre_jax.datasets import Manifest
from genre_jax.features import extract_jit

ARRAYS = ("features", "labels", "tracks", "positions")
"""Names of the arrays :func:`extract_tracks` returns, in the order a store writes them."""
_AUDIO_SCALE = 100.0  # a peak sample above this is reported as not audio-scale

T = TypeVar("T")
R = TypeVar("R")


def prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int, depth: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with at most ``depth`` results pending."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Extractor:
    """Runs the jitted extraction on fixed-size batches (the last one zero-padded)."""

    def __init__(self, config: FeatureConfig, batch_size: int) -> None:
        self.config = config
        self.batch_size = batch_size
        self.buffer: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []
        self.finite: list[np.ndarray] = []  # per output row: every value finite

    def add(self, segments: np.ndarray) -> None:
        """Queue ``segments`` ``(n, samples)``; extract every full batch queued so far."""
        self.buffer.extend(segments)
        while len(self.buffer) >= self.batch_size:
            self._run(self.buffer[: self.batch_size])
            del self.buffer[: self.batch_size]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """All features ``(rows, frames, coefficients)`` and whether each row is finite."""
        if self.buffer:
            self._run(self.buffer)
            self.buffer = []
        if not self.outputs:
            shape = (0, self.config.n_frames, self.config.n_features)
            return np.zeros(shape, np.float32), np.zeros(0, bool)
        return np.concatenate(self.outputs), np.concatenate(self.finite)

    def _run(self, rows: list[np.ndarray]) -> None:
        batch = np.zeros((self.batch_size, self.config.segment_samples), np.float32)
        batch[: len(rows)] = np.stack(rows)
        features = np.asarray(extract_jit(batch, self.config))[: len(rows)]
        self.outputs.append(features)
        self.finite.append(np.isfinite(features.reshape(len(rows), -1)).all(axis=1))


class DecodedTrack(NamedTuple):
    """One track decoded: its segments (None when it cannot be decoded, ``reason`` says why),
    its duration in s, its largest absolute sample, and the warning about it, if any."""

    segments: np.ndarray | None
    duration: float = 0.0
    reason: str = ""
    peak: float = 0.0
    warning: str | None = None


def decode_track(path: str, config: FeatureConfig) -> DecodedTrack:
    """Decode ``path`` at the config's sample rate and cut it into full segments."""
    try:
        audio = load_audio(path, config.sample_rate)
    except AudioError as error:
        return DecodedTrack(None, reason=error.reason)
    duration = audio.shape[0] / config.sample_rate
    return DecodedTrack(
        segments=segment(audio, config.segment_samples),
        duration=duration,
        peak=float(np.abs(audio).max()) if audio.size else 0.0,
        warning=truncation_warning(path, duration),
    )


def not_finite_reason(peak: float) -> str:
    """Why a decoded track's features are refused, with what is known of its samples."""
    if peak > _AUDIO_SCALE:
        return (
            f"features are not finite (NaN or infinite values; samples up to {peak:.1e} are "
            "not audio-scale)"
        )
    return f"features are not finite (NaN or infinite values; largest sample {peak:.3g})"


def extract_tracks(
    manifest: Manifest,
    indices: Iterable[int],
    config: FeatureConfig,
    batch_size: int,
    workers: int,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Decode, segment and extract the tracks ``indices``; record each one's status.

    Returns the arrays :data:`ARRAYS` names, one row per segment, tracks in the order of
    ``indices``. A track any of whose feature values is not finite is marked ``"error"`` and
    its rows are left out of the arrays returned.
    """
    indices = list(indices)
    extractor = Extractor(config, batch_size)
    labels, tracks, positions = [], [], []
    genre_index = manifest.genre_index
    peaks: dict[int, float] = {}

    def decode(i: int) -> tuple[int, DecodedTrack]:
        return i, decode_track(manifest.tracks[i].path, config)

    results = prefetch(decode, indices, workers, depth=4 * workers)
    for i, decoded in _progress(results, len(indices), progress):
        track = manifest.tracks[i]
        segments, duration = decoded.segments, decoded.duration
        if segments is None:
            track.status, track.error = "error", decoded.reason
            continue
        track.warning = decoded.warning
        peaks[i] = decoded.peak
        track.duration = round(duration, 4)
        track.segments = int(segments.shape[0])
        if track.segments == 0:
            track.status = "too-short"
            track.error = f"{duration:.2f} s is shorter than one {config.segment_seconds} s segment"
            continue
        track.status = "ok"
        extractor.add(segments)
        labels += [genre_index[track.genre]] * track.segments
        tracks += [i] * track.segments
        positions += list(range(track.segments))
    features, finite = extractor.finish()
    arrays = {
        "features": features,
        "labels": np.asarray(labels, np.int32),
        "tracks": np.asarray(tracks, np.int32),
        "positions": np.asarray(positions, np.int32),
    }
    if finite.all():
        return arrays
    bad = np.unique(arrays["tracks"][~finite])
    for i in bad.tolist():
        track = manifest.tracks[i]
        track.status, track.error = "error", not_finite_reason(peaks[i])
    keep = ~np.isin(arrays["tracks"], bad)
    return {name: values[keep] for name, values in arrays.items()}


def _progress(items: Iterable[T], total: int, enabled: bool) -> Iterable[T]:
    if not enabled:
        return items
    return progress_bar(items, total=total, description="Extracting features")
