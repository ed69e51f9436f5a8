"""Where a cross-validation's folds are: the layout of its repeats and folds, and the folds of a
finished one (:func:`fold_runs`, which ``compare`` and the report page read).

One partition (the layout of folders written before repeats) keeps ``OUT/fold-{i}``; R
partitions, split seeds ``s .. s+R-1``, put each fold at ``OUT/split-seed-{s}/fold-{i}``. An
``experiment.json`` written before repeats is one repeat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.fileio import JSONFileError, read_json_object
from genre_jax.output_dirs import dir_kind
from genre_jax.settings import SEED_MAX


def fold_config(config: TrainConfig, fold: int, split_seed: int | None = None) -> TrainConfig:
    """The training settings of fold ``fold`` (``split=kfold`` with that test fold), of the
    partition made with ``split_seed`` (default: the config's own)."""
    seed = config.split_seed if split_seed is None else split_seed
    return dataclasses.replace(config, split="kfold", fold=fold, split_seed=seed)


@dataclasses.dataclass(frozen=True)
class FoldRun:
    """One fold of a cross-validation folder: the partition's split seed, which repeat it is
    (0 for the first split seed), the fold, its run directory (an ensemble's, for several
    models) and the name of the report the cross-validation reads there."""

    split_seed: int
    repeat: int
    fold: int
    run_dir: Path
    report_name: str


def report_name(window_hop: float | None) -> str:
    """The fold report a cross-validation reads: ``report.json``, or with ``window_hop`` the
    windowed one ``evaluate --window-hop`` writes (``report-hop0.5s.json``)."""
    return "report.json" if window_hop is None else f"report-hop{window_hop:g}s.json"


def check_repeats(repeats: int, split_seed: int) -> list[int]:
    """The split seeds of ``repeats`` repeated k-fold partitions starting at ``split_seed``:
    ``split_seed, split_seed + 1, ...``. Called before anything is written (a command
    preparing a store first may call it earlier still).

    Raises:
        ConfigError: ``repeats`` is not a whole number >= 1, or its last split seed passes
            the largest seed (:data:`genre_jax.settings.SEED_MAX`).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(
            f"--repeats {repeats!r}: not a whole number >= 1 (the k-fold partitions to run, "
            "one per split seed)"
        )
    if split_seed + repeats - 1 > SEED_MAX:
        raise ConfigError(
            f"--repeats {repeats}: with split_seed={split_seed} the last split seed would be "
            f"{split_seed + repeats - 1}, above the largest seed {SEED_MAX}"
        )
    return [split_seed + r for r in range(repeats)]


def fold_layout(
    out_dir: Path, split_seeds: Sequence[int], folds: int, window_hop: float | None
) -> list[FoldRun]:
    """Where each fold's run lives: ``OUT/fold-{i}`` for one partition (the layout of folders
    written before repeats), ``OUT/split-seed-{s}/fold-{i}`` for several; repeat by repeat."""
    nested = len(split_seeds) > 1
    return [
        FoldRun(
            seed,
            repeat,
            fold,
            (out_dir / f"split-seed-{seed}" if nested else out_dir) / f"fold-{fold}",
            report_name(window_hop),
        )
        for repeat, seed in enumerate(split_seeds)
        for fold in range(folds)
    ]


def saved_split_seeds(experiment: Mapping[str, Any], where: Path) -> list[int]:
    """The split seeds an ``experiment.json`` records: ``split_seeds``, or (a folder written
    before repeats, or of one) its members' ``split_seed`` alone."""
    members = experiment.get("members")
    train = next(iter(members.values()), None) if isinstance(members, dict) else None
    if not isinstance(train, dict) or not isinstance(train.get("split_seed"), int):
        raise ConfigError(f"{where}: lists no member's train settings with a split_seed")
    repeats = experiment.get("repeats", 1)
    seeds = experiment.get("split_seeds")
    if seeds is None and type(repeats) is int:
        seeds = [train["split_seed"] + r for r in range(repeats)]
    valid = isinstance(seeds, list) and all(type(s) is int for s in seeds)
    if not valid or not seeds or len(seeds) != repeats or seeds[0] != train["split_seed"]:
        raise ConfigError(
            f"{where}: repeats={repeats!r} and split_seeds={seeds!r} do not name one split "
            f"seed per repeat from split_seed={train['split_seed']}"
        )
    return seeds


def fold_runs(out_dir: str | Path) -> list[FoldRun]:
    """Every fold of the cross-validation folder ``out_dir``, repeat by repeat, fold by fold,
    each with the report the cross-validation reads (``compare`` finds the folds' reports
    here). Reads ``experiment.json``: one written before repeats is one repeat.

    Raises:
        ConfigError: ``out_dir`` is not a cross-validation folder (no readable
            ``experiment.json`` of one, or a marker of another kind), or a fold's report is
            missing (the cross-validation has not finished).
    """
    out_dir = Path(out_dir)
    path = out_dir / "experiment.json"
    kind = dir_kind(out_dir)
    if kind not in (None, "crossval"):
        raise ConfigError(f"{out_dir}: a genre-jax {kind} folder, not a cross-validation")
    if not path.is_file():
        raise ConfigError(f"{out_dir}: not a cross-validation folder (no experiment.json)")
    try:
        experiment = read_json_object(path)
    except JSONFileError as error:
        raise ConfigError(f"{path}: {error}") from None
    seeds = saved_split_seeds(experiment, path)
    train = next(iter(experiment["members"].values()))
    folds, hop = train.get("folds"), experiment.get("window_hop")
    if type(folds) is not int or folds < 2 or not (hop is None or isinstance(hop, int | float)):
        raise ConfigError(f"{path}: folds={folds!r}, window_hop={hop!r}: not a cross-validation's")
    runs = fold_layout(out_dir, seeds, folds, hop)
    for run in runs:
        if not (run.run_dir / run.report_name).is_file():
            raise ConfigError(
                f"{run.run_dir / run.report_name}: missing, so the cross-validation {out_dir} "
                "has not finished (run the same crossval command to continue it)"
            )
    return runs


def repeats_text(seeds: Sequence[int]) -> str:
    """``1 repeat (split seed 0)``, ``3 repeats (split seeds 0 to 2)``."""
    if len(seeds) == 1:
        return f"1 repeat (split seed {seeds[0]})"
    return f"{len(seeds)} repeats (split seeds {seeds[0]} to {seeds[-1]})"


def fold_text(run: FoldRun, repeats: int, folds: int | None = None) -> str:
    """``fold 2`` (``fold 3/5`` with ``folds``: counted from 1, as progress), prefixed by the
    split seed when there are several: ``split seed 1, fold 3/5``."""
    fold = f"fold {run.fold}" if folds is None else f"fold {run.fold + 1}/{folds}"
    return fold if repeats == 1 else f"split seed {run.split_seed}, {fold}"
