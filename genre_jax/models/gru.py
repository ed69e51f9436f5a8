"""The seed study's GRU network, with Keras's GRU cell, as Flax NNX modules.

    GRU 64 (all steps) -> Dropout 0.3 -> BatchNorm -> GRU 96 -> Dropout 0.3 -> BatchNorm
    -> global average pool over time -> Dense 128 ReLU -> Dropout 0.4 -> Dense classes (logits)

Per-layer values 15,168 / 256 / 46,656 / 384 / 12,416 / 1,290, as Keras counts them. The GRU
layers' units are the setting ``units`` (one GRU, dropout and BatchNorm per value; the seed's
by default).

The cell is Keras's ``GRU(reset_after=True)``: gates in the order update ``z``, reset ``r``,
candidate ``h~``; separate input and recurrent biases; the reset gate multiplies the recurrent
projection *after* its matmul::

    z  = sigmoid(x W_z + b_z + h U_z + c_z)
    r  = sigmoid(x W_r + b_r + h U_r + c_r)
    h~ = tanh(x W_h + b_h + r * (h U_h + c_h))
    h' = z * h + (1 - z) * h~

The input projections of all time steps are matmuls outside the recurrence; ``lax.scan``
carries only ``h U`` (:func:`genre_jax.kernels.ops.gru_recurrence`).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.kernels import ops
from genre_jax.models.layers import glorot_uniform, keras_batch_norm, layer_key, orthogonal
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
        return ops.gru_recurrence(
            x, self.kernel[...], self.recurrent_kernel[...], self.bias[...], self.unroll
        )


UNITS = (64, 96)  # the seed's


class SeedGRU(nnx.Module):
    """The seed's GRU classifier: GRU layers (two by default), each followed by dropout and
    BatchNorm, named ``gru1``, ``norm1``, ``gru2`` ... (the names its checkpoints hold)."""

    def __init__(
        self,
        in_features: int = 13,
        num_classes: int = 10,
        *,
        units: tuple[int, ...] = UNITS,
        rngs: nnx.Rngs,
        unroll: int = 1,
    ) -> None:
        self.depth = len(units)
        for i, (n_in, n_out) in enumerate(zip((in_features, *units[:-1]), units, strict=True)):
            setattr(self, f"gru{i + 1}", KerasGRU(n_in, n_out, rngs=rngs, unroll=unroll))
            setattr(self, f"norm{i + 1}", keras_batch_norm(n_out, rngs))
        self.hidden = nnx.Linear(units[-1], 128, kernel_init=glorot_uniform, rngs=rngs)
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
        h = ops.dropout(h, 0.4, layer_key(key, self.depth) if train else None)
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
        the time-averaged last GRU, which the output layer reads. Arguments as
        :meth:`__call__`'s."""
        bn_mask = None if mask is None else mask[:, None, None]
        use_average = not train
        h = x
        for i in range(self.depth):
            h = getattr(self, f"gru{i + 1}")(h)
            h = ops.dropout(h, 0.3, layer_key(key, i) if train else None)
            h = getattr(self, f"norm{i + 1}")(h, use_running_average=use_average, mask=bn_mask)
        h = jnp.mean(h, axis=1)
        return jax.nn.relu(self.hidden(h))


@dataclass(frozen=True)
class GRUSettings:
    """The GRU's architecture (the seed's by default), and its scan's unrolling (speed only).

    Attributes:
        units: units of each GRU layer, one layer per value.
        unroll: time steps per loop iteration in the GRU's scan (speed only, the same
            results); 0 leaves it to the kernels (:func:`genre_jax.kernels.ops.gru_unroll`).
    """

    units: tuple[int, ...] = setting(UNITS, minimum=1)
    unroll: int = setting(0, minimum=0)


def scan_unroll(settings: GRUSettings) -> int:
    """The GRU's scan unrolling: the configured one, or for 0 the active kernels' own."""
    return settings.unroll or ops.gru_unroll()


def build(settings: GRUSettings, n_features: int, n_classes: int, rngs: nnx.Rngs) -> SeedGRU:
    """The GRU of ``settings`` for ``n_features`` coefficients per frame."""
    return SeedGRU(
        n_features, n_classes, units=settings.units, rngs=rngs, unroll=scan_unroll(settings)
    )


SPEC = ModelSpec(
    name="gru",
    family=NETWORK,
    description="the seed's GRU layers over the MFCC frames (64, 96 units by default)",
    build=build,
    settings=GRUSettings,
    # The recurrence gains from one scan per epoch even on CPU (benchmarks, epoch drivers).
    cpu_epoch_driver="scan",
    demo=DemoRecipe(synthetic={"epochs": 30, "learning_rate": 1e-3}),
    seed=SeedFigures(segment_accuracy=0.7114, parameters=76_170),
)
