"""Decode any audio file to mono float32 at the target rate, and cut it into segments.

Decoding tries soundfile (libsndfile: WAV, AU, FLAC, OGG, MP3, AIFF) first and librosa's
audioread back-end second. Channels are averaged, then the signal is resampled with soxr at high
quality, exactly as ``librosa.load(path, sr=22050)`` does. Everything that makes a file unusable
(missing, empty, header only, truncated, not audio, NaN or infinite samples) raises
:class:`AudioError`, whose message names the file and the reason.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".au", ".snd", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"}
)


class AudioError(Exception):
    """A file could not be used as audio. ``str(error)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether the name has an audio extension we decode (case-insensitive)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


# --- header checks that libsndfile does not make ---------------------------------------------


def _wav_shortfall(head: bytes, size: int) -> int | None:
    """Bytes missing from a RIFF/WAVE file's ``data`` chunk, or None if the header is not RIFF."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(head):
        chunk, length = struct.unpack_from("<4sI", head, offset)
        if chunk == b"data":
            return max(0, length - (size - offset - 8))
        offset += 8 + length + (length & 1)
    return None


def _au_shortfall(head: bytes, size: int) -> int | None:
    """Bytes missing from a Sun ``.snd`` file's data, or None if not AU or size unknown."""
    if len(head) < 24 or head[:4] != b".snd":
        return None
    data_offset, data_size = struct.unpack_from(">II", head, 4)
    if data_size == 0xFFFFFFFF:
        return None
    return max(0, data_size - (size - data_offset))


def _check_declared_length(path: Path, size: int) -> None:
    with path.open("rb") as handle:
        head = handle.read(65536)
    missing = _wav_shortfall(head, size)
    if missing is None:
        missing = _au_shortfall(head, size)
    if missing:
        raise AudioError(path, f"truncated: the header declares {missing} more bytes of audio data")


# --- decoding ---------------------------------------------------------------------------------


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(samples x channels float32, rate) via soundfile, else librosa/audioread."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as first:
        first_reason = str(first).replace(str(path), "").strip(" :'") or type(first).__name__
    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data, rate = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    except Exception as second:  # audioread raises many unrelated types; all mean "not decodable"
        raise AudioError(
            path, f"not decodable as audio (soundfile: {first_reason}; audioread: {second!r})"
        ) from second
    data = np.atleast_2d(data).T if data.ndim > 1 else data[:, None]
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)


def load_audio(path: str | os.PathLike, sample_rate: int = 22050) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` Hz, shape ``(samples,)``.

    Any format soundfile or audioread reads, any rate and channel count. Channels are
    averaged before soxr high-quality resampling (librosa.load's defaults).

    Raises:
        AudioError: the file is missing, a directory, empty, header only, truncated, not
            audio, or holds NaN or infinite samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if not path.is_file():
        raise AudioError(path, "not a regular file (a directory or special file)")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    _check_declared_length(path, size)
    data, rate = _decode(path)
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (header only)")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def segment(audio: np.ndarray, segment_samples: int) -> np.ndarray:
    """Non-overlapping full segments ``(n, segment_samples)``; the remainder is dropped.

    A 30 s track at 22050 Hz gives 3 segments of 10 s; a 29.9 s track gives 2; a track
    shorter than one segment gives an empty ``(0, segment_samples)`` array.
    """
    count = audio.shape[-1] // segment_samples
    return audio[: count * segment_samples].reshape(count, segment_samples)


def load_segments(
    path: str | os.PathLike, segment_seconds: float = 10.0, sample_rate: int = 22050
) -> np.ndarray:
    """Decode ``path`` and cut it into full segments of ``segment_seconds`` seconds."""
    return segment(load_audio(path, sample_rate), round(segment_seconds * sample_rate))
