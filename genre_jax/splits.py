"""Train/validation/test splits for genre classification.

Two levels of split exist:

* **song level** (``level="song"``): the indices are *track* indices. Every segment of a
  track lands in the part of its track, so no song is ever seen in training and scored in
  testing. This is the default and the only honest way to evaluate on GTZAN, whose 30 s
  tracks are cut into several segments that are far more alike than two different songs.
* **segment level** (``level="segment"``): the indices are *segment* indices. Only
  :func:`seed_segment_split` produces one; it reproduces the seed study's random split over
  segments, which leaks segments of one song into both training and test (``leaky=True``).

Builders here, functions of labels and a seed alone:

* :func:`song_split`: stratified song-level hold-out split (default 80/10/10).
* :func:`song_kfold`: stratified song-level k-fold (scikit-learn's ``StratifiedKFold``), with an
  optional per-genre validation hold-out carved out of each training fold.
* :func:`seed_segment_split`: the seed study's leaky segment-level split.

:class:`SplitArrays` holds a split's segments as arrays (what training reads).

Builders that also read what the dataset says of its tracks (their artists, its own split, the
published fault-filtered GTZAN list) are in :mod:`genre_jax.dataset_splits`; the split a
:class:`~genre_jax.config.TrainConfig` names on a feature store is
:func:`genre_jax.store_splits.make_split`, its segments gathered by
:func:`~genre_jax.store_splits.split_arrays`.

All randomness comes from ``np.random.default_rng`` (or scikit-learn's ``random_state``) seeded
explicitly, so every split is a deterministic function of its arguments. (A little over 400
lines, one idea: what a split is and the rules each draw follows, written out in full.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Split",
    "SplitArrays",
    "seed_segment_split",
    "song_kfold",
    "song_split",
]

PARTS: tuple[str, str, str] = ("train", "val", "test")
_LEVELS: tuple[str, str] = ("song", "segment")
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
        for part in PARTS:
            object.__setattr__(
                self, part, _as_index_array(getattr(self, part), f"Split {self.name!r} {part}")
            )
        object.__setattr__(self, "missing", tuple(str(m) for m in self.missing))
        object.__setattr__(self, "leaky", bool(self.leaky))
        for i, a in enumerate(PARTS):
            for b in PARTS[i + 1 :]:
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
            and all(np.array_equal(getattr(self, p), getattr(other, p)) for p in PARTS)
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
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
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


@dataclass
class SplitArrays:
    """Segments of one split as arrays: ``x`` ``(n, frames, coefficients)``, ``y`` ``(n,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


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


def check_labels(labels: np.ndarray) -> np.ndarray:
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
    y = check_labels(labels)
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


def check_kfold(k: Any, val_per_genre: Any, name: str) -> None:
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

    y = check_labels(labels)
    check_kfold(k, val_per_genre, "song_kfold")
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


def seed_segment_split(
    n_segments: int,
    seed: int = 0,
    fractions: tuple[float, float, float] = _DEFAULT_FRACTIONS,
) -> Split:
    """The seed study's LEAKY split: a random permutation of segments cut 80/10/10.

    Warning: this split is over *segments*, not songs. Segments of one song land in train and
    in test, so a model can recognise the song rather than its genre and the accuracy measured
    on it is inflated. It exists only to reproduce the seed study's numbers; use
    :func:`song_split`, :func:`song_kfold` or
    :func:`~genre_jax.dataset_splits.fault_filtered_split` for honest evaluation.

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
