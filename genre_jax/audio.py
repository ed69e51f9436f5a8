"""Decode any audio file to mono float32 at the target rate, and cut it into segments.

Decoding tries soundfile (libsndfile: WAV, AU, FLAC, OGG, MP3, AIFF) first and librosa's
audioread back-end second. Channels are averaged, then the signal is resampled with soxr at high
quality, exactly as ``librosa.load(path, sr=22050)`` does. Everything that makes a file unusable
(missing, empty, header only, truncated, not audio, NaN or infinite samples) raises
:class:`AudioError`, whose message names the file and the reason.

:func:`iter_audio_blocks` is the streaming form of :func:`load_audio` for long files: the same
checks and the same samples, one block in memory at a time.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterator
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


def _check_file(path: Path) -> None:
    """The checks made before decoding: exists, regular, not empty, not truncated."""
    if not path.exists():
        raise AudioError(path, "no such file")
    if not path.is_file():
        raise AudioError(path, "not a regular file (a directory or special file)")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    _check_declared_length(path, size)


# --- decoding ---------------------------------------------------------------------------------


def _open_soundfile(path: Path) -> tuple[sf.SoundFile | None, str]:
    """``(handle, "")`` when libsndfile reads the file, else ``(None, its reason)``.

    libsndfile falls back to guessing header-less raw samples for a file whose header it does
    not recognise (an ``.au`` with a broken magic number decodes as 8 kHz u-law noise); such a
    guess is refused here rather than decoded as music.
    """
    try:
        handle = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        return None, str(error).replace(str(path), "").strip(" :'") or type(error).__name__
    if handle.format == "RAW":
        handle.close()
        raise AudioError(path, "not decodable as audio: no recognised header (raw data only)")
    return handle, ""


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """(samples x channels float32, rate) via soundfile, else librosa/audioread."""
    handle, first_reason = _open_soundfile(path)
    if handle is not None:
        with handle:
            return handle.read(dtype="float32", always_2d=True), int(handle.samplerate)
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


def _checked_mono(path: Path, data: np.ndarray) -> np.ndarray:
    """Channel average of ``(samples, channels)`` float32; NaN or infinity is an error."""
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def load_audio(path: str | os.PathLike, sample_rate: int = 22050) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` Hz, shape ``(samples,)``.

    Any format soundfile or audioread reads, any rate and channel count. Channels are
    averaged before soxr high-quality resampling (librosa.load's defaults).

    Raises:
        AudioError: the file is missing, a directory, empty, header only, truncated, not
            audio, or holds NaN or infinite samples.
    """
    path = Path(path)
    _check_file(path)
    data, rate = _decode(path)
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (header only)")
    mono = _checked_mono(path, data)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def iter_audio_blocks(
    path: str | os.PathLike, sample_rate: int = 22050, block_seconds: float = 10.0
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block: mono float32 blocks ``(n,)`` at ``sample_rate`` Hz.

    The streaming form of :func:`load_audio`, for files too long to hold whole: soundfile reads
    ``block_seconds`` of the file's own frames at a time, each block is down-mixed (channel
    average) and fed to a ``soxr.ResampleStream`` at the same HQ quality. The blocks joined are
    sample for sample what :func:`load_audio` returns (soxr's one-shot and stream resamplers run
    the same filter), while memory holds one block. Block lengths vary (the resampler holds a
    few samples back until the next block or the end); every block yielded is non-empty.

    Formats soundfile cannot open (those only audioread decodes) fall back to
    :func:`load_audio`, whose whole signal is then yielded in blocks of ``block_seconds``.

    Raises:
        AudioError: as :func:`load_audio`, during iteration: the file checks (missing, empty,
            truncated, not audio) before the first block; NaN or infinite samples, or a read
            failure, at the block where they occur, after the blocks before it were yielded.
        ValueError: ``block_seconds`` is not positive.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds={block_seconds}: must be > 0")
    path = Path(path)
    _check_file(path)
    handle, _ = _open_soundfile(path)
    if handle is None:
        audio = load_audio(path, sample_rate)  # audioread, with load_audio's own checks
        step = max(1, round(block_seconds * sample_rate))
        for start in range(0, audio.shape[0], step):
            yield audio[start : start + step]
        return
    with handle:
        rate = int(handle.samplerate)
        stream = (
            soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
            if rate != sample_rate
            else None
        )
        blocksize = max(1, round(block_seconds * rate))
        frames_read = 0
        while True:
            try:
                data = handle.read(blocksize, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as error:
                reason = str(error).replace(str(path), "").strip(" :'") or type(error).__name__
                raise AudioError(
                    path, f"unreadable after {frames_read} frames ({reason})"
                ) from error
            if data.shape[0] == 0:
                break
            frames_read += data.shape[0]
            mono = _checked_mono(path, data)
            if stream is not None:
                mono = stream.resample_chunk(mono)
            if mono.size:
                yield np.ascontiguousarray(mono, dtype=np.float32)
        if frames_read == 0:
            raise AudioError(path, "no audio samples (header only)")
        if stream is not None:
            tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                yield np.ascontiguousarray(tail, dtype=np.float32)


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
