"""Evaluation from a run's files alone: segment- and song-level metrics, reports, comparison.

Song-level accuracy (the default, what a listener asks for) aggregates a song's segments by
mean probability; majority vote is reported beside it. Segment-level accuracy is the seed's
figure. Metrics use scikit-learn's implementations.

A run's songs are known by their audio (:mod:`genre_jax.identity`: the run records the songs of
each part of its split), so a store of a copy of its data (moved, re-downloaded, transcoded
without loss, or holding more songs) is scored on the run's own test songs, never on its
training songs, and a report made on any store but the run's own is written beside the run's
report, not over it. Runs written before that are matched by genre, track id and file size
(:func:`match_tracks`). ``compare`` only reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from genre_jax import plots
from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.datasets import Manifest, Track
from genre_jax.embedding_cache import store_cache
from genre_jax.ensemble import is_ensemble
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, read_json
from genre_jax.identity import SONGS_FILE, IdentityError, read_songs, require_identities
from genre_jax.inference import Predictor, load_predictor, read_run_config
from genre_jax.metrics import log_event
from genre_jax.models import specs
from genre_jax.parallel import gather_blocks, is_main_process, process_block
from genre_jax.settings import require_same
from genre_jax.splits import Split
from genre_jax.store import FeatureStore, StoreError, resolve_store
from genre_jax.windows import check_hop, song_windows


@dataclass
class Aggregated:
    """Song-level view of segment predictions."""

    tracks: np.ndarray  # (songs,) track index of each song
    labels: np.ndarray  # (songs,) true genre
    by_mean: np.ndarray  # (songs,) genre of the mean probability
    by_vote: np.ndarray  # (songs,) most frequent segment label (ties: higher mean probability)


def aggregate_songs(
    tracks: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray
) -> Aggregated:
    """Group segments by track and turn their predictions into one genre per song."""
    songs, inverse = np.unique(tracks, return_inverse=True)
    n_classes = probabilities.shape[1]
    sums = np.zeros((len(songs), n_classes))
    np.add.at(sums, inverse, probabilities)
    votes = np.zeros((len(songs), n_classes))
    np.add.at(votes, (inverse, predicted), 1.0)
    mean = sums / np.bincount(inverse, minlength=len(songs))[:, None]
    # A vote tie goes to the class with the higher mean probability (a fraction below one vote).
    by_vote = np.argmax(votes + 0.5 * mean, axis=1)
    song_labels = np.zeros(len(songs), dtype=labels.dtype)
    song_labels[inverse] = labels
    return Aggregated(songs, song_labels, np.argmax(mean, axis=1), by_vote)


def genre_metrics(truth: np.ndarray, predicted: np.ndarray, genres: list[str]) -> dict[str, Any]:
    """Per-genre precision, recall, F1 and support by name, with macro and weighted averages."""
    labels = list(range(len(genres)))
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0.0)
    per_genre = {
        g: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, g in enumerate(genres)
    }
    averages = {}
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(
            truth, predicted, labels=labels, average=average, zero_division=0.0
        )
        averages[average] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    return {"per_genre": per_genre, **averages}


def _confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> dict[str, list]:
    counts = confusion_matrix(truth, predicted, labels=list(range(n)))
    support = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    return {"counts": counts.tolist(), "normalized": normalized.round(6).tolist()}


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


def report_suffix(run_config: dict[str, Any], store: FeatureStore, part: str) -> str:
    """Suffix of the report's file names: ``""`` (``"-val"``) on the run's own store, else
    ``"-<part>-on-<store folder>-<8 hex of the sha256 of its resolved path>"``, so that a report
    made on other data is written beside the run's own, never over it."""
    own = run_config.get("store")
    resolved = store.path.resolve()
    if own is not None and Path(own).resolve() == resolved:
        return "" if part == "test" else f"-{part}"
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.name)
    return f"-{part}-on-{name}-{digest}"


EVALUATE_CHUNK = 8192
"""Segments read and predicted at a time by :func:`predict_segments`."""


def predict_segments(
    predictor: Predictor, store: FeatureStore, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(n, classes)`` and labels of the store's segments ``index``.

    Each process predicts its contiguous block of ``index``, :data:`EVALUATE_CHUNK` segments
    read at a time (memory stays bounded whatever the store's size), and every process gets
    all blocks back in order.
    """
    block = process_block(len(index))
    mine = index[block.start : block.stop]
    probabilities, labels = [], []
    for start in range(0, len(mine), EVALUATE_CHUNK):
        x = np.asarray(store.features[mine[start : start + EVALUATE_CHUNK]])
        probabilities.append(predictor.predict_proba(x))
        labels.append(np.asarray(predictor.predict(x, probabilities[-1])))
    classes = len(predictor.genres)
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, classes))
    predicted = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    return np.concatenate(gather_blocks(probs)), np.concatenate(gather_blocks(predicted))


def _mixed_scores(
    run_dir: Path, predictor: Predictor, part: str
) -> tuple[FeatureStore, Selection, np.ndarray, np.ndarray]:
    """A mixed ensemble's segments and scores: each member predicts its ``part`` segments on
    its own store; a segment's probabilities are the members' mean where every member has
    the segment (its song's genre and identity, :func:`_song_key`, and its position in the
    song). Returns the first
    member's store, the selection of those segments in it, the probabilities and the labels
    (their argmax).

    Raises:
        ConfigError: a member lacks a song another member scores (their stores do not hold
            the same songs), naming the song.
    """
    scored = []
    for member in predictor.readers:
        config = read_run_config(member.run_dir)
        store = FeatureStore.open(resolve_store(config["store"]))
        selection = select_segments(store, config, part, member.run_dir)
        with store_cache(store):
            probabilities, _ = predict_segments(member, store, selection.index)
        keys = [
            (*_song_key(store, int(t)), int(q))
            for t, q in zip(store.tracks[selection.index], store.positions[selection.index],
                            strict=True)
        ]  # fmt: skip
        scored.append((store, selection, dict(zip(keys, probabilities, strict=True)), keys))
    first_store, first_selection, _, first_keys = scored[0]
    songs = [{k[:2] for k in keys} for *_, keys in scored]
    for (store, *_), member_songs in zip(scored[1:], songs[1:], strict=True):
        missing = songs[0] ^ member_songs
        if missing:
            genre, track = sorted(missing)[0]
            raise IdentityError(
                f"{run_dir}: its members' stores {first_store.path} and {store.path} do not "
                f"score the same {part} songs ({len(missing)} differ, e.g. {genre}/{track})"
            )
    common = [i for i, key in enumerate(first_keys) if all(key in s[2] for s in scored[1:])]
    mean = np.mean([[s[2][first_keys[i]] for i in common] for s in scored], axis=0).reshape(
        len(common), -1
    )
    selection = Selection(
        first_selection.index[common],
        f"{first_selection.source}, each member on its own features (segments every member has)",
        first_selection.leaky,
    )
    return first_store, selection, mean, mean.argmax(axis=1)


def _song_key(store: FeatureStore, track: int) -> tuple[str, str]:
    """A song of ``store`` as its genre and identity (:mod:`genre_jax.identity`), or its genre
    and track id in a store written before songs were identified by their audio."""
    entry = store.manifest.tracks[track]
    return entry.genre, entry.content if store.identity is not None else entry.id


def _window_songs(
    predictor: Predictor, store: FeatureStore, songs: Aggregated, hop: float
) -> tuple[Aggregated, int]:
    """The songs' genres from overlapping windows of their audio (:mod:`genre_jax.windows`):
    by the windows' mean probability, and by the vote of the windows' labels; with the number
    of windows scored."""
    tracks = [store.manifest.tracks[int(t)] for t in songs.tracks]
    paths, contents = [t.path for t in tracks], [t.content for t in tracks]
    by_mean, by_vote, total = [], [], 0
    for i, found in enumerate(song_windows(predictor, paths, hop, contents)):
        if found is None:  # shorter than a window at some member's rate: its segments' answers
            by_mean.append(int(songs.by_mean[i]))
            by_vote.append(int(songs.by_vote[i]))
            continue
        total += found.windows
        by_mean.append(int(np.argmax(found.mean)))
        by_vote.append(int(np.argmax(found.votes + 0.5 * found.mean)))  # ties: the higher mean
    return (
        Aggregated(songs.tracks, songs.labels, np.array(by_mean), np.array(by_vote)),
        total,
    )


def evaluate_run(
    run_dir: str | Path,
    *,
    part: str = "test",
    features: str | Path | None = None,
    write: bool = True,
    window_hop: float | None = None,
) -> dict[str, Any]:
    """Evaluate the run's model on a split part of its store (or another store's segments).

    Which segments are scored is :func:`select_segments`'s choice: the run's ``part`` songs,
    found by identity in a copy of its data, or all of another dataset. With ``write``, writes
    ``report.json`` and ``report.md`` (``report-val.*`` for ``part="val"``) and the
    confusion-matrix PNGs under ``plots/``; a store other than the run's own gets the suffix of
    :func:`report_suffix` instead (``report-test-on-<store>-<hash>.json``), so the run's own
    report is never replaced by one made on other data. Returns the report, with
    ``"report_file"`` the path of the JSON written (None without ``write``; not in the file).

    With ``window_hop`` (seconds), each evaluated song is decoded again and its song-level
    figures are those of the mean probability over windows of one segment starting every
    ``window_hop`` s (:mod:`genre_jax.windows`); the segment-level figures stay the store's.
    The report says so (``window_hop``, ``windows``) and its files get the suffix
    ``-hop<seconds>s``.

    Raises:
        ConfigError: ``features`` was extracted with other settings (the field is named), or
            its songs cannot be matched to the run's split (see :func:`select_segments`).
    """
    if window_hop is not None:
        check_hop(window_hop)
    if part not in ("test", "val"):
        raise ValueError(f"part={part!r}: 'test' or 'val'")
    run_dir = Path(run_dir)
    predictor = load_predictor(run_dir)
    run_config = read_run_config(run_dir)
    if predictor.mixed:
        if features is not None:
            raise ConfigError(
                f"{run_dir}: its members read different features, each from its own store; "
                "--features names one store (evaluate each member on it instead)"
            )
        store, selection, probabilities, predicted = _mixed_scores(run_dir, predictor, part)
        index = selection.index
    else:
        store = FeatureStore.open(resolve_store(features or run_config["store"]))
        require_same(
            FeatureConfig.from_json(run_config["features"]),
            store.config,
            f"feature store {store.path}",
        )
        selection = select_segments(store, run_config, part, run_dir)
        index = selection.index
    genres = predictor.genres
    if store.genres != genres:
        raise ValueError(f"{store.path}: genres {store.genres} differ from the run's {genres}")
    if len(index) == 0:
        raise ConfigError(f"{run_dir}: the {part} part of the split is empty; nothing to evaluate")
    truth = np.asarray(store.labels[index])
    if not predictor.mixed:
        with store_cache(store):  # a frozen network's embeddings of the store, computed once
            probabilities, predicted = predict_segments(predictor, store, index)
    songs = aggregate_songs(np.asarray(store.tracks[index]), truth, probabilities, predicted)
    window_count = None
    if window_hop is not None:
        songs, window_count = _window_songs(predictor, store, songs, window_hop)
    report = {
        "run": str(run_dir),
        "model": predictor.model_name,
        "evaluated_on": selection.source,
        "store": str(store.path.resolve()),
        "data_dir": store.manifest.root,
        # An ensemble's settings are its members' (each member's own report has them).
        "model_settings": (
            None if is_ensemble(run_config) else predictor.train_config.model_section()
        ),
        "ran": ran_text(store.manifest.root, store.config, run_config.get("provenance")),
        "leaky_split": selection.leaky,
        "segments": len(index),
        "songs": len(songs.tracks),
        "window_hop": window_hop,
        "windows": window_count,
        "segment_accuracy": float(np.mean(predicted == truth)),
        "song_accuracy": float(np.mean(songs.by_mean == songs.labels)),
        "song_accuracy_vote": float(np.mean(songs.by_vote == songs.labels)),
        "genres": genres,
    }
    song_metrics = genre_metrics(songs.labels, songs.by_mean, genres)
    segment_metrics = genre_metrics(truth, predicted, genres)
    report.update(
        per_genre=song_metrics["per_genre"],
        macro_avg=song_metrics["macro"],
        weighted_avg=song_metrics["weighted"],
        per_genre_segment=segment_metrics["per_genre"],
        macro_avg_segment=segment_metrics["macro"],
        weighted_avg_segment=segment_metrics["weighted"],
        confusion={
            "song": _confusion(songs.labels, songs.by_mean, len(genres)),
            "segment": _confusion(truth, predicted, len(genres)),
        },
    )
    if not write or not is_main_process():
        return {**report, "report_file": None}
    suffix = report_suffix(run_config, store, part)
    if window_hop is not None:
        suffix += f"-hop{window_hop:g}s"
    where = f"{part}, {store.path.name}" if suffix.startswith(f"-{part}-on-") else part
    for level in ("song", "segment"):
        plots.confusion_matrices(
            np.array(report["confusion"][level]["counts"]),
            genres,
            lambda kind, level=level: run_dir / "plots" / f"confusion_{level}_{kind}{suffix}.png",
            lambda kind, level=level: (
                f"{predictor.model_name.upper()} {level}-level confusion ({where}, {kind})"
            ),
        )
    report_file = run_dir / f"report{suffix}.json"
    atomic_write_json(report_file, report)
    atomic_write_bytes(run_dir / f"report{suffix}.md", markdown_report(report).encode())
    log_event(
        run_dir,
        "evaluate",
        {"part": part, "report": report_file.name, **headline(report)},
        step=_last_epoch(run_dir),
        images={
            f"evaluate/{part}/confusion_song": run_dir
            / "plots"
            / f"confusion_song_normalized{suffix}.png"
        },
    )
    return {**report, "report_file": str(report_file)}


HEADLINE = ("song_accuracy", "song_accuracy_vote", "segment_accuracy")


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """A report's headline figures: the accuracies and the song-level macro F1."""
    return {**{k: report[k] for k in HEADLINE}, "macro_f1": report["macro_avg"]["f1"]}


def _last_epoch(run_dir: Path) -> int:
    """The step of a run's final figures in TensorBoard: its last epoch (1 for a pipeline or
    an ensemble)."""
    history = run_dir / "history.json"
    return len(read_json(history)) if history.is_file() else 1


def ran_text(
    data_dir: str | None, features: FeatureConfig, provenance: dict[str, Any] | None
) -> str:
    """What ran, in one paragraph: the data folder, the features (kind, coefficients, segment
    length), and the experiment file with every setting given beside it, whose protocol line
    describes the file's own settings, not necessarily these."""
    text = (
        f"Ran on {data_dir or 'an unrecorded data folder'}: {features.kind} features, "
        f"{features.n_features} coefficients per frame, {features.segment_seconds:g} s "
        f"segments at {features.sample_rate} Hz."
    )
    provenance = provenance or {}
    if provenance.get("experiment_file"):
        text += f" Experiment file {provenance['experiment_file']}"
        given = provenance.get("given") or {}
        if given:
            text += ", with these settings given beside it: " + ", ".join(
                f"{k}={v!r}" for k, v in sorted(given.items())
            )
        text += "."
        if provenance.get("protocol"):
            text += f" The file's own protocol: {provenance['protocol']}"
    elif provenance.get("given"):
        text += " Settings given: " + ", ".join(
            f"{k}={v!r}" for k, v in sorted(provenance["given"].items())
        )
    return text


def markdown_report(report: dict[str, Any]) -> str:
    """The report as a markdown summary (accuracies, per-genre table, averages)."""
    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    lines = [
        f"# Evaluation of {report['model']} ({report['run']})",
        "",
        f"Evaluated on {report['evaluated_on']}: {report['segments']} segments, "
        f"{report['songs']} songs.",
    ]
    if report.get("store"):
        lines += ["", f"Feature store: {report['store']}"]
    if report.get("ran"):
        lines += ["", report["ran"]]
    if report["leaky_split"]:
        lines += [
            "",
            "**Leaky split**: segments of one song are in training and test; "
            "these figures are inflated and only reproduce the seed's protocol.",
        ]
    lines += [
        "",
        "| level | accuracy |",
        "| --- | --- |",
        f"| song (mean probability) | {pct(report['song_accuracy'])} |",
        f"| song (majority vote) | {pct(report['song_accuracy_vote'])} |",
        f"| segment | {pct(report['segment_accuracy'])} |",
        "",
        "Per genre, song level (segment level in parentheses):",
        "",
        "| genre | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
    ]
    for genre, m in report["per_genre"].items():
        s = report["per_genre_segment"][genre]
        lines.append(
            f"| {genre} | {m['precision']:.2f} ({s['precision']:.2f}) | {m['recall']:.2f} "
            f"({s['recall']:.2f}) | {m['f1']:.2f} ({s['f1']:.2f}) | {m['support']} "
            f"({s['support']}) |"
        )
    for name in ("macro", "weighted"):
        m, s = report[f"{name}_avg"], report[f"{name}_avg_segment"]
        lines.append(
            f"| {name} avg | {m['precision']:.2f} ({s['precision']:.2f}) | {m['recall']:.2f} "
            f"({s['recall']:.2f}) | {m['f1']:.2f} ({s['f1']:.2f}) | |"
        )
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One row per run, then the seed's rows. Only reads: a run without ``report.json`` is
    evaluated in memory (nothing is written) and its row says so (``evaluated_now``)."""
    rows = []
    for run_dir in map(Path, run_dirs):
        report_path = run_dir / "report.json"
        evaluated_now = not report_path.is_file()
        report = evaluate_run(run_dir, write=False) if evaluated_now else read_json(report_path)
        summary = (
            read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
        )
        rows.append(
            {
                "run": str(run_dir),
                "model": report["model"],
                "protocol": report["evaluated_on"],
                "segment_accuracy": report["segment_accuracy"],
                "song_accuracy": report["song_accuracy"],
                "macro_f1": report["macro_avg"]["f1"],
                "parameters": summary.get("parameters"),
                "train_seconds": summary.get("train_seconds"),
                "evaluated_now": evaluated_now,
            }
        )
    for spec in specs():
        if spec.seed is None:
            continue
        rows.append(
            {
                "run": "seed report",
                "model": spec.name,
                "protocol": "seed's leaky segment split (inflated; reference only)",
                "segment_accuracy": spec.seed.segment_accuracy,
                "song_accuracy": None,
                "macro_f1": None,
                "parameters": spec.seed.parameters,
                "train_seconds": None,
                "evaluated_now": False,
            }
        )
    return rows


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table (``-`` where a figure does not exist); a run evaluated
    just now (it has no ``report.json``) is marked ``*`` and explained below the table."""

    def cell(value: Any, percent: bool = False) -> str:
        if value is None:
            return "-"
        return (
            f"{100 * value:.2f} %"
            if percent
            else f"{value:,}"
            if isinstance(value, int)
            else str(value)
        )

    lines = [
        "| run | model | protocol | segment acc. | song acc. | macro F1 | parameters | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        f1 = "-" if r["macro_f1"] is None else f"{r['macro_f1']:.3f}"
        run = f"{r['run']} *" if r.get("evaluated_now") else r["run"]
        lines.append(
            f"| {run} | {r['model']} | {r['protocol']} | {cell(r['segment_accuracy'], True)} "
            f"| {cell(r['song_accuracy'], True)} | {f1} | {cell(r['parameters'])} "
            f"| {cell(r['train_seconds'])} |"
        )
    if any(r.get("evaluated_now") for r in rows):
        lines += [
            "",
            "\\* evaluated now on the run's test songs: the run has no report.json (none was "
            "written; `genre-jax evaluate` writes one)",
        ]
    return "\n".join(lines) + "\n"
