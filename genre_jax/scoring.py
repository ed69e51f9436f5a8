"""Song-level scoring: segment predictions turned into one genre per song, and the metrics.

Song-level accuracy (the default, what a listener asks for) aggregates a song's segments by
mean probability (:func:`aggregate_songs`); majority vote is reported beside it. Segment-level
accuracy is the seed's figure. The per-genre metrics and confusion matrices are scikit-learn's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


@dataclass
class Aggregated:
    """Song-level view of segment predictions."""

    tracks: np.ndarray  # (songs,) track index of each song
    labels: np.ndarray  # (songs,) true genre
    by_mean: np.ndarray  # (songs,) genre of the mean probability
    by_vote: np.ndarray  # (songs,) most frequent segment label (ties: higher mean probability)
    mean: np.ndarray | None = None  # (songs, genres) the mean probability the label is taken of
    votes: np.ndarray | None = None  # (songs, genres) how many of its segments each genre won


def aggregate_songs(
    tracks: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray
) -> Aggregated:
    """Group segments by track and turn their predictions into one genre per song."""
    songs, inverse = np.unique(tracks, return_inverse=True)
    n_classes = probabilities.shape[1]
    sums = np.zeros((len(songs), n_classes))
    np.add.at(sums, inverse, probabilities)
    votes = np.zeros((len(songs), n_classes))
    np.add.at(votes, (inverse, predicted), 1.0)
    mean = sums / np.bincount(inverse, minlength=len(songs))[:, None]
    # A vote tie goes to the class with the higher mean probability (a fraction below one vote).
    by_vote = np.argmax(votes + 0.5 * mean, axis=1)
    song_labels = np.zeros(len(songs), dtype=labels.dtype)
    song_labels[inverse] = labels
    return Aggregated(songs, song_labels, np.argmax(mean, axis=1), by_vote, mean, votes)


def genre_metrics(truth: np.ndarray, predicted: np.ndarray, genres: list[str]) -> dict[str, Any]:
    """Per-genre precision, recall, F1 and support by name, with macro and weighted averages."""
    labels = list(range(len(genres)))
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0.0)
    per_genre = {
        g: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, g in enumerate(genres)
    }
    averages = {}
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(
            truth, predicted, labels=labels, average=average, zero_division=0.0
        )
        averages[average] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    return {"per_genre": per_genre, **averages}


def confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> dict[str, list]:
    """The ``n``-genre confusion matrix as lists: ``counts`` and ``normalized`` (each row by
    its true genre's support, 0 where it has none)."""
    counts = confusion_matrix(truth, predicted, labels=list(range(n)))
    support = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    return {"counts": counts.tolist(), "normalized": normalized.round(6).tolist()}
