"""Splits on a feature store: the split a :class:`~genre_jax.config.TrainConfig` names, and its
segments as arrays.

:func:`make_split` builds the split ``config.split`` names (:mod:`genre_jax.splits`,
:mod:`genre_jax.dataset_splits`) over the store's usable tracks, and :func:`split_arrays`
gathers its segments as :class:`~genre_jax.splits.SplitArrays`.
"""

from __future__ import annotations

import numpy as np

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.dataset_splits import (
    artist_groups,
    artist_kfold,
    artist_split,
    fault_filtered_split,
    official_split,
)
from genre_jax.splits import Split, SplitArrays, seed_segment_split, song_kfold, song_split
from genre_jax.store import FeatureStore

__all__ = ["grouped_by_artist", "make_split", "split_arrays"]


def make_split(store: FeatureStore, config: TrainConfig) -> Split:
    """The split ``config.split`` names, over the store's usable tracks (or its segments).

    Raises:
        ConfigError: the split cannot be made on this store (too many folds for a genre's
            songs, too many validation songs per genre, no published id among the tracks),
            naming the setting.
    """
    try:
        return _make_split(store, config)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        settings = {
            "kfold": f"folds={config.folds}, val_per_genre={config.val_per_genre}, "
            f"group_by={config.group_by}",
            "song": f"split_seed={config.split_seed}, group_by={config.group_by}",
        }.get(config.split, "")
        raise ConfigError(
            f"train setting split={config.split!r}{' (' + settings + ')' if settings else ''} "
            f"on store {store.path}: {error}"
        ) from None


def grouped_by_artist(store: FeatureStore, config: TrainConfig) -> bool:
    """Whether ``config``'s split keeps artists together on this store: ``song`` and ``kfold``
    with ``group_by="artist"``, or ``"auto"`` where the dataset names artists.

    Raises:
        ConfigError: ``group_by="artist"`` on a store whose dataset names no artist.
    """
    if config.split not in ("song", "kfold") or config.group_by == "song":
        return False
    known = store.manifest.artists_known
    if config.group_by == "artist" and not known:
        raise ConfigError(
            f"train setting group_by='artist': the dataset of store {store.path} names no "
            "artist (FMA's tracks.csv and a CSV manifest's artist column do)"
        )
    return known


def _make_split(store: FeatureStore, config: TrainConfig) -> Split:
    """:func:`make_split` before its errors are named: song-level splits are made over the
    store's ``"ok"`` tracks and mapped back to manifest track indices."""
    if config.split == "seed-leaky":
        return seed_segment_split(len(store), seed=config.split_seed)
    usable = np.array(
        [i for i, t in enumerate(store.manifest.tracks) if t.status == "ok"], dtype=np.int64
    )
    labels = store.track_labels[usable]
    tracks = [store.manifest.tracks[i] for i in usable]
    groups = artist_groups(tracks) if grouped_by_artist(store, config) else None
    if config.split == "song":
        local = (
            song_split(labels, seed=config.split_seed)
            if groups is None
            else artist_split(labels, groups, seed=config.split_seed)
        )
    elif config.split == "kfold":
        seed, k, held = config.split_seed, config.folds, config.val_per_genre
        folds = (
            song_kfold(labels, k=k, seed=seed, val_per_genre=held)
            if groups is None
            else artist_kfold(labels, groups, k=k, seed=seed, val_per_genre=held)
        )
        local = folds[config.fold]
    elif config.split == "official":
        local = official_split(tracks)
    else:
        local = fault_filtered_split([t.id for t in tracks])
    return Split(
        name=local.name,
        level=local.level,
        train=usable[local.train],
        val=usable[local.val],
        test=usable[local.test],
        leaky=local.leaky,
        missing=local.missing,
    )


def split_arrays(store: FeatureStore, split: Split, time_flip: bool) -> SplitArrays:
    """Gather the split's segments; with ``time_flip`` add every training segment reversed.

    (That is the seed's ``time_flip_mode="double"``; ``"random"`` flips inside the step.)
    """
    parts = {}
    for part in ("train", "val", "test"):
        index = split.segment_indices(part, store.tracks)
        parts[part] = (np.asarray(store.features[index]), np.asarray(store.labels[index]))
    x_train, y_train = parts["train"]
    if time_flip:
        x_train = np.concatenate([x_train, x_train[:, ::-1, :]])
        y_train = np.concatenate([y_train, y_train])
    return SplitArrays(x_train, y_train, *parts["val"], *parts["test"])
