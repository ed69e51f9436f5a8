"""Kernel ``extract_batch``: features of a large batch of signals computed a few signals at a
time on CPU.

The reference op (:func:`genre_jax.kernels.ops.extract_batch`) computes the whole batch at once,
which keeps an accelerator busy. On CPU the frames and spectra of a whole batch (170 MB each for
48 ten-second segments) do not fit in the cache, and one pass over them costs more than the FFT
itself, so :func:`in_chunks` maps the extraction over chunks of :func:`chunk_items` signals.
Each signal's features depend on that signal alone (the ``top_db`` floor included), so the
chunks give the batch's values (``tests/test_features.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax

# Signals are processed in chunks of about this many frames (8 MiB of float32 frames and as
# much of spectrum, inside a 32 MiB L3; docs/benchmarks.md, "Kernels").
CPU_CHUNK_FRAMES = 1024


def chunk_items(frames: int) -> int:
    """Signals per chunk for signals of ``frames`` frames: as many as fit in
    :data:`CPU_CHUNK_FRAMES` frames, at least one."""
    return max(1, CPU_CHUNK_FRAMES // frames)


def chunks_apply(fn: Callable[[jax.Array], jax.Array], signals: jax.Array, frames: int) -> bool:
    """Whether :func:`in_chunks` splits ``signals (..., samples)``: leading dimensions of
    concrete size (an exported program's may be symbolic) holding more than one chunk."""
    lead = signals.shape[:-1]
    if not all(isinstance(n, int) for n in lead):
        return False
    return math.prod(lead) > chunk_items(frames)


def in_chunks(fn: Callable[[jax.Array], jax.Array], signals: jax.Array, frames: int) -> jax.Array:
    """``fn`` (signals ``(n, samples)`` to features ``(n, ...)``) over the leading dimensions
    of ``signals (..., samples)``, :func:`chunk_items` signals at a time (a ``lax.map``), for
    signals of ``frames`` frames: ``(..., *features)``."""
    lead, samples = signals.shape[:-1], signals.shape[-1]
    flat = signals.reshape(math.prod(lead), samples)
    out = jax.lax.map(fn, flat, batch_size=chunk_items(frames))
    return out.reshape(*lead, *out.shape[1:])
