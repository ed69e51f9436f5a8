"""Training: pure jitted steps, whole epochs as one ``lax.scan``, early stopping, checkpoints.

Sections:

1. Pure functions: loss, one optimiser step, one epoch (shuffled on the device, last batch padded
   and masked so nothing recompiles), batched prediction.
2. The loop: per-epoch metrics fetched once, early stopping on validation loss that restores the
   best weights, NaN guard, orbax checkpoints every epoch, resume, history and plots.

The data arrive as :class:`~genre_jax.splits.SplitArrays` (the split's segments, with the
seed's time-flip doubling), put on the device once.

Keys: ``key = jax.random.key(seed)``; epoch ``e`` shuffles with ``fold_in(fold_in(key, 1), e)``
and global step ``s`` drops out with ``fold_in(fold_in(key, 2), s)``, so a resumed run draws
exactly what an uninterrupted one does.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from genre_jax import kernels
from genre_jax.augment import mixup, random_time_flip, smoothed_targets, spec_augment
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.extraction import prefetch
from genre_jax.inference import make_predict
from genre_jax.models import build_network
from genre_jax.models.layers import Pretrained
from genre_jax.parallel import DATA_AXIS, batch_sharded, check_batch, replicate, shard_batch
from genre_jax.splits import SplitArrays
from genre_jax.streaming import Rows, StreamedSplit

# --- 1. pure functions ----------------------------------------------------------------------------


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int) -> float | optax.Schedule:
    """The learning rate: a constant, or warmup + cosine decay over the schedule's span
    (``epochs``, or ``schedule_epochs``; after it the rate stays at its end)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    total = max(1, config.schedule_span * steps_per_epoch)
    end = 0.01 * config.learning_rate
    warmup = min(config.warmup_steps, total - 1)
    if warmup == 0:
        return optax.cosine_decay_schedule(config.learning_rate, total, alpha=0.01)
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total, end)


ADAM_EPSILON = 1e-7  # Keras's


def is_pretrained(variable: Any) -> bool:
    return isinstance(variable, Pretrained)


def map_variables(fn: Callable, *states: Any) -> Any:
    """``fn`` of each variable (not each array) of ``states`` (``nnx.State`` trees alike)."""
    return jax.tree.map(fn, *states, is_leaf=lambda v: isinstance(v, nnx.Variable))


def pretrained_labels(params: Any) -> Any:
    """``"pretrained"`` or ``"new"`` for each parameter of ``params`` (an ``nnx.State``), by
    whether it is a :class:`~genre_jax.models.layers.Pretrained` parameter."""
    return map_variables(lambda v: "pretrained" if is_pretrained(v) else "new", params)


def has_pretrained(params: Any) -> bool:
    return "pretrained" in jax.tree.leaves(pretrained_labels(params))


def make_optimizer(
    config: TrainConfig, steps_per_epoch: int = 1, pretrained: bool = False
) -> optax.GradientTransformation:
    """Adam with Keras's epsilon (1e-7) at the configured learning rate (or schedule).

    With ``pretrained`` (the network has :class:`~genre_jax.models.layers.Pretrained`
    parameters), an ``optax.multi_transform`` of two Adams: the new parameters at the
    learning rate, the pretrained ones at ``pretrained_lr_scale`` times it, their Adam
    starting only after ``freeze_epochs`` epochs (before that their updates are zero and
    their optimiser state untouched, ``optax.transforms.conditionally_mask``).
    """
    learning_rate = learning_rate_schedule(config, steps_per_epoch)
    if not pretrained:
        return optax.adam(learning_rate, eps=ADAM_EPSILON)
    scale = config.pretrained_lr_scale
    if callable(learning_rate):
        scaled = lambda step: scale * learning_rate(step)  # noqa: E731
    else:
        scaled = scale * learning_rate
    frozen_steps = config.freeze_epochs * steps_per_epoch
    thawed = optax.transforms.conditionally_mask(
        optax.scale_by_adam(eps=ADAM_EPSILON), lambda count: count >= frozen_steps
    )
    transforms = {
        "new": optax.adam(learning_rate, eps=ADAM_EPSILON),
        "pretrained": optax.chain(thawed, optax.scale_by_learning_rate(scaled)),
    }
    return optax.multi_transform(transforms, pretrained_labels)


def masked_cross_entropy(
    logits: jax.Array, labels: jax.Array, mask: jax.Array, smoothing: float = 0.0
) -> jax.Array:
    """Mean categorical cross-entropy over the rows where ``mask`` is True.

    With ``smoothing`` > 0 the targets are smoothed (:func:`genre_jax.augment.smoothed_targets`).
    """
    if smoothing:
        targets = smoothed_targets(labels, logits.shape[-1], smoothing)
        losses = optax.softmax_cross_entropy(logits, targets)
    else:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _masked_mean(losses, mask)


def _masked_mean(losses: jax.Array, mask: jax.Array) -> jax.Array:
    weights = mask.astype(losses.dtype)
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def training_loss(
    logits: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    smoothing: float = 0.0,
    mixed: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """:func:`masked_cross_entropy`, or with ``mixed = (partner labels, proportion)`` of a
    mixup batch (:func:`genre_jax.augment.mixup`) the same mix of the two targets' losses."""
    if mixed is None:
        return masked_cross_entropy(logits, labels, mask, smoothing)
    partners, share = mixed
    n_classes = logits.shape[-1]
    targets = share[:, None] * smoothed_targets(labels, n_classes, smoothing) + (
        1.0 - share[:, None]
    ) * smoothed_targets(partners, n_classes, smoothing)
    return _masked_mean(optax.softmax_cross_entropy(logits, targets), mask)


def augment_batch(x: jax.Array, key: jax.Array, config: TrainConfig | None) -> jax.Array:
    """The configured training-time augmentation of one batch (none without a config)."""
    if config is None:
        return x
    if config.time_flip and config.time_flip_mode == "random":
        x = random_time_flip(x, jax.random.fold_in(key, 0))
    if config.specaug_masks:
        x = spec_augment(
            x,
            jax.random.fold_in(key, 1),
            config.specaug_masks,
            config.specaug_time,
            config.specaug_freq,
        )
    return x


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    mesh: Mesh | None = None,
    config: TrainConfig | None = None,
    frozen: bool = False,
) -> Callable:
    """``step(state, x, y, mask, key) -> (state, (loss_sum, correct))``, a pure function.

    ``state`` is ``{"params", "rest", "opt"}``: trainable parameters, the other model state
    (BatchNorm statistics) and the optimiser state. Gradients flow to the parameters only.
    With a ``mesh``, the batch is split along its ``data`` axis (the state is replicated);
    the computation is the same as on one device. With a ``config``, its augmentation
    (random time flip, SpecAugment, mixup) and label smoothing apply; dropout keeps drawing
    from ``key`` itself, augmentation from keys folded out of it. With ``frozen``, the
    pretrained parameters (:class:`~genre_jax.models.layers.Pretrained`) take no gradient and
    come out of the step as they went in, bit for bit.
    """
    smoothing = config.label_smoothing if config is not None else 0.0
    alpha = config.mixup if config is not None else 0.0

    def loss_fn(params: Any, rest: Any, x: jax.Array, y: jax.Array, mask: jax.Array, key: Any):
        if frozen:
            params = map_variables(
                lambda v: jax.lax.stop_gradient(v) if is_pretrained(v) else v, params
            )
        mixed = None
        if alpha:
            x, partners, share = mixup(x, y, jax.random.fold_in(key, 0x313C), alpha)
            mixed = (partners, share)
        model = nnx.merge(graphdef, params, rest, copy=True)  # fresh Variables in this trace
        logits = model(x, train=True, key=key, mask=mask)
        new_rest = nnx.state(model, nnx.Not(nnx.Param))
        return training_loss(logits, y, mask, smoothing, mixed), (logits, new_rest)

    def step(state: dict, x: jax.Array, y: jax.Array, mask: jax.Array, key: jax.Array):
        x, y, mask = (shard_batch(a, mesh) for a in (x, y, mask))
        x = augment_batch(x, jax.random.fold_in(key, 0x5EED), config)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (logits, rest)), grads = grad_fn(state["params"], state["rest"], x, y, mask, key)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        if frozen:  # exactly as they were (a zero update would turn -0.0 into 0.0)
            params = map_variables(
                lambda new, old: old if is_pretrained(old) else new, params, state["params"]
            )
        count = jnp.sum(mask)
        correct = jnp.sum((jnp.argmax(logits, -1) == y) & mask)
        return {"params": params, "rest": rest, "opt": opt}, (loss * count, correct)

    return step


def epoch_order(
    n: int, batch_size: int, epoch: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The rows of each batch of epoch ``epoch`` and which are real: ``(batches, batch_size)``
    int32 and bool. A permutation of ``n`` drawn from ``fold_in(fold_in(key, 1), epoch)``,
    the last batch padded with row 0, masked."""
    batches = math.ceil(n / batch_size)
    order = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 1), epoch), n)
    order = jnp.concatenate([order, jnp.zeros(batches * batch_size - n, order.dtype)])
    valid = jnp.arange(batches * batch_size) < n
    return order.reshape(batches, -1), valid.reshape(batches, -1)


def make_batch_step(step: Callable) -> Callable:
    """``batch_step(state, totals, x, y, valid, i, epoch, batches, key)``: ``step`` on batch
    ``i`` of epoch ``epoch`` with its dropout key ``fold_in(fold_in(key, 2), epoch * batches +
    i)``, the batch's loss sum and correct count added to ``totals``."""

    def batch_step(state, totals, x, y, valid, i, epoch, batches, key):
        step_key = jax.random.fold_in(jax.random.fold_in(key, 2), epoch * batches + i)
        state, (loss_sum, correct) = step(state, x, y, valid, step_key)
        return state, (totals[0] + loss_sum, totals[1] + correct)

    return batch_step


def make_train_epoch(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    batch_size: int,
    driver: str = "scan",
    mesh: Mesh | None = None,
    config: TrainConfig | None = None,
    frozen: bool = False,
) -> Callable:
    """``epoch(state, x, y, epoch, key) -> (state, metrics)`` over device-resident data.

    Shuffles on the device, pads the last batch with masked rows (fixed shapes: no recompile)
    and returns mean loss and accuracy as device scalars, fetched by the caller once per
    epoch. The incoming ``state`` is donated. Two drivers run the same pure step:

    - ``"scan"``: the whole epoch is one jitted ``lax.scan`` (fastest for the GRU and the
      seed's CNN);
    - ``"steps"``: one jitted call per step, dispatched asynchronously with metrics kept on the
      device (fastest for melstat on CPU, where XLA runs its convolutions' gradients inside a
      loop body many times slower).

    ``frozen``: the steps of :func:`make_train_step` that leave pretrained parameters as they are.
    """
    step = make_train_step(graphdef, tx, mesh, config, frozen)
    batch_step = make_batch_step(step)

    def plan(n: int, epoch: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, int]:
        order, valid = epoch_order(n, batch_size, epoch, key)
        return order, valid, order.shape[0]

    def one_step(state, totals, x, y, order, valid, i, epoch, batches, key):
        rows = order[i]
        return batch_step(state, totals, x[rows], y[rows], valid[i], i, epoch, batches, key)

    def scan_epoch(state: dict, x: jax.Array, y: jax.Array, epoch: jax.Array, key: jax.Array):
        order, valid, batches = plan(x.shape[0], epoch, key)

        def body(carry: tuple, i: jax.Array) -> tuple[tuple, None]:
            state, totals = carry
            return one_step(state, totals, x, y, order, valid, i, epoch, batches, key), None

        zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        (state, totals), _ = jax.lax.scan(body, (state, zero), jnp.arange(batches))
        n = x.shape[0]
        return state, {"loss": totals[0] / n, "accuracy": totals[1] / n}

    if driver == "scan":
        return jax.jit(scan_epoch, donate_argnums=0)
    if driver != "steps":
        raise ValueError(f"epoch driver {driver!r}: 'scan' or 'steps'")

    plan_jit = jax.jit(lambda n, epoch, key: plan(n, epoch, key)[:2], static_argnums=0)
    step_jit = jax.jit(one_step, static_argnums=8, donate_argnums=(0, 1))

    def steps_epoch(state: dict, x: jax.Array, y: jax.Array, epoch: jax.Array, key: jax.Array):
        n = x.shape[0]
        order, valid = plan_jit(n, epoch, key)
        batches = order.shape[0]
        totals = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        for i in range(batches):
            state, totals = step_jit(
                state, totals, x, y, order, valid, np.int32(i), epoch, batches, key
            )
        return state, {"loss": totals[0] / n, "accuracy": totals[1] / n}

    return steps_epoch


def local_rows(batch_size: int, mesh: Mesh | None) -> slice:
    """The rows of each global batch this process's devices hold (all of them without a
    mesh): a contiguous slice, since the data mesh orders devices by process."""
    if mesh is None:
        return slice(0, batch_size)
    spans = sorted(
        (index[0].start or 0, batch_size if index[0].stop is None else index[0].stop)
        for index in batch_sharded(mesh).addressable_devices_indices_map((batch_size,)).values()
    )
    for (_, stop), (start, _) in itertools.pairwise(spans):
        if start != stop:
            raise ValueError(f"this process's rows of a batch are not contiguous: {spans}")
    return slice(spans[0][0], spans[-1][1])


STREAM_WINDOW_BYTES = 16 << 20
"""Bytes of training rows a streamed epoch reads for one jitted call of the ``scan`` driver
(a window of whole batches); a few windows are read ahead."""


def stream_window(batch_size: int, row_bytes: int, driver: str, checkpoint_steps: int = 0) -> int:
    """Batches per jitted call of a streamed epoch: 1 for the ``steps`` driver, else as many
    as :data:`STREAM_WINDOW_BYTES` of rows hold (at least 1), and no more than
    ``checkpoint_steps`` (when set: a checkpoint falls between two calls)."""
    if driver == "steps":
        return 1
    size = max(1, STREAM_WINDOW_BYTES // max(1, batch_size * row_bytes))
    return min(size, checkpoint_steps) if checkpoint_steps else size


def make_streamed_epoch(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    batch_size: int,
    driver: str = "scan",
    mesh: Mesh | None = None,
    config: TrainConfig | None = None,
    frozen: bool = False,
    *,
    workers: int = 2,
    depth: int = 2,
) -> Callable:
    """``epoch(state, x, y, epoch, key, order_key, resume=None, on_window=None) -> (state,
    metrics)`` over a streamed split.

    ``x`` is :class:`~genre_jax.streaming.Rows` (read on demand), ``y`` the labels in memory.
    The batches are those of :func:`make_train_epoch`'s epoch, in its order
    (:func:`epoch_order` of ``order_key``, the unreplicated training key), with its dropout
    keys (from ``key``) and the same step. The epoch goes a window of batches at a time
    (:func:`stream_window`): one jitted ``lax.scan`` over the window for the ``scan`` driver,
    one call per batch for ``steps``. Each process reads only its slice of every global batch
    (:func:`local_rows`), ``depth`` windows ahead on ``workers`` threads, and the window is
    assembled on the mesh from the processes' slices; no more than ``depth`` calls are in
    flight at a time. Metrics stay on the device; the incoming ``state`` is donated.

    ``on_window(next_batch, state, totals)`` is called after each window but the last (a
    checkpoint inside the epoch; with ``config.checkpoint_steps`` the windows are no longer
    than that); ``resume=(next_batch, totals)`` goes on from such a point.
    """
    batch_step = make_batch_step(make_train_step(graphdef, tx, mesh, config, frozen))

    def window(state, totals, xs, ys, vs, first, epoch, batches, key):
        def body(carry: tuple, inputs: tuple) -> tuple[tuple, None]:
            state, totals, i = carry
            state, totals = batch_step(state, totals, *inputs, i, epoch, batches, key)
            return (state, totals, i + 1), None

        (state, totals, _), _ = jax.lax.scan(body, (state, totals, first), (xs, ys, vs))
        return state, totals

    every = config.checkpoint_steps if config is not None else 0
    # The totals are not donated: the loop waits on those of an earlier call (below).
    window_jit = jax.jit(window, static_argnums=7, donate_argnums=0)
    step_jit = jax.jit(batch_step, static_argnums=7, donate_argnums=0)
    order_jit = jax.jit(epoch_order, static_argnums=(0, 1))
    mine = local_rows(batch_size, mesh)

    def to_global(array: np.ndarray, axis: int) -> Any:
        if mesh is None:
            return array
        shape = list(array.shape)
        shape[axis] = batch_size
        sharding = batch_sharded(mesh)
        if axis == 1:  # a window (batches, rows, ...): its rows split over the mesh
            spec = jax.sharding.PartitionSpec(None, DATA_AXIS)
            sharding = jax.sharding.NamedSharding(mesh, spec)
        return jax.make_array_from_process_local_data(sharding, array, tuple(shape))

    def epoch_fn(
        state: dict,
        x: Any,
        y: np.ndarray,
        epoch: Any,
        key: Any,
        order_key: Any,
        resume: tuple[int, Any] | None = None,
        on_window: Callable[[int, dict, Any], None] | None = None,
    ):
        n = len(x)
        order, valid = (np.asarray(a) for a in order_jit(n, batch_size, epoch, order_key))
        batches = order.shape[0]
        size = stream_window(batch_size, int(np.prod(x.shape[1:])) * 4, driver, every)
        first, totals = resume if resume is not None else (0, None)
        starts = range(first, batches, size)

        def read(start: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
            rows = order[start : start + size, mine]
            xs = x[rows.reshape(-1)].reshape(*rows.shape, *x.shape[1:])
            return start, xs, y[rows], valid[start : start + size, mine]

        if totals is None:
            totals = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        if mesh is not None:
            totals = replicate(totals, mesh)
        running: collections.deque = collections.deque()
        for start, xs, ys, vs in prefetch(read, starts, workers, depth):
            # Calls are dispatched asynchronously, each holding its window's rows until it
            # runs: with more than ``depth`` in flight, wait for the oldest, so that reading
            # cannot run ahead of the device by more than that (host memory stays bounded).
            while len(running) >= depth:
                jax.block_until_ready(running.popleft())
            if size == 1:
                xb, yb, vb = (to_global(a[0], 0) for a in (xs, ys, vs))
                args = (xb, yb, vb, np.int32(start), epoch, batches, key)
                state, totals = step_jit(state, totals, *args)
            else:
                xw, yw, vw = (to_global(a, 1) for a in (xs, ys, vs))
                args = (xw, yw, vw, np.int32(start), epoch, batches, key)
                state, totals = window_jit(state, totals, *args)
            running.append(totals)
            if on_window is not None and start + size < batches:
                on_window(start + size, state, totals)
        return state, {"loss": totals[0] / n, "accuracy": totals[1] / n}

    return epoch_fn


def predict_rows(
    predict: Callable, state: Any, x: Any, mesh: Mesh | None, chunk: int
) -> np.ndarray:
    """``predict(state, x)`` as a host array; a streamed ``x`` (:class:`~genre_jax.streaming.Rows`)
    is read and predicted ``chunk`` rows at a time."""
    if not isinstance(x, Rows):
        return np.asarray(predict(state, x))
    parts = []
    for start in range(0, len(x), chunk):
        rows = x[start : start + chunk]
        parts.append(np.asarray(predict(state, rows if mesh is None else replicate(rows, mesh))))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def evaluate_logits(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean cross-entropy and accuracy of logits against integer labels (host-side)."""
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    loss = -np.mean(log_probs[np.arange(len(labels)), labels]) if len(labels) else float("nan")
    accuracy = float(np.mean(np.argmax(logits, 1) == labels)) if len(labels) else float("nan")
    return {"loss": float(loss), "accuracy": accuracy}


# --- 2. the loop ----------------------------------------------------------------------------------


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


def _restore_inside(
    checkpoints: Any, state: dict, epoch: int
) -> tuple[tuple[int, Any] | None, dict]:
    """A streamed run's checkpoint inside epoch ``epoch`` (0-based: the one to run next), if
    it has one: ``((next batch, totals), state)``; else ``(None, state)`` unchanged."""
    if checkpoints.latest_partial() is None:
        return None, state
    template = {"state": state, "totals": (np.zeros((), np.float32), np.zeros((), np.int32))}
    restored, meta = checkpoints.restore_partial(template)
    if meta.get("inside_epoch") != epoch:  # one of an epoch that has finished since
        return None, state
    totals = tuple(jnp.asarray(t) for t in restored["totals"])
    return (int(meta["next_batch"]), totals), restored["state"]


def _inside_saver(
    checkpoints: Any,
    config: TrainConfig,
    meta: dict[str, Any] | None,
    epoch: int,
    steps_per_epoch: int,
    records: list[dict[str, float]],
    best: dict[str, Any],
) -> Callable[[int, dict, Any], None] | None:
    """``on_window`` of a streamed epoch: a checkpoint inside the epoch each time another
    ``config.checkpoint_steps`` optimiser steps are done (``None`` when there is nothing to
    write to, or no such setting)."""
    if checkpoints is None or not config.checkpoint_steps:
        return None
    every = config.checkpoint_steps
    done = {"step": epoch * steps_per_epoch}

    def save(next_batch: int, state: dict, totals: Any) -> None:
        step = epoch * steps_per_epoch + next_batch
        if step // every == done["step"] // every:
            return
        done["step"] = step
        info = {**(meta or {}), "inside_epoch": epoch, "next_batch": next_batch}
        info |= {"epochs_done": len(records), "early_stopping": best}
        checkpoints.save_partial(step, {"state": state, "totals": totals}, info)

    return save


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
        # Checkpoints written before metrics.jsonl existed hold the history alone.
        records = saved.get("metrics_log", [dict(r) for r in saved["history"]])
        best_state, _ = checkpoints.restore_best(jax.tree.map(np.asarray, model_state_of(state)))
    inside = None  # (next batch, totals) of an epoch a streamed run checkpointed inside
    if resume and streamed and checkpoints is not None and config.checkpoint_steps:
        inside, state = _restore_inside(checkpoints, state, len(records))
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
            saver = _inside_saver(checkpoints, config, meta, epoch, steps_per_epoch, records, best)
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
