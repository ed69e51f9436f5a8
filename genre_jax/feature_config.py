"""How audio becomes model input: :class:`FeatureConfig`, the feature settings of a store
and of every run on it (the seed's recipe by default), with the checks it can make alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from genre_jax.mel import empty_mel_bands
from genre_jax.settings import ConfigError, check_fields, config_hash, from_json, setting

FEATURE_KINDS = ("mfcc", "logmel", "logc")


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes model input (the seed's recipe by default).

    Attributes:
        kind: ``"mfcc"`` (the seed's 13 MFCCs), ``"logmel"`` (dB mel spectrogram) or ``"logc"``
            (``log10(1 + 10000 * mel power)``, the input of the pretrained musicnn).
        sample_rate: target rate in Hz; every file is resampled to it.
        segment_seconds: length of the non-overlapping segments cut from each track, in s.
        n_mfcc: MFCC coefficients kept (``kind="mfcc"``).
        n_fft: FFT size and Hann window length, in samples.
        hop_length: frame step, in samples.
        n_mels: Slaney mel bands.
        fmin: lowest mel band edge, Hz.
        fmax: highest mel band edge, Hz; ``None`` means ``sample_rate / 2``.
        top_db: dB floor below each segment's own maximum; ``None`` disables it (dB kinds).
        amin: power floor before the logarithm (dB kinds).
    """

    kind: str = setting("mfcc", choices=FEATURE_KINDS)
    sample_rate: int = setting(22050, minimum=1000, maximum=768000)
    segment_seconds: float = setting(10.0, above=0, maximum=3600)
    n_mfcc: int = setting(13, minimum=1)
    n_fft: int = setting(2048, minimum=2, maximum=65536)
    hop_length: int = setting(512, minimum=1)
    n_mels: int = setting(128, minimum=1, maximum=1024)
    fmin: float = setting(0.0, minimum=0)
    fmax: float | None = setting(None, above=0)
    top_db: float | None = setting(80.0, minimum=0)
    amin: float = setting(1e-10, above=0)

    def __post_init__(self) -> None:
        check_fields(self, "feature setting")
        if self.segment_samples < self.n_fft // 2 + 1:
            raise ConfigError(
                f"feature setting segment_seconds={self.segment_seconds}: a segment of "
                f"{self.segment_samples} samples is shorter than half the FFT (n_fft={self.n_fft})"
            )
        if self.hop_length > self.segment_samples:
            raise ConfigError(
                f"feature setting hop_length={self.hop_length}: longer than a segment "
                f"({self.segment_samples} samples)"
            )
        if self.n_mfcc > self.n_mels:
            raise ConfigError(f"feature setting n_mfcc={self.n_mfcc}: exceeds n_mels={self.n_mels}")
        if not 0 <= self.fmin < self.max_frequency <= self.sample_rate / 2:
            raise ConfigError(
                f"feature settings fmin={self.fmin}, fmax={self.fmax}: need "
                f"0 <= fmin < fmax <= sample_rate/2 = {self.sample_rate / 2}"
            )
        self._refuse_empty_mel_bands()

    def _refuse_empty_mel_bands(self) -> None:
        """Refuse mel bands that no FFT bin falls in: each would be one constant for every
        segment (``fmax=1`` made every segment's features the same). The filters are those
        the features use (:func:`genre_jax.mel.empty_mel_bands`)."""
        empty = empty_mel_bands(
            self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.max_frequency
        )
        if empty:
            fmax = f"{self.fmax:g}" if self.fmax is not None else f"None ({self.max_frequency:g})"
            raise ConfigError(
                f"feature settings fmin={self.fmin:g}, fmax={fmax}, n_mels={self.n_mels}, "
                f"n_fft={self.n_fft}, sample_rate={self.sample_rate}: {len(empty)} of the "
                f"{self.n_mels} mel bands are empty (band {_index_ranges(empty)}): no FFT bin "
                f"(one every {self.sample_rate / self.n_fft:.4g} Hz) falls inside them; use "
                "fewer n_mels, a wider fmin..fmax or a larger n_fft"
            )

    @property
    def max_frequency(self) -> float:
        """Upper mel edge in Hz (``fmax`` or the Nyquist frequency)."""
        return float(self.sample_rate / 2 if self.fmax is None else self.fmax)

    @property
    def segment_samples(self) -> int:
        """Samples per segment (220500 for the seed's 10 s at 22050 Hz)."""
        return round(self.segment_seconds * self.sample_rate)

    @property
    def n_frames(self) -> int:
        """Frames per segment with centred framing (431 for the seed's settings)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def n_features(self) -> int:
        """Coefficients per frame: ``n_mfcc`` for MFCC, ``n_mels`` for the mel kinds."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureConfig:
        return from_json(cls, data)

    def hash(self) -> str:
        """Stable 12-hex-digit key of the settings (identical configs, identical hash)."""
        return config_hash(self)


def _index_ranges(indices: list[int], most: int = 6) -> str:
    """``0-3, 5, 7-9``: sorted indices as runs (the first ``most`` runs, then ``...``)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:most]]
    return ", ".join(text + (["..."] if len(runs) > most else []))
