"""Validation of a feature store's files: what :meth:`genre_jax.store.FeatureStore.open` checks.

:meth:`~genre_jax.store.FeatureStore.open` checks everything it can cheaply: both JSON files,
the shapes and dtypes of the arrays against the config, that every label is a genre and agrees
with its track's genre in the manifest, that every segment points at a decoded ("ok") track at a
valid position, and the digests of the small arrays (of ``features.npy`` too while the store is
at most :data:`STORE_VERIFY_BYTES`), that the shards are listed in the order they were written,
each once, and that the data identity is that of the manifest's songs.
:func:`genre_jax.store.verify_store` checks every digest and that every feature value is finite,
whatever the size. A store that recorded no digests or no song identities opens with the other
checks (:mod:`genre_jax.legacy`); so does one of format 1, every feature in one
``features.npy`` (:func:`genre_jax.legacy.whole_features`).

Every check raises :class:`StoreError` naming the store, the file and what is wrong. This
module knows the files, not :class:`~genre_jax.store.FeatureStore`, so the store imports it,
one way.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax import legacy
from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.datasets import Manifest
from genre_jax.extraction import ARRAYS
from genre_jax.fileio import JSONFileError, file_digest, read_json_object
from genre_jax.identity import data_identity
from genre_jax.store_shards import SMALL_ARRAYS

STORE_VERSION = 2  # the format prepare writes
STORE_VERSIONS = (1, 2)  # 1: features.npy whole (genre_jax.legacy); 2: feature shards
STORE_VERIFY_BYTES = 1 << 30
"""Largest store (all four array files together) whose ``features.npy`` digest
:meth:`~genre_jax.store.FeatureStore.open` verifies; the small arrays are verified at any size."""
_HASH_CHUNK = 4 << 20  # bytes read at a time when hashing an array file


class StoreError(ValueError):
    """A feature store is missing, incomplete, inconsistent, or built from other data."""


def require_regular(store: Path, name: str) -> None:
    """``store/name`` is a regular file (a FIFO or a device would block or never end)."""
    try:
        mode = os.stat(store / name).st_mode
    except OSError as error:
        raise StoreError(f"{store}: {name} cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        raise StoreError(f"{store}: {name} is not a regular file (a FIFO, device or folder)")


def load_array(store: Path, name: str) -> np.ndarray:
    """``store/<name>.npy`` (a regular file) memory-mapped read-only."""
    require_regular(store, f"{name}.npy")
    try:
        return np.load(store / f"{name}.npy", mmap_mode="r")
    except (OSError, ValueError) as error:
        raise StoreError(f"{store}: cannot read {name}.npy ({error})") from error


def read_store_json(store: Path, name: str) -> dict[str, Any]:
    """``store/name`` parsed as a JSON object; a missing or unparsable file is a StoreError."""
    file = store / name
    if not file.exists():
        raise StoreError(f"{store}: {name} is missing")
    require_regular(store, name)
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


def check_info(store: Path, info: dict[str, Any]) -> FeatureConfig:
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
    whole = legacy.whole_features(info)
    names = ARRAYS if whole else SMALL_ARRAYS
    unknown = sorted(set(digests) - {f"{name}.npy" for name in names})
    if unknown:
        raise StoreError(f"{where}: sha256 names files a store does not hold: {unknown}")
    if not whole:
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


def read_manifest(store: Path, info: dict[str, Any]) -> Manifest:
    """manifest.json parsed and checked against store.json's genres."""
    data = read_store_json(store, "manifest.json")
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


def check_identity(store: Path, info: dict[str, Any], manifest: Manifest) -> None:
    """store.json's ``data_identity`` is that of manifest.json's songs: neither was edited
    without the other (a store that recorded none, :mod:`genre_jax.legacy`, is not checked)."""
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


def check_arrays(
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


def verify_digests(store: Path, info: dict[str, Any], full: bool) -> tuple[str, ...]:
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


def check_finite(store: Path, features: np.ndarray, tracks: np.ndarray, manifest: Manifest) -> None:
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
