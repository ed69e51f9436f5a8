"""The report of a k-fold cross-validation (``OUT/report.json``, ``report.md``, the pooled
confusion matrices in ``OUT/plots/``), from the folds' own reports.

Each fold's row is read from its run directory (:func:`fold_row`); :func:`summarise` gives the
mean and standard deviation over folds (``ddof=0``, the convention of the reference figures in
``shared/data/README.md``) and the song-level confusion summed over the folds, and writes them;
:func:`crossval_markdown` is the same as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax import legacy, plots
from genre_jax.config import FeatureConfig
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, read_json
from genre_jax.reports import ran_text

FOLD_METRICS = ("song_accuracy", "song_accuracy_vote", "segment_accuracy", "macro_f1")


def fold_row(fold: int, run_dir: Path, name: str = "report.json") -> dict[str, Any]:
    """Fold ``fold``'s row of the report: the figures of its run's report ``name``, its
    best epoch and training time (none for an ensemble), its song-level confusion."""
    report = read_json(run_dir / name)
    summary_path = run_dir / "summary.json"  # an ensemble has none
    summary = read_json(summary_path) if summary_path.is_file() else {}
    return {
        "fold": fold,
        "run": str(run_dir),
        "songs": report["songs"],
        "segments": report["segments"],
        "song_accuracy": report["song_accuracy"],
        "song_accuracy_vote": report["song_accuracy_vote"],
        "segment_accuracy": report["segment_accuracy"],
        "macro_f1": report["macro_avg"]["f1"],
        "best_epoch": summary.get("best_epoch"),
        "train_seconds": summary.get("train_seconds"),
        "confusion": report["confusion"]["song"]["counts"],
        "genres": report["genres"],
    }


def summarise(
    rows: Sequence[dict[str, Any]], experiment: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Mean and standard deviation over folds, pooled confusion; writes report and plots."""
    genres = rows[0]["genres"]
    confusion = np.sum([np.array(r["confusion"]) for r in rows], axis=0)
    values = {m: np.array([r[m] for r in rows], np.float64) for m in FOLD_METRICS}
    experiment = legacy.upgrade_crossval_experiment(experiment)
    members = experiment["members"]
    train = next(iter(members.values()))
    report = {
        "model": experiment["model"],
        "description": experiment["description"],
        "protocol": experiment["protocol"],
        "data_dir": experiment["data_dir"],
        "experiment_file": experiment["experiment_file"],
        "given": experiment["given"],
        "folds": train["folds"],
        "split_seed": train["split_seed"],
        "grouped_by": experiment["grouped_by"],
        "val_per_genre": {name: m["val_per_genre"] for name, m in members.items()},
        "features": experiment["features"],
        "member_features": experiment.get("member_features"),
        "window_hop": experiment.get("window_hop"),
        "train": members if len(members) > 1 else train,
        "mean": {m: float(v.mean()) for m, v in values.items()},
        "std": {m: float(v.std()) for m, v in values.items()},
        "pooled_song_accuracy": float(np.trace(confusion) / confusion.sum()),
        "songs": int(confusion.sum()),
        "per_fold": [{k: r[k] for k in r if k not in ("confusion", "genres")} for r in rows],
        "genres": genres,
        "confusion_song_counts": confusion.tolist(),
    }
    plots.confusion_matrices(
        confusion,
        genres,
        lambda kind: out_dir / "plots" / f"confusion_song_{kind}.png",
        lambda kind: f"{experiment['model']} song-level confusion, {len(rows)} folds ({kind})",
    )
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_bytes(out_dir / "report.md", crossval_markdown(report).encode())
    return report


def feature_text(features: FeatureConfig) -> str:
    """``logc, 96 coefficients at 16000 Hz, 2 s segments``."""
    return (
        f"{features.kind}, {features.n_features} coefficients at {features.sample_rate} Hz, "
        f"{features.segment_seconds:g} s segments"
    )


def crossval_markdown(report: dict[str, Any]) -> str:
    """The cross-validation report as markdown: settings, one row per fold, mean +- std."""
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    features = FeatureConfig.from_json(report["features"])
    level = "artist-grouped" if report.get("grouped_by") == "artist" else "song-level"
    lines = [f"# {report['model']}: {report['folds']}-fold {level} cross-validation", ""]
    if report["description"]:
        lines += [report["description"], ""]
    provenance = {k: report.get(k) for k in ("experiment_file", "protocol", "given")}
    lines += [ran_text(report.get("data_dir"), features, provenance), ""]
    if report["protocol"] and not report.get("experiment_file"):
        lines += [f"Protocol: {report['protocol']}", ""]
    held = report["val_per_genre"]
    held_text = (
        ", ".join(f"{v} ({k})" for k, v in held.items()) if len(held) > 1 else str(*held.values())
    )
    member_features = report.get("member_features")
    if member_features:  # members reading different features: each one's
        kinds = "; ".join(
            f"{name}: {feature_text(FeatureConfig.from_json(f))}"
            for name, f in member_features.items()
        )
    else:
        kinds = feature_text(features)
    lines += [
        f"Features: {kinds}; split seed {report['split_seed']}; "
        f"validation songs per genre held out of each training fold: {held_text}.",
        "",
        "| fold | songs | song acc. % | song acc. (vote) % | segment acc. % | macro F1 | "
        "best epoch | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["per_fold"]:
        lines.append(
            f"| {r['fold']} | {r['songs']} | {pct(r['song_accuracy'])} | "
            f"{pct(r['song_accuracy_vote'])} | {pct(r['segment_accuracy'])} | "
            f"{r['macro_f1']:.3f} | {r['best_epoch'] if r['best_epoch'] is not None else '-'} | "
            f"{r['train_seconds'] if r['train_seconds'] is not None else '-'} |"
        )
    mean, std = report["mean"], report["std"]
    lines += [
        f"| **mean +- std** | {report['songs']} | **{pct(mean['song_accuracy'])} +- "
        f"{pct(std['song_accuracy'])}** | {pct(mean['song_accuracy_vote'])} +- "
        f"{pct(std['song_accuracy_vote'])} | {pct(mean['segment_accuracy'])} +- "
        f"{pct(std['segment_accuracy'])} | {mean['macro_f1']:.3f} | | |",
        "",
        f"Pooled over folds: {pct(report['pooled_song_accuracy'])} % of {report['songs']} songs. "
        "Standard deviations over folds (ddof=0).",
    ]
    if report.get("window_hop") is not None:
        lines += [
            "",
            f"Song-level figures: the mean probability over overlapping windows of one segment "
            f"every {report['window_hop']:g} s of each song; segment-level: the store's segments.",
        ]
    return "\n".join(lines) + "\n"
