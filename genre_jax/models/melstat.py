"""``melstat``, our network for short log-mel segments (issue 8), the best we measured on real
music.

Features ``(batch, frames, coefficients)`` (87 x 128 log-mel bands for 2 s at hop 512); called
as the seed's networks: ``model(x, train=..., key=..., mask=...) -> logits``. The input is
standardised per coefficient with the mean and standard deviation of the training segments
(:class:`Standardize`, set before training and saved with the model); BatchNorm layers skip
padded rows through ``mask`` as in the seed's CNN. Unregistered research networks built from the
same blocks live in ``experiments/``, outside the package.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genre_jax.kernels import ops
from genre_jax.models.layers import layer_key
from genre_jax.models.spec import NETWORK, DemoRecipe, ModelSpec
from genre_jax.models.summary import std, summary_statistics, summary_width
from genre_jax.settings import ConfigError, setting


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


def batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, rngs=rngs)


def row_mask(mask: jax.Array | None, ndim: int) -> jax.Array | None:
    """``(batch,)`` mask broadcast against an activation of ``ndim`` dimensions."""
    return None if mask is None else mask.reshape(mask.shape + (1,) * (ndim - 1))


class Residual1D(nnx.Module):
    """Conv(k) -> BN -> ReLU -> Conv(k) -> BN, plus a (projected) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(c_in, c_out, (kernel,), padding="SAME", use_bias=False, rngs=rngs)
        self.norm1 = batch_norm(c_out, rngs)
        self.conv2 = nnx.Conv(c_out, c_out, (kernel,), padding="SAME", use_bias=False, rngs=rngs)
        self.norm2 = batch_norm(c_out, rngs)
        self.skip = (
            nnx.Conv(c_in, c_out, (1,), use_bias=False, rngs=rngs) if c_in != c_out else None
        )

    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None) -> jax.Array:
        m = row_mask(mask, 3)
        h = jax.nn.relu(self.norm1(self.conv1(x), use_running_average=not train, mask=m))
        h = self.norm2(self.conv2(h), use_running_average=not train, mask=m)
        shortcut = x if self.skip is None else self.skip(x)
        return jax.nn.relu(h + shortcut)


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
        self.input_norm = batch_norm(n_features, rngs) if input_norm == "batchnorm" else None
        self.standardize = Standardize(n_features) if input_norm == "standardize" else None
        ins = (n_features, *channels[:-1])
        self.blocks = nnx.List(
            [Residual1D(i, o, kernel, rngs=rngs) for i, o in zip(ins, channels, strict=True)]
        )
        width = 2 * channels[-1] + summary_width(
            n_features, modulation_groups, modulation_bins, cepstral
        )
        self.hidden = nnx.Linear(width, hidden, rngs=rngs)
        self.hidden_norm = batch_norm(hidden, rngs)
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
        h = self.embed(x, train=train, key=key, mask=mask)
        h = ops.dropout(h, self.head_dropout, layer_key(key, 101) if train else None)
        return self.out(h)

    def embed(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        key: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> jax.Array:
        """The penultimate layer ``(batch, hidden)``: the hidden dense layer after its
        BatchNorm and ReLU, which the output layer reads. Arguments as :meth:`__call__`'s."""
        m3 = row_mask(mask, 3)
        if self.standardize is not None:
            x = self.standardize(x)
        if self.input_norm is not None:
            x = self.input_norm(x, use_running_average=not train, mask=m3)
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h, train, mask)
            h = ops.dropout(h, self.dropout_rate, layer_key(key, i) if train else None)
        skip = summary_statistics(x, self.modulation_groups, self.modulation_bins, self.cepstral)
        h = jnp.concatenate([h.mean(axis=1), std(h, 1), skip], axis=-1)
        h = ops.dropout(h, self.head_dropout, layer_key(key, 100) if train else None)
        h = self.hidden_norm(self.hidden(h), use_running_average=not train, mask=row_mask(mask, 2))
        return jax.nn.relu(h)

    def fit_input_statistics(self, x: np.ndarray) -> None:
        """Set the input standardisation from the training segments (no-op without one)."""
        if self.standardize is not None:
            self.standardize.fit(x)


def count_values(model: nnx.Module) -> dict[str, int]:
    """Trainable parameters and all state values (Keras's count: BatchNorm statistics too)."""
    params = sum(a.size for a in jax.tree.leaves(nnx.state(model, nnx.Param)))
    total = sum(a.size for a in jax.tree.leaves(nnx.state(model)))
    return {"params": int(params), "total": int(total)}


INPUT_NORMS = ("standardize", "batchnorm", "none")


@dataclass(frozen=True)
class MelStatSettings:
    """melstat's architecture (the values measured best on gtzan-dev, issue 8).

    Attributes:
        width: channels of each residual 1-D block.
        blocks: residual blocks of the frame encoder.
        kernel: time kernel of the blocks' convolutions, frames.
        hidden: units of the hidden dense layer.
        dropout_rate: dropout after each block.
        head_dropout: dropout before and after the hidden dense layer.
        input_norm: ``standardize`` (training-set mean and deviation per band, fixed),
            ``batchnorm`` or ``none``.
        modulation_groups: band groups of the modulation spectrum in the skip statistics,
            used when it divides the bands (otherwise no modulation spectrum); 0: none.
        modulation_bins: modulation frequencies kept per group.
        cepstral: DCT coefficients whose statistics join the skip; 0: none.
    """

    width: int = setting(128, minimum=1)
    blocks: int = setting(1, minimum=1)
    kernel: int = setting(3, minimum=1)
    hidden: int = setting(128, minimum=1)
    dropout_rate: float = setting(0.1, minimum=0, below=1)
    head_dropout: float = setting(0.5, minimum=0, below=1)
    input_norm: str = setting("standardize", choices=INPUT_NORMS)
    modulation_groups: int = setting(16, minimum=0)
    modulation_bins: int = setting(11, minimum=1)
    cepstral: int = setting(0, minimum=0)


def build(settings: MelStatSettings, n_features: int, n_classes: int, rngs: nnx.Rngs) -> MelStatNet:
    """melstat for ``n_features`` bands; the modulation spectrum needs bands that split into
    ``modulation_groups`` equal groups (log-mel 64, 128 ... for 16), else it is left out."""
    groups = settings.modulation_groups
    if groups and n_features % groups:
        groups = 0
    if settings.cepstral > n_features:
        raise ConfigError(
            f"model setting cepstral={settings.cepstral}: more than the {n_features} "
            "coefficients per frame"
        )
    return MelStatNet(
        n_features,
        n_classes,
        channels=(settings.width,) * settings.blocks,
        kernel=settings.kernel,
        hidden=settings.hidden,
        dropout_rate=settings.dropout_rate,
        head_dropout=settings.head_dropout,
        input_norm=settings.input_norm,
        modulation_groups=groups,
        modulation_bins=settings.modulation_bins,
        cepstral=settings.cepstral,
        rngs=rngs,
    )


# Our recipe (configs/gtzan-dev-melstat.json), on 128 log-mel bands.
RECIPE = {
    "epochs": 60,
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "warmup_steps": 60,
    "patience": 0,
    "select": "last",
    "time_flip_mode": "random",
    "label_smoothing": 0.1,
    "specaug_masks": 2,
}

SPEC = ModelSpec(
    name="melstat",
    family=NETWORK,
    description="ours: a residual frame encoder + statistics pooling over log-mel bands",
    build=build,
    settings=MelStatSettings,
    demo=DemoRecipe(
        features={"kind": "logmel", "n_mels": 128},
        train=RECIPE,
        synthetic={"epochs": 20, "warmup_steps": 20},
    ),
)
