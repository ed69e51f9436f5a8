"""Orbax checkpoints of a run: the latest training state and the best model, with JSON metadata.

``<run>/checkpoints/latest/<epoch>/`` holds everything needed to resume (parameters, BatchNorm
statistics, optimiser state) and ``<run>/checkpoints/best/<epoch>/`` only the model state of the
epoch with the lowest validation loss, which is all evaluation and prediction restore. Each step
also stores a JSON item (model name, configs, feature hash, genres, library versions, epoch,
metrics, history so far). Orbax writes each step under a temporary name and renames it when
complete, so a killed process never leaves a step that restores half-written.

One digest binds a step to its run (:mod:`genre_jax.binding`): the metadata records the
SHA-256 of the arrays (``state_sha256``), of the run's ``config.json`` as canonical JSON
(``config_sha256``, of its identity view) and of each of its top-level keys
(``config_keys_sha256``), and ``binding_sha256`` over the array digest and the canonical JSON
of all the rest of the metadata. A restore refuses an edited
metadata file (genres, model, settings), arrays that are not the recorded ones, a
``config.json`` edited since (naming the field), and series or step folders that are symbolic
links (another run's checkpoints). Checkpoints older than the binding restore through
:func:`genre_jax.legacy.check_unbound_meta`. The SVM's sidecar (:mod:`genre_jax.models.svm`)
binds ``svm.skops`` the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from genre_jax import legacy
from genre_jax.binding import (  # re-exported: the checkpoint's errors and binding
    CheckpointError,
    bind,
    check_binding,
    check_config,
    read_run_config,
)
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.models import build_network
from genre_jax.resume import complete_steps


def state_digest(state: Any) -> str:
    """SHA-256 over every array of ``state``: its path, dtype, shape and bytes.

    Stored in each checkpoint's metadata and checked on restore, so a truncated or altered
    array is an error rather than silently different predictions.
    """

    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_meta(meta: Any, where: Path, config_path: Path) -> None:
    """The checks of a step that need no arrays: its binding and the run's config.json (of a
    checkpoint without a binding: :func:`genre_jax.legacy.check_unbound_meta`)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: metadata is not a JSON object; not a checkpoint of ours")
    config = read_run_config(config_path, where) if config_path.is_file() else None
    if "binding_sha256" not in meta:
        legacy.check_unbound_meta(meta, config, where)
        return
    check_binding(meta, "state_sha256", config, where)
    check_config(meta, config, config_path, where)


def _verify(state: Any, meta: dict[str, Any], where: Path) -> None:
    expected = meta.get("state_sha256")
    if expected is None:
        raise CheckpointError(f"{where}: metadata has no state digest; not a checkpoint of ours")
    if state_digest(state) != expected:
        raise CheckpointError(
            f"{where}: the arrays do not match their digest (tampered or corrupt)"
        )


def _refuse_links(directory: Path) -> None:
    """Refuse a series folder (``checkpoints/best``), the ``checkpoints`` folder above it, or a
    step folder or item inside, that is a symbolic link: it would serve another run's model."""
    paths = [directory.parent, directory]
    if directory.is_dir() and not directory.is_symlink() and not directory.parent.is_symlink():
        for step in sorted(directory.iterdir()):
            paths.append(step)
            if step.is_dir() and not step.is_symlink():
                paths += sorted(step.iterdir())
    link = next((path for path in paths if path.is_symlink()), None)
    if link is not None:
        raise CheckpointError(f"{link} is a symbolic link; a run's checkpoints must be its own")


def _manager(directory: Path, create: bool = True) -> ocp.CheckpointManager:
    """A manager keeping one step; ``create=False`` for readers (nothing is made or saved)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=create)
    return ocp.CheckpointManager(directory.absolute(), options=options)


class RunCheckpoints:
    """The two checkpoint series of a training run (async saves; call :meth:`close`).

    Each saved step's metadata is bound to the run's ``config.json`` as it is at that moment
    (:func:`bind`); a restore refuses a step of another run or edited since.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        root = self.run_dir / "checkpoints"
        for series in ("latest", "best", "partial"):
            _refuse_links(root / series)
        self.latest = _manager(root / "latest")
        self.best = _manager(root / "best")
        self._partial: ocp.CheckpointManager | None = None  # made when first needed
        self._failed = False
        self._quiet = _QuietOrbaxThreads()
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).addFilter(self._quiet)
        _ignore_closed_loop_callbacks()

    @contextlib.contextmanager
    def _writing(self, epoch: int | None, what: str | None = None) -> Iterator[None]:
        """Turn a failed write (a full disk, a read-only folder) into one CheckpointError that
        says which checkpoint is still whole; orbax's own threads would print tracebacks."""
        try:
            yield
        except (OSError, ValueError, RuntimeError) as error:
            reason = _write_failure(error)
            if reason is None:
                raise
            self._failed = True
            kept = complete_steps(self.run_dir / "checkpoints" / "latest")
            whole = (
                f"the checkpoint of epoch {max(kept)} is intact"
                if kept
                else "no checkpoint was complete yet"
            )
            if what is None:
                what = f"the checkpoint of epoch {epoch}" if epoch is not None else "checkpoints"
            raise CheckpointError(
                f"{self.run_dir}: cannot write {what} ({reason}); {whole}; free space and "
                "resume with --resume"
            ) from None

    def _bound(self, state: Any, meta: dict[str, Any]) -> dict[str, Any]:
        meta = {**meta, "state_sha256": state_digest(state)}
        return bind(meta, self.run_dir / "config.json", "state_sha256")

    def _save(
        self,
        manager: ocp.CheckpointManager,
        epoch: int,
        state: Any,
        meta: dict[str, Any],
        what: str | None = None,
    ) -> None:
        meta = self._bound(state, meta)
        with self._writing(epoch, what):
            manager.save(
                epoch,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )

    def save_latest(self, epoch: int, state: Any, meta: dict[str, Any]) -> None:
        self._save(self.latest, epoch, state, meta)

    def save_best(self, epoch: int, model_state: Any, meta: dict[str, Any]) -> None:
        self._save(self.best, epoch, model_state, meta)

    def latest_epoch(self) -> int | None:
        return self.latest.latest_step()

    @property
    def partial(self) -> ocp.CheckpointManager:
        """The series of checkpoints inside an epoch (``checkpoints/partial``, its step the
        global optimiser step): a streamed run's ``checkpoint_steps``."""
        if self._partial is None:
            self._partial = _manager(self.run_dir / "checkpoints" / "partial")
        return self._partial

    def save_partial(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Save the state after global step ``step``, inside an epoch."""
        self._save(self.partial, step, state, meta, f"the checkpoint after step {step}")

    def latest_partial(self) -> int | None:
        """The global step of the newest checkpoint inside an epoch, if any was written."""
        if not (self.run_dir / "checkpoints" / "partial").is_dir():
            return None
        return self.partial.latest_step()

    def restore_partial(self, template: Any) -> tuple[Any, dict[str, Any]]:
        return _restore(self.partial, template, self.run_dir)

    def restore_latest(self, template: Any) -> tuple[Any, dict[str, Any]]:
        """The state and metadata of the latest epoch (its ``metrics_log`` always there:
        :func:`genre_jax.legacy.upgrade_latest_meta`)."""
        state, meta = _restore(self.latest, template, self.run_dir)
        return state, legacy.upgrade_latest_meta(meta)

    def restore_best(self, template: Any) -> tuple[Any, dict[str, Any]]:
        return _restore(self.best, template, self.run_dir)

    def close(self) -> None:
        """Wait for pending asynchronous saves, then release the managers.

        After a failed write (already raised as a :class:`CheckpointError`) the managers are
        still released, what they raise again is not raised twice, and orbax's abandoned
        tasks stay quiet until the process ends.
        """
        try:
            managers = [self.latest, self.best] + ([self._partial] if self._partial else [])
            for manager in managers:
                guard = contextlib.suppress(Exception) if self._failed else self._writing(None)
                with guard:
                    manager.wait_until_finished()
                    manager.close()
        finally:
            if not self._failed:  # after a failure orbax's abandoned tasks still report later
                for name in _NOISY_LOGGERS:
                    logging.getLogger(name).removeFilter(self._quiet)


_NOISY_LOGGERS = ("absl", "asyncio")


class _QuietOrbaxThreads(logging.Filter):
    """Drops the errors (with tracebacks) that orbax's saving threads log while a run saves,
    and asyncio's "Task exception was never retrieved" for orbax's tasks: orbax also raises
    each of them to the save or the wait, where :class:`RunCheckpoints` reports it in one
    line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        text = record.getMessage() + repr(record.args)
        return not ("orbax" in record.pathname or "orbax" in text)


def _ignore_closed_loop_callbacks() -> None:
    """When a write fails, tensorstore still completes the writes orbax gave up on and calls
    back into orbax's closed event loop, in the background, before the failure reaches the
    caller and after; Python reports each callback as an unraisable ``RuntimeError: Event
    loop is closed``. From the first checkpoint of a run on, those (and only those) are
    dropped."""
    previous = sys.unraisablehook
    if getattr(previous, "_genre_jax", False):
        return

    def hook(unraisable: Any) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook._genre_jax = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def _write_failure(error: BaseException) -> str | None:
    """The operating system's reason a checkpoint write failed, or None when ``error`` is not
    a failed write (orbax reports some as ValueError with the errno in its text)."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    match = _OS_ERROR_CODE.search(str(error))
    return os.strerror(int(match.group(1))) if match else None


def _restore(
    manager: ocp.CheckpointManager, template: Any, run_dir: Path
) -> tuple[Any, dict[str, Any]]:
    directory = Path(str(manager.directory))
    _refuse_links(directory)
    step = manager.latest_step()
    if step is None:
        raise CheckpointError(f"{manager.directory}: no checkpoint")
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
            ),
        )
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise CheckpointError(f"{manager.directory}/{step}: cannot restore ({error})") from error
    where = directory / str(step)
    _check_meta(restored["meta"], where, run_dir / "config.json")
    _verify(restored["state"], restored["meta"], where)
    return restored["state"], restored["meta"]


def abstract_model_state(
    model_name: str, n_features: int, n_classes: int, config: TrainConfig
) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, shape-only state) of a network, the template a restore fills in."""
    model = nnx.eval_shape(
        lambda: build_network(model_name, config.model_settings, n_features, n_classes)
    )
    graphdef, state = nnx.split(model)
    return graphdef, state


def load_model(run_dir: str | Path) -> tuple[nnx.Module, dict[str, Any]]:
    """The best network of a finished run, from its checkpoint alone (no optimiser state).

    Returns the model (in evaluation mode: call it with ``train=False``) and the checkpoint's
    metadata (model name, train and feature configs, genres, epoch, metrics), verified against
    its binding and the run's ``config.json`` before the network is built from it.
    """
    run_dir = Path(run_dir)
    directory = run_dir / "checkpoints" / "best"
    _refuse_links(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoints/best (was the run trained?)")
    manager = _manager(directory, create=False)
    try:
        meta_step = manager.latest_step()
        if meta_step is None:
            raise CheckpointError(f"{directory}: no checkpoint")
        only_meta = ocp.args.Composite(meta=ocp.args.JsonRestore())
        try:
            meta = manager.restore(meta_step, args=only_meta)["meta"]
        except (ValueError, KeyError, TypeError, OSError) as error:
            raise CheckpointError(
                f"{directory}/{meta_step}: cannot read its metadata ({error})"
            ) from error
        _check_meta(meta, directory / str(meta_step), run_dir / "config.json")
        try:
            config = TrainConfig.from_json(meta["train_config"])
            FeatureConfig.from_json(meta["feature_config"])
        except (KeyError, ConfigError, TypeError) as error:
            raise CheckpointError(f"{directory}: metadata unreadable ({error})") from error
        graphdef, template = abstract_model_state(
            meta["model"], meta["n_features"], len(meta["genres"]), config
        )
        state, meta = _restore(manager, template, run_dir)
    finally:
        manager.close()
    _check_finite(state, directory)
    return nnx.merge(graphdef, state), meta


def _check_finite(state: Any, where: Path) -> None:
    for leaf in jax.tree.leaves(state):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise CheckpointError(f"{where}: checkpoint holds NaN or infinite values")
