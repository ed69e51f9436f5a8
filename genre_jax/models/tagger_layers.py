"""What the ``musicnn`` wheel's two tagger architectures share, in JAX.

The wheel (:mod:`genre_jax.models.musicnn`) holds four TensorFlow 1 checkpoints of two
architectures: musicnn (:mod:`genre_jax.models.musicnn`) and a VGG-like CNN
(:mod:`genre_jax.models.vgg`). Both read 187 frames x 96 bands of ``logc`` features, both are
built of TensorFlow's batch norm (stored statistics, epsilon 1e-3) and 2-D convolutions with
TensorFlow's padding, and both describe a segment by a fixed-width embedding and a
penultimate layer read by the 50-tag output layer. :class:`Architecture` names one of them
for the code that embeds (``musicnnsvm``) and fine-tunes (``musicnn``), so that either reads
any of the four checkpoints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from genre_jax.kernels.conv import conv2d_valid_patch_gradient

Weights = dict[str, np.ndarray]
Norm = Callable[[Weights, str, jax.Array], jax.Array]
Features = Callable[..., dict[str, jax.Array]]

EPSILON = 1e-3  # TensorFlow's batch-norm default, which both architectures trained with
PATCH_FRAMES = 187  # 3 s at 16 kHz, hop 256: one input patch of either architecture


def batch_norm(w: Weights, name: str, x: jax.Array) -> jax.Array:
    """Batch norm ``name`` with its stored moving statistics (inference)."""
    scale = w[f"{name}/gamma"] * jax.lax.rsqrt(w[f"{name}/moving_variance"] + EPSILON)
    return (x - w[f"{name}/moving_mean"]) * scale + w[f"{name}/beta"]


def convolution(w: Weights, name: str, x: jax.Array, padding: str) -> jax.Array:
    """Convolution + bias + ReLU with TensorFlow's HWIO kernel: 2-D on NHWC ``x``, or on
    ``(B, T, C)`` ``x`` 1-D over time with the kernel's ``(W, C, 1, O)`` as ``(W, C, O)``.

    ``padding`` is ``VALID`` or TensorFlow's ``SAME`` (for even kernels one frame more after
    than before). The 2-D convolutions pad explicitly and run
    :func:`~genre_jax.models.layers.conv2d_valid_patch_gradient`: the same sums, with a
    kernel gradient that fine-tuning can afford on a CPU.
    """
    kernel = w[f"{name}/kernel"]
    if x.ndim == 3:
        y = jax.lax.conv_general_dilated(
            x,
            kernel[:, :, 0, :],
            (1,),
            padding,
            dimension_numbers=("NWC", "WIO", "NWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return jax.nn.relu(y + w[f"{name}/bias"])
    if padding == "SAME":
        widths = [(0, 0)] + [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel.shape[:2]]
        x = jnp.pad(x, [*widths, (0, 0)])
    return jax.nn.relu(conv2d_valid_patch_gradient(x, kernel) + w[f"{name}/bias"])


def patches(x: jax.Array, frames: int = PATCH_FRAMES) -> tuple[jax.Array, int]:
    """``(batch, T, bands)`` -> ``(batch * n, frames, bands)`` patches and ``n`` per item.

    Each item is repeated along time up to ``n = ceil(T / frames)`` whole patches.
    """
    batch, length, bands = x.shape
    count = -(-length // frames)
    repeats = -(-count * frames // length)
    tiled = jnp.tile(x, (1, repeats, 1))[:, : count * frames]
    return tiled.reshape(batch * count, frames, bands), count


@dataclass(frozen=True, eq=False)
class Architecture:
    """One of the wheel's tagger architectures, as embedding and fine-tuning read it.

    Attributes:
        name: ``musicnn``, or the VGG checkpoint whose pooling it follows (``MSD_vgg``,
            ``MTT_vgg``).
        convolutions: the layers below the tags as the checkpoints name them, with their
            kernel shapes (TensorFlow's HWIO; dense layers as ``(in, out)``).
        norms: the batch norms' names and widths; ``batch_normalization`` is the input's.
        features: ``features(w, x, bn, drop)`` on ``(batch, 187, 96)`` patches -> a dict
            holding ``penultimate`` (what the tag layer reads) and the embedding's parts;
            ``bn`` is each batch norm, ``drop`` the training graph's dropout before a
            pretrained dense layer (``None`` at inference).
        embedding: the features' dict -> the embedding ``(batch, embedding_width)``.
        embedding_width: values in the embedding.
        penultimate_width: values the tag layer reads.
        tag_layer: the checkpoints' 50-tag output layer (replaced by a classifier's head).
    """

    name: str
    convolutions: dict[str, tuple[int, ...]]
    norms: dict[str, int]
    features: Features
    embedding: Callable[[dict[str, jax.Array]], jax.Array]
    embedding_width: int
    penultimate_width: int
    tag_layer: str

    @functools.cached_property
    def embeddings(self) -> Callable[[Weights, jax.Array], jax.Array]:
        """``embeddings(w, x)``, jitted (once per architecture): ``(batch, frames, 96)``
        inputs -> ``embedding(features(w, patch))`` of each item's repeated 187-frame patches
        (:func:`patches`), averaged over them."""

        @jax.jit
        def embeddings(w: Weights, x: jax.Array) -> jax.Array:
            batch = x.shape[0]
            tiles, count = patches(jnp.asarray(x, jnp.float32))
            parts = self.embedding(self.features(w, tiles))
            return parts.reshape(batch, count, -1).mean(axis=1)

        return embeddings
