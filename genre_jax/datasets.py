"""Find the tracks of a dataset and describe them in a manifest.

Recognised layouts, looked for in this order:

- a CSV manifest (the path given is a ``.csv`` file): ``path,genre[,artist][,split]``;
- the Free Music Archive: ``fma_metadata/tracks.csv`` beside or inside the folder, audio in
  ``fma_<subset>/AAA/AAAAAA.mp3``; labels, artists and the official split from the table
  (both in :mod:`genre_jax.tables`);
- Kaggle GTZAN: ``Data/genres_original/<genre>/<genre>.000NN.wav`` (or ``genres_original/...``);
- original GTZAN: ``genres/<genre>/<genre>.000NN.au``;
- any folder-per-genre tree: ``<genre>/**/<file>.<audio extension>``.

A collection of fewer than two genres is refused, and so is a folder tree whose "genres" are
numbered like FMA's audio folders (``000``, ``001``, ...): both are a dataset read wrongly.
Genre indices follow the sorted genre names. The synthetic dataset used by the demo and the
tests lives in :mod:`genre_jax.synthetic` and is re-exported here.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from genre_jax import tables
from genre_jax.audio import is_audio_file
from genre_jax.manifest import (
    DatasetError,
    Excluded,
    Manifest,
    Track,
    file_size,
    refuse_unlike_genres,
)
from genre_jax.synthetic import GENRES, generate_synthetic, synthesize_clip

__all__ = [
    "GENRES",
    "DatasetError",
    "Excluded",
    "Manifest",
    "Track",
    "discover",
    "find_genre_root",
    "generate_synthetic",
    "synthesize_clip",
]

_LAYOUTS = (("Data", "genres_original"), ("genres_original",), ("genres",))


def find_genre_root(data_dir: str | os.PathLike) -> Path:
    """The folder whose subfolders are the genres, for any of the folder layouts."""
    root = _existing_folder(data_dir)
    for parts in _LAYOUTS:
        candidate = root.joinpath(*parts)
        if candidate.is_dir() and _genre_folders(candidate):
            return candidate
    if _genre_folders(root):
        return root
    raise DatasetError(
        f"{root}: no genre subfolders with audio files (expected <genre>/<file>.wav, "
        "Data/genres_original/<genre>/..., genres/<genre>/..., FMA's fma_metadata/ beside "
        "fma_<subset>/, or a CSV manifest path,genre[,artist][,split])"
    )


def _existing_folder(data_dir: str | os.PathLike) -> Path:
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    return root


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


def discover(data_dir: str | os.PathLike, subset: str | None = None) -> Manifest:
    """List every track of the dataset at ``data_dir`` with its genre.

    ``data_dir`` is a dataset folder (FMA, GTZAN or any folder-per-genre tree) or a CSV
    manifest; ``subset`` chooses FMA's subset (``small``, ``medium`` or ``large``) and is
    refused for other datasets. FMA and CSV manifests are read by :mod:`genre_jax.tables`.

    In a folder-per-genre tree the genre is the folder's name; track ids are file stems
    (``blues.00012``), or ``<genre>/<relative path>`` where two files share a stem. Tracks are
    ordered by genre, then path. Status stays ``"pending"`` until the feature store decodes
    them. ``size`` is each file's size in bytes (``None`` for one that cannot be stat'ed, such
    as a dangling symbolic link: decoding reports why).

    Raises:
        DatasetError: the path is not a dataset this reads, its table is malformed, or it
            holds fewer than two genres; the message names the path and the reason.
    """
    path = Path(data_dir).expanduser()
    if path.suffix.lower() == ".csv" and not path.is_dir():
        return tables.read_csv_manifest(path, subset)
    root = _existing_folder(path)
    fma = tables.find_fma(root, subset)
    if fma is not None:
        return tables.read_fma(*fma)
    if subset is not None:
        raise DatasetError(
            f"{root}: subset={subset!r} (--subset) chooses a subset of the Free Music Archive, "
            "and this folder has no fma_metadata/tracks.csv beside or inside it"
        )
    genre_root = find_genre_root(root)
    folders = _genre_folders(genre_root)
    refuse_unlike_genres(genre_root, {g: len(f) for g, f in folders.items()}, "genre folder(s)")
    stems = Counter(p.stem for files in folders.values() for p in files)
    tracks = []
    for genre, files in folders.items():
        for path in files:
            unique = stems[path.stem] == 1
            track_id = path.stem if unique else f"{genre}/{path.relative_to(genre_root / genre)}"
            tracks.append(
                Track(id=track_id, genre=genre, path=str(path.resolve()), size=file_size(path))
            )
    return Manifest(root=str(genre_root.resolve()), genres=sorted(folders), tracks=tracks)
