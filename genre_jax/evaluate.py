"""Evaluation from a run's files alone: the run's model scored on a store, its reports, compare.

:func:`evaluate_run` scores the segments :func:`genre_jax.matching.select_segments` chooses
(the run's own songs, found by their audio in any copy of its data, or all of another
dataset), turns them into songs (:mod:`genre_jax.scoring`) and writes the reports
(:mod:`genre_jax.reports`) and the page (:mod:`genre_jax.report_pages`). :func:`run_row` and
:func:`seed_rows` are the rows of ``compare``'s side-by-side table (:mod:`genre_jax.compare`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genre_jax import legacy, plots
from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.embedding_cache import store_cache
from genre_jax.ensemble import is_ensemble
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, read_json
from genre_jax.identity import IdentityError
from genre_jax.inference import Predictor, load_predictor, read_run_config
from genre_jax.matching import Selection, select_segments
from genre_jax.metrics import log_event
from genre_jax.model_card import update_card
from genre_jax.models import specs
from genre_jax.parallel import gather_blocks, is_main_process, process_block
from genre_jax.report_html import write_page
from genre_jax.reports import headline, markdown_report, ran_text, report_suffix
from genre_jax.scoring import Aggregated, aggregate_songs, confusion, genre_metrics
from genre_jax.settings import require_same
from genre_jax.store import FeatureStore, resolve_store
from genre_jax.windows import check_hop, song_windows

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
    """A song of ``store`` as its genre and identity (:mod:`genre_jax.identity`); in a store
    without identities, :func:`genre_jax.legacy.song_key_by_id`."""
    entry = store.manifest.tracks[track]
    if store.identity is None:
        return legacy.song_key_by_id(entry)
    return entry.genre, entry.content


def _window_songs(
    predictor: Predictor, store: FeatureStore, songs: Aggregated, hop: float
) -> tuple[Aggregated, int]:
    """The songs' genres from overlapping windows of their audio (:mod:`genre_jax.windows`):
    by the windows' mean probability, and by the vote of the windows' labels; with the number
    of windows scored."""
    tracks = [store.manifest.tracks[int(t)] for t in songs.tracks]
    paths, contents = [t.path for t in tracks], [t.content for t in tracks]
    by_mean, by_vote, means, total = [], [], [], 0
    for i, found in enumerate(song_windows(predictor, paths, hop, contents)):
        if found is None:  # shorter than a window at some member's rate: its segments' answers
            by_mean.append(int(songs.by_mean[i]))
            by_vote.append(int(songs.by_vote[i]))
            means.append(songs.mean[i])
            continue
        total += found.windows
        by_mean.append(int(np.argmax(found.mean)))
        by_vote.append(int(np.argmax(found.votes + 0.5 * found.mean)))  # ties: the higher mean
        means.append(found.mean)
    # votes stay the store's segments' (the segment-level confusion's songs)
    windowed = Aggregated(
        songs.tracks,
        songs.labels,
        np.array(by_mean),
        np.array(by_vote),
        np.array(means),
        songs.votes,
    )
    return windowed, total


def song_records(store: FeatureStore, songs: Aggregated, genres: list[str]) -> list[dict[str, Any]]:
    """Each evaluated song as the report's ``per_song`` records: its identity (``genre/content``,
    the key :func:`_song_key` gives, which a copy of the data keeps), its file under the data
    folder, its true genre, the genre by mean probability and by vote, the mean probabilities
    (rounded to 1e-6) and how many of its segments each genre won. What ``compare`` pairs songs
    by and the report page lists."""
    records = []
    for i, track in enumerate(np.asarray(songs.tracks).tolist()):
        genre, content = _song_key(store, int(track))
        records.append(
            {
                "song": f"{genre}/{content}",
                # the audio's digest; None in a store that predates them (``song`` then names
                # the track's id, :func:`genre_jax.legacy.song_key_by_id`)
                "content": store.manifest.tracks[int(track)].content,
                "path": store.manifest.tracks[int(track)].path,
                "genre": genres[int(songs.labels[i])],
                "predicted": genres[int(songs.by_mean[i])],
                "predicted_vote": genres[int(songs.by_vote[i])],
                "probabilities": [round(float(p), 6) for p in songs.mean[i]],
                "segment_votes": [int(v) for v in songs.votes[i]],
            }
        )
    return records


def evaluate_run(
    run_dir: str | Path,
    *,
    part: str = "test",
    features: str | Path | None = None,
    write: bool = True,
    window_hop: float | None = None,
    audio: bool = True,
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

    The report's ``per_song`` records each song (:func:`song_records`), and with ``write`` the
    report page ``report.html`` (:mod:`genre_jax.report_pages`) is written beside the JSON:
    with a few seconds of every misclassified song unless ``audio`` is False, and a network's
    map of the songs' embeddings.

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
            "song": confusion(songs.labels, songs.by_mean, len(genres)),
            "segment": confusion(truth, predicted, len(genres)),
        },
        per_song=song_records(store, songs, genres),
    )
    if not write:
        return {**report, "report_file": None}
    # The page before any report file, in every process: its map restores the network again
    # (with several processes, orbax restores together), though only the first writes it.
    page = _page(report, run_dir, store, index, audio)
    if not is_main_process():
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
    write_page(run_dir / f"report{suffix}.html", page)
    update_card(run_dir)  # from the reports it holds now
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


def _page(
    report: dict[str, Any],
    run_dir: Path,
    store: FeatureStore,
    index: np.ndarray,
    audio: bool,
) -> dict[str, Any]:
    """The evaluation's report page, with a network's map of its songs' embeddings."""
    from genre_jax.report_pages import embedding_map, evaluate_page

    embedding = None
    if report["model_settings"] is not None:  # one model (an ensemble has no one embedding)
        embedding = embedding_map(
            run_dir,
            store,
            index,
            report["per_song"],
            f"{report['model']}: the evaluated songs' embeddings (mean over segments)",
        )
    return evaluate_page(report, audio=audio, embedding=embedding)


def _last_epoch(run_dir: Path) -> int:
    """The step of a run's final figures in TensorBoard: its last epoch (1 for a pipeline or
    an ensemble)."""
    history = run_dir / "history.json"
    return len(read_json(history)) if history.is_file() else 1


def run_row(run_dir: str | Path) -> dict[str, Any]:
    """A run's row of ``compare``'s table. Only reads: a run without ``report.json`` is
    evaluated in memory (nothing is written) and its row says so (``evaluated_now``)."""
    run_dir = Path(run_dir)
    report_path = run_dir / "report.json"
    evaluated_now = not report_path.is_file()
    report = evaluate_run(run_dir, write=False) if evaluated_now else read_json(report_path)
    summary = read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    return {
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


def seed_rows() -> list[dict[str, Any]]:
    """The seed report's figures as rows of ``compare``'s table (a reference only: its split
    leaks songs)."""
    return [
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
        for spec in specs()
        if spec.seed is not None
    ]


def compare_runs(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """One row per run (:func:`run_row`), then the seed's rows (:func:`seed_rows`)."""
    return [run_row(r) for r in run_dirs] + seed_rows()
