"""Summary statistics of a segment's features over time, as pure JAX functions.

What a segment's ``(frames, coefficients)`` features say once time is summarised: per
coefficient the mean, the standard deviation and the standard deviation of frame-to-frame
differences; optionally the same three of the first DCT coefficients across bands (cepstral
shape) and the modulation spectrum of band groups (how energy rises and falls: rhythm).

``melstat`` feeds them to its head beside its convolutional branch; ``statsvm`` is an RBF SVM
on them alone (:mod:`genre_jax.models.svm`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def std(x: jax.Array, axis: int) -> jax.Array:
    """Standard deviation with a finite gradient where the values are constant (silent bands)."""
    return jnp.sqrt(jnp.var(x, axis=axis) + 1e-5)


def dct_matrix(n: int, k: int) -> jax.Array:
    """Orthonormal DCT-II basis ``(n, k)``: ``x @ dct_matrix(n, k)`` keeps the first ``k``."""
    i = np.arange(n)[:, None]
    j = np.arange(k)[None, :]
    basis = np.cos(np.pi * (i + 0.5) * j / n) * np.sqrt(2.0 / n)
    basis[:, 0] /= np.sqrt(2.0)
    return jnp.asarray(basis, jnp.float32)


def modulation_spectrum(x: jax.Array, groups: int, bins: int) -> jax.Array:
    """Log magnitude of the temporal spectrum of ``groups`` band groups, ``(batch, groups*bins)``.

    Adjacent coefficients are averaged into ``groups`` groups, each group's mean over time is
    removed, and ``log1p |rfft|`` over time is kept for modulation bins ``1 ... bins`` (with
    87 frames of 23 ms, bin ``k`` is ``k / 2`` Hz: the range of beats and rhythm).
    """
    b, t, f = x.shape
    g = x.reshape(b, t, groups, f // groups).mean(axis=3)
    g = g - g.mean(axis=1, keepdims=True)
    magnitude = jnp.abs(jnp.fft.rfft(g, axis=1))[:, 1 : bins + 1]
    return jnp.log1p(magnitude).reshape(b, -1)


def summary_width(
    n_features: int, modulation_groups: int, modulation_bins: int, cepstral: int
) -> int:
    """Length of :func:`summary_statistics`' vector."""
    return 3 * n_features + modulation_groups * modulation_bins + 3 * cepstral


def summary_statistics(
    x: jax.Array, modulation_groups: int = 0, modulation_bins: int = 11, cepstral: int = 0
) -> jax.Array:
    """``(batch, frames, coefficients)`` -> ``(batch, summary_width(...))`` statistics.

    ``modulation_groups`` must divide the coefficients (0: no modulation spectrum);
    ``cepstral`` is the number of DCT coefficients summarised (0: none).
    """
    parts = [x.mean(axis=1), std(x, 1), std(jnp.diff(x, axis=1), 1)]
    if cepstral:
        c = x @ dct_matrix(x.shape[-1], cepstral)
        parts += [c.mean(axis=1), std(c, 1), std(jnp.diff(c, axis=1), 1)]
    if modulation_groups:
        parts.append(modulation_spectrum(x, modulation_groups, modulation_bins))
    return jnp.concatenate(parts, axis=-1)
