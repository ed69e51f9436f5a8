"""Feature extraction: our batched, jitted JAX MFCC against ``librosa.feature.mfcc``.

Two ways of turning 30 s clips into MFCCs, each timed for both libraries in the same
round-robin loop:

- ``3 x 10 s segments``: what the feature store does (and the seed did): each clip is cut into
  three 10 s segments (220,500 samples, 431 frames each); ours extracts all of the batch's
  segments in one ``extract_jit`` call, librosa one segment at a time in a Python loop;
- ``whole 30 s clips``: one 1,292-frame MFCC per clip, ``extract_jit`` on ``(clips, 661500)``.

librosa runs twice: as installed (numpy's BLAS with one thread per core, for the mel matmul)
and with BLAS limited to one thread (``threadpoolctl``): on a small shared machine the
multi-threaded BLAS stalls whenever another process holds a core, so the faster of the two is
the fair reference. The unit is 30 s clips per second. Our rows also carry the parity of our
features with librosa's on the same clips (max absolute error in dB-scaled MFCC units, and the
relative L2 error), so a speed-up never hides a wrong answer. The clips are deterministic tones,
chirps and noise, no files needed.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext

import jax
import numpy as np

from benchmarks.common import Options
from benchmarks.timing import Row, progress, ratio, time_interleaved
from genre_jax.config import FeatureConfig
from genre_jax.features import extract_jit

CLIP_SECONDS = 30


def make_clips(n: int, sample_rate: int = 22050, seconds: int = CLIP_SECONDS) -> np.ndarray:
    """``n`` deterministic clips ``(n, seconds * sample_rate)`` float32 in [-1, 1].

    Each clip is a few harmonic tones, a chirp, amplitude-modulated noise and a quiet stretch
    (so the top_db floor is exercised), different for every clip.
    """
    rng = np.random.default_rng(1234)
    t = np.arange(seconds * sample_rate) / sample_rate
    clips = np.empty((n, t.size), np.float32)
    for i in range(n):
        base = 110.0 * 2 ** (i % 12 / 12)
        tones = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 2, 3, 5))
        chirp = np.sin(2 * np.pi * (200 + 40 * i) * t + 2 * np.pi * 30 * t**2)
        noise = rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t))
        y = 0.4 * tones + 0.2 * chirp + 0.1 * noise
        y[int(0.4 * t.size) : int(0.45 * t.size)] *= 1e-4  # a near-silent gap
        clips[i] = 0.9 * y / np.abs(y).max()
    return clips


def librosa_mfcc(
    signals: np.ndarray, config: FeatureConfig, blas_threads: int | None = None
) -> np.ndarray:
    """librosa's MFCC of every row of ``signals``, one call each: ``(n, frames, n_mfcc)``.

    ``blas_threads`` limits numpy's BLAS threads for the duration (None: as installed).
    """
    import librosa
    from threadpoolctl import threadpool_limits

    limit = threadpool_limits(blas_threads, user_api="blas") if blas_threads else nullcontext()
    with limit:
        out = [
            librosa.feature.mfcc(
                y=signal,
                sr=config.sample_rate,
                n_mfcc=config.n_mfcc,
                n_fft=config.n_fft,
                hop_length=config.hop_length,
                n_mels=config.n_mels,
            ).T
            for signal in signals
        ]
    return np.stack(out)


def parity(ours: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Max absolute and relative L2 error of ``ours`` against ``reference`` (float64)."""
    diff = np.asarray(ours, np.float64) - np.asarray(reference, np.float64)
    return {
        "max_abs_error": float(np.abs(diff).max()),
        "rel_l2_error": float(np.linalg.norm(diff) / np.linalg.norm(reference)),
    }


def run(options: Options) -> tuple[list[Row], list[dict]]:
    """Rows for both layouts (ours and librosa) and the ours/librosa ratios."""
    segment_config = FeatureConfig()
    clip_config = dataclasses.replace(segment_config, segment_seconds=float(CLIP_SECONDS))
    n = options.feature_clips
    clips = make_clips(n, segment_config.sample_rate)
    per_clip = CLIP_SECONDS // int(segment_config.segment_seconds)
    segments = clips.reshape(n * per_clip, segment_config.segment_samples)
    layouts = {
        f"{per_clip} x 10 s segments": (segments, segment_config),
        "whole 30 s clips": (clips, clip_config),
    }
    rows: list[Row] = []
    ratios: list[dict] = []
    for layout, (signals, config) in layouts.items():
        progress(f"features: {layout}, {n} clips")
        on_device = jax.device_put(signals)
        fns = {
            "ours": lambda x=on_device, c=config: extract_jit(x, c),
            "librosa": lambda x=signals, c=config: librosa_mfcc(x, c),
            "librosa-1-blas-thread": lambda x=signals, c=config: librosa_mfcc(x, c, 1),
        }
        timings = time_interleaved(fns, options.repeats)
        errors = parity(np.asarray(fns["ours"]()), fns["librosa"]())
        progress(
            f"features: parity with librosa: max abs {errors['max_abs_error']:.2e}, "
            f"rel L2 {errors['rel_l2_error']:.2e}"
        )
        setting = {
            "clips": n,
            "layout": layout,
            "signals": f"{signals.shape[0]} x {signals.shape[1]} samples",
            "frames": config.n_frames,
            "n_mfcc": config.n_mfcc,
            "n_fft": config.n_fft,
            "hop": config.hop_length,
            "n_mels": config.n_mels,
        }
        ours = Row.rate(
            "features",
            f"jax mfcc ({layout}, one batched call)",
            "clips/s",
            timings["ours"],
            n,
            setting={**setting, "impl": "genre_jax.features.extract_jit", "input": "on device"},
            extra=errors,
        )
        rows.append(ours)
        theirs = {}
        for name, threads in (("librosa", "as installed"), ("librosa-1-blas-thread", "1")):
            label = "" if name == "librosa" else ", 1 BLAS thread"
            theirs[name] = Row.rate(
                "features",
                f"librosa mfcc ({layout}, python loop{label})",
                "clips/s",
                timings[name],
                n,
                setting={**setting, "impl": "librosa.feature.mfcc per signal", "blas": threads},
            )
            rows.append(theirs[name])
            title = f"features ({layout}): ours / {name}"
            ratios.append(ratio(title, ours, theirs[name], paired=True))
        fastest = max(theirs, key=lambda name: theirs[name].median)
        title = f"features ({layout}): ours / faster librosa ({fastest})"
        ratios.append(ratio(title, ours, theirs[fastest], paired=True))
    return rows, ratios
