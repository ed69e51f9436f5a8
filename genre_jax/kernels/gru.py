"""Kernel ``gru_recurrence``: a Keras GRU layer's recurrence with one recurrent product per
gate and its backward pass written out, from the same parameters.

The reference op (:func:`genre_jax.kernels.ops.gru_recurrence`) projects the inputs of all
steps with the one ``(features, 3 units)`` kernel and carries one ``h U`` product per step,
whose gates are slices, differentiated by JAX. Here each gate has its own projection and
recurrent product (:func:`recurrence_by_gate`); the values are the same, the gradients within
1e-5 (``tests/test_models.py``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Gates = tuple[jax.Array, jax.Array, jax.Array]  # update, reset, candidate

# Time steps per loop iteration when the GRU's setting leaves it to the kernels (unroll 0):
# on CPU unrolling is no faster than 1 (docs/benchmarks.md, "Kernels").
UNROLL = 1


def gates(a: jax.Array) -> Gates:
    """The update, reset and candidate gates' thirds of the last axis, which holds all three."""
    units = a.shape[-1] // 3
    return a[..., :units], a[..., units : 2 * units], a[..., 2 * units :]


def gru_by_gate(
    x: jax.Array, kernel: jax.Array, recurrent: jax.Array, bias: jax.Array, unroll: int
) -> jax.Array:
    """The reference op ``gru_recurrence``: the hidden state of every step ``(batch, time,
    units)`` of Keras's ``GRU(reset_after=True)`` on ``x (batch, time, features)``, with the
    input ``kernel (features, 3 units)``, the ``recurrent`` kernel ``(units, 3 units)`` and
    ``bias (2, 3 units)`` (input, recurrent), ``unroll`` steps per loop iteration; by
    :func:`recurrence_by_gate`."""
    x_time = jnp.swapaxes(x, 0, 1)  # (time, batch, features)
    projected = tuple(x_time @ k + b for k, b in zip(gates(kernel), gates(bias[0]), strict=True))
    hs = recurrence_by_gate(projected, gates(recurrent), gates(bias[1]), unroll)
    return jnp.swapaxes(hs, 0, 1)


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
    """The fused recurrence's hidden states ``(time, batch, units)`` from each gate's input
    projection ``(time, batch, units)``, recurrent kernel ``(units, units)`` and bias, with
    three products per step.

    On CPU, XLA's slices of the one ``(batch, 3 units)`` product cost more than the product;
    apart, the forward scan runs faster (docs/benchmarks.md, "Kernels"). The backward pass
    is written out: its scan carries the state's gradient alone and saves each step's gate
    gradients, from which the recurrent kernels' gradients are one product over all steps
    after the loop (JAX's own accumulates them step by step).
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
