"""A training run from a feature store to a run directory (the ``genre-jax train`` command).

Run directory::

    config.json     the full resolved config (train + features), split, store, the songs of
                    each part (their digests), library versions
    songs.json      the songs of each part of the split by content (genre_jax.identity)
    labels.json     the genre names in index order
    history.json    per-epoch training and validation loss and accuracy
    metrics.jsonl   the same as each epoch ends, with step, learning rate and timing
    tensorboard/    event files of the same scalars                      [--tensorboard]
    summary.json    best epoch, its metrics, parameters, training time
    checkpoints/    orbax: latest/ (to resume) and best/ (to evaluate)   [networks]
    svm.skops, svm.json   the fitted pipeline and its binding sidecar     [pipelines]
    plots/training_curves.png

Nothing here knows a model by name: the model's spec (:mod:`genre_jax.models`) says which
family trains it (:mod:`genre_jax.fit_network` over :mod:`genre_jax.train` for networks,
:mod:`genre_jax.fit_pipeline` for pipelines), which features it needs and whether reversed
copies of segments teach it anything.

Resume order: an existing run directory with ``--resume`` continues from its latest checkpoint
(the config must match, field by field, and the store given must split into the songs the run
was trained on, part by part: :func:`genre_jax.identity.require_songs`); ``--overwrite``
starts it afresh; otherwise an existing run is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from genre_jax import kernels, legacy
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.embedding_cache import store_cache
from genre_jax.fileio import JSONFileError, atomic_write_json, library_versions, read_json_object
from genre_jax.fit_network import train_network
from genre_jax.fit_pipeline import train_pipeline
from genre_jax.identity import Songs, read_songs, require_songs, songs_of, write_songs
from genre_jax.input_checks import check_against_features
from genre_jax.metrics import RunLog, require_tensorboard
from genre_jax.model_card import update_card
from genre_jax.models import NETWORK
from genre_jax.output_dirs import (
    OutputDirError,
    describe_entries,
    mark_dir,
    remove_own_dir,
    require_folder_or_absent,
)
from genre_jax.parallel import barrier, is_main_process
from genre_jax.resume import RESUMED_KEY, epochs_done, record_resume, resume_changes
from genre_jax.splits import Split
from genre_jax.store import FeatureStore, resolve_store
from genre_jax.store_splits import make_split, split_arrays
from genre_jax.streaming import choose_feed, streamed_split


class RunDirError(OutputDirError):
    """A run directory cannot be used as asked (exists, or holds another run)."""


def _prepare_run_dir(
    run_dir: Path,
    config: dict[str, Any],
    resume: bool,
    overwrite: bool,
    write: bool = True,
    *,
    songs: Songs,
    store: FeatureStore,
    split: Split,
) -> bool:
    """Make ``run_dir`` ready; return True when an earlier run is to be resumed.

    A run resumed must be given the songs it was trained on, part by part
    (:func:`genre_jax.identity.require_songs`). Every process checks; only the one with
    ``write`` (process 0) removes or writes files. ``overwrite`` removes only a run directory
    genre-jax wrote (:func:`remove_own_dir`).
    """
    existing = run_dir / "config.json"
    if existing.is_file():
        if overwrite:
            remove_own_dir(run_dir, "run", delete=write)
        elif resume:
            saved = _saved_run_config(existing)
            if saved["feature_hash"] != config["feature_hash"]:
                raise ConfigError(
                    f"run {run_dir}: feature_hash {saved['feature_hash']} of its store differs "
                    f"from {config['feature_hash']} of the store given"
                )
            _require_run_songs(run_dir, saved, store, split)
            _continue_run(run_dir, saved, TrainConfig.from_json(config["train"]), write)
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
        write_songs(run_dir, songs)
        atomic_write_json(run_dir / "config.json", config)
    return False


def _continue_run(run_dir: Path, saved: dict[str, Any], given: TrainConfig, write: bool) -> None:
    """Check what the resume of the run whose ``config.json`` is ``saved`` changes (run
    options, epochs: :func:`genre_jax.resume.resume_changes`) and record it there."""
    done = epochs_done(run_dir)
    what = f"run {run_dir}"
    changes = resume_changes(TrainConfig.from_json(saved["train"]), given, done, what)
    if not changes:
        return
    legacy.require_changes_allowed(saved, changes, what)
    if write:
        atomic_write_json(run_dir / "config.json", record_resume(saved, given, done, changes))


def saved_train_config(run_dir: str | Path) -> TrainConfig | None:
    """The train settings of the run in ``run_dir`` (what ``train --resume`` starts from, the
    options given on its command line on top), or ``None`` when it holds no run."""
    path = Path(run_dir) / "config.json"
    return TrainConfig.from_json(_saved_run_config(path)["train"]) if path.is_file() else None


RESUME_HINT = "resume it on the store it was trained on, or start afresh with --overwrite"


def _require_run_songs(
    run_dir: Path, saved: dict[str, Any], store: FeatureStore, split: Split
) -> None:
    """The run to resume is given the songs it was trained on: what its ``config.json`` and
    ``songs.json`` record (:func:`genre_jax.identity.require_songs`); a run that records no
    songs, its own store (:func:`genre_jax.legacy.require_same_store`)."""
    what = f"run {run_dir}"
    if legacy.without_songs(saved):
        legacy.require_same_store(what, saved, store, split, RESUME_HINT)
        return
    require_songs(read_songs(run_dir, saved["songs"]), store, split, what, hint=RESUME_HINT)


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
    provenance: dict[str, Any] | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train ``config.model`` on the store at ``features``; write everything to ``run_dir``.

    ``provenance`` (the experiment file, its description and protocol, the settings given
    beside it) is kept in ``config.json`` for the reports. Every epoch (or a pipeline's fit)
    is a line of ``metrics.jsonl`` as it finishes, and with ``tensorboard`` TensorBoard
    scalars under ``tensorboard/`` (:mod:`genre_jax.metrics`). Returns the summary (also
    written as ``summary.json``).
    """
    spec = config.spec
    run_dir = Path(run_dir)
    require_folder_or_absent(run_dir, "a run")
    if tensorboard:
        require_tensorboard()
    store = FeatureStore.open(resolve_store(features))
    check_against_features(config, store.config)
    split = make_split(store, config)
    network = spec.family == NETWORK
    if len(split.train) == 0:
        raise ConfigError(
            f"split {split.name} on store {store.path} has no training songs (e.g. a dataset "
            "whose own split marks every track 'test'); nothing to train on"
        )
    if network and len(split.val) == 0 and config.select != "last":
        raise ConfigError(
            "the split has no validation songs, which choosing the best epoch needs "
            "(select='best-val'); for split=kfold set val_per_genre >= 1, or keep the last "
            "epoch with select='last' and patience=0"
        )
    songs = songs_of(store, split, f"run {run_dir}")
    resolved = {
        "train": config.to_json(),
        "features": store.config.to_json(),
        "feature_hash": store.config.hash(),
        "store": str(store.path.resolve()),
        "data_fingerprint": store.info["data_fingerprint"],
        "songs": songs.record(),
        RESUMED_KEY: [],
        "split": split.to_json(),
        "genres": store.genres,
        "versions": library_versions(),
        "device": str(jax.devices()[0]),
    }
    with _kernels_of(config):
        resolved["kernels"] = kernels.active()  # what computed it (config.train: what was asked)
    if provenance:
        resolved["provenance"] = provenance
    main = is_main_process()
    existed = run_dir.exists()
    resuming = _prepare_run_dir(
        run_dir, resolved, resume, overwrite, write=main, songs=songs, store=store, split=split
    )
    try:
        with _kernels_of(config):
            return _train_in_run_dir(
                run_dir, config, store, split, resuming, progress, log, tensorboard, resolved
            )
    except Exception:
        if main and not resuming:
            _discard_unstarted_run(run_dir, existed)
        raise


def _train_in_run_dir(
    run_dir: Path,
    config: TrainConfig,
    store: FeatureStore,
    split: Split,
    resuming: bool,
    progress: bool,
    log: Callable[[str], None],
    tensorboard: bool,
    resolved: dict[str, Any],
) -> dict[str, Any]:
    """:func:`train_run` once the run directory is ready: the split's data, the model's family
    trained, the summary written."""
    spec = config.spec
    network = spec.family == NETWORK
    main = is_main_process()
    barrier("run-dir-ready")
    if main:
        atomic_write_json(run_dir / "labels.json", store.genres)
    if split.leaky:
        log("warning: the seed's segment-level split puts segments of one song in train and test;")
        log("         its accuracy is inflated and kept only to reproduce the seed's numbers")
    if split.missing:
        log(f"{len(split.missing)} track(s) of the published split are missing: {split.missing}")

    doubled = config.time_flip and config.time_flip_mode == "double"
    if doubled and spec.time_reversal_invariant:
        log(f"{config.model}: no time flip (its output is the same for a reversed segment)")
        doubled = False
    data = streamed_split(store, split, doubled)
    feed = (
        choose_feed(config.feed_asked, data.x_train.nbytes + data.x_val.nbytes)
        if network
        else "device"
    )
    if feed == "device":
        data = split_arrays(store, split, doubled)
    flip = "random time flip" if config.time_flip and not doubled else "time flip"
    log(
        f"{config.model}: {len(data.y_train)} training examples "
        f"({'with' if config.time_flip else 'without'} {flip}), {len(data.y_val)} validation, "
        f"{len(data.y_test)} test; split {split.name}"
        + ("; streamed from the store" if feed == "stream" else "")
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
    if network and config.batch_size > len(data.y_train):
        log(
            f"batch_size {config.batch_size} is more than the {len(data.y_train)} training "
            "examples: each step takes them all"
        )
    run_log = RunLog(run_dir, tensorboard=tensorboard) if main else None
    try:
        if network:
            summary = train_network(run_dir, config, data, meta, resuming, progress, log, run_log)
        else:
            if run_log is not None:
                run_log.restart([])
            with store_cache(store):  # a frozen network embeds each segment once per store
                summary = train_pipeline(
                    run_dir, config, data, log, on_fit=run_log.epoch if run_log else None
                )
    finally:
        if run_log is not None:
            run_log.close()
    summary = {"model": config.model, "split": split.name, **summary}
    if main:
        atomic_write_json(run_dir / "summary.json", summary)
        update_card(run_dir, log)
    return summary


def _kernels_of(config: TrainConfig) -> contextlib.AbstractContextManager:
    """The kernels the run asks for (:func:`genre_jax.kernels.use`); ``auto`` leaves the mode
    as it is (``$GENRE_JAX_KERNELS``, else the backend's)."""
    return contextlib.nullcontext() if config.kernels == "auto" else kernels.use(config.kernels)


def _discard_unstarted_run(run_dir: Path, existed: bool) -> None:
    """Remove what a fresh run wrote when it failed before anything was kept (no checkpoint,
    no fitted pipeline), so that the corrected command is not refused as "already holds a
    run"; a folder that existed (empty) before is left, empty."""
    latest = run_dir / "checkpoints" / "latest"
    if (latest.is_dir() and any(latest.iterdir())) or (run_dir / "svm.skops").exists():
        return
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for entry in run_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
