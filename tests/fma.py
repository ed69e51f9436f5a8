"""A small dataset in the Free Music Archive's layout, built from the synthetic generator.

``fma_metadata/tracks.csv`` has FMA's real columns under their two-row header (the top-level
``album``/``artist``/``set``/``track`` row, the column row, then the ``track_id`` row), with
quoted fields holding commas and line breaks as the real table's biographies do. Audio is
``fma_small/AAA/AAAAAA.mp3``, written as MP3 by soundfile. Besides the usable tracks, the
table lists tracks that must be left out or skipped, as in the real FMA:

- a track of the small subset with no top genre (left out: "no top genre in tracks.csv");
- a listed track whose file is not there (left out: "no audio file");
- a zero-length mp3 (listed with a genre: discovered, then skipped when decoded);
- tracks of the medium subset (not part of ``small``; their audio is absent here).

Artists have two or three tracks each, every artist's tracks in one official part; one artist
plays two genres.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from genre_jax.synthetic import synthesize_clip

# FMA's own column layout of tracks.csv (fma_metadata, 2017), top-level name: column names.
COLUMNS = {
    "album": "comments date_created date_released engineer favorites id information listens "
    "producer tags title tracks type",
    "artist": "active_year_begin active_year_end associated_labels bio comments date_created "
    "favorites id latitude location longitude members name related_projects tags website "
    "wikipedia_page",
    "set": "split subset",
    "track": "bit_rate comments composer date_created date_recorded duration favorites "
    "genre_top genres genres_all information interest language_code license listens lyricist "
    "number publisher tags title",
}
# Synthetic style of each FMA genre name used here ("Old-Time / Historic" has a slash).
GENRES = {
    "Hip-Hop": "hiphop",
    "Rock": "rock",
    "Classical": "classical",
    "Old-Time / Historic": "country",
}
PER_GENRE = 12
SECONDS = 2.0
RATE = 22050
ZERO_LENGTH = 999
NO_GENRE = 998
NOT_THERE = 997


@dataclass(frozen=True)
class Row:
    track: int
    genre: str
    artist: int
    split: str
    subset: str = "small"


def rows() -> list[Row]:
    """Every row of the table: 12 usable tracks per genre, then the odd ones."""
    out = []
    number = 2  # FMA's first track id
    parts = ("training", "training", "validation", "test")  # of each genre's four artists
    for g, genre in enumerate(GENRES):
        for i in range(PER_GENRE):
            artist = 100 * (g + 1) + i // 3  # four artists of three tracks per genre
            out.append(Row(number, genre, artist, parts[i // 3]))
            number += 3
    out[-1] = Row(out[-1].track, out[-1].genre, 101, "training")  # artist 101 plays two genres
    out[-2] = Row(out[-2].track, out[-2].genre, 101, "training")
    out += [
        Row(ZERO_LENGTH, "Rock", 900, "test"),
        Row(NO_GENRE, "", 901, "training"),
        Row(NOT_THERE, "Rock", 902, "training"),
        Row(1200, "Rock", 903, "training", subset="medium"),
        Row(1203, "Hip-Hop", 903, "test", subset="medium"),
    ]
    return out


def _record(row: Row) -> list[str]:
    """One line of tracks.csv: every column, most of them plausible filler."""
    values = {
        "album.id": str(row.track // 10),
        "album.title": f"Album {row.track // 10}, volume 1",
        "artist.bio": f'<p>Artist {row.artist}, from "Somewhere".\nSecond line, with commas.</p>',
        "artist.id": str(row.artist),
        "artist.name": f"Artist {row.artist}",
        "set.split": row.split,
        "set.subset": row.subset,
        "track.bit_rate": "256000",
        "track.duration": str(int(SECONDS)),
        "track.genre_top": row.genre,
        "track.genres": "[21]" if row.genre else "[]",
        "track.tags": "['a', 'b']",
        "track.title": f"Track {row.track}",
    }
    names = [f"{top}.{name}" for top, cols in COLUMNS.items() for name in cols.split()]
    return [str(row.track)] + [values.get(name, "") for name in names]


def audio_path(root: Path, track: int, folder: str = "fma_small") -> Path:
    name = f"{track:06d}"
    return root / folder / name[:3] / f"{name}.mp3"


def build(root: Path) -> Path:
    """Write the dataset under ``root`` (``fma_metadata/`` and ``fma_small/``); returns root."""
    metadata = root / "fma_metadata"
    metadata.mkdir(parents=True)
    top = [""] + [t for t, cols in COLUMNS.items() for _ in cols.split()]
    sub = [""] + [name for cols in COLUMNS.values() for name in cols.split()]
    table = rows()
    with open(metadata / "tracks.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(top)
        writer.writerow(sub)
        writer.writerow(["track_id"] + [""] * (len(sub) - 1))
        for row in table:
            writer.writerow(_record(row))
    for i, row in enumerate(table):
        if row.subset != "small" or row.track == NOT_THERE:
            continue
        path = audio_path(root, row.track)
        path.parent.mkdir(parents=True, exist_ok=True)
        if row.track == ZERO_LENGTH:
            path.write_bytes(b"")
            continue
        style = GENRES.get(row.genre, "jazz")
        clip = synthesize_clip(style, i, seconds=SECONDS, sample_rate=RATE)
        sf.write(path, clip.astype(np.float32), RATE, format="MP3")
    return root


def usable() -> list[Row]:
    """The rows that become decodable tracks of subset ``small``."""
    odd = (ZERO_LENGTH, NO_GENRE, NOT_THERE)
    return [r for r in rows() if r.subset == "small" and r.track not in odd]
