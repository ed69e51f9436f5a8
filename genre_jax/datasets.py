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
numbered like FMA's audio folders (``000``, ``001``, ...), or that has FMA's audio folder
(``fma_small/000/000002.mp3``) among its genre folders: each is a dataset read wrongly. One file
is one track: a genre folder that is a link to another, or a file reached twice (a symbolic or
hard link to a file listed under this or another genre), is refused, naming both places; so is
a genre name with a line break or another control character
(:func:`genre_jax.listing_checks.genre_name_problem`). Folders are walked without recursion,
so a tree of any depth is read (a 1,500-level tree overflowed Python's stack through ``os.walk``).
Genre indices follow the sorted genre names. The synthetic dataset used by the demo and the
tests lives in :mod:`genre_jax.synthetic` and is re-exported here.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from genre_jax import listing_checks, tables
from genre_jax.audio import is_audio_file
from genre_jax.manifest import (
    DatasetError,
    Excluded,
    Manifest,
    Track,
    file_size,
    refuse_unlike_genres,
)

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
if TYPE_CHECKING:
    from genre_jax.synthetic import GENRES, generate_synthetic, synthesize_clip

_SYNTHETIC = ("GENRES", "generate_synthetic", "synthesize_clip")  # genre_jax.synthetic's


def __getattr__(name: str) -> object:
    """The synthetic dataset's names, imported when first asked for (its synthesis needs
    scipy, which reading a dataset does not)."""
    if name in _SYNTHETIC:
        from genre_jax import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_LAYOUTS = (("Data", "genres_original"), ("genres_original",), ("genres",))
_FMA_FILE = re.compile(r"(\d{3})/\1\d{3}\.[^/]+")  # AAA/AAAAAA.mp3 in FMA's audio folders


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
    """Audio files under ``folder`` at any depth, sorted; hidden names are skipped and
    symbolic links to folders are not followed (``folder`` itself may be one).

    Walked with a list of folders still to read rather than ``os.walk``, which recurses once
    per level in Python 3.11. A folder that cannot be listed lists nothing, as in ``os.walk``.
    """
    found = []
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        folder_entry = entry.is_dir()  # follows a link, as os.walk does
                    except OSError:
                        folder_entry = False  # a link loop: listed; decoding says why
                    if folder_entry:  # a linked folder is neither walked nor taken for audio
                        if not entry.is_symlink():
                            pending.append(Path(entry.path))
                    elif is_audio_file(entry.name):
                        found.append(Path(entry.path))
        except OSError:
            continue
    return sorted(found)


def _genre_folders(root: Path) -> dict[str, list[Path]]:
    folders = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            files = _audio_files(child)
            if files:
                folders[child.name] = files
    return folders


def _refuse_genre_names(genre_root: Path, folders: dict[str, list[Path]]) -> None:
    """Refuse a genre folder whose name cannot name a genre (before any message quotes it).

    Raises:
        DatasetError: see :func:`genre_jax.listing_checks.genre_name_problem`.
    """
    for genre in folders:
        problem = listing_checks.genre_name_problem(genre)
        if problem is not None:
            raise DatasetError(
                f"{genre_root}: genre folder {listing_checks.shown(genre)} {problem}"
            )


def _refuse_unlike_folders(genre_root: Path, folders: dict[str, list[Path]]) -> None:
    """Refuse genre folders that would make a song two tracks.

    Raises:
        DatasetError: a genre folder holds FMA's numbered audio folders, two genre folders
            are one folder (a link), or one file is reached twice; the message names the
            folder(s) or both paths.
    """
    resolved: dict[Path, str] = {}
    for genre, files in folders.items():
        inner = [f.relative_to(genre_root / genre).as_posix() for f in files]
        if all(_FMA_FILE.fullmatch(name) for name in inner):
            raise DatasetError(
                f"{genre_root}: genre folder {listing_checks.shown(genre)} holds the Free Music "
                "Archive's numbered audio folders "
                f"({listing_checks.shown(f'{genre}/{inner[0]}')}), not "
                "one genre's songs; "
                "FMA's genres are in fma_metadata/tracks.csv: give the folder holding "
                "fma_metadata/ and fma_<subset>/, or move this folder out of the genre folders"
            )
        target = (genre_root / genre).resolve()
        if target in resolved:
            raise DatasetError(
                f"{genre_root}: genre folders {listing_checks.shown(resolved[target])} and "
                f"{listing_checks.shown(genre)} are one folder ({target}; one is a link to the "
                "other): its songs would be tracks of both genres; remove the link"
            )
        resolved[target] = genre
    listing_checks.refuse_same_files(
        genre_root,
        (
            (listing_checks.shown(path.relative_to(genre_root).as_posix()), path)
            for files in folders.values()
            for path in files
        ),
    )


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
        DatasetError: the path is not a dataset this reads, its table is malformed, it holds
            fewer than two genres, a genre's name cannot be one, or one file would be two
            tracks (a linked genre folder, a linked file, FMA's audio folder beside the genre
            folders); the message names the path (and line, or both places) and the reason.
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
    _refuse_genre_names(genre_root, folders)
    refuse_unlike_genres(genre_root, {g: len(f) for g, f in folders.items()}, "genre folder(s)")
    _refuse_unlike_folders(genre_root, folders)
    stems = Counter(p.stem for files in folders.values() for p in files)
    tracks = []
    for genre, files in folders.items():
        for path in files:
            unique = stems[path.stem] == 1
            track_id = path.stem if unique else f"{genre}/{path.relative_to(genre_root / genre)}"
            tracks.append(
                Track(
                    id=track_id,
                    genre=genre,
                    path=str(listing_checks.resolved(path)),
                    size=file_size(path),
                )
            )
    return Manifest(root=str(genre_root.resolve()), genres=sorted(folders), tracks=tracks)
