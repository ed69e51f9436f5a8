"""What the report page (``report.html``) of ``evaluate``, ``crossval`` and ``compare`` shows,
gathered from their reports; :mod:`genre_jax.report_html` draws it.

A page holds what ran, the summary and per-genre tables, the song- and segment-level
confusion matrices (each cell linking to its songs), every misclassified song with its
probabilities and a few seconds of its audio to listen to (:mod:`genre_jax.excerpts`; left out
with ``audio=False``, for data that may not be shared), and for a network the map of its test
songs' embeddings (the ``embed`` layer's mean over a song's segments, 2-D by PCA). The songs
come from the reports' ``per_song`` records (:func:`genre_jax.evaluate.song_records`); an
excerpt is cut only from a file whose audio is still the song the report scored (its identity,
:func:`genre_jax.audio.load_song`), otherwise the page says why there is none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.audio import AudioError, load_song
from genre_jax.excerpts import DEFAULT_SAMPLE_RATE as EXCERPT_RATE
from genre_jax.excerpts import decoded_excerpt_uri


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def excerpt(record: dict[str, Any], audio: bool) -> tuple[str | None, str | None]:
    """The song's excerpt as a data URI and why there is none: audio left out, the file gone
    or unreadable, or the file no longer holds the song that was scored."""
    if not audio:
        return None, "audio left out of this page (--no-audio)"
    path = record.get("path")
    if not path:
        return None, "no file recorded for this song"
    try:
        samples, content = load_song(path, EXCERPT_RATE)
    except AudioError as error:
        return None, f"audio unavailable: {error}"
    expected = record.get("content", _digest_in(record["song"]))
    if expected is None:
        return None, (
            "no excerpt: its store predates songs' identities, so the file cannot be checked to "
            "be the song that was scored"
        )
    if content != expected:
        return None, f"audio unavailable: {path} is no longer the song that was scored"
    return decoded_excerpt_uri(samples, EXCERPT_RATE), None


def _digest_in(song: str) -> str | None:
    """The audio digest in a song's id (``genre/<32 hex digits>``), or None (a track id)."""
    tail = song.rsplit("/", 1)[-1]
    return tail if re.fullmatch(r"[0-9a-f]{32}", tail) else None


def confusions(
    units: Sequence[tuple[str, dict[str, Any]]], genres: list[str], title: str, segments: bool
) -> list[dict[str, Any]]:
    """The song-level (and, with ``segments``, the segment-level) confusion matrices of the
    records ``units`` (``(song id, record)``), each cell with its songs."""
    index = {g: i for i, g in enumerate(genres)}
    n = len(genres)
    song_counts = np.zeros((n, n), int)
    song_cells: dict[str, list[str]] = {}
    segment_counts = np.zeros((n, n), int)
    segment_cells: dict[str, list[str]] = {}
    for song_id, record in units:
        i, j = index[record["genre"]], index[record["predicted"]]
        song_counts[i, j] += 1
        song_cells.setdefault(f"{i},{j}", []).append(song_id)
        for k, votes in enumerate(record.get("segment_votes") or []):
            if votes:
                segment_counts[i, k] += votes
                segment_cells.setdefault(f"{i},{k}", []).append(song_id)
    matrices = [
        {
            "id": "song",
            "title": f"{title}: songs (true genre by row, predicted by column)",
            "counts": song_counts.tolist(),
            "cells": song_cells,
        }
    ]
    if segments and segment_counts.sum():
        matrices.append(
            {
                "id": "segment",
                "title": f"{title}: segments (a cell lists the songs whose segments fell in it)",
                "counts": segment_counts.tolist(),
                "cells": segment_cells,
            }
        )
    return matrices


def per_genre_table(report_per_genre: dict[str, dict[str, float]], title: str) -> dict[str, Any]:
    """Precision, recall, F1 and support per genre (song level)."""
    return {
        "id": "per-genre",
        "title": title,
        "columns": ["genre", "precision", "recall", "F1", "songs"],
        "rows": [
            [g, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
            for g, m in report_per_genre.items()
        ],
        "note": None,
    }


def song_entries(
    units: Sequence[tuple[str, dict[str, Any]]],
    verdicts: dict[str, list[dict[str, Any]]],
    listen: set[str],
    audio: bool,
) -> dict[str, dict[str, Any]]:
    """The page's songs: each unit's name and genre, its models' verdicts, and for the songs
    in ``listen`` an excerpt."""
    songs, heard = {}, {}  # heard: the unit whose entry plays each song's excerpt
    for song_id, record in units:
        sound, note = None, None
        name = Path(record.get("path") or song_id).name
        if song_id != record["song"]:  # one unit of several of the song: its partition too
            name += song_id[len(record["song"]) :]
        if song_id in listen:
            first = heard.get(record["song"])
            if first is None:
                heard[record["song"]] = name
                sound, note = excerpt(record, audio)
            else:
                note = f"its excerpt is under {first}"
        songs[song_id] = {
            "name": name,
            "genre": record["genre"],
            "audio": sound,
            "audio_note": note,
            "verdicts": verdicts[song_id],
        }
    return songs


def _verdict(model: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "predicted": record["predicted"],
        "correct": record["predicted"] == record["genre"],
        "probabilities": record.get("probabilities"),
    }


def embedding_map(
    run_dir: Path, store: Any, index: np.ndarray, records: list[dict[str, Any]], title: str
) -> dict[str, Any] | None:
    """The map of a network run's evaluated songs: each song's mean embedding over its
    segments (:func:`genre_jax.embedders.network_embedder`), 2-D by PCA; None for a model
    without one penultimate layer (a pipeline, an ensemble) or fewer than three songs."""
    from sklearn.decomposition import PCA

    from genre_jax.config import ConfigError
    from genre_jax.embedders import network_embedder

    try:
        embedder = network_embedder(run_dir)
    except ConfigError:
        return None
    if len(records) < 3:
        return None
    tracks = np.asarray(store.tracks[index])
    rows = embedder.rows_of(np.asarray(store.features[index]))
    songs, inverse = np.unique(tracks, return_inverse=True)
    sums = np.zeros((len(songs), rows.shape[1]))
    np.add.at(sums, inverse, rows)
    means = sums / np.bincount(inverse)[:, None]
    points = PCA(n_components=2, random_state=0).fit_transform(means)
    return {
        "title": title,
        "method": "PCA",
        "points": [
            {
                "x": float(x),
                "y": float(y),
                "genre": record["genre"],
                "error": record["predicted"] != record["genre"],
                "song": record["song"],
            }
            for (x, y), record in zip(points, records, strict=True)
        ],
    }


def one_model_sections(
    units: Sequence[tuple[str, dict[str, Any]]],
    genres: list[str],
    model: str,
    count: str,
    audio: bool,
) -> dict[str, Any]:
    """The matrices, songs and error list of one model's page (an evaluation's or a
    cross-validation's): every unit with the model's verdict, the misclassified ones to hear."""
    errors = [song for song, r in units if r["predicted"] != r["genre"]]
    return {
        "genres": genres,
        "confusions": confusions(units, genres, model, segments=True),
        "songs": song_entries(
            units, {s: [_verdict(model, r)] for s, r in units}, set(errors), audio
        ),
        "errors": {"title": f"Misclassified songs {count}", "songs": errors, "note": None},
    }


def evaluate_page(
    report: dict[str, Any], *, audio: bool = True, embedding: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The page of one evaluation (``evaluate``'s report, with its ``per_song`` records)."""
    genres = report["genres"]
    model = report["model"]
    units = [(r["song"], r) for r in report["per_song"]]
    errors = [song for song, r in units if r["predicted"] != r["genre"]]
    ran = [report["ran"], f"Evaluated on: {report['evaluated_on']}."]
    if report.get("leaky_split"):
        ran.append("The run's split is the seed's leaky one: the figures are inflated.")
    if report.get("window_hop") is not None:
        ran.append(
            f"Song-level figures: the mean probability over windows every "
            f"{report['window_hop']:g} s ({report['windows']} windows)."
        )
    summary = {
        "id": "summary",
        "title": "Summary",
        "columns": [
            "songs",
            "segments",
            "song acc. %",
            "song acc. (vote) %",
            "segment acc. %",
            "macro F1",
        ],
        "rows": [
            [
                report["songs"],
                report["segments"],
                _pct(report["song_accuracy"]),
                _pct(report["song_accuracy_vote"]),
                _pct(report["segment_accuracy"]),
                f"{report['macro_avg']['f1']:.3f}",
            ]
        ],
        "note": None,
    }
    return {
        "title": f"{model}: {report['songs']} songs evaluated ({report['run']})",
        "kind": "evaluate",
        "summary": f"{model}: {_pct(report['song_accuracy'])} % of {report['songs']} songs "
        f"right ({len(errors)} wrong).",
        "ran": ran,
        "tables": [summary, per_genre_table(report["per_genre"], "Per genre (songs)")],
        **one_model_sections(units, genres, model, f"({len(errors)})", audio),
        "maps": [embedding] if embedding else [],
    }


def unit_id(partition: str, song: str, partitions: int) -> str:
    """A unit's id on a page: the song, and its partition when there are several."""
    return song if partitions == 1 else f"{song} ({partition})"


def crossval_units(out_dir: Path, report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every fold's songs of a cross-validation (every repeat's), as page units."""
    from genre_jax.compare import fold_records
    from genre_jax.crossval_folds import fold_runs

    folds = fold_runs(out_dir)
    seeds = {f.split_seed for f in folds}
    units = []
    for fold in folds:
        for record in fold_records(fold.run_dir, fold.report_name, report.get("window_hop")):
            partition = f"split seed {fold.split_seed}"
            units.append((unit_id(partition, record["song"], len(seeds)), record))
    return units


def _interval_note(method: dict[str, Any] | None) -> str | None:
    """The interval's method in words (a report written before intervals has none)."""
    if not method:
        return None
    return f"95 % interval: the {method['name']}, {method['formula']}; {method['why']}."


def crossval_page(out_dir: Path, report: dict[str, Any], *, audio: bool = True) -> dict[str, Any]:
    """The page of a cross-validation (its report.json and its folds' reports)."""
    from genre_jax.compare import crossval_protocol
    from genre_jax.crossval_report import feature_text
    from genre_jax.feature_config import FeatureConfig
    from genre_jax.reports import ran_text
    from genre_jax.scoring import genre_metrics

    genres, model = report["genres"], report["model"]
    units = crossval_units(out_dir, report)
    errors = [song for song, r in units if r["predicted"] != r["genre"]]
    features = FeatureConfig.from_json(report["features"])
    provenance = {k: report.get(k) for k in ("experiment_file", "protocol", "given")}
    ran = [ran_text(report.get("data_dir"), features, provenance)]
    ran.append(f"Protocol: {crossval_protocol(report)}; features {feature_text(features)}.")
    if report.get("description"):
        ran.insert(0, report["description"])
    mean, std = report["mean"], report["std"]
    interval = report.get("interval", {}).get("song_accuracy")
    interval_text = f"[{_pct(interval[0])}, {_pct(interval[1])}]" if interval else "-"
    summary = {
        "id": "summary",
        "title": "Summary (over folds)",
        "columns": ["folds", "songs scored", "song acc. % (mean +- std)", "95 % interval",
                    "pooled song acc. %", "segment acc. %", "macro F1"],
        "rows": [[
            len(report["per_fold"]),
            report["songs"],
            f"{_pct(mean['song_accuracy'])} +- {_pct(std['song_accuracy'])}",
            interval_text,
            _pct(report["pooled_song_accuracy"]),
            f"{_pct(mean['segment_accuracy'])} +- {_pct(std['segment_accuracy'])}",
            f"{mean['macro_f1']:.3f}",
        ]],
        "note": _interval_note(report.get("interval_method")),
    }  # fmt: skip
    folds = {
        "id": "folds",
        "title": "Folds",
        "columns": ["split seed", "fold", "songs", "song acc. %", "song acc. (vote) %",
                    "segment acc. %", "macro F1"],
        "rows": [
            [r.get("split_seed", report["split_seed"]), r["fold"], r["songs"],
             _pct(r["song_accuracy"]), _pct(r["song_accuracy_vote"]),
             _pct(r["segment_accuracy"]), f"{r['macro_f1']:.3f}"]
            for r in report["per_fold"]
        ],
        "note": None,
    }  # fmt: skip
    tables = [summary, folds]
    if len(report.get("per_repeat") or []) > 1:
        tables.append(
            {
                "id": "repeats",
                "title": "Repeats (one k-fold partition each)",
                "columns": ["split seed", "song acc. % (mean +- std)", "pooled %"],
                "rows": [
                    [
                        r["split_seed"],
                        f"{_pct(r['mean']['song_accuracy'])} +- {_pct(r['std']['song_accuracy'])}",
                        _pct(r["pooled_song_accuracy"]),
                    ]
                    for r in report["per_repeat"]
                ],
                "note": None,
            }
        )
    index = {g: i for i, g in enumerate(genres)}
    truth = np.array([index[r["genre"]] for _, r in units])
    predicted = np.array([index[r["predicted"]] for _, r in units])
    tables.append(
        per_genre_table(
            genre_metrics(truth, predicted, genres)["per_genre"], "Per genre (songs, all folds)"
        )
    )
    return {
        "title": f"{model}: {crossval_protocol(report)} ({out_dir})",
        "kind": "crossval",
        "summary": f"{model}: {_pct(mean['song_accuracy'])} +- {_pct(std['song_accuracy'])} % "
        f"song accuracy over {len(report['per_fold'])} folds, 95 % interval {interval_text}.",
        "ran": ran,
        "tables": tables,
        **one_model_sections(units, genres, model, f"({len(errors)} of {len(units)})", audio),
        "maps": [],
    }


def compare_page(result: dict[str, Any], models: Sequence[Any], *, audio: bool = True) -> dict:
    """The page of a comparison (:func:`genre_jax.compare.compare`'s result and the models'
    :class:`~genre_jax.paired.Outcomes`)."""
    from genre_jax.reports import headline_of_pairs, verdict

    paired = result["paired"]
    partitions = sorted({u[0] for m in models for u in m.correct})
    genres = models[0].genres
    first = models[0]
    units = sorted(first.correct)
    ids = {u: unit_id(u[0], u[1], len(partitions)) for u in units}
    verdicts = {ids[u]: [_verdict(m.name, m.records[u]) for m in models] for u in units}
    disagree = [ids[u] for u in units if len({m.correct[u] for m in models}) > 1]
    all_wrong = [ids[u] for u in units if not any(m.correct[u] for m in models)]
    ran = [f"{m.name} ({m.source}; {m.protocol}): {m.ran}" for m in models]
    rows = result["rows"]
    tables = [
        {
            "id": "summary",
            "title": "Side by side",
            "columns": ["run", "model", "protocol", "segment acc. %", "song acc. %", "macro F1"],
            "rows": [
                [r["run"], r["model"], r["protocol"], _pct(r["segment_accuracy"]),
                 _pct(r["song_accuracy"]),
                 "-" if r["macro_f1"] is None else f"{r['macro_f1']:.3f}"]
                for r in rows
            ],
            "note": "The seed report's rows are its own figures on a split that leaks songs.",
        }
    ]  # fmt: skip
    headline = f"{len(models)} models on the same {len(units)} song units"
    if paired is not None:
        boot = paired["bootstrap"]
        tables.append(
            {
                "id": "pairs",
                "title": "Paired tests",
                "columns": ["A", "B", "A - B (points)", "95 % interval", "A right, B wrong",
                            "A wrong, B right", "McNemar p", "p over songs (Holm)", "verdict"],
                "rows": [
                    [p["a"], p["b"], f"{100 * p['difference']:+.2f}",
                     f"[{100 * p['interval'][0]:+.2f}, {100 * p['interval'][1]:+.2f}]",
                     p["a_right_b_wrong"], p["a_wrong_b_right"], f"{p['p']:.3g}",
                     f"{p['p_holm']:.3g}", verdict(p)]
                    for p in paired["pairs"]
                ],
                "note": f"Paired bootstrap over songs within genre, {boot['resamples']:,} draws, "
                f"seed {boot['seed']}; {paired['test']}; correction: {paired['correction']}.",
            }
        )  # fmt: skip
        headline += ": " + headline_of_pairs(paired)
    else:
        headline += "."
    listen = disagree + [s for s in all_wrong if s not in set(disagree)]
    matrices = []
    for k, m in enumerate(models):
        for matrix in confusions(
            [(ids[u], m.records[u]) for u in units], genres, m.name, segments=False
        ):
            matrices.append({**matrix, "id": f"song-{k}"})
    return {
        "title": "Comparison: " + " vs ".join(m.name for m in models),
        "kind": "compare",
        "summary": headline,
        "ran": ran,
        "tables": tables,
        "genres": genres,
        "confusions": matrices,
        "songs": song_entries(
            [(ids[u], first.records[u]) for u in units], verdicts, set(listen), audio
        ),
        "errors": {
            "title": f"Songs the models disagree on ({len(disagree)}), then songs every model "
            f"got wrong ({len(all_wrong)})",
            "songs": listen,
            "note": None,
        },
        "maps": [],
    }
