"""``genre-jax check``: validate a dataset file by file, without extracting or training.

Every file is decoded exactly as ``prepare`` would decode it; each problem is reported with the
file and the reason. Tracks that the dataset's table lists but that are left out before
decoding (FMA's tracks without a top genre, files that are not there) are counted by reason
and the first few named. Errors (the file would be skipped) and warnings (usable, but worth a look:
silent, clipped, resampled, mixed down, or an Ogg or MP3 file whose container shows it was cut,
:func:`genre_jax.truncation.truncation_warning`) are told apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from genre_jax.audio import AudioError, load_audio
from genre_jax.config import FeatureConfig
from genre_jax.datasets import Manifest, discover
from genre_jax.extraction import prefetch
from genre_jax.truncation import truncation_warning


@dataclass
class FileCheck:
    """What checking one file found. ``level`` is ``ok``, ``warning`` or ``error``."""

    path: str
    genre: str
    level: str = "ok"
    problems: list[str] = field(default_factory=list)
    duration: float | None = None
    segments: int = 0


def _check_file(path: str, genre: str, config: FeatureConfig) -> FileCheck:
    result = FileCheck(path, genre)
    try:
        audio = load_audio(path, config.sample_rate)
    except AudioError as error:
        result.level, result.problems = "error", [error.reason]
        return result
    result.duration = audio.shape[0] / config.sample_rate
    result.segments = audio.shape[0] // config.segment_samples
    if result.segments == 0:
        result.level = "error"
        result.problems.append(
            f"{result.duration:.2f} s holds no full {config.segment_seconds} s segment"
        )
    warning = truncation_warning(path, result.duration)
    if warning is not None:
        result.problems.append(warning)
    if not np.any(audio):
        result.problems.append("silent: every sample is zero")
    elif float(np.max(np.abs(audio))) >= 0.999:
        result.problems.append("clipped: peaks reach full scale")
    try:
        info = sf.info(path)
        if info.samplerate != config.sample_rate:
            result.problems.append(f"resampled from {info.samplerate} Hz")
        if info.channels > 1:
            result.problems.append(f"{info.channels} channels mixed down to mono")
    except (sf.SoundFileError, RuntimeError):
        pass  # decoded by the fallback; nothing more to say about its header
    if result.level == "ok" and result.problems:
        result.level = "warning"
    return result


def check_dataset(
    data_dir: str | os.PathLike,
    config: FeatureConfig | None = None,
    *,
    workers: int = 2,
    subset: str | None = None,
    manifest: Manifest | None = None,
) -> list[FileCheck]:
    """Check every audio file of the dataset at ``data_dir``, in manifest order.

    ``manifest`` is the dataset's, when the caller has discovered it already.

    Raises:
        DatasetError: the path is not a dataset (see :func:`genre_jax.datasets.discover`).
    """
    config = config or FeatureConfig()
    manifest = manifest or discover(data_dir, subset)
    tracks = manifest.tracks
    results = list(
        prefetch(lambda t: _check_file(t.path, t.genre, config), tracks, workers, 4 * workers)
    )
    for genre in manifest.genres:
        count = sum(r.genre == genre for r in results if r.level != "error")
        if count == 0:
            folder = manifest.layout == "folders"
            path = os.path.join(manifest.root, genre) if folder else manifest.metadata
            results.append(FileCheck(str(path), genre, "error", ["no usable file"]))
    return results


EXCLUDED_NAMED = 5
"""Left-out tracks named per reason by ``check`` (the rest are counted)."""


def check_command(
    data_dir: str | os.PathLike,
    config: FeatureConfig,
    log: Callable[[str], None] = print,
    *,
    subset: str | None = None,
) -> int:
    """Print every problem per file and a summary; exit code 1 if any file would be skipped."""
    manifest = discover(data_dir, subset)
    results = check_dataset(data_dir, config, manifest=manifest)
    root = Path(manifest.root)
    if manifest.layout != "folders":
        log(manifest.describe())
    by_reason: dict[str, list[str]] = {}
    for left in manifest.excluded:
        by_reason.setdefault(left.reason, []).append(left.id)
    for reason, ids in sorted(by_reason.items()):
        named = ", ".join(ids[:EXCLUDED_NAMED]) + (", ..." if len(ids) > EXCLUDED_NAMED else "")
        log(f"left out {len(ids)} listed track(s), {reason}: {named}")
    for result in results:
        if result.level != "ok":
            where = os.path.relpath(result.path, root)
            log(f"{result.level:7s} {where}: {'; '.join(result.problems)}")
    errors = sum(r.level == "error" for r in results)
    warnings = sum(r.level == "warning" for r in results)
    segments = sum(r.segments for r in results if r.level != "error")
    log(
        f"{len(results)} files checked under {root}: {errors} error(s), {warnings} warning(s); "
        f"{segments} segments of {config.segment_seconds} s would be extracted"
    )
    return 1 if errors else 0
