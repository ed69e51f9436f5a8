"""Deterministic synthetic music-genre dataset in the GTZAN layout.

Every clip is a small procedural arrangement (drum kit, bass, chord instrument and lead melody)
whose tempo range, rhythm patterns, swing, timbres, distortion and pitch registers depend on the
genre. Per-clip randomness (tempo, key, progression, notes, mix levels, equalisation, noise,
loudness) makes the classes overlap, so the data is learnable but not trivially separable.

:func:`generate_synthetic` writes the dataset; :func:`synthetic_data_dir` names the folder of
the cache where the built-in one of a given size and seed is kept.

The module stays one (a little over 400 lines) because it is one idea, the built-in dataset:
three quarters of it is one procedural arrangement written out (styles, instruments, drums,
mix), and the writer is what makes the folder a function of its size and seed alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import numbers
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.progress import track as progress_bar
from scipy.signal import lfilter

from genre_jax.config import ConfigError
from genre_jax.fileio import cache_dir

GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)  # fmt: skip
FORMAT_VERSION = 1
MARKER_NAME = "synthetic.json"
_TABLE = 2048  # wavetable length (power of two)
_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10), "mixo": (0, 2, 4, 5, 7, 9, 10),
    "phryg": (0, 1, 3, 5, 7, 8, 10), "majpent": (0, 2, 4, 7, 9), "minpent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10), "bebop": (0, 2, 4, 5, 7, 9, 10, 11),
}  # fmt: skip
_KINDS = ("sine", "flute", "organ", "saw", "square", "brass", "epiano")
_NONE = ("." * 16,)
_BACKBEAT = ("....x.......x...",)
_EIGHTHS = ("x.x.x.x.x.x.x.x.",)


@dataclass(frozen=True)
class _Style:
    """Musical recipe of one genre. Patterns are 16 sixteenth-note steps per 4/4 bar.

    Drum patterns: ``x`` hit, ``o`` ghost hit, ``.`` nothing. Bass/comp patterns: ``.`` sustain,
    ``-`` rest, otherwise a note-on; bass characters pick the chord tone (``r`` root, ``3``, ``5``,
    ``7``, ``6`` major sixth, ``o`` octave, ``w`` random walking tone).
    """

    bpm: tuple[float, float]
    kick: tuple[str, ...]
    snare: tuple[str, ...]
    hat: tuple[str, ...]
    bass: tuple[str, ...]
    comp: tuple[str, ...]
    progs: tuple[tuple[int, ...], ...]  # chord roots as scale degrees, one chord per bar
    modes: tuple[str, ...] = ("major",)  # harmony scale choices
    lead_scale: str = "major"
    lead: tuple[int, int] = (60, 80)  # lead MIDI range
    density: float = 0.3  # probability of a lead onset per eighth note
    bass_lo: int = 33  # bass roots lie in MIDI [bass_lo, bass_lo + 12)
    comp_lo: int = 52
    chord: int = 3  # chord tones; 0 = power chord (root, fifth, octave)
    swing: tuple[float, float] = (0.0, 0.0)  # delay of off-beat eighths, in sixteenth steps
    swing16: bool = False  # swing the off-beat sixteenths instead
    timbre: tuple[str, str, str] = ("saw", "saw", "square")  # bass, comp, lead
    decay: tuple[float, float, float] = (0.4, 0.6, 0.5)  # envelope time constants in s
    attack: float = 0.005  # comp attack in s
    drive: tuple[float, float] = (1.0, 1.0)  # tanh distortion gain on the comp
    kit: tuple[float, float, float, float] = (55.0, 0.25, 0.12, 0.05)  # kick Hz, decays in s
    ride: bool = False  # metallic ride cymbal instead of a noise hi-hat
    mix: tuple[float, float, float, float] = (0.0, -3.0, -6.0, -6.0)  # dB: drums/bass/comp/lead
    swell: float = 0.0  # depth of a slow loudness swell
    crackle: bool = False  # vinyl crackle in the noise floor


_STYLES: dict[str, _Style] = {
    "blues": _Style((70, 100), ("x.......x.......", "x.....x.x......."), _BACKBEAT, _EIGHTHS,
        ("r.3.5.6.o.6.5.3.", "r.r.3.3.5.5.6.6."), ("x.x.x.x.x.x.x.x.", "x...x...x...x..."),
        ((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4),), ("mixo",), "blues", (58, 79), 0.35, chord=4,
        swing=(0.45, 0.67), timbre=("saw", "saw", "saw"), decay=(0.3, 0.25, 0.4),
        drive=(1.5, 3.0), kit=(60, 0.25, 0.15, 0.06), mix=(-2, -3, -5, -4)),
    "classical": _Style((60, 100), _NONE, _NONE, _NONE, ("r...............", "r.......5......."),
        ("x...............",), ((0, 3, 4, 0), (0, 5, 3, 4), (0, 3, 0, 4)), ("major", "minor"),
        "major", (67, 91), 0.7, bass_lo=36, comp_lo=55, timbre=("flute", "organ", "flute"),
        decay=(1.5, 3.0, 0.8), attack=0.2, mix=(-60, -4, -6, -2), swell=0.5),
    "country": _Style((100, 140), ("x.......x.......",), _BACKBEAT, _EIGHTHS,
        ("r.......5.......", "r...5...r...5..."), ("----x.......x...", "--x.x.--x.x.--x."),
        ((0, 3, 4, 0), (0, 0, 3, 4), (0, 3, 0, 4)), ("major",), "majpent", (62, 84), 0.4,
        swing=(0.0, 0.15), decay=(0.3, 0.2, 0.4), kit=(65, 0.2, 0.1, 0.04), mix=(-3, -3, -4, -4)),
    "disco": _Style((112, 130), ("x...x...x...x...",), _BACKBEAT, ("..x...x...x...x.",),
        ("r.o.r.o.r.o.r.o.", "r.o.r.o.5.o.5.o."), ("x.......x.......",),
        ((0, 3), (0, 6), (0, 3, 4, 3)), ("dorian", "minor"), "dorian", (69, 93), 0.25,
        chord=4, timbre=("square", "saw", "saw"), decay=(0.15, 2.0, 0.4), attack=0.08,
        kit=(55, 0.25, 0.15, 0.22), mix=(0, -3, -6, -6)),
    "hiphop": _Style((80, 98), ("x.........x.....", "x......x..x.....", "x.x.......x..x.."),
        _BACKBEAT, ("xoxoxoxoxoxoxoxo", *_EIGHTHS), ("r.........r.....", "r......r..r....."),
        ("x...............", "x.......-......."), ((0, 5), (0, 3), (0, 5, 3, 4)), ("minor",),
        "minpent", (60, 79), 0.12, bass_lo=26, swing=(0.1, 0.35), swing16=True,
        timbre=("sine", "epiano", "epiano"), decay=(1.0, 1.0, 0.6), kit=(48, 0.6, 0.15, 0.04),
        mix=(0, 0, -6, -8), crackle=True),
    "jazz": _Style((110, 200), ("o.......o.......",), ("......o.......o.", "..o.......o...o."),
        ("x...x.x.x...x.x.",), ("w...w...w...w...",), ("x.....x.........", "---x------x-----"),
        ((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4)), ("major",), "bebop", (58, 82), 0.5,
        bass_lo=31, chord=4, swing=(0.5, 0.67), timbre=("flute", "epiano", "brass"),
        decay=(0.5, 0.5, 0.4), kit=(60, 0.2, 0.1, 0.5), ride=True, mix=(-6, -2, -6, -2)),
    "metal": _Style((140, 200), ("xxxxxxxxxxxxxxxx", "x.x.x.x.x.x.x.x."),
        (*_BACKBEAT, "x...x...x...x..."), _EIGHTHS, ("rrrrrrrrrrrrrrrr", "r.r.r.r.r.r.r.r."),
        ("xxxxxxxxxxxxxxxx", "x.x.x.x.x.x.x.x.", "x.......x.x.x..."),
        ((0, 0, 1, 0), (0, 5, 6, 5), (0, 2, 1, 0)), ("phryg", "minor"), "phryg", (64, 88), 0.2,
        bass_lo=28, comp_lo=40, chord=0, timbre=("saw", "saw", "saw"), decay=(0.15, 0.3, 0.5),
        drive=(8.0, 25.0), kit=(70, 0.12, 0.12, 0.1), mix=(0, -3, 0, -8)),
    "pop": _Style((95, 125), ("x.......x.x.....", "x.......x......."), _BACKBEAT,
        ("x.x.x.x.x.x.x.x.", "xoxoxoxoxoxoxoxo"), ("r.r.r.r.r.r.r.r.", "r..r..r.r..r..r."),
        ("x.......x.......", "x..x..x.x..x..x."), ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4)),
        ("major",), "major", (64, 86), 0.4, timbre=("square", "saw", "square"),
        decay=(0.25, 1.0, 0.5), attack=0.03, kit=(55, 0.3, 0.18, 0.04), mix=(0, -3, -6, -3)),
    "reggae": _Style((64, 90), ("........x.......",), ("........x.......",),
        (*_EIGHTHS, "..x...x...x...x."), ("r.....5.--r.w...", "r..r..5.-.o.5..."),
        ("--x---x---x---x-", "----x-------x---"),
        ((0, 3), (0, 4), (0, 3, 4, 3), (5, 4)), ("major", "minor"), "majpent", (62, 81), 0.15,
        bass_lo=31, swing=(0.0, 0.2), timbre=("flute", "saw", "organ"), decay=(0.8, 0.07, 0.5),
        kit=(60, 0.3, 0.05, 0.04), mix=(-2, 0, -5, -8)),
    "rock": _Style((105, 150), ("x.....x.x.......", "x.......x.x....."), _BACKBEAT, _EIGHTHS,
        ("r.r.r.r.r.r.r.r.",), ("x.x.x.x.x.x.x.x.", "x.......x.......", "x..x..x.x..x..x."),
        ((0, 6, 3, 0), (0, 3, 4, 3), (0, 4, 5, 3)), ("mixo", "minor"), "minpent", (60, 84), 0.3,
        bass_lo=28, comp_lo=40, chord=0, timbre=("saw", "saw", "saw"), decay=(0.25, 0.5, 0.5),
        drive=(3.0, 8.0), kit=(60, 0.25, 0.15, 0.06), mix=(0, -3, -2, -6)),
}  # fmt: skip


def _wavetable(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One period of a waveform (``_TABLE`` samples, peak 1) with a randomly tilted spectrum."""
    k = np.arange(1, 17, dtype=np.float64)
    tilt = rng.uniform(-0.25, 0.25)
    amps = {
        "sine": (k == 1) + 0.05 * (k == 2),
        "flute": k ** -(3.0 + tilt),
        "organ": np.isin(k, (1, 2, 3, 4, 6, 8)) * k ** -(0.5 + tilt),
        "saw": k ** -(1.0 + tilt),
        "square": (k % 2) * k ** -(1.0 + tilt),
        "brass": k ** -(0.8 + tilt) * (1 + 2 * np.exp(-(((k - 4) / 2) ** 2))),
        "epiano": (k == 1) + (0.3 + tilt) * (k == 2) + 0.15 * (k == 7),
    }[kind]
    t = np.arange(_TABLE) / _TABLE
    table = amps @ np.sin(2 * np.pi * np.outer(k, t))
    return (table / np.abs(table).max()).astype(np.float32)


def _render(times, codes, midi, vel, table, attack, decay, sr, n) -> np.ndarray:
    """Render a (possibly polyphonic) note sequence on the step grid.

    ``times`` (S+1,) int sample positions of the step boundaries; ``codes`` (S,) 1 note-on,
    -1 rest, 0 sustain; ``midi`` (S, V) pitches; ``vel`` (S,) velocities. Returns (n,) float32.
    """
    new = codes != 0
    new[0] = True
    idx = np.flatnonzero(new)
    start = np.minimum(times[idx], n)
    length = np.diff(np.append(start, n))
    idx, start, length = idx[length > 0], start[length > 0], length[length > 0]
    amp = np.where(codes[idx] > 0, vel[idx], 0.0).astype(np.float32)
    tl = (np.arange(n) - np.repeat(start, length)).astype(np.float32)
    dur = np.repeat(length, length).astype(np.float32)
    env = np.repeat(amp, length) * np.exp(tl * np.float32(-1.0 / (decay * sr)))
    env *= np.minimum(tl * np.float32(1.0 / (attack * sr)), 1.0)
    env *= np.clip((dur - tl) * np.float32(200.0 / sr), 0.0, 1.0)  # 5 ms release
    freq = (440.0 / sr) * 2.0 ** ((midi[idx] - 69.0) / 12.0)  # cycles per sample, (segments, V)
    cycles = tl[:, None] * np.repeat(freq.astype(np.float32), length, axis=0)
    wave = table[(cycles * _TABLE).astype(np.int64) & (_TABLE - 1)].sum(axis=1)
    return wave * env


def _drums(st: _Style, rng: np.random.Generator, hits: list, times, sr: int, n: int) -> np.ndarray:
    """Drum track (n,) from per-step kick/snare/hat characters, with per-clip jittered sounds."""
    if all((h == b".").all() for h in hits):
        return np.zeros(n)
    kick_hz, kick_decay, snare_decay, hat_decay = np.array(st.kit) * rng.uniform(0.85, 1.15, 4)
    t = np.arange(int(sr * min(1.0, 5 * kick_decay))) / sr
    sweep = kick_hz * (1 + 3 * np.exp(-t / 0.03))  # pitch drop of the kick
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / kick_decay)
    t = np.arange(int(sr * 5 * snare_decay)) / sr
    snare = np.diff(rng.standard_normal(len(t) + 1)) * 0.4 * np.exp(-t / snare_decay)
    snare += np.sin(2 * np.pi * rng.uniform(170, 240) * t) * np.exp(-t / 0.04)
    t = np.arange(int(sr * 5 * hat_decay)) / sr
    hat = np.diff(rng.standard_normal(len(t) + 2), 2) * 0.25  # high-passed noise
    if st.ride:  # metallic partials
        partials = rng.uniform(3000, 8000, 6)
        hat = 0.3 * hat + np.sin(2 * np.pi * np.outer(t, partials) + rng.uniform(0, 6, 6)).sum(1)
        hat /= 4
    idx, wts = [], []
    for chars, template in zip(hits, [kick, snare, hat * np.exp(-t / hat_decay)], strict=True):
        vel = np.select([chars == b"x", chars == b"o"], [1.0, 0.45])
        vel *= rng.uniform(0.75, 1.0, len(chars)) * (rng.random(len(chars)) > rng.uniform(0, 0.15))
        i = times[:-1][vel > 0, None] + np.arange(len(template))  # (hits, template samples)
        idx.append(i[i < n])
        wts.append((vel[vel > 0, None] * template)[i < n])
    return np.bincount(np.concatenate(idx), np.concatenate(wts), minlength=n)[:n]


def synthesize_clip(
    genre: str, index: int, *, seconds: float = 30.0, sample_rate: int = 22050, seed: int = 0
) -> np.ndarray:
    """Synthesise track ``index`` (>= 0) of ``genre`` (one of :data:`GENRES`).

    Returns a float32 mono waveform of shape ``(round(seconds * sample_rate),)`` (``seconds`` in s,
    ``sample_rate`` in Hz) whose peak amplitude is drawn from [0.3, 0.9]. It depends only on the
    arguments: the generator is seeded with ``(seed, GENRES.index(genre), index)`` (``seed`` >= 0),
    so adding tracks never changes existing ones.
    """
    if genre not in _STYLES:
        raise ValueError(f"unknown genre {genre!r}; expected one of {GENRES}")
    if index < 0 or seed < 0 or seconds <= 0 or sample_rate <= 0:
        raise ValueError("index and seed must be >= 0, seconds and sample_rate > 0")
    st, sr, n = _STYLES[genre], sample_rate, round(seconds * sample_rate)
    rng = np.random.default_rng((seed, GENRES.index(genre), index))

    # Step grid: 16 steps per bar, swing delays off-beats, small random timing jitter.
    step = sr * 60.0 / rng.uniform(*st.bpm) / 4
    bars = int(np.ceil(n / (16 * step))) + 1
    s = np.arange(16 * bars + 1)
    off = (s % 2 == 1) if st.swing16 else (s % 4 == 2)
    pos = (s + rng.uniform(*st.swing) * off) * step
    pos += rng.normal(0, rng.uniform(0, 0.006) * sr, len(s)).clip(-0.15 * step, 0.15 * step)
    pos[0] = 0.0
    times = np.maximum.accumulate(np.round(pos).astype(np.int64))
    bar = s[:-1] // 16

    def pattern(options: tuple[str, ...]) -> np.ndarray:
        """Per-step characters: a main pattern with occasional bars from the alternatives."""
        main = rng.integers(len(options))
        pick = np.where(rng.random(bars) < 0.8, main, rng.integers(len(options), size=bars))
        return np.frombuffer("".join(options[i] for i in pick).encode(), dtype="S1")

    def codes(chars: np.ndarray) -> np.ndarray:
        return np.where(chars == b".", 0, np.where(chars == b"-", -1, 1))

    # Harmony: key, mode, progression -> diatonic chord tones per bar (relative to the key).
    key, mode = rng.integers(12), np.array(_SCALES[st.modes[rng.integers(len(st.modes))]])
    prog = np.array(st.progs[rng.integers(len(st.progs))])
    deg = prog[np.arange(bars) % len(prog)][:, None] + 2 * np.arange(4)
    tones = key + mode[deg % 7] + 12 * (deg // 7)  # (bars, 4)

    def register(lo: int) -> np.ndarray:
        return tones - tones[:, :1] + lo + (tones[:, :1] - lo) % 12

    hits = [pattern(p) for p in (st.kick, st.snare, st.hat)]
    parts = [_drums(st, rng, hits, times, sr, n)]
    # Bass: chord tones chosen by the pattern characters.
    chars = pattern(st.bass)
    low = register(st.bass_lo)
    choice = np.column_stack([low, low[:, 0] + 12, low[:, 0] + 9])[bar]  # (S, 6)
    col = np.select([chars == c for c in (b"3", b"5", b"7", b"o", b"6")], [1, 2, 3, 4, 5], 0)
    col = np.where(chars == b"w", rng.integers(0, 5, len(col)), col)
    bass_midi = np.take_along_axis(choice, col[:, None], axis=1).astype(np.float64)
    vel = rng.uniform(0.8, 1.0, len(col))
    kinds = [k if rng.random() > 0.3 else _KINDS[rng.integers(len(_KINDS))] for k in st.timbre]
    tabs = [_wavetable(k, rng) for k in kinds]  # 30 % chance of a borrowed timbre per part
    parts.append(_render(times, codes(chars), bass_midi, vel, tabs[0], 0.005, st.decay[0], sr, n))
    # Comp: block chords (diatonic, or power chords) with optional distortion.
    chars = pattern(st.comp)
    voicing = register(st.comp_lo)
    if st.chord == 0:
        voicing = voicing[:, :1] + np.array([0, 7, 12])
    chord = voicing[bar, : max(st.chord, 3)].astype(np.float64)
    vel = rng.uniform(0.8, 1.0, len(bar))
    comp = _render(times, codes(chars), chord, vel, tabs[1], st.attack, st.decay[1], sr, n)
    drive = rng.uniform(*st.drive)
    parts.append(np.tanh(drive * comp / chord.shape[1]) / np.tanh(drive))
    # Lead: random walk over the lead scale on the eighth-note grid.
    scale = np.array(_SCALES[st.lead_scale])
    notes = np.array([m for m in range(st.lead[0], st.lead[1] + 1) if (m - key) % 12 in scale])
    period = 2 * (len(notes) - 1)
    walk = (np.cumsum(rng.integers(-2, 3, len(bar))) + rng.integers(len(notes))) % period
    lead_midi = notes[np.where(walk < len(notes), walk, period - walk)][:, None].astype(float)
    onset = (s[:-1] % 2 == 0) & (rng.random(len(bar)) < st.density)
    lead_codes = np.where(onset, np.where(rng.random(len(bar)) < 0.2, -1, 1), 0)
    vel = rng.uniform(0.6, 1.0, len(bar))
    parts.append(_render(times, lead_codes, lead_midi, vel, tabs[2], 0.02, st.decay[2], sr, n))

    # Mix with random levels, slow swell, random tone tilt, noise and peak normalisation.
    gains = 10 ** ((np.array(st.mix) + rng.uniform(-4, 4, 4)) / 20)
    y = sum(g * p / (np.abs(p).max() + 1e-9) for g, p in zip(gains, parts, strict=True))
    t = np.arange(n) / sr
    y *= 1 + st.swell * np.sin(2 * np.pi * t / rng.uniform(6, 12) + rng.uniform(0, 2 * np.pi))
    a = np.exp(-2 * np.pi * rng.uniform(300, 3000) / sr)
    y += rng.uniform(-0.5, 0.7) * (lfilter([1 - a], [1, -a], y) - y)
    noise = lfilter([1], [1, -rng.uniform(-0.5, 0.95)], rng.standard_normal(n))
    if st.crackle:
        noise += (rng.random(n) < 20 / sr) * rng.standard_normal(n) * 30
    snr_db = rng.uniform(8, 35)
    y += noise * np.sqrt(np.mean(y**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    y *= rng.uniform(0.3, 0.9) / (np.abs(y).max() + 1e-12)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def _write_clip(job: tuple[Path, str, int, float, int, int]) -> None:
    """Synthesise one clip and write it as 16-bit PCM WAV (a worker's unit of work)."""
    path, genre, index, seconds, sample_rate, seed = job
    clip = synthesize_clip(genre, index, seconds=seconds, sample_rate=sample_rate, seed=seed)
    sf.write(path, clip, sample_rate, subtype="PCM_16")


def synthetic_data_dir(tracks_per_genre: int, seed: int, cache: Path | None = None) -> Path:
    """Where the built-in synthetic dataset of this size and seed is cached."""
    return (cache or cache_dir()) / f"synthetic-{tracks_per_genre}x30s-seed{seed}"


def _check_settings(tracks_per_genre: int, seconds: float, sample_rate: int, seed: int) -> None:
    """Refuse, naming the setting, what :func:`synthesize_clip` would refuse in every worker
    (a traceback from a process pool otherwise), before any folder is created."""

    def whole(value: object) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    if not whole(tracks_per_genre) or tracks_per_genre < 1:
        raise ConfigError(f"tracks_per_genre must be a whole number >= 1, got {tracks_per_genre!r}")
    if not whole(seed) or seed < 0:
        raise ConfigError(f"synthetic setting seed={seed!r}: must be a whole number >= 0")
    if not whole(sample_rate) or sample_rate < 1:
        raise ConfigError(
            f"synthetic setting sample_rate={sample_rate!r}: must be a whole number >= 1"
        )
    real = isinstance(seconds, numbers.Real) and not isinstance(seconds, bool)
    if not real or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"synthetic setting seconds={seconds!r}: must be a finite number > 0")


def generate_synthetic(
    out_dir: str | Path,
    *,
    tracks_per_genre: int = 10,
    seconds: float = 30.0,
    sample_rate: int = 22050,
    seed: int = 0,
    progress: bool = False,
    workers: int | None = None,
) -> Path:
    """Write the dataset as ``out_dir/genres_original/<genre>/<genre>.<NNNNN>.wav`` (GTZAN layout).

    Clips come from :func:`synthesize_clip` and are stored as mono 16-bit PCM WAV. Everything is
    built in the sibling ``.<name>.tmp-<pid>`` and renamed to ``out_dir`` when complete, with the
    marker ``out_dir/synthetic.json`` (the parameters) written last, so an interrupted run leaves
    no dataset. A marker with the same parameters is a cache hit: nothing is rewritten. A marker
    with other parameters, or a non-empty ``out_dir`` without one, raises :class:`ConfigError`
    (nothing is overwritten). ``progress`` shows a rich progress bar. Clips are synthesised by
    ``workers`` processes (default: one per CPU core; 1 synthesises in this process); each clip
    depends only on its genre, index and ``seed``, so the files are the same for any count.

    Returns:
        ``Path(out_dir) / "genres_original"``.
    """
    _check_settings(tracks_per_genre, seconds, sample_rate, seed)
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    root, marker = out_dir / "genres_original", out_dir / MARKER_NAME
    params = dict(format_version=FORMAT_VERSION, tracks_per_genre=int(tracks_per_genre),
                  seconds=float(seconds), sample_rate=int(sample_rate), seed=int(seed))  # fmt: skip

    def cached() -> bool:
        if not marker.is_file():
            return False
        found = json.loads(marker.read_text())
        for name, value in params.items():
            if found.get(name) != value:
                raise ConfigError(
                    f"{out_dir} holds a synthetic dataset with {name}={found.get(name)!r}, but "
                    f"{name}={value!r} was requested; pick another out_dir (or delete that one)"
                )
        return True

    if cached():
        return root
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(
            f"{out_dir} exists without a {MARKER_NAME} marker (not made by generate_synthetic, or "
            "an interrupted run); refusing to overwrite it, pick another out_dir"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    jobs = [
        (tmp / "genres_original" / g / f"{g}.{i:05d}.wav", g, i, seconds, sample_rate, seed)
        for g in GENRES
        for i in range(tracks_per_genre)
    ]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    try:
        for genre in GENRES:
            (tmp / "genres_original" / genre).mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            if workers == 1:
                done = map(_write_clip, jobs)
            else:  # spawned workers: forking a process that runs JAX threads is unsafe
                context = multiprocessing.get_context("spawn")
                pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
                done = pool.map(_write_clip, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
            if progress:
                done = progress_bar(done, total=len(jobs), description="Synthesising clips")
            for _ in done:
                pass
        (tmp / MARKER_NAME).write_text(json.dumps(params, indent=2) + "\n")  # marker last
        if out_dir.is_dir():
            out_dir.rmdir()  # empty, checked above
        os.replace(tmp, out_dir)
    except OSError:
        if cached():  # a concurrent run finished the same dataset first
            return root
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
