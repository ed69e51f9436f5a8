"""Network training (the seed's CNN and GRU, our melstat): steady-state train steps per epoch
driver, and seconds per epoch.

Inputs are 10 s segments: the seed's 431 x 13 MFCCs for the CNN and GRU, 431 x 128 log-mel
bands for melstat: each network's input and recipe are its demo recipe's
(:class:`genre_jax.models.DemoRecipe`; melstat's, :data:`genre_jax.models.melstat.RECIPE`:
random time flip, SpecAugment, label smoothing, cosine schedule, as ``crossval`` runs it).
The networks timed are the registered ones with a demo recipe.

Rows:

- ``<model> train steps, <driver> driver, batch B``: samples per second of
  ``make_train_epoch(..., driver)`` over a small device-resident set of whole batches
  (``Options.train_samples``), i.e. the real epoch path: on-device shuffle, gather, step;
- ``gru train steps, <driver> driver, batch B, unroll U``: the same at the epoch batch for
  each GRU scan unrolling of ``Options.gru_unrolls`` (the other GRU rows use the backend's
  default, :func:`genre_jax.models.gru.scan_unroll`, named in their setting); any network
  with an ``unroll`` setting gets these rows;
- ``cnn train steps, batch B, convolutions in chunks | whole batch``: the CNN at the largest
  train batch with XLA's CPU convolutions in chunks of ``layers.CONV_CHUNK`` samples (how it
  trains) and over the whole batch, round-robin, with their ratio (CPU only);
- ``cnn first block forward and backward, ...`` and ``dropout mask ...``: the CNN's first block
  and dropout masks as trained on CPU against what they replaced (:mod:`benchmarks.formulations`);
- ``<model> epoch, GTZAN size``: seconds per epoch of 4,752 segments (2,376 training segments
  doubled by the time flip) at batch 32 with the model's ``auto`` driver, as ``fit`` runs it.

Compiled epoch functions are cached by (model, driver, batch), so rows of the same shape (the
quick preset's, and the peer comparison's) compile once.

Every row names the parameter count (trainable, and as Keras counts it, BatchNorm statistics
included) and, when asked, the FLOPs of one train step from XLA's cost analysis of the lowered
step, with the GFLOP/s the row achieved. XLA counts a loop body once, so for the GRU the step
is lowered with its scan fully unrolled (its ``unroll`` setting = frames) to count every time
step;
that lowering is only analysed, never run.

Train-step rows stop repeating after ``Options.budget_s`` seconds (the CNN's scan driver at
batch 256 runs minutes per call on a small CPU); each row says how many repeats it got.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import formulations
from benchmarks.common import CLASSES, COEFFS, FRAMES, GTZAN_TRAIN, Options
from benchmarks.timing import Row, progress, ratio, report, time_call, time_interleaved
from genre_jax.config import TrainConfig
from genre_jax.demo import demo_features, demo_models
from genre_jax.kernels import conv as layers  # CONV_CHUNK, CONV_WHOLE_BATCH
from genre_jax.models import NETWORK, get_spec
from genre_jax.models.gru import scan_unroll
from genre_jax.step import make_train_epoch, make_train_step
from genre_jax.train import epoch_driver, init_state, model_state_of

# The networks with a demo recipe, in registry order: the seed's cnn and gru, our melstat.
MODELS = tuple(name for name in demo_models() if get_spec(name).family == NETWORK)


def has_unroll(model: str) -> bool:
    """Whether the network has a scan ``unroll`` setting (the GRU)."""
    return "unroll" in get_spec(model).setting_names()


def model_config(model: str, unroll: int = 0) -> TrainConfig:
    """The recipe a model trains with: its demo recipe on real data (the seed's for cnn and
    gru, its own for melstat).

    ``unroll`` is the scan unrolling of a model with that setting (time steps per loop
    iteration; 0: the backend's default, :func:`genre_jax.models.gru.scan_unroll`); ignored
    for the others.
    """
    spec = get_spec(model)
    settings = {"model": model, **(spec.demo.train if spec.demo is not None else {})}
    if has_unroll(model):
        settings["unroll"] = unroll
    return TrainConfig.from_flat(settings)


def model_coeffs(model: str) -> int:
    """Coefficients per frame of the model's input (its demo features: MFCCs or log-mel
    bands)."""
    return demo_features(model).n_features


def synthetic_batch(n: int, seed: int = 0, coeffs: int = COEFFS) -> tuple[jax.Array, jax.Array]:
    """``n`` standard-normal segments ``(n, 431, coeffs)`` and balanced labels, on the device."""
    x = jax.random.normal(jax.random.key(seed), (n, FRAMES, coeffs), jnp.float32)
    return x, jnp.arange(n, dtype=jnp.int32) % CLASSES


@functools.cache
def _initial(model: str, unroll: int = 0) -> tuple[Any, dict, Any]:
    return init_state(model_config(model, unroll), model_coeffs(model), CLASSES)


def initial_state(model: str, unroll: int = 0) -> tuple[Any, dict, Any]:
    """(graphdef, a fresh copy of the seed-0 training state, optimiser) of ``model``.

    Initialisation runs once per model (it is slow on CPU); the copy can be donated.
    """
    graphdef, state, tx = _initial(model, unroll)
    return graphdef, jax.tree.map(jnp.copy, state), tx


@functools.cache
def epoch_function(model: str, driver: str, batch_size: int, unroll: int = 0) -> Callable:
    """The (cached) ``make_train_epoch`` function, so rows sharing a shape compile once."""
    graphdef, _, tx = _initial(model, unroll)
    config = model_config(model, unroll)
    return make_train_epoch(graphdef, tx, batch_size, driver, config=config)


def epoch_runner(
    model: str,
    driver: str,
    batch_size: int,
    n: int,
    unroll: int = 0,
    epoch: Callable | None = None,
) -> Callable[[], Any]:
    """A callable that trains one more epoch of ``n`` samples each time it is called (by
    ``epoch``, a ``make_train_epoch`` function; default: :func:`epoch_function`'s)."""
    _, state, _ = initial_state(model, unroll)
    epoch = epoch or epoch_function(model, driver, batch_size, unroll)
    x, y = synthetic_batch(n, coeffs=model_coeffs(model))
    key = jax.random.key(0)
    holder = {"state": state, "epoch": 0}

    def call() -> Any:
        holder["state"], metrics = epoch(holder["state"], x, y, jnp.int32(holder["epoch"]), key)
        holder["epoch"] += 1
        return holder["state"], metrics

    return call


def parameter_counts(model: str) -> dict[str, int]:
    """Trainable parameters, and all state values as Keras counts them (BatchNorm stats too)."""
    state = _initial(model)[1]
    size = lambda tree: int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))  # noqa: E731
    return {"parameters": size(state["params"]), "keras_count": size(model_state_of(state))}


def step_flops(model: str, batch_size: int) -> float | None:
    """FLOPs of one train step at ``batch_size`` from XLA's cost analysis of the lowered step."""
    # Count every time step of a scan with an unroll setting (the GRU), not the body once.
    config = model_config(model, FRAMES if has_unroll(model) else 0)
    graphdef, state, tx = init_state(config, model_coeffs(model), CLASSES)
    x, y = synthetic_batch(batch_size, coeffs=model_coeffs(model))
    lowered = jax.jit(make_train_step(graphdef, tx, config=config)).lower(
        state, x, y, jnp.ones(batch_size, bool), jax.random.key(0)
    )
    cost = lowered.cost_analysis()
    if isinstance(cost, list):  # older JAX: one dict per computation
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def _flops_extra(flops: dict[int, float | None], batch: int, steps: int, seconds: float) -> dict:
    """GFLOPs per step at ``batch`` and the GFLOP/s achieved by ``steps`` steps in ``seconds``."""
    if not flops.get(batch):
        return {}
    per_step = flops[batch] / 1e9
    achieved = per_step * steps / seconds
    return {"gflops_per_step": round(per_step, 3), "gflops_per_s": round(achieved, 2)}


def unroll_rows(model: str, options: Options, driver: str, info: dict, optimizer: str) -> list[Row]:
    """Train steps of a network with an ``unroll`` setting (the GRU) at ``epoch_batch`` for
    each scan unrolling of ``options.gru_unrolls``."""
    rows = []
    batch = options.epoch_batch
    n = batch * max(2, options.train_samples // batch)
    for unroll in options.gru_unrolls:
        progress(f"training: {model} {driver} driver, batch {batch}, unroll {unroll}")
        runner = epoch_runner(model, driver, batch, n, unroll)
        timing = time_call(runner, options.train_repeats, budget_s=options.budget_s)
        setting = {
            "model": model,
            "driver": driver,
            "batch": batch,
            "unroll": unroll,
            "samples_per_call": n,
            "input": f"({batch}, {FRAMES}, {model_coeffs(model)})",
            "optimizer": optimizer,
        }
        name = f"{model} train steps, {driver} driver, batch {batch}, unroll {unroll}"
        rows.append(Row.rate("training", name, "samples/s", timing, n, setting=setting, extra=info))
        report(rows[-1])
    return rows


@contextlib.contextmanager
def convolution_chunk(samples: int) -> Iterator[None]:
    """Trace the CNN's CPU convolutions with ``samples`` per chunk (``layers.CONV_CHUNK``,
    read when a step is traced) inside the block."""
    saved = layers.CONV_CHUNK
    layers.CONV_CHUNK = samples
    try:
        yield
    finally:
        layers.CONV_CHUNK = saved


def chunk_rows(options: Options) -> tuple[list[Row], list[dict]]:
    """The CNN's train steps at the largest train batch, with XLA's CPU convolutions in chunks
    of ``layers.CONV_CHUNK`` samples (as it trains) and over the whole batch at once,
    round-robin, and the ratio: what the chunks give (bitwise the same values). At a batch of
    at most ``CONV_WHOLE_BATCH`` the two are one formulation; on other backends there is no row."""
    if jax.default_backend() != "cpu":
        return [], []
    model, batch = "cnn", max(options.train_batches)
    n = batch * max(2, options.train_samples // batch)
    config = model_config(model)
    driver = epoch_driver(config)
    graphdef, _, tx = _initial(model)
    chunks = {"in chunks": layers.CONV_CHUNK, "whole batch": batch}
    fns: dict[str, Callable[[], Any]] = {}
    for label, chunk in chunks.items():
        with convolution_chunk(chunk):
            epoch = make_train_epoch(graphdef, tx, batch, driver, config=config)
            fns[label] = epoch_runner(model, driver, batch, n, epoch=epoch)
            jax.block_until_ready(fns[label]())  # traced and compiled with this chunk
    progress(f"training: cnn convolutions in chunks vs whole batch, batch {batch}, {n} samples")
    timings = time_interleaved(fns, options.train_repeats, budget_s=options.budget_s)
    extra = {
        **parameter_counts(model),
        "first_call": "after compilation (each is compiled under its own chunk)",
    }
    rows = []
    for label, timing in timings.items():
        name = f"cnn train steps, batch {batch}, convolutions {label}"
        setting = {"model": model, "driver": driver, "batch": batch, "samples_per_call": n}
        setting["conv_chunk"] = chunks[label]
        rows.append(
            Row.rate("training", name, "samples/s", timing, n, setting=setting, extra=extra)
        )
        report(rows[-1])
    title = f"cnn training at batch {batch}: convolutions in chunks / whole batch"
    return rows, [ratio(title, rows[0], rows[1], paired=True)]


def run(options: Options) -> tuple[list[Row], list[dict]]:
    """Train-step rows (both drivers, every batch size) and epoch rows, for every model, the
    CNN's convolution-chunk comparison (:func:`chunk_rows`) and its first block's and dropout
    masks' (:mod:`benchmarks.formulations`)."""
    rows: list[Row] = []
    for model in MODELS:
        info = parameter_counts(model)
        batches = {*options.train_batches, options.epoch_batch}
        flops = {b: step_flops(model, b) for b in sorted(batches)} if options.flops else {}
        auto = epoch_driver(model_config(model))
        config = model_config(model)
        optimizer = f"adam {config.learning_rate:g}, {config.lr_schedule}"
        drivers = [auto if d == "auto" else d for d in options.drivers]
        unroll_setting = {"unroll": scan_unroll(config.model_settings)} if has_unroll(model) else {}
        for batch in options.train_batches:
            n = batch * max(2, options.train_samples // batch)
            for driver in drivers:
                progress(f"training: {model} {driver} driver, batch {batch}, {n} samples")
                runner = epoch_runner(model, driver, batch, n)
                timing = time_call(runner, options.train_repeats, budget_s=options.budget_s)
                setting = {
                    "model": model,
                    "driver": driver,
                    "auto_driver": auto,
                    "batch": batch,
                    "samples_per_call": n,
                    "input": f"({batch}, {FRAMES}, {model_coeffs(model)})",
                    "optimizer": optimizer,
                    **unroll_setting,
                }
                name = f"{model} train steps, {driver} driver, batch {batch}"
                extra = {**info, **_flops_extra(flops, batch, n // batch, timing.median)}
                rows.append(
                    Row.rate("training", name, "samples/s", timing, n, setting=setting, extra=extra)
                )
                report(rows[-1])
        if has_unroll(model):
            rows += unroll_rows(model, options, auto, info, optimizer)
        n, batch = options.epoch_samples, options.epoch_batch
        progress(f"training: {model} epoch of {n} samples, batch {batch}, {auto} driver")
        timing = time_call(epoch_runner(model, auto, batch, n), options.epoch_repeats)
        setting = {"model": model, "driver": auto, "batch": batch, "samples": n, **unroll_setting}
        size = "GTZAN size" if n == GTZAN_TRAIN else f"{n} samples"
        row = Row.duration("training", f"{model} epoch, {size}", "s/epoch", timing)
        steps = -(-n // batch)
        extra = {**info, "samples_per_s": round(n / timing.median, 2)}
        row.setting, row.extra = setting, extra | _flops_extra(flops, batch, steps, timing.median)
        rows.append(row)
        report(row)
    chunked, ratios = chunk_rows(options)
    parts, part_ratios = formulations.run(options, parameter_counts("cnn"))
    return rows + chunked + parts, ratios + part_ratios
