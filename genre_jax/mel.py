"""The Slaney mel scale and filterbank, in float64 numpy (stored as float32): the constants
the features multiply by (:mod:`genre_jax.features`) and the bands the feature settings check
for emptiness (:mod:`genre_jax.feature_config`), with no JAX, so that checking a setting
computes nothing on a device."""

from __future__ import annotations

import functools
import math

import numpy as np

# The Slaney scale: linear below 1 kHz at 3 mels per 200 Hz, then 27 mels per factor of 6.4.
_HZ_PER_MEL = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _HZ_PER_MEL
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _HZ_PER_MEL
    above = hz >= _MIN_LOG_HZ
    safe = np.where(above, hz, _MIN_LOG_HZ)
    return np.where(above, _MIN_LOG_MEL + np.log(safe / _MIN_LOG_HZ) / _LOG_STEP, mel)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    hz = _HZ_PER_MEL * mel
    above = mel >= _MIN_LOG_MEL
    return np.where(above, _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL)), hz)


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Slaney-normalised triangular mel filters, ``(n_mels, 1 + n_fft // 2)`` float32.

    Band ``i`` rises from mel edge ``i`` to ``i + 1`` and falls to ``i + 2``; each triangle is
    scaled by ``2 / (f[i + 2] - f[i])`` so that every band has the same area in Hz.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    offsets = edges_hz[:, None] - fft_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def empty_mel_bands(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> list[int]:
    """The bands of :func:`mel_filterbank` that are zero at every FFT bin.

    A band whose triangle falls between two bins (``sample_rate / n_fft`` Hz apart) takes no
    power at all: its feature is the same constant for every segment. This is librosa's
    "Empty filters detected" condition (``weights.max(axis=1) == 0``), with one difference:
    librosa does not count a band whose lower edge is 0 Hz; here it counts like any other.
    """
    filters = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    return np.flatnonzero(filters.max(axis=1) <= 0).tolist()
