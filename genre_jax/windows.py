"""Test-time aggregation over overlapping windows (``genre-jax evaluate --window-hop S``).

A store holds each track's non-overlapping segments; a track longer than one segment is then
judged on those alone, and its remainder is never heard. With a window hop, evaluation decodes
each evaluated song again and scores every window of one segment's length starting each
``hop`` seconds (the last window ending at or before the song's end), and the song's genre is
that of the windows' mean probability. A mixed ensemble's members each read the song at their
own rate and features, and the song's probabilities are the mean of theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genre_jax.audio import AudioError, load_audio
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


BATCH_WINDOWS = 1024  # windows of several songs scored in one call (about 50 MB of 2 s audio)


@dataclass(frozen=True)
class SongWindows:
    """A song's answer from its windows.

    Attributes:
        mean: the mean probability over its windows (a mixed ensemble: the members' mean of
            their means).
        votes: each class's count of windows it wins (summed over the members).
        windows: how many windows were scored (the most of any member).
    """

    mean: np.ndarray
    votes: np.ndarray
    windows: int


def _window_rows(reader: Predictor, paths: Sequence[str], hop_seconds: float) -> list:
    """Each song's window probabilities ``(windows, classes)`` by ``reader`` (None for a song
    shorter than one window), the windows of several songs scored in one call.

    One call per song would leave a model's batch nearly empty: a 2-3 s excerpt has two or
    three windows, and musicnnsvm embeds 64 at a time.
    """
    config = reader.feature_config
    hop = max(1, round(hop_seconds * config.sample_rate))
    rows: list[np.ndarray | None] = [None] * len(paths)
    pending: list[tuple[int, np.ndarray]] = []
    waiting = 0  # windows in pending

    def score() -> None:
        probabilities = score_segments(np.concatenate([cut for _, cut in pending]), reader)
        starts = np.cumsum([0] + [len(cut) for _, cut in pending])
        for (song, _), start, end in zip(pending, starts[:-1], starts[1:], strict=True):
            rows[song] = probabilities[start:end]
        pending.clear()

    for song, path in enumerate(paths):
        try:
            audio = load_audio(path, config.sample_rate)
        except AudioError as error:
            raise ConfigError(
                f"{path}: cannot be decoded again for windows ({error.reason}); "
                "evaluate without --window-hop"
            ) from None
        cut = windows(audio, config.segment_samples, hop)
        if len(cut):
            pending.append((song, np.ascontiguousarray(cut)))
            waiting += len(cut)
        if waiting >= BATCH_WINDOWS:
            score()
            waiting = 0
    if pending:
        score()
    return rows


def song_windows(
    predictor: Predictor, paths: Sequence[str], hop_seconds: float
) -> list[SongWindows | None]:
    """Each song's :class:`SongWindows` over windows of one segment every ``hop_seconds``
    (each member of a mixed ensemble at its own rate and features); None for a song shorter
    than one window at some member's rate.

    Raises:
        ConfigError: a song cannot be decoded again (named, with the reason), or the hop is
            not above 0 s.
    """
    check_hop(hop_seconds)
    classes = len(predictor.genres)
    per_reader = [_window_rows(reader, paths, hop_seconds) for reader in predictor.readers]
    answers: list[SongWindows | None] = []
    for song in range(len(paths)):
        found = [rows[song] for rows in per_reader]
        if any(rows is None for rows in found):
            answers.append(None)
            continue
        votes = sum(np.bincount(rows.argmax(axis=1), minlength=classes) for rows in found)
        mean = np.mean([rows.mean(axis=0) for rows in found], axis=0)
        answers.append(SongWindows(mean, votes, max(len(rows) for rows in found)))
    return answers
