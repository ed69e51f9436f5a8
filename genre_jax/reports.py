"""An evaluation's reports: their file names, headline figures, and markdown.

:func:`report_suffix` keeps a report made on any store but the run's own beside the run's
report, not over it; :func:`markdown_report` and :func:`comparison_markdown` are what
``evaluate`` and ``compare`` print and write; :func:`ran_text` says what ran, in one paragraph.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from genre_jax.config import FeatureConfig
from genre_jax.store import FeatureStore


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


HEADLINE = ("song_accuracy", "song_accuracy_vote", "segment_accuracy")


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """A report's headline figures: the accuracies and the song-level macro F1."""
    return {**{k: report[k] for k in HEADLINE}, "macro_f1": report["macro_avg"]["f1"]}


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


def verdict(pair: dict[str, Any]) -> str:
    """A pair's verdict in words: which is better, with evidence, or no evidence either way."""
    if not pair["differs"]:
        return "no evidence of a difference"
    better = pair["a"] if pair["difference"] > 0 else pair["b"]
    return f"{better} better (evidence)"


def headline_of_pairs(paired: dict[str, Any]) -> str:
    """One sentence: how many pairs differ with evidence, and which do not."""
    pairs = paired["pairs"]
    differ = [p for p in pairs if p["differs"]]
    same = [f"{p['a']} and {p['b']}" for p in pairs if not p["differs"]]
    if len(pairs) == 1:
        p = pairs[0]
        low, high = p["interval"]
        return (
            f"{p['a']} - {p['b']}: {100 * p['difference']:+.2f} points, 95 % interval "
            f"[{100 * low:+.2f}, {100 * high:+.2f}], McNemar's p {p['p']:.3g}: {verdict(p)}."
        )
    text = (
        f"{len(differ)} of {len(pairs)} pairs differ with evidence (a Holm-adjusted p over songs "
        "below 0.05 and a 95 % interval excluding zero)"
    )
    return text + (f"; no evidence of a difference between {'; '.join(same)}." if same else ".")


def paired_markdown(paired: dict[str, Any]) -> str:
    """The paired tests of ``compare`` (:func:`genre_jax.paired.compare_outcomes`) as markdown:
    what was paired, how, and one row per pair."""
    boot = paired["bootstrap"]
    partitions = ", ".join(paired["partitions"])
    lines = ["## What ran", ""]
    lines += [
        f"- **{m['name']}** ({m['source']}; {m['protocol']}): {m['ran']}" for m in paired["models"]
    ]
    lines += [
        "",
        "## Paired tests on the same songs",
        "",
        headline_of_pairs(paired),
        "",
        f"{paired['units']} paired units: {paired['songs']} songs in {partitions}. "
        f"Interval: {100 * boot['level']:g} % paired bootstrap, {boot['resamples']:,} draws "
        f"(seed {boot['seed']}), {boot['method']}. Test: {paired['test']}. Correction for "
        f"multiple comparisons: {paired['correction']}.",
        "",
        "| A | B | A % | B % | A - B (points) | 95 % interval | A right, B wrong | "
        "A wrong, B right | McNemar p | p over songs (Holm) | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for p in paired["pairs"]:
        low, high = p["interval"]
        lines.append(
            f"| {p['a']} | {p['b']} | {100 * p['accuracy_a']:.2f} | {100 * p['accuracy_b']:.2f} "
            f"| {100 * p['difference']:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] "
            f"| {p['a_right_b_wrong']} | {p['a_wrong_b_right']} | {p['p']:.3g} "
            f"| {p['p_holm']:.3g} | {verdict(p)} |"
        )
    if len(paired["partitions"]) > 1:
        lines += [
            "",
            "Each song is a unit once per repeat; McNemar's test counts those units as "
            "independent, which they are not (the same song, partitioned again), so its p is "
            "optimistic. The verdict rests on songs: the p over songs (each song's difference "
            "summed over its repeats, with a random sign) and the bootstrap, which draws songs "
            "with all their repeats.",
        ]
    return "\n".join(lines) + "\n"
