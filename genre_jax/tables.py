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
truncated mp3s) is skipped when the store is prepared, like any other. A track id is written as
FMA writes it, 1 to 6 ASCII digits without sign, spaces or leading zeros (``2``, ``155320``),
and appears once: any other spelling would be a second name for one file.

**CSV manifests** describe any other collection: a header row naming the columns ``path`` and
``genre`` and, optionally, ``artist`` and ``split`` (``train``/``training``, ``val``/
``validation``, ``test``, or empty); other columns are ignored. Paths are relative to the CSV's
folder (absolute ones are taken as they are). A row without a genre, or whose file is not
there, is left out with the reason; a path listed twice is refused.

**Either table** is refused, naming the line, where it lists one file twice (the same path,
or a hard or symbolic link to a file listed before: one file would be two tracks), where a
genre's name holds a line break or another control character (it becomes a cell of the
reports' tables), and where a physical line is longer than
:data:`~genre_jax.listing_checks.MAX_LINE_CHARS` (which bounds what one line may cost before it
is held). Values quoted in messages are cut to a few dozen characters. These checks are
:mod:`genre_jax.listing_checks`', shared with the folder trees of :mod:`genre_jax.datasets`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from pathlib import Path

from genre_jax.listing_checks import (
    genre_name_problem,
    refuse_same_files,
    resolved,
    shown,
    table_records,
)
from genre_jax.manifest import (
    DatasetError,
    Excluded,
    Manifest,
    Track,
    file_size,
    refuse_unlike_genres,
)

__all__ = [
    "FMA_SUBSETS",
    "find_fma",
    "read_csv_manifest",
    "read_fma",
]

FMA_SUBSETS = ("small", "medium", "large")
"""FMA's subsets, each holding the one before it."""
FMA_METADATA = Path("fma_metadata") / "tracks.csv"
FMA_COLUMNS = ("track.genre_top", "set.subset", "set.split", "artist.id")
_AUDIO_FOLDERS = ("small", "medium", "large", "full")  # fma_full: large's tracks, untrimmed
_TRACK_ID = re.compile(r"0|[1-9][0-9]{0,5}")  # [0-9], not \d: ASCII digits only
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


def _track_id(table: Path, line: int, value: str) -> str:
    """The six-digit id (``000002``) of the track whose id is written ``value`` on ``line``.

    Only FMA's own spelling is taken: 1 to 6 ASCII digits, no sign, space, underscore or
    leading zero. ``int()`` would also take ``0002``, ``+2``, `` 2 ``, ``0_2`` and other
    scripts' digits (U+0662), each a second name for track 2's file; leading zeros are refused
    rather than read as the number because FMA's table (written by pandas from an integer
    index) never has them, so a table that does was rewritten by some other tool, and one
    spelling per track keeps "listed twice" a comparison of what the table says. Six digits is
    what FMA's file names hold (``AAA/AAAAAA.mp3``).

    Raises:
        DatasetError: the value is not such an id; the message names the line.
    """
    if _TRACK_ID.fullmatch(value) is None:
        raise DatasetError(
            f"{table}: line {line}: track id {shown(value)} is not a track number (FMA writes "
            "each as 1 to 6 ASCII digits, without sign, spaces or leading zeros)"
        )
    return f"{int(value):06d}"


def _genre(table: Path, line: int, value: str) -> str:
    """The genre written ``value`` on ``line`` (spaces around it dropped), refused with the
    line where :func:`genre_name_problem` finds it cannot name a genre."""
    genre = value.strip()
    problem = genre_name_problem(genre)
    if problem is not None:
        raise DatasetError(f"{table}: line {line}: genre {shown(genre)} {problem}")
    return genre


def read_fma(audio: Path, table: Path, subset: str) -> Manifest:
    """The manifest of FMA's ``subset``: its tracks ordered by genre, then id.

    The table is read record by record (FMA's is ~250 MB); every record's id is checked and
    compared with the others', whatever its subset.

    Raises:
        DatasetError: ``table`` is not FMA's ``tracks.csv`` (a missing column, a track id that
            is not FMA's spelling of a number, a track listed twice, a record cut short, a line
            over :data:`~genre_jax.listing_checks.MAX_LINE_CHARS`), a genre's name is not one
            (:func:`genre_name_problem`), two tracks are one file, or the subset has fewer than
            two genres.
    """
    wanted = set(FMA_SUBSETS[: FMA_SUBSETS.index(subset) + 1])
    tracks: list[Track] = []
    excluded: list[Excluded] = []
    first_line: dict[str, int] = {}
    found: list[tuple[str, Path]] = []
    with contextlib.closing(table_records(table, "utf-8")) as records:
        try:
            (_, top), (_, sub) = next(records), next(records)
        except StopIteration:
            raise DatasetError(f"{table}: no two header rows, not FMA's tracks.csv") from None
        column, width = _fma_columns(table, top, sub), len(top)
        for line, row in records:
            if not row or (row[0] == "track_id" and not any(row[1:])):
                continue  # the header's third row (the index's name)
            if len(row) < width:
                raise DatasetError(
                    f"{table}: line {line}: the record of track {shown(row[0])} has {len(row)} "
                    f"fields, fewer than the header's {width}: the table is cut short or not FMA's"
                )
            track_id = _track_id(table, line, row[0])
            if track_id in first_line:
                raise DatasetError(
                    f"{table}: line {line}: track {row[0]} is listed twice (first on line "
                    f"{first_line[track_id]}): one file would be two tracks"
                )
            first_line[track_id] = line
            if row[column["set.subset"]] not in wanted:
                continue
            path = audio / track_id[:3] / f"{track_id}.mp3"
            genre = _genre(table, line, row[column["track.genre_top"]])
            if not genre:
                excluded.append(Excluded(track_id, str(path), "no top genre in tracks.csv"))
                continue
            size = file_size(path)
            if size is None:
                excluded.append(Excluded(track_id, str(path), "no audio file"))
                continue
            found.append((f"line {line} (track {track_id}, genre {shown(genre)})", path))
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
    refuse_same_files(table, found)
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


_CSV_COLUMNS = ("path", "genre", "artist", "split")


def _csv_header(table: Path, record: list[str]) -> dict[str, int]:
    """The positions of the manifest's columns named in its header row ``record``."""
    header = [name.strip().lower() for name in record]
    missing = [name for name in ("path", "genre") if name not in header]
    if missing:
        named = ", ".join(header) or "empty"
        if len(named) > 200 or not named.isprintable():
            named = shown(named, 200)
        raise DatasetError(
            f"{table}: its header row ({named}) has no {' or '.join(missing)} "
            "column; a CSV manifest's columns are path,genre[,artist][,split]"
        )
    twice = [name for name in _CSV_COLUMNS if header.count(name) > 1]
    if twice:
        raise DatasetError(
            f"{table}: its header row names the {' and '.join(twice)} column more than once"
        )
    return {name: header.index(name) for name in _CSV_COLUMNS if name in header}


def read_csv_manifest(table: Path, subset: str | None = None) -> Manifest:
    """The manifest a CSV file lists (columns ``path``, ``genre``, ``artist``, ``split``).

    Track ids are file stems, or the path as written where two files share a stem; tracks are
    ordered by genre, then path, as in a folder tree. The file is read record by record, and
    only the four columns are kept.

    Raises:
        DatasetError: the file cannot be read, has no ``path`` or ``genre`` column, lists a
            path twice (or a link to a file it lists: :func:`refuse_same_files`), names a split
            that is not one of train, val, test or a genre that cannot be one
            (:func:`genre_name_problem`), has a line over
            :data:`~genre_jax.listing_checks.MAX_LINE_CHARS`, holds fewer than two genres, or
            ``subset`` is given (FMA only).
    """
    if subset is not None:
        raise DatasetError(
            f"{table}: subset={subset!r} (--subset) chooses a subset of the Free Music Archive, "
            "not of a CSV manifest"
        )
    if not table.is_file():
        raise DatasetError(f"{table}: no such CSV manifest")
    base = table.resolve().parent
    listed: dict[str, int] = {}
    found: list[tuple[int, str, Path, dict[str, str]]] = []
    excluded: list[tuple[str, Path, str]] = []
    with contextlib.closing(table_records(table, "utf-8-sig")) as records:
        column = _csv_header(table, next(records, (1, []))[1])
        for line, record in records:
            if not record:
                continue  # a blank line
            row = {
                name: (record[i] if i < len(record) else "").strip() for name, i in column.items()
            }
            written = row["path"]
            if not written:
                if any(field.strip() for field in record):
                    raise DatasetError(f"{table}: line {line}: no path")
                continue  # a line of empty fields
            path = resolved(base / os.path.expanduser(written))  # an absolute one stays
            key = str(path)
            if key in listed:
                raise DatasetError(
                    f"{table}: line {line}: {shown(written)} is listed twice (first on line "
                    f"{listed[key]})"
                )
            listed[key] = line
            row["genre"] = _genre(table, line, row["genre"])
            split = row.get("split", "")
            if split and split.lower() not in _PART_NAMES:
                raise DatasetError(
                    f"{table}: line {line}: split {shown(split)} is not one of train, val, test "
                    "(or training, validation)"
                )
            if not row["genre"]:
                excluded.append((written, path, "no genre"))
            elif file_size(path) is None:
                excluded.append((written, path, "no audio file"))
            else:
                found.append((line, written, path, row))
    refuse_same_files(
        table,
        (
            (f"line {line} ({shown(written)}, genre {shown(row['genre'])})", path)
            for line, written, path, row in found
        ),
    )
    stems = Counter(path.stem for _, _, path, _ in found)
    tracks = []
    for _, written, path, row in found:
        split = row.get("split", "")
        tracks.append(
            Track(
                id=path.stem if stems[path.stem] == 1 else written,
                genre=row["genre"],
                path=str(path),
                size=file_size(path),
                artist=row.get("artist") or None,
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
