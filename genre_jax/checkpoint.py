"""Orbax checkpoints of a run: the latest training state and the best model, with JSON metadata.

``<run>/checkpoints/latest/<epoch>/`` holds everything needed to resume (parameters, BatchNorm
statistics, optimiser state) and ``<run>/checkpoints/best/<epoch>/`` only the model state of the
epoch with the lowest validation loss, which is all evaluation and prediction restore. Each step
also stores a JSON item (model name, configs, feature hash, genres, library versions, epoch,
metrics, history so far). Orbax writes each step under a temporary name and renames it when
complete, so a killed process never leaves a step that restores half-written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.models import build_network


class CheckpointError(ValueError):
    """A run has no usable checkpoint, or its checkpoint does not fit the model it names."""


def state_digest(state: Any) -> str:
    """SHA-256 over every array of ``state``: its path, dtype, shape and bytes.

    Stored in each checkpoint's metadata and checked on restore, so a truncated or altered
    array is an error rather than silently different predictions.
    """
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _verify(state: Any, meta: dict[str, Any], where: Path) -> None:
    expected = meta.get("state_sha256")
    if expected is None:
        raise CheckpointError(f"{where}: metadata has no state digest; not a checkpoint of ours")
    if state_digest(state) != expected:
        raise CheckpointError(
            f"{where}: the arrays do not match their digest (tampered or corrupt)"
        )


def _manager(directory: Path, create: bool = True) -> ocp.CheckpointManager:
    """A manager keeping one step; ``create=False`` for readers (nothing is made or saved)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=create)
    return ocp.CheckpointManager(directory.absolute(), options=options)


class RunCheckpoints:
    """The two checkpoint series of a training run (async saves; call :meth:`close`)."""

    def __init__(self, run_dir: str | Path) -> None:
        root = Path(run_dir) / "checkpoints"
        self.latest = _manager(root / "latest")
        self.best = _manager(root / "best")

    def save_latest(self, epoch: int, state: Any, meta: dict[str, Any]) -> None:
        meta = {**meta, "state_sha256": state_digest(state)}
        self.latest.save(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )

    def save_best(self, epoch: int, model_state: Any, meta: dict[str, Any]) -> None:
        meta = {**meta, "state_sha256": state_digest(model_state)}
        self.best.save(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(model_state), meta=ocp.args.JsonSave(meta)
            ),
        )

    def latest_epoch(self) -> int | None:
        return self.latest.latest_step()

    def restore_latest(self, template: Any) -> tuple[Any, dict[str, Any]]:
        return _restore(self.latest, template)

    def restore_best(self, template: Any) -> tuple[Any, dict[str, Any]]:
        return _restore(self.best, template)

    def close(self) -> None:
        """Wait for pending asynchronous saves, then release the managers."""
        for manager in (self.latest, self.best):
            manager.wait_until_finished()
            manager.close()


def _restore(manager: ocp.CheckpointManager, template: Any) -> tuple[Any, dict[str, Any]]:
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
    _verify(restored["state"], restored["meta"], Path(str(manager.directory)) / str(step))
    return restored["state"], restored["meta"]


def abstract_model_state(
    model_name: str, n_features: int, n_classes: int, config: TrainConfig
) -> tuple[nnx.GraphDef, Any]:
    """(graphdef, shape-only state) of a network, the template a restore fills in."""
    model = nnx.eval_shape(lambda: build_network(model_name, n_features, n_classes, config))
    graphdef, state = nnx.split(model)
    return graphdef, state


def load_model(run_dir: str | Path) -> tuple[nnx.Module, dict[str, Any]]:
    """The best network of a finished run, from its checkpoint alone (no optimiser state).

    Returns the model (in evaluation mode: call it with ``train=False``) and the checkpoint's
    metadata (model name, train and feature configs, genres, epoch, metrics).
    """
    directory = Path(run_dir) / "checkpoints" / "best"
    if not directory.is_dir():
        raise CheckpointError(f"{run_dir}: no checkpoints/best (was the run trained?)")
    manager = _manager(directory, create=False)
    try:
        meta_step = manager.latest_step()
        if meta_step is None:
            raise CheckpointError(f"{directory}: no checkpoint")
        meta = manager.restore(meta_step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]
        try:
            config = TrainConfig.from_json(meta["train_config"])
            FeatureConfig.from_json(meta["feature_config"])
        except (KeyError, ConfigError, TypeError) as error:
            raise CheckpointError(f"{directory}: metadata unreadable ({error})") from error
        graphdef, template = abstract_model_state(
            meta["model"], meta["n_features"], len(meta["genres"]), config
        )
        state, meta = _restore(manager, template)
    finally:
        manager.close()
    _check_finite(state, directory)
    return nnx.merge(graphdef, state), meta


def _check_finite(state: Any, where: Path) -> None:
    import jax.numpy as jnp

    for leaf in jax.tree.leaves(state):
        if not bool(jnp.all(jnp.isfinite(leaf))):
            raise CheckpointError(f"{where}: checkpoint holds NaN or infinite values")
