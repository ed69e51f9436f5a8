"""A training run from a feature store to a run directory (the ``genre-jax train`` command).

Run directory::

    config.json     the full resolved config (train + features), split, store, library versions
    labels.json     the genre names in index order
    history.json    per-epoch training and validation loss and accuracy
    summary.json    best epoch, its metrics, parameters, training time
    checkpoints/    orbax: latest/ (to resume) and best/ (to evaluate)   [cnn, gru]
    svm.skops       the fitted pipeline                                   [svm]
    plots/training_curves.png

Resume order: an existing run directory with ``--resume`` continues from its latest checkpoint
(the config must match, field by field); ``--overwrite`` starts it afresh; otherwise an existing
run is refused, never overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from genre_jax.config import ConfigError, TrainConfig, require_same
from genre_jax.fileio import (
    JSONFileError,
    OutputDirError,
    atomic_write_json,
    describe_entries,
    library_versions,
    mark_dir,
    read_json_object,
    remove_own_dir,
    require_folder_or_absent,
)
from genre_jax.models import MODEL_NAMES, is_network
from genre_jax.parallel import barrier, default_mesh, is_main_process
from genre_jax.splits import (
    Split,
    fault_filtered_split,
    seed_segment_split,
    song_kfold,
    song_split,
)
from genre_jax.store import FeatureStore, resolve_store


class RunDirError(OutputDirError):
    """A run directory cannot be used as asked (exists, or holds another run)."""


def make_split(store: FeatureStore, config: TrainConfig) -> Split:
    """The split ``config.split`` names, over the store's usable tracks (or its segments).

    Raises:
        ConfigError: the split cannot be made on this store (too many folds for a genre's
            songs, too many validation songs per genre, no published id among the tracks),
            naming the setting.
    """
    try:
        return _make_split(store, config)
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        settings = {
            "kfold": f"folds={config.folds}, val_per_genre={config.val_per_genre}",
            "song": f"split_seed={config.split_seed}",
        }.get(config.split, "")
        raise ConfigError(
            f"train setting split={config.split!r}{' (' + settings + ')' if settings else ''} "
            f"on store {store.path}: {error}"
        ) from None


def _make_split(store: FeatureStore, config: TrainConfig) -> Split:
    if config.split == "seed-leaky":
        return seed_segment_split(len(store), seed=config.split_seed)
    usable = np.array(
        [i for i, t in enumerate(store.manifest.tracks) if t.status == "ok"], dtype=np.int64
    )
    labels = store.track_labels[usable]
    if config.split == "song":
        local = song_split(labels, seed=config.split_seed)
    elif config.split == "kfold":
        folds = song_kfold(
            labels, k=config.folds, seed=config.split_seed, val_per_genre=config.val_per_genre
        )
        local = folds[config.fold]
    else:
        local = fault_filtered_split([store.manifest.tracks[i].id for i in usable])
    return Split(
        name=local.name,
        level=local.level,
        train=usable[local.train],
        val=usable[local.val],
        test=usable[local.test],
        leaky=local.leaky,
        missing=local.missing,
    )


def _prepare_run_dir(
    run_dir: Path, config: dict[str, Any], resume: bool, overwrite: bool, write: bool = True
) -> bool:
    """Make ``run_dir`` ready; return True when an earlier run is to be resumed.

    Every process checks; only the one with ``write`` (process 0) removes or writes files.
    ``overwrite`` removes only a run directory genre-jax wrote (:func:`remove_own_dir`).
    """
    existing = run_dir / "config.json"
    if existing.is_file():
        if overwrite:
            remove_own_dir(run_dir, "run", delete=write)
        elif resume:
            saved = _saved_run_config(existing)
            require_same(
                TrainConfig.from_json(config["train"]),
                TrainConfig.from_json(saved["train"]),
                f"run {run_dir} (train config)",
            )
            if saved["feature_hash"] != config["feature_hash"]:
                raise ConfigError(
                    f"run {run_dir}: feature_hash {saved['feature_hash']} of its store differs "
                    f"from {config['feature_hash']} of the store given"
                )
            return True
        else:
            raise RunDirError(
                f"{run_dir}: already holds a run; pass --resume to continue it or --overwrite "
                "to replace it"
            )
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunDirError(
            f"{run_dir}: not empty and not a run directory (it holds "
            f"{describe_entries(run_dir)}); choose another"
        )
    if write:
        mark_dir(run_dir, "run")
        atomic_write_json(run_dir / "config.json", config)
    return False


def _saved_run_config(path: Path) -> dict[str, Any]:
    """The config.json of a run to resume; one that genre-jax did not write is refused."""
    try:
        saved = read_json_object(path)
    except JSONFileError as error:
        raise RunDirError(f"{path} {error}, so the run cannot be resumed") from None
    if not {"train", "feature_hash"} <= set(saved):
        raise RunDirError(
            f"{path}: not the config of a genre-jax run (no 'train' and 'feature_hash'); "
            "the folder cannot be resumed"
        )
    if not isinstance(saved["train"], dict):
        raise RunDirError(f"{path}: its 'train' settings are not an object")
    try:
        TrainConfig.from_json(saved["train"])
    except (ConfigError, TypeError) as error:
        raise RunDirError(f"{path}: its train settings are invalid ({error})") from None
    return saved


def train_run(
    features: str | Path,
    run_dir: str | Path,
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``config.model`` on the store at ``features``; write everything to ``run_dir``.

    Returns the summary (also written as ``summary.json``).
    """
    if config.model not in MODEL_NAMES:
        raise ConfigError(f"train setting model={config.model!r}: one of {', '.join(MODEL_NAMES)}")
    run_dir = Path(run_dir)
    require_folder_or_absent(run_dir, "a run")
    store = FeatureStore.open(resolve_store(features))
    split = make_split(store, config)
    if not is_network(config.model):
        _refuse_network_settings(config)
    if config.model == "musicnnsvm":
        from genre_jax.models.musicnn import check_features

        check_features(store.config)
    if is_network(config.model) and len(split.val) == 0 and config.select != "last":
        raise ConfigError(
            "the split has no validation songs, which choosing the best epoch needs "
            "(select='best-val'); for split=kfold set val_per_genre >= 1, or keep the last "
            "epoch with select='last' and patience=0"
        )
    resolved = {
        "train": config.to_json(),
        "features": store.config.to_json(),
        "feature_hash": store.config.hash(),
        "store": str(store.path.resolve()),
        "data_fingerprint": store.info["data_fingerprint"],
        "split": split.to_json(),
        "genres": store.genres,
        "versions": library_versions(),
        "device": str(jax.devices()[0]),
    }
    main = is_main_process()
    resuming = _prepare_run_dir(run_dir, resolved, resume, overwrite, write=main)
    barrier("run-dir-ready")
    if main:
        atomic_write_json(run_dir / "labels.json", store.genres)
    if split.leaky:
        log("warning: the seed's segment-level split puts segments of one song in train and test;")
        log("         its accuracy is inflated and kept only to reproduce the seed's numbers")
    if split.missing:
        log(f"{len(split.missing)} track(s) of the published split are missing: {split.missing}")
    from genre_jax.train import split_arrays

    doubled = config.time_flip and config.time_flip_mode == "double"
    if doubled and config.model == "statsvm":
        log("statsvm: no time flip (its statistics are the same for a reversed segment)")
        doubled = False
    data = split_arrays(store, split, doubled)
    flip = "random time flip" if config.time_flip and not doubled else "time flip"
    log(
        f"{config.model}: {len(data.y_train)} training examples "
        f"({'with' if config.time_flip else 'without'} {flip}), {len(data.y_val)} validation, "
        f"{len(data.y_test)} test; split {split.name}"
    )
    meta = {
        "model": config.model,
        "n_features": store.config.n_features,
        "genres": store.genres,
        "train_config": config.to_json(),
        "feature_config": store.config.to_json(),
        "feature_hash": store.config.hash(),
        "versions": resolved["versions"],
    }
    if is_network(config.model) and config.batch_size > len(data.y_train):
        log(
            f"batch_size {config.batch_size} is more than the {len(data.y_train)} training "
            "examples: each step takes them all"
        )
    if is_network(config.model):
        summary = _train_network(run_dir, config, data, meta, resuming, progress, log)
    else:
        summary = _train_svm(run_dir, config, data, log)
    summary = {"model": config.model, "split": split.name, **summary}
    if main:
        atomic_write_json(run_dir / "summary.json", summary)
    return summary


def _refuse_network_settings(config: TrainConfig) -> None:
    """The SVM trains once on fixed arrays: settings of the network step do not apply."""
    defaults = TrainConfig()
    names = ("lr_schedule", "label_smoothing", "specaug_masks", "select")
    given = [n for n in names if getattr(config, n) != getattr(defaults, n)]
    if config.time_flip and config.time_flip_mode == "random":
        given.append("time_flip_mode")
    if given:
        raise ConfigError(
            f"train setting(s) {', '.join(given)}: apply to networks only, not model="
            f"{config.model!r} (its time flip doubles the training set: time_flip_mode='double')"
        )


def _train_network(
    run_dir: Path,
    config: TrainConfig,
    data: Any,
    meta: dict[str, Any],
    resuming: bool,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from genre_jax.checkpoint import RunCheckpoints
    from genre_jax.plots import training_curves
    from genre_jax.train import fit

    checkpoints = RunCheckpoints(run_dir)
    main = is_main_process()
    bar = _EpochBar(config.epochs, config.model, enabled=progress and main)
    try:
        with bar:
            result = fit(
                config,
                data,
                len(meta["genres"]),
                checkpoints=checkpoints,
                meta=meta,
                resume=resuming,
                on_epoch=bar.update,
                mesh=default_mesh(),
            )
    finally:
        checkpoints.close()
    if main:
        atomic_write_json(run_dir / "history.json", result.history)
        training_curves(
            result.history,
            run_dir / "plots" / "training_curves.png",
            title=f"{config.model.upper()} training ({run_dir.name})",
        )
    best = result.history[result.best_epoch - 1]
    parameters = int(sum(np.size(x) for x in jax.tree.leaves(result.model_state)))
    log(
        f"best epoch {result.best_epoch}/{len(result.history)}: validation accuracy "
        f"{100 * best['val_accuracy']:.2f} %, loss {best['val_loss']:.4f} "
        f"({'early stop' if result.stopped_early else 'all epochs'}; {result.seconds:.1f} s)"
    )
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val_accuracy": best["val_accuracy"],
        "val_loss": best["val_loss"],
        "parameters": parameters,
        "train_seconds": round(result.seconds, 2),
    }


def _train_svm(
    run_dir: Path, config: TrainConfig, data: Any, log: Callable[[str], None]
) -> dict[str, Any]:
    from genre_jax.models.svm import (
        fit_svm,
        predict_labels,
        save_svm,
        stored_values,
        support_vector_count,
    )

    started = time.perf_counter()
    model = fit_svm(data.x_train, data.y_train, config)
    seconds = time.perf_counter() - started
    save_svm(model, run_dir / "svm.skops")
    train_acc = float(np.mean(predict_labels(model, data.x_train) == data.y_train))
    val_acc = (
        float(np.mean(predict_labels(model, data.x_val) == data.y_val))
        if len(data.y_val)
        else float("nan")
    )
    history = [{"epoch": 1, "accuracy": train_acc, "val_accuracy": val_acc}]
    atomic_write_json(run_dir / "history.json", history)
    vectors = support_vector_count(model)
    log(
        f"{config.model}: training accuracy {100 * train_acc:.2f} %, validation "
        f"{100 * val_acc:.2f} % ({vectors} support vectors; fit {seconds:.1f} s)"
    )
    width = model.named_steps["scale"].n_features_in_  # what the SVC reads
    return {
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "support_vectors": vectors,
        "parameters": stored_values(model, width),
        "train_seconds": round(seconds, 2),
    }


class _EpochBar:
    """A rich progress bar over epochs showing the latest loss and accuracy."""

    def __init__(self, epochs: int, name: str, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} epochs"),
                TextColumn("{task.fields[metrics]}"),
                TimeElapsedColumn(),
            )
            self.task = self.progress.add_task(f"train {name}", total=epochs, metrics="")

    def __enter__(self) -> _EpochBar:
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def update(self, record: dict[str, float]) -> None:
        if self.enabled:
            text = (
                f"loss {record['loss']:.3f} acc {100 * record['accuracy']:.1f}% | "
                f"val loss {record['val_loss']:.3f} acc {100 * record['val_accuracy']:.1f}%"
            )
            self.progress.update(self.task, completed=record["epoch"], metrics=text)
