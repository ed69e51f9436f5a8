"""Summary statistics of a segment's features over time, as pure JAX functions.

What a segment's ``(frames, coefficients)`` features say once time is summarised: per
coefficient the mean, the standard deviation and the standard deviation of frame-to-frame
differences; optionally the same three of the first DCT coefficients across bands (cepstral
shape) and the modulation spectrum of band groups (how energy rises and falls: rhythm); and
optionally all of these again for the harmonic and the percussive part of the log-mel
spectrogram (:func:`harmonic_percussive`).

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


def odd_even_merge_sort(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sorting network for ``n`` wires, as ``(low, high)`` comparators.

    Built for the next power of two; the wires from ``n`` up are taken to hold ``+inf``, so every
    comparator that touches one leaves the first ``n`` wires as they are and is dropped.
    """
    width = 1 << max(n - 1, 0).bit_length()
    network = []
    p = 1
    while p < width:
        k = p
        while k >= 1:
            for j in range(k % p, width - k, 2 * k):
                for i in range(min(k, width - j - k)):
                    low, high = i + j, i + j + k
                    if low // (2 * p) == high // (2 * p) and high < n:
                        network.append((low, high))
            k //= 2
        p *= 2
    return network


def selection_network(n: int, rank: int) -> list[tuple[int, int]]:
    """The comparators of :func:`odd_even_merge_sort` that the ``rank``-th smallest depends on."""
    needed, kept = {rank}, []
    for low, high in reversed(odd_even_merge_sort(n)):
        if low in needed or high in needed:
            kept.append((low, high))
            needed |= {low, high}
    return kept[::-1]


def median_filter(x: jax.Array, size: int, axis: int) -> jax.Array:
    """Running median of odd width ``size`` along ``axis``, edges mirrored.

    The edge handling of ``scipy.ndimage.median_filter(mode="reflect")`` (``d c b a | a b c d |
    d c b a``); each output is the middle of its ``size`` neighbours, found by the comparators of
    a sorting network that the middle wire depends on (:func:`selection_network`: 152
    comparators for 31 neighbours, 24 for 9) instead of sorting each window: exactly the same
    values, far faster on CPU (docs/benchmarks.md, "Formulations").
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median filter width {size}: must be odd and >= 1")
    axis = axis % x.ndim
    half, n = size // 2, x.shape[axis]
    widths = [(0, 0)] * x.ndim
    widths[axis] = (half, half)
    padded = jnp.pad(x, widths, mode="symmetric")
    wires = [jax.lax.slice_in_dim(padded, i, i + n, axis=axis) for i in range(size)]
    for low, high in selection_network(size, half):
        wires[low], wires[high] = (
            jnp.minimum(wires[low], wires[high]),
            jnp.maximum(wires[low], wires[high]),
        )
    return wires[half]


def harmonic_percussive(
    db: jax.Array, time_kernel: int = 31, band_kernel: int = 9, amin: float = 1e-10
) -> tuple[jax.Array, jax.Array]:
    """The harmonic and percussive parts of dB spectrograms ``(batch, frames, bands)``, in dB.

    Median-filtering separation (Fitzgerald, 2010) on the mel power: a running median over
    ``time_kernel`` frames keeps what is steady in time (harmonic), one over ``band_kernel``
    bands what is broad in frequency (percussive); each part is the power times its soft mask
    ``h**2 / (h**2 + p**2)`` (resp. ``p**2 / ...``), so the two add up to the input. The
    segments are filtered a few at a time (the shifted windows take ``time_kernel`` times the
    input's memory).
    """
    power = 10.0 ** (db / 10.0)

    def separate(one: jax.Array) -> tuple[jax.Array, jax.Array]:
        steady = median_filter(one, time_kernel, axis=-2) ** 2
        broad = median_filter(one, band_kernel, axis=-1) ** 2
        total = jnp.maximum(steady + broad, jnp.finfo(one.dtype).tiny)
        return one * steady / total, one * broad / total

    harmonic, percussive = jax.lax.map(separate, power, batch_size=8)
    to_db = lambda p: 10.0 * jnp.log10(jnp.maximum(p, amin))  # noqa: E731
    return to_db(harmonic), to_db(percussive)


def summary_width(
    n_features: int,
    modulation_groups: int,
    modulation_bins: int,
    cepstral: int,
    harmonic_percussive_parts: bool = False,
) -> int:
    """Length of :func:`summary_statistics`' vector."""
    one = 3 * n_features + modulation_groups * modulation_bins + 3 * cepstral
    return 3 * one if harmonic_percussive_parts else one


def summary_statistics(
    x: jax.Array,
    modulation_groups: int = 0,
    modulation_bins: int = 11,
    cepstral: int = 0,
    harmonic_percussive_parts: bool = False,
) -> jax.Array:
    """``(batch, frames, coefficients)`` -> ``(batch, summary_width(...))`` statistics.

    ``modulation_groups`` must divide the coefficients (0: no modulation spectrum);
    ``cepstral`` is the number of DCT coefficients summarised (0: none). With
    ``harmonic_percussive_parts`` (``x`` a dB log-mel spectrogram), the statistics of ``x`` are
    followed by the same statistics of its harmonic and of its percussive part.
    """
    if harmonic_percussive_parts:
        harmonic, percussive = harmonic_percussive(x)
        return jnp.concatenate(
            [
                summary_statistics(part, modulation_groups, modulation_bins, cepstral)
                for part in (x, harmonic, percussive)
            ],
            axis=-1,
        )
    parts = [x.mean(axis=1), std(x, 1), std(jnp.diff(x, axis=1), 1)]
    if cepstral:
        c = x @ dct_matrix(x.shape[-1], cepstral)
        parts += [c.mean(axis=1), std(c, 1), std(jnp.diff(c, axis=1), 1)]
    if modulation_groups:
        parts.append(modulation_spectrum(x, modulation_groups, modulation_bins))
    return jnp.concatenate(parts, axis=-1)
