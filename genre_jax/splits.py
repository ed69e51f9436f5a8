"""Train/validation/test splits for genre classification.

Two levels of split exist:

* **song level** (``level="song"``): the indices are *track* indices. Every segment of a
  track lands in the part of its track, so no song is ever seen in training and scored in
  testing. This is the default and the only honest way to evaluate on GTZAN, whose 30 s
  tracks are cut into several segments that are far more alike than two different songs.
* **segment level** (``level="segment"``): the indices are *segment* indices. Only
  :func:`seed_segment_split` produces one; it reproduces the seed study's random split over
  segments, which leaks segments of one song into both training and test (``leaky=True``).

Builders:

* :func:`song_split`: stratified song-level hold-out split (default 80/10/10).
* :func:`song_kfold`: stratified song-level k-fold (scikit-learn's ``StratifiedKFold``), with an
  optional per-genre validation hold-out carved out of each training fold.
* :func:`artist_split` and :func:`artist_kfold`: the same, grouped by artist: every track of
  an artist in one part (scikit-learn's ``StratifiedGroupKFold``). :func:`make_split` uses
  them wherever the dataset names artists (``group_by="auto"``).
* :func:`official_split`: the dataset's own split (FMA's ``set.split``, a CSV manifest's
  ``split`` column).
* :func:`fault_filtered_split`: the published artist-filtered ("fault-filtered") GTZAN split of
  Kereliuk et al. / Sturm (443/197/290 tracks) mapped onto a local copy's track ids.
* :func:`seed_segment_split`: the seed study's leaky segment-level split.

On a feature store: :func:`make_split` builds the split a :class:`~genre_jax.config.TrainConfig`
names over the store's usable tracks, and :func:`split_arrays` gathers its segments as
:class:`SplitArrays`.

All randomness comes from ``np.random.default_rng`` (or scikit-learn's ``random_state``) seeded
explicitly, so every split is a deterministic function of its arguments.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import numpy as np

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.store import FeatureStore

__all__ = [
    "Split",
    "SplitArrays",
    "artist_groups",
    "artist_kfold",
    "artist_split",
    "fault_filtered_split",
    "load_fault_filtered_ids",
    "make_split",
    "official_split",
    "seed_segment_split",
    "song_kfold",
    "song_split",
    "split_arrays",
]

_PARTS: tuple[str, str, str] = ("train", "val", "test")
_LEVELS: tuple[str, str] = ("song", "segment")
_FAULT_FILTERED_FILE = "gtzan_fault_filtered_split.json"
_FAULT_FILTERED_KEYS: tuple[str, str, str] = ("train", "validation", "test")
_DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def _as_index_array(values: Any, what: str) -> np.ndarray:
    """Return ``values`` as a sorted, read-only, 1-D int64 array of distinct non-negative ints."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence of indices, got shape {arr.shape}")
    if arr.size == 0:
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: indices must be integers, got dtype {arr.dtype}")
    arr = np.sort(arr.astype(np.int64))
    if arr.size and arr[0] < 0:
        raise ValueError(f"{what}: indices must be non-negative, got {int(arr[0])}")
    if arr.size > 1 and np.any(arr[1:] == arr[:-1]):
        dup = int(arr[1:][arr[1:] == arr[:-1]][0])
        raise ValueError(f"{what}: index {dup} appears more than once")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Split:
    """A train/validation/test partition of tracks (``level="song"``) or segments.

    Attributes:
        name: Human-readable identifier, e.g. ``"song-80/10/10-seed0"``,
            ``"song-5fold-seed0-fold2"``, ``"gtzan-fault-filtered"`` or
            ``"seed-segment-leaky-seed0"``.
        level: ``"song"`` when the indices are track indices, ``"segment"`` when they are
            segment indices.
        train: Indices of the training part (int64, sorted, distinct, read-only).
        val: Indices of the validation part (may be empty).
        test: Indices of the test part.
        leaky: ``True`` only for the seed study's segment split, whose parts share songs.
        missing: Ids named by a published split but absent from this copy of the data
            (sorted); empty for splits that are not derived from a published list.

    The three parts are always pairwise disjoint (checked on construction), so in a song-level
    split no song can appear in two parts. Arrays given to the constructor are converted to
    sorted int64; equality compares every field, arrays by value.
    """

    name: str
    level: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    leaky: bool = False
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.level not in _LEVELS:
            raise ValueError(f"Split level must be one of {_LEVELS}, got {self.level!r}")
        for part in _PARTS:
            object.__setattr__(
                self, part, _as_index_array(getattr(self, part), f"Split {self.name!r} {part}")
            )
        object.__setattr__(self, "missing", tuple(str(m) for m in self.missing))
        object.__setattr__(self, "leaky", bool(self.leaky))
        for i, a in enumerate(_PARTS):
            for b in _PARTS[i + 1 :]:
                common = np.intersect1d(getattr(self, a), getattr(self, b))
                if common.size:
                    raise ValueError(
                        f"Split {self.name!r}: {self.level} index {int(common[0])} is in both "
                        f"{a} and {b} ({common.size} shared indices)"
                    )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return (
            self.name == other.name
            and self.level == other.level
            and self.leaky == other.leaky
            and self.missing == other.missing
            and all(np.array_equal(getattr(self, p), getattr(other, p)) for p in _PARTS)
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: unhashable, like a list

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (indices as lists of int) that :meth:`from_json`
        turns back into an equal :class:`Split`."""
        return {
            "name": self.name,
            "level": self.level,
            "train": [int(i) for i in self.train],
            "val": [int(i) for i in self.val],
            "test": [int(i) for i in self.test],
            "leaky": self.leaky,
            "missing": list(self.missing),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Split:
        """Rebuild a :class:`Split` from the dict written by :meth:`to_json`.

        ``leaky`` defaults to ``False`` and ``missing`` to ``()`` when absent.
        """
        return cls(
            name=str(d["name"]),
            level=str(d["level"]),
            train=np.asarray(d["train"], dtype=np.int64),
            val=np.asarray(d["val"], dtype=np.int64),
            test=np.asarray(d["test"], dtype=np.int64),
            leaky=bool(d.get("leaky", False)),
            missing=tuple(d.get("missing", ())),
        )

    def segment_indices(self, part: str, track_of_segment: np.ndarray) -> np.ndarray:
        """Segment indices of ``part`` (``'train'``, ``'val'`` or ``'test'``).

        Args:
            part: Which part to return.
            track_of_segment: 1-D integer array; ``track_of_segment[s]`` is the track index of
                segment ``s``.

        Returns:
            Sorted int64 segment indices. For ``level="song"``: every segment whose track is in
            ``part`` (tracks without segments contribute nothing). For ``level="segment"``: the
            part's indices themselves, after checking that they are valid segment indices.

        Raises:
            ValueError: If ``part`` is unknown, ``track_of_segment`` is not a 1-D integer
                array, or a segment-level index is out of range.
        """
        if part not in _PARTS:
            raise ValueError(f"part must be one of {_PARTS}, got {part!r}")
        tos = np.asarray(track_of_segment)
        if tos.ndim != 1 or (tos.size and not np.issubdtype(tos.dtype, np.integer)):
            raise ValueError(
                "track_of_segment must be a 1-D integer array, got "
                f"shape {tos.shape} dtype {tos.dtype}"
            )
        idx: np.ndarray = getattr(self, part)
        if self.level == "segment":
            if idx.size and idx[-1] >= tos.size:
                raise ValueError(
                    f"Split {self.name!r}: segment index {int(idx[-1])} out of range for "
                    f"{tos.size} segments"
                )
            return idx.copy()
        return np.flatnonzero(np.isin(tos, idx)).astype(np.int64)

    def part_tracks(self, part: str, track_of_segment: np.ndarray | None = None) -> np.ndarray:
        """Track indices (int64) of the songs in ``part``: the part itself for a song-level
        split; for a segment-level one the tracks of its segments, which needs
        ``track_of_segment`` (as for :meth:`segment_indices`)."""
        if self.level == "song":
            return np.asarray(getattr(self, part), np.int64)
        if track_of_segment is None:
            raise ValueError(f"Split {self.name!r}: a segment-level split needs track_of_segment")
        tos = np.asarray(track_of_segment)
        return np.unique(tos[self.segment_indices(part, tos)]).astype(np.int64)


def _check_fractions(fractions: Sequence[float], setting: str) -> np.ndarray:
    """Validate three non-negative fractions summing to 1 (within 1e-6); return them
    renormalised to sum to exactly 1 as a float64 array."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,):
        raise ValueError(f"{setting} must be three numbers (train, val, test), got {fractions!r}")
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError(f"{setting} must be non-negative, got {fractions!r}")
    if abs(float(f.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{setting} must sum to 1 (within 1e-6), got {fractions!r} -> {f.sum()}")
    return f / f.sum()


def _allocate(n: int, fractions: np.ndarray) -> np.ndarray:
    """Split ``n`` items into three counts following ``fractions`` (summing to 1).

    Rounding rule (largest remainder / Hamilton method, then a minimum of one):

    1. Each part gets ``floor(n * f)`` items (with a 1e-9 tolerance, so ``100 * 0.1`` is 10).
    2. The items left over (at most 2) go one each to the parts with the largest fractional
       remainders ``n * f - floor(n * f)``; ties go to the earlier part (train, then val, then
       test).
    3. If ``n`` is at least the number of parts with a non-zero fraction, every such part that
       still has zero items takes one from the part that currently has the most items (ties:
       the earlier part). With 3 tracks and 80/10/10 this yields 1/1/1.

    Parts with a zero fraction always get zero items; counts always sum to ``n``.
    """
    quotas = n * fractions
    counts = np.floor(quotas + 1e-9).astype(np.int64)
    leftover = n - int(counts.sum())
    if leftover > 0:
        remainders = quotas - counts
        order = np.argsort(-remainders, kind="stable")
        counts[order[:leftover]] += 1
    nonzero = np.flatnonzero(fractions > 0)
    if n >= nonzero.size:
        for p in nonzero:
            if counts[p] == 0:
                donor = int(np.argmax(counts))  # argmax returns the first maximum
                counts[donor] -= 1
                counts[p] += 1
    return counts


def _fraction_tag(f: np.ndarray) -> str:
    """Format fractions as percentages, e.g. ``"80/10/10"``."""
    return "/".join(f"{round(100 * float(x), 4):g}" for x in f)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as a 1-D integer array, raising ValueError otherwise."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array (one per track), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer genre indices, got dtype {y.dtype}")
    return y


def song_split(
    labels: np.ndarray,
    fractions: tuple[float, float, float] = _DEFAULT_FRACTIONS,
    seed: int = 0,
) -> Split:
    """Stratified song-level train/val/test split.

    Within each genre (in increasing order of genre index) the genre's tracks are shuffled
    with a single ``np.random.default_rng(seed)`` generator and cut into consecutive blocks for
    train, val and test. The block sizes follow the largest-remainder rule of
    :func:`_allocate`: ``floor(n * f)`` per part, leftover tracks to the largest fractional
    remainders (ties to the earlier part), and, when the genre has at least as many tracks as
    there are parts with a non-zero fraction (3 for 80/10/10), at least one track in every such
    part. Hence 100 tracks per genre give exactly 80/10/10, 41 tracks give 33/4/4 and 3 tracks
    give 1/1/1. A genre with fewer tracks than non-zero parts is absent from some part.

    Args:
        labels: Genre index of each track (1-D integer array).
        fractions: Fractions of each genre's tracks for (train, val, test); non-negative and
            summing to 1 within 1e-6.
        seed: Seed of the shuffle.

    Returns:
        A :class:`Split` with ``level="song"`` named like ``"song-80/10/10-seed0"``.

    Raises:
        ValueError: If ``labels`` is not a non-empty 1-D integer array or ``fractions`` is
            invalid.
    """
    y = _check_labels(labels)
    f = _check_fractions(fractions, "song_split fractions")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for genre in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == genre))
        bounds = np.cumsum(_allocate(members.size, f))
        for p, block in enumerate(np.split(members, bounds[:2])):
            parts[p].append(block)
    train, val, test = (np.concatenate(p) for p in parts)
    return Split(f"song-{_fraction_tag(f)}-seed{seed}", "song", train, val, test)


def _check_kfold(k: Any, val_per_genre: Any, name: str) -> None:
    """``k`` an integer >= 2 and ``val_per_genre`` one >= 0, or ValueError naming ``name``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"{name} needs an integer k >= 2, got k={k!r}")
    if isinstance(val_per_genre, bool) or not isinstance(val_per_genre, int | np.integer):
        raise ValueError(f"val_per_genre must be an integer, got {val_per_genre!r}")
    if val_per_genre < 0:
        raise ValueError(f"val_per_genre must be >= 0, got {val_per_genre}")


def song_kfold(
    labels: np.ndarray, k: int = 5, seed: int = 0, val_per_genre: int = 0
) -> list[Split]:
    """Stratified song-level k-fold cross-validation.

    The test folds are exactly those of
    ``sklearn.model_selection.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)``
    applied to the tracks with ``labels`` as classes, so they match figures measured with that
    call. In fold ``i`` the test part is test fold ``i``; the validation part holds
    ``val_per_genre`` tracks of each genre drawn from the fold's remaining tracks with
    ``np.random.default_rng((seed, i))``; the training part is everything else. The test parts
    of the ``k`` folds partition all tracks.

    Args:
        labels: Genre index of each track (1-D integer array).
        k: Number of folds (at least 2).
        seed: ``random_state`` of ``StratifiedKFold`` and seed of the validation draw.
        val_per_genre: Tracks per genre held out of each training fold for validation (e.g.
            early stopping); 0 leaves ``val`` empty.

    Returns:
        ``k`` song-level :class:`Split` objects named ``"song-{k}fold-seed{seed}-fold{i}"``.

    Raises:
        ValueError: If ``k < 2``, ``val_per_genre < 0``, some genre has fewer than ``k``
            tracks (the genre index and its count are named), or some fold leaves a genre
            with no more than ``val_per_genre`` non-test tracks (so no training track).
    """
    from sklearn.model_selection import StratifiedKFold  # heavy (~1 s): only k-fold needs it

    y = _check_labels(labels)
    _check_kfold(k, val_per_genre, "song_kfold")
    genres, counts = np.unique(y, return_counts=True)
    for genre, count in zip(genres, counts, strict=True):
        if count < k:
            raise ValueError(
                f"song_kfold with k={k}: genre {int(genre)} has only {int(count)} tracks; "
                f"every genre needs at least k tracks"
            )
    skf = StratifiedKFold(n_splits=int(k), shuffle=True, random_state=seed)
    splits: list[Split] = []
    for i, (rest, test) in enumerate(skf.split(np.zeros((y.size, 1)), y)):
        rng = np.random.default_rng((seed, i))
        val_blocks: list[np.ndarray] = []
        for genre in genres:
            pool = np.sort(rest[y[rest] == genre])
            if val_per_genre and pool.size <= val_per_genre:
                raise ValueError(
                    f"song_kfold fold {i}: genre {int(genre)} has {pool.size} non-test tracks, "
                    f"too few to hold out val_per_genre={val_per_genre} and keep one for training"
                )
            val_blocks.append(rng.choice(pool, size=val_per_genre, replace=False))
        val = np.concatenate(val_blocks).astype(np.int64)
        train = np.setdiff1d(rest, val)
        splits.append(Split(f"song-{k}fold-seed{seed}-fold{i}", "song", train, val, test))
    return splits


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
    y = _check_labels(labels)
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
    y = _check_labels(labels)
    g = _check_groups(groups, y)
    _check_kfold(k, val_per_genre, "artist_kfold")
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
    parts: dict[str, list[int]] = {part: [] for part in _PARTS}
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
    return Split("official", "song", *(np.asarray(parts[p], np.int64) for p in _PARTS))


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
    for key, part in zip(_FAULT_FILTERED_KEYS, _PARTS, strict=True):
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
    indices: dict[str, list[int]] = {part: [] for part in _PARTS}
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


def seed_segment_split(
    n_segments: int,
    seed: int = 0,
    fractions: tuple[float, float, float] = _DEFAULT_FRACTIONS,
) -> Split:
    """The seed study's LEAKY split: a random permutation of segments cut 80/10/10.

    Warning: this split is over *segments*, not songs. Segments of one song land in train and
    in test, so a model can recognise the song rather than its genre and the accuracy measured
    on it is inflated. It exists only to reproduce the seed study's numbers; use
    :func:`song_split`, :func:`song_kfold` or :func:`fault_filtered_split` for honest
    evaluation.

    The permutation is ``np.random.default_rng(seed).permutation(n_segments)``; its first block
    is train, then val, then test, with block sizes from the same largest-remainder rule as
    :func:`song_split`. For 2970 segments this gives 2376/297/297, as the seed reported.

    Args:
        n_segments: Number of segments (positive).
        seed: Seed of the permutation.
        fractions: (train, val, test) fractions; non-negative, summing to 1 within 1e-6.

    Returns:
        A :class:`Split` with ``level="segment"`` and ``leaky=True``, named
        ``"seed-segment-leaky-seed{seed}"`` (with the percentages inserted before the seed when
        ``fractions`` is not the default, e.g. ``"seed-segment-leaky-70/15/15-seed0"``).

    Raises:
        ValueError: If ``n_segments`` is not a positive integer or ``fractions`` is invalid.
    """
    if (
        isinstance(n_segments, bool)
        or not isinstance(n_segments, int | np.integer)
        or n_segments < 1
    ):
        raise ValueError(f"n_segments must be a positive integer, got {n_segments!r}")
    f = _check_fractions(fractions, "seed_segment_split fractions")
    perm = np.random.default_rng(seed).permutation(int(n_segments))
    train, val, test = np.split(perm, np.cumsum(_allocate(int(n_segments), f))[:2])
    default = all(math.isclose(a, b) for a, b in zip(f, _DEFAULT_FRACTIONS, strict=True))
    tag = "" if default else f"{_fraction_tag(f)}-"
    return Split(f"seed-segment-leaky-{tag}seed{seed}", "segment", train, val, test, leaky=True)


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


@dataclass
class SplitArrays:
    """Segments of one split as arrays: ``x`` ``(n, frames, coefficients)``, ``y`` ``(n,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


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
