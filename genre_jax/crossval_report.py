"""The report of a k-fold cross-validation (``OUT/report.json``, ``report.md``, the pooled
confusion matrices in ``OUT/plots/``), from the folds' own reports.

Each fold's row is read from its run directory (:func:`fold_row`); :func:`summarise` gives the
mean and standard deviation over folds (``ddof=0``, the convention of the reference figures in
``shared/data/README.md``), a 95 % confidence interval of the mean (:func:`corrected_interval`)
and the song-level confusion summed over the folds, and writes them; :func:`crossval_markdown`
is the same as a table. With repeated k-fold (R partitions of k folds, one per split seed) the
figures are over all R x k folds, and each repeat's are given apart (``per_repeat``).

Why the interval is not the textbook one: the k folds of a partition, and the partitions of a
repeated k-fold, train on largely the same songs, so their figures are correlated and the
naive t interval (standard error s / sqrt(n)) is too narrow (its type I error well above the
nominal 5 %). The corrected resampled t test of Nadeau & Bengio (2003, "Inference for the
generalization error", Machine Learning 52) widens the variance of the mean from s^2 / n to
(1/n + n_test/n_train) s^2; Bouckaert & Frank (2004, "Evaluating the replicability of
significance tests for comparing learning algorithms", PAKDD) recommend it for repeated k-fold,
where n_test/n_train = 1/(k-1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.special

from genre_jax import legacy, plots
from genre_jax.config import FeatureConfig
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, read_json
from genre_jax.reports import ran_text

FOLD_METRICS = ("song_accuracy", "song_accuracy_vote", "segment_accuracy", "macro_f1")
CONFIDENCE = 0.95  # of the interval of the mean (corrected_interval)
INTERVAL_METHOD = {
    "name": "corrected resampled t interval (Nadeau & Bengio 2003; Bouckaert & Frank 2004)",
    "formula": "mean +- t_{0.975, n-1} * sqrt((1/n + n_test/n_train) * s^2), n = repeats x "
    "folds, s^2 the sample variance (ddof=1) of the fold figures, n_test/n_train = 1/(folds-1)",
    "why": "the folds share training songs, so their figures are correlated and the naive t "
    "interval over folds (s^2/n) is too narrow",
}


def corrected_interval(values: Sequence[float], folds: int) -> tuple[float, float]:
    """The 95 % confidence interval of the mean of ``values``, the figures of n = R x k folds
    of repeated k-fold cross-validation (k = ``folds``), by the corrected resampled t test
    (Nadeau & Bengio 2003; Bouckaert & Frank 2004): mean +- t_{0.975, n-1} * sqrt((1/n +
    1/(k-1)) s^2), s^2 the sample variance (ddof=1); 1/(k-1) is a fold's test songs over its
    training songs. Degenerate (the mean twice) when all figures are equal."""
    x = np.asarray(values, np.float64)
    n = x.size
    if n < 2 or folds < 2:
        raise ValueError(f"an interval needs >= 2 folds of >= 2-fold partitions ({n}, {folds})")
    t = float(scipy.special.stdtrit(n - 1, 0.5 + CONFIDENCE / 2))
    half = t * float(np.sqrt((1 / n + 1 / (folds - 1)) * x.var(ddof=1)))
    mean = float(x.mean())
    return mean - half, mean + half


def fold_row(
    fold: int,
    run_dir: Path,
    name: str = "report.json",
    *,
    split_seed: int | None = None,
    repeat: int = 0,
) -> dict[str, Any]:
    """Fold ``fold``'s row of the report: the figures of its run's report ``name``, its
    best epoch and training time (none for an ensemble), its song-level confusion; of the
    partition made with ``split_seed``, repeat ``repeat`` (0 for the first)."""
    report = read_json(run_dir / name)
    summary_path = run_dir / "summary.json"  # an ensemble has none
    summary = read_json(summary_path) if summary_path.is_file() else {}
    return {
        "fold": fold,
        "split_seed": split_seed,
        "repeat": repeat,
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


def _figures(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (``ddof=0``) of ``rows`` and their pooled song accuracy."""
    confusion = np.sum([np.array(r["confusion"]) for r in rows], axis=0)
    values = {m: np.array([r[m] for r in rows], np.float64) for m in FOLD_METRICS}
    return {
        "mean": {m: float(v.mean()) for m, v in values.items()},
        "std": {m: float(v.std()) for m, v in values.items()},
        "pooled_song_accuracy": float(np.trace(confusion) / confusion.sum()),
        "songs": int(confusion.sum()),
    }


def summarise(
    rows: Sequence[dict[str, Any]], experiment: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Mean and standard deviation over all folds (of all repeats) and per repeat, the
    interval of the mean (:func:`corrected_interval`), the confusion pooled over all folds;
    writes report and plots. ``rows`` are :func:`fold_row`'s, repeat by repeat."""
    genres = rows[0]["genres"]
    confusion = np.sum([np.array(r["confusion"]) for r in rows], axis=0)
    experiment = legacy.upgrade_crossval_experiment(experiment)
    members = experiment["members"]
    train = next(iter(members.values()))
    seeds = list(experiment.get("split_seeds") or [train["split_seed"]])
    repeats = len(seeds)
    overall = _figures(rows)
    interval = {
        m: list(corrected_interval([r[m] for r in rows], train["folds"])) for m in FOLD_METRICS
    }
    per_repeat = []
    for repeat, seed in enumerate(seeds):
        figures = _figures([r for r in rows if r.get("repeat", 0) == repeat])
        per_repeat.append({"split_seed": seed, "repeat": repeat, **figures})
    report = {
        "model": experiment["model"],
        "description": experiment["description"],
        "protocol": experiment["protocol"],
        "data_dir": experiment["data_dir"],
        "experiment_file": experiment["experiment_file"],
        "given": experiment["given"],
        "folds": train["folds"],
        "split_seed": train["split_seed"],
        "repeats": repeats,
        "split_seeds": seeds,
        "grouped_by": experiment["grouped_by"],
        "val_per_genre": {name: m["val_per_genre"] for name, m in members.items()},
        "features": experiment["features"],
        "member_features": experiment.get("member_features"),
        "window_hop": experiment.get("window_hop"),
        "train": members if len(members) > 1 else train,
        **overall,
        "interval": interval,
        "interval_method": {**INTERVAL_METHOD, "confidence": CONFIDENCE, "n": len(rows)},
        "per_repeat": per_repeat,
        "per_fold": [{k: r[k] for k in r if k not in ("confusion", "genres")} for r in rows],
        "genres": genres,
        "confusion_song_counts": confusion.tolist(),
    }
    folds_text = f"{len(rows)} folds" if repeats == 1 else f"{repeats} x {train['folds']} folds"
    plots.confusion_matrices(
        confusion,
        genres,
        lambda kind: out_dir / "plots" / f"confusion_song_{kind}.png",
        lambda kind: f"{experiment['model']} song-level confusion, {folds_text} ({kind})",
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
    """The cross-validation report as markdown: settings, one row per fold, mean +- std, and
    the interval of the mean; with repeats, the folds labelled by split seed and a row per
    repeat. Reads reports of every version (one written before repeats or intervals too)."""
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    features = FeatureConfig.from_json(report["features"])
    level = "artist-grouped" if report.get("grouped_by") == "artist" else "song-level"
    repeats = report.get("repeats", 1)
    seeds = report.get("split_seeds") or [report["split_seed"]]
    title = f"# {report['model']}: {report['folds']}-fold {level} cross-validation"
    lines = [title + (f", {repeats} repeats" if repeats > 1 else ""), ""]
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
    seed_text = (
        f"split seed {report['split_seed']}"
        if repeats == 1
        else f"{repeats} repeats, split seeds {', '.join(str(s) for s in seeds)}"
    )
    seed_head, seed_rule = ("", "") if repeats == 1 else ("split seed | ", "--- | ")
    lines += [
        f"Features: {kinds}; {seed_text}; "
        f"validation songs per genre held out of each training fold: {held_text}.",
        "",
        f"| {seed_head}fold | songs | song acc. % | song acc. (vote) % | segment acc. % | "
        "macro F1 | best epoch | train s |",
        f"| {seed_rule}--- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["per_fold"]:
        seed = "" if repeats == 1 else f"{r['split_seed']} | "
        lines.append(
            f"| {seed}{r['fold']} | {r['songs']} | {pct(r['song_accuracy'])} | "
            f"{pct(r['song_accuracy_vote'])} | {pct(r['segment_accuracy'])} | "
            f"{r['macro_f1']:.3f} | {r['best_epoch'] if r['best_epoch'] is not None else '-'} | "
            f"{r['train_seconds'] if r['train_seconds'] is not None else '-'} |"
        )
    mean, std = report["mean"], report["std"]
    lines += [
        f"| **mean +- std** | {'| ' if repeats > 1 else ''}{report['songs']} | "
        f"**{pct(mean['song_accuracy'])} +- {pct(std['song_accuracy'])}** | "
        f"{pct(mean['song_accuracy_vote'])} +- {pct(std['song_accuracy_vote'])} | "
        f"{pct(mean['segment_accuracy'])} +- {pct(std['segment_accuracy'])} | "
        f"{mean['macro_f1']:.3f} | | |",
        "",
    ]
    if repeats == 1:
        lines.append(
            f"Pooled over folds: {pct(report['pooled_song_accuracy'])} % of {report['songs']} "
            "songs. Standard deviations over folds (ddof=0)."
        )
    else:
        lines += [
            "Each repeat is one k-fold partition (its split seed), testing every song once:",
            "",
            "| split seed | songs | song acc. % | song acc. (vote) % | segment acc. % | "
            "macro F1 | pooled song acc. % |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in report["per_repeat"]:
            m, d = r["mean"], r["std"]
            lines.append(
                f"| {r['split_seed']} | {r['songs']} | {pct(m['song_accuracy'])} +- "
                f"{pct(d['song_accuracy'])} | {pct(m['song_accuracy_vote'])} +- "
                f"{pct(d['song_accuracy_vote'])} | {pct(m['segment_accuracy'])} +- "
                f"{pct(d['segment_accuracy'])} | {m['macro_f1']:.3f} | "
                f"{pct(r['pooled_song_accuracy'])} |"
            )
        n = len(report["per_fold"])
        lines += [
            "",
            f"Over all {repeats} x {report['folds']} = {n} folds: song accuracy "
            f"{pct(mean['song_accuracy'])} +- {pct(std['song_accuracy'])} % (mean +- standard "
            f"deviation over folds, ddof=0); pooled over all folds "
            f"{pct(report['pooled_song_accuracy'])} % of {report['songs']} song tests (each "
            "song tested once per repeat). Per repeat, mean +- std over its folds.",
        ]
    interval = report.get("interval")
    if interval:  # reports written before intervals have none
        low, high = interval["song_accuracy"]
        segment_low, segment_high = interval["segment_accuracy"]
        n = len(report["per_fold"])
        lines += [
            "",
            f"95 % confidence interval of the mean song accuracy: {pct(low)} to {pct(high)} % "
            f"(segment accuracy: {pct(segment_low)} to {pct(segment_high)} %), the corrected "
            f"resampled t interval over the {n} folds (Nadeau & Bengio 2003; Bouckaert & Frank "
            "2004): mean +- t(0.975, n-1) sqrt((1/n + 1/(k-1)) s^2). The folds share training "
            "songs, so their figures are correlated and the naive t interval over folds "
            "(s^2/n) would be too narrow.",
        ]
    if report.get("window_hop") is not None:
        lines += [
            "",
            f"Song-level figures: the mean probability over overlapping windows of one segment "
            f"every {report['window_hop']:g} s of each song; segment-level: the store's segments.",
        ]
    return "\n".join(lines) + "\n"
