"""Training a network: the loop over epochs.

:func:`fit` runs epochs (:mod:`genre_jax.step`: one pure jitted step, a whole epoch as one
``lax.scan``; :mod:`genre_jax.streamed_epochs`: an epoch read from the store batch by batch),
fetches each epoch's metrics once, validates, keeps the best weights (early stopping on
validation loss restores them), guards against a NaN loss, checkpoints every epoch (orbax,
:mod:`genre_jax.checkpoint`) and resumes from the latest checkpoint. The optimiser and its
schedule are :mod:`genre_jax.optimizer`'s.

The data arrive as :class:`~genre_jax.splits.SplitArrays` (the split's segments, with the
seed's time-flip doubling), put on the device once, or as a
:class:`~genre_jax.streaming.StreamedSplit` read from the store.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from genre_jax import kernels
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.inference import make_predict
from genre_jax.models import build_network
from genre_jax.optimizer import has_pretrained, learning_rate_schedule, make_optimizer
from genre_jax.parallel import DATA_AXIS, check_batch, replicate
from genre_jax.splits import SplitArrays
from genre_jax.step import evaluate_logits, make_train_epoch, predict_rows
from genre_jax.streamed_epochs import inside_saver, make_streamed_epoch, restore_inside
from genre_jax.streaming import StreamedSplit


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN or infinite loss); the last good checkpoint, if any epoch
    finished, is kept."""


@dataclass
class FitResult:
    model_state: Any
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    seconds: float
    # Where ``seconds`` went, this process's epochs only (a resumed run's earlier ones are not
    # in it), in seconds: ``setup`` (state, data to the device, a checkpoint restored),
    # ``epochs`` and ``validation`` (per epoch: its training steps, the first compiling them,
    # and its validation prediction), ``logging`` (metrics.jsonl, TensorBoard) and
    # ``checkpoints`` (the best state copied, both checkpoints written).
    timing: dict[str, Any] = field(default_factory=dict)


TIMING_FIELDS = ("step", "learning_rate", "seconds", "samples_per_second")


def history_of(records: list[dict[str, float]]) -> list[dict[str, float]]:
    """The history (``history.json``, a checkpoint's ``history``) of ``metrics.jsonl``'s
    records: each epoch's losses and accuracies, without its step and timing."""
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def epoch_driver(config: TrainConfig) -> str:
    """The configured epoch driver, or for ``auto`` the one measured fastest for the model."""
    if config.epoch_driver != "auto":
        return config.epoch_driver
    # On CPU, XLA runs its own convolutions' gradients inside a loop body many times slower
    # (measured for melstat), while the GRU's recurrence and the seed CNN (whose CPU
    # convolutions avoid XLA's kernel-gradient convolution) gain from the single scan: each
    # spec names the driver measured faster for it on CPU.
    return config.spec.cpu_epoch_driver if kernels.active() == "fast" else "scan"


def init_state(
    config: TrainConfig,
    n_features: int,
    n_classes: int,
    x_train: np.ndarray | None = None,
    steps_per_epoch: int = 1,
    log: Callable[[str], None] = print,
) -> tuple[nnx.GraphDef, dict, optax.GradientTransformation]:
    """(graphdef, training state, optimiser) of a fresh network.

    A network with a fixed input standardisation (``fit_input_statistics``) takes it from
    ``x_train``, the training segments; one with pretrained layers (``load_pretrained``) is
    given their published weights; ``steps_per_epoch`` sets the length of a schedule.
    Settings for pretrained layers are refused, naming them, for a network without any.
    """
    model = build_network(
        config.model, config.model_settings, n_features, n_classes, seed=config.seed
    )
    if x_train is not None and hasattr(model, "fit_input_statistics"):
        model.fit_input_statistics(x_train)
    if hasattr(model, "load_pretrained"):
        model.load_pretrained(log)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    pretrained = has_pretrained(params)
    given = config.given(PRETRAINED_SETTINGS)
    if given and not pretrained:
        raise ConfigError(
            f"train setting(s) {', '.join(f'{n}={getattr(config, n)}' for n in given)}: model "
            f"{config.model!r} has no pretrained layers for them to apply to"
        )
    tx = make_optimizer(config, steps_per_epoch, pretrained)
    return graphdef, {"params": params, "rest": rest, "opt": tx.init(params)}, tx


PRETRAINED_SETTINGS = ("freeze_epochs", "pretrained_lr_scale")


def check_fit_settings(config: TrainConfig, frames: int, coefficients: int) -> None:
    """Refuse settings that do not fit the features or each other, naming the setting."""
    if config.select == "last" and config.patience:
        raise ConfigError(
            f"train settings select='last' and patience={config.patience}: early stopping "
            "selects by validation loss; set patience=0 to keep the last epoch"
        )
    if config.specaug_masks and config.specaug_time >= frames:
        raise ConfigError(
            f"train setting specaug_time={config.specaug_time}: must be below the {frames} "
            "frames of a segment"
        )
    if config.specaug_masks and config.specaug_freq >= coefficients:
        raise ConfigError(
            f"train setting specaug_freq={config.specaug_freq}: must be below the "
            f"{coefficients} coefficients per frame"
        )


def effective_batch(batch_size: int, examples: int, mesh: Mesh | None = None) -> int:
    """The batch a step runs: ``batch_size``, or for a training set smaller than that the
    whole set (rounded up to a multiple of the mesh's devices). Every batch is padded to this
    size and masked, so a batch larger than the data would only add padding: 100,000 on 300
    examples asked for tens of GB for the same gradient."""
    devices = 1 if mesh is None else mesh.shape[DATA_AXIS]
    return min(batch_size, -(-max(examples, 1) // devices) * devices)


def model_state_of(state: dict) -> Any:
    """The model's full state (parameters + statistics), the form checkpoints/best hold."""
    return nnx.merge_state(state["params"], state["rest"])


def fit(
    config: TrainConfig,
    data: SplitArrays | StreamedSplit,
    n_classes: int,
    *,
    checkpoints: Any | None = None,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    on_restore: Callable[[list[dict[str, float]]], None] | None = None,
    mesh: Mesh | None = None,
) -> FitResult:
    """Train a network on ``data``; checkpoint every epoch; early stopping restores the best.

    With ``resume``, the latest checkpoint (state, history, early-stopping counters) is
    restored first and training continues from the next epoch. ``on_epoch`` gets each
    finished epoch's record with its step, learning rate and timing (what
    :mod:`genre_jax.metrics` writes); ``on_restore`` gets the records of the epochs a resumed
    checkpoint holds, before training goes on (an empty list for a fresh run). With a ``mesh`` (see
    :mod:`genre_jax.parallel`), state and data are replicated and every batch is split over
    the mesh's devices; the global batch stays ``config.batch_size``. A
    :class:`~genre_jax.streaming.StreamedSplit` is read from the store batch by batch
    (:func:`make_streamed_epoch`; each process reads its slice of each batch) instead of put
    on the devices: the same batches, keys and steps.
    """
    started = time.perf_counter()
    if mesh is not None:
        check_batch(config.batch_size, mesh)
    check_fit_settings(config, *data.x_train.shape[1:])
    config = dataclasses.replace(
        config, batch_size=effective_batch(config.batch_size, len(data.y_train), mesh)
    )
    steps_per_epoch = math.ceil(len(data.y_train) / config.batch_size)
    graphdef, state, tx = init_state(
        config, data.x_train.shape[-1], n_classes, data.x_train, steps_per_epoch
    )
    streamed = isinstance(data, StreamedSplit)
    driver = epoch_driver(config)
    make_epoch = make_streamed_epoch if streamed else make_train_epoch
    epoch_fns = {}  # by whether the epoch keeps pretrained layers frozen: built when first run

    def epoch_fn_of(epoch: int) -> Callable:
        frozen = epoch < config.freeze_epochs
        if frozen not in epoch_fns:
            epoch_fns[frozen] = make_epoch(
                graphdef, tx, config.batch_size, driver, mesh, config, frozen
            )
        return epoch_fns[frozen]

    eval_batch = max(config.batch_size, 64)
    if mesh is not None:
        eval_batch = -(-eval_batch // mesh.size) * mesh.size
    predict = make_predict(graphdef, eval_batch, mesh)
    key = order_key = jax.random.key(config.seed)
    learning_rate = learning_rate_schedule(config, steps_per_epoch)
    records: list[dict[str, float]] = []  # the history with steps and timing: metrics.jsonl
    best = {"loss": math.inf, "epoch": -1, "wait": 0}
    best_state = None
    if resume and checkpoints is not None and checkpoints.latest_epoch() is not None:
        state, saved = checkpoints.restore_latest(state)
        best = saved["early_stopping"]
        records = saved["metrics_log"]
        best_state, _ = checkpoints.restore_best(jax.tree.map(np.asarray, model_state_of(state)))
    inside = None  # (next batch, totals) of an epoch a streamed run checkpointed inside
    if resume and streamed and checkpoints is not None and config.checkpoint_steps:
        inside, state = restore_inside(checkpoints, state, len(records))
    if on_restore is not None:
        on_restore(records)
    x_train, y_train, x_val = data.x_train, data.y_train, data.x_val
    if mesh is not None:
        state, key = replicate((state, key), mesh)
        if not streamed:
            x_train, y_train, x_val = replicate((x_train, y_train, x_val), mesh)
    elif not streamed:
        x_train, y_train = jax.device_put(x_train), jax.device_put(y_train)
        x_val = jax.device_put(x_val)
    stopped = bool(config.patience and best["wait"] >= config.patience)  # a finished run
    timing: dict[str, Any] = {"setup": time.perf_counter() - started, "epochs": []}
    timing |= {"validation": [], "logging": 0.0, "checkpoints": 0.0}
    for epoch in range(len(records), 0 if stopped else config.epochs):
        epoch_started = time.perf_counter()
        if streamed:
            saver = inside_saver(checkpoints, config, meta, epoch, steps_per_epoch, records, best)
            state, train_metrics = epoch_fn_of(epoch)(
                state, x_train, y_train, np.int32(epoch), key, order_key, inside, saver
            )
            inside = None
        else:
            state, train_metrics = epoch_fn_of(epoch)(state, x_train, y_train, np.int32(epoch), key)
        train_metrics = {k: float(v) for k, v in train_metrics.items()}
        validation_started = time.perf_counter()
        timing["epochs"].append(validation_started - epoch_started)
        if not math.isfinite(train_metrics["loss"]):
            kept = (
                f"the last good checkpoint (epoch {len(records)}) is kept"
                if records and checkpoints is not None
                else "no checkpoint was written (no epoch finished)"
            )
            raise TrainingError(
                f"epoch {epoch + 1}: training loss is {train_metrics['loss']} (learning rate "
                f"{config.learning_rate:g}); stopped, {kept}"
            )
        current = model_state_of(state)
        if len(data.y_val):
            logits = predict_rows(predict, current, x_val, mesh, 16 * eval_batch)
            val = evaluate_logits(logits, data.y_val)
        else:
            val = {"loss": math.nan, "accuracy": math.nan}
        record = {
            "epoch": epoch + 1,
            "loss": train_metrics["loss"],
            "accuracy": train_metrics["accuracy"],
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
        }
        seconds = time.perf_counter() - epoch_started
        timing["validation"].append(seconds - timing["epochs"][-1])
        step = (epoch + 1) * steps_per_epoch
        rate = learning_rate(step - 1) if callable(learning_rate) else learning_rate
        records.append(
            {
                **record,
                "step": step,
                "learning_rate": float(rate),
                "seconds": round(seconds, 4),
                "samples_per_second": round(len(data.y_train) / seconds, 2),
            }
        )
        # Without validation data there is nothing to select on: the latest epoch is the best.
        improved = (
            best_state is None
            or not len(data.y_val)
            or config.select == "last"
            or val["loss"] < best["loss"]
        )
        saving_started = time.perf_counter()
        if improved:
            best = {"loss": val["loss"], "epoch": epoch + 1, "wait": 0}
            best_state = jax.tree.map(lambda a: np.array(a, copy=True), current)
        else:
            best["wait"] += 1
        if on_epoch is not None:  # first: a line of metrics.jsonl is on disk before the
            logging_started = time.perf_counter()
            on_epoch(records[-1])  # checkpoint, so a kill in between loses no finished epoch
            logged = time.perf_counter() - logging_started
            timing["logging"] += logged
            saving_started += logged  # not a checkpoint's time
        if checkpoints is not None:
            info = {**(meta or {}), "epoch": epoch + 1, "metrics": record}
            if improved:
                checkpoints.save_best(epoch + 1, best_state, info)
            checkpoints.save_latest(
                epoch + 1,
                state,
                {
                    **info,
                    "history": history_of(records),
                    "metrics_log": records,
                    "early_stopping": best,
                },
            )
        timing["checkpoints"] += time.perf_counter() - saving_started
        if config.patience and best["wait"] >= config.patience:
            stopped = True
            break
    return FitResult(
        model_state=best_state,
        history=history_of(records),
        best_epoch=best["epoch"],
        stopped_early=stopped,
        seconds=time.perf_counter() - started,
        timing=timing,
    )
