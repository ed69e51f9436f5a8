"""Which segments of a feature store a run is scored on: its own songs, found in any copy.

A run's songs are known by their audio (:mod:`genre_jax.identity`: the run records the songs of
each part of its split), so a store of a copy of its data (moved, re-downloaded, transcoded
without loss, or holding more songs) is scored on the run's own test songs, never on its
training songs (:func:`select_segments`). Runs older than song identities are matched as they
were then (:func:`genre_jax.legacy.select_segments_by_track`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax import legacy
from genre_jax.fileio import read_json
from genre_jax.identity import SONGS_FILE, IdentityError, read_songs, require_identities
from genre_jax.splits import Split
from genre_jax.store import FeatureStore


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

    A run that records no songs (older than song identities) is matched as it was then
    (:func:`genre_jax.legacy.select_segments_by_track`).

    Raises:
        IdentityError: ``store`` holds songs of the run but misses some ``part`` songs, or
            holds one under another genre (named); the run's ``songs.json`` is not its own.
        ConfigError: a run without song identities cannot be matched
            (:func:`genre_jax.legacy.select_segments_by_track`).
    """
    split = Split.from_json(run_config["split"])
    if legacy.without_songs(run_config):
        return legacy.select_segments_by_track(store, run_config, split, part, run_dir)
    return _select_by_audio(store, run_config, split, part, Path(run_dir))


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
