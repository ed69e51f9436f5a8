"""Dataset discovery in the GTZAN layouts and any folder-per-genre tree; the manifest."""

from __future__ import annotations

import json
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
