"""The manifest of a dataset: its tracks, their genres and where they were found.

Shared by the readers of every layout (:mod:`genre_jax.datasets` for folder trees,
:mod:`genre_jax.tables` for FMA's ``tracks.csv`` and CSV manifests), which both import it;
:mod:`genre_jax.datasets` re-exports its names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax import legacy

__all__ = [
    "PARTS",
    "DatasetError",
    "Excluded",
    "Manifest",
    "Track",
    "file_size",
    "refuse_unlike_genres",
]

_NUMBERED = re.compile(r"\d{3}")  # FMA's audio folders: fma_small/000, 001, ... 155
PARTS = ("train", "val", "test")
"""The values of :attr:`Track.split`: the dataset's own (official) part of a track."""


class DatasetError(ValueError):
    """A folder cannot be read as a dataset; the message names the folder and the reason."""


@dataclass
class Track:
    """One audio file of the dataset.

    ``status`` is ``"pending"`` until the file is decoded, then ``"ok"``, ``"too-short"`` (no
    full segment) or ``"error"`` (``error`` says why). ``duration`` is in seconds. ``warning``
    says what is doubtful about a usable file (an Ogg or MP3 cut short:
    :func:`genre_jax.audio.truncation_warning`). ``size`` is the file's size in bytes when it
    was discovered. ``content`` is the song's identity, a digest of its decoded audio
    (:func:`genre_jax.identity.audio_digest`), recorded when it is decoded. ``warning``,
    ``size``, ``artist``, ``split`` and ``content`` are ``None`` in a manifest that does not
    record them (an older one: :mod:`genre_jax.legacy`).
    """

    id: str
    genre: str
    path: str
    duration: float | None = None
    segments: int = 0
    status: str = "pending"
    error: str | None = None
    warning: str | None = None
    size: int | None = None
    artist: str | None = None
    split: str | None = None
    content: str | None = None


@dataclass
class Excluded:
    """A track its dataset's table lists but that is left out before decoding, and why (no top
    genre in FMA's ``tracks.csv``, say, or a file that is not there)."""

    id: str
    path: str
    reason: str


@dataclass
class Manifest:
    """The tracks of a dataset, the genre-to-index mapping and where they were found.

    ``layout`` is how the tracks were found: ``"folders"`` (a folder per genre, GTZAN's
    layouts among them), ``"fma"`` or ``"csv"``. ``metadata`` is the table the labels came
    from (FMA's ``tracks.csv``, the CSV manifest) and ``subset`` FMA's subset; ``excluded``
    lists the table's tracks that were left out, each with its reason (an older manifest
    without them is read by :func:`genre_jax.legacy.upgrade_manifest`).
    """

    root: str
    genres: list[str]
    tracks: list[Track] = field(default_factory=list)
    layout: str = "folders"
    metadata: str | None = None
    subset: str | None = None
    excluded: list[Excluded] = field(default_factory=list)

    @property
    def genre_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.genres)}

    @property
    def labels(self) -> np.ndarray:
        """Genre index of every track, ``(tracks,)`` int32."""
        index = self.genre_index
        return np.array([index[t.genre] for t in self.tracks], dtype=np.int32)

    @property
    def track_ids(self) -> list[str]:
        return [t.id for t in self.tracks]

    def skipped(self) -> list[Track]:
        """Tracks that contribute no segment (unreadable or too short)."""
        return [t for t in self.tracks if t.status != "ok"]

    @property
    def artists_known(self) -> bool:
        """Whether the dataset names the artist of any of its tracks."""
        return any(t.artist is not None for t in self.tracks)

    def describe(self) -> str:
        """One line: where the tracks came from and how many were left out (for logs)."""
        where = {"fma": f"FMA {self.subset} ({self.metadata})", "csv": f"CSV {self.metadata}"}
        text = f"{where.get(self.layout, self.root)}: {len(self.tracks)} tracks, "
        text += f"{len(self.genres)} genres"
        if self.excluded:
            reasons = Counter(e.reason.split(" (")[0] for e in self.excluded)
            left = "; ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            text += f"; {len(self.excluded)} listed tracks left out ({left})"
        return text

    def fingerprint(self) -> str:
        """Hash of every file's relative path, size and modification time (and of the table
        the labels came from, where there is one)."""
        digest = hashlib.sha256()
        for track in self.tracks:
            relative = os.path.relpath(track.path, self.root)
            digest.update(f"{relative}|{_stat(track.path)}\n".encode())
        if self.metadata is not None:
            digest.update(f"metadata|{self.subset}|{_stat(self.metadata)}\n".encode())
        return digest.hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "genres": list(self.genres),
            "genre_index": self.genre_index,
            "layout": self.layout,
            "metadata": self.metadata,
            "subset": self.subset,
            "tracks": [dataclasses.asdict(t) for t in self.tracks],
            "excluded": [dataclasses.asdict(e) for e in self.excluded],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        data = legacy.upgrade_manifest(data)
        return cls(
            root=data["root"],
            genres=list(data["genres"]),
            tracks=[Track(**t) for t in data["tracks"]],
            layout=data["layout"],
            metadata=data["metadata"],
            subset=data["subset"],
            excluded=[Excluded(**e) for e in data["excluded"]],
        )


def _stat(path: str) -> tuple[int, int]:
    """A file's size and modification time, ``(-1, -1)`` where it is not there."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def refuse_unlike_genres(where: str | os.PathLike, counts: dict[str, int], source: str) -> None:
    """Refuse a collection that cannot be a genre dataset read correctly.

    Args:
        where: the folder or table the genres came from (named in the message).
        counts: tracks of each genre found.
        source: what the genres are, e.g. ``"genre folders"`` or ``"genres in its genre
            column"`` (named in the message).

    Raises:
        DatasetError: fewer than two genres, or folder names numbered like FMA's audio
            folders; the message says what was found and what was expected.
    """
    found = ", ".join(f"{name} ({n} files)" for name, n in list(counts.items())[:5])
    if len(counts) > 5:
        found += f", ... {len(counts) - 5} more"
    if counts and all(_NUMBERED.fullmatch(name) for name in counts):
        raise DatasetError(
            f"{where}: its {len(counts)} {source} ({found}) are numbered like the Free Music "
            "Archive's audio folders (fma_<subset>/000/000002.mp3), not named by genre; FMA's "
            "genres are in fma_metadata/tracks.csv: give the folder holding fma_metadata/ and "
            "fma_<subset>/ (with --subset small|medium|large), or this folder with "
            "fma_metadata/ beside it"
        )
    if len(counts) < 2:
        raise DatasetError(
            f"{where}: found {len(counts)} {source}{' (' + found + ')' if found else ''}; a "
            "genre dataset needs at least two genres (expected <genre>/<file>.wav for each "
            "genre, GTZAN's layouts, FMA's fma_metadata/ beside fma_<subset>/, or a CSV "
            "manifest path,genre[,artist][,split])"
        )


def file_size(path: Path) -> int | None:
    """A file's size in bytes, ``None`` where it cannot be stat'ed."""
    try:
        return path.stat().st_size
    except OSError:
        return None
