"""Building a feature store from audio: ``prepare``, alone or one block of tracks per process.

``prepare(data_dir, out_dir, config)`` writes ``out_dir/<kind>-<config hash>/``, the store
:mod:`genre_jax.store` opens (its files are listed there).

The tracks are decoded and extracted by :func:`genre_jax.extraction.extract_tracks`, each
track's features written to the current shard as soon as they are extracted, so no process
holds more than a shard of features whatever the dataset's size. The folder is built under a
temporary name and renamed into place only when complete, with ``store.json`` written last
(:func:`write_store`), so a store that opens is never half-written. Running ``prepare`` again
with the same config reuses the store; another config writes another folder. In a multi-host
run each process extracts a contiguous block of the tracks into its own shards
(:func:`extract_shard`) and process 0 completes the store from their small arrays
(:func:`merge_shards`): the same rows in the same order as one process would write.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from genre_jax import legacy
from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.datasets import Manifest, discover
from genre_jax.extraction import extract_tracks
from genre_jax.fileio import (
    atomic_write_json,
    file_digest,
    library_versions,
    publish_dir,
    remove_abandoned,
    staging_dir,
)
from genre_jax.identity import data_identity, duplicate_songs
from genre_jax.parallel import barrier, process_block
from genre_jax.store import FeatureStore, store_path
from genre_jax.store_checks import STORE_VERSION, StoreError
from genre_jax.store_shards import (
    DEFAULT_SHARD_SEGMENTS,
    SMALL_ARRAYS,
    ShardWriter,
    building_dir,
    part_path,
    read_parts,
    write_part,
)

PREPARE_LIMITS = {"batch_size": 4096, "workers": 256, "shard_segments": 1 << 24}
"""The largest value of each ``prepare`` count: a batch of 4,096 10 s segments is 3.6 GB of
samples, 256 decoding threads are far more than any machine's cores, and 16 M rows make a
shard of tens of GB."""


def _check_positive(**settings: Any) -> None:
    """Raise :class:`ConfigError` naming each ``prepare`` setting that is not a count from 1 to
    its :data:`PREPARE_LIMITS`."""
    for name, value in settings.items():
        limit = PREPARE_LIMITS[name]
        is_count = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not is_count or not 1 <= value <= limit:
            option = "--" + name.replace("_", "-")
            shown = repr(value) if len(repr(value)) <= 24 else repr(value)[:21] + "..."
            raise ConfigError(
                f"prepare setting {name}={shown} ({option}): must be a count from 1 to {limit:,}"
            )


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
    subset: str | None = None,
    shard_segments: int = DEFAULT_SHARD_SEGMENTS,
) -> FeatureStore:
    """Decode, segment and extract every track of the dataset at ``data_dir`` (a folder or a
    CSV manifest; ``subset`` is FMA's, :func:`genre_jax.datasets.discover`) into a store in
    ``out_dir``, its features in shards of ``shard_segments`` rows.

    Reuses an existing complete store for the same config and data (whatever its shards);
    refuses one built from other data unless ``overwrite``; builds again one of the same data
    that records no song identities (:func:`genre_jax.legacy.rebuild_unidentified`). Files that
    cannot be decoded, hold no full segment, or give features that are not finite are
    recorded in the manifest with the reason, reported through ``log``, and skipped; a warning
    about a file that is kept (a truncation, say) is recorded in its ``warning`` and reported
    too, and so are files that hold the same audio.

    Raises:
        ConfigError: ``batch_size``, ``workers`` or ``shard_segments`` is not a count from 1
            to its :data:`PREPARE_LIMITS` (before any folder is touched).
        DatasetError: ``data_dir`` is not a dataset this reads.
        StoreError: the store there was built from other data, or is damaged.
    """
    _check_positive(batch_size=batch_size, workers=workers, shard_segments=shard_segments)
    config = config or FeatureConfig()
    manifest = discover(data_dir, subset)
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
        if not legacy.rebuild_unidentified(store, log):
            log(f"Reusing feature store {final} ({len(store)} segments)")
            return store
        overwrite = True
    if manifest.layout != "folders" and jax.process_index() == 0:
        log(manifest.describe())
    options = {"batch_size": batch_size, "workers": workers, "shard_segments": shard_segments}
    if jax.process_count() > 1:
        return prepare_distributed(
            data_dir,
            out_dir,
            config,
            **options,
            overwrite=overwrite,
            progress=progress,
            log=log,
            subset=subset,
        )
    started = time.perf_counter()
    for leftover in remove_abandoned(final):
        log(f"removed {leftover}, left by an earlier prepare that was killed")
    with staging_dir(final) as staged:
        writer = ShardWriter(staged, "0000", shard_segments)
        every = range(len(manifest.tracks))
        arrays = extract_tracks(
            manifest, every, config, batch_size, workers, progress, sink=writer.add
        )
        shards = writer.close()
        return write_store(final, staged, manifest, arrays, shards, config, started, overwrite, log)


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


def write_store(
    final: Path,
    staged: Path,
    manifest: Manifest,
    arrays: dict[str, np.ndarray],
    shards: list[dict[str, Any]],
    config: FeatureConfig,
    started: float,
    overwrite: bool,
    log: Callable[[str], None],
) -> FeatureStore:
    """Complete the store being built in ``staged`` (its feature ``shards`` written there
    already) and rename it to ``final``.

    Writes the small arrays of ``arrays``, the manifest and, last, store.json, which records
    the digest of each array file as written and the shards in order.
    """
    if not len(arrays["labels"]):
        raise StoreError(
            f"{manifest.root}: no track gave a full segment with finite features; nothing to store"
        )
    info = {
        "version": STORE_VERSION,
        "feature_config": config.to_json(),
        "feature_hash": config.hash(),
        "data_root": manifest.root,
        "data_fingerprint": manifest.fingerprint(),
        "segments": len(arrays["labels"]),
        "tracks_used": sum(t.status == "ok" for t in manifest.tracks),
        "tracks_skipped": len(manifest.skipped()),
        "tracks_excluded": len(manifest.excluded),
        "data_identity": data_identity(manifest),
        "layout": manifest.layout,
        "subset": manifest.subset,
        "genres": manifest.genres,
        "seconds": round(time.perf_counter() - started, 2),
        "versions": library_versions(),
    }
    digests = {}
    for name in SMALL_ARRAYS:
        np.save(staged / f"{name}.npy", arrays[name])
        digests[f"{name}.npy"] = file_digest(staged / f"{name}.npy")
    info["sha256"] = digests
    info["shards"] = shards
    atomic_write_json(staged / "manifest.json", manifest.to_json())
    atomic_write_json(staged / "store.json", info)
    os.chmod(staged, _folder_mode())  # a temporary folder is made 0700; a store is shared
    if not publish_dir(staged, final, replace=overwrite):
        log(f"Another process finished {final} first; using it")
    for track in manifest.skipped():
        log(f"skipped {track.path}: {track.error}")
    for track in manifest.tracks:
        if track.warning:
            log(f"warning {track.path}: {track.warning}")
    for content, paths in duplicate_songs(manifest):
        log(
            f"warning: the same audio ({content[:12]}) is in {len(paths)} files: "
            + ", ".join(paths)
        )
    log(
        f"Feature store {final}: {info['segments']} segments from {info['tracks_used']} tracks "
        f"({info['tracks_skipped']} skipped) in {len(shards)} shard(s), {info['seconds']} s"
    )
    return FeatureStore.open(final)


def _folder_mode() -> int:
    """Permissions a plain ``mkdir`` would give a folder (0o777 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def extract_shard(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FeatureConfig,
    index: int,
    count: int,
    *,
    batch_size: int = 16,
    workers: int = 2,
    progress: bool = False,
    subset: str | None = None,
    shard_segments: int = DEFAULT_SHARD_SEGMENTS,
) -> Path:
    """Extract block ``index`` of ``count`` of the manifest's tracks
    (:func:`genre_jax.parallel.process_block`).

    Its features go to feature shards ``features/<index>-<n>.npy`` in the store's building
    folder (:func:`genre_jax.store_shards.building_dir`); its tracks' statuses and its small
    arrays to its part file, written atomically last (returned), which
    :func:`merge_shards` reads.
    """
    manifest = discover(data_dir, subset)
    final = store_path(out_dir, config)
    indices = process_block(len(manifest.tracks), index, count)
    writer = ShardWriter(building_dir(final), f"{index:04d}", shard_segments)
    arrays = extract_tracks(
        manifest, indices, config, batch_size, workers, progress, sink=writer.add
    )
    path = part_path(final, index, count)
    statuses = [dataclasses.asdict(manifest.tracks[i]) for i in indices]
    write_part(path, statuses, arrays, writer.close())
    return path


def merge_shards(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FeatureConfig,
    count: int,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    subset: str | None = None,
) -> FeatureStore:
    """Complete the store from the ``count`` parts in its building folder and publish it.

    Only the parts' small arrays are read: the feature shards stay where the processes wrote
    them, in the order one process would have written their rows.

    Raises:
        StoreError: a part is missing (naming it), or the store cannot be written.
    """
    started = time.perf_counter()
    manifest = discover(data_dir, subset)
    final = store_path(out_dir, config)
    paths = [part_path(final, index, count) for index in range(count)]
    for path in paths:
        if not path.is_file():
            raise StoreError(f"{path}: shard missing; did every process finish extracting?")
    arrays, shards = read_parts(paths, manifest)
    building = building_dir(final)
    for path in paths:
        path.unlink()
    try:
        return write_store(
            final, building, manifest, arrays, shards, config, started, overwrite, log
        )
    finally:
        shutil.rmtree(building, ignore_errors=True)


def prepare_distributed(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FeatureConfig,
    *,
    batch_size: int,
    workers: int,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    subset: str | None = None,
    shard_segments: int = DEFAULT_SHARD_SEGMENTS,
) -> FeatureStore:
    """Every process extracts its block of tracks; process 0 completes the store; all open it.

    Process 0 first clears the building folder of an earlier, interrupted prepare.
    """
    index, count = jax.process_index(), jax.process_count()
    building = building_dir(store_path(out_dir, config))
    if index == 0:
        shutil.rmtree(building, ignore_errors=True)
    barrier("feature-building-cleared")
    extract_shard(
        data_dir,
        out_dir,
        config,
        index,
        count,
        batch_size=batch_size,
        workers=workers,
        progress=progress and index == 0,
        subset=subset,
        shard_segments=shard_segments,
    )
    barrier("feature-shards-written")
    if index == 0:
        merge_shards(data_dir, out_dir, config, count, overwrite=overwrite, log=log, subset=subset)
    barrier("feature-store-published")
    return FeatureStore.open(store_path(out_dir, config))
