"""MFCC and log-mel features as pure JAX functions (no I/O), matching librosa.

Every function takes signals with any leading batch dimensions, ``(..., samples)``, and returns
``(..., frames, coefficients)`` in float32, so it works batched, under ``jax.jit`` and under
``jax.vmap``. The pipeline is librosa's ``feature.mfcc`` with its defaults:

1. centred framing: ``n_fft // 2`` zeros on each side, frames every ``hop_length`` samples
   (``1 + samples // hop_length`` frames; 431 for 10 s at 22050 Hz, hop 512);
2. periodic Hann window and power spectrum ``|rfft|**2``;
3. Slaney mel filterbank (Slaney's mel scale, area-normalised triangles), built in numpy
   (:mod:`genre_jax.mel`) and applied as a few dense blocks that skip its zeros
   (:func:`mel_filter_blocks`);
4. power to dB: ``10 log10(max(amin, S))`` with ref 1, floored at ``top_db`` below the maximum
   of each segment (each item of the batch separately);
5. orthonormal DCT-II over the mel axis, first ``n_mfcc`` coefficients.

Framing uses no gather when ``n_fft`` is a small multiple of the hop's common divisor: the
padded signal is reshaped into blocks and each frame is a concatenation of strided slices.

A batch is extracted by the reference op :func:`genre_jax.kernels.ops.extract_batch` (the
whole batch at once; on CPU its kernel takes a few signals at a time). The values are the same
either way.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genre_jax import kernels
from genre_jax.config import FeatureConfig
from genre_jax.kernels import ops
from genre_jax.mel import mel_filterbank

_MAX_SLICES = 64  # above this many block slices per frame, framing falls back to a gather
# Full float32 matrix products: a GPU's default (TF32 on NVIDIA since Ampere) would move the
# MFCCs by about 0.2 dB from librosa's (measured on an H100); the CPU computes float32 anyway.
_EXACT = jax.lax.Precision.HIGHEST
# The mel filterbank is mostly zeros (each bin feeds at most two triangles): multiplied as 8
# blocks of 16 bands, over only their bins, it takes 17,168 products per frame instead of 131,200
# (128 bands, n_fft 2048; docs/benchmarks.md, "Kernels").
MEL_GROUPS = 8


# --- constants built once in float64 numpy, stored as float32 ------------------------------------


@functools.lru_cache(maxsize=16)
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis, ``(n_in, n_out)`` float32: ``x @ D`` transforms the last axis."""
    n = np.arange(n_in, dtype=np.float64)
    k = np.arange(n_out, dtype=np.float64)
    basis = np.cos(np.pi / n_in * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    basis = basis.astype(np.float32)
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=16)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as scipy's ``get_window('hann', n_fft, fftbins=True)``."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    window = window.astype(np.float32)
    window.setflags(write=False)
    return window


# --- pure JAX pipeline ----------------------------------------------------------------------------


def num_frames(samples: int, hop_length: int) -> int:
    """Frames that centred framing gives a signal of ``samples`` samples."""
    return 1 + samples // hop_length


def frame(signal: jax.Array, n_fft: int, hop_length: int) -> jax.Array:
    """Centred, zero-padded frames: ``(..., samples)`` -> ``(..., frames, n_fft)``.

    The signal is padded with ``n_fft // 2`` zeros on each side and cut into blocks of
    ``g = gcd(n_fft, hop_length)`` samples; frame ``t`` is blocks ``t * hop/g ... t * hop/g +
    n_fft/g - 1``, taken as ``n_fft / g`` strided slices (4 for the seed's 2048 / 512) and
    stacked. Beyond 64 slices (an unusual hop), an index gather is used instead.
    """
    samples = signal.shape[-1]
    frames = num_frames(samples, hop_length)
    pad = n_fft // 2
    lead = [(0, 0)] * (signal.ndim - 1)
    padded = jnp.pad(signal, [*lead, (pad, pad)])
    block = math.gcd(n_fft, hop_length)
    per_frame, step = n_fft // block, hop_length // block
    if per_frame > _MAX_SLICES:
        index = np.arange(frames)[:, None] * hop_length + np.arange(n_fft)[None, :]
        return padded[..., index]
    n_blocks = (frames - 1) * step + per_frame
    blocks = padded[..., : n_blocks * block].reshape(*signal.shape[:-1], n_blocks, block)
    limit = (frames - 1) * step + 1
    pieces = [blocks[..., j : j + limit : step, :] for j in range(per_frame)]
    # Stacking then merging the last two axes writes each frame contiguously, faster on CPU
    # than concatenating along the last axis (same values; docs/benchmarks.md, "Formulations").
    return jnp.stack(pieces, axis=-2).reshape(*signal.shape[:-1], frames, n_fft)


def power_spectrogram(signal: jax.Array, n_fft: int = 2048, hop_length: int = 512) -> jax.Array:
    """Hann-windowed power spectrum ``|STFT|**2``: ``(..., samples)`` -> ``(..., frames, bins)``."""
    frames = frame(jnp.asarray(signal, jnp.float32), n_fft, hop_length)
    spectrum = jnp.fft.rfft(frames * hann_window(n_fft), n=n_fft, axis=-1)
    return jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2


def power_to_db(power: jax.Array, amin: float = 1e-10, top_db: float | None = 80.0) -> jax.Array:
    """``10 log10(max(amin, power))`` (ref 1), floored at ``top_db`` below each item's maximum.

    The maximum is taken over the last two axes (frames and bands), once per batch item.
    """
    db = 10.0 * jnp.log10(jnp.maximum(amin, power))
    if top_db is not None:
        peak = jnp.max(db, axis=(-2, -1), keepdims=True)
        db = jnp.maximum(db, peak - top_db)
    return db


@functools.lru_cache(maxsize=16)
def mel_filter_blocks(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, groups: int = MEL_GROUPS
) -> tuple[tuple[int, int, np.ndarray], ...]:
    """The filterbank as ``groups`` dense blocks ``(first_bin, end_bin, weights)``.

    Block ``g`` holds consecutive bands and only the frequency bins where any of them is
    non-zero, ``weights`` of shape ``(end_bin - first_bin, bands)``; the bands' powers are
    ``power[..., first_bin:end_bin] @ weights``. Every non-zero weight is in some block, so the
    products equal the whole matrix's (up to float32 summation order).
    """
    filters = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    bounds = np.linspace(0, n_mels, min(groups, n_mels) + 1).round().astype(int)
    blocks = []
    for start, stop in itertools.pairwise(bounds):
        bins = np.flatnonzero(filters[start:stop].any(axis=0))
        first, end = (int(bins[0]), int(bins[-1]) + 1) if bins.size else (0, 0)
        weights = np.ascontiguousarray(filters[start:stop, first:end].T)
        weights.setflags(write=False)
        blocks.append((first, end, weights))
    return tuple(blocks)


def _mel_power(signal: jax.Array, config: FeatureConfig) -> jax.Array:
    power = power_spectrogram(signal, config.n_fft, config.hop_length)
    blocks = mel_filter_blocks(
        config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.max_frequency
    )
    bands = [jnp.matmul(power[..., a:b], w, precision=_EXACT) for a, b, w in blocks]
    return jnp.concatenate(bands, axis=-1)


def _in_chunks(fn: Callable[[jax.Array], jax.Array], signals: jax.Array, cfg: FeatureConfig):
    """``fn`` over the leading dimensions of ``signals`` by the reference op
    :func:`~genre_jax.kernels.ops.extract_batch`: each signal's features depend on that signal
    alone (the ``top_db`` floor included)."""
    signals = jnp.asarray(signals, jnp.float32)
    return ops.extract_batch(fn, signals, num_frames(signals.shape[-1], cfg.hop_length))


def _resolve(config: FeatureConfig | None, kind: str, overrides: dict) -> FeatureConfig:

    base = config if config is not None else FeatureConfig()
    return dataclasses.replace(base, kind=kind, **overrides)


def log_mel(
    segments: jax.Array, config: FeatureConfig | None = None, **overrides: object
) -> jax.Array:
    """dB mel spectrogram: ``(..., samples)`` -> ``(..., frames, n_mels)`` float32.

    Matches ``librosa.power_to_db(librosa.feature.melspectrogram(...), top_db=80)`` with the
    same settings. ``overrides`` replace fields of ``config`` (e.g. ``n_mels=64``).
    """
    cfg = _resolve(config, "logmel", overrides)

    def one_chunk(signals: jax.Array) -> jax.Array:
        return power_to_db(_mel_power(signals, cfg), cfg.amin, cfg.top_db)

    return _in_chunks(one_chunk, segments, cfg)


def mfcc(
    segments: jax.Array, config: FeatureConfig | None = None, **overrides: object
) -> jax.Array:
    """MFCCs: ``(..., samples)`` -> ``(..., frames, n_mfcc)`` float32.

    With the defaults this is ``librosa.feature.mfcc(y=x, sr=22050, n_mfcc=13, n_fft=2048,
    hop_length=512).T`` for each segment; a 10 s segment (220500 samples) gives 431 x 13.
    ``overrides`` replace fields of ``config`` (e.g. ``n_mfcc=20``).
    """
    cfg = _resolve(config, "mfcc", overrides)

    def one_chunk(signals: jax.Array) -> jax.Array:
        db = power_to_db(_mel_power(signals, cfg), cfg.amin, cfg.top_db)
        return jnp.matmul(db, dct_matrix(cfg.n_mels, cfg.n_mfcc), precision=_EXACT)

    return _in_chunks(one_chunk, segments, cfg)


def log_compressed_mel(
    segments: jax.Array, config: FeatureConfig | None = None, **overrides: object
) -> jax.Array:
    """``log10(1 + 10000 * mel power)``: ``(..., samples)`` -> ``(..., frames, n_mels)`` float32.

    The input representation of the pretrained musicnn (:mod:`genre_jax.models.musicnn`, with
    16 kHz audio, ``n_fft=512``, ``hop_length=256``, 96 bands): no floor relative to the
    segment's maximum, so silence is 0.
    """
    cfg = _resolve(config, "logc", overrides)

    def one_chunk(signals: jax.Array) -> jax.Array:
        return jnp.log10(1.0 + 10000.0 * _mel_power(signals, cfg))

    return _in_chunks(one_chunk, segments, cfg)


_EXTRACTORS = {"mfcc": mfcc, "logmel": log_mel, "logc": log_compressed_mel}


def extract(segments: jax.Array, config: FeatureConfig) -> jax.Array:
    """The features ``config.kind`` names: :func:`mfcc`, :func:`log_mel` or
    :func:`log_compressed_mel`."""
    return _EXTRACTORS[config.kind](segments, config)


def extract_jit(segments: jax.Array, config: FeatureConfig) -> jax.Array:
    """:func:`extract` compiled for one config and the active kernels (recompiles only for a
    new shape, config or kernel mode)."""
    return _extract_compiled(segments, config, kernels.active())


@functools.partial(jax.jit, static_argnames=("config", "mode"))
def _extract_compiled(segments: jax.Array, config: FeatureConfig, mode: str) -> jax.Array:
    # ``mode`` keys the compiled program: traced under one mode, it is not served under another.
    with kernels.use(mode):
        return extract(segments, config)
