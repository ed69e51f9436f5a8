"""Which segments of a feature store a run is scored on: its own songs, found in any copy.

A run's songs are known by their audio (:mod:`genre_jax.identity`: the run records the songs of
each part of its split), so a store of a copy of its data (moved, re-downloaded, transcoded
without loss, or holding more songs) is scored on the run's own test songs, never on its
training songs (:func:`select_segments`). Runs written before that are matched by genre, track
id and file size (:func:`match_tracks`) through the run's own store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.config import ConfigError
from genre_jax.datasets import Manifest, Track
from genre_jax.fileio import read_json
from genre_jax.identity import SONGS_FILE, IdentityError, read_songs, require_identities
from genre_jax.splits import Split
from genre_jax.store import FeatureStore
from genre_jax.store_checks import StoreError


def match_tracks(wanted: Sequence[Track], available: Sequence[Track]) -> np.ndarray:
    """Index in ``available`` of the same song as each track of ``wanted`` (-1 where none).

    A song is identified by its genre and track id, and by its file size where both tracks
    record one (manifests written before sizes were recorded have none): a copied or moved
    dataset keeps all three, while its modification times, and so its data fingerprint, change.
    """
    where: dict[tuple[str, str], int] = {}
    for i, track in enumerate(available):
        where.setdefault((track.genre, track.id), i)
    found = np.full(len(wanted), -1, dtype=np.int64)
    for k, track in enumerate(wanted):
        i = where.get((track.genre, track.id))
        if i is None:
            continue
        sizes = track.size, available[i].size
        if None in sizes or sizes[0] == sizes[1]:
            found[k] = i
    return found


@dataclass
class Selection:
    """The segments of a store to evaluate, and what they are."""

    index: np.ndarray  # sorted segment indices into the store
    source: str  # what the report says was evaluated
    leaky: bool  # whether the run's split shares songs between its parts


def select_segments(
    store: FeatureStore, run_config: dict[str, Any], part: str, run_dir: str | Path = "run"
) -> Selection:
    """The segments of ``store`` on which to evaluate the run's ``part`` songs.

    Songs are known by their audio (:mod:`genre_jax.identity`): the run recorded the songs of
    each part of its split (``songs.json``), and each track of ``store`` has its identity.

    * The run's data (``store`` has the data identity the run recorded: the same songs in the
      same order, however copied, moved or transcoded): the split's ``part``.
    * A copy of it in another order, or holding more songs: exactly the run's ``part`` songs,
      found by their audio; the training songs are never scored as unseen.
    * Another dataset (none of the run's songs): all of its segments.

    Runs written before songs were identified by content are matched as they were then: by
    data fingerprint, else by genre, track id and file size through the run's own store
    (:func:`match_tracks`).

    Raises:
        IdentityError: ``store`` holds songs of the run but misses some ``part`` songs, or
            holds one under another genre (named); the run's ``songs.json`` is not its own.
        ConfigError: a legacy run's own store, needed to know its songs, is gone or was
            rebuilt from other data.
    """
    split = Split.from_json(run_config["split"])
    if "songs" in run_config:
        return _select_by_audio(store, run_config, split, part, Path(run_dir))
    fingerprint = run_config.get("data_fingerprint")
    same_data = fingerprint is not None and store.info.get("data_fingerprint") == fingerprint
    run = None if same_data else _run_data(store, run_config, run_dir, split.level == "segment")
    if run is None:  # the run's data, or a run recording no fingerprint on its own store
        index = split.segment_indices(part, store.tracks)
        return Selection(index, f"{split.name} ({part})", split.leaky)
    mapping = match_tracks(run.manifest.tracks, store.manifest.tracks)
    songs = {p: run.part_tracks(split, p) for p in ("train", "val", "test")}
    if not np.any(mapping[np.concatenate(list(songs.values()))] >= 0):
        return Selection(
            np.arange(len(store)), f"all of {store.manifest.root} (another dataset)", False
        )
    if run.tracks is None or run.positions is None:  # a song-level split
        found = mapping[songs[part]]
        index = np.flatnonzero(np.isin(store.tracks, found[found >= 0]))
        present = np.isin(found, store.tracks)
    else:  # a segment-level split: each segment by its song and position in the song
        segment_of = {
            (int(t), int(q)): s
            for s, (t, q) in enumerate(zip(store.tracks, store.positions, strict=True))
        }
        wanted = split.segment_indices(part, run.tracks)
        keys = zip(mapping[run.tracks[wanted]], run.positions[wanted], strict=True)
        located = np.array([segment_of.get((int(t), int(q)), -1) for t, q in keys], np.int64)
        present = ~np.isin(songs[part], run.tracks[wanted][located < 0])
        index = np.sort(located[located >= 0])
    if not np.all(present):
        missing = songs[part][~present]
        example = run.manifest.tracks[int(missing[0])]
        raise ConfigError(
            f"{store.path}: holds songs of run {run_dir} (its data, copied or moved), but "
            f"{len(missing)} of the {len(songs[part])} {part} songs are missing from it (e.g. "
            f"{example.genre}/{example.id}, or its file changed size); a figure on the rest would "
            "not be the run's: use a store of the complete data"
        )
    return Selection(
        index, f"{split.name} ({part}), its songs found in {store.manifest.root}", split.leaky
    )


def _select_by_audio(
    store: FeatureStore, run_config: dict[str, Any], split: Split, part: str, run_dir: Path
) -> Selection:
    """:func:`select_segments` for a run that recorded its songs."""
    songs = read_songs(run_dir, run_config["songs"])
    found_in = f"{split.name} ({part}), its songs found by their audio in {store.manifest.root}"
    if store.identity == songs.data:  # the songs the split was made on, in the same order
        own = str(store.path.resolve()) == run_config.get("store")
        source = f"{split.name} ({part})" if own else found_in
        return Selection(split.segment_indices(part, store.tracks), source, split.leaky)
    require_identities(store, f"evaluating run {run_dir} on it")
    if songs.parts is None:
        raise IdentityError(
            f"{run_dir}: {SONGS_FILE} is missing, so the run's songs cannot be found in "
            f"{store.path} (data identity {store.identity[:12]}, not the run's "
            f"{songs.data[:12]}); evaluate it on the store it was trained on"
        )
    tracks = store.manifest.tracks
    where: dict[str, int] = {}
    for i, track in enumerate(tracks):
        if track.status == "ok":
            where.setdefault(track.content, i)
    every = {e.split(" ")[0] for p in ("train", "val", "test") for e in songs.parts[p]}
    if not every & where.keys():
        return Selection(
            np.arange(len(store)), f"all of {store.manifest.root} (another dataset)", False
        )
    entries = [e.split(" ") for e in songs.parts[part]]
    missing = [e for e in entries if e[0] not in where]
    relabelled = [e for e in entries if e[0] in where and tracks[where[e[0]]].genre != e[1]]
    if missing or relabelled:
        if missing:
            problem = (
                f"{len(missing)} of the run's {len(entries)} {part} songs are not in it (e.g. "
                f"{_song_named(run_config, missing[0][0], missing[0][1])}, or its audio changed)"
            )
        else:
            e = relabelled[0]
            problem = (
                f"{len(relabelled)} of its {part} songs have another genre there (e.g. "
                f"{tracks[where[e[0]]].path} is {tracks[where[e[0]]].genre}, the run's {e[1]})"
            )
        raise IdentityError(
            f"{store.path}: holds songs of run {run_dir}, but {problem}; a figure on the rest "
            "would not be the run's: use a store of the complete data"
        )
    if songs.level == "song":
        chosen = np.array(sorted({where[e[0]] for e in entries}), np.int64)
        index = np.flatnonzero(np.isin(store.tracks, chosen)).astype(np.int64)
    else:  # the seed's segment split: each segment by its song and its position in the song
        segment_of = {
            (int(t), int(q)): row
            for row, (t, q) in enumerate(zip(store.tracks, store.positions, strict=True))
        }
        located = [segment_of.get((where[e[0]], int(e[2])), -1) for e in entries]
        if -1 in located:
            raise IdentityError(
                f"{store.path}: holds songs of run {run_dir}, but not all the segments of its "
                f"{part} part (another segment length?)"
            )
        index = np.sort(np.array(located, np.int64))
    return Selection(index, found_in, split.leaky)


def _song_named(run_config: dict[str, Any], content: str, genre: str) -> str:
    """A song of the run by the file it was in the run's own store (when that store is still
    there), else by its genre and the start of its identity."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        manifest = read_json(Path(run_config["store"]) / "manifest.json")
        for track in manifest["tracks"]:
            if track.get("content") == content:
                return f"{track['path']} ({genre})"
    return f"the {genre} song of audio {content[:12]}"


@dataclass
class _RunData:
    """What the run's own store says about its songs: the manifest its split indexes and, for a
    segment-level split, the track and position of each of its segments."""

    manifest: Manifest
    tracks: np.ndarray | None = None
    positions: np.ndarray | None = None

    def part_tracks(self, split: Split, part: str) -> np.ndarray:
        """Track indices (into :attr:`manifest`) of the songs of the split's ``part``."""
        return split.part_tracks(part, self.tracks)


def _run_data(
    store: FeatureStore, run_config: dict[str, Any], run_dir: str | Path, segments: bool
) -> _RunData | None:
    """The run's songs from its own store (its manifest, and its ``tracks``/``positions``
    arrays when ``segments``); None when ``store`` is that store and the run recorded no
    fingerprint to tell whether it was rebuilt since (a legacy run)."""
    path = run_config.get("store")
    fingerprint = run_config.get("data_fingerprint")
    need = (
        f"it is needed to match the songs of {store.path} (data fingerprint "
        f"{store.info.get('data_fingerprint')}, the run's {fingerprint}) to the run's split"
    )
    if path is None:
        raise ConfigError(f"{run_dir}: config.json names no feature store; {need}")
    path = Path(path)
    if fingerprint is None and path.resolve() == store.path.resolve():
        return None
    try:
        own = FeatureStore.open(path)
    except StoreError as error:
        message = f"{run_dir}: the run's feature store {path} is gone or unreadable ({error})"
        raise ConfigError(f"{message}; {need}") from error
    built_from = own.info.get("data_fingerprint")
    run = _RunData(own.manifest, own.tracks, own.positions) if segments else _RunData(own.manifest)
    if fingerprint is not None and built_from != fingerprint:
        raise ConfigError(
            f"{run_dir}: the run's feature store {path} was rebuilt from other data since the "
            f"run was trained (data fingerprint {built_from}, the run's {fingerprint}), so its "
            f"split no longer names the run's songs; {need}"
        )
    return run
