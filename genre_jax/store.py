"""The feature store: decoded, segmented, extracted features on disk, keyed by feature config.

:func:`genre_jax.prepare.prepare` writes ``out_dir/<kind>-<config hash>/``:

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

Stores of an older format (every feature in one ``features.npy``), without digests or without
song identities open through :mod:`genre_jax.legacy`.

:meth:`FeatureStore.open` opens a complete store after the checks of
:mod:`genre_jax.store_checks` (cheap ones; :func:`verify_store` every digest and value).

The *data fingerprint* (paths, sizes and modification times of the files) only tells
``prepare`` whether a folder changed since its store was built; what a run, a fold or an
evaluation is sure of is the *data identity*, of the songs' audio (:mod:`genre_jax.identity`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax import legacy
from genre_jax.config import FeatureConfig
from genre_jax.datasets import Manifest
from genre_jax.embedding_cache import EMBEDDINGS_DIR, verify_tables
from genre_jax.identity import data_identity
from genre_jax.settings import require_same
from genre_jax.store_checks import (
    StoreError,
    check_arrays,
    check_finite,
    check_identity,
    check_info,
    load_array,
    read_manifest,
    read_store_json,
    verify_digests,
)
from genre_jax.store_shards import SMALL_ARRAYS, ShardedFeatures, ShardError


@dataclass
class FeatureStore:
    """An opened feature store. ``features`` reads its shards on demand
    (:class:`ShardedFeatures`; one memory-mapped array for a format-1 store,
    :mod:`genre_jax.legacy`), the small arrays are memory-mapped read-only.

    ``verified`` names the array files whose SHA-256 digest was checked when it was opened
    (empty when the store recorded none).
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
        songs by content, in order, with their genres; None for a store whose manifest records
        no song identities (:mod:`genre_jax.legacy`)."""
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
        :data:`~genre_jax.store_checks.STORE_VERIFY_BYTES` (:mod:`genre_jax.store_checks`).
        ``full=True`` (:func:`verify_store`) checks every digest and that every feature value
        is finite, at any size.
        """
        path = Path(path)
        info_path = path / "store.json"
        if not info_path.is_file():
            raise StoreError(f"{path}: not a complete feature store (no store.json)")
        info = read_store_json(path, "store.json")
        config = check_info(path, info)
        manifest = read_manifest(path, info)
        arrays: dict[str, Any]
        if legacy.whole_features(info):
            arrays = legacy.open_whole_arrays(path)
        else:
            arrays = {name: load_array(path, name) for name in SMALL_ARRAYS}
            row_shape = (config.n_frames, config.n_features)
            try:
                arrays["features"] = ShardedFeatures(path, info["shards"], row_shape)
            except ShardError as error:
                raise StoreError(f"{path}: {error}; prepare it again with --overwrite") from None
        check_arrays(path, arrays, info["segments"], config, manifest)
        check_identity(path, info, manifest)
        verified = verify_digests(path, info, full)
        if full:
            check_finite(path, arrays["features"], arrays["tracks"], manifest)
        return cls(
            path=path, config=config, manifest=manifest, info=info, verified=verified, **arrays
        )


def verify_store(path: str | os.PathLike) -> FeatureStore:
    """Open the store at ``path`` checking everything, whatever its size (``check --store``).

    Beyond :meth:`FeatureStore.open`: the digest of every array file, ``features.npy``
    included, that every feature value is finite, and that the cached embeddings hold what
    was written (:func:`genre_jax.embedding_cache.verify_tables`). A store that recorded no
    digests has nothing to compare with; its ``verified`` is then empty.

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


def require_config(store: FeatureStore, expected: FeatureConfig) -> None:
    """Raise :class:`ConfigError` naming each feature setting where the store differs."""
    require_same(expected, store.config, f"feature store {store.path}")


def __getattr__(name: str) -> Any:
    """``genre_jax.store.prepare`` is :func:`genre_jax.prepare.prepare` (docs/usage.md imports
    it from here), imported when first asked for: :mod:`genre_jax.prepare` imports this module."""
    if name == "prepare":
        from genre_jax.prepare import prepare

        return prepare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
