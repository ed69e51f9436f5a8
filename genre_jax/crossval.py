"""Song-level k-fold cross-validation as one command and one report (``genre-jax crossval``).

Each fold is an ordinary training run (``split=kfold``, ``fold=i``): the folds are stratified by
genre over songs, so no song has segments on both sides, and ``val_per_genre`` songs per genre
of the training folds are held out for validation. Every fold is evaluated from its own run
directory, then the folds are summarised::

    OUT/
      experiment.json    the resolved settings, store, description and protocol
      fold-0/ ... fold-{k-1}/   run directories (train + evaluate, as the commands write them);
                        for an ensemble, the fold's ensemble with one member run inside each
      report.json        per-fold figures, mean and standard deviation, pooled confusion
      report.md          the same as a table
      features/          the feature store, when the command was given --data-dir
      plots/confusion_song_{counts,normalized}.png   summed over the folds

Repeated k-fold (``repeats=R > 1``): one k-fold partition per split seed ``s, s+1, ...,
s+R-1`` (``s`` the config's ``split_seed``), each fold an ordinary run with that split seed,
in ``OUT/split-seed-{s}/fold-{i}/`` instead of ``OUT/fold-{i}/``. One partition tests every
song once, so its folds' mean depends on how the songs happened to be dealt; the repeats
average that out and show how much it moves (:func:`fold_runs` lists the folds of a folder).

Means and standard deviations are over folds (all R x k of them), the standard deviation with
``ddof=0`` (the convention of the reference figures in ``shared/data/README.md``), with a 95 %
confidence interval of the mean by the corrected resampled t test; the report is written by
:mod:`genre_jax.crossval_report`. Running the same command
again continues a killed experiment: finished folds are kept, a fold killed during training
resumes from its latest checkpoint. It continues only on the songs it started on: the store's
data identity is recorded in ``experiment.json`` and every kept fold's songs are checked
(:mod:`genre_jax.identity`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from genre_jax import legacy
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.crossval_folds import (
    check_repeats,
    fold_config,
    fold_layout,
    fold_text,
    repeats_text,
    saved_split_seeds,
)
from genre_jax.crossval_report import FOLD_METRICS, fold_row, summarise
from genre_jax.ensemble import ensemble_name, make_ensemble
from genre_jax.evaluate import evaluate_run
from genre_jax.fileio import atomic_write_json, read_json
from genre_jax.identity import IdentityError, read_songs, require_identities, require_songs
from genre_jax.input_checks import check_against_features
from genre_jax.metrics import (
    METRICS_FILE,
    TENSORBOARD_DIR,
    MetricsLog,
    log_event,
    require_tensorboard,
)
from genre_jax.model_card import update_card
from genre_jax.output_dirs import (
    MARKER,
    OutputDirError,
    describe_entries,
    mark_dir,
    remove_own_dir,
    require_folder_or_absent,
)
from genre_jax.parallel import barrier, is_main_process
from genre_jax.prepare import prepare
from genre_jax.report_html import write_page
from genre_jax.report_pages import crossval_page
from genre_jax.runner import train_run
from genre_jax.settings import require_same
from genre_jax.splits import Split
from genre_jax.store import FeatureStore, resolve_store
from genre_jax.store_splits import grouped_by_artist, make_split
from genre_jax.windows import check_hop

FEATURES_DIR = "features"  # where ``crossval --data-dir`` prepares its store, inside OUT
CROSSVAL_SPLITS = ("kfold", "song")  # what k-fold cross-validation runs: folds of songs


def _prepare_out_dir(out_dir: Path, experiment: dict[str, Any], overwrite: bool) -> None:
    require_folder_or_absent(out_dir, "a cross-validation")
    saved_path = out_dir / "experiment.json"
    if saved_path.is_file() and not overwrite:
        saved = read_json(saved_path)
        seeds = saved_split_seeds(saved, saved_path)
        if seeds != experiment["split_seeds"]:
            raise ConfigError(
                f"cross-validation {out_dir}: holds {repeats_text(seeds)}, not "
                f"{repeats_text(experiment['split_seeds'])}; continuing would mix two "
                "experiments (--overwrite starts it afresh)"
            )
        if set(saved["members"]) != set(experiment["members"]):
            raise ConfigError(
                f"cross-validation {out_dir}: holds members {sorted(saved['members'])}, not "
                f"{sorted(experiment['members'])} (--overwrite starts it afresh)"
            )
        for name, train in experiment["members"].items():
            require_same(
                TrainConfig.from_json(train),
                TrainConfig.from_json(saved["members"][name]),
                f"cross-validation {out_dir} ({name} train settings; --overwrite starts afresh)",
            )
        if saved.get("window_hop") != experiment.get("window_hop"):
            raise ConfigError(
                f"cross-validation {out_dir}: evaluated with window_hop="
                f"{saved.get('window_hop')}, not {experiment.get('window_hop')} (--overwrite "
                "starts afresh)"
            )
        if saved.get("member_features") != experiment.get("member_features"):
            raise ConfigError(
                f"cross-validation {out_dir}: its members read other features than the stores "
                "given now (--overwrite starts afresh)"
            )
        if saved["feature_hash"] != experiment["feature_hash"]:
            raise ConfigError(
                f"cross-validation {out_dir}: its store had feature_hash {saved['feature_hash']}, "
                f"the store given has {experiment['feature_hash']} (--overwrite starts afresh)"
            )
        _require_same_data(out_dir, saved, experiment)
        return
    if saved_path.is_file() and overwrite:
        remove_own_dir(out_dir, "crossval", delete=is_main_process(), keep=(FEATURES_DIR,))
    elif out_dir.is_dir() and set(os.listdir(out_dir)) - {FEATURES_DIR, MARKER}:
        raise OutputDirError(
            f"{out_dir}: not empty and not a cross-validation folder (it holds "
            f"{describe_entries(out_dir)}); choose another"
        )
    if is_main_process():
        mark_dir(out_dir, "crossval")
        atomic_write_json(saved_path, experiment)


def _require_same_data(out_dir: Path, saved: dict[str, Any], experiment: dict[str, Any]) -> None:
    """A cross-validation continues only on the data its folds were made on: the same data
    identity (:mod:`genre_jax.identity`: the same songs in the same order, each member's store
    for a mixed ensemble; an older folder: :func:`genre_jax.legacy.require_same_crossval_store`)."""
    if "data_identity" not in saved:
        legacy.require_same_crossval_store(out_dir, saved, experiment)
        return
    for key in ("data_identity", "member_data_identities"):
        if saved.get(key) != experiment.get(key):
            raise IdentityError(
                f"cross-validation {out_dir}: its folds were made on other songs (data identity "
                f"{saved.get(key)}) than the store given, {experiment['store']} (data identity "
                f"{experiment.get(key)}), so continuing would average folds of two datasets; "
                "give the store it was started on, or --overwrite to start afresh"
            )


def _require_fold_songs(run_dir: Path, store: FeatureStore, config: TrainConfig, what: str) -> None:
    """A fold kept from an earlier, interrupted cross-validation (``what``: ``fold 2``, ``split
    seed 1, fold 2``) was trained on the songs this fold's split (its own fold and split seed,
    in ``config``) gives now (:func:`genre_jax.identity.require_songs`)."""
    saved = read_json(run_dir / "config.json")
    if "songs" in saved:
        require_songs(
            read_songs(run_dir, saved["songs"]),
            store,
            make_split(store, config),
            f"{what} ({run_dir})",
            hint="--overwrite starts the cross-validation afresh",
        )


def member_names(configs: Sequence[TrainConfig]) -> list[str]:
    """Folder names of ensemble members: the model name, numbered where one repeats."""
    models = [c.model for c in configs]
    return [m if models.count(m) == 1 else f"{m}-{i}" for i, m in enumerate(models)]


def prepare_stores(
    data_dir: str | Path,
    out_dir: str | Path,
    configs: Iterable[FeatureConfig],
    *,
    features_dir: str | Path | None = None,
    subset: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """The feature stores of ``crossval --data-dir``: one per member's feature settings
    (``configs``, in member order), prepared from ``data_dir`` into ``features_dir`` (default
    ``out_dir/features``, :data:`FEATURES_DIR`). Members of the same settings share one store;
    each store is prepared when its settings are first reached (``subset``: FMA's)."""
    features_dir = features_dir or Path(out_dir) / FEATURES_DIR
    prepared: dict[FeatureConfig, Path] = {}  # one store per distinct feature setting
    paths = []
    for config in configs:
        if config not in prepared:
            store = prepare(data_dir, features_dir, config, progress=progress, subset=subset)
            prepared[config] = store.path
        paths.append(prepared[config])
    return paths


def crossval(
    features: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    config: TrainConfig | Sequence[TrainConfig],
    *,
    description: str = "",
    protocol: str = "",
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    tensorboard: bool = False,
    window_hop: float | None = None,
    repeats: int = 1,
    audio: bool = True,
) -> dict[str, Any]:
    """Train and evaluate ``config.model`` on every fold of the store at ``features``.

    ``provenance`` (the command line's: experiment file, its description and protocol, the
    settings given beside it) goes into the report and every fold's run; without one,
    ``description`` and ``protocol`` describe the experiment. ``metrics.jsonl`` in
    ``out_dir`` gets each fold's headline figures and then their mean; with ``tensorboard``
    every fold's run writes its event files (``fold-i/tensorboard/``) and the folds' figures
    go to ``out_dir/tensorboard/`` too.

    With several configs, each is trained on every fold (``fold-i/<model>/``) and the fold's
    model is their ensemble (``fold-i/`` itself, :mod:`genre_jax.ensemble`): the mean of their
    probabilities. ``features`` is then one store for all, or one per config (members that
    read different features; the stores must hold the same songs, and every fold's test songs
    are checked to be the same by their audio). With ``window_hop``, every fold is evaluated with
    overlapping windows (:func:`genre_jax.evaluate.evaluate_run`; ``audio=False``: its report
    pages without excerpts of the misclassified songs). Returns the report (also
    ``report.json`` and ``report.md`` in ``out_dir``).

    With ``repeats`` R > 1, the k folds are run for each split seed ``config.split_seed + r``
    (r < R) in ``split-seed-{seed}/fold-i/``, and the report gives the figures over all R x k
    folds and per repeat (:func:`genre_jax.crossval_report.summarise`). A folder continues
    only with the repeats it was started with.
    """
    configs = [config] if isinstance(config, TrainConfig) else list(config)
    paths = [features] if isinstance(features, (str, Path)) else list(features)
    if len(paths) == 1:
        paths = paths * len(configs)
    if len(paths) != len(configs):
        raise ConfigError(
            f"crossval: {len(paths)} feature stores for {len(configs)} models; give one, or one "
            "per model"
        )
    first = configs[0]
    if first.folds < 2:
        raise ConfigError(f"train setting folds={first.folds}: cross-validation needs >= 2")
    split_seeds = check_repeats(repeats, first.split_seed)
    for member in configs:
        if member.split not in CROSSVAL_SPLITS:
            raise ConfigError(
                f"train setting split={member.split!r}: crossval runs song-level k-fold "
                f"(split='kfold', or 'song', its default); a fixed split ({member.split}) is "
                "trained with `genre-jax train` and scored with `genre-jax evaluate`"
            )
    if window_hop is not None:
        check_hop(window_hop)
    for other in configs[1:]:
        shared = ("folds", "split_seed", "group_by")
        if any(getattr(other, name) != getattr(first, name) for name in shared):
            raise ConfigError("ensemble members: folds, split_seed and group_by must be the same")
    ensemble = len(configs) > 1
    names = member_names(configs)
    models = [c.model for c in configs]
    model = ensemble_name({"member_models": models}) if ensemble else first.model
    stores = [FeatureStore.open(resolve_store(p)) for p in paths]
    for member, member_store in zip(configs, stores, strict=True):
        check_against_features(fold_config(member, 0), member_store.config)
    store = stores[0]
    out_dir = Path(out_dir)
    provenance = {
        "experiment_file": None,
        "description": description,
        "protocol": protocol,
        "given": {},
        **(provenance or {}),
    }
    experiment = {
        "description": provenance["description"],
        "protocol": provenance["protocol"],
        "experiment_file": provenance["experiment_file"],
        "given": provenance["given"],
        "data_dir": store.manifest.root,
        "model": model,
        "members": {n: fold_config(c, 0).to_json() for n, c in zip(names, configs, strict=True)},
        "features": store.config.to_json(),
        "feature_hash": store.config.hash(),
        "store": str(store.path.resolve()),
        "data_identity": require_identities(store, f"cross-validation {out_dir}"),
        "window_hop": window_hop,
        "repeats": repeats,
        "split_seeds": split_seeds,
    }
    if any(s.config != store.config for s in stores):
        experiment["member_features"] = {
            n: s.config.to_json() for n, s in zip(names, stores, strict=True)
        }
        experiment["member_stores"] = {
            n: str(s.path.resolve()) for n, s in zip(names, stores, strict=True)
        }
        experiment["member_data_identities"] = {
            n: require_identities(s, f"cross-validation {out_dir}")
            for n, s in zip(names, stores, strict=True)
        }
    plan = fold_layout(out_dir, split_seeds, first.folds, window_hop)
    for run in plan:  # every fold's split, of every repeat, must exist before anything is written
        tests = [
            test_songs(s, make_split(s, fold_config(m, run.fold, run.split_seed)))
            for s, m in zip(stores, configs, strict=True)
        ]
        for name, songs in zip(names[1:], tests[1:], strict=True):
            if songs != tests[0]:
                raise ConfigError(
                    f"crossval: {fold_text(run, repeats)} of {name} tests {len(songs)} songs, "
                    f"{len(songs - tests[0])} of them not among the {len(tests[0])} of "
                    f"{names[0]}; members must be tested on the same songs (their stores must "
                    "hold the same tracks)"
                )
    artist = grouped_by_artist(store, fold_config(first, 0))
    experiment["grouped_by"] = "artist" if artist else "song"
    if tensorboard:
        require_tensorboard()  # refused now, before any fold, when the extra is missing
    _prepare_out_dir(out_dir, experiment, overwrite)
    barrier("crossval-ready")
    if is_main_process():
        MetricsLog(out_dir / METRICS_FILE).restart([])  # the folds' lines, written anew
        if tensorboard:
            (out_dir / TENSORBOARD_DIR).mkdir(exist_ok=True)
    rows = []
    for run in plan:
        fold, fold_dir, step = run.fold, run.run_dir, run.repeat * first.folds + run.fold
        where = fold_text(run, repeats, first.folds)  # "fold 2/5", "split seed 1, fold 2/5"
        for name, member in zip(names, configs, strict=True):
            run_dir = fold_dir / name if ensemble else fold_dir
            settings = fold_config(member, fold, run.split_seed)
            if (run_dir / "summary.json").is_file():
                store_of = stores[names.index(name)]
                _require_fold_songs(run_dir, store_of, settings, fold_text(run, repeats))
                log(f"{where}: {name} trained earlier, kept ({run_dir})")
                continue
            log(f"{where}: training {name} in {run_dir}")
            train_run(
                stores[names.index(name)].path,
                run_dir,
                settings,
                resume=(run_dir / "config.json").is_file(),  # a fold killed while training
                progress=progress,
                log=log,
                provenance=provenance,
                tensorboard=tensorboard,
            )
            barrier(f"crossval-fold-{step}-{name}")
        if is_main_process():
            if ensemble and not (fold_dir / "config.json").is_file():
                make_ensemble([fold_dir / n for n in names], fold_dir)
            if not (fold_dir / run.report_name).is_file():
                evaluate_run(fold_dir, window_hop=window_hop, audio=audio)
            seed, repeat = run.split_seed, run.repeat
            rows.append(fold_row(fold, fold_dir, run.report_name, split_seed=seed, repeat=repeat))
            figures = {k: rows[-1][k] for k in FOLD_METRICS}
            which = {"split_seed": run.split_seed, "repeat": run.repeat} if repeats > 1 else {}
            log_event(out_dir, "fold", {"fold": fold, **which, **figures}, step=step)
            log(
                f"{where}: song accuracy "
                f"{100 * rows[-1]['song_accuracy']:.2f} %, segment "
                f"{100 * rows[-1]['segment_accuracy']:.2f} %"
            )
    if not is_main_process():
        return {}
    report = summarise(rows, experiment, out_dir)
    write_page(out_dir / "report.html", crossval_page(out_dir, report, audio=audio))
    update_card(out_dir, log)
    log_event(
        out_dir,
        "crossval",
        {**{f"mean_{k}": v for k, v in report["mean"].items()},
         **{f"std_{k}": v for k, v in report["std"].items()}},
        step=len(plan),
    )  # fmt: skip
    mean, std = report["mean"]["song_accuracy"], report["std"]["song_accuracy"]
    if repeats == 1:
        log(f"{model}, {first.folds}-fold: song accuracy {100 * mean:.2f} % +- {100 * std:.2f}")
    else:
        low, high = report["interval"]["song_accuracy"]
        log(
            f"{model}, {repeats} x {first.folds}-fold: song accuracy {100 * mean:.2f} % +- "
            f"{100 * std:.2f} (95 % interval {100 * low:.2f} to {100 * high:.2f} %)"
        )
    return report


def test_songs(store: FeatureStore, split: Split) -> set[tuple[str, str]]:
    """The test songs of ``split`` on ``store`` as (genre, identity of the audio)."""
    tracks = store.manifest.tracks
    indices = split.part_tracks("test", store.tracks)
    return {(tracks[int(i)].genre, str(tracks[int(i)].content)) for i in indices}
