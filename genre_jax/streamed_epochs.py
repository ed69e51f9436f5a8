"""Epochs read from the store batch by batch, and checkpoints inside them.

For a store no device holds: each process reads its slice of each batch
(:class:`~genre_jax.streaming.StreamedSplit`), windows of batches run as one scan, and the same
batches, keys and steps as a device-resident epoch result. With ``checkpoint_steps`` a streamed
epoch also checkpoints every so many optimiser steps, and a resumed run goes on from there.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from genre_jax.config import TrainConfig
from genre_jax.extraction import prefetch
from genre_jax.parallel import DATA_AXIS, batch_sharded, replicate
from genre_jax.step import epoch_order, make_batch_step, make_train_step


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


def restore_inside(
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


def inside_saver(
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
