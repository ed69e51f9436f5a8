"""Find the tracks of a dataset and describe them in a manifest.

Recognised layouts, looked for in this order under the given folder:

- Kaggle GTZAN: ``Data/genres_original/<genre>/<genre>.000NN.wav`` (or ``genres_original/...``);
- original GTZAN: ``genres/<genre>/<genre>.000NN.au``;
- any folder-per-genre tree: ``<genre>/**/<file>.<audio extension>``.

Genre indices follow the sorted genre names. The synthetic dataset used by the demo and the
tests lives in :mod:`genre_jax.synthetic` and is re-exported here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.audio import is_audio_file
from genre_jax.synthetic import GENRES, generate_synthetic, synthesize_clip

__all__ = [
    "GENRES",
    "DatasetError",
    "Manifest",
    "Track",
    "discover",
    "find_genre_root",
    "generate_synthetic",
    "synthesize_clip",
]

_LAYOUTS = (("Data", "genres_original"), ("genres_original",), ("genres",))


class DatasetError(ValueError):
    """A folder cannot be read as a dataset; the message names the folder and the reason."""


@dataclass
class Track:
    """One audio file of the dataset.

    ``status`` is ``"pending"`` until the file is decoded, then ``"ok"``, ``"too-short"`` (no
    full segment) or ``"error"`` (``error`` says why). ``duration`` is in seconds. ``warning``
    says what is doubtful about a usable file (an Ogg or MP3 cut short:
    :func:`genre_jax.audio.truncation_warning`). ``size`` is the file's size in bytes when it
    was discovered. Manifests written before ``warning`` and ``size`` existed load with both
    ``None``.
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


@dataclass
class Manifest:
    """The tracks of a dataset, the genre-to-index mapping and where they were found."""

    root: str
    genres: list[str]
    tracks: list[Track] = field(default_factory=list)

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

    def fingerprint(self) -> str:
        """Hash of every file's relative path, size and modification time."""
        digest = hashlib.sha256()
        for track in self.tracks:
            stat = os.stat(track.path) if os.path.exists(track.path) else None
            info = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
            digest.update(f"{os.path.relpath(track.path, self.root)}|{info}\n".encode())
        return digest.hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "genres": list(self.genres),
            "genre_index": self.genre_index,
            "tracks": [dataclasses.asdict(t) for t in self.tracks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            root=data["root"],
            genres=list(data["genres"]),
            tracks=[Track(**t) for t in data["tracks"]],
        )


def find_genre_root(data_dir: str | os.PathLike) -> Path:
    """The folder whose subfolders are the genres, for any of the recognised layouts."""
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    for parts in _LAYOUTS:
        candidate = root.joinpath(*parts)
        if candidate.is_dir() and _genre_folders(candidate):
            return candidate
    if _genre_folders(root):
        return root
    raise DatasetError(
        f"{root}: no genre subfolders with audio files (expected <genre>/<file>.wav, "
        "Data/genres_original/<genre>/..., or genres/<genre>/...)"
    )


def _audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder``, recursively, sorted; symlinked folders are not followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and is_audio_file(name):
                found.append(Path(dirpath) / name)
    return sorted(found)


def _genre_folders(root: Path) -> dict[str, list[Path]]:
    folders = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            files = _audio_files(child)
            if files:
                folders[child.name] = files
    return folders


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def discover(data_dir: str | os.PathLike) -> Manifest:
    """List every audio file of the dataset under ``data_dir`` with its genre (folder name).

    Track ids are file stems (``blues.00012``), or ``<genre>/<relative path>`` where two files
    share a stem. Tracks are ordered by genre, then path. Status stays ``"pending"`` until the
    feature store decodes them. ``size`` is each file's size in bytes (``None`` for one that
    cannot be stat'ed, such as a dangling symbolic link: decoding reports why).
    """
    genre_root = find_genre_root(data_dir)
    folders = _genre_folders(genre_root)
    stems = Counter(p.stem for files in folders.values() for p in files)
    tracks = []
    for genre, files in folders.items():
        for path in files:
            unique = stems[path.stem] == 1
            track_id = path.stem if unique else f"{genre}/{path.relative_to(genre_root / genre)}"
            tracks.append(
                Track(id=track_id, genre=genre, path=str(path.resolve()), size=_size(path))
            )
    return Manifest(root=str(genre_root.resolve()), genres=sorted(folders), tracks=tracks)
