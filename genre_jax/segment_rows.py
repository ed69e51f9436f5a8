"""What is computed per segment of audio (a model's probabilities, an embedding), in padded
device batches, and for a whole audio file streamed in bounded memory.

A file is decoded as a stream (:func:`genre_jax.audio.iter_audio_blocks`) and cut into the
non-overlapping full segments of the feature settings (``segment_seconds`` at ``sample_rate``,
10 s at 22050 Hz for the seed's recipe); the remainder shorter than a segment is dropped, as in
training. At most ``max_segments_in_memory`` segments of audio are held at once; they go to the
device in batches of at most :data:`DEVICE_BATCH` segments, padded with silent segments to a
power of two so that the feature extractor and the model compile for at most
``log2(DEVICE_BATCH) + 1`` batch shapes whatever the file's length. Only the per-segment rows
are kept, so memory does not grow with the file (a few bytes per segment).

A file shorter than one segment is zero-padded to one segment (``padded=True``), and a file
named without an audio extension, unreadable, or whose features or rows are not finite is
refused with the reason (:class:`FileRefused`). :mod:`genre_jax.predict` reads files with it,
:mod:`genre_jax.embed` too, and :mod:`genre_jax.windows` scores its windows with
:func:`score_segments`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genre_jax.audio import AUDIO_EXTENSIONS, AudioError, is_audio_file, iter_audio_blocks
from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.features import extract_jit
from genre_jax.inference import Predictor

DEVICE_BATCH = 16  # segments per feature-extraction and model call (padded to a power of two)
AUDIO_SCALE = 1e3  # peak sample magnitude beyond which samples are no audio signal


@dataclass
class _Segmenter:
    """Cuts a stream of sample blocks into chunks of full segments (at most ``max_segments``).

    After iteration, ``samples`` is the stream's length and ``padded`` says whether a stream
    shorter than one segment was yielded as one zero-padded segment.
    """

    segment_samples: int
    max_segments: int
    samples: int = 0
    padded: bool = False
    _yielded: int = field(default=0, repr=False)

    def chunks(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``(k, segment_samples)`` float32 chunks, ``1 <= k <= max_segments``."""
        capacity = self.max_segments * self.segment_samples
        buffer = np.zeros(capacity, np.float32)
        filled = 0
        for block in blocks:
            self.samples += block.shape[0]
            start = 0
            while start < block.shape[0]:
                take = min(block.shape[0] - start, capacity - filled)
                buffer[filled : filled + take] = block[start : start + take]
                filled += take
                start += take
                if filled == capacity:
                    self._yielded += self.max_segments
                    yield buffer.reshape(self.max_segments, self.segment_samples)
                    buffer = np.zeros(capacity, np.float32)
                    filled = 0
        full = filled // self.segment_samples
        if full:
            self._yielded += full
            yield buffer[: full * self.segment_samples].reshape(full, self.segment_samples)
        elif self._yielded == 0 and filled:
            self.padded = True  # the buffer is zeros beyond ``filled``
            self._yielded = 1
            yield buffer[: self.segment_samples].reshape(1, self.segment_samples)


@dataclass
class _Windower:
    """Cuts a stream of sample blocks into chunks of overlapping windows of ``window`` samples
    starting every ``hop`` samples (the last one ending at or before the stream's end, as
    :func:`genre_jax.windows.windows` cuts a whole song), at most ``max_windows`` per chunk.

    Memory holds one window plus one block and one chunk whatever the stream's length. After
    iteration, ``samples`` and ``padded`` are as :class:`_Segmenter`'s.
    """

    window: int
    hop: int
    max_windows: int
    samples: int = 0
    padded: bool = False

    def chunks(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``(k, window)`` float32 chunks, ``1 <= k <= max_windows``."""
        pending = np.zeros(0, np.float32)  # the samples from the next window's start on
        skip = 0  # samples still to drop before the next window starts (a hop > window)
        cut: list[np.ndarray] = []
        yielded = 0
        for block in blocks:
            self.samples += block.shape[0]
            if skip:
                dropped = min(skip, block.shape[0])
                block = block[dropped:]
                skip -= dropped
            pending = np.concatenate([pending, block]) if pending.size else block
            while pending.shape[0] >= self.window:
                cut.append(np.array(pending[: self.window], np.float32))
                skip = max(0, self.hop - pending.shape[0])
                pending = pending[self.hop :]
                if len(cut) == self.max_windows:
                    yielded += len(cut)
                    yield np.stack(cut)
                    cut = []
        if cut:
            yielded += len(cut)
            yield np.stack(cut)
        elif yielded == 0 and self.samples:
            self.padded = True
            padded = np.zeros((1, self.window), np.float32)
            padded[0, : pending.shape[0]] = pending
            yield padded


def _bucket(n: int) -> int:
    """The batch size ``n`` segments are padded to: the next power of two, ``<= DEVICE_BATCH``."""
    return min(DEVICE_BATCH, 1 << max(0, math.ceil(math.log2(n))))


def score_segments(segments: np.ndarray, predictor: Predictor) -> np.ndarray:
    """Class probabilities ``(n, classes)`` float64 of audio segments ``(n, segment_samples)``.

    Features (:func:`genre_jax.features.extract_jit`) and probabilities are computed in device
    batches of at most :data:`DEVICE_BATCH` segments, each padded with silent segments to a
    power of two (every segment is scored independently, so the padding does not change the
    rows kept).

    Raises:
        ValueError: ``segments`` is not ``(n, segment_samples)``, or some segment's features
            are not finite (samples far beyond audio scale).
    """
    probabilities = _rows(segments, predictor.feature_config, predictor.predict_proba)
    if probabilities is None:
        raise ValueError("features are not finite (samples far beyond audio scale)")
    if probabilities.shape[0] == 0:
        return np.zeros((0, len(predictor.genres)))
    return probabilities


RowsOf = Callable[[np.ndarray], np.ndarray]
"""What is computed per segment: ``(n, frames, coefficients)`` features -> ``(n, k)`` rows,
each row depending on its own segment only (a model's probabilities, an embedding)."""


def _rows(segments: np.ndarray, config: FeatureConfig, rows_of: RowsOf) -> np.ndarray | None:
    """``rows_of`` the features of audio segments, in padded device batches; None as soon as
    a batch's features are not finite (a model is never given them: the SVM refuses NaN, a
    network returns NaN)."""
    if segments.ndim != 2 or segments.shape[1] != config.segment_samples:
        raise ValueError(
            f"segments of shape {segments.shape}; this run needs (n, {config.segment_samples})"
        )
    rows = []
    for start in range(0, segments.shape[0], DEVICE_BATCH):
        part = segments[start : start + DEVICE_BATCH]
        batch = np.zeros((_bucket(part.shape[0]), config.segment_samples), np.float32)
        batch[: part.shape[0]] = part
        features = np.asarray(extract_jit(batch, config))
        if not np.isfinite(features[: part.shape[0]]).all():
            return None
        rows.append(np.asarray(rows_of(features))[: part.shape[0]])
    return np.concatenate(rows) if rows else np.zeros((0, 0))


def _not_finite(what: str, peak: float) -> str:
    """The reason for a file whose ``what`` are not finite, with its peak sample magnitude."""
    scale = ": not audio-scale values" if peak > AUDIO_SCALE else ""
    return f"{what} are not finite (samples up to {peak:.1e}{scale})"


def _extension_error(path: str | Path) -> str | None:
    """Why ``path`` is refused by its extension, or None if it has an audio extension."""
    if is_audio_file(path):
        return None
    suffix = Path(path).suffix
    what = f"extension {suffix!r} is not an audio extension" if suffix else "no file extension"
    return f"{what} (accepted: {', '.join(sorted(AUDIO_EXTENSIONS))})"


class FileRefused(Exception):
    """An audio file that gives no rows; ``reason`` says why (one file's error: the others
    are still read)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class FileRows:
    """What :func:`file_rows` computed for one file.

    Attributes:
        rows: per segment (or window), in order, ``(segments, k)``.
        padded: the file was shorter than one segment and was zero-padded to one.
        duration: decoded length in seconds at the feature settings' sample rate.
        hop_seconds: the seconds between the starts of consecutive rows' audio: the segment
            length (non-overlapping segments) unless a window hop was asked for.
        window_seconds: the length of each row's audio (one segment).
    """

    rows: np.ndarray
    padded: bool
    duration: float
    hop_seconds: float
    window_seconds: float


AudioRowsOf = Callable[[np.ndarray], np.ndarray | None]
"""What is computed per segment of audio: ``(k, segment_samples)`` float32 -> ``(k, rows)``,
or None when the segments' features are not finite (:func:`stream_rows` refuses them)."""


def features_rows(config: FeatureConfig, rows_of: RowsOf) -> AudioRowsOf:
    """``rows_of`` the features (``config``) of audio segments, in padded device batches."""
    return lambda segments: _rows(segments, config, rows_of)


def _check_in_memory(max_segments_in_memory: int) -> None:
    if max_segments_in_memory < 1:
        raise ConfigError(f"setting max_segments_in_memory={max_segments_in_memory}: must be >= 1")


def hop_samples(hop_seconds: float | None, config_rate: int, segment_samples: int) -> int:
    """A window hop in samples at ``config_rate``, checked (:func:`genre_jax.windows.check_hop`);
    the segment length when no hop is given (non-overlapping segments). ``predict`` and
    ``evaluate --window-hop`` (:mod:`genre_jax.windows`) both round the hop with it."""
    if hop_seconds is None:
        return segment_samples
    from genre_jax.windows import check_hop

    check_hop(hop_seconds)
    return max(1, round(hop_seconds * config_rate))


def stream_rows(
    blocks: Iterable[np.ndarray],
    sample_rate: int,
    segment_samples: int,
    rows_of: AudioRowsOf,
    *,
    what: str,
    max_segments_in_memory: int = 64,
    hop_seconds: float | None = None,
) -> FileRows:
    """``rows_of`` every full segment of a stream of mono float32 ``blocks`` at
    ``sample_rate``: non-overlapping segments, or with ``hop_seconds`` overlapping windows of
    one segment starting every hop (see :func:`file_rows`, which reads a file with it; the
    Python API (:mod:`genre_jax.api`) feeds it a waveform held in memory).

    Raises:
        FileRefused: no samples, or features or rows that are not finite.
        ConfigError: ``max_segments_in_memory`` is below 1, or the hop is out of range
            (:func:`genre_jax.windows.check_hop`).
    """
    _check_in_memory(max_segments_in_memory)
    hop = hop_samples(hop_seconds, sample_rate, segment_samples)
    if hop_seconds is None:
        cutter: _Segmenter | _Windower = _Segmenter(segment_samples, max_segments_in_memory)
    else:
        cutter = _Windower(segment_samples, hop, max_segments_in_memory)
    parts = []
    peak = 0.0
    for chunk in cutter.chunks(blocks):
        peak = max(peak, float(np.max(np.abs(chunk))))
        rows = rows_of(chunk)
        if rows is None:
            raise FileRefused(_not_finite("features", peak))
        if not np.isfinite(rows).all():
            raise FileRefused(_not_finite(what, peak))
        parts.append(rows)
    if not parts:
        raise FileRefused(f"no audio samples at {sample_rate} Hz after resampling")
    return FileRows(
        np.concatenate(parts),
        cutter.padded,
        cutter.samples / sample_rate,
        hop / sample_rate,
        segment_samples / sample_rate,
    )


def file_rows(
    path: str | Path,
    config: FeatureConfig,
    rows_of: RowsOf,
    *,
    what: str,
    max_segments_in_memory: int = 64,
    hop_seconds: float | None = None,
) -> FileRows:
    """``rows_of`` the features (``config``) of every full segment of one audio file, or with
    ``hop_seconds`` of every window of one segment starting each ``hop_seconds`` (the last one
    ending at or before the file's end; a file shorter than one segment is zero-padded to one
    either way).

    The file is decoded as a stream: at most ``max_segments_in_memory`` segments of audio
    (each ``config.segment_samples`` float32 samples: 0.88 MB for 10 s at 22050 Hz) are held
    on the host at once, and at most :data:`DEVICE_BATCH` on the device; only the rows are
    kept. ``what`` names the rows in the reason for rows that are not finite.

    Raises:
        FileRefused: a name without an extension of :data:`~genre_jax.audio.AUDIO_EXTENSIONS`,
            an unreadable file (any :class:`~genre_jax.audio.AudioError`), no samples, or
            features or rows that are not finite (the reason gives the peak sample magnitude).
        ConfigError: ``max_segments_in_memory`` is below 1, or the hop is out of range.
    """
    return audio_file_rows(
        path,
        config.sample_rate,
        config.segment_samples,
        features_rows(config, rows_of),
        what=what,
        max_segments_in_memory=max_segments_in_memory,
        hop_seconds=hop_seconds,
    )


def audio_file_rows(
    path: str | Path,
    sample_rate: int,
    segment_samples: int,
    rows_of: AudioRowsOf,
    *,
    what: str,
    max_segments_in_memory: int = 64,
    hop_seconds: float | None = None,
) -> FileRows:
    """:func:`file_rows` with ``rows_of`` taking the audio segments themselves (an exported
    program computes its own features)."""
    _check_in_memory(max_segments_in_memory)
    refused = _extension_error(path)
    if refused is not None:
        raise FileRefused(refused)
    hop_samples(hop_seconds, sample_rate, segment_samples)  # a bad hop before any decoding
    try:
        return stream_rows(
            iter_audio_blocks(path, sample_rate),
            sample_rate,
            segment_samples,
            rows_of,
            what=what,
            max_segments_in_memory=max_segments_in_memory,
            hop_seconds=hop_seconds,
        )
    except AudioError as error:
        raise FileRefused(error.reason) from None
