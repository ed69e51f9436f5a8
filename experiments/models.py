"""Research networks for short log-mel segments (issue 8), not registered: kept with their
measurements (``experiments/ours_experiments.py``), outside the installed package.

- :class:`MelTCN`: a temporal convolutional network. Every mel band is a channel, so each layer
  sees the whole spectrum of a few frames; residual blocks of two 1-D convolutions with
  BatchNorm, max pooling over time between them, then mean and max over time concatenated.
- :class:`MelCNN`: a small 2-D CNN with frequency-aware pooling. Conv 3x3 blocks pool time and
  frequency, but the last feature map keeps its frequency positions (flattened with the
  channels) instead of being averaged over them as the seed's CNN does, since where in the
  spectrum energy sits is most of what tells genres apart.

Both start with an optional input BatchNorm and are called as the registered networks:
``model(x, train=..., key=..., mask=...) -> logits``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.kernels.ops import dropout
from genre_jax.models.layers import layer_key, max_pool_2x2
from genre_jax.models.melstat import Residual1D, batch_norm, row_mask


class MelTCN(nnx.Module):
    """Temporal CNN over log-mel frames (bands as channels) with a mean+max pooled head.

    ``input BN -> Conv1D(k=3, c0) -> BN -> ReLU -> [residual block -> MaxPool(2) over time
    -> dropout] x len(channels) -> concat(mean, max over time) -> dropout -> Dense``.
    """

    def __init__(
        self,
        n_features: int,
        num_classes: int = 10,
        *,
        channels: tuple[int, ...] = (96, 96, 128),
        kernel: int = 3,
        dropout_rate: float = 0.2,
        head_dropout: float = 0.5,
        input_norm: bool = True,
        rngs: nnx.Rngs,
    ) -> None:
        self.input_norm = batch_norm(n_features, rngs) if input_norm else None
        self.stem = nnx.Conv(n_features, channels[0], (kernel,), padding="SAME", rngs=rngs)
        self.stem_norm = batch_norm(channels[0], rngs)
        ins = (channels[0], *channels[:-1])
        self.blocks = nnx.List(
            [Residual1D(i, o, kernel, rngs=rngs) for i, o in zip(ins, channels, strict=True)]
        )
        self.out = nnx.Linear(2 * channels[-1], num_classes, rngs=rngs)
        self.dropout_rate = dropout_rate
        self.head_dropout = head_dropout

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Logits ``(batch, classes)`` of features ``(batch, frames, coefficients)``."""
        m = row_mask(mask, 3)
        h = x
        if self.input_norm is not None:
            h = self.input_norm(h, use_running_average=not train, mask=m)
        h = jax.nn.relu(self.stem_norm(self.stem(h), use_running_average=not train, mask=m))
        for i, block in enumerate(self.blocks):
            h = block(h, train, mask)
            b, t, c = h.shape
            h = h[:, : t // 2 * 2].reshape(b, t // 2, 2, c).max(axis=2)
            h = dropout(h, self.dropout_rate, layer_key(key, i) if train else None)
        h = jnp.concatenate([h.mean(axis=1), h.max(axis=1)], axis=-1)
        h = dropout(h, self.head_dropout, layer_key(key, 100) if train else None)
        return self.out(h)


class MelCNN(nnx.Module):
    """2-D CNN whose head keeps frequency positions (frequency-aware pooling).

    ``input BN -> [Conv 3x3 -> BN -> ReLU -> MaxPool 2x2 -> dropout] x len(channels)
    -> flatten (frequency, channels) per frame -> Dense(hidden) -> ReLU
    -> concat(mean, max over time) -> dropout -> Dense``.
    """

    def __init__(
        self,
        n_features: int,
        num_classes: int = 10,
        *,
        channels: tuple[int, ...] = (16, 32, 64, 64),
        hidden: int = 128,
        dropout_rate: float = 0.1,
        head_dropout: float = 0.5,
        input_norm: bool = True,
        rngs: nnx.Rngs,
    ) -> None:
        self.input_norm = batch_norm(n_features, rngs) if input_norm else None
        ins = (1, *channels[:-1])
        self.convs = nnx.List(
            [
                nnx.Conv(i, o, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
                for i, o in zip(ins, channels, strict=True)
            ]
        )
        self.norms = nnx.List([batch_norm(c, rngs) for c in channels])
        freq = n_features
        for _ in channels:
            freq //= 2
        self.project = nnx.Linear(freq * channels[-1], hidden, rngs=rngs)
        self.project_norm = batch_norm(hidden, rngs)
        self.out = nnx.Linear(2 * hidden, num_classes, rngs=rngs)
        self.dropout_rate = dropout_rate
        self.head_dropout = head_dropout

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """Logits ``(batch, classes)`` of features ``(batch, frames, coefficients)``."""
        h = x
        if self.input_norm is not None:
            h = self.input_norm(h, use_running_average=not train, mask=row_mask(mask, 3))
        h = h[..., None]
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h), use_running_average=not train, mask=row_mask(mask, 4))
            h = max_pool_2x2(jax.nn.relu(h))
            h = dropout(h, self.dropout_rate, layer_key(key, i) if train else None)
        b, t, f, c = h.shape
        h = self.project(h.reshape(b, t, f * c))
        h = jax.nn.relu(self.project_norm(h, use_running_average=not train, mask=row_mask(mask, 3)))
        h = jnp.concatenate([h.mean(axis=1), h.max(axis=1)], axis=-1)
        h = dropout(h, self.head_dropout, layer_key(key, 100) if train else None)
        return self.out(h)
