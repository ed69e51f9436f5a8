"""Formulations of the CNN's training pieces on CPU, each against what it replaced, round-robin
in one process with their ratio (part of the ``training`` path):

- ``cnn first block forward and backward, batch B, by chunks | as JAX differentiates it``: the
  gradient of the seed CNN's first block (Conv 3x3 1 -> 32, ReLU, BatchNorm with batch
  statistics, MaxPool 2x2) to its four parameters, as training computes it on CPU
  (:func:`genre_jax.kernels.conv_block.conv_block`: chunks of
  ``conv_block.CHUNK`` samples, the convolution again in the backward pass) and as it was
  computed before (``relu_batch_norm_pool`` of ``conv2d_same``, JAX's gradient);
- ``dropout mask (B, 215, 6, 32), threefry in halves | threefry in one loop |
  jax.random.bernoulli``:
  the CNN's first dropout mask, bitwise the same three ways
  (:func:`genre_jax.kernels.threefry.bernoulli`).

Both are rows per batch of ``Options.train_batches``; on other backends there are none (the
formulations are the CPU's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import COEFFS, FRAMES, Options
from benchmarks.timing import Row, progress, ratio, report, time_interleaved
from genre_jax.kernels import conv_block, threefry
from genre_jax.kernels.conv import conv2d_same
from genre_jax.kernels.ops import conv_block as conv_relu_batch_norm_pool
from genre_jax.models.layers import keras_batch_norm, relu_batch_norm_pool


def block_gradients(batch: int) -> dict[str, Callable[[], Any]]:
    """The first block's value and gradient to its parameters at ``batch``, both ways (jitted,
    compiled by a first call)."""
    conv = nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
    graphdef, params, stats = nnx.split((conv, keras_batch_norm(32, nnx.Rngs(0))), nnx.Param, ...)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, FRAMES, COEFFS, 1)), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((batch, FRAMES // 2, COEFFS // 2, 32)), jnp.float32)

    def gradient(by_chunks: bool) -> Callable[[], Any]:
        def loss(params: Any) -> jax.Array:
            conv, norm = nnx.merge(graphdef, params, stats, copy=True)
            if by_chunks:
                y = conv_relu_batch_norm_pool(conv, norm, x, train=True)
            else:
                y = relu_batch_norm_pool(norm, conv2d_same(conv, x), train=True)
            return jnp.sum(y * cotangent)

        step = jax.jit(jax.value_and_grad(loss))
        return lambda: jax.block_until_ready(step(params))

    return {"by chunks": gradient(True), "as JAX differentiates it": gradient(False)}


def dropout_masks(batch: int) -> dict[str, Callable[[], Any]]:
    """The CNN's first dropout mask at ``batch`` (keep 0.7) three ways, jitted."""
    shape = (batch, FRAMES // 2, COEFFS // 2, 32)
    key = jax.random.fold_in(jax.random.key(0), 1)
    draws = {
        "threefry in halves": lambda k: threefry.bernoulli(k, 0.7, shape, halves=True),
        "threefry in one loop": lambda k: threefry.bernoulli(k, 0.7, shape),
        "jax.random.bernoulli": lambda k: jax.random.bernoulli(k, 0.7, shape),
    }
    jitted = {label: jax.jit(draw) for label, draw in draws.items()}
    return {label: (lambda f=f: jax.block_until_ready(f(key))) for label, f in jitted.items()}


def compare(
    title: str, fns: dict[str, Callable[[], Any]], setting: dict, extra: dict, options: Options
) -> tuple[list[Row], list[dict]]:
    """Rows ``"<title>, <label>"`` timed round-robin (calls per second), with ``setting`` and
    ``extra``, and the ratio of the first to each other."""
    progress(f"training: {title}, {' vs '.join(fns)}")
    timings = time_interleaved(fns, options.train_repeats, budget_s=options.budget_s)
    rows = []
    for label, timing in timings.items():
        name = f"{title}, {label}"
        rows.append(Row.rate("training", name, "calls/s", timing, 1, setting=setting, extra=extra))
        report(rows[-1])
    labels = list(timings)
    ratios = [
        ratio(f"{title}: {labels[0]} / {other}", rows[0], row, paired=True)
        for other, row in zip(labels[1:], rows[1:], strict=True)
    ]
    return rows, ratios


def run(options: Options, counts: dict[str, int]) -> tuple[list[Row], list[dict]]:
    """The block and dropout comparisons at every train batch (CPU only); each row names the
    CNN (``model``) and its parameter ``counts``, as every training row does."""
    if jax.default_backend() != "cpu":
        return [], []
    rows: list[Row] = []
    ratios: list[dict] = []
    for batch in options.train_batches:
        setting = {"model": "cnn", "batch": batch, "input": f"({batch}, {FRAMES}, {COEFFS}, 1)"}
        block = {**setting, "chunk": conv_block.CHUNK}
        title = f"cnn first block forward and backward, batch {batch}"
        mask = f"({batch}, {FRAMES // 2}, {COEFFS // 2}, 32)"
        for new_rows, new_ratios in (
            compare(title, block_gradients(batch), block, counts, options),
            compare(f"dropout mask {mask}", dropout_masks(batch), setting, counts, options),
        ):
            rows += new_rows
            ratios += new_ratios
    return rows, ratios
