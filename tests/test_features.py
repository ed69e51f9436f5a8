"""MFCC and log-mel parity with librosa (the independent reference), and the pure-JAX contract.

Tolerances (from the project's spec): max absolute difference <= 1e-3 and relative L2 error
<= 1e-5 against ``librosa.feature.mfcc(y, sr=22050, n_mfcc=13, n_fft=2048, hop_length=512)``.
Both sides compute in float32, so the observed error is float32 round-off (~1e-7 relative).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.fft
import soundfile as sf

from genre_jax.config import FeatureConfig
from genre_jax.features import (
    dct_matrix,
    extract_jit,
    frame,
    log_compressed_mel,
    log_mel,
    mel_filter_blocks,
    mfcc,
    power_spectrogram,
)
from genre_jax.kernels.extraction import chunk_items
from genre_jax.mel import mel_filterbank
from tests.conftest import shared

SR = 22050
N = 220500  # one 10 s segment
# Elementwise |ours - librosa| <= MAX_ABS + MAX_REL * |librosa|: MFCC 0 of silence is -1131.4 dB,
# where float32 sums over 128 bands in another order (an H100's matmul) land 1.3e-3 off, about
# 3e-7 of the value; MAX_REL allows 8 float32 ulps of the value on top of the absolute bound.
MAX_ABS = 1e-3
MAX_REL = 1e-6
MAX_REL_L2 = 1e-5


def librosa_mfcc(y: np.ndarray) -> np.ndarray:
    return librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512).T


def librosa_log_mel(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T


def assert_parity(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    excess = np.abs(ours - reference) - (MAX_ABS + MAX_REL * np.abs(reference))
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    rel = float(np.linalg.norm(ours - reference) / max(np.linalg.norm(reference), 1e-30))
    assert excess[worst] <= 0, (
        f"at {worst}: ours {ours[worst]:.6g}, librosa {reference[worst]:.6g}: off by more than "
        f"{MAX_ABS} + {MAX_REL} x |librosa|"
    )
    assert rel <= MAX_REL_L2, f"relative L2 error {rel:.3g} > {MAX_REL_L2}"


def synthetic_signals() -> dict[str, np.ndarray]:
    t = np.arange(N) / SR
    click = np.zeros(N, np.float32)
    click[N // 3] = 1.0
    return {
        "silence": np.zeros(N, np.float32),
        "tone": (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32),
        "white_noise": np.random.default_rng(0).normal(0, 0.1, N).astype(np.float32),
        "click": click,
    }


@pytest.mark.parametrize("name", ["silence", "tone", "white_noise", "click"])
def test_mfcc_matches_librosa_on_test_signals(name: str) -> None:
    y = synthetic_signals()[name]
    ours = np.asarray(mfcc(y[None]))[0]
    assert ours.shape == (431, 13)
    assert_parity(ours, librosa_mfcc(y))


def test_mfcc_matches_librosa_on_real_gtzan_clips() -> None:
    files = sorted(shared("gtzan-mini").glob("genres_original/*/*.wav"))
    assert len(files) == 10
    for path in files:
        y, rate = sf.read(path, dtype="float32")
        assert rate == SR
        segments = y[: 3 * N].reshape(3, N)
        ours = np.asarray(extract_jit(segments, FeatureConfig()))
        assert ours.shape == (3, 431, 13)
        for i in range(3):
            assert_parity(ours[i], librosa_mfcc(segments[i]))


def test_a_batch_computed_in_chunks_matches_librosa_signal_by_signal() -> None:
    # Ten-second segments go two at a time on CPU, so a (3, 2) batch is three chunks; the
    # 2 s signals (87 frames) eleven at a time, so 13 of them make a chunk and a remainder.
    assert chunk_items(431) == 2 and chunk_items(87) == 11
    signals = list(synthetic_signals().values())
    batch = np.stack([*signals, signals[1] * 0.3, signals[2][::-1].copy()]).reshape(3, 2, N)
    ours = np.asarray(mfcc(batch))
    assert ours.shape == (3, 2, 431, 13)
    for index in np.ndindex(3, 2):
        assert_parity(ours[index], librosa_mfcc(batch[index]))
    short = np.random.default_rng(3).normal(0, 0.1, (13, 2 * SR)).astype(np.float32)
    short *= np.linspace(0.05, 1.0, 13, dtype=np.float32)[:, None]
    ours_mel = np.asarray(log_mel(short))
    for i in range(13):
        np.testing.assert_allclose(ours_mel[i], librosa_log_mel(short[i]), atol=1e-3)


def test_log_mel_matches_librosa() -> None:
    y = synthetic_signals()["white_noise"] * np.linspace(0, 1, N, dtype=np.float32)
    ours = np.asarray(log_mel(y[None]))[0]
    assert ours.shape == (431, 128)
    np.testing.assert_allclose(ours, librosa_log_mel(y), atol=1e-3)


def test_log_compressed_mel_matches_librosa_on_real_music() -> None:
    # musicnn's input: log10(1 + 10000 * librosa mel power) of 16 kHz audio, n_fft 512, hop 256,
    # 96 bands. Values span 0 (silence) to ~6; float32 round-off leaves ~1e-6.
    path = shared("gtzan-mini/genres_original/jazz/jazz.00000.wav")
    y, _ = librosa.load(path, sr=16000, duration=6.0)
    noise = np.random.default_rng(4).normal(0, 0.1, len(y)).astype(np.float32)
    signals = np.stack([y, noise * np.linspace(0, 1, len(y), dtype=np.float32)])
    config = FeatureConfig(kind="logc", sample_rate=16000, n_fft=512, hop_length=256, n_mels=96)
    ours = np.asarray(log_compressed_mel(signals, config))
    assert ours.shape == (2, 1 + len(y) // 256, 96)
    for i, signal in enumerate(signals):
        power = librosa.feature.melspectrogram(
            y=signal, sr=16000, n_fft=512, hop_length=256, n_mels=96
        )
        np.testing.assert_allclose(ours[i], np.log10(1 + 10000 * power).T, atol=1e-4, rtol=1e-5)


def test_filterbank_and_dct_match_references() -> None:
    np.testing.assert_allclose(
        mel_filterbank(SR, 2048, 128, 0.0, SR / 2),
        librosa.filters.mel(sr=SR, n_fft=2048, n_mels=128),
        atol=1e-8,
        rtol=1e-5,
    )
    x = np.random.default_rng(1).normal(size=(5, 128))
    reference = scipy.fft.dct(x, type=2, norm="ortho", axis=-1)[:, :13]
    np.testing.assert_allclose(x @ dct_matrix(128, 13).astype(np.float64), reference, atol=1e-6)


@pytest.mark.parametrize(
    ("n_fft", "n_mels", "groups"), [(2048, 128, 8), (256, 128, 8), (128, 128, 64), (2048, 40, 3)]
)
def test_filter_blocks_hold_every_weight_of_librosas_filterbank(
    n_fft: int, n_mels: int, groups: int
) -> None:
    # 128 bands over 129 or 65 bins leave 20 or 46 of librosa's triangles empty (it warns),
    # some blocks wholly: their columns must come out zero, not shift the other bands.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels)
    blocks = mel_filter_blocks(SR, n_fft, n_mels, 0.0, SR / 2, groups)
    assert len(blocks) == groups
    rebuilt = np.zeros((1 + n_fft // 2, n_mels))
    column = 0
    for first, end, weights in blocks:
        assert weights.shape[0] == end - first
        rebuilt[first:end, column : column + weights.shape[1]] = weights
        column += weights.shape[1]
    assert column == n_mels
    np.testing.assert_allclose(rebuilt, reference.T, atol=1e-8, rtol=1e-5)
    assert np.count_nonzero(rebuilt) == np.count_nonzero(reference)


def test_power_spectrum_matches_numpy_float64() -> None:
    y = np.random.default_rng(2).normal(size=8000).astype(np.float32)
    padded = np.pad(y.astype(np.float64), 1024)
    frames = np.stack([padded[i * 512 : i * 512 + 2048] for i in range(1 + 8000 // 512)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)
    reference = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    ours = np.asarray(power_spectrogram(y))
    np.testing.assert_allclose(ours, reference, rtol=2e-4, atol=1e-3)


@pytest.mark.parametrize(("n_fft", "hop"), [(2048, 512), (1024, 256), (2048, 441), (400, 160)])
def test_framing_equals_strided_reference(n_fft: int, hop: int) -> None:
    y = np.arange(5000, dtype=np.float32)
    padded = np.pad(y, n_fft // 2)
    reference = np.stack([padded[t * hop : t * hop + n_fft] for t in range(1 + 5000 // hop)])
    np.testing.assert_array_equal(np.asarray(frame(jnp.asarray(y), n_fft, hop)), reference)


def test_framing_uses_no_gather_for_the_seed_settings() -> None:
    jaxpr = str(jax.make_jaxpr(lambda x: frame(x, 2048, 512))(jnp.zeros((2, N))))
    assert "gather" not in jaxpr


def test_batched_jit_and_vmap_agree() -> None:
    signals = np.stack(list(synthetic_signals().values()))
    batched = np.asarray(mfcc(signals))
    mapped = np.asarray(jax.vmap(lambda s: mfcc(s))(jnp.asarray(signals)))
    jitted = np.asarray(jax.jit(lambda s: mfcc(s))(signals))
    assert batched.shape == (4, 431, 13) and batched.dtype == np.float32
    np.testing.assert_allclose(mapped, batched, atol=1e-4)
    np.testing.assert_allclose(jitted, batched, atol=1e-4)


def test_top_db_is_relative_to_each_segment() -> None:
    loud = synthetic_signals()["tone"]
    quiet = loud * 0.1
    together = np.asarray(mfcc(np.stack([loud, quiet])))
    alone = np.asarray(mfcc(quiet[None]))[0]
    np.testing.assert_allclose(together[1], alone, atol=1e-4)
    # A 20 dB quieter copy (its 80 dB floor still above amin's -100 dB) shifts every mel band
    # by 20 dB, so only c0 moves, by 20 * 128 / sqrt(128) under the orthonormal DCT.
    np.testing.assert_allclose(together[0, :, 0] - together[1, :, 0], 20 * np.sqrt(128), rtol=1e-3)
    np.testing.assert_allclose(together[0, :, 1:], together[1, :, 1:], atol=1e-3)


def test_overrides_change_the_output_shape() -> None:
    y = synthetic_signals()["white_noise"][None, :22050]
    assert mfcc(y, n_mfcc=20).shape == (1, 44, 20)
    assert log_mel(y, n_mels=64).shape == (1, 44, 64)
