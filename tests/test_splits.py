"""Tests of genre_jax.splits: stratification, disjointness, determinism, published splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from genre_jax.dataset_splits import (
    artist_groups,
    artist_kfold,
    artist_split,
    fault_filtered_split,
    load_fault_filtered_ids,
    official_split,
)
from genre_jax.datasets import Track
from genre_jax.splits import Split, seed_segment_split, song_kfold, song_split

GENRES = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)
GTZAN_IDS = [f"{g}.{i:05d}" for g in GENRES for i in range(100)]
PARTS = ("train", "val", "test")


def _labels(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def _assert_partition_of_tracks(split: Split, n_tracks: int, complete: bool = True) -> None:
    parts = [getattr(split, p) for p in PARTS]
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0), "indices must be sorted and distinct"
    union = np.concatenate(parts)
    assert np.unique(union).size == union.size, "a track is in two parts"
    if complete:
        np.testing.assert_array_equal(np.sort(union), np.arange(n_tracks))


def _assert_no_song_crosses_parts(split: Split, n_tracks: int, per_track: int = 3) -> None:
    track_of_segment = np.repeat(np.arange(n_tracks), per_track)
    tracks = {}
    for part in PARTS:
        seg = split.segment_indices(part, track_of_segment)
        assert seg.size == per_track * getattr(split, part).size
        tracks[part] = set(track_of_segment[seg].tolist())
        assert tracks[part] == set(getattr(split, part).tolist())
    assert not tracks["train"] & tracks["val"]
    assert not tracks["train"] & tracks["test"]
    assert not tracks["val"] & tracks["test"]


# ---------------------------------------------------------------- song_split


def test_song_split_gtzan_sizes_stratified_disjoint() -> None:
    y = _labels([100] * 10)
    s = song_split(y)
    assert s.level == "song" and not s.leaky and s.missing == ()
    assert s.name == "song-80/10/10-seed0"
    assert (s.train.size, s.val.size, s.test.size) == (800, 100, 100)
    _assert_partition_of_tracks(s, 1000)
    for part, want in zip(PARTS, (80, 10, 10), strict=True):
        np.testing.assert_array_equal(np.bincount(y[getattr(s, part)], minlength=10), want)


def test_song_split_deterministic_and_seed_dependent() -> None:
    y = _labels([100] * 10)
    a, b, c = song_split(y, seed=3), song_split(y, seed=3), song_split(y, seed=4)
    assert a == b
    assert not np.array_equal(a.test, c.test)
    assert a != c


def test_song_split_uneven_genres() -> None:
    sizes = [41, 40, 3, 7, 1, 2, 100]
    y = _labels(sizes)
    rng = np.random.default_rng(0)
    y = y[rng.permutation(y.size)]  # labels need not be grouped by genre
    s = song_split(y, seed=1)
    _assert_partition_of_tracks(s, y.size)
    counts = {p: np.bincount(y[getattr(s, p)], minlength=len(sizes)) for p in PARTS}
    # Largest-remainder counts, and at least one per part for genres with >= 3 tracks.
    expected = {
        41: (33, 4, 4),
        40: (32, 4, 4),
        3: (1, 1, 1),
        7: (5, 1, 1),
        1: (1, 0, 0),
        2: (2, 0, 0),
        100: (80, 10, 10),
    }
    for g, n in enumerate(sizes):
        assert tuple(int(counts[p][g]) for p in PARTS) == expected[n], n


def test_song_split_other_fractions_and_validation() -> None:
    y = _labels([20] * 4)
    s = song_split(y, fractions=(0.7, 0.15, 0.15))
    assert s.name == "song-70/15/15-seed0"
    assert (s.train.size, s.val.size, s.test.size) == (56, 12, 12)
    _assert_partition_of_tracks(s, 80)
    s0 = song_split(y, fractions=(0.8, 0.0, 0.2))
    assert s0.val.size == 0 and s0.test.size == 16
    with pytest.raises(ValueError, match="fractions"):
        song_split(y, fractions=(0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="fractions"):
        song_split(y, fractions=(1.2, -0.1, -0.1))
    with pytest.raises(ValueError, match="labels"):
        song_split(np.zeros((3, 2), dtype=int))


def test_song_split_segments_never_cross() -> None:
    y = _labels([100] * 10)
    _assert_no_song_crosses_parts(song_split(y), 1000)


# ---------------------------------------------------------------- song_kfold


@pytest.mark.parametrize("val_per_genre", [0, 1, 3])
def test_song_kfold_properties(val_per_genre: int) -> None:
    sizes = [100, 100, 37, 12, 5]
    y = _labels(sizes)
    k = 5
    folds = song_kfold(y, k=k, seed=0, val_per_genre=val_per_genre)
    assert len(folds) == k
    tests = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tests), np.arange(y.size))  # test folds partition
    per_fold = np.stack([np.bincount(y[f.test], minlength=len(sizes)) for f in folds])
    assert np.all(per_fold.max(axis=0) - per_fold.min(axis=0) <= 1)  # stratified
    for i, f in enumerate(folds):
        assert f.name == f"song-{k}fold-seed0-fold{i}"
        _assert_partition_of_tracks(f, y.size)
        np.testing.assert_array_equal(np.bincount(y[f.val], minlength=len(sizes)), val_per_genre)
        _assert_no_song_crosses_parts(f, y.size)


def test_song_kfold_matches_sklearn_reference() -> None:
    y = _labels([100] * 10)
    folds = song_kfold(y, k=5, seed=0, val_per_genre=1)
    ref = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for f, (rest, test) in zip(folds, ref.split(np.zeros(y.size), y), strict=True):
        np.testing.assert_array_equal(f.test, np.sort(test))
        np.testing.assert_array_equal(np.union1d(f.train, f.val), np.sort(rest))
        assert f.val.size == 10 and f.train.size == 790


def test_song_kfold_deterministic_and_val_seeded() -> None:
    y = _labels([30] * 4)
    a = song_kfold(y, k=3, seed=2, val_per_genre=2)
    b = song_kfold(y, k=3, seed=2, val_per_genre=2)
    c = song_kfold(y, k=3, seed=5, val_per_genre=2)
    assert a == b
    assert any(not np.array_equal(x.test, z.test) for x, z in zip(a, c, strict=True))


def test_song_kfold_errors() -> None:
    y = _labels([10, 10, 4])
    with pytest.raises(ValueError, match="k >= 2"):
        song_kfold(y, k=1)
    with pytest.raises(ValueError, match=r"genre 2 has only 4 tracks"):
        song_kfold(y, k=5)
    with pytest.raises(ValueError, match="val_per_genre"):
        song_kfold(y, k=2, val_per_genre=-1)
    with pytest.raises(ValueError, match="val_per_genre=2"):
        song_kfold(y, k=2, val_per_genre=2)  # genre 2 keeps 2 non-test tracks, none to train


# ---------------------------------------------------------------- seed_segment_split


def test_seed_segment_split_is_the_leaky_seed_split() -> None:
    s = seed_segment_split(2970)
    assert (s.train.size, s.val.size, s.test.size) == (2376, 297, 297)
    assert s.leaky and s.level == "segment" and "leaky" in s.name
    _assert_partition_of_tracks(s, 2970)
    assert s == seed_segment_split(2970, seed=0)
    assert s != seed_segment_split(2970, seed=1)
    track_of_segment = np.repeat(np.arange(990), 3)
    np.testing.assert_array_equal(s.segment_indices("test", track_of_segment), s.test)
    train_songs = set(track_of_segment[s.train].tolist())
    test_songs = set(track_of_segment[s.test].tolist())
    # This is why it is labelled leaky: many songs have segments in both train and test.
    assert len(train_songs & test_songs) > 100
    with pytest.raises(ValueError, match="out of range"):
        s.segment_indices("train", np.arange(100))


def test_seed_segment_split_validation() -> None:
    with pytest.raises(ValueError, match="n_segments"):
        seed_segment_split(0)
    with pytest.raises(ValueError, match="fractions"):
        seed_segment_split(100, fractions=(0.5, 0.5, 0.5))
    assert seed_segment_split(100, fractions=(0.7, 0.15, 0.15)).name == (
        "seed-segment-leaky-70/15/15-seed0"
    )


# ---------------------------------------------------------------- fault-filtered split


def test_fault_filtered_package_data() -> None:
    ids = load_fault_filtered_ids()
    assert {k: len(v) for k, v in ids.items()} == {"train": 443, "validation": 197, "test": 290}
    all_ids = [t for v in ids.values() for t in v]
    assert len(set(all_ids)) == 930
    assert set(all_ids) <= set(GTZAN_IDS)


def test_fault_filtered_full_gtzan() -> None:
    s = fault_filtered_split(GTZAN_IDS)
    assert s.name == "gtzan-fault-filtered" and s.level == "song" and not s.leaky
    assert (s.train.size, s.val.size, s.test.size) == (443, 197, 290)
    assert s.missing == ()
    _assert_partition_of_tracks(s, 1000, complete=False)
    ids = load_fault_filtered_ids()
    for part, key in zip(PARTS, ("train", "validation", "test"), strict=True):
        assert {GTZAN_IDS[i] for i in getattr(s, part)} == set(ids[key])


def test_fault_filtered_missing_track() -> None:
    ids = [t for t in GTZAN_IDS if t != "jazz.00054"]
    s = fault_filtered_split(ids)
    assert s.missing == ("jazz.00054",)
    published = load_fault_filtered_ids()
    want = {
        part: len(published[key]) - ("jazz.00054" in published[key])
        for part, key in zip(PARTS, ("train", "validation", "test"), strict=True)
    }
    assert {p: getattr(s, p).size for p in PARTS} == want
    assert sum(want.values()) == 929
    for part, key in zip(PARTS, ("train", "validation", "test"), strict=True):
        assert {ids[i] for i in getattr(s, part)} == set(published[key]) - {"jazz.00054"}


def test_fault_filtered_accepts_paths() -> None:
    paths = [f"/data/genres/{t.split('.')[0]}/{t}.wav" for t in GTZAN_IDS]
    nested = [f"gtzan/{t}" for t in GTZAN_IDS]
    ref = fault_filtered_split(GTZAN_IDS)
    assert fault_filtered_split(paths) == ref
    assert fault_filtered_split(nested) == ref
    extra = ["other/song_a", *GTZAN_IDS]  # unnamed tracks fall in no part
    shifted = fault_filtered_split(extra)
    np.testing.assert_array_equal(shifted.test, ref.test + 1)


def test_fault_filtered_errors() -> None:
    with pytest.raises(ValueError, match="GTZAN"):
        fault_filtered_split([f"song_{i}" for i in range(50)])
    with pytest.raises(ValueError, match="GTZAN"):
        fault_filtered_split(["Blues.00029", "xblues.00029"])  # exact names only
    with pytest.raises(ValueError, match="both"):
        fault_filtered_split(["a/blues.00029.wav", "b/blues.00029.au"])


# ---------------------------------------------------------------- Split


@pytest.mark.parametrize(
    "split",
    [
        song_split(_labels([10] * 3)),
        song_kfold(_labels([10] * 3), k=2, val_per_genre=1)[1],
        seed_segment_split(30),
        fault_filtered_split([t for t in GTZAN_IDS if t != "jazz.00054"]),
    ],
    ids=["song", "kfold", "segment", "fault"],
)
def test_json_round_trip(split: Split) -> None:
    d = json.loads(json.dumps(split.to_json()))
    back = Split.from_json(d)
    assert back == split
    for part in PARTS:
        assert getattr(back, part).dtype == np.int64
    assert back.missing == split.missing and back.leaky == split.leaky


def test_split_validates_disjointness_and_level() -> None:
    with pytest.raises(ValueError, match="both train and test"):
        Split("bad", "song", np.array([0, 1]), np.array([2]), np.array([1]))
    with pytest.raises(ValueError, match="level"):
        Split("bad", "album", np.array([0]), np.array([1]), np.array([2]))
    with pytest.raises(ValueError, match="part"):
        song_split(_labels([10])).segment_indices("validation", np.arange(10))
    s = Split("ok", "song", [3, 1], [], [0])
    np.testing.assert_array_equal(s.train, [1, 3])
    assert s.val.dtype == np.int64 and s.val.size == 0
    with pytest.raises(ValueError):
        s.train[0] = 5  # read-only


# ---------------------------------------------------------------- grouped by artist


def _artists(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and artists of 200 tracks: 40 artists of 1-9 tracks, some in two genres."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for artist in range(40):
        main = artist % 5
        for _ in range(int(rng.integers(1, 10))):
            labels.append(main if rng.random() < 0.85 else (main + 1) % 5)
            groups.append(f"artist:{artist}")
    return np.array(labels[:200]), np.array(groups[:200], dtype=object)


def _assert_no_artist_in_two_parts(split: Split, groups: np.ndarray) -> None:
    artists = {part: set(groups[getattr(split, part)]) for part in PARTS}
    assert not artists["train"] & artists["val"]
    assert not artists["train"] & artists["test"]
    assert not artists["val"] & artists["test"]


@pytest.mark.parametrize("val_per_genre", [0, 2])
def test_artist_kfold_is_sklearns_grouped_folds_with_whole_artists_held_out(
    val_per_genre: int,
) -> None:
    labels, groups = _artists()
    folds = artist_kfold(labels, groups, k=4, seed=7, val_per_genre=val_per_genre)
    reference = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=7)
    for i, (split, (_, test)) in enumerate(
        zip(folds, reference.split(np.zeros((labels.size, 1)), labels, groups), strict=True)
    ):
        assert split.name == f"artist-4fold-seed7-fold{i}" and split.level == "song"
        np.testing.assert_array_equal(split.test, np.sort(test))
        _assert_partition_of_tracks(split, labels.size)
        _assert_no_artist_in_two_parts(split, groups)
        for genre in np.unique(labels):
            held = int(np.sum(labels[split.val] == genre))
            rest = int(np.sum(labels[np.concatenate([split.train, split.val])] == genre))
            assert held >= min(val_per_genre, rest - 1) or val_per_genre == 0
            assert np.any(labels[split.train] == genre)
        if val_per_genre == 0:
            assert split.val.size == 0
    np.testing.assert_array_equal(
        np.sort(np.concatenate([f.test for f in folds])), np.arange(labels.size)
    )
    assert artist_kfold(labels, groups, k=4, seed=7, val_per_genre=val_per_genre) == folds


def test_artist_split_is_folds_zero_and_one_of_ten() -> None:
    labels, groups = _artists(5)
    split = artist_split(labels, groups, seed=2)
    reference = StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=2)
    tests = [t for _, t in reference.split(np.zeros((labels.size, 1)), labels, groups)]
    assert split.name == "artist-80/10/10-seed2"
    np.testing.assert_array_equal(split.test, np.sort(tests[0]))
    np.testing.assert_array_equal(split.val, np.sort(tests[1]))
    _assert_partition_of_tracks(split, labels.size)
    _assert_no_artist_in_two_parts(split, groups)
    assert 0.7 < split.train.size / labels.size < 0.9


def test_artist_splits_name_what_they_cannot_do() -> None:
    labels, groups = _labels([3, 3]), np.array(["a", "a", "b", "b", "c", "c"], dtype=object)
    with pytest.raises(
        ValueError, match=r"4 folds grouped by artist need at least 4 artists; .* 3"
    ):
        artist_kfold(labels, groups, k=4)
    with pytest.raises(ValueError, match="10 folds grouped by artist need at least 10 artists"):
        artist_split(labels, groups)
    with pytest.raises(ValueError, match="one group per track"):
        artist_kfold(labels, groups[:5], k=2)
    # Issue 35, item 25: scikit-learn's "n_splits=10 cannot be greater than the number of
    # members in each class", said in terms of the split asked for.
    many = np.array([f"artist-{i}" for i in range(12)], dtype=object)
    with pytest.raises(ValueError, match=r"10 folds grouped by artist need a genre with at least"):
        artist_split(_labels([6, 6]), many)
    one_artist = np.array(["a", "b", "c", "d", "e", "e"], dtype=object)
    with pytest.raises(ValueError, match="leaves genre 1 without a training track"):
        artist_kfold(_labels([4, 2]), one_artist, k=2, seed=0, val_per_genre=1)


def test_artist_groups_give_unknown_artists_a_group_each() -> None:
    tracks = [
        Track("x", "jazz", "x.wav", artist="7"),
        Track("y", "jazz", "y.wav"),
        Track("z", "folk", "z.wav", artist="7"),
        Track("w", "folk", "w.wav"),
    ]
    assert list(artist_groups(tracks)) == ["artist:7", "track:y", "artist:7", "track:w"]


def test_official_split_takes_each_tracks_own_part() -> None:
    parts = ["train", "test", None, "val", "train", "test"]
    tracks = [Track(str(i), "jazz", f"{i}.wav", split=p) for i, p in enumerate(parts)]
    split = official_split(tracks)
    assert split.name == "official"
    assert (list(split.train), list(split.val), list(split.test)) == ([0, 4], [3], [1, 5])
    with pytest.raises(ValueError, match="names no split of its own"):
        official_split([Track("a", "jazz", "a.wav")])
    with pytest.raises(ValueError, match="no test track"):
        official_split([Track("a", "jazz", "a.wav", split="train")])
