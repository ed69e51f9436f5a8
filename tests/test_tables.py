"""Datasets listed in tables (FMA's tracks.csv, CSV manifests); datasets that read wrongly."""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_jax.datasets import DatasetError, Manifest, discover
from tests import fma


@pytest.fixture(scope="session")
def fma_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FMA-shaped dataset of :mod:`tests.fma` (built once per session; not modified)."""
    return fma.build(tmp_path_factory.mktemp("fma") / "data")


def test_fma_tracks_come_from_the_table(fma_root: Path) -> None:
    manifest = discover(fma_root)
    zero = [r for r in fma.rows() if r.track == fma.ZERO_LENGTH]
    expected = sorted(fma.usable() + zero, key=lambda r: (r.genre, r.track))
    assert manifest.layout == "fma" and manifest.subset == "small"
    assert manifest.genres == sorted(fma.GENRES)
    assert manifest.track_ids == [f"{r.track:06d}" for r in expected]
    assert [t.genre for t in manifest.tracks] == [r.genre for r in expected]
    assert [t.artist for t in manifest.tracks] == [str(r.artist) for r in expected]
    official = {"training": "train", "validation": "val", "test": "test"}
    assert [t.split for t in manifest.tracks] == [official[r.split] for r in expected]
    assert all(Path(t.path) == fma.audio_path(fma_root, int(t.id)) for t in manifest.tracks)
    reasons = {e.id: e.reason for e in manifest.excluded}
    assert reasons == {
        f"{fma.NO_GENRE:06d}": "no top genre in tracks.csv",
        f"{fma.NOT_THERE:06d}": "no audio file",
    }
    assert manifest.metadata == str((fma_root / "fma_metadata" / "tracks.csv").resolve())
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_fma_audio_folder_given_directly_reads_the_table_beside_it(fma_root: Path) -> None:
    assert discover(fma_root / "fma_small") == discover(fma_root)
    assert discover(fma_root / "fma_small", "small") == discover(fma_root, "small")


def test_fma_subsets_nest_and_need_a_folder_that_holds_them(fma_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"subset 'medium' needs its audio in fma_medium"):
        discover(fma_root, "medium")
    with pytest.raises(DatasetError, match=r"fma_small.*lacks most of subset 'large'"):
        discover(fma_root / "fma_small", "large")
    # fma_large holds every subset: medium = small's tracks + medium's (whose audio is absent)
    (tmp_path / "fma_metadata").symlink_to(fma_root / "fma_metadata")
    (tmp_path / "fma_large").symlink_to(fma_root / "fma_small")
    medium = discover(tmp_path, "medium")
    small = discover(tmp_path, "small")
    assert medium.track_ids == small.track_ids and medium.subset == "medium"
    assert sorted(e.id for e in medium.excluded if e.reason == "no audio file") == [
        f"{fma.NOT_THERE:06d}",
        "001200",
        "001203",
    ]
    assert small.fingerprint() != medium.fingerprint()  # the subset is part of what was read
    (tmp_path / "fma_small").symlink_to(fma_root / "fma_small")
    with pytest.raises(DatasetError, match=r"holds fma_small, fma_large; choose the subset"):
        discover(tmp_path)


def test_fma_without_its_table_is_refused_not_read_as_one_genre(
    fma_root: Path, tmp_path: Path
) -> None:
    shutil.copytree(fma_root / "fma_small", tmp_path / "fma_small")
    # the folder holding fma_small: one "genre" named fma_small, which is how it used to read
    with pytest.raises(
        DatasetError, match=r"found 1 genre folder\(s\) \(fma_small \(\d+ files\)\)"
    ):
        discover(tmp_path)
    # fma_small itself: its numbered folders are not genres
    with pytest.raises(DatasetError, match=r"numbered like the Free Music Archive's audio folders"):
        discover(tmp_path / "fma_small")
    with pytest.raises(DatasetError, match=r"--subset.*no fma_metadata/tracks.csv"):
        discover(tmp_path, "small")


def test_fma_table_that_is_not_fmas_is_named(fma_root: Path, tmp_path: Path) -> None:
    (tmp_path / "fma_small").symlink_to(fma_root / "fma_small")
    (tmp_path / "fma_metadata").mkdir()
    table = tmp_path / "fma_metadata" / "tracks.csv"
    with open(fma_root / "fma_metadata" / "tracks.csv", newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    top, rest = records[0], records[1:]
    renamed = [name if i != top.index("set") + 1 else "sets" for i, name in enumerate(top)]
    _write_csv(table, renamed, rest)
    with pytest.raises(DatasetError, match=r"tracks.csv: not FMA's tracks.csv.*no column set.subs"):
        discover(tmp_path)
    _write_csv(table, top, [*rest[:2], ["x12", *rest[2][1:]], *rest[3:]])
    with pytest.raises(DatasetError, match=r"tracks.csv: line 4: track id 'x12' is not a track"):
        discover(tmp_path)
    _write_csv(table, top, [*rest[:2], ["12", "1", "2"]])
    with pytest.raises(DatasetError, match=r"track '12' has 3 fields, fewer than the header's 53"):
        discover(tmp_path)


def test_numbered_folders_and_single_genres_are_refused(tmp_path: Path) -> None:
    from tests.test_datasets import touch_audio

    for name in ("000", "001"):
        touch_audio(tmp_path / "a" / name / f"{name}002.wav")
    with pytest.raises(DatasetError, match=r"its 2 genre folder\(s\) \(000 \(1 files\), 001"):
        discover(tmp_path / "a")
    touch_audio(tmp_path / "b" / "jazz" / "one.wav")
    with pytest.raises(DatasetError, match=r"b: found 1 genre folder\(s\) \(jazz \(1 files\)\)"):
        discover(tmp_path / "b")


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_manifest_reads_paths_relative_to_itself(tmp_path: Path) -> None:
    from tests.test_datasets import touch_audio

    for name in ("a/x.wav", "a/y.wav", "b/x.flac", "c/z.wav"):
        touch_audio(tmp_path / "audio" / name, fmt="FLAC" if name.endswith("flac") else "WAV")
    outside = tmp_path / "elsewhere.wav"
    touch_audio(outside)
    (tmp_path / "lists").mkdir()
    table = _write_csv(
        tmp_path / "lists" / "collection.csv",
        ["Path", "genre", "artist", "split", "notes"],
        [
            ["../audio/a/x.wav", "jazz", "ann", "train", "first"],
            ["../audio/a/y.wav", "jazz", "", "validation", ""],
            ["../audio/b/x.flac", "folk, acoustic", "bob", "test", ""],
            ["../audio/c/z.wav", "", "cy", "train", "no genre"],
            ["../audio/c/gone.wav", "folk, acoustic", "cy", "", ""],
            [str(outside), "jazz", "ann", "", ""],
        ],
    )
    manifest = discover(table)
    assert manifest.layout == "csv" and manifest.genres == ["folk, acoustic", "jazz"]
    assert manifest.root == str((tmp_path / "lists").resolve())
    assert manifest.track_ids == ["../audio/b/x.flac", "../audio/a/x.wav", "y", "elsewhere"]
    assert [t.artist for t in manifest.tracks] == ["bob", "ann", None, "ann"]
    assert [t.split for t in manifest.tracks] == ["test", "train", "val", None]
    assert manifest.tracks[0].path == str((tmp_path / "audio" / "b" / "x.flac").resolve())
    assert {e.id: e.reason for e in manifest.excluded} == {"z": "no genre", "gone": "no audio file"}
    assert Manifest.from_json(manifest.to_json()) == manifest
    before = manifest.fingerprint()
    os.utime(table, ns=(1, 1))  # the labels may have changed: another dataset
    assert discover(table).fingerprint() != before


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        (["file", "genre"], [["x.wav", "jazz"]], r"its header row \(file, genre\) has no path"),
        (
            ["path", "genre"],
            [["x.wav", "jazz"], ["./x.wav", "folk"]],
            r"line 3: './x.wav' is listed twice \(first on line 2\)",
        ),
        (
            ["path", "genre", "split"],
            [["x.wav", "jazz", "dev"], ["y.wav", "folk", ""]],
            r"line 2: split 'dev' is not one of train, val, test",
        ),
        (["path", "genre"], [["x.wav", "jazz"], ["y.wav", "jazz"]], r"found 1 genre\(s\) in its"),
    ],
)
def test_csv_manifest_mistakes_are_named(
    tmp_path: Path, header: list[str], rows: list[list[str]], message: str
) -> None:
    for name in ("x.wav", "y.wav"):
        sf.write(tmp_path / name, np.zeros(2205, np.float32), 22050)
    table = _write_csv(tmp_path / "list.csv", header, rows)
    with pytest.raises(DatasetError, match=r"list.csv: " + message):
        discover(table)
    with pytest.raises(DatasetError, match=r"subset='small' \(--subset\).*not of a CSV manifest"):
        discover(table, "small")


def _parts_artists(manifest: Manifest, split: dict) -> dict[str, set[str]]:
    return {p: {manifest.tracks[i].artist for i in split[p]} for p in ("train", "val", "test")}


def test_fma_goes_through_check_prepare_train_and_evaluate(
    fma_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from genre_jax.cli import main
    from genre_jax.store import FeatureStore, resolve_store

    one_second = ["--segment-seconds", "1"]
    assert main(["check", "--data-dir", str(fma_root), *one_second]) == 1  # the empty mp3
    out = capsys.readouterr().out
    assert f"left out 1 listed track(s), no top genre in tracks.csv: {fma.NO_GENRE:06d}" in out
    assert f"left out 1 listed track(s), no audio file: {fma.NOT_THERE:06d}" in out
    assert f"error   000/{fma.ZERO_LENGTH:06d}.mp3" in out
    features = tmp_path / "features"
    prepare = ["prepare", "--data-dir", str(fma_root), "--subset", "small", "--out", str(features)]
    assert main([*prepare, *one_second, "--no-progress"]) == 0
    assert "2 listed tracks left out" in capsys.readouterr().out
    store = FeatureStore.open(resolve_store(features))
    statuses = {t.id: t.status for t in store.manifest.tracks}
    assert statuses.pop(f"{fma.ZERO_LENGTH:06d}") == "error"
    assert set(statuses.values()) == {"ok"} and len(statuses) == len(fma.usable())
    assert store.info["layout"] == "fma" and store.info["tracks_excluded"] == 2
    runs = {
        "official": ["--model", "cnn", "--epochs", "1", "--split", "official"],
        "artist-3fold-seed0-fold1": [
            "--model",
            "svm",
            "--split",
            "kfold",
            "--folds",
            "3",
            "--fold",
            "1",
        ],
    }
    for name, options in runs.items():
        run = tmp_path / name
        train = ["train", "--features", str(features), "--run-dir", str(run), "--no-progress"]
        assert main([*train, *options]) == 0
        split = json.loads((run / "config.json").read_text())["split"]
        assert split["name"] == name
        artists = _parts_artists(store.manifest, split)
        assert not artists["train"] & artists["val"] and not artists["train"] & artists["test"]
        assert not artists["val"] & artists["test"]
        if name == "official":
            expected = {
                p: [
                    i
                    for i, t in enumerate(store.manifest.tracks)
                    if t.split == p and t.status == "ok"
                ]
                for p in ("train", "val", "test")
            }
            assert {p: split[p] for p in expected} == expected
        assert main(["evaluate", "--run-dir", str(run)]) == 0
        report = json.loads((run / "report.json").read_text())
        assert report["songs"] == len(split["test"]) > 0


def test_fma_crossval_folds_are_artist_grouped_and_say_so(fma_root: Path, tmp_path: Path) -> None:
    import json

    from genre_jax.cli import main

    out = tmp_path / "cv"
    args = ["crossval", "--data-dir", str(fma_root / "fma_small"), "--out", str(out)]
    assert main([*args, "--model", "svm", "--folds", "3", "--segment-seconds", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["grouped_by"] == "artist"
    assert "# svm: 3-fold artist-grouped cross-validation" in (out / "report.md").read_text()
    manifest = Manifest.from_json(
        json.loads(next(out.glob("features/*/manifest.json")).read_text())
    )
    tests = []
    for fold in range(3):
        split = json.loads((out / f"fold-{fold}" / "config.json").read_text())["split"]
        assert split["name"] == f"artist-3fold-seed0-fold{fold}"
        artists = _parts_artists(manifest, split)
        assert not artists["test"] & (artists["train"] | artists["val"])
        tests += split["test"]
    usable = [i for i, t in enumerate(manifest.tracks) if t.status == "ok"]
    assert sorted(tests) == usable


def _fma_records(fma_root: Path) -> list[list[str]]:
    with open(fma_root / "fma_metadata" / "tracks.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _fma_copy(fma_root: Path, root: Path, records: list[list[str]], audio: bool = False) -> Path:
    """An FMA dataset at ``root`` whose ``tracks.csv`` holds ``records``; its audio is the
    fixture's (linked, or copied where ``audio``, so that a test may add files)."""
    root.mkdir()
    if audio:
        shutil.copytree(fma_root / "fma_small", root / "fma_small")
    else:
        (root / "fma_small").symlink_to(fma_root / "fma_small")
    (root / "fma_metadata").mkdir()
    _write_csv(root / "fma_metadata" / "tracks.csv", records[0], records[1:])
    return root


def _line_of(table: Path, start: str) -> int:
    """The number of the first physical line of ``table`` that starts with ``start``."""
    lines = table.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(start))


@pytest.mark.parametrize(
    "written", ["0002", "+3", " 4 ", "0_5", "\u0663", "2.0", "1234567", "-0", ""]
)
def test_fma_track_ids_have_one_spelling(fma_root: Path, tmp_path: Path, written: str) -> None:
    """Issue 35, item 7: ``int()`` read each of these as an existing track's number, so one
    file was two tracks (two genres, two official parts)."""
    records = _fma_records(fma_root)
    extra = [written, *records[3][1:]]  # a second record for a track the table lists
    root = _fma_copy(fma_root, tmp_path / "fma", [*records[:4], extra, *records[4:]])
    table = root / "fma_metadata" / "tracks.csv"
    line = _line_of(table, f"{fma.rows()[1].track},") - 2  # the record before the second's
    with pytest.raises(DatasetError) as caught:
        discover(root)
    assert str(caught.value) == (
        f"{table}: line {line}: track id {written!r} is not a track number (FMA writes each as "
        "1 to 6 ASCII digits, without sign, spaces or leading zeros)"
    )


def test_fma_track_listed_twice_or_linked_is_one_file_and_refused(
    fma_root: Path, tmp_path: Path
) -> None:
    """Issue 35, items 7 and 8: a duplicate id, or a hard link under another id, made one file
    two tracks."""
    records = _fma_records(fma_root)
    first, second = records[3], records[4]
    again = [first[0], *second[1:]]  # track 2 again, with another artist (and part)
    root = _fma_copy(fma_root, tmp_path / "twice", [*records, again])
    table = root / "fma_metadata" / "tracks.csv"
    lines = table.read_text(encoding="utf-8").splitlines()
    last = max(i for i, text in enumerate(lines, 1) if text.startswith(f"{first[0]},"))
    with pytest.raises(DatasetError) as caught:
        discover(root)
    assert f"line {last}: track {first[0]} is listed twice (first on line 4)" in str(caught.value)

    linked = _fma_copy(fma_root, tmp_path / "linked", records, audio=True)
    os.link(fma.audio_path(linked, 2), fma.audio_path(linked, fma.NOT_THERE))  # listed as Rock
    table = linked / "fma_metadata" / "tracks.csv"
    with pytest.raises(DatasetError) as caught:
        discover(linked)
    assert str(caught.value).startswith(
        f"{table}: line {_line_of(table, f'{fma.NOT_THERE},')} (track 000997, genre 'Rock') "
        "is the same file as line 4 (track 000002, genre 'Hip-Hop') (a hard or symbolic link)"
    )


def test_long_values_are_cut_in_messages(fma_root: Path, tmp_path: Path) -> None:
    """Issue 35, item 25: a 5,000-digit FMA id was echoed whole in the error."""
    records = _fma_records(fma_root)
    huge = "9" * 5000
    root = _fma_copy(fma_root, tmp_path / "fma", [*records[:3], [huge, *records[3][1:]]])
    with pytest.raises(DatasetError) as caught:
        discover(root)
    message = str(caught.value)
    assert f"line 4: track id '{'9' * 60}'... (5,000 characters) is not a track" in message
    assert len(message) < 400
    for name in ("x.wav", "y.wav"):
        sf.write(tmp_path / name, np.zeros(2205, np.float32), 22050)
    split = "v" * 10_000
    table = _write_csv(tmp_path / "list.csv", ["path", "genre", "split"], [["x.wav", "a", split]])
    with pytest.raises(DatasetError, match=r"line 2: split 'v{60}'... \(10,000 characters\) is"):
        discover(table)


def test_a_hard_link_under_a_second_genre_of_a_csv_manifest_is_refused(tmp_path: Path) -> None:
    """Issue 35, item 8: a hard link listed under another genre was a second track."""
    for name in ("x.wav", "y.wav", "z.wav"):
        sf.write(tmp_path / name, np.zeros(2205, np.float32), 22050)
    os.link(tmp_path / "x.wav", tmp_path / "hard.wav")
    rows = [["x.wav", "jazz"], ["y.wav", "folk"], ["z.wav", "folk"]]
    table = _write_csv(tmp_path / "list.csv", ["path", "genre"], [*rows, ["hard.wav", "folk"]])
    with pytest.raises(DatasetError) as caught:
        discover(table)
    assert str(caught.value) == (
        f"{table}: line 5 ('hard.wav', genre 'folk') is the same file as line 2 ('x.wav', genre "
        "'jazz') (a hard or symbolic link): one song would be two tracks; keep one of them"
    )
    (tmp_path / "soft.wav").symlink_to(tmp_path / "y.wav")  # the same path once resolved
    table = _write_csv(tmp_path / "list.csv", ["path", "genre"], [*rows, ["soft.wav", "jazz"]])
    with pytest.raises(DatasetError, match=r"line 5: 'soft.wav' is listed twice \(first on line 3"):
        discover(table)
    assert len(discover(_write_csv(tmp_path / "list.csv", ["path", "genre"], rows)).tracks) == 3


@pytest.mark.parametrize(
    ("genre", "problem"),
    [
        ("ro\nck", "holds the control character U+000A"),
        ("ro\rck", "holds the control character U+000D"),
        ("a\u2028b", "holds the control character U+2028"),
        ("\x00", "holds the control character U+0000"),
        ("x" * 300, "... (300 characters) is longer than 255 characters"),
    ],
)
def test_a_genre_that_breaks_a_report_table_is_refused_with_its_line(
    fma_root: Path, tmp_path: Path, genre: str, problem: str
) -> None:
    """Issue 35, item 25: a genre with a line break (a quoted CSV field) broke report.md."""
    for name in ("x.wav", "y.wav"):
        sf.write(tmp_path / name, np.zeros(2205, np.float32), 22050)
    table = _write_csv(tmp_path / "list.csv", ["path", "genre"], [["x.wav", "a"], ["y.wav", genre]])
    with pytest.raises(DatasetError) as caught:
        discover(table)
    assert str(caught.value).startswith(f"{table}: line 3: genre ")
    assert problem in str(caught.value) and "\n" not in str(caught.value)
    records = _fma_records(fma_root)
    records[3][records[1].index("genre_top")] = genre
    root = _fma_copy(fma_root, tmp_path / "fma", records)
    with pytest.raises(DatasetError, match=r"tracks.csv: line 4: genre .*" + re.escape(problem)):
        discover(root)


def test_a_line_longer_than_the_bound_is_refused_before_it_is_held(tmp_path: Path) -> None:
    """Issue 35, item 23: one 50 MB line of short fields cost ~380 MB (every field of every
    row was held); a line is now refused, with its number, once it passes the bound."""
    import tracemalloc

    from genre_jax.listing_checks import MAX_LINE_CHARS

    for name in ("x.wav", "y.wav"):
        sf.write(tmp_path / name, np.zeros(2205, np.float32), 22050)
    table = tmp_path / "list.csv"
    with open(table, "w", encoding="utf-8") as handle:
        handle.write("path,genre,notes\nx.wav,a," + "n" * 100_000 + "\ny.wav,b,\n")
        handle.write("ab," * (4 * MAX_LINE_CHARS // 3) + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError) as caught:
            discover(table)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        f"{table}: line 4 is longer than {MAX_LINE_CHARS:,} characters: not a table this reads "
        "(a line holds one track)"
    )
    assert peak < 16 * 2**20  # the line's first MiB, not ~90 MB of its 1.4 million fields
    with open(table, "r+", encoding="utf-8") as handle:  # a long field under the bound is read
        handle.truncate(len(handle.readline()) + len(handle.readline()) + len("y.wav,b,\n"))
    assert discover(table).track_ids == ["x", "y"]
