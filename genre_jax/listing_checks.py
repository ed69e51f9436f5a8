"""What every listing of a dataset's tracks is held to, a folder tree or a table: names that can
be genres, no file listed twice, a table's records read within a bound, and values quoted in
messages so that they cannot break them.

:mod:`genre_jax.datasets` walks folder-per-genre trees and :mod:`genre_jax.tables` reads FMA's
``tracks.csv`` and CSV manifests; both refuse with these checks, so a genre's name or a link
to a file listed before means the same wherever the dataset is described.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from genre_jax.manifest import DatasetError

MAX_LINE_CHARS = 1 << 20
"""Longest physical line (characters, its line break included) of a table
(:func:`table_records`). A CSV manifest's line holds a path (at most 4,096 bytes on Linux), a
genre, an artist and a split; FMA's ``tracks.csv`` holds 53 fields, of which the biographies
are the long ones, and the ``csv`` module already refuses any field over 128 KiB
(``csv.field_size_limit``), so a longer line would need eight fields near that limit. A line is
refused before it is split into fields, so one line of short fields costs about 25 MB at most
(one of 50 MB cost ~380 MB)."""
MAX_GENRE_CHARS = 255
"""Longest genre name: as long as a folder's name may be (255 bytes on Linux), so that a
genre from a table could also be a folder of a folder-per-genre tree."""
_CONTROLS = {"Cc", "Cs", "Zl", "Zp"}  # controls, undecodable bytes of a name, line separators
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}  # reorder a row
_SHOWN = 60  # characters of a value quoted in a message


def shown(value: str, limit: int = _SHOWN) -> str:
    """``value`` quoted and escaped as a message shows it (a line break in it cannot split the
    message), cut to ``limit`` characters with its length said (a 5,000-digit track id is not
    echoed whole)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


def genre_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a genre, or ``None`` when it can.

    A genre's name becomes a cell of the reports' Markdown tables, a plot's label and a key of
    ``labels.json``: a line break (``\\n``, ``\\r``, U+2028), another control character, an
    undecodable byte of a folder's name (a lone surrogate) or a bidirectional override would
    break a table or make it lie. Longer than :data:`MAX_GENRE_CHARS` is refused too.
    """
    if len(name) > MAX_GENRE_CHARS:
        return f"is longer than {MAX_GENRE_CHARS} characters"
    for char in name:
        if unicodedata.category(char) in _CONTROLS or char in _BIDI:
            return (
                f"holds the control character U+{ord(char):04X}; a genre's name becomes a cell "
                "of the reports' tables"
            )
    return None


def refuse_same_files(where: str | os.PathLike, listed: Iterable[tuple[str, Path]]) -> None:
    """Refuse a listing that names one file twice.

    ``listed`` holds each track's description (named in the message: its path relative to the
    dataset, or its line and genre) and its path. Files are the same when their device and
    inode are, symbolic links followed (``os.stat``): a symbolic or hard link to a file listed
    before would make one song two tracks, of two genres or twice in one, and could put it in
    both training and test. A path that cannot be stat'ed (a dangling link) is left for
    decoding to report. Copies are not found here: a song's identity by content is
    :mod:`genre_jax.identity`'s.

    Raises:
        DatasetError: two entries are one file; the message names both.
    """
    seen: dict[tuple[int, int], str] = {}
    for described, path in listed:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            raise DatasetError(
                f"{where}: {described} is the same file as {seen[key]} (a hard or symbolic "
                "link): one song would be two tracks; keep one of them"
            )
        seen[key] = described


def resolved(path: str | os.PathLike) -> Path:
    """``path`` absolute, its links resolved as far as they go: unlike ``Path.resolve``, a
    link loop (``a.wav -> a.wav``) is not a ``RuntimeError`` but a path that decoding
    reports."""
    return Path(os.path.realpath(path))


def _bounded_lines(handle: TextIO, table: Path) -> Iterator[str]:
    """The physical lines of ``handle``, refusing one longer than :data:`MAX_LINE_CHARS`
    before more of it is read."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise DatasetError(
                f"{table}: line {number} is longer than {MAX_LINE_CHARS:,} characters: not a "
                "table this reads (a line holds one track)"
            )
        yield line


def table_records(table: Path, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` of each CSV record of ``table``, streamed; ``line`` is the physical
    line the record starts on (a quoted field may hold line breaks).

    Raises:
        DatasetError: the file cannot be read, is not text in ``encoding``, has a line longer
            than :data:`MAX_LINE_CHARS` or a field longer than the ``csv`` module allows.
    """
    try:
        handle = open(table, newline="", encoding=encoding)  # noqa: SIM115 (closed below)
    except OSError as error:
        raise DatasetError(f"{table}: cannot be read ({error.strerror})") from None
    with handle:
        reader = csv.reader(_bounded_lines(handle, table))
        start = 1
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise DatasetError(
                    f"{table}: line {reader.line_num}: not a CSV table ({error})"
                ) from None
            except UnicodeDecodeError as error:
                raise DatasetError(f"{table}: not UTF-8 text ({error.reason})") from None
            except OSError as error:
                raise DatasetError(f"{table}: cannot be read ({error.strerror})") from None
            yield start, record
            start = reader.line_num + 1
