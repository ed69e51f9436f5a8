"""Training-time augmentation and targets as pure JAX functions (used inside the jitted step).

- :func:`random_time_flip`: each example reversed in time with probability 1/2 (the seed
  instead doubles its training set with every segment reversed; see ``TrainConfig``).
- :func:`spec_augment`: SpecAugment-style masking (Park et al., 2019) without time warping:
  stripes of frames and of coefficients are replaced by the example's mean value.
- :func:`mixup`: mixup (Zhang et al., 2018): each example mixed with another of its batch.
- :func:`smoothed_targets`: label smoothing.

Every function takes an explicit key and returns arrays of the input's shape, so a step stays
one compiled program and a resumed run draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_time_flip(x: jax.Array, key: jax.Array) -> jax.Array:
    """``x`` ``(batch, frames, coefficients)`` with each example reversed in time or not (p=1/2)."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1))
    return jnp.where(flip, x[:, ::-1], x)


def spec_augment(
    x: jax.Array, key: jax.Array, masks: int, max_time: int, max_freq: int
) -> jax.Array:
    """Mask ``masks`` time stripes and ``masks`` coefficient stripes of every example.

    Each stripe's width is uniform in ``0 ... max_time`` frames (``0 ... max_freq``
    coefficients) and its start uniform among the positions where the widest stripe fits;
    stripes may overlap. Masked cells take the example's mean over all frames and
    coefficients, so the masking does not shift the input's level. Widths are capped one
    below the axis length.
    """
    batch, frames, coefficients = x.shape
    max_time = min(max_time, frames - 1)
    max_freq = min(max_freq, coefficients - 1)
    fill = x.mean(axis=(1, 2), keepdims=True)
    t = jnp.arange(frames)[None, :, None]
    f = jnp.arange(coefficients)[None, None, :]
    keep = jnp.ones(x.shape, bool)
    for i in range(masks):
        keys = jax.random.split(jax.random.fold_in(key, i), 4)
        shape = (batch, 1, 1)
        width_t = jax.random.randint(keys[0], shape, 0, max_time + 1)
        start_t = jax.random.randint(keys[1], shape, 0, frames - max_time)
        width_f = jax.random.randint(keys[2], shape, 0, max_freq + 1)
        start_f = jax.random.randint(keys[3], shape, 0, coefficients - max_freq)
        keep &= ~((t >= start_t) & (t < start_t + width_t))
        keep &= ~((f >= start_f) & (f < start_f + width_f))
    return jnp.where(keep, x, fill)


def mixup(
    x: jax.Array, labels: jax.Array, key: jax.Array, alpha: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mix each example of ``x`` ``(batch, ...)`` with a partner of the same batch.

    Partners are a random permutation of the batch; each example's share ``s`` of itself is
    drawn from ``Beta(alpha, alpha)``: the input becomes ``s * x + (1 - s) * partner``.
    Returns ``(mixed x, the partners' labels, s (batch,))``: the loss mixes the targets in the
    same proportion (:func:`genre_jax.step.training_loss`).
    """
    order_key, share_key = jax.random.split(key)
    partner = jax.random.permutation(order_key, x.shape[0])
    share = jax.random.beta(share_key, alpha, alpha, (x.shape[0],)).astype(x.dtype)
    weight = share.reshape((-1,) + (1,) * (x.ndim - 1))
    return weight * x + (1.0 - weight) * x[partner], labels[partner], share


def smoothed_targets(labels: jax.Array, n_classes: int, smoothing: float) -> jax.Array:
    """One-hot targets ``(batch, classes)`` mixed with the uniform distribution: ``1 - s + s/K``
    on the true class, ``s/K`` elsewhere."""
    one_hot = jax.nn.one_hot(labels, n_classes)
    return one_hot * (1.0 - smoothing) + smoothing / n_classes
