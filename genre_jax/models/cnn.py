"""The seed study's CNN, layer for layer, as a Flax NNX module.

Input ``(batch, frames, coefficients)`` (431 x 13 for the seed), seen as a one-channel image:

    3 x [Conv 3x3 same (32, 64, 64) + ReLU -> BatchNorm -> MaxPool 2x2 -> Dropout 0.3]
    -> global average pool -> Dense 128 ReLU -> Dropout 0.4 -> Dense classes (logits)

65,994 values for 10 classes counted as Keras counts them (BatchNorm's moving mean and variance
included). BatchNorm uses Keras's momentum 0.99 and epsilon 1e-3; kernels start Glorot-uniform.
Each block is the reference op :func:`genre_jax.kernels.ops.conv_block`. The blocks' channels
are the setting ``channels`` (one block per value; the seed's by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.kernels import ops
from genre_jax.models.layers import glorot_uniform, keras_batch_norm, layer_key
from genre_jax.models.spec import NETWORK, DemoRecipe, ModelSpec, SeedFigures
from genre_jax.settings import setting

CHANNELS = (32, 64, 64)  # the seed's


class SeedCNN(nnx.Module):
    """Conv blocks (the seed's three by default), global average pooling and a two-layer head
    (the seed's CNN)."""

    def __init__(
        self, num_classes: int = 10, *, channels: tuple[int, ...] = CHANNELS, rngs: nnx.Rngs
    ) -> None:
        ins = (1, *channels[:-1])
        self.convs = nnx.List(
            [
                nnx.Conv(i, o, (3, 3), padding="SAME", kernel_init=glorot_uniform, rngs=rngs)
                for i, o in zip(ins, channels, strict=True)
            ]
        )
        self.norms = nnx.List([keras_batch_norm(c, rngs) for c in channels])
        self.hidden = nnx.Linear(channels[-1], 128, kernel_init=glorot_uniform, rngs=rngs)
        self.out = nnx.Linear(128, num_classes, kernel_init=glorot_uniform, rngs=rngs)

    def embed(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """The penultimate layer ``(batch, 128)``: the hidden dense layer's ReLU outputs,
        which the output layer reads (after dropout in training). Arguments as
        :meth:`__call__`'s."""
        h = x[..., None]
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = ops.conv_block(conv, norm, h, train=train, mask=mask)
            h = ops.dropout(h, 0.3, layer_key(key, i) if train else None)
        h = jnp.mean(h, axis=(1, 2))
        return jax.nn.relu(self.hidden(h))

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Logits ``(batch, classes)``.

        Args:
            x: features ``(batch, frames, coefficients)``.
            train: batch statistics (and their running averages updated) instead of the
                running averages.
            key: dropout key; None disables dropout.
            mask: ``(batch,)`` bool, False for padding rows that must not enter the
                BatchNorm statistics.
        """
        h = self.embed(x, train=train, key=key, mask=mask)
        h = ops.dropout(h, 0.4, layer_key(key, len(self.convs)) if train else None)
        return self.out(h)


@dataclass(frozen=True)
class CNNSettings:
    """The CNN's architecture (the seed's by default).

    Attributes:
        channels: output channels of each conv block, one block per value (each block halves
            the frames and the coefficients: a segment must keep at least one of each).
    """

    channels: tuple[int, ...] = setting(CHANNELS, minimum=1)


def build(settings: CNNSettings, n_features: int, n_classes: int, rngs: nnx.Rngs) -> SeedCNN:
    """The CNN of ``settings`` (any coefficient count fits, while the poolings leave one)."""
    return SeedCNN(n_classes, channels=settings.channels, rngs=rngs)


SPEC = ModelSpec(
    name="cnn",
    family=NETWORK,
    description="the seed's CNN: conv blocks on the MFCC image (3, 65,994 values by default)",
    build=build,
    settings=CNNSettings,
    # With the CPU kernels' convolutions (no XLA kernel-gradient convolution inside the loop),
    # one scan per epoch is faster on CPU than a call per step (docs/benchmarks.md, "Kernels").
    cpu_epoch_driver="scan",
    # The synthetic demo's short schedule: fewer epochs, a larger step.
    demo=DemoRecipe(synthetic={"epochs": 20, "learning_rate": 1e-3}),
    seed=SeedFigures(segment_accuracy=0.8249, parameters=65_994),
)
