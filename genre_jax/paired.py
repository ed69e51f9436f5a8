"""Paired tests between models scored on the same songs: is A better than B on these songs?

Two models evaluated on the same songs (the same cross-validation partitions, or the same test
split) are compared song by song, not by their two accuracies alone: a song both get right or
both get wrong says nothing about which is better, and the songs one gets right and the other
wrong are the evidence. Three figures per pair:

- the accuracy difference ``acc(A) - acc(B)`` over the paired units (a unit is one song in one
  partition; with repeated cross-validation a song is a unit once per repeat);
- its 95 % confidence interval from a paired bootstrap over *songs* (:func:`paired_bootstrap`):
  songs are drawn with replacement within each genre (the stratification the folds keep), each
  carrying all its units, and the difference is computed on the draw; the percentile interval
  of ``resamples`` draws, with the generator's seed recorded;
- McNemar's exact test (:func:`mcnemar_exact`): under "A and B are equally good", each
  discordant unit (one right, the other wrong) is a fair coin, so the smaller discordant count
  is binomial(n01 + n10, 1/2); the two-sided p is twice its lower tail, at most 1.

With repeats a song's units are not independent (the same song, partitioned again), so
McNemar's p, which counts units, is optimistic. The verdict's p is therefore taken over songs
(:func:`sign_flip_p`): each song's difference summed over its units, and under "equally good"
each song's sign a fair coin. With one partition every song's difference is -1, 0 or +1 and
this *is* McNemar's exact test (the same p); with repeats it is the same test with songs, not
units, as the evidence (a randomisation over ``resamples`` sign draws, seeded).

With more than two models every pair is tested and the p-values over songs are adjusted by
Holm's step-down method (:func:`holm`), which bounds the chance of any false "differs" across
all the pairs at the level (0.05). A pair *differs with evidence* when its adjusted p is below
0.05 and its interval excludes zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import binom

from genre_jax.config import ConfigError

LEVEL = 0.05  # the family-wise error rate of the "differs" verdicts, and 1 - the interval's level
RESAMPLES = 10_000  # bootstrap draws
BOOTSTRAP_SEED = 0  # the default generator seed (recorded in every comparison)


class CompareError(ConfigError):
    """Models that cannot be paired: they were scored on different songs or partitions."""


@dataclass(frozen=True)
class Outcomes:
    """One model's answers on its evaluated units.

    Attributes:
        name: how the comparison names it (unique among the models compared).
        source: the folder it was read from.
        protocol: how its songs were scored (folds, split seeds, windows).
        genres: the genres in the order of its probabilities.
        correct: unit -> whether its genre was right; a unit is ``(partition, song)``, the
            partition ``"split seed s"`` for a cross-validation, ``"test"`` for a run; the song
            ``genre/content`` (:func:`genre_jax.evaluate.song_records`).
        records: unit -> its record (``path``, ``genre``, ``predicted``, ``probabilities``...).
        ran: what ran, in one paragraph (the data folder, features, experiment file and the
            settings given beside it: :func:`genre_jax.reports.ran_text`).
    """

    name: str
    source: str
    protocol: str
    genres: list[str]
    correct: dict[tuple[str, str], bool]
    records: dict[tuple[str, str], dict[str, Any]]
    ran: str = ""

    @property
    def accuracy(self) -> float:
        return float(np.mean(list(self.correct.values())))


def require_same_units(models: Sequence[Outcomes]) -> list[tuple[str, str]]:
    """The units every model was scored on, in a fixed order; refused, naming what differs,
    when two models did not cover the same songs in the same partitions.

    Raises:
        CompareError: a model's units differ from the first's (partitions or songs named).
    """
    first = models[0]
    units = set(first.correct)
    for other in models[1:]:
        if other.genres != first.genres:
            raise CompareError(
                f"compare: {first.name} ({first.source}) classifies {first.genres}, {other.name} "
                f"({other.source}) {other.genres}; paired tests need the same genres"
            )
        theirs = set(other.correct)
        if theirs == units:
            dealt = [
                u
                for u in sorted(units)
                if first.records[u].get("fold") != other.records[u].get("fold")
            ]
            if dealt:
                partition, song = dealt[0]
                raise CompareError(
                    f"compare: {first.name} ({first.source}) and {other.name} ({other.source}) "
                    f"dealt {len(dealt)} songs to other folds (e.g. {song} in {partition}: fold "
                    f"{first.records[dealt[0]].get('fold')} against "
                    f"{other.records[dealt[0]].get('fold')}; another number of folds, grouping "
                    "or order of the store's songs); paired tests need the same partitions"
                )
            continue
        parts, their_parts = {u[0] for u in units}, {u[0] for u in theirs}
        if parts != their_parts:
            raise CompareError(
                f"compare: {first.name} ({first.source}) was scored on {sorted(parts)}, "
                f"{other.name} ({other.source}) on {sorted(their_parts)}; paired tests need the "
                "same partitions (the same split seeds, or two runs' test splits)"
            )
        only_first, only_other = sorted(units - theirs), sorted(theirs - units)
        example = (only_first or only_other)[0]
        raise CompareError(
            f"compare: {first.name} ({first.source}) and {other.name} ({other.source}) did not "
            f"score the same songs: {len(only_first)} of {first.name}'s and {len(only_other)} of "
            f"{other.name}'s are not the other's (e.g. {example[1]} in {example[0]}); paired "
            "tests need the same songs, identified by their audio"
        )
    return sorted(units)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """McNemar's exact test on paired correctness ``a``, ``b`` (bool, one per unit): the counts
    (A right and B wrong, A wrong and B right) and the two-sided p."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = n01 + n10
    p = 1.0 if n == 0 else min(1.0, 2.0 * float(binom.cdf(min(n01, n10), n, 0.5)))
    return n01, n10, p


def sign_flip_p(
    a: np.ndarray,
    b: np.ndarray,
    songs: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> float:
    """The two-sided p of "A and B are equally good" with songs as the evidence: each song's
    difference (A right minus B right, summed over its units) keeps its size and gets a random
    sign. Exact (the binomial, McNemar's test) when every song that differs differs by the same
    amount, as with one unit per song; otherwise ``resamples`` random sign draws, counting the
    observed one."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    _, song_of = np.unique(np.asarray(songs), return_inverse=True)
    difference = np.bincount(song_of, a - b)
    difference = difference[difference != 0]
    if difference.size == 0:
        return 1.0
    sizes = np.abs(difference)
    if np.all(sizes == sizes[0]):
        wins = int(np.sum(difference > 0))
        return min(
            1.0, 2.0 * float(binom.cdf(min(wins, difference.size - wins), difference.size, 0.5))
        )
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(resamples, difference.size))
    observed = abs(difference.sum())
    extreme = np.sum(np.abs(signs @ sizes) >= observed - 1e-9)
    return float((1 + extreme) / (1 + resamples))


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    songs: Sequence[str],
    genres: Sequence[str],
    *,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> tuple[float, float]:
    """The ``1 - level`` percentile interval of ``acc(A) - acc(B)``, songs drawn with
    replacement within each genre (each with all its units). ``a``, ``b``: correctness per
    unit; ``songs``, ``genres``: each unit's song and true genre."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    names, song_of = np.unique(np.asarray(songs), return_inverse=True)
    difference = np.bincount(song_of, a - b, minlength=len(names))  # per song, over its units
    count = np.bincount(song_of, minlength=len(names)).astype(np.float64)
    genre_of_song = np.empty(len(names), dtype=object)
    genre_of_song[song_of] = np.asarray(genres, dtype=object)
    rng = np.random.default_rng(seed)
    total_difference = np.zeros(resamples)
    total_count = np.zeros(resamples)
    for genre in sorted(set(genre_of_song.tolist())):  # a fixed order: the draws are reproducible
        members = np.flatnonzero(genre_of_song == genre)
        draw = members[rng.integers(0, len(members), size=(resamples, len(members)))]
        total_difference += difference[draw].sum(axis=1)
        total_count += count[draw].sum(axis=1)
    differences = total_difference / total_count
    low, high = np.quantile(differences, [level / 2, 1 - level / 2])
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m - i), made monotone, at most 1."""
    p = np.asarray(p_values, np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    result = np.empty_like(adjusted)
    result[order] = adjusted
    return result.tolist()


def compare_outcomes(
    models: Sequence[Outcomes], *, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, Any]:
    """Every pair of ``models`` tested on their common units (the comparison's JSON).

    Raises:
        CompareError: fewer than two models, or models scored on different units.
    """
    if len(models) < 2:
        raise CompareError("compare: paired tests need at least two models")
    if resamples < 100:
        raise CompareError(f"compare: --resamples {resamples}: at least 100 draws")
    units = require_same_units(models)
    songs = [u[1] for u in units]
    genres = [models[0].records[u]["genre"] for u in units]
    correct = {m.name: np.array([m.correct[u] for u in units]) for m in models}
    pairs = []
    for first, second in combinations(models, 2):
        a, b = correct[first.name], correct[second.name]
        n01, n10, p = mcnemar_exact(a, b)
        low, high = paired_bootstrap(a, b, songs, genres, resamples=resamples, seed=seed)
        p_songs = sign_flip_p(a, b, songs, resamples=resamples, seed=seed)
        pairs.append(
            {
                "a": first.name,
                "b": second.name,
                "accuracy_a": float(a.mean()),
                "accuracy_b": float(b.mean()),
                "difference": float(a.mean() - b.mean()),
                "interval": [low, high],
                "a_right_b_wrong": n01,
                "a_wrong_b_right": n10,
                "both_right": int(np.sum(a & b)),
                "both_wrong": int(np.sum(~a & ~b)),
                "p": p,
                "p_songs": p_songs,
            }
        )
    adjusted = holm([pair["p_songs"] for pair in pairs])
    for pair, p_adjusted in zip(pairs, adjusted, strict=True):
        low, high = pair["interval"]
        pair["p_holm"] = p_adjusted
        pair["differs"] = p_adjusted < LEVEL and (low > 0 or high < 0)
    partitions = sorted({u[0] for u in units})
    return {
        "models": [
            {
                "name": m.name,
                "source": m.source,
                "protocol": m.protocol,
                "ran": m.ran,
                "accuracy": m.accuracy,
            }
            for m in models
        ],
        "units": len(units),
        "songs": len(set(songs)),
        "partitions": partitions,
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "level": 1 - LEVEL,
            "method": "percentile interval; songs drawn with replacement within each genre, "
            "each with all its units",
        },
        "test": "McNemar's exact test (two-sided binomial on the discordant units); the "
        "verdict's p over songs: each song's difference with a random sign (McNemar's test "
        "itself with one partition)",
        "verdict": "differs with evidence: the Holm-adjusted p over songs below "
        f"{LEVEL:g} and the {100 * (1 - LEVEL):g} % interval excluding zero",
        "correction": (
            f"Holm's step-down adjustment over the {len(pairs)} pairs (family-wise error {LEVEL:g})"
            if len(pairs) > 1
            else "none (one pair)"
        ),
        "pairs": pairs,
        "per_song": [
            {
                "partition": u[0],
                "song": u[1],
                "path": models[0].records[u].get("path"),
                "genre": models[0].records[u]["genre"],
                "correct": {m.name: bool(correct[m.name][i]) for m in models},
                "predicted": {m.name: m.records[u]["predicted"] for m in models},
            }
            for i, u in enumerate(units)
        ],
    }
