"""``musicnn`` (ours): a pretrained tagger of the musicnn wheel fine-tuned as a classifier of
your genres.

The network of the checkpoint ``weights`` names (:mod:`genre_jax.models.musicnn` for
``MSD_musicnn`` and ``MTT_musicnn``, :mod:`genre_jax.models.vgg` for ``MSD_vgg`` and
``MTT_vgg``: their published layers, the same JAX functions) becomes a Flax NNX module trained
by :mod:`genre_jax.step`'s jitted step like the seed's networks. A fresh run starts from the
wheel's weights (:meth:`MusicnnNet.load_pretrained`); the 50-tag output layer is replaced by a
new head of one logit per genre:

- ``head_input="embedding"``: a new batch norm over the values ``musicnnsvm`` embeds (1,706
  for musicnn: the middle features max- and mean-pooled over time, and the penultimate layer;
  1,280 for VGG: each pooled map's maximum and mean), dropout, a dense layer;
- ``head_input="penultimate"``: dropout and a dense layer on what the tag layer read (musicnn's
  200-unit layer, VGG's flattened last pooling of 256 values), the classic replacement of the
  last layer.

Every published variable is a :class:`~genre_jax.models.layers.Pretrained` parameter (or, for
the batch norms' moving statistics, state), so the shared settings ``freeze_epochs`` (train
the head alone first) and ``pretrained_lr_scale`` (a smaller learning rate for them) apply.
``batchnorm`` says what the published batch norms do in training: ``frozen`` (their stored
statistics, as at inference, never updated) or ``updated`` (each batch's own statistics over
its real rows, and moving averages with TensorFlow's momentum 0.99). One exception: the batch
norm of the whole input (one mean, variance, scale and shift for all bands) stays as
published (:class:`InputNorm`). It standardises the input; training its two values would need
the input's gradient through every front-end convolution, 12 of the 14 s of a batch-32
gradient on a 2-core CPU. Dropout of the published training graph (``dropout_rate``, 0.5 as
published) precedes musicnn's back-end dense layer and the head (VGG's blocks run without
their 0.25 dropouts).

Segments shorter than the taggers' 187 frames are repeated up to one patch, longer ones to
whole patches whose outputs are averaged (:func:`~genre_jax.models.tagger_layers.patches`).
The fine-tuned weights are in the run's checkpoints: evaluating or predicting needs no
download.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.kernels import ops
from genre_jax.models import musicnn
from genre_jax.models.layers import Pretrained, layer_key
from genre_jax.models.musicnn import CHECKPOINTS, DEFAULT_CHECKPOINT, INPUT_FEATURES
from genre_jax.models.spec import NETWORK, ModelSpec
from genre_jax.models.tagger_layers import EPSILON, Norm, Weights, batch_norm, patches
from genre_jax.settings import ConfigError, setting

INPUT_NORM = "batch_normalization"  # of the whole input: one mean, variance, scale, shift


class InputNorm(nnx.Variable):
    """The published batch norm of the tagger's input, kept as published (not trained)."""


MOMENTUM = 0.99  # TensorFlow's batch norm default, which the published model trained with
HEAD_INPUTS = ("embedding", "penultimate")
BATCHNORM_MODES = ("frozen", "updated")


class MusicnnNet(nnx.Module):
    """The layers of the checkpoint's architecture (its ``convolutions`` and ``norms``,
    :func:`~genre_jax.models.musicnn.architecture_of`) with a new head; see the module
    docstring.

    Built with zeros in the published shapes (a checkpoint's values replace them, or
    :meth:`load_pretrained` the wheel's); the head is initialised from ``rngs``.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        weights: str = DEFAULT_CHECKPOINT,
        head_input: str = "embedding",
        batchnorm: str = "frozen",
        dropout_rate: float = 0.5,
        rngs: nnx.Rngs,
    ) -> None:
        self.weights = weights
        self.head_input = head_input
        self.batchnorm = batchnorm
        self.dropout_rate = dropout_rate
        network = musicnn.architecture_of(weights)
        layers = {
            name: {"kernel": Pretrained(jnp.zeros(shape)), "bias": Pretrained(jnp.zeros(shape[-1]))}
            for name, shape in network.convolutions.items()
        }
        for name, width in network.norms.items():
            weight, stat = (
                (InputNorm, InputNorm) if name == INPUT_NORM else (Pretrained, nnx.BatchStat)
            )
            layers[name] = {
                "gamma": weight(jnp.ones(width)),
                "beta": weight(jnp.zeros(width)),
                "moving_mean": stat(jnp.zeros(width)),
                "moving_variance": stat(jnp.ones(width)),
            }
        self.layers = nnx.Dict({k: nnx.Dict(v) for k, v in layers.items()})
        embedded = head_input == "embedding"
        width = network.embedding_width if embedded else network.penultimate_width
        self.head_norm = (
            nnx.BatchNorm(width, momentum=MOMENTUM, epsilon=EPSILON, rngs=rngs)
            if embedded
            else None
        )
        self.out = nnx.Linear(width, n_classes, rngs=rngs)

    def load_pretrained(self, log: Callable[[str], None] = print) -> None:
        """Set every published variable to the wheel's ``weights`` checkpoint (fetched and
        cached once, :func:`~genre_jax.models.musicnn.load_weights`)."""
        published = musicnn.load_weights(log=log, checkpoint=self.weights)
        for layer, variables in self.layers.items():
            for name, variable in variables.items():
                value = published[f"{layer}/{name}"]
                if value.shape != variable[...].shape:
                    raise ConfigError(
                        f"musicnn checkpoint {self.weights}: {layer}/{name} has shape "
                        f"{value.shape}, the network {variable[...].shape}"
                    )
                variable[...] = jnp.asarray(value, jnp.float32)

    def _weights(self) -> Weights:
        return {
            f"{layer}/{name}": variable[...]
            for layer, variables in self.layers.items()
            for name, variable in variables.items()
        }

    def _norm(self, train: bool, mask: jax.Array | None) -> Norm:
        """The published batch norms' function in this call (see ``batchnorm``)."""
        if not train or self.batchnorm == "frozen":
            return batch_norm

        def batch_statistics_norm(w: Weights, name: str, x: jax.Array) -> jax.Array:
            if name == INPUT_NORM:
                return batch_norm(w, name, x)
            axes = tuple(range(x.ndim - 1))
            rows = jnp.ones(x.shape[:1]) if mask is None else mask.astype(x.dtype)
            weights = rows.reshape((-1,) + (1,) * (x.ndim - 1))  # broadcast, not materialised
            count = jnp.maximum(jnp.sum(rows) * math.prod(x.shape[1:-1]), 1.0)
            mean = jnp.sum(x * weights, axes) / count
            variance = jnp.sum(jnp.square(x - mean) * weights, axes) / count
            stats = self.layers[name]
            stats["moving_mean"][...] = MOMENTUM * stats["moving_mean"][...] + (1 - MOMENTUM) * mean
            stats["moving_variance"][...] = (
                MOMENTUM * stats["moving_variance"][...] + (1 - MOMENTUM) * variance
            )
            scale = w[f"{name}/gamma"] * jax.lax.rsqrt(variance + EPSILON)
            return (x - mean) * scale + w[f"{name}/beta"]

        return batch_statistics_norm

    def embed(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """What the head reads, ``(batch, width)`` (the architecture's embedding or
        penultimate layer; see ``head_input``), averaged over each segment's 187-frame
        patches."""
        network = musicnn.architecture_of(self.weights)
        batch = x.shape[0]
        tiles, count = patches(x)
        tile_mask = None if mask is None else jnp.repeat(mask, count)
        drop_key = layer_key(key, 0) if train else None
        out = network.features(
            self._weights(),
            tiles,
            self._norm(train, tile_mask),
            lambda h: ops.dropout(h, self.dropout_rate, drop_key),
        )
        h = network.embedding(out) if self.head_input == "embedding" else out["penultimate"]
        return h.reshape(batch, count, -1).mean(axis=1)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Logits ``(batch, classes)`` of ``logc`` features ``(batch, frames, 96)``."""
        h = self.embed(x, train=train, key=key, mask=mask)
        if self.head_norm is not None:
            m = None if mask is None else mask[:, None]
            h = self.head_norm(h, use_running_average=not train, mask=m)
        h = ops.dropout(h, self.dropout_rate, layer_key(key, 1) if train else None)
        return self.out(h)


@dataclass(frozen=True)
class MusicnnSettings:
    """The fine-tuned tagger.

    Attributes:
        weights: the wheel's checkpoint it starts from, and with it the network: musicnn
            (``MSD_musicnn``, Million Song Dataset tags; ``MTT_musicnn``, MagnaTagATune tags)
            or the VGG-like baseline (``MSD_vgg``, ``MTT_vgg``).
        head_input: what the new head reads: ``embedding`` (the values musicnnsvm embeds,
            batch-normalised) or ``penultimate`` (what the tag layer read).
        batchnorm: the published batch norms in training: ``frozen`` (stored statistics) or
            ``updated`` (batch statistics, moving averages updated).
        dropout_rate: dropout before the back end's dense layer and before the head.
    """

    weights: str = setting(DEFAULT_CHECKPOINT, choices=tuple(CHECKPOINTS))
    head_input: str = setting("embedding", choices=HEAD_INPUTS)
    batchnorm: str = setting("frozen", choices=BATCHNORM_MODES)
    dropout_rate: float = setting(0.5, minimum=0, below=1)


def build(settings: MusicnnSettings, n_features: int, n_classes: int, rngs: nnx.Rngs) -> MusicnnNet:
    """musicnn with a head of ``n_classes``, for musicnn's 96 ``logc`` bands."""
    if n_features != INPUT_FEATURES["n_mels"]:
        raise ConfigError(
            f"model='musicnn': features of {n_features} coefficients per frame; musicnn reads "
            f"{INPUT_FEATURES['n_mels']} mel bands"
        )
    return MusicnnNet(
        n_classes,
        weights=settings.weights,
        head_input=settings.head_input,
        batchnorm=settings.batchnorm,
        dropout_rate=settings.dropout_rate,
        rngs=rngs,
    )


SPEC = ModelSpec(
    name="musicnn",
    family=NETWORK,
    description="ours: a pretrained tagger fine-tuned with a new head (needs its weights)",
    build=build,
    settings=MusicnnSettings,
    input_features=INPUT_FEATURES,
    cpu_epoch_driver="steps",
)
