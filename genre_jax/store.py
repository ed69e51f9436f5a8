"""The feature store: decoded, segmented, extracted features on disk, keyed by feature config.

``prepare(data_dir, out_dir, config)`` writes ``out_dir/<kind>-<config hash>/``:

| file | holds |
| --- | --- |
| ``features.npy`` | ``(segments, frames, coefficients)`` float32 |
| ``labels.npy`` | genre index of each segment, int32 |
| ``tracks.npy`` | index into the manifest's tracks of each segment, int32 |
| ``positions.npy`` | position of each segment within its track (0, 1, 2, ...), int32 |
| ``manifest.json`` | every track with its status; skipped files and why |
| ``store.json`` | feature config, its hash, data fingerprint, counts, library versions |

The folder is built under a temporary name and renamed into place only when complete, with
``store.json`` written last, so a store that opens is never half-written. Running ``prepare``
again with the same config reuses the store; another config writes another folder.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from genre_jax.audio import AudioError, load_audio, segment
from genre_jax.config import FeatureConfig, require_same
from genre_jax.datasets import Manifest, discover
from genre_jax.features import extract_jit
from genre_jax.fileio import (
    atomic_write_json,
    library_versions,
    publish_dir,
    read_json,
    staging_dir,
)

STORE_VERSION = 1
_ARRAYS = ("features", "labels", "tracks", "positions")

T = TypeVar("T")
R = TypeVar("R")


class StoreError(ValueError):
    """A feature store is missing, incomplete, inconsistent, or built from other data."""


@dataclass
class FeatureStore:
    """An opened feature store. Arrays are memory-mapped read-only."""

    path: Path
    config: FeatureConfig
    manifest: Manifest
    features: np.ndarray
    labels: np.ndarray
    tracks: np.ndarray
    positions: np.ndarray
    info: dict[str, Any]

    @property
    def genres(self) -> list[str]:
        return self.manifest.genres

    @property
    def track_labels(self) -> np.ndarray:
        """Genre index of every manifest track (including skipped ones)."""
        return self.manifest.labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        """Open a complete store; raise :class:`StoreError` naming what is wrong otherwise."""
        path = Path(path)
        info_path = path / "store.json"
        if not info_path.is_file():
            raise StoreError(f"{path}: not a complete feature store (no store.json)")
        info = read_json(info_path)
        if info.get("version") != STORE_VERSION:
            raise StoreError(
                f"{path}: store format version {info.get('version')!r}, expected {STORE_VERSION}"
            )
        config = FeatureConfig.from_json(info["feature_config"])
        if config.hash() != info.get("feature_hash"):
            raise StoreError(f"{path}: feature_hash in store.json does not match its config")
        arrays = {}
        for name in _ARRAYS:
            try:
                arrays[name] = np.load(path / f"{name}.npy", mmap_mode="r")
            except (OSError, ValueError) as error:
                raise StoreError(f"{path}: cannot read {name}.npy ({error})") from error
        count = info["segments"]
        expected = (count, config.n_frames, config.n_features)
        if arrays["features"].shape != expected:
            raise StoreError(
                f"{path}: features.npy has shape {arrays['features'].shape}, expected {expected}"
            )
        for name in _ARRAYS[1:]:
            if arrays[name].shape != (count,):
                raise StoreError(
                    f"{path}: {name}.npy has {arrays[name].shape[0]} rows, not {count}"
                )
        manifest = Manifest.from_json(read_json(path / "manifest.json"))
        return cls(path=path, config=config, manifest=manifest, info=info, **arrays)


def store_path(out_dir: str | os.PathLike, config: FeatureConfig) -> Path:
    """Folder of the store for ``config`` under ``out_dir``: ``<kind>-<hash>``."""
    return Path(out_dir) / f"{config.kind}-{config.hash()}"


def resolve_store(path: str | os.PathLike) -> Path:
    """Accept a store folder, or a ``prepare --out`` folder holding exactly one store."""
    path = Path(path)
    if (path / "store.json").is_file():
        return path
    candidates = sorted(p.parent for p in path.glob("*/store.json"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise StoreError(f"{path}: no feature store here (run `genre-jax prepare` first)")
    names = ", ".join(p.name for p in candidates)
    raise StoreError(f"{path}: holds several feature stores ({names}); name one of them")


def _prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int, depth: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with at most ``depth`` results pending."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _Extractor:
    """Runs the jitted extraction on fixed-size batches (the last one zero-padded)."""

    def __init__(self, config: FeatureConfig, batch_size: int) -> None:
        self.config = config
        self.batch_size = batch_size
        self.buffer: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def add(self, segments: np.ndarray) -> None:
        self.buffer.extend(segments)
        while len(self.buffer) >= self.batch_size:
            self._run(self.buffer[: self.batch_size])
            del self.buffer[: self.batch_size]

    def finish(self) -> np.ndarray:
        if self.buffer:
            self._run(self.buffer)
            self.buffer = []
        if not self.outputs:
            shape = (0, self.config.n_frames, self.config.n_features)
            return np.zeros(shape, np.float32)
        return np.concatenate(self.outputs)

    def _run(self, rows: list[np.ndarray]) -> None:
        batch = np.zeros((self.batch_size, self.config.segment_samples), np.float32)
        batch[: len(rows)] = np.stack(rows)
        features = np.asarray(extract_jit(batch, self.config))
        self.outputs.append(features[: len(rows)])


def _decode_track(path: str, config: FeatureConfig) -> tuple[np.ndarray | None, float, str]:
    try:
        audio = load_audio(path, config.sample_rate)
    except AudioError as error:
        return None, 0.0, error.reason
    return segment(audio, config.segment_samples), audio.shape[0] / config.sample_rate, ""


def prepare(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FeatureConfig | None = None,
    *,
    batch_size: int = 16,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FeatureStore:
    """Decode, segment and extract every track under ``data_dir`` into a store in ``out_dir``.

    Reuses an existing complete store for the same config and data; refuses one built from
    other data unless ``overwrite``. Files that cannot be decoded, or hold no full segment,
    are recorded in the manifest with the reason, reported through ``log``, and skipped.
    """
    config = config or FeatureConfig()
    manifest = discover(data_dir)
    final = store_path(out_dir, config)
    if final.exists() and not overwrite:
        fingerprint = manifest.fingerprint()
        store = FeatureStore.open(final)
        if store.info.get("data_fingerprint") != fingerprint:
            raise StoreError(
                f"{final}: built from other data than {manifest.root}: "
                f"{_data_difference(store.manifest, manifest)}; "
                "pass --overwrite or choose another --out"
            )
        log(f"Reusing feature store {final} ({len(store)} segments)")
        return store

    started = time.perf_counter()
    if _process_count() > 1:
        from genre_jax.store_shards import prepare_distributed

        return prepare_distributed(
            data_dir,
            out_dir,
            config,
            batch_size=batch_size,
            workers=workers,
            overwrite=overwrite,
            progress=progress,
            log=log,
        )
    arrays = _extract(manifest, range(len(manifest.tracks)), config, batch_size, workers, progress)
    return _write_store(final, manifest, arrays, config, started, overwrite, log)


def _data_difference(built: Manifest, now: Manifest) -> str:
    """How the data a store was built from differs from ``now`` (for the refusal message)."""
    if os.path.abspath(built.root) != os.path.abspath(now.root):
        return f"the store was built from {built.root} ({len(built.tracks)} files)"
    before = {os.path.relpath(t.path, built.root) for t in built.tracks}
    after = {os.path.relpath(t.path, now.root) for t in now.tracks}
    if before != after:
        return (
            f"{len(after - before)} files added and {len(before - after)} removed since the "
            f"store was built ({len(before)} files then, {len(after)} now)"
        )
    return (
        f"the same {len(after)} files, but some changed size or modification time since the "
        "store was built (edited, or copied again)"
    )


def _process_count() -> int:
    import jax

    return jax.process_count()


def _extract(
    manifest: Manifest,
    indices: Iterable[int],
    config: FeatureConfig,
    batch_size: int,
    workers: int,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Decode, segment and extract the tracks ``indices``; record each one's status."""
    indices = list(indices)
    extractor = _Extractor(config, batch_size)
    labels, tracks, positions = [], [], []
    genre_index = manifest.genre_index

    def decode(i: int) -> tuple[int, tuple[np.ndarray | None, float, str]]:
        return i, _decode_track(manifest.tracks[i].path, config)

    results = _prefetch(decode, indices, workers, depth=4 * workers)
    for i, (segments, duration, reason) in _progress(results, len(indices), progress):
        track = manifest.tracks[i]
        if segments is None:
            track.status, track.error = "error", reason
            continue
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
    return {
        "features": extractor.finish(),
        "labels": np.asarray(labels, np.int32),
        "tracks": np.asarray(tracks, np.int32),
        "positions": np.asarray(positions, np.int32),
    }


def _write_store(
    final: Path,
    manifest: Manifest,
    arrays: dict[str, np.ndarray],
    config: FeatureConfig,
    started: float,
    overwrite: bool,
    log: Callable[[str], None],
) -> FeatureStore:
    """Write a complete store under a temporary name and rename it to ``final``."""
    if not len(arrays["labels"]):
        raise StoreError(f"{manifest.root}: no track gave a full segment; nothing to store")
    info = {
        "version": STORE_VERSION,
        "feature_config": config.to_json(),
        "feature_hash": config.hash(),
        "data_root": manifest.root,
        "data_fingerprint": manifest.fingerprint(),
        "segments": len(arrays["labels"]),
        "tracks_used": sum(t.status == "ok" for t in manifest.tracks),
        "tracks_skipped": len(manifest.skipped()),
        "genres": manifest.genres,
        "seconds": round(time.perf_counter() - started, 2),
        "versions": library_versions(),
    }
    with staging_dir(final) as staged:
        for name in _ARRAYS:
            np.save(staged / f"{name}.npy", arrays[name])
        atomic_write_json(staged / "manifest.json", manifest.to_json())
        atomic_write_json(staged / "store.json", info)
        if not publish_dir(staged, final, replace=overwrite):
            log(f"Another process finished {final} first; using it")
    for track in manifest.skipped():
        log(f"skipped {track.path}: {track.error}")
    log(
        f"Feature store {final}: {info['segments']} segments from {info['tracks_used']} tracks "
        f"({info['tracks_skipped']} skipped) in {info['seconds']} s"
    )
    return FeatureStore.open(final)


def _progress(items: Iterable[T], total: int, enabled: bool) -> Iterable[T]:
    if not enabled:
        return items
    from rich.progress import track

    return track(items, total=total, description="Extracting features")


def require_config(store: FeatureStore, expected: FeatureConfig) -> None:
    """Raise :class:`ConfigError` naming each feature setting where the store differs."""
    require_same(expected, store.config, f"feature store {store.path}")
