"""Splits that follow what a dataset says of its tracks beyond their genre: their artists, its own
split, the published fault-filtered GTZAN list.

* :func:`artist_split` and :func:`artist_kfold`: stratified hold-out and k-fold grouped by
  artist: every track of an artist in one part (scikit-learn's ``StratifiedGroupKFold``).
  :func:`genre_jax.store_splits.make_split` uses them wherever the dataset names artists
  (``group_by="auto"``); :func:`artist_groups` gives each track its group.
* :func:`official_split`: the dataset's own split (FMA's ``set.split``, a CSV manifest's
  ``split`` column).
* :func:`fault_filtered_split`: the published artist-filtered ("fault-filtered") GTZAN split of
  Kereliuk et al. / Sturm (443/197/290 tracks) mapped onto a local copy's track ids.

Like those of :mod:`genre_jax.splits`, each is a deterministic function of its arguments and
returns a song-level :class:`~genre_jax.splits.Split`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import numpy as np

from genre_jax.splits import PARTS, Split, check_kfold, check_labels

__all__ = [
    "artist_groups",
    "artist_kfold",
    "artist_split",
    "fault_filtered_split",
    "load_fault_filtered_ids",
    "official_split",
]

_FAULT_FILTERED_FILE = "gtzan_fault_filtered_split.json"
_FAULT_FILTERED_KEYS: tuple[str, str, str] = ("train", "validation", "test")


def _check_groups(groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must give one group per track ({y.size}), got shape {g.shape}")
    return g


def _group_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """The test folds of ``StratifiedGroupKFold(k, shuffle=True, random_state=seed)``."""
    from sklearn.model_selection import StratifiedGroupKFold  # heavy: only grouped splits

    distinct = np.unique(groups).size
    if distinct < k:
        raise ValueError(
            f"{k} folds grouped by artist need at least {k} artists; the tracks have {distinct}"
        )
    counts = np.bincount(y)
    if np.all(counts[counts > 0] < k):  # scikit-learn's own refusal, said in our terms
        raise ValueError(
            f"{k} folds grouped by artist need a genre with at least {k} tracks; the largest "
            f"has {int(counts.max())} (group_by='song' splits songs without grouping artists)"
        )
    folds = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
    return [test for _, test in folds.split(np.zeros((y.size, 1)), y, groups)]


def artist_split(labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> Split:
    """Stratified 80/10/10 split that keeps every artist's tracks in one part.

    The tracks are cut into ten folds by
    ``sklearn.model_selection.StratifiedGroupKFold(n_splits=10, shuffle=True,
    random_state=seed)`` with ``groups`` as the groups: fold 0 is the test part, fold 1 the
    validation part and the other eight the training part. The fractions are those of whole
    artists, so they are near, not exactly, 80/10/10 of each genre.

    Args:
        labels: Genre index of each track (1-D integer array).
        groups: Artist of each track (any hashable values; a track of no known artist gets a
            group of its own, see :func:`artist_groups`).
        seed: ``random_state`` of the folds.

    Returns:
        A song-level :class:`Split` named ``"artist-80/10/10-seed{seed}"``.

    Raises:
        ValueError: fewer than ten artists, or ``groups`` does not match ``labels``.
    """
    y = check_labels(labels)
    folds = _group_folds(y, _check_groups(groups, y), 10, seed)
    train = np.concatenate(folds[2:])
    return Split(f"artist-80/10/10-seed{seed}", "song", train, folds[1], folds[0])


def artist_kfold(
    labels: np.ndarray, groups: np.ndarray, k: int = 5, seed: int = 0, val_per_genre: int = 0
) -> list[Split]:
    """Stratified k-fold that keeps every artist's tracks in one part.

    The test folds are those of
    ``sklearn.model_selection.StratifiedGroupKFold(n_splits=k, shuffle=True,
    random_state=seed)``. Validation is carved out of each fold's other tracks by whole
    artists: genre by genre (in index order), the artists with tracks of that genre not yet
    held out are drawn in the order of ``np.random.default_rng((seed, i)).permutation`` and
    held out, with all their tracks, until the genre has ``val_per_genre`` validation tracks
    (one artist may take it past that, and may bring tracks of other genres).

    Args:
        labels: Genre index of each track (1-D integer array).
        groups: Artist of each track (see :func:`artist_groups`).
        k: Number of folds (at least 2).
        seed: ``random_state`` of the folds and seed of the validation draw.
        val_per_genre: Validation tracks per genre to reach; 0 leaves ``val`` empty.

    Returns:
        ``k`` song-level :class:`Split` objects named ``"artist-{k}fold-seed{seed}-fold{i}"``.

    Raises:
        ValueError: ``k < 2``, fewer than ``k`` artists, or a fold whose validation artists
            would leave a genre without a training track.
    """
    y = check_labels(labels)
    g = _check_groups(groups, y)
    check_kfold(k, val_per_genre, "artist_kfold")
    splits = []
    for i, test in enumerate(_group_folds(y, g, k, seed)):
        rest = np.setdiff1d(np.arange(y.size), test)
        rng = np.random.default_rng((seed, i))
        held: set[Any] = set()
        for genre in np.unique(y):
            pool = rest[y[rest] == genre]
            candidates = np.unique(g[pool])  # sorted: the draw does not depend on track order
            count = int(np.isin(g[pool], list(held)).sum()) if held else 0
            for artist in candidates[rng.permutation(candidates.size)]:
                if count >= val_per_genre:
                    break
                if artist not in held:
                    held.add(artist)
                    count += int((g[pool] == artist).sum())
        val = rest[np.isin(g[rest], list(held))] if held else rest[:0]
        train = np.setdiff1d(rest, val)
        for genre in np.unique(y[rest]):
            if not np.any(y[train] == genre):
                raise ValueError(
                    f"artist_kfold fold {i}: holding out val_per_genre={val_per_genre} "
                    f"validation tracks by whole artists leaves genre {int(genre)} without a "
                    "training track"
                )
        splits.append(Split(f"artist-{k}fold-seed{seed}-fold{i}", "song", train, val, test))
    return splits


def artist_groups(tracks: Sequence[Any]) -> np.ndarray:
    """The group of each track for the artist-grouped splits: its artist, or, for a track of
    no known artist, a group of its own (its id)."""
    return np.array(
        [f"artist:{t.artist}" if t.artist is not None else f"track:{t.id}" for t in tracks],
        dtype=object,
    )


def official_split(tracks: Sequence[Any]) -> Split:
    """The dataset's own split: each track in the part its ``split`` names.

    Args:
        tracks: The tracks (:class:`~genre_jax.datasets.Track`), in track-index order; a track
            whose ``split`` is ``None`` is in no part.

    Returns:
        A song-level :class:`Split` named ``"official"``.

    Raises:
        ValueError: no track names a part, or the test part is empty.
    """
    parts: dict[str, list[int]] = {part: [] for part in PARTS}
    for index, track in enumerate(tracks):
        if track.split is not None:
            parts[track.split].append(index)
    if not any(parts.values()):
        raise ValueError(
            "the dataset names no split of its own (FMA's tracks.csv and a CSV manifest's "
            "split column do); use split=song, kfold or fault-filtered"
        )
    if not parts["test"]:
        raise ValueError("the dataset's own split has no test track")
    return Split("official", "song", *(np.asarray(parts[p], np.int64) for p in PARTS))


def load_fault_filtered_ids() -> dict[str, list[str]]:
    """Load the published fault-filtered GTZAN split shipped with the package.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``: 443, 197 and 290 GTZAN track
        ids of the form ``"genre.000NN"`` (Kereliuk et al. 2015 / Sturm's artist-filtered
        split). A fresh dict of fresh lists is returned on every call.
    """
    resource = files("genre_jax") / "data" / _FAULT_FILTERED_FILE
    data = json.loads(resource.read_text(encoding="utf-8"))
    return {key: [str(t) for t in data[key]] for key in _FAULT_FILTERED_KEYS}


_PATH_SEP = re.compile(r"[/\\]")


def _match_published(track_id: str, published: set[str]) -> str | None:
    """Return the published GTZAN id that ``track_id`` names, or ``None``.

    Accepted forms: the id itself (``"blues.00012"``), anything ending in ``"/blues.00012"``
    (``/`` or ``\\`` separators), and paths whose file stem is the id
    (``"genres/blues/blues.00012.wav"``). Matching is by exact, case-sensitive string.
    """
    base = _PATH_SEP.split(str(track_id))[-1]
    if base in published:
        return base
    stem = base.rsplit(".", 1)[0]
    return stem if stem in published else None


def fault_filtered_split(track_ids: Sequence[str]) -> Split:
    """The published artist-filtered ("fault-filtered") GTZAN split on this copy's tracks.

    The split of Kereliuk et al. (2015) / Sturm removes GTZAN's faulty tracks (repeats,
    distortions, mislabellings) and keeps each artist in one part: 443 train, 197 validation
    and 290 test tracks, 930 in all. Each published id is matched to the position of the track
    of ``track_ids`` that names it (see :func:`_match_published` for the accepted forms).

    Args:
        track_ids: Track id of every track of this copy, in track-index order.

    Returns:
        A song-level :class:`Split` named ``"gtzan-fault-filtered"`` whose indices are
        positions in ``track_ids``. Published ids with no track here (e.g. the Kaggle copy's
        unreadable ``jazz.00054``) are listed, sorted, in ``missing``; tracks of this copy that
        the published split does not name are in no part.

    Raises:
        ValueError: If no track id matches a published id (the copy is not GTZAN, or its
            tracks are not named ``"genre.000NN"``), or two track ids name the same published
            id.
    """
    published = load_fault_filtered_ids()
    part_of: dict[str, str] = {}
    for key, part in zip(_FAULT_FILTERED_KEYS, PARTS, strict=True):
        for tid in published[key]:
            part_of[tid] = part
    names = set(part_of)
    found: dict[str, int] = {}
    for index, tid in enumerate(track_ids):
        match = _match_published(tid, names)
        if match is None:
            continue
        if match in found:
            raise ValueError(
                f"fault_filtered_split: track ids {track_ids[found[match]]!r} and {tid!r} both "
                f"name GTZAN track {match!r}"
            )
        found[match] = index
    if not found:
        raise ValueError(
            "fault_filtered_split: none of the track ids matches the published fault-filtered "
            "GTZAN split; it needs a GTZAN copy whose tracks keep GTZAN's names "
            "('genre.000NN', e.g. 'blues.00012' or '.../blues.00012.wav')"
        )
    indices: dict[str, list[int]] = {part: [] for part in PARTS}
    for tid, index in found.items():
        indices[part_of[tid]].append(index)
    missing = tuple(sorted(set(part_of) - set(found)))
    return Split(
        "gtzan-fault-filtered",
        "song",
        np.asarray(indices["train"], dtype=np.int64),
        np.asarray(indices["val"], dtype=np.int64),
        np.asarray(indices["test"], dtype=np.int64),
        missing=missing,
    )
