"""Short audio excerpts of songs, as ``data:`` URIs a self-contained HTML report can play.

A researcher reading an evaluation wants to *hear* the songs a model got wrong, without the
report depending on the dataset's files staying where they were. Each excerpt is a few seconds
of the song, decoded as every other consumer decodes it (:func:`genre_jax.audio.load_audio`:
mono float32, resampled with soxr), cut around the middle of the song (intros and fades say
little about a genre), faded in and out over :data:`FADE_SECONDS` so that playback starts and
stops without a click, and encoded as Ogg Vorbis in memory. At 16 kHz mono, 4 s is about
15-20 KB of Vorbis (a third more once base64-encoded), small enough to embed dozens in one page.
Chromium and Firefox play Ogg Vorbis natively; the report's browser test decodes one in Chromium.
"""

from __future__ import annotations

import base64
import inspect
import io
import os

import numpy as np
import soundfile as sf

from genre_jax.audio import load_audio

# Length of an excerpt in seconds: long enough to recognise a genre, short enough to embed many.
DEFAULT_SECONDS = 4.0
# Sample rate of an excerpt: 16 kHz keeps everything up to 8 kHz, which carries a genre's
# character (rhythm, timbre, voice), at under half the bytes of 44.1 kHz.
DEFAULT_SAMPLE_RATE = 16_000
# Linear fade in and out, long enough to remove the click of a cut, short enough not to be heard.
FADE_SECONDS = 0.02
# libsndfile's Vorbis setting through soundfile's ``compression_level`` (0 = best quality,
# 1 = smallest): 0.9 is Vorbis quality 0.1, about 35 kbit/s for 16 kHz mono music: an excerpt
# of 4 s is about 17 KB. soundfile before 0.13 lacks the argument and
# writes libsndfile's default quality (about 23 KB).
COMPRESSION_LEVEL = 0.9
_HAS_COMPRESSION_LEVEL = "compression_level" in inspect.signature(sf.write).parameters


def excerpt_bounds(samples: int, sample_rate: int, seconds: float, start: float | None) -> slice:
    """The samples of a song of ``samples`` samples that an excerpt of ``seconds`` takes.

    ``start=None`` centres the excerpt on the middle of the song. A ``start`` so late that the
    excerpt would run past the end is moved back so that the excerpt keeps its length; a song
    shorter than ``seconds`` is taken whole.

    Raises:
        ValueError: ``seconds`` is not positive or ``start`` is negative.
    """
    if not seconds > 0:
        raise ValueError(f"seconds={seconds}: an excerpt must be longer than 0 s")
    if start is not None and not start >= 0:
        raise ValueError(f"start={start}: must be 0 s or later")
    length = min(samples, round(seconds * sample_rate))
    if start is None:
        first = (samples - length) // 2
    else:
        first = min(round(start * sample_rate), samples - length)
    return slice(first, first + length)


def faded(audio: np.ndarray, sample_rate: int, fade_seconds: float = FADE_SECONDS) -> np.ndarray:
    """``audio`` with a linear fade in over its first ``fade_seconds`` and out over its last
    (each at most half the signal), so that it starts and ends at silence."""
    out = np.array(audio, dtype=np.float32, copy=True)
    fade = min(round(fade_seconds * sample_rate), len(out) // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
        out[:fade] *= ramp
        out[len(out) - fade :] *= ramp[::-1]
    return out


def encode_ogg(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono float32 ``audio`` encoded as Ogg Vorbis in memory (:data:`COMPRESSION_LEVEL`)."""
    options = {"compression_level": COMPRESSION_LEVEL} if _HAS_COMPRESSION_LEVEL else {}
    buffer = io.BytesIO()
    clipped = np.clip(audio, -1.0, 1.0)  # Vorbis takes any float; players clip louder samples
    sf.write(buffer, clipped, sample_rate, format="OGG", subtype="VORBIS", **options)
    return buffer.getvalue()


def excerpt_data_uri(
    path: str | os.PathLike,
    *,
    seconds: float = DEFAULT_SECONDS,
    start: float | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> str:
    """An excerpt of the song at ``path`` as ``"data:audio/ogg;base64,..."``.

    ``seconds`` of the song from ``start`` seconds (default: centred on the song's middle; see
    :func:`excerpt_bounds`), decoded at ``sample_rate`` Hz mono, faded in and out over
    :data:`FADE_SECONDS`, encoded as Ogg Vorbis. A song shorter than ``seconds`` is taken
    whole.

    Raises:
        AudioError: the file cannot be decoded (as :func:`genre_jax.audio.load_audio`); callers
            show ``"audio unavailable: <reason>"`` instead of the player.
        ValueError: ``seconds`` or ``sample_rate`` is not positive, or ``start`` is negative.
    """
    return decoded_excerpt_uri(load_audio(path, sample_rate), sample_rate, seconds, start)


def decoded_excerpt_uri(
    audio: np.ndarray,
    sample_rate: int,
    seconds: float = DEFAULT_SECONDS,
    start: float | None = None,
) -> str:
    """:func:`excerpt_data_uri` of a song already decoded to mono ``audio`` at
    ``sample_rate`` Hz (the report page decodes it once, to check it is the song scored)."""
    cut = audio[excerpt_bounds(len(audio), sample_rate, seconds, start)]
    encoded = encode_ogg(faded(cut, sample_rate), sample_rate)
    return "data:audio/ogg;base64," + base64.b64encode(encoded).decode("ascii")
