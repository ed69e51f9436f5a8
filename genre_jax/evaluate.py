"""Evaluation from a run's files alone: segment- and song-level metrics, reports, comparison.

Song-level accuracy (the default, what a listener asks for) aggregates a song's segments by
mean probability; majority vote is reported beside it. Segment-level accuracy is the seed's
figure. Metrics use scikit-learn's implementations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from genre_jax.config import ConfigError, FeatureConfig, require_same
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, read_json
from genre_jax.inference import load_predictor
from genre_jax.splits import Split
from genre_jax.store import FeatureStore, resolve_store

# The seed study's reported test accuracies: segment level, on its leaky random split.
SEED_REPORTED = {"cnn": 0.8249, "gru": 0.7114, "svm": 0.65}


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


def _select(
    store: FeatureStore, run_config: dict[str, Any], part: str
) -> tuple[np.ndarray, str, bool]:
    """Segment indices to evaluate, where they come from, and whether the split leaks songs.

    The run's own data: its split's ``part``. Another dataset: all of its segments.
    """
    if store.info.get("data_fingerprint") == run_config.get("data_fingerprint"):
        split = Split.from_json(run_config["split"])
        return split.segment_indices(part, store.tracks), f"{split.name} ({part})", split.leaky
    return np.arange(len(store)), f"all of {store.manifest.root} (another dataset)", False


def evaluate_run(
    run_dir: str | Path, *, part: str = "test", features: str | Path | None = None
) -> dict[str, Any]:
    """Evaluate the run's model on a split part of its store (or another store's segments).

    Writes ``report.json`` and ``report.md`` (``report-val.*`` for ``part="val"``) and the
    confusion-matrix PNGs under ``plots/``, and returns the report.

    Raises:
        ConfigError: ``features`` was extracted with other settings (the field is named).
    """
    from genre_jax import plots

    if part not in ("test", "val"):
        raise ValueError(f"part={part!r}: 'test' or 'val'")
    run_dir = Path(run_dir)
    predictor = load_predictor(run_dir)
    run_config = read_json(run_dir / "config.json")
    store = FeatureStore.open(resolve_store(features or run_config["store"]))
    require_same(
        FeatureConfig.from_json(run_config["features"]), store.config, f"feature store {store.path}"
    )
    genres = predictor.genres
    if store.genres != genres:
        raise ValueError(f"{store.path}: genres {store.genres} differ from the run's {genres}")
    index, source, leaky = _select(store, run_config, part)
    if len(index) == 0:
        raise ConfigError(f"{run_dir}: the {part} part of the split is empty; nothing to evaluate")
    x = np.asarray(store.features[index])
    truth = np.asarray(store.labels[index])
    probabilities = predictor.predict_proba(x)
    predicted = predictor.predict(x, probabilities)
    songs = aggregate_songs(np.asarray(store.tracks[index]), truth, probabilities, predicted)
    report = {
        "run": str(run_dir),
        "model": predictor.model_name,
        "evaluated_on": source,
        "leaky_split": leaky,
        "segments": len(index),
        "songs": len(songs.tracks),
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
    suffix = "" if part == "test" else f"-{part}"
    for level in ("song", "segment"):
        plots.confusion_matrices(
            np.array(report["confusion"][level]["counts"]),
            genres,
            lambda kind, level=level: run_dir / "plots" / f"confusion_{level}_{kind}{suffix}.png",
            lambda kind, level=level: (
                f"{predictor.model_name.upper()} {level}-level confusion ({part}, {kind})"
            ),
        )
    atomic_write_json(run_dir / f"report{suffix}.json", report)
    atomic_write_bytes(run_dir / f"report{suffix}.md", markdown_report(report).encode())
    return report


def markdown_report(report: dict[str, Any]) -> str:
    """The report as a markdown summary (accuracies, per-genre table, averages)."""
    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    lines = [
        f"# Evaluation of {report['model']} ({report['run']})",
        "",
        f"Evaluated on {report['evaluated_on']}: {report['segments']} segments, "
        f"{report['songs']} songs.",
    ]
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
    """One row per run (evaluating it first if it has no report), then the seed's rows."""
    rows = []
    for run_dir in map(Path, run_dirs):
        report_path = run_dir / "report.json"
        report = read_json(report_path) if report_path.is_file() else evaluate_run(run_dir)
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
            }
        )
    for model, accuracy in SEED_REPORTED.items():
        rows.append(
            {
                "run": "seed report",
                "model": model,
                "protocol": "seed's leaky segment split (inflated; reference only)",
                "segment_accuracy": accuracy,
                "song_accuracy": None,
                "macro_f1": None,
                "parameters": {"cnn": 65_994, "gru": 76_170}.get(model),
                "train_seconds": None,
            }
        )
    return rows


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    """The comparison as a markdown table (``-`` where a figure does not exist)."""

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
        lines.append(
            f"| {r['run']} | {r['model']} | {r['protocol']} | {cell(r['segment_accuracy'], True)} "
            f"| {cell(r['song_accuracy'], True)} | {f1} | {cell(r['parameters'])} "
            f"| {cell(r['train_seconds'])} |"
        )
    return "\n".join(lines) + "\n"
