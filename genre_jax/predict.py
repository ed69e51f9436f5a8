"""Genre predictions for audio files of any format and length (the ``genre-jax predict`` command).

The files taken are those with an extension of :data:`genre_jax.audio.AUDIO_EXTENSIONS`, the
same list that dataset discovery uses: a folder stands for the audio files under it, and a file
given by name with another extension is refused (a per-file error naming the extension), not
decoded anyway.

A file is decoded as a stream (:func:`genre_jax.audio.iter_audio_blocks`) and cut into the
non-overlapping full segments the run was trained on (``segment_seconds`` at ``sample_rate``,
10 s at 22050 Hz for the seed's recipe); the remainder shorter than a segment is dropped, as in
training. At most ``max_segments_in_memory`` segments of audio are held at once; they go to the
device in batches of at most :data:`DEVICE_BATCH` segments, padded with silent segments to a
power of two so that the feature extractor and the model compile for at most
``log2(DEVICE_BATCH) + 1`` batch shapes whatever the file's length. Only the per-segment
probabilities are kept, so memory does not grow with the file (a few bytes per segment).

The track's genre is the one of highest mean probability over its segments. A file shorter
than one segment is zero-padded to one segment (``padded=True``): every model takes a fixed
number of frames (the CNN's input, the SVM's flattened vector), and a silent tail changes the
features of the frames it covers only, whereas refusing the file would give no answer at all.
A file whose features or probabilities are not finite (samples far beyond audio scale, such as a
float WAV holding values of 1e18) gets a per-file error instead of NaN probabilities.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from genre_jax.audio import AUDIO_EXTENSIONS, AudioError, is_audio_file, iter_audio_blocks
from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.features import extract_jit
from genre_jax.inference import Predictor, load_predictor
from genre_jax.parallel import gather_blocks, process_block

DEVICE_BATCH = 16  # segments per feature-extraction and model call (padded to a power of two)
AUDIO_SCALE = 1e3  # peak sample magnitude beyond which samples are no audio signal


@dataclass
class TrackPrediction:
    """The prediction for one file, or the reason there is none.

    Attributes:
        path: the file, as given or as found under a given folder.
        genre: the genre of highest mean probability over the segments; ``None`` on error.
        probabilities: genre name -> mean probability over the segments (sums to 1), in the
            run's genre order; empty on error.
        segments: segments predicted (``0`` on error).
        segment_probabilities: per segment, the probabilities in the run's genre order.
        top_k: the ``k`` most probable genres with their mean probability, highest first
            (ties in genre order).
        padded: the file was shorter than one segment and was zero-padded to one.
        duration: decoded length in seconds at the run's sample rate (``None`` on error).
        error: why the file could not be predicted (``None`` when it was).
    """

    path: str
    genre: str | None
    probabilities: dict[str, float]
    segments: int
    segment_probabilities: list[list[float]]
    top_k: list[tuple[str, float]]
    padded: bool = False
    duration: float | None = None
    error: str | None = None

    @classmethod
    def failed(cls, path: str, reason: str) -> TrackPrediction:
        """The record of a file that could not be predicted."""
        return cls(str(path), None, {}, 0, [], [], error=reason)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackPrediction:
        """The prediction :meth:`to_json` wrote."""
        return cls(
            path=data["path"],
            genre=data["genre"],
            probabilities=dict(data["probabilities"]),
            segments=data["segments"],
            segment_probabilities=[list(row) for row in data["segment_probabilities"]],
            top_k=[(item["genre"], item["probability"]) for item in data["top_k"]],
            padded=data["padded"],
            duration=data["duration"],
            error=data["error"],
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: every attribute; ``top_k`` as ``{"genre", "probability"}`` items."""
        return {
            "path": self.path,
            "genre": self.genre,
            "probabilities": dict(self.probabilities),
            "segments": self.segments,
            "top_k": [{"genre": g, "probability": p} for g, p in self.top_k],
            "padded": self.padded,
            "duration": self.duration,
            "error": self.error,
            "segment_probabilities": [list(row) for row in self.segment_probabilities],
        }


# --- one file -------------------------------------------------------------------------------------


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


def _top_k(mean: np.ndarray, genres: Sequence[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-mean, kind="stable")[:k]
    return [(genres[i], float(mean[i])) for i in order]


def _check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise ConfigError(f"predict setting top_k={top_k}: must be >= 1")


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
        rows: per segment, in order, ``(segments, k)``.
        padded: the file was shorter than one segment and was zero-padded to one.
        duration: decoded length in seconds at the feature settings' sample rate.
    """

    rows: np.ndarray
    padded: bool
    duration: float


def file_rows(
    path: str | Path,
    config: FeatureConfig,
    rows_of: RowsOf,
    *,
    what: str,
    max_segments_in_memory: int = 64,
) -> FileRows:
    """``rows_of`` the features (``config``) of every full segment of one audio file.

    The file is decoded as a stream: at most ``max_segments_in_memory`` segments of audio
    (each ``config.segment_samples`` float32 samples: 0.88 MB for 10 s at 22050 Hz) are held
    on the host at once, and at most :data:`DEVICE_BATCH` on the device; only the rows are
    kept. ``what`` names the rows in the reason for rows that are not finite.

    Raises:
        FileRefused: a name without an extension of :data:`~genre_jax.audio.AUDIO_EXTENSIONS`,
            an unreadable file (any :class:`~genre_jax.audio.AudioError`), no samples, or
            features or rows that are not finite (the reason gives the peak sample magnitude).
        ConfigError: ``max_segments_in_memory`` is below 1.
    """
    if max_segments_in_memory < 1:
        raise ConfigError(f"setting max_segments_in_memory={max_segments_in_memory}: must be >= 1")
    refused = _extension_error(path)
    if refused is not None:
        raise FileRefused(refused)
    segmenter = _Segmenter(config.segment_samples, max_segments_in_memory)
    parts = []
    peak = 0.0
    try:
        for chunk in segmenter.chunks(iter_audio_blocks(path, config.sample_rate)):
            peak = max(peak, float(np.max(np.abs(chunk))))
            rows = _rows(chunk, config, rows_of)
            if rows is None:
                raise FileRefused(_not_finite("features", peak))
            if not np.isfinite(rows).all():
                raise FileRefused(_not_finite(what, peak))
            parts.append(rows)
    except AudioError as error:
        raise FileRefused(error.reason) from None
    if not parts:
        raise FileRefused(f"no audio samples at {config.sample_rate} Hz after resampling")
    return FileRows(np.concatenate(parts), segmenter.padded, segmenter.samples / config.sample_rate)


def predict_file(
    path: str | Path,
    predictor: Predictor,
    *,
    top_k: int = 3,
    max_segments_in_memory: int = 64,
) -> TrackPrediction:
    """Predict the genre of one audio file of any format, rate, channel count and length.

    The file is streamed (:func:`file_rows`): at most ``max_segments_in_memory`` segments of
    audio are held on the host at once, and at most :data:`DEVICE_BATCH` on the device.

    Args:
        path: the audio file.
        predictor: a loaded run (:func:`genre_jax.inference.load_predictor`).
        top_k: how many genres :attr:`TrackPrediction.top_k` lists (capped at the genre count).
        max_segments_in_memory: segments of audio decoded before they are scored.

    Returns:
        The prediction; a file refused gives a :class:`TrackPrediction` with ``error`` set to
        the reason instead of raising (see :class:`FileRefused`).
    """
    _check_top_k(top_k)
    # A mixed ensemble's members each read the file with their own features; segment i is the
    # same seconds for all (they cut the same segments), so the mean is taken segment by segment.
    try:
        found = [
            file_rows(
                path,
                reader.feature_config,
                reader.predict_proba,
                what="probabilities",
                max_segments_in_memory=max_segments_in_memory,
            )
            for reader in predictor.readers
        ]
    except FileRefused as refused:
        return TrackPrediction.failed(str(path), refused.reason)
    count = min(len(f.rows) for f in found)  # rates round a segment's end differently
    probs = np.mean([f.rows[:count] for f in found], axis=0)
    found = found[0]
    mean = probs.mean(axis=0)
    genres = predictor.genres
    return TrackPrediction(
        path=str(path),
        genre=genres[int(np.argmax(mean))],
        probabilities={g: float(p) for g, p in zip(genres, mean, strict=True)},
        segments=int(probs.shape[0]),
        segment_probabilities=probs.tolist(),
        top_k=_top_k(mean, genres, top_k),
        padded=found.padded,
        duration=found.duration,
    )


# --- many files -----------------------------------------------------------------------------------


def expand_paths(paths: Sequence[str | Path]) -> list[tuple[Path, str | None]]:
    """The files to predict, in order: ``(path, None)``, or ``(folder, reason)`` for a folder
    that holds no audio file.

    A folder stands for every audio file under it (recursively, by extension, sorted); a
    file given by name is listed whatever its extension, for :func:`predict_file` to refuse
    one without an audio extension by name. A file reached twice is listed once.
    """
    found: list[tuple[Path, str | None]] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_audio_file(p))
            if not files:
                found.append((path, "a folder with no audio files under it"))
        else:
            files = [path]
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, None))
    return found


def predict_paths(
    paths: Sequence[str | Path],
    predictor: Predictor,
    *,
    top_k: int = 3,
    progress: bool = False,
    progress_file: TextIO | None = None,
    max_segments_in_memory: int = 64,
    share: bool = False,
) -> list[TrackPrediction]:
    """Predict every file given, and every audio file under every folder given.

    With ``share``, in a multi-process run each process predicts its contiguous block of the
    files and every process gets all the predictions back, in order.

    Files that cannot be read give a :class:`TrackPrediction` whose ``error`` says why; the
    others are still predicted. ``progress`` shows a rich progress bar on ``progress_file``
    (standard error by default, so that standard output stays clean for JSON).
    """
    _check_top_k(top_k)
    items = expand_paths(paths)
    shared = share and jax.process_count() > 1
    if shared:
        block = process_block(len(items))
        items = items[block.start : block.stop]
    results: list[TrackPrediction] = []
    for path, reason in with_progress(items, "Predicting", progress, progress_file):
        if reason is not None:
            results.append(TrackPrediction.failed(str(path), reason))
        else:
            results.append(
                predict_file(
                    path, predictor, top_k=top_k, max_segments_in_memory=max_segments_in_memory
                )
            )
    if not shared:
        return results
    mine = np.frombuffer(json.dumps([r.to_json() for r in results]).encode(), np.uint8)
    return [
        TrackPrediction.from_json(record)
        for part in gather_blocks(mine)
        for record in json.loads(part.tobytes().decode())
    ]


def with_progress(
    items: Sequence[Any], label: str, enabled: bool, file: TextIO | None = None
) -> Iterator[Any]:
    """``items`` one by one; when ``enabled``, with a transient rich progress bar on ``file``
    (standard error by default, so that standard output stays clean for JSON)."""
    if not enabled:
        yield from items
        return
    with Progress(console=Console(file=file or sys.stderr), transient=True) as bar:
        yield from bar.track(items, description=label)


# --- the command ----------------------------------------------------------------------------------


def _table(results: Sequence[TrackPrediction], top_k: int, out: TextIO) -> None:

    table = Table(title="Genre predictions")
    table.add_column("file", overflow="fold")
    table.add_column("genre")
    table.add_column("probability", justify="right")
    table.add_column(f"top {top_k}")
    table.add_column("segments", justify="right")
    table.add_column("duration (s)", justify="right")
    for r in results:
        if r.error is not None:
            continue
        top = ", ".join(f"{g} {100 * p:.1f}%" for g, p in r.top_k)
        segments = f"{r.segments} (padded)" if r.padded else str(r.segments)
        table.add_row(
            r.path,
            r.genre or "",
            f"{100 * r.probabilities[r.genre]:.1f}%" if r.genre else "",
            top,
            segments,
            f"{r.duration:.1f}" if r.duration is not None else "",
        )
    # a terminal wraps to its width; a file or pipe gets lines long enough for whole paths
    width = None if out.isatty() else max(160, 90 + max((len(r.path) for r in results), default=0))
    Console(file=out, width=width).print(table)


def predict_command(
    paths: Sequence[str | Path],
    run_dir: str | Path,
    *,
    top_k: int = 3,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    progress: bool | None = None,
) -> int:
    """``genre-jax predict PATH... --run-dir RUN``: print the genre of every file given.

    Loads the run's predictor once, predicts every file (folders: every audio file under
    them), prints a table on ``out`` (standard output by default) or, with ``as_json``, a JSON
    list of :meth:`TrackPrediction.to_json` (files with errors included). Each file that could
    not be predicted is reported by name and reason on ``err`` (standard error by default).
    In a multi-process run each process predicts its share of the files and process 0
    prints them all.
    ``progress`` (default: ``err`` is a terminal) shows a progress bar on ``err``.

    Returns:
        0 when at least one file was predicted, 1 when none could be.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    _check_top_k(top_k)
    predictor = load_predictor(run_dir)
    if progress is None:
        progress = err.isatty()
    main = jax.process_index() == 0
    results = predict_paths(
        paths, predictor, top_k=top_k, progress=progress and main, progress_file=err, share=True
    )
    if not main:  # every process predicted its share; process 0 reports them all
        return 0 if any(r.error is None for r in results) else 1
    failed = [r for r in results if r.error is not None]
    for r in failed:
        print(f"error: {r.path}: {r.error}", file=err)
    predicted = len(results) - len(failed)
    if as_json:
        json.dump([r.to_json() for r in results], out, indent=2)
        out.write("\n")
    elif predicted:
        _table(results, top_k, out)
    summary = f"predicted {predicted} of {len(results)} file(s) with {predictor.model_name}"
    print(summary + (f"; {len(failed)} could not be read" if failed else ""), file=err)
    return 0 if predicted else 1
