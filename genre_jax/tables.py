"""Datasets whose labels live in a table: the Free Music Archive and CSV manifests.

**FMA** (Defferrard et al., 2017). Audio is ``fma_<subset>/AAA/AAAAAA.mp3`` (the six-digit,
zero-padded track id; its first three digits name the folder) and everything else is in
``fma_metadata/tracks.csv``, whose columns have a two-row header (``track,genre_top`` is
``track.genre_top`` here) followed by a ``track_id`` row. Read per track:

| column | becomes |
| --- | --- |
| ``track.genre_top`` | the genre (a track without one is left out, with that reason) |
| ``set.subset`` | membership: ``small`` is in ``medium`` is in ``large`` |
| ``artist.id`` | the artist, so that splits keep an artist's tracks in one part |
| ``set.split`` | the official part: ``training``, ``validation``, ``test`` |

The folder given is either the one holding ``fma_metadata/`` and the audio folders, or an
audio folder ``fma_<name>`` with ``fma_metadata/`` beside it. ``--subset`` chooses the subset;
its audio comes from ``fma_<subset>`` or any larger audio folder (``fma_large`` and
``fma_full`` hold every subset's tracks). A listed track whose file is not there is left out
with that reason; a file that is there but cannot be decoded (FMA has a few zero-length and
truncated mp3s) is skipped when the store is prepared, like any other.

**CSV manifests** describe any other collection: a header row naming the columns ``path`` and
``genre`` and, optionally, ``artist`` and ``split`` (``train``/``training``, ``val``/
``validation``, ``test``, or empty); other columns are ignored. Paths are relative to the CSV's
folder (absolute ones are taken as they are). A row without a genre, or whose file is not
there, is left out with the reason; a path listed twice is refused.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from genre_jax.manifest import (
    DatasetError,
    Excluded,
    Manifest,
    Track,
    file_size,
    refuse_unlike_genres,
)

__all__ = ["FMA_SUBSETS", "find_fma", "read_csv_manifest", "read_fma"]

FMA_SUBSETS = ("small", "medium", "large")
"""FMA's subsets, each holding the one before it."""
FMA_METADATA = Path("fma_metadata") / "tracks.csv"
FMA_COLUMNS = ("track.genre_top", "set.subset", "set.split", "artist.id")
_AUDIO_FOLDERS = ("small", "medium", "large", "full")  # fma_full: large's tracks, untrimmed
_PART_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validation": "val",
    "test": "test",
}


def _covers(folder: str, subset: str) -> bool:
    """Whether audio folder ``fma_<folder>`` holds every track of ``subset``."""
    rank = {"small": 0, "medium": 1, "large": 2, "full": 2}
    return rank[folder] >= rank[subset]


def _check_subset(subset: str | None, where: Path) -> None:
    if subset is not None and subset not in FMA_SUBSETS:
        raise DatasetError(
            f"{where}: subset={subset!r} (--subset): FMA's subsets are {', '.join(FMA_SUBSETS)}"
        )


def find_fma(root: Path, subset: str | None) -> tuple[Path, Path, str] | None:
    """``(audio folder, tracks.csv, subset)`` when ``root`` is an FMA dataset, else ``None``.

    ``root`` holds ``fma_metadata/tracks.csv`` and the audio folders, or is an audio folder
    ``fma_<name>`` with ``fma_metadata/`` beside it.

    Raises:
        DatasetError: it is FMA but the subset is unknown, not given where several audio
            folders are there, or has no audio folder that holds it.
    """
    inside, beside = root / FMA_METADATA, root.parent / FMA_METADATA
    if inside.is_file():
        _check_subset(subset, root)
        found = [n for n in _AUDIO_FOLDERS if (root / f"fma_{n}").is_dir()]
        if not found:
            raise DatasetError(
                f"{root}: has {FMA_METADATA} but no FMA audio folder "
                f"({', '.join(f'fma_{n}' for n in _AUDIO_FOLDERS)})"
            )
        if subset is None:
            if len(found) > 1:
                raise DatasetError(
                    f"{root}: holds {', '.join(f'fma_{n}' for n in found)}; choose the subset "
                    f"with --subset {'|'.join(FMA_SUBSETS)}"
                )
            subset = "large" if found[0] == "full" else found[0]
        holding = [n for n in found if _covers(n, subset)]
        if not holding:
            raise DatasetError(
                f"{root}: subset {subset!r} needs its audio in fma_{subset} (or a larger FMA "
                f"folder); only {', '.join(f'fma_{n}' for n in found)} is here"
            )
        return root / f"fma_{holding[0]}", inside, subset
    name = root.name.removeprefix("fma_")
    if root.name.startswith("fma_") and name in _AUDIO_FOLDERS and beside.is_file():
        _check_subset(subset, root)
        subset = subset or ("large" if name == "full" else name)
        if not _covers(name, subset):
            raise DatasetError(
                f"{root}: holds FMA's {name} audio, which lacks most of subset {subset!r} "
                f"(--subset); give fma_{subset} or a larger folder"
            )
        return root, beside, subset
    return None


def _fma_columns(table: Path, top: list[str], sub: list[str]) -> dict[str, int]:
    names = [f"{a}.{b}" if a and b else a or b for a, b in zip(top, sub, strict=False)]
    missing = [c for c in FMA_COLUMNS if c not in names]
    if missing:
        raise DatasetError(
            f"{table}: not FMA's tracks.csv: its two header rows have no column "
            f"{', '.join(missing)} (it needs {', '.join(FMA_COLUMNS)})"
        )
    return {c: names.index(c) for c in FMA_COLUMNS}


def _track_number(table: Path, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise DatasetError(f"{table}: track id {value!r} is not a track number")
    return number


def _fma_rows(table: Path) -> tuple[dict[str, int], int, list[list[str]]]:
    """The needed columns' positions, the header's width and the table's records."""
    try:
        handle = open(table, newline="", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise DatasetError(f"{table}: cannot be read ({error.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            top, sub = next(reader), next(reader)
            column = _fma_columns(table, top, sub)
            records = list(reader)
        except StopIteration:
            raise DatasetError(f"{table}: no two header rows, not FMA's tracks.csv") from None
        except (csv.Error, UnicodeDecodeError) as error:
            raise DatasetError(f"{table}: not a CSV table ({error})") from None
    return column, len(top), records


def read_fma(audio: Path, table: Path, subset: str) -> Manifest:
    """The manifest of FMA's ``subset``: its tracks ordered by genre, then id.

    Raises:
        DatasetError: ``table`` is not FMA's ``tracks.csv`` (a missing column, a track id that
            is not a number, a record cut short), or the subset has fewer than two genres.
    """
    wanted = set(FMA_SUBSETS[: FMA_SUBSETS.index(subset) + 1])
    column, width, records = _fma_rows(table)
    tracks: list[Track] = []
    excluded: list[Excluded] = []
    for row in records:
        if not row or (row[0] == "track_id" and not any(row[1:])):
            continue  # the header's third row (the index's name)
        if len(row) < width:
            raise DatasetError(
                f"{table}: the record of track {row[0]!r} has {len(row)} fields, fewer than "
                f"the header's {width}: the table is cut short or not FMA's"
            )
        if row[column["set.subset"]] not in wanted:
            continue
        track_id = f"{_track_number(table, row[0]):06d}"
        path = audio / track_id[:3] / f"{track_id}.mp3"
        genre = row[column["track.genre_top"]].strip()
        if not genre:
            excluded.append(Excluded(track_id, str(path), "no top genre in tracks.csv"))
            continue
        size = file_size(path)
        if size is None:
            excluded.append(Excluded(track_id, str(path), "no audio file"))
            continue
        part = row[column["set.split"]].strip().lower()
        tracks.append(
            Track(
                id=track_id,
                genre=genre,
                path=str(path.resolve()),
                size=size,
                artist=row[column["artist.id"]].strip() or None,
                split=_PART_NAMES.get(part),
            )
        )
    tracks.sort(key=lambda t: (t.genre, t.id))
    counts = Counter(t.genre for t in tracks)
    refuse_unlike_genres(
        f"{table} (subset {subset}, audio in {audio})", dict(sorted(counts.items())), "genre(s)"
    )
    return Manifest(
        root=str(audio.resolve()),
        genres=sorted(counts),
        tracks=tracks,
        layout="fma",
        metadata=str(table.resolve()),
        subset=subset,
        excluded=excluded,
    )


def read_csv_manifest(table: Path, subset: str | None = None) -> Manifest:
    """The manifest a CSV file lists (columns ``path``, ``genre``, ``artist``, ``split``).

    Track ids are file stems, or the path as written where two files share a stem; tracks are
    ordered by genre, then path, as in a folder tree.

    Raises:
        DatasetError: the file cannot be read, has no ``path`` or ``genre`` column, lists a
            path twice, names a split that is not one of train, val, test, holds fewer than two
            genres, or ``subset`` is given (FMA only).
    """
    if subset is not None:
        raise DatasetError(
            f"{table}: subset={subset!r} (--subset) chooses a subset of the Free Music Archive, "
            "not of a CSV manifest"
        )
    if not table.is_file():
        raise DatasetError(f"{table}: no such CSV manifest")
    base = table.resolve().parent
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip().lower() for name in reader.fieldnames or []]
            reader.fieldnames = header
            missing = [name for name in ("path", "genre") if name not in header]
            if missing:
                raise DatasetError(
                    f"{table}: its header row ({', '.join(header) or 'empty'}) has no "
                    f"{' or '.join(missing)} column; a CSV manifest's columns are "
                    "path,genre[,artist][,split]"
                )
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{table}: cannot be read ({error})") from None
    except csv.Error as error:
        raise DatasetError(f"{table}: not a CSV table ({error})") from None
    listed: dict[str, int] = {}
    found: list[tuple[str, Path, dict[str, str]]] = []
    excluded: list[tuple[str, Path, str]] = []
    for line, row in rows:
        written = (row.get("path") or "").strip()
        if not written:
            if any((v or "").strip() for v in row.values() if isinstance(v, str)):
                raise DatasetError(f"{table}: line {line}: no path")
            continue  # a blank line
        path = Path(written).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        key = str(path)
        if key in listed:
            raise DatasetError(
                f"{table}: line {line}: {written} is listed twice (first on line {listed[key]})"
            )
        listed[key] = line
        genre = (row.get("genre") or "").strip()
        if not genre:
            excluded.append((written, path, "no genre"))
        elif file_size(path) is None:
            excluded.append((written, path, "no audio file"))
        else:
            found.append((written, path, row))
    stems = Counter(path.stem for _, path, _ in found)
    tracks = []
    for written, path, row in found:
        split = (row.get("split") or "").strip()
        if split and split.lower() not in _PART_NAMES:
            raise DatasetError(
                f"{table}: line {listed[str(path)]}: split {split!r} is not one of train, val, "
                "test (or training, validation)"
            )
        tracks.append(
            Track(
                id=path.stem if stems[path.stem] == 1 else written,
                genre=row["genre"].strip(),
                path=str(path),
                size=file_size(path),
                artist=(row.get("artist") or "").strip() or None,
                split=_PART_NAMES[split.lower()] if split else None,
            )
        )
    tracks.sort(key=lambda t: (t.genre, t.path))
    counts = Counter(t.genre for t in tracks)
    refuse_unlike_genres(table, dict(sorted(counts.items())), "genre(s) in its genre column")
    return Manifest(
        root=str(base),
        genres=sorted(counts),
        tracks=tracks,
        layout="csv",
        metadata=str(table.resolve()),
        excluded=[Excluded(path.stem, str(path), reason) for _, path, reason in excluded],
    )
