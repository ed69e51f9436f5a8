"""Decode any audio file to mono float32 at the target rate, and cut it into segments.

Decoding tries soundfile (libsndfile: WAV, AU, FLAC, Ogg Vorbis and Opus, MP3, AIFF) first and
audioread (the back-end librosa falls back to) second. Channels are averaged, then the signal is
resampled with soxr at high quality, exactly as ``librosa.load(path, sr=22050)`` does.

Everything that makes one file unusable raises :class:`AudioError`, whose message names the file
and the reason: missing, unreadable (no permission, a special file), empty, header only,
truncated, not audio, an implausible sample rate, a declared length no file of its size could
hold, NaN or infinite samples, and any other failure of the decoders or the resampler on it
(even running out of memory). Only ``KeyboardInterrupt`` and ``SystemExit`` pass through as
they are, so that one bad file never stops a folder.

:func:`iter_audio_blocks` is the streaming form of :func:`load_audio` for long files: the same
checks and the same samples, one block in memory at a time. :func:`load_song` also gives the
song's identity, the digest of its samples as decoded (:mod:`genre_jax.identity`). Whether an
Ogg or MP3 container shows that a file decoded was cut short (their decoders stop silently at
the cut) is :mod:`genre_jax.truncation`'s to tell.

Decoding and the checks made before and while it runs stay one module (about 450 lines): each
check guards one step of the decoders (a WAV or AU header's declared length before libsndfile
opens the file, the rate and channels before a sample is read, the count of samples as blocks
arrive), and all of them end in this module's :class:`AudioError`.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from genre_jax.identity import audio_digest

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".au", ".snd", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"}
)

# The sample rates accepted in a header. 1 kHz is below any real recording (telephone audio is
# 8 kHz); 768 kHz is the highest rate audio hardware and DXD masters use. A header outside this
# range is corrupt or hostile: 1 Hz makes a 200 KB WAV a 100,000 s recording, 8.8 GB of float32
# once resampled to 22050 Hz.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000

# The most samples (frames x channels) a file may declare, or decode to, per byte of its size.
# Real codecs stay far below it even for digital silence, their densest content: measured with
# libsndfile 1.2.2, 10 minutes of silence reach about 340 samples per byte in mono FLAC, 1,300
# in 8-channel 8-bit FLAC, 900 in stereo Ogg Vorbis and 2,600 in 8-channel Ogg Vorbis; MP3 stays
# under 25 and PCM at 2 or less. A larger count is a header that lies (a FLAC or MP3 declaring
# billions of frames), refused before its samples are allocated.
MAX_SAMPLES_PER_BYTE = 4_096

# libsndfile's frame count for a stream whose length the header leaves open (SF_COUNT_MAX)
_UNKNOWN_FRAMES = 2**63 - 1
# frames read at a time from a stream of unknown length
_READ_BLOCK_FRAMES = 1 << 20
# chunk headers walked in a RIFF file before giving up looking for its ``data`` chunk
_MAX_RIFF_CHUNKS = 10_000


class AudioError(Exception):
    """A file could not be used as audio. ``str(error)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether the name has an audio extension we decode (case-insensitive)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _message(error: BaseException, path: Path) -> str:
    """The text of ``error`` without the file's name (the AudioError names it already)."""
    return str(error).replace(str(path), "").strip(" :'\"")


def _as_audio_error(path: Path, error: Exception) -> AudioError:
    """The :class:`AudioError` of ``path`` for any failure while reading it."""
    if isinstance(error, AudioError):
        return error
    if isinstance(error, MemoryError):
        return AudioError(path, "too large to decode in memory (MemoryError)")
    if isinstance(error, OSError) and error.strerror:
        return AudioError(path, f"cannot read ({error.strerror})")
    text = _message(error, path)
    return AudioError(path, f"unreadable ({type(error).__name__}{': ' + text if text else ''})")


# --- header checks that libsndfile does not make ---------------------------------------------


def _wav_shortfall(handle: BinaryIO, size: int) -> int | None:
    """Bytes missing from a RIFF/RF64 WAVE file's ``data`` chunk; None if the file is not
    WAVE, declares no data length, or no ``data`` chunk starts within the file.

    The chunk headers are walked with seeks, however large the chunks before ``data`` (a
    cover-art ``id3`` or ``LIST`` chunk can take megabytes), until ``data`` or the end of the
    file. An odd-sized chunk is followed by its pad byte, as RIFF requires (libsndfile refuses
    a file that omits it). RF64/BW64 take the data length from the ``ds64`` chunk; a 32-bit
    length of ``0xFFFFFFFF`` without one means "unknown" (a streamed WAV, which libsndfile reads
    to the end of the file).
    """
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return None
    data_size_64 = None
    offset = 12
    for _ in range(_MAX_RIFF_CHUNKS):
        if offset + 8 > size:
            return None
        handle.seek(offset)
        header = handle.read(8)
        if len(header) < 8:
            return None
        chunk, length = struct.unpack("<4sI", header)
        if chunk == b"ds64" and length >= 16:
            sizes = handle.read(16)
            if len(sizes) == 16:
                data_size_64 = struct.unpack("<QQ", sizes)[1]
        elif chunk == b"data":
            if length == 0xFFFFFFFF:
                if data_size_64 is None:
                    return None
                length = data_size_64
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
    try:
        handle = path.open("rb")
    except OSError as error:
        raise AudioError(path, f"cannot open ({error.strerror or type(error).__name__})") from error
    with handle:
        missing = _wav_shortfall(handle, size)
        if missing is None:
            handle.seek(0)
            missing = _au_shortfall(handle.read(24), size)
    if missing:
        raise AudioError(path, f"truncated: the header declares {missing} more bytes of audio data")


def _check_file(path: Path) -> int:
    """The checks made before decoding: exists, regular, not empty, not truncated; the size."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError) as error:
        dangling = " (a symbolic link to a missing file)" if path.is_symlink() else ""
        raise AudioError(path, f"no such file{dangling}") from error
    except OSError as error:
        raise AudioError(path, f"cannot open ({error.strerror or type(error).__name__})") from error
    if not stat.S_ISREG(info.st_mode):
        raise AudioError(path, "not a regular file (a directory or special file)")
    if info.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    _check_declared_length(path, info.st_size)
    return info.st_size


def _check_stream(path: Path, rate: int, channels: int, samples: int | None, size: int) -> None:
    """Refuse a header's implausible rate, channel count or length before decoding it.

    ``samples`` is the declared frame count times the channel count (None: not declared).
    """
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            path,
            f"implausible sample rate {rate} Hz in the header "
            f"(accepted: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)",
        )
    if channels < 1:
        raise AudioError(path, f"the header declares {channels} channels")
    if samples is not None and samples > MAX_SAMPLES_PER_BYTE * size:
        raise AudioError(path, _too_many(samples, size, "the header declares"))


def _too_many(samples: int, size: int, verb: str) -> str:
    return (
        f"{verb} {samples} samples in a file of {size} bytes (more than {MAX_SAMPLES_PER_BYTE} "
        "per byte, beyond any real codec): not audio"
    )


def _check_count(path: Path, samples: int, size: int) -> None:
    """Refuse a stream that decodes to more samples than its size could hold."""
    if samples > MAX_SAMPLES_PER_BYTE * size:
        raise AudioError(path, _too_many(samples, size, "decodes to at least"))


# --- decoding ---------------------------------------------------------------------------------


def _open_soundfile(path: Path, size: int) -> tuple[sf.SoundFile | None, str]:
    """``(handle, "")`` when libsndfile reads the file, else ``(None, its reason)``.

    libsndfile falls back to guessing header-less raw samples for a file whose header it does
    not recognise (an ``.au`` with a broken magic number decodes as 8 kHz u-law noise); such a
    guess is refused here rather than decoded as music. A handle returned has passed
    :func:`_check_stream` (rate, channels and declared length).
    """
    try:
        handle = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        return None, _message(error, path) or type(error).__name__
    try:
        if handle.format == "RAW":
            raise AudioError(path, "not decodable as audio: no recognised header (raw data only)")
        frames = None if handle.frames >= _UNKNOWN_FRAMES else handle.frames * handle.channels
        _check_stream(path, int(handle.samplerate), int(handle.channels), frames, size)
    except Exception:
        handle.close()
        raise
    return handle, ""


def _read_soundfile(path: Path, handle: sf.SoundFile, size: int) -> np.ndarray:
    """All frames ``(samples, channels)`` float32; block by block when the length is open."""
    if handle.frames < _UNKNOWN_FRAMES:
        return handle.read(dtype="float32", always_2d=True)
    blocks, samples = [], 0
    while True:
        block = handle.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            break
        samples += block.size
        _check_count(path, samples, size)
        blocks.append(block)
    if not blocks:
        return np.zeros((0, handle.channels), np.float32)
    return np.concatenate(blocks)


def _read_audioread(path: Path, size: int, first_reason: str) -> tuple[np.ndarray, int]:
    """(samples x channels float32, rate) via audioread, as librosa's fallback decodes it.

    The header's rate, channels and duration are checked before any sample is read, and the
    count of samples decoded while they are read.
    """
    import audioread

    try:
        with audioread.audio_open(str(path)) as source:
            rate, channels = int(source.samplerate), int(source.channels)
            _check_stream(path, rate, channels, None, size)
            duration = float(source.duration)
            if math.isfinite(duration) and duration > 0:
                _check_stream(path, rate, channels, round(duration * rate) * channels, size)
            chunks, samples = [], 0
            for buffer in source:  # 16-bit signed little-endian, interleaved
                chunk = np.frombuffer(buffer, "<i2").astype(np.float32) * np.float32(1 / 32768)
                samples += chunk.size
                _check_count(path, samples, size)
                chunks.append(chunk)
    except (AudioError, MemoryError):
        raise
    except Exception as error:  # audioread raises many unrelated types; all mean "not decodable"
        raise AudioError(
            path, f"not decodable as audio (soundfile: {first_reason}; audioread: {error!r})"
        ) from error
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    data = data[: data.size - data.size % channels].reshape(-1, channels)
    return np.ascontiguousarray(data, dtype=np.float32), rate


def _decode(path: Path, size: int) -> tuple[np.ndarray, int]:
    """(samples x channels float32, rate) via soundfile, else audioread."""
    handle, first_reason = _open_soundfile(path, size)
    if handle is not None:
        with handle:
            return _read_soundfile(path, handle, size), int(handle.samplerate)
    return _read_audioread(path, size, first_reason)


def _checked_mono(path: Path, data: np.ndarray) -> np.ndarray:
    """Channel average of ``(samples, channels)`` float32; NaN or infinity is an error."""
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def _check_target_rate(sample_rate: int) -> None:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate}: must be > 0")


def _load(path: Path, sample_rate: int) -> tuple[np.ndarray, str]:
    size = _check_file(path)
    data, rate = _decode(path, size)
    if data.shape[0] == 0:
        raise AudioError(path, "no audio samples (header only)")
    mono = _checked_mono(path, data)
    content = audio_digest(data, rate)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32), content


def load_audio(path: str | os.PathLike, sample_rate: int = 22050) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` Hz, shape ``(samples,)``.

    Any format soundfile or audioread reads, any rate from :data:`MIN_SAMPLE_RATE` to
    :data:`MAX_SAMPLE_RATE` and any channel count. Channels are averaged before soxr
    high-quality resampling (librosa.load's defaults).

    Raises:
        AudioError: the file is missing, unreadable, a directory or special file, empty,
            header only, truncated, not audio, has an implausible sample rate, declares more
            than :data:`MAX_SAMPLES_PER_BYTE` samples per byte of its size, holds NaN or
            infinite samples, or fails in the decoders or the resampler in any other way (its
            reason says how, ``unreadable (<exception>)``), running out of memory included.
        ValueError: ``sample_rate`` is not positive.
    """
    return load_song(path, sample_rate)[0]


def load_song(path: str | os.PathLike, sample_rate: int = 22050) -> tuple[np.ndarray, str]:
    """:func:`load_audio`'s samples and the song's identity: the digest of the samples as
    decoded, at the file's own rate and channels (:func:`genre_jax.identity.audio_digest`),
    which a copy or a lossless transcode of the file keeps.

    Raises:
        AudioError, ValueError: as :func:`load_audio`.
    """
    _check_target_rate(sample_rate)
    path = Path(path)
    try:
        return _load(path, sample_rate)
    except AudioError:
        raise
    except Exception as error:  # any failure on this one file is this file's AudioError
        raise _as_audio_error(path, error) from error


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
        AudioError: as :func:`load_audio`, during iteration: the file checks (missing,
            unreadable, empty, truncated, not audio, implausible rate or declared length)
            before the first block; NaN or infinite samples, more samples than the file's size
            could hold, or a read failure, at the block where they occur, after the blocks
            before it were yielded.
        ValueError: ``block_seconds`` or ``sample_rate`` is not positive.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds={block_seconds}: must be > 0")
    _check_target_rate(sample_rate)
    path = Path(path)
    try:
        yield from _blocks(path, sample_rate, block_seconds)
    except AudioError:
        raise
    except Exception as error:  # any failure on this one file is this file's AudioError
        raise _as_audio_error(path, error) from error


def _blocks(path: Path, sample_rate: int, block_seconds: float) -> Iterator[np.ndarray]:
    size = _check_file(path)
    handle, _ = _open_soundfile(path, size)
    if handle is None:
        audio, _ = _load(path, sample_rate)  # audioread, with load_audio's own checks
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
                reason = _message(error, path) or type(error).__name__
                raise AudioError(
                    path, f"unreadable after {frames_read} frames ({reason})"
                ) from error
            if data.shape[0] == 0:
                break
            frames_read += data.shape[0]
            _check_count(path, frames_read * data.shape[1], size)
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
