"""Embeddings to files (``genre-jax embed``): a vector per segment and per track, of audio files
or of a feature store, from the pretrained musicnn or a trained network's penultimate layer.

``embed(paths, out, model="musicnn")`` or ``embed(paths, out, run_dir=RUN)`` writes one
``.npz`` (read it with ``numpy.load``; no pickled objects):

| array | holds |
| --- | --- |
| ``segment_embeddings`` | ``(segments, width)`` float32, every full segment of every track |
| ``segment_track`` | ``(segments,)`` int32, the segment's row in the track arrays |
| ``segment_position`` | ``(segments,)`` int32, its position within the track (0, 1, ...) |
| ``track_embeddings`` | ``(tracks, width)`` float32, the mean of the track's segments |
| ``track_ids`` | ``(tracks,)`` str: the file as found, or the store's track id |
| ``track_paths`` | ``(tracks,)`` str: the audio file |
| ``track_genres`` | ``(tracks,)`` str: the genre when known, else ``""`` |
| ``settings`` | a JSON string: the embedder, its weights' or network's digest, the feature |
| | settings (segment length included), the inputs, and each file not embedded with why |

Audio files are read as ``predict`` reads them (:func:`genre_jax.segment_rows.file_rows`): any
format, streamed in bounded memory, full segments only (a file shorter than one segment is
zero-padded to one), and a file that cannot be read is named with its reason while the others
are still embedded. A file's genre is known when it was found under a folder given (the name
of its own folder, the layout of a GTZAN copy). A feature store gives its own segments, track
ids and genres; its embeddings are those of :mod:`genre_jax.embedding_cache`, computed once
per store and embedder and kept in the store, so they are the very rows ``musicnnsvm`` feeds
its scaler when trained on that store.

musicnn reads 16 kHz log-compressed mel bands (:data:`~genre_jax.models.musicnn.INPUT_FEATURES`)
and averages its 3 s patches over a segment; audio files are cut into segments of
``segment_seconds`` (default 3 s: one patch each, as musicnn's own extractor). A network run
embeds with its own feature settings; its ``embed`` method gives the activations its output
layer reads (:mod:`genre_jax.models.spec`). The two embedders are :mod:`genre_jax.embedders`'.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from genre_jax.config import ConfigError
from genre_jax.embedders import (
    MODELS,
    Embedder,
    musicnn_embedder,
    network_embedder,
)
from genre_jax.embedding_cache import store_table
from genre_jax.fileio import atomic_write_bytes, library_versions
from genre_jax.models.musicnn import DEFAULT_CHECKPOINT, PATCH_SECONDS
from genre_jax.predict import expand_paths, with_progress
from genre_jax.segment_rows import FileRefused, file_rows
from genre_jax.settings import require_same
from genre_jax.store import FeatureStore, resolve_store


@dataclass
class Embeddings:
    """The arrays of an embedding file (see the module docstring), and what was not embedded."""

    segment_embeddings: np.ndarray
    segment_track: np.ndarray
    segment_position: np.ndarray
    track_ids: list[str]
    track_paths: list[str]
    track_genres: list[str]
    failed: list[dict[str, str]]

    @property
    def track_embeddings(self) -> np.ndarray:
        """Each track's mean over its segments, ``(tracks, width)`` float32."""
        width = self.segment_embeddings.shape[1] if self.segment_embeddings.ndim == 2 else 0
        sums = np.zeros((len(self.track_ids), width), np.float64)
        np.add.at(sums, self.segment_track, self.segment_embeddings)
        counts = np.bincount(self.segment_track, minlength=len(self.track_ids))
        return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def _genre_of(file: Path, given: Path) -> str:
    """The name of the file's folder when it was found under a folder given, else ``""``."""
    return file.parent.name if given.is_dir() and file.parent != given else ""


def embed_audio(
    paths: Sequence[str | Path],
    embedder: Embedder,
    *,
    progress: bool = False,
    progress_file: TextIO | None = None,
    max_segments_in_memory: int = 64,
) -> Embeddings:
    """Embed every audio file given and every audio file under every folder given."""
    items = []
    for given in paths:
        for file, reason in expand_paths([given]):
            items.append((file, reason, Path(given)))
    parts, tracks, positions = [], [], []
    ids: list[str] = []
    genres: list[str] = []
    failed: list[dict[str, str]] = []
    seen: set[Path] = set()
    for file, reason, given in with_progress(items, "Embedding", progress, progress_file):
        if file.resolve() in seen:
            continue
        seen.add(file.resolve())
        if reason is not None:
            failed.append({"path": str(file), "reason": reason})
            continue
        try:
            found = file_rows(
                file,
                embedder.feature_config,
                embedder.rows_of,
                what="embeddings",
                max_segments_in_memory=max_segments_in_memory,
            )
        except FileRefused as refused:
            failed.append({"path": str(file), "reason": refused.reason})
            continue
        count = len(found.rows)
        parts.append(np.asarray(found.rows, np.float32))
        tracks.append(np.full(count, len(ids), np.int32))
        positions.append(np.arange(count, dtype=np.int32))
        ids.append(str(file))
        genres.append(_genre_of(file, given))
    width = parts[0].shape[1] if parts else 0
    return Embeddings(
        np.concatenate(parts) if parts else np.zeros((0, width), np.float32),
        np.concatenate(tracks) if tracks else np.zeros(0, np.int32),
        np.concatenate(positions) if positions else np.zeros(0, np.int32),
        ids,
        list(ids),
        genres,
        failed,
    )


def embed_store(store: FeatureStore, embedder: Embedder) -> Embeddings:
    """Embed every segment of a feature store (its cached table, :mod:`genre_jax.embedding_cache`).

    Raises:
        ConfigError: the store holds other features than the embedder reads (each setting
            named; :func:`embed` gives musicnn the store's segment length, a run has its own).
    """
    require_same(
        embedder.feature_config, store.config, f"feature store {store.path} for {embedder.name}"
    )
    shape = store.features.shape[1:]

    def compute(rows: np.ndarray) -> np.ndarray:
        return embedder.rows_of(rows.reshape(len(rows), *shape))

    table = np.asarray(store_table(store, embedder.key, compute))
    used = sorted(set(np.asarray(store.tracks).tolist()))
    row_of = {track: i for i, track in enumerate(used)}
    tracks = [store.manifest.tracks[t] for t in used]
    return Embeddings(
        table,
        np.array([row_of[t] for t in np.asarray(store.tracks)], np.int32),
        np.asarray(store.positions, np.int32),
        [t.id for t in tracks],
        [t.path for t in tracks],
        [t.genre for t in tracks],
        [],
    )


def _is_store(path: Path) -> bool:
    """A store folder, or a ``prepare --out`` folder holding stores (and no audio)."""
    return (path / "store.json").is_file() or (path.is_dir() and any(path.glob("*/store.json")))


def _store_in(paths: Sequence[str | Path]) -> FeatureStore | None:
    """The feature store ``paths`` name (one store folder alone, or the ``prepare --out``
    folder of exactly one store), or None for audio paths."""
    stores = [Path(p) for p in paths if _is_store(Path(p))]
    if not stores:
        return None
    if len(paths) > 1:
        raise ConfigError(
            f"embed: {stores[0]} is a feature store; give one store alone, or audio files and "
            "folders"
        )
    return FeatureStore.open(resolve_store(stores[0]))


def write_embeddings(out: Path, result: Embeddings, settings: dict[str, Any]) -> None:
    """Write ``result`` to ``out`` as one ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        segment_embeddings=result.segment_embeddings,
        segment_track=result.segment_track,
        segment_position=result.segment_position,
        track_embeddings=result.track_embeddings,
        track_ids=np.array(result.track_ids, dtype=str),
        track_paths=np.array(result.track_paths, dtype=str),
        track_genres=np.array(result.track_genres, dtype=str),
        settings=np.array(json.dumps(settings)),
    )
    atomic_write_bytes(out, buffer.getvalue())


def _check_out(out: Path, overwrite: bool) -> None:
    if out.suffix != ".npz":
        raise ConfigError(f"embed --out {out}: the file must end in .npz")
    if out.is_dir():
        raise ConfigError(f"embed --out {out}: is a folder; name the .npz file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"embed --out {out}: exists; pass --overwrite to replace it")


def embed(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | None = None,
    run_dir: str | Path | None = None,
    segment_seconds: float | None = None,
    weights: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    progress_file: TextIO | None = None,
) -> tuple[Embeddings, dict[str, Any]]:
    """Embed audio files and folders, or one feature store, and write ``out`` (``.npz``).

    Give ``model="musicnn"`` or a network's ``run_dir``. ``segment_seconds`` is musicnn's
    segment length for audio (default 3 s); a store has its own, and a run its own.
    ``weights`` is musicnn's checkpoint (:data:`~genre_jax.models.musicnn.CHECKPOINTS`,
    ``MSD_musicnn`` by default).

    Returns:
        The embeddings and the ``settings`` recorded in the file.
    """
    out = Path(out)
    _check_out(out, overwrite)
    if (model is None) == (run_dir is None):
        raise ConfigError("embed: give exactly one of --model musicnn or --run-dir DIR")
    if model is not None and model not in MODELS:
        raise ConfigError(f"embed --model {model!r}: one of {', '.join(MODELS)}")
    store = _store_in(paths)
    if weights is not None and run_dir is not None:
        raise ConfigError("embed --weights: a run embeds with its own weights")
    if segment_seconds is not None and (run_dir is not None or store is not None):
        whose = "the run's" if run_dir is not None else "the store's"
        raise ConfigError(f"embed --segment-seconds: the segments are {whose} own")
    if run_dir is not None:
        embedder = network_embedder(run_dir)
    else:
        seconds = store.config.segment_seconds if store is not None else segment_seconds
        seconds = PATCH_SECONDS if seconds is None else seconds
        embedder = musicnn_embedder(seconds, weights or DEFAULT_CHECKPOINT)
    if store is not None:
        result = embed_store(store, embedder)
        inputs = {
            "store": str(store.path.resolve()),
            "data_dir": store.manifest.root,
            "tracks_skipped_by_prepare": len(store.manifest.skipped()),
        }
    else:
        result = embed_audio(paths, embedder, progress=progress, progress_file=progress_file)
        inputs = {"paths": [str(p) for p in paths]}
    features = embedder.feature_config  # a store's own, checked by embed_store
    settings = {
        "embedder": embedder.source,
        "features": features.to_json(),
        "segment_seconds": features.segment_seconds,
        "width": int(result.segment_embeddings.shape[1]),
        "inputs": inputs,
        "failed": result.failed,
        "versions": library_versions(),
    }
    if result.track_ids:  # nothing embedded: no file, rather than an empty one
        write_embeddings(out, result, settings)
    return result, settings


def embed_command(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    model: str | None = None,
    run_dir: str | Path | None = None,
    segment_seconds: float | None = None,
    weights: str | None = None,
    overwrite: bool = False,
    err: TextIO | None = None,
) -> int:
    """``genre-jax embed PATH... --out FILE.npz [--model musicnn | --run-dir DIR]``: each file
    not embedded is named with its reason on ``err`` (and in the file's ``settings``); 0 when
    some track was embedded, else 1 (and no file is written)."""
    err = err if err is not None else sys.stderr
    result, settings = embed(
        paths,
        out,
        model=model,
        run_dir=run_dir,
        segment_seconds=segment_seconds,
        weights=weights,
        overwrite=overwrite,
        progress=err.isatty(),
        progress_file=err,
    )
    for failure in result.failed:
        print(f"error: {failure['path']}: {failure['reason']}", file=err)
    tracks, segments = len(result.track_ids), len(result.segment_track)
    not_embedded = f"; {len(result.failed)} file(s) could not be read" if result.failed else ""
    if not tracks:
        print(f"embedded nothing{not_embedded}; {out} not written", file=err)
        return 1
    print(
        f"embedded {segments} segment(s) of {tracks} track(s) with {settings['embedder']['model']} "
        f"({settings['width']} values per {settings['segment_seconds']:g} s segment) to {out}"
        + not_embedded,
        file=err,
    )
    return 0
