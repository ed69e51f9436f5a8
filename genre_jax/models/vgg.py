"""The ``musicnn`` wheel's VGG-like tagger (``MSD_vgg``, ``MTT_vgg``) as a pure JAX function.

Beside musicnn, the wheel publishes a computer-vision-style baseline, a stack of small square
convolutions (its ``vgg`` model with 128 filters), trained on the same two tag sets. Its
layers, as the checkpoints' variables and saved graphs confirm:

- input: the same ``(187 frames, 96 bands)`` of ``logc`` as musicnn, batch normalised as a
  whole (one mean and variance);
- five blocks, each a 3 x 3 convolution of 128 filters ('same' padding, ReLU), batch norm,
  then a max pooling with no padding (:data:`POOLS`), down to 2 frames x 1 band (``pool5``);
- ``pool5`` flattened (256 values, time-major) is the *penultimate* layer, read by a dense
  layer of 50 tags (sigmoid). Dropout (0.25 after each pooling, 0.5 before the tags) is off at
  inference.

The two checkpoints do not pool alike, although their variables have the same shapes: their
saved graphs (the ``.meta`` files) say so, and the wheel's own model code describes only
``MTT_vgg``'s. ``MTT_vgg`` pools 4 x 1 windows with stride 2 x 2 after the first block
(``pool1`` 92 x 48), then 2 x 2 windows with stride 2 (46 x 24, 23 x 12, 11 x 6); ``MSD_vgg``
pools 4 x 1 windows with stride 4 x 1 (46 x 96), then 1 x 4 with stride 1 x 4 (46 x 24),
then as ``MTT_vgg``. Both end with 4 x 4 windows of stride 4.

The embedding ``musicnnsvm`` reads from it is each of the five pooled maps reduced to its
maximum and its mean over time and frequency, per filter: 5 x 2 x 128 = 1,280 values. The
same reduction as musicnn's (maximum and mean over time), taken over every map the published
extractor returns, from the first block's local timbre to the last's whole-patch summary.

Fine-tuning (``musicnn --model.weights MSD_vgg``) trains every block; the new head replaces
the tag layer and its dropout, and the 0.25 dropouts between blocks are not applied (the
settings' ``dropout_rate`` is the head's).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from genre_jax.models.tagger_layers import (
    Architecture,
    Norm,
    Weights,
    batch_norm,
    convolution,
)

FILTERS = 128
BLOCKS = ("1CNN", "2CNN", "3CNN", "4CNN", "5CNN")  # the convolutions, as the checkpoints name them
CONVOLUTIONS = {name: (3, 3, 1 if i == 0 else FILTERS, FILTERS) for i, name in enumerate(BLOCKS)}
NORMS = {"batch_normalization": 1, **{f"batch_normalization_{i}": FILTERS for i in range(1, 6)}}
Pools = tuple[tuple[tuple[int, int], tuple[int, int]], ...]
# Each block's (window, stride) over (time, band), as each checkpoint's saved graph pools.
_SHARED_POOLS = (((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
POOLS: dict[str, Pools] = {
    "MSD_vgg": (((4, 1), (4, 1)), ((1, 4), (1, 4)), *_SHARED_POOLS),
    "MTT_vgg": (((4, 1), (2, 2)), ((2, 2), (2, 2)), *_SHARED_POOLS),
}
PENULTIMATE_WIDTH = 2 * 1 * FILTERS  # pool5 is 2 frames x 1 band
EMBEDDING_WIDTH = len(BLOCKS) * 2 * FILTERS
TAG_LAYER = "dense"  # (256, 50)


def _max_pool(x: jax.Array, window: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    """TensorFlow's ``max_pooling2d`` with 'valid' padding over NHWC ``x``."""
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *stride, 1), "VALID"
    )


def features(
    w: Weights,
    x: jax.Array,
    bn: Norm = batch_norm,
    drop: object = None,
    *,
    pools: Pools = POOLS["MTT_vgg"],
) -> dict[str, jax.Array]:
    """The VGG tagger up to its penultimate layer, on ``(batch, 187, 96)`` inputs, pooling
    as ``pools`` says (the checkpoint's :data:`POOLS`).

    Returns ``pool1`` .. ``pool5`` (NHWC maps) and ``penultimate`` (``pool5`` flattened,
    ``(batch, 256)``). ``bn(w, name, x)`` is each batch norm (stored statistics by default);
    ``drop`` is accepted for :class:`~genre_jax.models.tagger_layers.Architecture`'s
    signature and unused: no pretrained dense layer follows the blocks.
    """
    h = bn(w, "batch_normalization", x[..., None])
    out = {}
    for i, (name, (window, stride)) in enumerate(zip(BLOCKS, pools, strict=True), start=1):
        h = bn(w, f"batch_normalization_{i}", convolution(w, name, h, "SAME"))
        h = _max_pool(h, window, stride)
        out[f"pool{i}"] = h
    out["penultimate"] = h.reshape(len(h), -1)
    return out


def embedding(out: dict[str, jax.Array]) -> jax.Array:
    """Each pooled map's maximum and mean over time and frequency: ``(batch, 1280)``."""
    parts = []
    for i in range(1, len(BLOCKS) + 1):
        pooled = out[f"pool{i}"]
        parts += [pooled.max(axis=(1, 2)), pooled.mean(axis=(1, 2))]
    return jnp.concatenate(parts, axis=-1)


def network(w: Weights, x: jax.Array, checkpoint: str) -> dict[str, jax.Array]:
    """The VGG tagger of ``checkpoint`` (``MSD_vgg`` or ``MTT_vgg``) on ``(batch, 187, 96)``
    inputs: :func:`features` and ``tags`` (batch, 50), the probabilities of its tags."""
    out = features(w, x, pools=POOLS[checkpoint])
    logits = jnp.matmul(out["penultimate"], w[f"{TAG_LAYER}/kernel"]) + w[f"{TAG_LAYER}/bias"]
    return {**out, "tags": jax.nn.sigmoid(logits)}


def _architecture(checkpoint: str) -> Architecture:
    pooled = functools.partial(features, pools=POOLS[checkpoint])
    return Architecture(
        name=checkpoint,
        convolutions=CONVOLUTIONS,
        norms=NORMS,
        features=pooled,
        embedding=embedding,
        embedding_width=EMBEDDING_WIDTH,
        penultimate_width=PENULTIMATE_WIDTH,
        tag_layer=TAG_LAYER,
    )


# The network of each VGG checkpoint (the same layers, pooled as its graph pools).
ARCHITECTURES = {checkpoint: _architecture(checkpoint) for checkpoint in POOLS}
