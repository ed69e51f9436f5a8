"""A track's two views as a PNG (``genre-jax plot``): its waveform and its mel spectrogram in
dB, the seed's figures of one file.

:func:`waveform_and_mel_figure` builds the :class:`~matplotlib.figure.Figure` (for inspection
and tests) and :func:`waveform_and_mel` writes it (:func:`genre_jax.plots.save_figure`, a
1200 x 700 PNG); :func:`plot_file` decodes an audio file of any format first, refusing an
output path that would cost the user a file. The spectrogram is :func:`mel_db`, the values of
:func:`genre_jax.features.log_mel` computed in chunks so that a long file fits in memory.

A track's genre over time (``genre-jax predict --window-hop S --plot OUT.png``) is
:func:`taggram_figure`: each window's probabilities as a column, time on x, genres on y.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from genre_jax.audio import iter_audio_blocks
from genre_jax.config import ConfigError
from genre_jax.features import log_mel, num_frames
from genre_jax.mel import hz_to_mel, mel_to_hz
from genre_jax.plots import save_figure

WAVEFORM_FIGSIZE = (12.0, 7.0)  # inches; at 100 dpi a 1200 x 700 PNG
_MAX_WAVEFORM_POINTS = 20_000  # above this, the waveform is drawn as a min/max envelope
_MAX_MEL_COLUMNS = 2_000  # above this, mel frames are max-pooled in time for display


def mel_db(
    audio: np.ndarray,
    sample_rate: int,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    top_db: float | None = 80.0,
    chunk_frames: int = 4096,
) -> np.ndarray:
    """dB mel spectrogram of a whole signal, ``(samples,)`` -> ``(frames, n_mels)`` float32.

    The same values as ``genre_jax.features.log_mel(audio, sample_rate=..., n_fft=...,
    hop_length=..., n_mels=..., top_db=...)`` (centred frames, ``1 + samples // hop_length``
    of them; Slaney mel bands from 0 Hz to the Nyquist frequency; ``10 log10`` of power with
    ref 1), computed ``chunk_frames`` frames at a time so that a long file needs memory for one
    chunk's spectrum only. Each chunk is taken with a margin of at least ``n_fft // 2``
    samples, a whole number of hops, so its frames are the whole signal's frames; the
    ``top_db`` floor is applied afterwards against the whole signal's maximum.
    """

    if chunk_frames < 1:
        raise ValueError(f"chunk_frames={chunk_frames}: must be >= 1")
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio of shape {audio.shape}: expected one channel, (samples,)")
    settings = {
        "sample_rate": sample_rate,
        "n_fft": n_fft,
        "hop_length": hop_length,
        "n_mels": n_mels,
        "top_db": None,
    }
    total = num_frames(audio.shape[0], hop_length)
    pad = n_fft // 2
    margin = math.ceil(pad / hop_length) * hop_length
    out = np.empty((total, n_mels), np.float32)
    for first in range(0, total, chunk_frames):
        stop = min(total, first + chunk_frames)
        lo = max(0, first * hop_length - margin)  # a multiple of the hop
        hi = min(audio.shape[0], (stop - 1) * hop_length + n_fft - pad)
        offset = (first * hop_length - lo) // hop_length
        db = np.asarray(log_mel(audio[lo:hi], **settings))
        out[first:stop] = db[offset : offset + stop - first]
    if top_db is not None and total:
        np.maximum(out, out.max() - top_db, out=out)
    return out


def _pool_columns(values: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Max-pool ``(frames, bands)`` in time to at most ``limit`` rows; (pooled, frames per row)."""
    factor = max(1, math.ceil(values.shape[0] / limit))
    if factor == 1:
        return values, 1
    rows = math.ceil(values.shape[0] / factor)
    padded = np.full((rows * factor, values.shape[1]), -np.inf, np.float32)
    padded[: values.shape[0]] = values
    return padded.reshape(rows, factor, values.shape[1]).max(axis=1), factor


def waveform_and_mel_figure(
    audio: np.ndarray,
    sample_rate: int,
    title: str,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
) -> Figure:
    """The seed's two views of a mono signal ``(samples,)`` at ``sample_rate`` Hz.

    Top: the waveform, amplitude (full scale, -1 to 1) against time in seconds (a min/max
    envelope above 20,000 samples). Bottom: the mel spectrogram in dB (:func:`mel_db`, top_db
    80) against time in seconds, on a mel-spaced frequency axis labelled in Hz, with a dB
    colour bar; above 2,000 frames, frames are max-pooled in time for display only.
    """

    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or audio.shape[0] == 0:
        raise ValueError(f"audio of shape {audio.shape}: expected a non-empty (samples,)")
    duration = audio.shape[0] / sample_rate
    figure = Figure(figsize=WAVEFORM_FIGSIZE, layout="constrained")
    axes = figure.subplots(2, 2, width_ratios=[48, 1], squeeze=False)
    wave_ax, mel_ax, colour_ax = axes[0, 0], axes[1, 0], axes[1, 1]
    axes[0, 1].set_axis_off()

    if audio.shape[0] > _MAX_WAVEFORM_POINTS:
        bins = _MAX_WAVEFORM_POINTS // 2
        per_bin = math.ceil(audio.shape[0] / bins)
        padded = np.pad(audio, (0, per_bin * bins - audio.shape[0]), mode="edge")
        shaped = padded.reshape(bins, per_bin)
        times = (np.arange(bins) + 0.5) * per_bin / sample_rate
        wave_ax.fill_between(times, shaped.min(axis=1), shaped.max(axis=1), linewidth=0.5)
    else:
        wave_ax.plot(np.arange(audio.shape[0]) / sample_rate, audio, linewidth=0.6)
    wave_ax.set_xlim(0.0, duration)
    wave_ax.set_xlabel("time (s)")
    wave_ax.set_ylabel("amplitude (full scale)")
    wave_ax.set_title("Waveform")
    wave_ax.grid(alpha=0.3)

    db = mel_db(audio, sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    shown, factor = _pool_columns(db, _MAX_MEL_COLUMNS)
    frame_seconds = hop_length / sample_rate
    time_edges = (np.arange(shown.shape[0] + 1) * factor - 0.5) * frame_seconds
    nyquist = sample_rate / 2
    mel_max = float(hz_to_mel(nyquist))
    step = mel_max / (n_mels + 1)  # band i is centred on mel step * (i + 1)
    freq_edges = mel_to_hz(step * (np.arange(n_mels + 1) + 0.5))
    mesh = mel_ax.pcolormesh(time_edges, freq_edges, shown.T, cmap="magma", shading="flat")
    mel_ax.set_yscale("function", functions=(hz_to_mel, mel_to_hz))
    ticks = [f for f in (0, 256, 512, 1024, 2048, 4096, 8192, 16384) if f <= nyquist]
    mel_ax.set_yticks(ticks, labels=[str(f) for f in ticks])
    mel_ax.set_ylim(float(freq_edges[0]), float(freq_edges[-1]))
    mel_ax.set_xlim(0.0, duration)
    mel_ax.set_xlabel("time (s)")
    mel_ax.set_ylabel("mel frequency (Hz)")
    mel_ax.set_title(f"Mel spectrogram ({n_mels} bands, n_fft {n_fft}, hop {hop_length})")
    figure.colorbar(mesh, cax=colour_ax, label="power (dB re 1, floor max - 80 dB)")
    figure.suptitle(title)
    return figure


def waveform_and_mel(
    audio: np.ndarray,
    sample_rate: int,
    path: str | os.PathLike,
    title: str,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
) -> None:
    """Write :func:`waveform_and_mel_figure` to ``path`` as a 1200 x 700 PNG."""
    figure = waveform_and_mel_figure(
        audio, sample_rate, title, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
    )
    save_figure(figure, path, tight=False)


PLOT_SUFFIX = ".png"


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file: the same resolved path, or the same inode on the same
    device (a hard link, or a symbolic link that :meth:`~pathlib.Path.resolve` cannot follow
    to a path of its own)."""
    try:
        if a.resolve() == b.resolve():
            return True
        first, second = os.stat(a), os.stat(b)
    except (OSError, RuntimeError):  # one does not exist, or is a link loop: not one file
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def check_plot_output(audio_path: Path, out_path: Path, *, overwrite: bool = False) -> None:
    """Refuse an output path that would cost the user a file, before anything is decoded.

    The input itself (by path, through a symbolic link, or as a hard link) is refused even with
    ``overwrite``; so is a name that does not end in ``.png``: the figure is always written as
    a PNG, and another suffix (``--out song.wav``, ``--out notes.txt``) is far more often a
    mistyped path than a wish for a PNG under a misleading name. An existing file (or a
    symbolic link, even a dangling one) is replaced only with ``overwrite``.

    Raises:
        ConfigError: naming the output and the reason.
    """
    if out_path.is_dir():
        raise ConfigError(f"plot setting out={out_path}: is a folder; give the PNG file's path")
    if _same_file(audio_path, out_path):
        raise ConfigError(
            f"plot setting out={out_path}: is the audio file {audio_path} itself; give another path"
        )
    if out_path.suffix.lower() != PLOT_SUFFIX:
        raise ConfigError(
            f"plot setting out={out_path}: must end in {PLOT_SUFFIX} (the figure is written as "
            "a PNG)"
        )
    if os.path.lexists(out_path) and not overwrite:
        raise ConfigError(f"plot setting out={out_path}: exists; pass --overwrite to replace it")


def plot_file(
    audio_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    sample_rate: int = 22050,
    seconds: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Decode ``audio_path`` (any format) and write its waveform and mel spectrogram PNG.

    Only the first ``seconds`` seconds are decoded and drawn (the whole file when ``None``);
    decoding streams, so a long file is not read past that point. An existing ``out_path`` is
    replaced only with ``overwrite``, and never when it is ``audio_path`` itself
    (:func:`check_plot_output`).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        AudioError: the file cannot be decoded (the reason names it).
        ConfigError: ``seconds`` is not positive, or ``out_path`` is refused.
    """

    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"plot setting seconds={seconds}: must be a finite number > 0")
    check_plot_output(Path(audio_path), Path(out_path), overwrite=overwrite)
    limit = None if seconds is None else max(1, round(seconds * sample_rate))
    blocks, kept = [], 0
    for block in iter_audio_blocks(audio_path, sample_rate):
        if limit is not None and kept + block.shape[0] >= limit:
            blocks.append(block[: limit - kept])
            kept = limit
            break
        blocks.append(block)
        kept += block.shape[0]
    audio = np.concatenate(blocks)
    name = Path(audio_path).name
    duration = audio.shape[0] / sample_rate
    shown = f"first {duration:.1f} s" if seconds is not None else f"{duration:.1f} s"
    out_path = Path(out_path)
    waveform_and_mel(audio, sample_rate, out_path, f"{name} ({shown} at {sample_rate} Hz)")
    return out_path


TAGGRAM_FIGSIZE = (12.0, 5.0)  # inches; at 100 dpi a 1200 x 500 PNG


def taggram_figure(
    probabilities: np.ndarray,
    genres: list[str],
    starts: np.ndarray,
    window_seconds: float,
    title: str,
    hop_seconds: float | None = None,
) -> Figure:
    """The genre over time (a taggram): each window's probabilities as a column one hop wide
    centred on the window's centre (non-overlapping segments: exactly the seconds each one
    covers), genres on the y axis in the run's order, a colour bar from 0 to 1.

    Args:
        probabilities: ``(windows, genres)``, each row one window's probabilities.
        genres: the genre names, one per column of ``probabilities``.
        starts: ``(windows,)`` each window's start in seconds, increasing.
        window_seconds: a window's length in seconds.
        title: the figure's title.
        hop_seconds: the seconds between windows' starts (default: ``window_seconds``).
    """
    probabilities = np.asarray(probabilities, np.float64)
    starts = np.asarray(starts, np.float64)
    if probabilities.ndim != 2 or probabilities.shape != (len(starts), len(genres)):
        raise ValueError(
            f"probabilities of shape {probabilities.shape}; expected ({len(starts)} windows, "
            f"{len(genres)} genres)"
        )
    hop = window_seconds if hop_seconds is None else hop_seconds
    centres = starts + window_seconds / 2
    edges = np.append(centres - hop / 2, centres[-1] + hop / 2) if len(starts) else np.zeros(1)
    figure = Figure(figsize=TAGGRAM_FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    image = axes.pcolormesh(
        edges, np.arange(len(genres) + 1), probabilities.T, vmin=0.0, vmax=1.0, cmap="magma"
    )
    axes.set_yticks(np.arange(len(genres)) + 0.5, labels=genres)
    axes.invert_yaxis()  # the first genre on top, as the run lists them
    axes.set_xlabel("time (s), window centre")
    axes.set_ylabel("genre")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="probability")
    return figure


def taggram(
    probabilities: np.ndarray,
    genres: list[str],
    starts: np.ndarray,
    window_seconds: float,
    out_path: str | os.PathLike,
    title: str,
    hop_seconds: float | None = None,
) -> Path:
    """Write :func:`taggram_figure` as a PNG at ``out_path`` (atomically); return the path."""
    figure = taggram_figure(probabilities, genres, starts, window_seconds, title, hop_seconds)
    save_figure(figure, out_path)
    return Path(out_path)
