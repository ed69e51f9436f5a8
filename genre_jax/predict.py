"""Genre predictions for audio files of any format and length (the ``genre-jax predict`` command).

The files taken are those with an extension of :data:`genre_jax.audio.AUDIO_EXTENSIONS`, the
same list that dataset discovery uses: a folder stands for the audio files under it, and a file
given by name with another extension is refused (a per-file error naming the extension), not
decoded anyway.

A file is streamed and cut into the non-overlapping full segments the run was trained on, in
bounded memory whatever its length (:func:`genre_jax.segment_rows.file_rows`); only the
per-segment probabilities are kept.

With a window hop (``--window-hop S``), the rows are those of overlapping windows of one
segment starting every ``S`` seconds (the last one ending at or before the file's end), still
streamed in bounded memory: the genre over time, which ``--plot OUT.png`` draws
(:func:`genre_jax.audio_plots.taggram`). The JSON gives each row's start in seconds.

The track's genre is the one of highest mean probability over its segments (or windows). A
file shorter than one segment is zero-padded to one segment (``padded=True``): every model
takes a fixed number of frames (the CNN's input, the SVM's flattened vector), and a silent
tail changes the features of the frames it covers only, whereas refusing the file would give
no answer at all.
A file whose features or probabilities are not finite (samples far beyond audio scale, such as a
float WAV holding values of 1e18) gets a per-file error instead of NaN probabilities.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from genre_jax.audio import is_audio_file
from genre_jax.config import ConfigError
from genre_jax.inference import Predictor, load_predictor
from genre_jax.parallel import gather_blocks, process_block
from genre_jax.segment_rows import FileRefused, FileRows, file_rows


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
        window_seconds: the length of each row's audio (the run's segment length).
        window_hop: seconds between the starts of consecutive rows: ``window_seconds`` for
            non-overlapping segments, the hop asked for otherwise (``None`` on error).
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
    window_seconds: float | None = None
    window_hop: float | None = None

    @property
    def window_starts(self) -> list[float]:
        """Each row's start in seconds from the start of the file."""
        hop = self.window_hop or 0.0
        return [index * hop for index in range(len(self.segment_probabilities))]

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
            window_seconds=data.get("window_seconds"),  # absent from JSON of before windows
            window_hop=data.get("window_hop"),
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
            "window_seconds": self.window_seconds,
            "window_hop": self.window_hop,
            "window_starts": self.window_starts,
            "segment_probabilities": [list(row) for row in self.segment_probabilities],
        }


# --- one file -------------------------------------------------------------------------------------


def _top_k(mean: np.ndarray, genres: Sequence[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-mean, kind="stable")[:k]
    return [(genres[i], float(mean[i])) for i in order]


def _check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise ConfigError(f"predict setting top_k={top_k}: must be >= 1")


def predict_file(
    path: str | Path,
    predictor: Predictor,
    *,
    top_k: int = 3,
    max_segments_in_memory: int = 64,
    window_hop: float | None = None,
) -> TrackPrediction:
    """Predict the genre of one audio file of any format, rate, channel count and length.

    The file is streamed (:func:`~genre_jax.segment_rows.file_rows`): at most
    ``max_segments_in_memory`` segments of audio are held on the host at once, and at most
    :data:`~genre_jax.segment_rows.DEVICE_BATCH` on the device.

    Args:
        path: the audio file.
        predictor: a loaded run (:func:`genre_jax.inference.load_predictor`).
        top_k: how many genres :attr:`TrackPrediction.top_k` lists (capped at the genre count).
        max_segments_in_memory: segments of audio decoded before they are scored.
        window_hop: score overlapping windows of one segment starting every ``window_hop``
            seconds instead of the non-overlapping segments.

    Returns:
        The prediction; a file refused gives a :class:`TrackPrediction` with ``error`` set to
        the reason instead of raising (see :class:`FileRefused`).
    """
    _check_top_k(top_k)
    # A mixed ensemble's members each read the file with their own features
    # (track_prediction takes their mean, segment by segment).
    try:
        found = [
            file_rows(
                path,
                reader.feature_config,
                reader.predict_proba,
                what="probabilities",
                max_segments_in_memory=max_segments_in_memory,
                hop_seconds=window_hop,
            )
            for reader in predictor.readers
        ]
    except FileRefused as refused:
        return TrackPrediction.failed(str(path), refused.reason)
    return track_prediction(str(path), predictor.genres, found, top_k)


def track_prediction(
    path: str, genres: Sequence[str], found: Sequence[FileRows], top_k: int
) -> TrackPrediction:
    """The prediction of one input from its rows ``found`` by each reader (a mixed
    ensemble's members: one each): their mean, row by row; the genre is that of the highest
    mean probability."""
    # A mixed ensemble's members each read the input at their own rate; row i is the same
    # seconds for all (they cut the same segments), and rates round a segment's end
    # differently, so only the rows all of them have are kept.
    count = min(len(f.rows) for f in found)
    probs = np.mean([f.rows[:count] for f in found], axis=0)
    mean = probs.mean(axis=0)
    return TrackPrediction(
        path=path,
        genre=genres[int(np.argmax(mean))],
        probabilities={g: float(p) for g, p in zip(genres, mean, strict=True)},
        segments=int(probs.shape[0]),
        segment_probabilities=probs.tolist(),
        top_k=_top_k(mean, genres, top_k),
        padded=found[0].padded,
        duration=found[0].duration,
        window_seconds=found[0].window_seconds,
        window_hop=found[0].hop_seconds,
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
    window_hop: float | None = None,
) -> list[TrackPrediction]:
    """Predict every file given, and every audio file under every folder given.

    With ``share``, in a multi-process run each process predicts its contiguous block of the
    files and every process gets all the predictions back, in order.

    Files that cannot be read give a :class:`TrackPrediction` whose ``error`` says why; the
    others are still predicted. ``progress`` shows a rich progress bar on ``progress_file``
    (standard error by default, so that standard output stays clean for JSON).
    ``window_hop``: see :func:`predict_file`.
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
                    path,
                    predictor,
                    top_k=top_k,
                    max_segments_in_memory=max_segments_in_memory,
                    window_hop=window_hop,
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


def _table(
    results: Sequence[TrackPrediction], top_k: int, out: TextIO, *, windows: bool = False
) -> None:

    table = Table(title="Genre predictions")
    table.add_column("file", overflow="fold")
    table.add_column("genre")
    table.add_column("probability", justify="right")
    table.add_column(f"top {top_k}")
    table.add_column("windows" if windows else "segments", justify="right")
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


def plot_outputs(out: Path, files: Sequence[Path]) -> list[Path]:
    """Where ``--plot OUT.png`` writes each file's taggram: ``OUT.png`` for one file; for
    several, ``OUT-<file name>.png`` each (``-2``, ``-3`` ... after a name met before)."""
    if len(files) == 1:
        return [out]
    names: list[Path] = []
    seen: dict[str, int] = {}
    for file in files:
        stem = f"{out.stem}-{file.stem}"
        seen[stem] = seen.get(stem, 0) + 1
        suffix = "" if seen[stem] == 1 else f"-{seen[stem]}"
        names.append(out.with_name(f"{stem}{suffix}{out.suffix}"))
    return names


def _check_plots(plot: Path, files: Sequence[Path], overwrite: bool) -> list[Path]:
    """The taggrams' paths, each refused (naming it) if it would cost the user a file: an
    existing file (unless ``overwrite``), an audio file given (always), a name not ending in
    ``.png``."""
    from genre_jax.audio_plots import check_plot_output

    outputs = plot_outputs(plot, files)
    for file, out in zip(files, outputs, strict=True):
        check_plot_output(file, out, overwrite=overwrite)
    # Only a path that exists can be one of the inputs: each of those against every input
    # (a folder of n files would otherwise cost n * n checks).
    for out in (out for out in outputs if os.path.lexists(out)):
        for file in files:
            check_plot_output(file, out, overwrite=overwrite)
    return outputs


def predict_command(
    paths: Sequence[str | Path],
    run_dir: str | Path,
    *,
    top_k: int = 3,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    progress: bool | None = None,
    window_hop: float | None = None,
    plot: str | Path | None = None,
    overwrite: bool = False,
) -> int:
    """``genre-jax predict PATH... --run-dir RUN``: print the genre of every file given.

    Loads the run's predictor once, predicts every file (folders: every audio file under
    them), prints a table on ``out`` (standard output by default) or, with ``as_json``, a JSON
    list of :meth:`TrackPrediction.to_json` (files with errors included). Each file that could
    not be predicted is reported by name and reason on ``err`` (standard error by default).
    In a multi-process run each process predicts its share of the files and process 0
    prints them all.
    ``progress`` (default: ``err`` is a terminal) shows a progress bar on ``err``.
    ``window_hop``: overlapping windows of one segment every ``window_hop`` seconds
    (:func:`predict_file`); ``plot``: a PNG of each file's probabilities over time
    (:func:`plot_outputs` names them), refused before anything is predicted if it would
    replace a file (an existing PNG is replaced with ``overwrite``; an input never).

    Returns:
        0 when at least one file was predicted, 1 when none could be.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    _check_top_k(top_k)
    if window_hop is not None:
        from genre_jax.windows import check_hop

        check_hop(window_hop)
    files = [path for path, reason in expand_paths(paths) if reason is None]
    plots = _check_plots(Path(plot), files, overwrite) if plot is not None else []
    predictor = load_predictor(run_dir)
    if progress is None:
        progress = err.isatty()
    main = jax.process_index() == 0
    results = predict_paths(
        paths,
        predictor,
        top_k=top_k,
        progress=progress and main,
        progress_file=err,
        share=True,
        window_hop=window_hop,
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
        _table(results, top_k, out, windows=window_hop is not None)
    plot_of = dict(zip([str(f) for f in files], plots, strict=False))  # none without --plot
    for result in results:
        if result.error is None and result.path in plot_of:
            _plot(result, predictor.genres, plot_of[result.path])
            print(f"wrote {plot_of[result.path]}", file=err)
    summary = f"predicted {predicted} of {len(results)} file(s) with {predictor.model_name}"
    print(summary + (f"; {len(failed)} could not be read" if failed else ""), file=err)
    return 0 if predicted else 1


def _plot(result: TrackPrediction, genres: Sequence[str], path: Path) -> None:
    """Draw ``result``'s rows over time at ``path``."""
    from genre_jax.audio_plots import taggram

    hop = result.window_hop or 0.0
    what = f"windows every {hop:g} s" if hop != result.window_seconds else "segments"
    title = (
        f"{Path(result.path).name}: {result.genre} ({len(result.segment_probabilities)} "
        f"{what} of {result.window_seconds:g} s)"
    )
    taggram(
        np.asarray(result.segment_probabilities),
        list(genres),
        np.asarray(result.window_starts),
        result.window_seconds or 0.0,
        path,
        title,
        result.window_hop,
    )
