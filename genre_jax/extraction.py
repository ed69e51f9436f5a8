"""Decode, segment and extract tracks: the work shared by ``prepare``, its shards and ``check``.

:func:`extract_tracks` decodes the manifest's tracks on a thread pool (:func:`prefetch`, at
most a few tracks ahead), cuts each into segments and runs the jitted feature extraction on
fixed-size batches (:class:`Extractor`), recording each track's status in the manifest: a
track that cannot be decoded, holds no full segment, or gives features that are not finite is
marked and left out of the arrays it returns, and each decoded track's identity (the digest of
its audio, :mod:`genre_jax.identity`) is recorded. :func:`genre_jax.prepare.prepare` passes
each track's features on to the store's shard files as they come (one process's block of tracks
in :func:`genre_jax.prepare.extract_shard`), and :func:`genre_jax.check.check_dataset` decodes
through :func:`prefetch` too.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

import numpy as np
from rich.progress import track as progress_bar

from genre_jax.audio import AudioError, load_song, segment
from genre_jax.config import FeatureConfig
from genre_jax.datasets import Manifest
from genre_jax.features import extract_jit
from genre_jax.truncation import truncation_warning

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
    """Runs the jitted extraction on fixed-size batches (the last one zero-padded); the rows
    extracted wait, in order, until :meth:`take` hands them out."""

    def __init__(self, config: FeatureConfig, batch_size: int) -> None:
        self.config = config
        self.batch_size = batch_size
        self.buffer: list[np.ndarray] = []
        self.ready: collections.deque[np.ndarray] = collections.deque()
        self.ready_rows = 0

    def add(self, segments: np.ndarray) -> None:
        """Queue ``segments`` ``(n, samples)``; extract every full batch queued so far."""
        self.buffer.extend(segments)
        while len(self.buffer) >= self.batch_size:
            self._run(self.buffer[: self.batch_size])
            del self.buffer[: self.batch_size]

    def flush(self) -> None:
        """Extract what is queued (a last, partial batch)."""
        if self.buffer:
            self._run(self.buffer)
            self.buffer = []

    def take(self, rows: int) -> np.ndarray | None:
        """The next ``rows`` rows extracted ``(rows, frames, coefficients)``, or ``None`` while
        fewer are ready."""
        if self.ready_rows < rows:
            return None
        parts, count = [], 0
        while count < rows:
            block = self.ready.popleft()
            if count + len(block) > rows:
                self.ready.appendleft(block[rows - count :])
                block = block[: rows - count]
            parts.append(block)
            count += len(block)
        self.ready_rows -= rows
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run(self, rows: list[np.ndarray]) -> None:
        batch = np.zeros((self.batch_size, self.config.segment_samples), np.float32)
        batch[: len(rows)] = np.stack(rows)
        self.ready.append(np.asarray(extract_jit(batch, self.config))[: len(rows)])
        self.ready_rows += len(rows)


class DecodedTrack(NamedTuple):
    """One track decoded: its segments (None when it cannot be decoded, ``reason`` says why),
    its duration in s, its largest absolute sample, the warning about it, if any, and the
    song's identity (:func:`genre_jax.audio.load_song`)."""

    segments: np.ndarray | None
    duration: float = 0.0
    reason: str = ""
    peak: float = 0.0
    warning: str | None = None
    content: str | None = None


def decode_track(path: str, config: FeatureConfig) -> DecodedTrack:
    """Decode ``path`` at the config's sample rate and cut it into full segments."""
    try:
        audio, content = load_song(path, config.sample_rate)
    except AudioError as error:
        return DecodedTrack(None, reason=error.reason)
    duration = audio.shape[0] / config.sample_rate
    return DecodedTrack(
        segments=segment(audio, config.segment_samples),
        duration=duration,
        peak=float(np.abs(audio).max()) if audio.size else 0.0,
        warning=truncation_warning(path, duration),
        content=content,
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
    sink: Callable[[np.ndarray], None] | None = None,
) -> dict[str, np.ndarray]:
    """Decode, segment and extract the tracks ``indices``; record each one's status.

    Returns the arrays :data:`ARRAYS` names, one row per segment, tracks in the order of
    ``indices``. A track any of whose feature values is not finite is marked ``"error"`` and
    its rows are left out. With ``sink``, each track's features go to it as soon as all its
    rows are extracted (in order; a track that is not finite never reaches it), and the
    ``features`` returned is empty: the caller writes them as they come, holding at most a few
    tracks' rows.
    """
    indices = list(indices)
    extractor = Extractor(config, batch_size)
    kept: list[np.ndarray] = []
    sink = sink or kept.append
    labels, tracks, positions = [], [], []
    genre_index = manifest.genre_index
    waiting: collections.deque[tuple[int, float]] = collections.deque()  # (track, peak)

    def decode(i: int) -> tuple[int, DecodedTrack]:
        return i, decode_track(manifest.tracks[i].path, config)

    def hand_on() -> None:
        """Pass on every waiting track whose rows are all extracted, or mark it not finite."""
        while waiting:
            i, peak = waiting[0]
            track = manifest.tracks[i]
            rows = extractor.take(track.segments)
            if rows is None:
                return
            waiting.popleft()
            if not np.isfinite(rows).all():
                track.status, track.error = "error", not_finite_reason(peak)
                continue
            sink(rows)
            labels.extend([genre_index[track.genre]] * track.segments)
            tracks.extend([i] * track.segments)
            positions.extend(range(track.segments))

    results = prefetch(decode, indices, workers, depth=4 * workers)
    for i, decoded in _progress(results, len(indices), progress):
        track = manifest.tracks[i]
        segments, duration = decoded.segments, decoded.duration
        if segments is None:
            track.status, track.error = "error", decoded.reason
            continue
        track.warning = decoded.warning
        track.content = decoded.content
        track.duration = round(duration, 4)
        track.segments = int(segments.shape[0])
        if track.segments == 0:
            track.status = "too-short"
            track.error = f"{duration:.2f} s is shorter than one {config.segment_seconds} s segment"
            continue
        track.status = "ok"
        extractor.add(segments)
        waiting.append((i, decoded.peak))
        hand_on()
    extractor.flush()
    hand_on()
    shape = (0, config.n_frames, config.n_features)
    return {
        "features": np.concatenate(kept) if kept else np.zeros(shape, np.float32),
        "labels": np.asarray(labels, np.int32),
        "tracks": np.asarray(tracks, np.int32),
        "positions": np.asarray(positions, np.int32),
    }


def _progress(items: Iterable[T], total: int, enabled: bool) -> Iterable[T]:
    if not enabled:
        return items
    return progress_bar(items, total=total, description="Extracting features")
