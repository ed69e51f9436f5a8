"""The pure functions of training: the loss, one optimiser step, one epoch, batched prediction.

Every function here is pure and jitted by its caller: an epoch is shuffled on the device and its
last batch padded and masked, so nothing recompiles from one epoch to the next.

Keys: ``key = jax.random.key(seed)``; epoch ``e`` shuffles with ``fold_in(fold_in(key, 1), e)``
and global step ``s`` drops out with ``fold_in(fold_in(key, 2), s)``, so a resumed run draws
exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from genre_jax.augment import mixup, random_time_flip, smoothed_targets, spec_augment
from genre_jax.config import TrainConfig
from genre_jax.optimizer import is_pretrained, map_variables
from genre_jax.parallel import replicate, shard_batch
from genre_jax.streaming import Rows


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
