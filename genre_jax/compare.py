"""``genre-jax compare A B [C ...]``: models side by side, and paired tests on the same songs.

Each folder given is an evaluated run or ensemble (its test split, ``report.json``) or a
cross-validation folder (every fold of every repeat, :func:`genre_jax.crossval_folds.fold_runs`).
Its per-song answers come from its reports' ``per_song`` records; a report written before
they were recorded (or a run without a report) is evaluated again in memory, nothing written.
The side-by-side table (:func:`summary_rows`) lists each with the seed's reported figures; with
two or more, every pair is tested on the units they share (:mod:`genre_jax.paired`), which must
be all of them: folders that scored different songs are refused, naming what differs.

``--out DIR`` writes ``comparison.md``, ``comparison.json`` and the report page ``report.html``
(:mod:`genre_jax.report_pages`) into a comparison folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, read_json
from genre_jax.output_dirs import (
    LAYOUTS,
    OutputDirError,
    describe_entries,
    dir_kind,
    foreign_entries,
    mark_dir,
    require_folder_or_absent,
)
from genre_jax.paired import (
    BOOTSTRAP_SEED,
    RESAMPLES,
    CompareError,
    Outcomes,
    compare_outcomes,
)
from genre_jax.reports import ran_text

TEST_PARTITION = "test"  # a run's units: its test split


def is_crossval(path: Path) -> bool:
    """A cross-validation folder (its experiment.json), not a run or an ensemble."""
    return (path / "experiment.json").is_file() and not (path / "config.json").is_file()


def fold_records(run_dir: Path, report_name: str, window_hop: float | None) -> list[dict[str, Any]]:
    """The run's per-song records: from its report, or evaluated now (in memory) when the
    report predates them or is missing."""
    from genre_jax.evaluate import evaluate_run

    path = run_dir / report_name
    report = read_json(path) if path.is_file() else {}
    if "per_song" in report:
        return report["per_song"]
    return evaluate_run(run_dir, write=False, window_hop=window_hop)["per_song"]


def _outcomes(
    name: str,
    source: Path,
    protocol: str,
    genres: list[str],
    parts: list[tuple[str, int | None, list[dict[str, Any]]]],
    ran: str,
) -> Outcomes:
    """The folder's units from ``(partition, fold, records)`` parts. A song whose audio is in
    two files (a dataset's duplicates, which ``prepare`` warns of) is one unit per file, told
    apart by the file's name, which a copy of the data keeps."""
    counts: dict[tuple[str, str], int] = {}
    for partition, _, songs in parts:
        for record in songs:
            counts[partition, record["song"]] = counts.get((partition, record["song"]), 0) + 1
    correct, records = {}, {}
    for partition, fold, songs in parts:
        for record in songs:
            song = record["song"]
            if counts[partition, song] > 1:
                song = f"{song} [{Path(record.get('path') or '').name}]"
            unit = (partition, song)
            if unit in correct:
                raise CompareError(
                    f"compare: {source} scores {song} twice in {partition} under the same file "
                    "name; paired tests need each song once"
                )
            correct[unit] = record["predicted"] == record["genre"]
            records[unit] = {**record, "fold": fold}
    return Outcomes(name, str(source), protocol, genres, correct, records, ran)


def crossval_protocol(report: dict[str, Any]) -> str:
    """``5-fold song-level CV, split seeds 0-2 (3 repeats), 409 songs``."""
    seeds = report.get("split_seeds") or [report["split_seed"]]
    level = "artist-grouped" if report.get("grouped_by") == "artist" else "song-level"
    seed_text = (
        f"split seed {seeds[0]}"
        if len(seeds) == 1
        else f"split seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} repeats)"
    )
    text = f"{report['folds']}-fold {level} CV, {seed_text}"
    if report.get("window_hop") is not None:
        text += f", windows every {report['window_hop']:g} s"
    return text


def read_outcomes(path: str | Path, name: str) -> Outcomes:
    """One folder's answers, song by song (see the module docstring).

    Raises:
        ConfigError: not an evaluated run, an ensemble or a finished cross-validation.
    """
    from genre_jax.crossval_folds import fold_runs

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"compare: {path}: not a folder (a run, an ensemble or a crossval)")
    if is_crossval(path):
        if not (path / "report.json").is_file():
            raise ConfigError(
                f"compare: {path}: a cross-validation without report.json (unfinished: run the "
                "same crossval command again to finish it)"
            )
        report = read_json(path / "report.json")
        hop = report.get("window_hop")
        parts = [
            (
                f"split seed {fold.split_seed}",
                fold.fold,
                fold_records(fold.run_dir, fold.report_name, hop),
            )
            for fold in fold_runs(path)
        ]
        features = FeatureConfig.from_json(report["features"])
        provenance = {k: report.get(k) for k in ("experiment_file", "protocol", "given")}
        ran = ran_text(report.get("data_dir"), features, provenance)
        protocol = crossval_protocol(report)
        return _outcomes(name, path, protocol, report["genres"], parts, ran)
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"compare: {path}: not a run, an ensemble or a cross-validation folder (no "
            "config.json or experiment.json)"
        )
    report_path = path / "report.json"
    if report_path.is_file() and "per_song" in read_json(report_path):
        report = read_json(report_path)
    else:  # written before per-song records, or never evaluated: evaluated now, in memory
        from genre_jax.evaluate import evaluate_run

        report = evaluate_run(path, write=False)
    return _outcomes(
        name,
        path,
        report["evaluated_on"],
        report["genres"],
        [(TEST_PARTITION, None, report["per_song"])],
        report["ran"],
    )


def model_names(paths: Sequence[Path]) -> list[str]:
    """Each folder's name in the comparison: its own name, with its parents' where two
    would read the same."""
    paths = [Path(os.path.abspath(p)) for p in paths]
    depth = 1
    while True:
        names = ["/".join(p.parts[1:][-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return names
        depth += 1


def crossval_row(path: Path) -> dict[str, Any]:
    """A cross-validation's row of the side-by-side table: its means over folds."""
    report = read_json(path / "report.json")
    seconds = [r.get("train_seconds") for r in report["per_fold"]]
    return {
        "run": str(path),
        "model": report["model"],
        "protocol": crossval_protocol(report) + " (means over folds)",
        "segment_accuracy": report["mean"]["segment_accuracy"],
        "song_accuracy": report["mean"]["song_accuracy"],
        "macro_f1": report["mean"]["macro_f1"],
        "parameters": None,
        "train_seconds": round(sum(seconds), 2) if None not in seconds else None,
        "evaluated_now": False,
    }


def summary_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The side-by-side table's rows: each folder (a run's test figures,
    :func:`genre_jax.evaluate.run_row`, or a cross-validation's means over its folds), then
    the seed's reported figures."""
    from genre_jax.evaluate import run_row, seed_rows

    rows = [crossval_row(Path(p)) if is_crossval(Path(p)) else run_row(p) for p in paths]
    return rows + seed_rows()


MAX_RESAMPLES = 1_000_000  # bootstrap draws: a bound on the draws' memory (draws x songs)


def _require_inputs(
    paths: Sequence[Path], out: str | Path | None, seed: int, resamples: int
) -> None:
    """The settings and folders of a comparison, checked before anything is read: a folder
    given twice, ``--out`` inside a folder compared, a seed or a number of draws out of range."""
    if not 100 <= resamples <= MAX_RESAMPLES:
        raise CompareError(f"--resamples {resamples}: from 100 to {MAX_RESAMPLES:,} draws")
    if not 0 <= seed < 2**63:
        raise CompareError(f"--seed {seed}: a whole number from 0 (the bootstrap's generator)")
    resolved = [p.resolve() for p in paths]
    for i, path in enumerate(resolved):
        if path in resolved[:i]:
            raise CompareError(f"compare: {paths[i]} is given twice; compare other folders")
    if out is not None:
        target = Path(out).resolve()
        for path, given in zip(resolved, paths, strict=True):
            if target == path or path in target.parents:
                raise OutputDirError(
                    f"--out {out}: inside {given}, a folder compared; choose a folder outside it"
                )


def _require_out(out: Path, overwrite: bool) -> None:
    """``--out`` is a new folder, an empty one, or (with ``overwrite``) a comparison folder
    written before, holding nothing else (its three files are replaced); anything else is
    refused before anything is computed."""
    if out.suffix.lower() in (".md", ".json", ".html"):
        raise OutputDirError(
            f"--out {out}: names a folder (comparison.md, comparison.json and report.html are "
            "written into it), not a file"
        )
    require_folder_or_absent(out, "compare --out")
    if out.is_dir() and os.listdir(out) and dir_kind(out) != "compare":
        raise OutputDirError(
            f"{out}: not empty and not a comparison folder (it holds {describe_entries(out)}); "
            "choose another"
        )
    if out.is_dir() and dir_kind(out) == "compare":
        if not overwrite:
            raise OutputDirError(
                f"{out}: holds a comparison already; --overwrite replaces it, or choose another"
            )
        foreign = foreign_entries(out, LAYOUTS["compare"], ())
        if foreign:
            raise OutputDirError(
                f"{out}: a comparison folder that also holds {', '.join(foreign)}; choose another"
            )


def compare(
    paths: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    audio: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Compare the folders ``paths`` (see the module docstring); returns the comparison's
    JSON (``rows`` the side-by-side table, ``paired`` the tests, None for one folder) and
    writes it into ``out`` when given (a comparison folder already there only with
    ``overwrite``).

    Raises:
        ConfigError: a folder is not an evaluated model or a cross-validation.
        genre_jax.paired.CompareError: the folders scored different songs.
        OutputDirError: ``out`` is a file or a folder of something else.
    """
    from genre_jax.reports import comparison_markdown, paired_markdown

    paths = [Path(p) for p in paths]
    _require_inputs(paths, out, seed, resamples)
    if out is not None:
        _require_out(Path(out), overwrite)
    names = model_names(paths)
    models = [read_outcomes(p, n) for p, n in zip(paths, names, strict=True)]
    result: dict[str, Any] = {"rows": summary_rows(paths), "paired": None}
    if len(models) > 1:
        result["paired"] = compare_outcomes(models, resamples=resamples, seed=seed)
    markdown = comparison_markdown(result["rows"])
    if result["paired"] is not None:
        markdown += "\n" + paired_markdown(result["paired"])
    result["markdown"] = markdown
    if out is not None:
        from genre_jax.report_html import write_page
        from genre_jax.report_pages import compare_page

        out = Path(out)
        page = compare_page(result, models, audio=audio)  # before anything is written
        mark_dir(out, "compare")
        atomic_write_json(
            out / "comparison.json", {k: v for k, v in result.items() if k != "markdown"}
        )
        atomic_write_bytes(out / "comparison.md", markdown.encode())
        write_page(out / "report.html", page)
        log(f"Wrote {out / 'comparison.md'}, comparison.json and report.html")
    return result
