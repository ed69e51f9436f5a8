"""The feature store: decoded, segmented, extracted features on disk, keyed by feature config.

``prepare(data_dir, out_dir, config)`` writes ``out_dir/<kind>-<config hash>/``:

| file | holds |
| --- | --- |
| ``features/*.npy`` | ``(segments, frames, coefficients)`` float32 in shards of |
| | ``shard_segments`` rows (:mod:`genre_jax.store_shards`), read as one array |
| ``labels.npy`` | genre index of each segment, int32 |
| ``tracks.npy`` | index into the manifest's tracks of each segment, int32 |
| ``positions.npy`` | position of each segment within its track (0, 1, 2, ...), int32 |
| ``manifest.json`` | every track with its status and its identity (a digest of its |
| | decoded audio, :mod:`genre_jax.identity`); skipped files and why |
| ``store.json`` | feature config, its hash, data fingerprint, data identity, counts, library |
| | versions, the SHA-256 digest of each array file, the feature shards in order with |
| | their rows |

The tracks are decoded and extracted by :func:`genre_jax.extraction.extract_tracks`, each
track's features written to the current shard as soon as they are extracted, so no process
holds more than a shard of features whatever the dataset's size. The folder is built under a
temporary name and renamed into place only when complete, with ``store.json`` written last
(:func:`write_store`), so a store that opens is never half-written. Running ``prepare`` again
with the same config reuses the store; another config writes another folder. In a multi-host
run each process extracts a contiguous block of the tracks into its own shards
(:func:`extract_shard`) and process 0 completes the store from their small arrays
(:func:`merge_shards`): the same rows in the same order as one process would write.

Stores of format 1 (written before shards) hold every feature in one ``features.npy``,
memory-mapped when opened; they open and read as before.

:meth:`FeatureStore.open` checks everything it can cheaply: both JSON files, the shapes and
dtypes of the arrays against the config, that every label is a genre and agrees with its
track's genre in the manifest, that every segment points at a decoded ("ok") track at a valid
position, and the digests of the small arrays (of ``features.npy`` too while the store is at
most :data:`STORE_VERIFY_BYTES`), that the shards are listed in the order they were written,
each once, and that the data identity is that of the manifest's songs. :func:`verify_store`
checks every digest and that every feature value is finite, whatever the size. Stores written
before digests or identities were recorded open with the other checks only.

The *data fingerprint* (paths, sizes and modification times of the files) only tells
``prepare`` whether a folder changed since its store was built; what a run, a fold or an
evaluation is sure of is the *data identity*, of the songs' audio (:mod:`genre_jax.identity`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.datasets import Manifest, discover
from genre_jax.embedding_cache import EMBEDDINGS_DIR, verify_tables
from genre_jax.extraction import ARRAYS, extract_tracks
from genre_jax.fileio import (
    JSONFileError,
    atomic_write_json,
    file_digest,
    library_versions,
    publish_dir,
    read_json_object,
    remove_abandoned,
    staging_dir,
)
from genre_jax.identity import data_identity, duplicate_songs
from genre_jax.parallel import barrier, process_block
from genre_jax.settings import require_same
from genre_jax.store_shards import (
    DEFAULT_SHARD_SEGMENTS,
    SMALL_ARRAYS,
    ShardedFeatures,
    ShardError,
    ShardWriter,
    building_dir,
    part_path,
    read_parts,
    write_part,
)

STORE_VERSION = 2
STORE_VERSIONS = (1, 2)  # 1: features.npy whole; 2: feature shards
STORE_VERIFY_BYTES = 1 << 30
"""Largest store (all four array files together) whose ``features.npy`` digest
:meth:`FeatureStore.open` verifies; the small arrays are verified at any size."""
_HASH_CHUNK = 4 << 20  # bytes read at a time when hashing an array file


class StoreError(ValueError):
    """A feature store is missing, incomplete, inconsistent, or built from other data."""


@dataclass
class FeatureStore:
    """An opened feature store. ``features`` reads its shards on demand
    (:class:`ShardedFeatures`; memory-mapped for a format-1 store), the small arrays are
    memory-mapped read-only.

    ``verified`` names the array files whose SHA-256 digest was checked when it was opened
    (empty for a store written before digests were recorded).
    """

    path: Path
    config: FeatureConfig
    manifest: Manifest
    features: np.ndarray | ShardedFeatures
    labels: np.ndarray
    tracks: np.ndarray
    positions: np.ndarray
    info: dict[str, Any]
    verified: tuple[str, ...] = ()

    @property
    def genres(self) -> list[str]:
        return self.manifest.genres

    @functools.cached_property
    def identity(self) -> str | None:
        """The identity of the store's data (:func:`genre_jax.identity.data_identity`): its
        songs by content, in order, with their genres; None for a store written before songs
        were identified by content."""
        return data_identity(self.manifest)

    @property
    def track_labels(self) -> np.ndarray:
        """Genre index of every manifest track (including skipped ones)."""
        return self.manifest.labels

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def open(cls, path: str | os.PathLike, *, full: bool = False) -> FeatureStore:
        """Open a complete store; raise :class:`StoreError` naming what is wrong otherwise.

        Checks the JSON files, the arrays' shapes, dtypes and contents against the config and
        the manifest, and the recorded digests of ``labels.npy``, ``tracks.npy`` and
        ``positions.npy``; ``features.npy``'s digest too when the store is at most
        :data:`STORE_VERIFY_BYTES`. ``full=True`` (:func:`verify_store`) checks every digest
        and that every feature value is finite, at any size.
        """
        path = Path(path)
        info_path = path / "store.json"
        if not info_path.is_file():
            raise StoreError(f"{path}: not a complete feature store (no store.json)")
        info = _read_json(path, "store.json")
        config = _check_info(path, info)
        manifest = _read_manifest(path, info)
        arrays: dict[str, Any] = {}
        for name in ARRAYS if info["version"] == 1 else SMALL_ARRAYS:
            _require_regular(path, f"{name}.npy")
            try:
                arrays[name] = np.load(path / f"{name}.npy", mmap_mode="r")
            except (OSError, ValueError) as error:
                raise StoreError(f"{path}: cannot read {name}.npy ({error})") from error
        if info["version"] != 1:
            row_shape = (config.n_frames, config.n_features)
            try:
                arrays["features"] = ShardedFeatures(path, info["shards"], row_shape)
            except ShardError as error:
                raise StoreError(f"{path}: {error}; prepare it again with --overwrite") from None
        _check_arrays(path, arrays, info["segments"], config, manifest)
        _check_identity(path, info, manifest)
        verified = _verify_digests(path, info, full)
        if full:
            _check_finite(path, arrays["features"], arrays["tracks"], manifest)
        return cls(
            path=path, config=config, manifest=manifest, info=info, verified=verified, **arrays
        )


def verify_store(path: str | os.PathLike) -> FeatureStore:
    """Open the store at ``path`` checking everything, whatever its size (``check --store``).

    Beyond :meth:`FeatureStore.open`: the digest of every array file, ``features.npy``
    included, that every feature value is finite, and that the cached embeddings hold what
    was written (:func:`genre_jax.embedding_cache.verify_tables`). A store written before
    digests were recorded has nothing to compare with; its ``verified`` is then empty.

    Raises:
        StoreError: the first problem found, naming the store, the file and what is wrong.
    """
    store = FeatureStore.open(path, full=True)
    problems = verify_tables(store)
    if problems:
        raise StoreError(
            f"{store.path}: its embedding cache: {'; '.join(problems)}; it is computed again "
            f"when next needed (or remove {store.path / EMBEDDINGS_DIR})"
        )
    return store


def _require_regular(store: Path, name: str) -> None:
    """``store/name`` is a regular file (a FIFO or a device would block or never end)."""
    try:
        mode = os.stat(store / name).st_mode
    except OSError as error:
        raise StoreError(f"{store}: {name} cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        raise StoreError(f"{store}: {name} is not a regular file (a FIFO, device or folder)")


def _read_json(store: Path, name: str) -> dict[str, Any]:
    """``store/name`` parsed as a JSON object; a missing or unparsable file is a StoreError."""
    file = store / name
    if not file.exists():
        raise StoreError(f"{store}: {name} is missing")
    _require_regular(store, name)
    try:
        return read_json_object(file)
    except JSONFileError as error:
        raise StoreError(f"{store}: {name} {error}") from error


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_info(store: Path, info: dict[str, Any]) -> FeatureConfig:
    """Check store.json's fields; return its feature config."""
    where = f"{store}: store.json"
    if info.get("version") not in STORE_VERSIONS or not _is_int(info.get("version")):
        raise StoreError(
            f"{where}: store format version {_short(info.get('version'))}, expected one of "
            f"{', '.join(map(str, STORE_VERSIONS))}"
        )
    kinds = {
        "feature_config": (dict, "an object"),
        "feature_hash": (str, "a string"),
        "segments": (int, "a whole number"),
        "genres": (list, "a list of genre names"),
    }
    for key, (kind, described) in kinds.items():
        if key not in info:
            raise StoreError(f"{where} has no {key!r}")
        value = info[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise StoreError(f"{where}: {key} is {_short(value)}, not {described}")
    if info["segments"] < 0:
        raise StoreError(f"{where}: segments is {info['segments']}, not a count")
    if not _is_str_list(info["genres"]):
        raise StoreError(f"{where}: genres is {_short(info['genres'])}, not a list of genre names")
    try:
        config = FeatureConfig.from_json(info["feature_config"])
    except (ConfigError, TypeError, ValueError) as error:
        raise StoreError(f"{where}: feature_config is not a valid config ({error})") from error
    if config.hash() != info["feature_hash"]:
        raise StoreError(f"{store}: feature_hash in store.json does not match its config")
    digests = info.get("sha256", {})
    if not isinstance(digests, dict) or not all(
        isinstance(v, str) and len(v) == 64 for v in digests.values()
    ):
        raise StoreError(f"{where}: sha256 is {_short(digests)}, not file name -> hex digest")
    names = ARRAYS if info["version"] == 1 else SMALL_ARRAYS
    unknown = sorted(set(digests) - {f"{name}.npy" for name in names})
    if unknown:
        raise StoreError(f"{where}: sha256 names files a store does not hold: {unknown}")
    if info["version"] != 1:
        _check_shard_index(where, info)
    return config


def _check_shard_index(where: str, info: dict[str, Any]) -> None:
    """store.json's ``shards``: a list of ``{"file", "rows", "sha256"}`` whose rows add up to
    its segments, every file inside the store's ``features/`` folder."""
    shards = info.get("shards")
    if not isinstance(shards, list):
        raise StoreError(f"{where}: shards is {_short(shards)}, not a list of feature shards")
    for i, shard in enumerate(shards):
        ok = (
            isinstance(shard, dict)
            and isinstance(shard.get("file"), str)
            and _is_int(shard.get("rows"))
            and shard["rows"] > 0
            and isinstance(shard.get("sha256"), str)
            and len(shard["sha256"]) == 64
        )
        if not ok:
            raise StoreError(f"{where}: shard {i} is {_short(shard)}, not file, rows, sha256")
        parts = Path(shard["file"]).parts
        if len(parts) != 2 or parts[0] != "features" or parts[1] in ("..", "."):
            raise StoreError(f"{where}: shard {i} names {shard['file']!r}, not a features/ file")
    _check_shard_order(where, [shard["file"] for shard in shards])
    rows = sum(shard["rows"] for shard in shards)
    if rows != info["segments"]:
        raise StoreError(
            f"{where}: its shards hold {rows} rows, but it says {info['segments']} segments"
        )


_SHARD_NAME = re.compile(r"features/(\d{4})-(\d{5})\.npy")


def _check_shard_order(where: str, files: list[str]) -> None:
    """The shards are listed in the order they were written, each once: their names are
    ``features/<process>-<n>.npy`` (:class:`~genre_jax.store_shards.ShardWriter`), processes
    ascending and each process's ``n`` counting up from 0. A list with two entries swapped or
    one repeated would put segments beside another segment's labels."""
    expected: tuple[int, int] = (-1, -1)
    seen: set[str] = set()
    for i, file in enumerate(files):
        if file in seen:
            raise StoreError(
                f"{where}: shard {i} is {file!r} again: a shard listed twice would give its "
                "rows to other segments; prepare the store again with --overwrite"
            )
        seen.add(file)
        match = _SHARD_NAME.fullmatch(file)
        if match is None:
            continue  # a store written by other code names its shards otherwise
        process, n = int(match[1]), int(match[2])
        in_order = (process == expected[0] and n == expected[1] + 1) or (
            process > expected[0] and n == 0
        )
        if not in_order:
            previous = files[i - 1] if i else "none"
            raise StoreError(
                f"{where}: shard {i} is {file!r} after {previous!r}: the shard list is out of "
                "the order the shards were written in (entries swapped, repeated or missing); "
                "prepare the store again with --overwrite"
            )
        expected = (process, n)


def _read_manifest(store: Path, info: dict[str, Any]) -> Manifest:
    """manifest.json parsed and checked against store.json's genres."""
    data = _read_json(store, "manifest.json")
    where = f"{store}: manifest.json"
    for key in ("root", "genres", "tracks"):
        if key not in data:
            raise StoreError(f"{where} has no {key!r}")
    if not isinstance(data["root"], str):
        raise StoreError(f"{where}: root is {_short(data['root'])}, not a path")
    if not _is_str_list(data["genres"]):
        raise StoreError(f"{where}: genres is {_short(data['genres'])}, not a list of genre names")
    if not isinstance(data["tracks"], list):
        raise StoreError(f"{where}: tracks is a {type(data['tracks']).__name__}, not a list")
    genres = set(data["genres"])
    fields = (("id", str), ("genre", str), ("path", str), ("status", str), ("segments", int))
    for i, track in enumerate(data["tracks"]):
        if not isinstance(track, dict):
            raise StoreError(f"{where}: track {i} is {_short(track)}, not an object")
        for key, kind in fields:
            value = track.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise StoreError(
                    f"{where}: track {i} has {key} {_short(value)}, not a {kind.__name__}"
                )
        if track["genre"] not in genres:
            raise StoreError(
                f"{where}: track {i} ({track['id']}) has genre {track['genre']!r}, "
                f"not one of its genres"
            )
    try:
        manifest = Manifest.from_json(data)
    except (TypeError, ValueError) as error:  # e.g. a track field this version does not know
        raise StoreError(f"{where}: not a manifest this version reads ({error})") from error
    if manifest.genres != info["genres"]:
        raise StoreError(
            f"{store}: the genres of store.json ({', '.join(info['genres'])}) and of "
            f"manifest.json ({', '.join(manifest.genres)}) differ"
        )
    return manifest


def _check_identity(store: Path, info: dict[str, Any], manifest: Manifest) -> None:
    """store.json's ``data_identity`` (stores written since songs are identified by content)
    is that of manifest.json's songs: neither was edited without the other."""
    recorded = info.get("data_identity")
    if recorded is None:
        return
    if not isinstance(recorded, str) or data_identity(manifest) != recorded:
        raise StoreError(
            f"{store}: manifest.json's songs do not match the data identity in store.json "
            f"({_short(recorded)}): edited since the store was written; prepare it again "
            "with --overwrite"
        )


def _first(bad: np.ndarray) -> tuple[int, str]:
    """Row of the first True in ``bad`` and ``" (and N more rows)"`` when there are others."""
    rows = np.flatnonzero(bad)
    more = f" (and {rows.size - 1} more rows)" if rows.size > 1 else ""
    return int(rows[0]), more


def _check_arrays(
    store: Path,
    arrays: dict[str, np.ndarray],
    count: int,
    config: FeatureConfig,
    manifest: Manifest,
) -> None:
    """Shapes and dtypes against the config; labels, tracks and positions against the manifest."""
    expected = (count, config.n_frames, config.n_features)
    what = "features.npy" if isinstance(arrays["features"], np.ndarray) else "the feature shards"
    if arrays["features"].shape != expected:
        raise StoreError(
            f"{store}: {what} hold shape {arrays['features'].shape}, expected {expected}"
        )
    if arrays["features"].dtype != np.float32:
        raise StoreError(f"{store}: {what} hold {arrays['features'].dtype}, not float32")
    for name in ARRAYS[1:]:
        if arrays[name].shape != (count,):
            raise StoreError(
                f"{store}: {name}.npy has shape {arrays[name].shape}, expected ({count},) "
                f"(one row per segment; store.json says {count} segments)"
            )
        if arrays[name].dtype != np.int32:
            raise StoreError(f"{store}: {name}.npy is {arrays[name].dtype}, not int32")
    labels, tracks, positions = (np.asarray(arrays[n]) for n in ARRAYS[1:])
    genres, entries = manifest.genres, manifest.tracks
    bad = (labels < 0) | (labels >= len(genres))
    if bad.any():
        row, more = _first(bad)
        raise StoreError(
            f"{store}: labels.npy: label {labels[row]} at row {row}{more} is outside the "
            f"{len(genres)} genres"
        )
    bad = (tracks < 0) | (tracks >= len(entries))
    if bad.any():
        row, more = _first(bad)
        raise StoreError(
            f"{store}: tracks.npy: track index {tracks[row]} at row {row}{more} is outside the "
            f"{len(entries)} tracks of manifest.json"
        )
    ok = np.array([t.status == "ok" for t in entries], dtype=bool)
    bad = ~ok[tracks]
    if bad.any():
        row, more = _first(bad)
        track = entries[tracks[row]]
        raise StoreError(
            f"{store}: tracks.npy: row {row}{more} points at track {tracks[row]} ({track.id}), "
            f"whose status in manifest.json is {track.status!r}, not 'ok'"
        )
    bad = labels != manifest.labels[tracks]
    if bad.any():
        row, more = _first(bad)
        track = entries[tracks[row]]
        raise StoreError(
            f"{store}: labels.npy: label {labels[row]} ({genres[labels[row]]}) at row "
            f"{row}{more} differs from its track {tracks[row]} ({track.id}), of genre "
            f"{manifest.genre_index[track.genre]} ({track.genre}) in manifest.json"
        )
    segments = np.array([t.segments for t in entries], dtype=np.int64)
    bad = (positions < 0) | (positions >= segments[tracks])
    if bad.any():
        row, more = _first(bad)
        track = entries[tracks[row]]
        limit = "negative" if positions[row] < 0 else f"not below its {track.segments} segments"
        raise StoreError(
            f"{store}: positions.npy: position {positions[row]} at row {row}{more} of track "
            f"{tracks[row]} ({track.id}) is {limit}"
        )


def _verify_digests(store: Path, info: dict[str, Any], full: bool) -> tuple[str, ...]:
    """Compare the recorded digests with the files; return the names of those compared."""
    digests = dict(info.get("sha256", {}))
    names = [f"{name}.npy" for name in ARRAYS if (store / f"{name}.npy").is_file()]
    for shard in info.get("shards", []):
        digests[shard["file"]] = shard["sha256"]
        names.append(shard["file"])
    small = [f"{name}.npy" for name in SMALL_ARRAYS]
    if not full and sum((store / name).stat().st_size for name in names) > STORE_VERIFY_BYTES:
        names = [name for name in names if name in small]
    verified = []
    for name in names:
        if name not in digests:
            continue
        if file_digest(store / name) != digests[name]:
            raise StoreError(
                f"{store}: {name} does not match its digest in store.json (corrupt or "
                "altered); prepare it again with --overwrite"
            )
        verified.append(name)
    return tuple(verified)


def _check_finite(
    store: Path, features: np.ndarray, tracks: np.ndarray, manifest: Manifest
) -> None:
    """Every feature value is finite (read a few MB of rows at a time)."""
    if not len(features):
        return
    step = max(1, _HASH_CHUNK // features[0].nbytes)
    for start in range(0, len(features), step):
        block = np.asarray(features[start : start + step])
        finite = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            track = manifest.tracks[tracks[row]]
            raise StoreError(
                f"{store}: features: row {row} (track {track.id}) holds NaN or infinite "
                "values; prepare it again with --overwrite"
            )


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
    written before songs were identified by content (:mod:`genre_jax.identity`). Files that
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
        if store.identity is not None:
            log(f"Reusing feature store {final} ({len(store)} segments)")
            return store
        log(
            f"Feature store {final} was written before songs were identified by their audio; "
            "building it again to record them"
        )
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


def require_config(store: FeatureStore, expected: FeatureConfig) -> None:
    """Raise :class:`ConfigError` naming each feature setting where the store differs."""
    require_same(expected, store.config, f"feature store {store.path}")
