"""Test-time aggregation over overlapping windows (``genre-jax evaluate --window-hop S``).

A store holds each track's non-overlapping segments; a track longer than one segment is then
judged on those alone, and its remainder is never heard. With a window hop, evaluation decodes
each evaluated song again and scores every window of one segment's length starting each
``hop`` seconds (the last window ending at or before the song's end), and the song's genre is
that of the windows' mean probability. A mixed ensemble's members each read the song at their
own rate and features, and the song's probabilities are the mean of theirs.
"""

from __future__ import annotations

import numpy as np

from genre_jax.audio import load_audio
from genre_jax.config import ConfigError
from genre_jax.inference import Predictor
from genre_jax.predict import score_segments


def windows(audio: np.ndarray, window: int, hop: int) -> np.ndarray:
    """``(n, window)`` windows of ``audio`` starting every ``hop`` samples; none when the audio
    is shorter than one window."""
    if hop < 1:
        raise ConfigError(f"window hop of {hop} samples: must be at least one sample")
    if len(audio) < window:
        return np.zeros((0, window), audio.dtype)
    return np.lib.stride_tricks.sliding_window_view(audio, window)[::hop]


def check_hop(hop_seconds: float) -> None:
    if not hop_seconds > 0:
        raise ConfigError(f"evaluation setting window_hop={hop_seconds}: must be above 0 s")


def song_probabilities(
    predictor: Predictor, path: str, hop_seconds: float
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """``(mean probability, votes, windows)`` of the song at ``path``: the mean over its
    windows, each class's count of windows it wins, and how many windows (for a mixed
    ensemble: the members' mean of means, their votes summed, the most windows of a member);
    None when the song is shorter than one window."""
    check_hop(hop_seconds)
    means, votes, count = [], np.zeros(len(predictor.genres)), 0
    for reader in predictor.readers:
        config = reader.feature_config
        audio = load_audio(path, config.sample_rate)
        hop = max(1, round(hop_seconds * config.sample_rate))
        cut = windows(audio, config.segment_samples, hop)
        if not len(cut):
            return None
        probabilities = score_segments(np.ascontiguousarray(cut), reader)
        means.append(probabilities.mean(axis=0))
        votes += np.bincount(probabilities.argmax(axis=1), minlength=len(votes))
        count = max(count, len(cut))
    return np.mean(means, axis=0), votes, count
