"""Test-time aggregation over overlapping windows (``genre-jax evaluate --window-hop S``).

A store holds each track's non-overlapping segments; a track longer than one segment is then
judged on those alone, and its remainder is never heard. With a window hop, evaluation decodes
each evaluated song again and scores every window of one segment's length starting each
``hop`` seconds (the last window ending at or before the song's end), and the song's genre is
that of the windows' mean probability. A mixed ensemble's members each read the song at their
own rate and features, and the song's probabilities are the mean of theirs. A song decoded
again must be the audio the store was built from (its identity, :mod:`genre_jax.identity`):
a file replaced or edited since is refused, never scored in the song's place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genre_jax.audio import AudioError, load_song
from genre_jax.config import ConfigError
from genre_jax.identity import require_song_audio
from genre_jax.inference import Predictor
from genre_jax.segment_rows import hop_samples, score_segments


def windows(audio: np.ndarray, window: int, hop: int) -> np.ndarray:
    """``(n, window)`` windows of ``audio`` starting every ``hop`` samples; none when the audio
    is shorter than one window."""
    if hop < 1:
        raise ConfigError(f"window hop of {hop} samples: must be at least one sample")
    if len(audio) < window:
        return np.zeros((0, window), audio.dtype)
    return np.lib.stride_tricks.sliding_window_view(audio, window)[::hop]


MIN_HOP_SECONDS = 0.01
"""The shortest window hop. A shorter one moves the windows by a fraction of a feature frame
(a frame's hop is 512 samples at 22,050 Hz, 23 ms, in the seed's recipe; 256 samples at
16 kHz, 16 ms, in musicnn's): its cost grows as 1 / hop (already 3,000 windows of a 30 s song
at a 10 ms hop; ``--window-hop 0.0001`` asked for 300,000) while hardly anything new is heard."""
MAX_HOP_SECONDS = 86400.0
"""The longest: a day, longer than any song (a hop longer than a song scores its first window);
beyond it the hop in samples would overflow."""


def check_hop(hop_seconds: float) -> None:
    """Refuse a window hop that is not a finite number of seconds from :data:`MIN_HOP_SECONDS`
    to :data:`MAX_HOP_SECONDS` (``inf`` would overflow, ``nan`` compares false to any bound, and
    a crossval's experiment.json could not hold either as JSON)."""
    valid = isinstance(hop_seconds, int | float) and not isinstance(hop_seconds, bool)
    if not (valid and math.isfinite(hop_seconds)):
        reason = "not a finite number"
    elif hop_seconds < MIN_HOP_SECONDS:
        reason = (
            f"below {MIN_HOP_SECONDS:g} s, windows a fraction of a feature frame apart add "
            "cost (as 1 / hop), not information"
        )
    elif hop_seconds > MAX_HOP_SECONDS:
        reason = f"above {MAX_HOP_SECONDS:g} s (a day, longer than any song)"
    else:
        return
    raise ConfigError(
        f"evaluation setting window_hop={hop_seconds}: {reason}; it must be from "
        f"{MIN_HOP_SECONDS:g} to {MAX_HOP_SECONDS:g} s"
    )


BATCH_WINDOWS = 1024
"""Windows (of one song or several) scored in one call, so that a model's batches stay full
when songs are short (a 2-3 s excerpt has two or three windows)."""
BATCH_BYTES = 64 << 20
"""The most audio one call holds (fewer than :data:`BATCH_WINDOWS` windows when they are
long: 253 windows of 3 s at 22,050 Hz). Windows are copied out of a song's audio only a call at
a time, so evaluating over windows costs this much beyond the decoded song, whatever the hop
and the song's length (at once, a one-hour song at a 0.5 s hop was 6 GB)."""


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


def _window_rows(
    reader: Predictor,
    paths: Sequence[str],
    hop_seconds: float,
    contents: Sequence[str | None] | None = None,
) -> list:
    """Each song's window probabilities ``(windows, classes)`` by ``reader`` (None for a song
    shorter than one window).

    Windows are scored in calls of at most :data:`BATCH_WINDOWS` windows and
    :data:`BATCH_BYTES` of audio, filled across songs (one call per song would leave a model's
    batch nearly empty: musicnnsvm embeds 64 at a time) and, for a long song or a short hop,
    across a song's windows in turn: a window is a view of the song's audio until its call
    copies it, so memory does not grow with the number of windows. Every window is scored on
    its own, so how they are grouped does not change its probabilities. Each song decoded
    must be the one ``contents`` names (its identity in the store, :mod:`genre_jax.identity`),
    where one is given.
    """
    config = reader.feature_config
    hop = hop_samples(hop_seconds, config.sample_rate, config.segment_samples)
    window_bytes = config.segment_samples * np.dtype(np.float32).itemsize
    per_call = max(1, min(BATCH_WINDOWS, BATCH_BYTES // window_bytes))
    parts: list[list[np.ndarray]] = [[] for _ in paths]
    pending: list[tuple[int, np.ndarray]] = []  # (song, a view of some of its windows)
    waiting = 0  # windows in pending

    def score() -> None:
        probabilities = score_segments(np.concatenate([cut for _, cut in pending]), reader)
        starts = np.cumsum([0] + [len(cut) for _, cut in pending])
        for (song, _), start, end in zip(pending, starts[:-1], starts[1:], strict=True):
            parts[song].append(probabilities[start:end])
        pending.clear()

    for song, path in enumerate(paths):
        try:
            audio, content = load_song(path, config.sample_rate)
        except AudioError as error:
            raise ConfigError(
                f"{path}: cannot be decoded again for windows ({error.reason}); "
                "evaluate without --window-hop"
            ) from None
        if contents is not None:
            require_song_audio(path, contents[song], content, "evaluating over windows")
        cut = windows(audio, config.segment_samples, hop)
        start = 0
        while start < len(cut):
            take = cut[start : start + per_call - waiting]
            pending.append((song, take))
            waiting += len(take)
            start += len(take)
            if waiting >= per_call:
                score()
                waiting = 0
    if pending:
        score()
    return [np.concatenate(rows) if rows else None for rows in parts]


def song_windows(
    predictor: Predictor,
    paths: Sequence[str],
    hop_seconds: float,
    contents: Sequence[str | None] | None = None,
) -> list[SongWindows | None]:
    """Each song's :class:`SongWindows` over windows of one segment every ``hop_seconds``
    (each member of a mixed ensemble at its own rate and features); None for a song shorter
    than one window at some member's rate. ``contents``: each song's identity as its store
    recorded it (None where unknown), which the audio decoded now must have.

    Raises:
        ConfigError: a song cannot be decoded again (named, with the reason), or the hop is
            out of range (:func:`check_hop`).
        IdentityError: a file is not the song the store was built from (replaced or edited
            since; :func:`genre_jax.identity.require_song_audio`).
    """
    check_hop(hop_seconds)
    classes = len(predictor.genres)
    per_reader = [
        _window_rows(reader, paths, hop_seconds, contents) for reader in predictor.readers
    ]
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
