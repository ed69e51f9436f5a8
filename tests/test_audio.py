"""Decoding, resampling, down-mixing and segmenting, against librosa.load as the reference."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from genre_jax.audio import (
    MAX_SAMPLE_RATE,
    MAX_SAMPLES_PER_BYTE,
    MIN_SAMPLE_RATE,
    AudioError,
    iter_audio_blocks,
    load_audio,
    load_segments,
    segment,
)
from genre_jax.truncation import truncation_warning
from tests.conftest import shared

SR = 22050


def write_tone(path: Path, seconds: float, rate: int = SR, channels: int = 1, **kw) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1)
    sf.write(path, data.astype(np.float32), rate, **kw)
    return data


def test_real_gtzan_clip_gives_three_segments_of_431_by_13() -> None:
    from genre_jax.config import FeatureConfig
    from genre_jax.features import extract_jit

    path = shared("gtzan-mini/genres_original/blues/blues.00000.wav")
    segments = load_segments(path)
    assert segments.shape == (3, 220500) and segments.dtype == np.float32
    assert extract_jit(segments, FeatureConfig()).shape == (3, 431, 13)


def test_ogg_44k_stereo_decodes_to_mono_22050_and_six_segments() -> None:
    path = shared("other/vibe_ace_44k_stereo.ogg")
    info = sf.info(path)
    assert (info.samplerate, info.channels) == (44100, 2)
    audio = load_audio(path)
    reference, _ = librosa.load(path, sr=SR, mono=True)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.shape[0] / SR - 61.0) < 1.0
    assert audio.shape == reference.shape
    np.testing.assert_allclose(audio, reference, atol=1e-5)
    assert segment(audio, 220500).shape == (6, 220500)


@pytest.mark.parametrize(
    ("rate", "channels", "fmt"),
    [(8000, 1, "WAV"), (96000, 6, "WAV"), (44100, 2, "FLAC"), (16000, 1, "AU")],
)
def test_any_rate_and_channel_count(tmp_path: Path, rate: int, channels: int, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    data = write_tone(path, 2.0, rate, channels, format=fmt)
    audio = load_audio(path)
    reference = librosa.resample(data.mean(axis=1), orig_sr=rate, target_sr=SR, res_type="soxr_hq")
    assert audio.shape[0] == 2 * SR
    np.testing.assert_allclose(audio, reference, atol=2e-4)  # 16-bit PCM quantisation in files


def test_short_track_keeps_its_full_segments() -> None:
    audio = np.ones(int(29.9 * SR), np.float32)
    assert segment(audio, 10 * SR).shape == (2, 10 * SR)
    assert segment(audio[: 5 * SR], 10 * SR).shape == (0, 10 * SR)
    assert segment(audio, 2 * SR).shape == (14, 2 * SR)


def expect_error(path: Path, reason: str) -> None:
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    assert str(path) in str(caught.value)
    assert reason in caught.value.reason


def test_truncated_wav_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "truncated.wav"
    write_tone(path, 3.0, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "truncated")


def test_truncated_au_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "truncated.au"
    write_tone(path, 3.0, format="AU")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    expect_error(path, "truncated")


def test_text_renamed_wav_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are not the samples you are looking for\n" * 20)
    expect_error(path, "not decodable")


def test_empty_header_only_missing_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    expect_error(empty, "empty")
    header = tmp_path / "header.wav"
    write_tone(header, 1.0, subtype="PCM_16")
    header.write_bytes(header.read_bytes()[:44])
    # A 44-byte RIFF header whose data chunk is declared but absent is a truncated file.
    expect_error(header, "truncated")
    expect_error(tmp_path / "missing.wav", "no such file")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    expect_error(folder, "not a regular file")


def test_header_only_wav_with_zero_length_data_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0, 1), np.float32), SR, subtype="PCM_16")
    expect_error(path, "no audio samples")


def test_non_finite_samples_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    data = np.zeros(SR, np.float32)
    data[100] = np.nan
    sf.write(path, data, SR, subtype="FLOAT")
    expect_error(path, "NaN")


# --- every failure on one file is that file's AudioError (issue 15, item 8) -----------------

# a 48-byte PCM WAV whose fmt chunk says 0 Hz: libsndfile refuses it, audioread reads rate 0
ZERO_RATE_WAV = (
    b"RIFF\x28\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\0\x02\0\x10\0"
    b"data\x04\0\0\0\0\0\0\0"
)


def expect_both(path: Path, reason: str) -> None:
    """load_audio and iter_audio_blocks raise the same AudioError, naming the file."""
    expect_error(path, reason)
    with pytest.raises(AudioError) as caught:
        list(iter_audio_blocks(path))
    assert str(path) in str(caught.value) and reason in caught.value.reason


def test_zero_sample_rate_wav_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r0.wav"
    path.write_bytes(ZERO_RATE_WAV)
    expect_both(path, "sample rate 0 Hz")


def unreadable_file(tmp_path: Path) -> Path:
    """A regular file whose opening fails with EACCES, even for root: a chmod 000 file, else
    (root ignores file modes) a link to a write-only sysfs attribute."""
    path = tmp_path / "locked.wav"
    write_tone(path, 1.0)
    path.chmod(0)
    try:
        path.open("rb").close()
    except PermissionError:
        return path
    path.unlink()
    for target in ("/sys/bus/pci/rescan", "/sys/bus/platform/drivers_probe"):
        try:
            open(target, "rb").close()
        except PermissionError:
            path.symlink_to(target)
            return path
        except OSError:
            continue
    pytest.skip("no file here whose opening fails with EACCES")


def test_file_that_cannot_be_opened_is_an_error(tmp_path: Path) -> None:
    path = unreadable_file(tmp_path)
    expect_both(path, "cannot open (Permission denied)")


def test_exception_inside_the_decoder_is_an_error(tmp_path: Path) -> None:
    # A FLAC whose STREAMINFO leaves the length open (total samples 0): libsndfile reports
    # SF_COUNT_MAX frames, which soundfile's read() cannot allocate (a ValueError before).
    path = tmp_path / "open_length.flac"
    write_tone(path, 1.0, format="FLAC")
    data = bytearray(path.read_bytes())
    data[21] &= 0xF0  # the 36-bit total sample count: 4 bits at byte 21, then bytes 22-25
    data[22:26] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    assert sf.info(path).frames == 2**63 - 1
    expect_both(path, "unreadable")


MEMORY_SCRIPT = """
import resource, sys
from genre_jax.audio import AudioError, load_audio
for line in open("/proc/self/status"):
    if line.startswith("VmSize:"):
        limit = int(line.split()[1]) * 1024 + 64 * 2**20  # 64 MB more address space
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    load_audio(sys.argv[1])
except AudioError as error:
    print(error.reason)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_running_out_of_memory_is_the_files_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "long_silence.flac"  # 36 minutes: 192 MB as float32, 158 KB as FLAC
    with sf.SoundFile(path, "w", SR, 1, format="FLAC", subtype="PCM_16") as handle:
        for _ in range(48):
            handle.write(np.zeros(1 << 20, np.float32))
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "too large to decode in memory (MemoryError)" in done.stdout


# --- implausible rates and lengths are refused before decoding (item 9) ----------------------


def pcm_wav(rate: int, frames: int) -> bytes:
    """A mono 16-bit PCM WAV of silence whose header says ``rate`` Hz."""
    data = bytes(2 * frames)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, 2 * rate, 2, 16)
    chunks = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(chunks) + len(data)) + chunks + data


@pytest.mark.parametrize("rate", [1, 999, 768_001, 4_000_000])
def test_implausible_sample_rate_is_refused(tmp_path: Path, rate: int) -> None:
    # at 1 Hz these 2,000 samples are 2,000 s, 44 million samples once resampled to 22050 Hz
    path = tmp_path / f"rate{rate}.wav"
    path.write_bytes(pcm_wav(rate, 2000))
    expect_both(path, f"implausible sample rate {rate} Hz")


@pytest.mark.parametrize("rate", [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE])
def test_sample_rates_at_the_limits_decode(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"rate{rate}.wav"
    path.write_bytes(pcm_wav(rate, rate // 10))
    assert load_audio(path).shape == (SR // 10,)


def test_declared_length_beyond_what_the_file_could_hold_is_refused(tmp_path: Path) -> None:
    # A 24 KB FLAC whose STREAMINFO declares 2**35 frames (6 days at 22050 Hz, 128 GB as float32)
    path = tmp_path / "lying.flac"
    write_tone(path, 1.0, format="FLAC")
    data = bytearray(path.read_bytes())
    data[21] = (data[21] & 0xF0) | 0x08
    data[22:26] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    assert sf.info(path).frames == 2**35
    assert MAX_SAMPLES_PER_BYTE * len(data) < 2**35
    expect_both(path, f"declares {2**35} samples in a file of {len(data)} bytes")


@pytest.mark.parametrize(("fmt", "subtype", "channels"), [("FLAC", "PCM_S8", 8), ("OGG", None, 8)])
def test_digital_silence_in_dense_codecs_is_within_the_bound(
    tmp_path: Path, fmt: str, subtype: str | None, channels: int
) -> None:
    path = tmp_path / f"silence.{fmt.lower()}"
    with sf.SoundFile(path, "w", SR, channels, format=fmt, subtype=subtype) as handle:
        for _ in range(120):  # two minutes, written a second at a time
            handle.write(np.zeros((SR, channels), np.float32))
    per_byte = 120 * SR * channels / path.stat().st_size
    assert 1000 < per_byte < MAX_SAMPLES_PER_BYTE / 1.5
    assert load_audio(path).shape == (120 * SR,)


# --- RIFF chunks walked to the data chunk (item 6) -------------------------------------------


def with_chunk_before_data(wav: bytes, name: bytes, body: bytes) -> bytes:
    """``wav`` (a canonical 44-byte-header WAV) with one more chunk between fmt and data."""
    chunk = name + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)
    joined = wav[:36] + chunk + wav[36:]
    return joined[:4] + struct.pack("<I", len(joined) - 8) + joined[8:]


@pytest.mark.parametrize("extra", [100_001, 3_000_000])
def test_truncated_wav_with_a_large_chunk_before_data_is_an_error(
    tmp_path: Path, extra: int
) -> None:
    plain = tmp_path / "plain.wav"
    write_tone(plain, 3.0, subtype="PCM_16")
    wav = plain.read_bytes()
    assert wav[36:40] == b"data"
    path = tmp_path / "tagged.wav"
    path.write_bytes(with_chunk_before_data(wav, b"LIST", b"INFO" + b"x" * (extra - 4)))
    np.testing.assert_array_equal(load_audio(path), load_audio(plain))  # odd size, pad byte
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - len(wav) // 2])
    expect_both(path, "truncated")


def test_truncated_rf64_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    write_tone(path, 3.0, format="RF64", subtype="PCM_16")
    data = path.read_bytes()
    assert data[:4] == b"RF64" and b"ds64" in data[:64]
    assert load_audio(path).shape == (3 * SR,)
    path.write_bytes(data[: len(data) // 2])
    expect_both(path, "truncated")


# --- Ogg and MP3 files cut short decode silently: the container tells (item 6) ---------------

CODECS = [
    ("OGG", "VORBIS", ".ogg", 44100),
    ("OGG", "OPUS", ".opus", 48000),
    ("MP3", None, ".mp3", 44100),
]


def write_codec(path: Path, fmt: str, subtype: str | None, rate: int, seconds: float) -> None:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    sf.write(path, np.stack([tone, tone[::-1]], axis=1), rate, format=fmt, subtype=subtype)


def decoded_seconds(path: Path) -> float:
    return load_audio(path).shape[0] / SR


@pytest.mark.parametrize(("fmt", "subtype", "ext", "rate"), CODECS)
def test_cut_ogg_and_mp3_files_get_a_truncation_warning(
    tmp_path: Path, fmt: str, subtype: str | None, ext: str, rate: int
) -> None:
    path = tmp_path / f"song{ext}"
    write_codec(path, fmt, subtype, rate, 20.0)
    assert truncation_warning(path, decoded_seconds(path)) is None
    data = path.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    seconds = decoded_seconds(cut)  # decodes without error, to about half
    assert 5.0 < seconds < 15.0
    warning = truncation_warning(cut, seconds)
    assert warning is not None and warning.startswith("truncated")
    assert f"{seconds:.2f} s decoded" in warning


def test_ogg_cut_at_a_page_boundary_lacks_its_end_of_stream_page(tmp_path: Path) -> None:
    path = tmp_path / "song.ogg"
    write_codec(path, "OGG", "VORBIS", 44100, 20.0)
    data = path.read_bytes()
    boundary = data.find(b"OggS", len(data) // 2)
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[:boundary])
    assert "without its end-of-stream page" in truncation_warning(cut, decoded_seconds(cut))


def test_mp3_xing_header_shows_a_cut_after_an_id3_tag(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    write_codec(path, "MP3", None, 44100, 10.0)
    body = b"TIT2" + struct.pack(">I", 6) + b"\0\0\0Song"  # one ID3v2.3 frame, 16 bytes
    tag = b"ID3\x03\0\0" + bytes([0, 0, 0, len(body)]) + body
    tagged = tmp_path / "tagged.mp3"
    tagged.write_bytes(tag + path.read_bytes())
    assert truncation_warning(tagged, decoded_seconds(tagged)) is None
    data = tagged.read_bytes()
    tagged.write_bytes(data[: len(data) - 5000])
    warning = truncation_warning(tagged, decoded_seconds(tagged))
    assert warning is not None and warning.startswith("truncated: its MP3 Xing header declares")


@pytest.mark.parametrize(("fmt", "subtype", "ext", "rate"), CODECS)
def test_truncation_warning_never_raises_on_any_prefix(
    tmp_path: Path, fmt: str, subtype: str | None, ext: str, rate: int
) -> None:
    path = tmp_path / f"song{ext}"
    write_codec(path, fmt, subtype, rate, 2.0)
    data = path.read_bytes()
    prefix = tmp_path / f"prefix{ext}"
    for end in sorted({*range(0, 300), *range(0, len(data), 97), len(data)}):
        prefix.write_bytes(data[:end])
        warning = truncation_warning(prefix, 1.0)
        assert warning is None or warning.startswith("truncated"), end


def test_no_truncation_warning_for_formats_that_declare_nothing(tmp_path: Path) -> None:
    for name, kw in (("a.wav", {}), ("a.flac", {"format": "FLAC"}), ("a.au", {"format": "AU"})):
        write_tone(tmp_path / name, 1.0, **kw)
        assert truncation_warning(tmp_path / name, 1.0) is None
    (tmp_path / "notes.ogg").write_text("OggS? no: plain text\n" * 10)
    assert truncation_warning(tmp_path / "notes.ogg", 1.0) is None
    assert truncation_warning(tmp_path / "missing.mp3", 1.0) is None
    os.mkfifo(tmp_path / "pipe.ogg")  # opening it would wait for a writer
    assert truncation_warning(tmp_path / "pipe.ogg", 1.0) is None
    expect_error(tmp_path / "pipe.ogg", "not a regular file")


def test_check_reports_a_cut_ogg_as_a_warning(tmp_path: Path) -> None:
    from genre_jax.check import check_dataset

    for genre in ("jazz", "rock"):
        (tmp_path / genre).mkdir()
        write_tone(tmp_path / genre / "whole.wav", 11.0)
    path = tmp_path / "rock" / "cut.ogg"
    write_codec(path, "OGG", "VORBIS", 44100, 30.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    results = {Path(r.path).name: r for r in check_dataset(tmp_path, workers=1)}
    assert results["cut.ogg"].level == "warning" and results["cut.ogg"].segments == 1
    assert any(p.startswith("truncated: the last Ogg page") for p in results["cut.ogg"].problems)
    assert results["whole.wav"].level == "ok"


# --- one list of extensions (item 11) ---------------------------------------------------------


def test_opus_files_are_discovered_and_decoded(tmp_path: Path) -> None:
    from genre_jax.datasets import discover

    (tmp_path / "rock").mkdir()
    (tmp_path / "jazz").mkdir()
    path = tmp_path / "rock" / "song.opus"
    write_tone(path, 2.0, 48000, 2, format="OGG", subtype="OPUS")
    write_tone(tmp_path / "jazz" / "other.wav", 1.0, SR, 1)
    assert [t.path for t in discover(tmp_path).tracks][1:] == [str(path.resolve())]
    audio = load_audio(path)
    assert abs(audio.shape[0] - 2 * SR) < SR // 10 and np.abs(audio).max() > 0.1
