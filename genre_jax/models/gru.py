"""The seed study's GRU network, with Keras's GRU cell, as Flax NNX modules.

    GRU 64 (all steps) -> Dropout 0.3 -> BatchNorm -> GRU 96 -> Dropout 0.3 -> BatchNorm
    -> global average pool over time -> Dense 128 ReLU -> Dropout 0.4 -> Dense classes (logits)

Per-layer values 15,168 / 256 / 46,656 / 384 / 12,416 / 1,290, as Keras counts them.

The cell is Keras's ``GRU(reset_after=True)``: gates in the order update ``z``, reset ``r``,
candidate ``h~``; separate input and recurrent biases; the reset gate multiplies the recurrent
projection *after* its matmul::

    z  = sigmoid(x W_z + b_z + h U_z + c_z)
    r  = sigmoid(x W_r + b_r + h U_r + c_r)
    h~ = tanh(x W_h + b_h + r * (h U_h + c_h))
    h' = z * h + (1 - z) * h~

The input projections of all time steps are matmuls outside the recurrence; ``lax.scan``
carries only ``h U``. On CPU the three gates are three products ``h U_z``, ``h U_r``, ``h U_h``
and the backward pass is written out (:func:`recurrence_by_gate`); elsewhere one product
``h U`` whose gates are slices, differentiated by JAX (:func:`recurrence_fused`). Both give the
same values from the same parameters (``tests/test_models.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.models.layers import (
    dropout,
    glorot_uniform,
    keras_batch_norm,
    layer_key,
    orthogonal,
)
from genre_jax.models.spec import NETWORK, DemoRecipe, ModelSpec, SeedFigures
from genre_jax.settings import setting


class KerasGRU(nnx.Module):
    """One GRU layer returning the hidden state of every step, ``(batch, time, units)``."""

    def __init__(self, in_features: int, units: int, *, rngs: nnx.Rngs, unroll: int = 1) -> None:
        self.units = units
        self.unroll = unroll
        self.kernel = nnx.Param(glorot_uniform(rngs.params(), (in_features, 3 * units)))
        self.recurrent_kernel = nnx.Param(orthogonal(rngs.params(), (units, 3 * units)))
        self.bias = nnx.Param(jnp.zeros((2, 3 * units)))  # row 0: input bias, row 1: recurrent

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel, bias = self.kernel[...], self.bias[...]
        recurrent = self.recurrent_kernel[...]
        if jax.default_backend() != "cpu":
            projected = x @ kernel + bias[0]  # (batch, time, 3 units), all steps at once
            hs = recurrence_fused(jnp.swapaxes(projected, 0, 1), recurrent, bias[1], self.unroll)
            return jnp.swapaxes(hs, 0, 1)
        x_time = jnp.swapaxes(x, 0, 1)  # (time, batch, features)
        projected = tuple(
            x_time @ k + b for k, b in zip(_gates(kernel), _gates(bias[0]), strict=True)
        )
        hs = recurrence_by_gate(projected, _gates(recurrent), _gates(bias[1]), self.unroll)
        return jnp.swapaxes(hs, 0, 1)


Gates = tuple[jax.Array, jax.Array, jax.Array]  # update, reset, candidate


def _gates(a: jax.Array) -> Gates:
    """The update, reset and candidate gates' thirds of the last axis, which holds all three."""
    units = a.shape[-1] // 3
    return a[..., :units], a[..., units : 2 * units], a[..., 2 * units :]


def recurrence_fused(
    projected: jax.Array, recurrent: jax.Array, recurrent_bias: jax.Array, unroll: int
) -> jax.Array:
    """The hidden states ``(time, batch, units)`` from the input projections ``(time, batch,
    3 units)``: one recurrent product per step, its gates sliced from it; JAX differentiates."""

    def step(h: jax.Array, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        (xz, xr, xh), (hz, hr, hh) = _gates(xp), _gates(h @ recurrent + recurrent_bias)
        z = jax.nn.sigmoid(xz + hz)
        r = jax.nn.sigmoid(xr + hr)
        h = z * h + (1.0 - z) * jnp.tanh(xh + r * hh)
        return h, h

    h0 = jnp.zeros((projected.shape[1], recurrent.shape[0]), projected.dtype)
    return jax.lax.scan(step, h0, projected, unroll=unroll)[1]


def _cell(h: jax.Array, x: Gates, recurrent: Gates, bias: Gates) -> tuple[jax.Array, tuple]:
    """One step from the gates' input projections ``x``: the new state, and what the backward
    pass reads (update, reset, candidate, and the candidate's recurrent term)."""
    z = jax.nn.sigmoid(x[0] + (h @ recurrent[0] + bias[0]))
    r = jax.nn.sigmoid(x[1] + (h @ recurrent[1] + bias[1]))
    recurrent_term = h @ recurrent[2] + bias[2]
    candidate = jnp.tanh(x[2] + r * recurrent_term)
    return z * h + (1.0 - z) * candidate, (z, r, candidate, recurrent_term)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def recurrence_by_gate(x: Gates, recurrent: Gates, bias: Gates, unroll: int) -> jax.Array:
    """:func:`recurrence_fused`'s hidden states from each gate's input projection ``(time,
    batch, units)``, recurrent kernel ``(units, units)`` and bias, with three products per step.

    On CPU, XLA's slices of the one ``(batch, 3 units)`` product cost more than the product:
    apart, the forward scan runs about 3x faster. The backward pass is written out: its scan
    carries the state's gradient alone and saves each step's gate gradients, from which the
    recurrent kernels' gradients are one product over all steps after the loop (JAX's own
    accumulates them step by step).
    """
    h0 = jnp.zeros_like(x[0][0])

    def step(h: jax.Array, x_t: Gates) -> tuple[jax.Array, jax.Array]:
        h = _cell(h, x_t, recurrent, bias)[0]
        return h, h

    return jax.lax.scan(step, h0, x, unroll=unroll)[1]


def _by_gate_forward(x: Gates, recurrent: Gates, bias: Gates, unroll: int) -> tuple:
    h0 = jnp.zeros_like(x[0][0])

    def step(h: jax.Array, x_t: Gates) -> tuple[jax.Array, tuple]:
        h_new, saved = _cell(h, x_t, recurrent, bias)
        return h_new, (h_new, *saved)

    _, (hs, *saved) = jax.lax.scan(step, h0, x, unroll=unroll)
    previous = jnp.concatenate([h0[None], hs[:-1]])  # the state each step started from
    return hs, (previous, *saved, recurrent)


def _by_gate_backward(unroll: int, saved: tuple, cotangent: jax.Array) -> tuple:
    previous, z, r, candidate, recurrent_term, recurrent = saved
    transposed = tuple(k.T for k in recurrent)

    def step(dh: jax.Array, t: tuple) -> tuple[jax.Array, Gates]:
        g, h, z_t, r_t, candidate_t, term_t = t
        dh = dh + g
        d_candidate = dh * (1.0 - z_t) * (1.0 - candidate_t * candidate_t)  # before tanh
        d_update = dh * (h - candidate_t) * z_t * (1.0 - z_t)  # before the sigmoid
        d_reset = d_candidate * term_t * r_t * (1.0 - r_t)
        d_term = d_candidate * r_t
        dh = dh * z_t + d_update @ transposed[0] + d_reset @ transposed[1] + d_term @ transposed[2]
        return dh, (d_update, d_reset, d_candidate, d_term)

    steps = (cotangent, previous, z, r, candidate, recurrent_term)
    dh0 = jnp.zeros_like(cotangent[0])
    _, (d_update, d_reset, d_candidate, d_term) = jax.lax.scan(
        step, dh0, steps, reverse=True, unroll=unroll
    )
    d_recurrent_input = (d_update, d_reset, d_term)
    d_recurrent = tuple(jnp.einsum("tbu,tbk->uk", previous, d) for d in d_recurrent_input)
    d_bias = tuple(d.sum(axis=(0, 1)) for d in d_recurrent_input)
    return (d_update, d_reset, d_candidate), d_recurrent, d_bias


recurrence_by_gate.defvjp(_by_gate_forward, _by_gate_backward)


class SeedGRU(nnx.Module):
    """The seed's two-layer GRU classifier."""

    def __init__(
        self, in_features: int = 13, num_classes: int = 10, *, rngs: nnx.Rngs, unroll: int = 1
    ) -> None:
        self.gru1 = KerasGRU(in_features, 64, rngs=rngs, unroll=unroll)
        self.norm1 = keras_batch_norm(64, rngs)
        self.gru2 = KerasGRU(64, 96, rngs=rngs, unroll=unroll)
        self.norm2 = keras_batch_norm(96, rngs)
        self.hidden = nnx.Linear(96, 128, kernel_init=glorot_uniform, rngs=rngs)
        self.out = nnx.Linear(128, num_classes, kernel_init=glorot_uniform, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Logits ``(batch, classes)`` from features ``(batch, frames, coefficients)``.

        ``train``, ``key`` and ``mask`` as in :class:`genre_jax.models.cnn.SeedCNN`.
        """
        h = self.embed(x, train=train, key=key, mask=mask)
        h = dropout(h, 0.4, layer_key(key, 2) if train else None)
        return self.out(h)

    def embed(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """The penultimate layer ``(batch, 128)``: the hidden dense layer's ReLU outputs on
        the time-averaged second GRU, which the output layer reads. Arguments as
        :meth:`__call__`'s."""
        bn_mask = None if mask is None else mask[:, None, None]
        use_average = not train
        h = self.gru1(x)
        h = dropout(h, 0.3, layer_key(key, 0) if train else None)
        h = self.norm1(h, use_running_average=use_average, mask=bn_mask)
        h = self.gru2(h)
        h = dropout(h, 0.3, layer_key(key, 1) if train else None)
        h = self.norm2(h, use_running_average=use_average, mask=bn_mask)
        h = jnp.mean(h, axis=1)
        return jax.nn.relu(self.hidden(h))


@dataclass(frozen=True)
class GRUSettings:
    """The seed's GRU has a fixed architecture; its one setting changes speed only.

    Attributes:
        unroll: time steps per loop iteration in the GRU's scan (speed only, the same
            results); 0 picks the one measured fastest for the backend (1 on CPU, 8 on a
            GPU or TPU).
    """

    unroll: int = setting(0, minimum=0)


def scan_unroll(settings: GRUSettings) -> int:
    """The GRU's scan unrolling: the configured one, or for 0 the fastest measured.

    Measured at batch 32 (``benchmarks``, GRU unroll rows): on a 2-core CPU unrolling is no
    faster than 1; on an H100 1, 2, 4, 8, 16 gave 1,320, 2,077, 2,608, 2,915, 3,035 samples/s,
    with compilation 0.4, 5, 7, 15, 46 s, so 8 is kept there.
    """
    if settings.unroll:
        return settings.unroll
    return 1 if jax.default_backend() == "cpu" else 8


def build(settings: GRUSettings, n_features: int, n_classes: int, rngs: nnx.Rngs) -> SeedGRU:
    """The seed's two-layer GRU for ``n_features`` coefficients per frame."""
    return SeedGRU(n_features, n_classes, rngs=rngs, unroll=scan_unroll(settings))


SPEC = ModelSpec(
    name="gru",
    family=NETWORK,
    description="the seed's two-layer GRU (64, 96 units) over the MFCC frames",
    build=build,
    settings=GRUSettings,
    # The recurrence gains from one scan per epoch even on CPU (benchmarks, epoch drivers).
    cpu_epoch_driver="scan",
    demo=DemoRecipe(synthetic={"epochs": 30, "learning_rate": 1e-3}),
    seed=SeedFigures(segment_accuracy=0.7114, parameters=76_170),
)
