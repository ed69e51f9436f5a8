"""Dataset discovery in the GTZAN layouts and any folder-per-genre tree; the manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_jax.datasets import DatasetError, Manifest, discover, find_genre_root


def touch_audio(path: Path, seconds: float = 0.5, rate: int = 22050, fmt: str = "WAV") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * rate), np.float32), rate, format=fmt)


def test_real_kaggle_layout(gtzan_mini: Path) -> None:
    manifest = discover(gtzan_mini)
    assert Path(manifest.root).name == "genres_original"
    assert manifest.genres == sorted(manifest.genres) and len(manifest.genres) == 10
    assert manifest.track_ids[0] == "blues.00000" and len(manifest.tracks) == 10
    assert list(manifest.labels) == list(range(10))


@pytest.mark.parametrize(
    ("layout", "ext", "fmt"),
    [("Data/genres_original", "wav", "WAV"), ("genres", "au", "AU"), ("", "flac", "FLAC")],
)
def test_layouts(tmp_path: Path, layout: str, ext: str, fmt: str) -> None:
    base = tmp_path / layout if layout else tmp_path
    for genre in ("rock", "blues"):
        for i in range(2):
            touch_audio(base / genre / f"{genre}.{i:05d}.{ext}", fmt=fmt)
    (base / "rock" / "README.txt").write_text("not audio")
    manifest = discover(tmp_path)
    assert manifest.genres == ["blues", "rock"]
    assert manifest.track_ids == ["blues.00000", "blues.00001", "rock.00000", "rock.00001"]
    assert [t.status for t in manifest.tracks] == ["pending"] * 4
    assert find_genre_root(tmp_path) == base


def test_nested_folders_odd_names_and_duplicate_stems(tmp_path: Path) -> None:
    touch_audio(tmp_path / "música latina" / "album 1" / "song.wav")
    touch_audio(tmp_path / "música latina" / "album 2" / "song.wav")
    touch_audio(tmp_path / "hip hop" / "track.mp3.wav")
    (tmp_path / "hip hop" / "looks_like.wav").mkdir()  # a directory named like audio
    manifest = discover(tmp_path)
    assert manifest.genres == ["hip hop", "música latina"]
    assert manifest.track_ids == [
        "track.mp3",
        "música latina/album 1/song.wav",
        "música latina/album 2/song.wav",
    ]


def test_folder_without_genre_subfolders_is_named(tmp_path: Path) -> None:
    touch_audio(tmp_path / "loose.wav")
    with pytest.raises(DatasetError, match=str(tmp_path)):
        discover(tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        discover(tmp_path / "absent")


def test_manifest_json_round_trip(gtzan_mini: Path) -> None:
    manifest = discover(gtzan_mini)
    again = Manifest.from_json(json.loads(json.dumps(manifest.to_json())))
    assert again == manifest
    assert again.to_json()["genre_index"]["rock"] == 9


def test_discover_records_each_file_size_and_survives_a_dangling_link(tmp_path: Path) -> None:
    touch_audio(tmp_path / "rock" / "a.wav")
    touch_audio(tmp_path / "rock" / "b.flac", fmt="FLAC")
    (tmp_path / "rock" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    touch_audio(tmp_path / "jazz" / "c.wav")
    tracks = {t.id: t for t in discover(tmp_path).tracks}
    assert tracks["a"].size == (tmp_path / "rock" / "a.wav").stat().st_size
    assert tracks["b"].size == (tmp_path / "rock" / "b.flac").stat().st_size
    assert tracks["gone"].size is None  # listed all the same: decoding reports why
    assert all(t.warning is None for t in tracks.values())


def test_manifest_written_without_warning_and_size_still_loads(tmp_path: Path) -> None:
    touch_audio(tmp_path / "rock" / "a.wav")
    touch_audio(tmp_path / "jazz" / "b.wav")
    manifest = discover(tmp_path)
    manifest.tracks[0].warning = "truncated: the last Ogg page is cut off"
    data = json.loads(json.dumps(manifest.to_json()))
    assert Manifest.from_json(data) == manifest
    for key in ("layout", "metadata", "subset", "excluded"):  # a manifest of an older store
        del data[key]
    for track in data["tracks"]:
        del track["warning"], track["size"], track["artist"], track["split"]
    old = Manifest.from_json(data)
    assert old.tracks[0].warning is None and old.tracks[0].size is None
    assert old.tracks[0].artist is None and old.tracks[0].split is None
    assert old.layout == "folders" and old.excluded == [] and old.metadata is None
    assert old.tracks[0].path == manifest.tracks[0].path
    assert old.fingerprint() == manifest.fingerprint()


def _two_genres(root: Path) -> Path:
    """``rock/a.wav``, ``rock/b.wav``, ``jazz/c.wav``, ``jazz/d.wav`` under ``root``."""
    for genre, names in (("rock", "ab"), ("jazz", "cd")):
        for name in names:
            touch_audio(root / genre / f"{name}.wav")
    return root


def _refusal(root: Path) -> str:
    """The message of the DatasetError that discovering ``root`` raises (one line)."""
    with pytest.raises(DatasetError) as caught:
        discover(root)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600
    return message


def test_a_file_reached_twice_is_refused_naming_both_places(tmp_path: Path) -> None:
    """Issue 35, item 8: one file was two tracks (of two genres, or twice in one)."""
    linked = _two_genres(tmp_path / "linked")
    (linked / "rock2").symlink_to(linked / "rock")  # a genre folder that is another's
    message = _refusal(linked)
    assert "genre folders 'rock' and 'rock2' are one folder" in message

    fma_beside = _two_genres(tmp_path / "fma_beside")  # FMA's audio read as a third genre
    touch_audio(fma_beside / "fma_small" / "000" / "000002.mp3", fmt="MP3")
    message = _refusal(fma_beside)
    assert "genre folder 'fma_small' holds the Free Music Archive's numbered audio" in message
    assert "('fma_small/000/000002.mp3')" in message
    (fma_beside / "fma_small").rename(fma_beside / "downloads")  # renamed: its files tell
    assert "genre folder 'downloads' holds the Free" in _refusal(fma_beside)

    within = _two_genres(tmp_path / "within")
    (within / "rock" / "again.wav").symlink_to(within / "rock" / "a.wav")
    assert "'rock/again.wav' is the same file as 'rock/a.wav'" in _refusal(within)

    hard = _two_genres(tmp_path / "hard")
    (hard / "jazz" / "sub").mkdir()
    os.link(hard / "rock" / "b.wav", hard / "jazz" / "sub" / "e.wav")
    assert "'rock/b.wav' is the same file as 'jazz/sub/e.wav'" in _refusal(hard)

    inside = _two_genres(tmp_path / "inside")
    touch_audio(inside / "rock" / "live" / "f.wav")
    (inside / "live").symlink_to(inside / "rock" / "live")  # a genre folder inside another
    assert "'rock/live/f.wav' is the same file as 'live/f.wav'" in _refusal(inside)


def test_links_to_distinct_files_are_still_read(tmp_path: Path) -> None:
    """Links are not refused as such: a genre folder or files linked from elsewhere are read,
    as is a dangling link (decoding reports it)."""
    store = _two_genres(tmp_path / "elsewhere")
    root = tmp_path / "view"
    (root / "rock").mkdir(parents=True)
    (root / "rock" / "a.wav").symlink_to(store / "rock" / "a.wav")
    (root / "rock" / "b.wav").symlink_to(store / "rock" / "b.wav")
    (root / "rock" / "gone.wav").symlink_to(store / "nowhere.wav")
    (root / "rock" / "loop.wav").symlink_to("loop.wav")  # a link loop: not a RuntimeError
    (root / "jazz").symlink_to(store / "jazz")
    manifest = discover(root)
    assert manifest.track_ids == ["c", "d", "a", "b", "gone", "loop"]
    assert [t.size is None for t in manifest.tracks] == [False] * 4 + [True] * 2


def test_a_genre_name_that_breaks_a_report_table_is_refused(tmp_path: Path) -> None:
    """Issue 35, item 25: a genre folder named with a line break broke report.md's tables."""
    for name, code in (("ro\nck", "U+000A"), ("ro\x1bck", "U+001B"), ("\u202ekcor", "U+202E")):
        root = _two_genres(tmp_path / code)
        (root / "rock").rename(root / name)
        message = _refusal(root)
        assert f"genre folder {name!r} holds the control character {code}" in message
    root = _two_genres(tmp_path / "fine")
    (root / "rock").rename(root / "música\u3000latina")  # an ideographic space is a space
    assert discover(root).genres == ["jazz", "música\u3000latina"]


def _deep_folder(top: Path, levels: int) -> Path:
    """``top/d/d/.../d``, ``levels`` deep (made one level at a time: ``Path.mkdir(parents=True)``
    recurses too)."""
    folder = top
    for _ in range(levels):
        folder = folder / "d"
        folder.mkdir()
    return folder


def _remove_deep(top: Path) -> None:
    """Remove a tree of any depth, a folder once its subfolders are gone (``shutil.rmtree``,
    which pytest cleans its temporary folders with, recurses once per level)."""
    pending = [top]
    while pending:
        folder = pending[-1]
        below = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()]
        if below:
            pending.extend(below)
            continue
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        pending.pop()


def test_a_folder_tree_deeper_than_the_recursion_limit_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 35, item 20: a 1,500-level tree raised RecursionError in check and prepare
    (``os.walk`` recursed once per level)."""
    import sys

    from genre_jax.check import check_command
    from genre_jax.config import FeatureConfig

    root = _two_genres(tmp_path / "data")
    assert sys.getrecursionlimit() < 1500
    try:
        deep = _deep_folder(root / "rock", 1500)
        touch_audio(tmp_path / "deep.wav")
        (tmp_path / "deep.wav").rename(deep / "deep.wav")
        manifest = discover(root)
        assert manifest.track_ids == ["c", "d", "a", "b", "deep"]
        config = FeatureConfig(segment_seconds=0.25)
        assert check_command(root, config) == 0
        assert "5 files checked" in capsys.readouterr().out
    finally:
        _remove_deep(root)
