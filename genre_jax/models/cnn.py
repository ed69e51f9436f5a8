"""The seed study's CNN, layer for layer, as a Flax NNX module.

Input ``(batch, frames, coefficients)`` (431 x 13 for the seed), seen as a one-channel image:

    3 x [Conv 3x3 same (32, 64, 64) + ReLU -> BatchNorm -> MaxPool 2x2 -> Dropout 0.3]
    -> global average pool -> Dense 128 ReLU -> Dropout 0.4 -> Dense classes (logits)

65,994 values for 10 classes counted as Keras counts them (BatchNorm's moving mean and variance
included). BatchNorm uses Keras's momentum 0.99 and epsilon 1e-3; kernels start Glorot-uniform.
Each block is the reference op :func:`genre_jax.kernels.ops.conv_block`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.kernels import ops
from genre_jax.models.layers import glorot_uniform, keras_batch_norm, layer_key
from genre_jax.models.spec import NETWORK, DemoRecipe, ModelSpec, NoSettings, SeedFigures

CHANNELS = (32, 64, 64)


class SeedCNN(nnx.Module):
    """Three conv blocks, global average pooling and a two-layer head (the seed's CNN)."""

    def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs) -> None:
        ins = (1, *CHANNELS[:-1])
        self.convs = nnx.List(
            [
                nnx.Conv(i, o, (3, 3), padding="SAME", kernel_init=glorot_uniform, rngs=rngs)
                for i, o in zip(ins, CHANNELS, strict=True)
            ]
        )
        self.norms = nnx.List([keras_batch_norm(c, rngs) for c in CHANNELS])
        self.hidden = nnx.Linear(CHANNELS[-1], 128, kernel_init=glorot_uniform, rngs=rngs)
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
        h = ops.dropout(h, 0.4, layer_key(key, 3) if train else None)
        return self.out(h)


def build(settings: NoSettings, n_features: int, n_classes: int, rngs: nnx.Rngs) -> SeedCNN:
    """The seed's CNN (its architecture has no settings; any coefficient count fits)."""
    return SeedCNN(n_classes, rngs=rngs)


SPEC = ModelSpec(
    name="cnn",
    family=NETWORK,
    description="the seed's CNN: 3 conv blocks on the MFCC image, 65,994 values",
    build=build,
    # With the CPU kernels' convolutions (no XLA kernel-gradient convolution inside the loop),
    # one scan per epoch is faster on CPU than a call per step (docs/benchmarks.md, "Kernels").
    cpu_epoch_driver="scan",
    # The synthetic demo's short schedule: fewer epochs, a larger step.
    demo=DemoRecipe(synthetic={"epochs": 20, "learning_rate": 1e-3}),
    seed=SeedFigures(segment_accuracy=0.8249, parameters=65_994),
)
