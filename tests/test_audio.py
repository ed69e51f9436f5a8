"""Decoding, resampling, down-mixing and segmenting, against librosa.load as the reference."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from genre_jax.audio import AudioError, load_audio, load_segments, segment
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
