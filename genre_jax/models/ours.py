"""Our own networks for short log-mel segments (issue 8).

:class:`MelStatNet` is registered as ``melstat`` (the best measured on real music); the other
two are research models kept with their measurements (``benchmarks/ours_experiments.py``).
All take features ``(batch, frames, coefficients)`` (87 x 128 log-mel bands for 2 s at hop 512)
and are called as the seed's networks: ``model(x, train=..., key=..., mask=...) -> logits``.

- :class:`MelTCN`: a temporal convolutional network. Every mel band is a channel, so each layer
  sees the whole spectrum of a few frames; residual blocks of two 1-D convolutions with
  BatchNorm, max pooling over time between them, then mean and max over time concatenated.
- :class:`MelCNN`: a small 2-D CNN with frequency-aware pooling. Conv 3x3 blocks pool time and
  frequency, but the last feature map keeps its frequency positions (flattened with the
  channels) instead of being averaged over them as the seed's CNN does, since where in the
  spectrum energy sits is most of what tells genres apart.

``MelStatNet`` standardises each coefficient with the mean and standard deviation of the
training segments (:class:`Standardize`, set before training and saved with the model); the
research models start with an optional input BatchNorm instead. BatchNorm layers skip padded
rows through ``mask`` as in the seed's CNN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genre_jax.models.layers import dropout, layer_key, max_pool_2x2
from genre_jax.models.summary import std, summary_statistics, summary_width


class InputStatistic(nnx.Variable):
    """A fixed statistic of the training data (not trained, saved with the checkpoint)."""


class Standardize(nnx.Module):
    """``(x - mean) / std`` per coefficient, with mean and std of the training segments.

    The statistics are set once, before training, by :meth:`fit`, and travel with the model's
    state, so evaluation and prediction standardise exactly as training did.
    """

    def __init__(self, n_features: int) -> None:
        self.mean = InputStatistic(jnp.zeros(n_features, jnp.float32))
        self.std = InputStatistic(jnp.ones(n_features, jnp.float32))

    def fit(self, x: np.ndarray, chunk: int = 512) -> None:
        """Set mean and std over all segments and frames of ``x`` ``(n, frames, coefficients)``.

        Accumulated in float64 over chunks of segments, so a large training set needs no
        float64 copy.
        """
        if len(x) == 0:
            raise ValueError("input statistics need at least one training segment")
        total = np.zeros(x.shape[-1])
        squares = np.zeros(x.shape[-1])
        for start in range(0, len(x), chunk):
            part = np.asarray(x[start : start + chunk], np.float64).reshape(-1, x.shape[-1])
            total += part.sum(axis=0)
            squares += np.square(part).sum(axis=0)
        count = len(x) * x.shape[1]
        mean = total / count
        deviation = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-5
        self.mean[...] = jnp.asarray(mean, jnp.float32)
        self.std[...] = jnp.asarray(deviation, jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        return (x - self.mean[...]) / self.std[...]


def _norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, rngs=rngs)


def _row_mask(mask: jax.Array | None, ndim: int) -> jax.Array | None:
    """``(batch,)`` mask broadcast against an activation of ``ndim`` dimensions."""
    return None if mask is None else mask.reshape(mask.shape + (1,) * (ndim - 1))


class _Residual1D(nnx.Module):
    """Conv(k) -> BN -> ReLU -> Conv(k) -> BN, plus a (projected) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(c_in, c_out, (kernel,), padding="SAME", use_bias=False, rngs=rngs)
        self.norm1 = _norm(c_out, rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (kernel,), padding="SAME", use_bias=False, rngs=rngs)
        self.norm2 = _norm(c_out, rngs)
        self.skip = (
            nnx.Conv(c_in, c_out, (1,), use_bias=False, rngs=rngs) if c_in != c_out else None
        )

    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None) -> jax.Array:
        m = _row_mask(mask, 3)
        h = jax.nn.relu(self.norm1(self.conv1(x), use_running_average=not train, mask=m))
        h = self.norm2(self.conv2(h), use_running_average=not train, mask=m)
        shortcut = x if self.skip is None else self.skip(x)
        return jax.nn.relu(h + shortcut)


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
        self.input_norm = _norm(n_features, rngs) if input_norm else None
        self.stem = nnx.Conv(n_features, channels[0], (kernel,), padding="SAME", rngs=rngs)
        self.stem_norm = _norm(channels[0], rngs)
        ins = (channels[0], *channels[:-1])
        self.blocks = nnx.List(
            [_Residual1D(i, o, kernel, rngs=rngs) for i, o in zip(ins, channels, strict=True)]
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
        m = _row_mask(mask, 3)
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
        self.input_norm = _norm(n_features, rngs) if input_norm else None
        ins = (1, *channels[:-1])
        self.convs = nnx.List(
            [
                nnx.Conv(i, o, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
                for i, o in zip(ins, channels, strict=True)
            ]
        )
        self.norms = nnx.List([_norm(c, rngs) for c in channels])
        freq = n_features
        for _ in channels:
            freq //= 2
        self.project = nnx.Linear(freq * channels[-1], hidden, rngs=rngs)
        self.project_norm = _norm(hidden, rngs)
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
            h = self.input_norm(h, use_running_average=not train, mask=_row_mask(mask, 3))
        h = h[..., None]
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h), use_running_average=not train, mask=_row_mask(mask, 4))
            h = max_pool_2x2(jax.nn.relu(h))
            h = dropout(h, self.dropout_rate, layer_key(key, i) if train else None)
        b, t, f, c = h.shape
        h = self.project(h.reshape(b, t, f * c))
        h = jax.nn.relu(
            self.project_norm(h, use_running_average=not train, mask=_row_mask(mask, 3))
        )
        h = jnp.concatenate([h.mean(axis=1), h.max(axis=1)], axis=-1)
        h = dropout(h, self.head_dropout, layer_key(key, 100) if train else None)
        return self.out(h)


class MelStatNet(nnx.Module):
    """Frame encoder + statistics pooling, with the input's own band statistics as a skip.

    Registered as ``melstat``: ``input standardisation -> [residual 1-D block] x len(channels)
    (no time pooling) -> mean and standard deviation over time``, concatenated with skip
    statistics of the standardised input: per band the mean, the standard deviation and the
    standard deviation of frame-to-frame differences; with ``modulation_groups`` the
    :func:`~genre_jax.models.summary.modulation_spectrum` of band groups (rhythm); with
    ``cepstral`` the same three statistics of the first DCT coefficients
    (:func:`~genre_jax.models.summary.summary_statistics`). Then ``dropout ->
    Dense(hidden) -> BN -> ReLU -> dropout -> Dense``. The skip statistics are what a
    summary-statistics SVM sees; the convolutional branch adds learned, local
    spectro-temporal patterns.
    """

    def __init__(
        self,
        n_features: int,
        num_classes: int = 10,
        *,
        channels: tuple[int, ...] = (128,),
        kernel: int = 3,
        hidden: int = 128,
        dropout_rate: float = 0.1,
        head_dropout: float = 0.5,
        input_norm: str = "standardize",
        modulation_groups: int = 0,
        modulation_bins: int = 11,
        cepstral: int = 0,
        rngs: nnx.Rngs,
    ) -> None:
        if modulation_groups and n_features % modulation_groups:
            raise ValueError(
                f"modulation_groups={modulation_groups}: must divide the {n_features} coefficients"
            )
        self.modulation_groups = modulation_groups
        self.cepstral = cepstral
        self.modulation_bins = modulation_bins
        if input_norm not in ("standardize", "batchnorm", "none"):
            raise ValueError(f"input_norm={input_norm!r}: 'standardize', 'batchnorm' or 'none'")
        self.input_norm = _norm(n_features, rngs) if input_norm == "batchnorm" else None
        self.standardize = Standardize(n_features) if input_norm == "standardize" else None
        ins = (n_features, *channels[:-1])
        self.blocks = nnx.List(
            [_Residual1D(i, o, kernel, rngs=rngs) for i, o in zip(ins, channels, strict=True)]
        )
        width = 2 * channels[-1] + summary_width(
            n_features, modulation_groups, modulation_bins, cepstral
        )
        self.hidden = nnx.Linear(width, hidden, rngs=rngs)
        self.hidden_norm = _norm(hidden, rngs)
        self.out = nnx.Linear(hidden, num_classes, rngs=rngs)
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
        m3 = _row_mask(mask, 3)
        if self.standardize is not None:
            x = self.standardize(x)
        if self.input_norm is not None:
            x = self.input_norm(x, use_running_average=not train, mask=m3)
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h, train, mask)
            h = dropout(h, self.dropout_rate, layer_key(key, i) if train else None)
        skip = summary_statistics(x, self.modulation_groups, self.modulation_bins, self.cepstral)
        h = jnp.concatenate([h.mean(axis=1), std(h, 1), skip], axis=-1)
        h = dropout(h, self.head_dropout, layer_key(key, 100) if train else None)
        h = self.hidden_norm(self.hidden(h), use_running_average=not train, mask=_row_mask(mask, 2))
        h = dropout(jax.nn.relu(h), self.head_dropout, layer_key(key, 101) if train else None)
        return self.out(h)

    def fit_input_statistics(self, x: np.ndarray) -> None:
        """Set the input standardisation from the training segments (no-op without one)."""
        if self.standardize is not None:
            self.standardize.fit(x)


def count_values(model: nnx.Module) -> dict[str, int]:
    """Trainable parameters and all state values (Keras's count: BatchNorm statistics too)."""
    params = sum(a.size for a in jax.tree.leaves(nnx.state(model, nnx.Param)))
    total = sum(a.size for a in jax.tree.leaves(nnx.state(model)))
    return {"params": int(params), "total": int(total)}
