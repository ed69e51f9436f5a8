"""The feature store and `genre-jax prepare`: contents, bad files, reuse, separation by config."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from genre_jax import store_checks as store_module
from genre_jax.audio import load_audio
from genre_jax.cli import main
from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.extraction import ARRAYS
from genre_jax.fileio import atomic_write_json, file_digest
from genre_jax.prepare import extract_shard, merge_shards, prepare
from genre_jax.store import FeatureStore, resolve_store, store_path, verify_store
from genre_jax.store_checks import StoreError
from tests.conftest import child_env


def _small_dataset(synthetic_small: Path, root: Path) -> Path:
    for genre in ("blues", "metal"):
        shutil.copytree(synthetic_small / "genres_original" / genre, root / genre)
    good = (root / "blues" / "blues.00000.wav").read_bytes()
    (root / "blues" / "blues.broken.wav").write_bytes(good[: len(good) // 3])
    (root / "metal" / "metal.text.wav").write_text("RIFF? no, just text pretending to be audio\n")
    return root


@pytest.fixture
def small_dataset(synthetic_small: Path, tmp_path: Path) -> Path:
    """Two synthetic genres, 3 tracks each, plus a truncated wav and a text file named .wav."""
    return _small_dataset(synthetic_small, tmp_path / "data")


def test_prepare_writes_a_complete_store(small_dataset: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    store = prepare(small_dataset, tmp_path / "out", progress=False, log=messages.append)
    assert store.path == store_path(tmp_path / "out", FeatureConfig())
    assert store.features.shape == (18, 431, 13) and store.features.dtype == np.float32
    assert store.genres == ["blues", "metal"]
    by_id = {t.id: t for t in store.manifest.tracks}
    assert by_id["blues.broken"].status == "error" and "truncated" in by_id["blues.broken"].error
    assert by_id["metal.text"].status == "error" and "not decodable" in by_id["metal.text"].error
    assert sum("skipped" in m and "blues.broken.wav" in m for m in messages) == 1
    assert sum("skipped" in m and "metal.text.wav" in m for m in messages) == 1
    ok = [i for i, t in enumerate(store.manifest.tracks) if t.status == "ok"]
    assert sorted(set(store.tracks.tolist())) == ok
    assert store.tracks.tolist() == [i for i in ok for _ in range(3)]
    assert store.positions.tolist() == [0, 1, 2] * 6
    assert store.labels.tolist() == [store.manifest.labels[i] for i in store.tracks]
    assert all(store.manifest.tracks[i].segments == 3 for i in ok)
    # Independent reference: librosa on the second segment of the last track.
    audio = load_audio(store.manifest.tracks[store.tracks[-2]].path)
    reference = librosa.feature.mfcc(
        y=audio[220500:441000], sr=22050, n_mfcc=13, n_fft=2048, hop_length=512
    ).T
    np.testing.assert_allclose(store.features[-2], reference, atol=1e-3)
    # Issue 35, item 25: the store folder was 0700 (a temporary folder's mode, renamed).
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o777 & ~umask
    # Each usable track has its identity (the digest of its decoded audio), and the store's
    # data identity is that of its manifest.
    assert all(len(store.manifest.tracks[i].content) == 32 for i in ok)
    assert store.info["data_identity"] == store.identity is not None


def test_rerun_reuses_and_other_config_writes_another_store(
    small_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = prepare(small_dataset, out, progress=False, log=lambda _: None)
    stamp = (first.path / "store.json").stat().st_mtime_ns
    messages: list[str] = []
    again = prepare(small_dataset, out, progress=False, log=messages.append)
    assert again.path == first.path and (first.path / "store.json").stat().st_mtime_ns == stamp
    assert any("Reusing" in m for m in messages)
    short = prepare(small_dataset, out, FeatureConfig(segment_seconds=2.0), progress=False)
    assert short.path != first.path and short.features.shape == (6 * 15, 87, 13)
    assert FeatureStore.open(first.path).features.shape == (18, 431, 13)
    with pytest.raises(StoreError, match="several feature stores"):
        resolve_store(out)


def test_changed_data_is_refused_without_overwrite(small_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(small_dataset, out, progress=False, log=lambda _: None)
    touched = small_dataset / "blues" / "blues.00001.wav"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    with pytest.raises(StoreError, match="same 8 files, but some changed size or modification"):
        prepare(small_dataset, out, progress=False, log=lambda _: None)
    (small_dataset / "metal" / "metal.00002.wav").unlink()
    with pytest.raises(StoreError, match=r"other data .*: 0 files added and 1 removed"):
        prepare(small_dataset, out, progress=False, log=lambda _: None)
    store = prepare(small_dataset, out, overwrite=True, progress=False, log=lambda _: None)
    assert store.features.shape == (15, 431, 13)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_incomplete_store_is_never_read_as_valid(small_dataset: Path, tmp_path: Path) -> None:
    store = prepare(small_dataset, tmp_path / "out", progress=False, log=lambda _: None)
    broken = tmp_path / "broken"
    shutil.copytree(store.path, broken)
    (broken / "store.json").unlink()
    with pytest.raises(StoreError, match="not a complete feature store"):
        FeatureStore.open(broken)
    shutil.copytree(store.path, tmp_path / "short")
    np.save(tmp_path / "short" / "labels.npy", np.zeros(3, np.int32))
    with pytest.raises(StoreError, match=r"labels\.npy"):
        FeatureStore.open(tmp_path / "short")


def test_prepare_real_gtzan_mini(gtzan_mini: Path, tmp_path: Path) -> None:
    store = prepare(gtzan_mini, tmp_path / "out", progress=False, log=lambda _: None)
    assert store.features.shape == (30, 431, 13)
    assert np.bincount(store.labels).tolist() == [3] * 10
    for track in store.manifest.tracks:
        assert track.duration == pytest.approx(sf.info(track.path).duration, abs=1e-3)


def test_cli_prepare(small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli-out"
    code = main(
        [
            "prepare",
            "--data-dir",
            str(small_dataset),
            "--out",
            str(out),
            "--segment-seconds",
            "5",
            "--no-progress",
        ]
    )
    assert code == 0
    store = FeatureStore.open(resolve_store(out))
    assert store.config.segment_seconds == 5.0 and store.features.shape == (36, 216, 13)
    assert "blues.broken.wav" in capsys.readouterr().out
    assert main(["prepare", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert (
        main(["prepare", "--data-dir", str(small_dataset), "--out", str(out), "--n-fft", "0"]) == 2
    )
    assert "n_fft" in capsys.readouterr().err


def test_atomic_writes_get_ordinary_permissions(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    (tmp_path / "b.json").write_text("{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (
        tmp_path / "b.json"
    ).stat().st_mode & 0o777
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# --- validation at open, digests ---------------------------------------------------------------


@pytest.fixture(scope="module")
def built_store(synthetic_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of ``small_dataset`` (tracks: blues 0-2, blues.broken 3, metal 4-6, metal.text 7)
    built once; tests damage copies of it."""
    root = tmp_path_factory.mktemp("built")
    data = _small_dataset(synthetic_small, root / "data")
    return prepare(data, root / "out", progress=False, log=lambda _: None).path


@pytest.fixture
def store_copy(built_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(built_store, copy)
    return copy


def _edit_json(name: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(store: Path) -> None:
        data = json.loads((store / name).read_text())
        edit(data)
        (store / name).write_text(json.dumps(data))

    return apply


def _edit_array(name: str, edit: Callable[[np.ndarray], np.ndarray | None]) -> Callable:
    def apply(store: Path) -> None:
        values = np.load(store / f"{name}.npy")
        edited = edit(values)
        np.save(store / f"{name}.npy", values if edited is None else edited)

    return apply


SHARD = "features/0000-00000.npy"  # the one feature shard of the stores of these tests


def _edit_shard(edit: Callable[[np.ndarray], np.ndarray]) -> Callable:
    def apply(store: Path) -> None:
        np.save(store / SHARD, edit(np.load(store / SHARD)))

    return apply


def _set(row: int, value: int) -> Callable[[np.ndarray], None]:
    def edit(values: np.ndarray) -> None:
        values[row] = value

    return edit


def _truncate(name: str) -> Callable[[Path], None]:
    def apply(store: Path) -> None:
        text = (store / name).read_text()
        (store / name).write_text(text[: len(text) // 2])

    return apply


DAMAGES = {
    "label-out-of-range": (
        _edit_array("labels", _set(5, 99)),
        r"labels\.npy: label 99 at row 5 is outside the 2 genres",
    ),
    "label-not-its-tracks-genre": (
        _edit_array("labels", _set(0, 1)),
        r"labels\.npy: label 1 \(metal\) at row 0 differs from its track 0 \(blues\.00000\), "
        r"of genre 0 \(blues\)",
    ),
    "track-out-of-range": (
        _edit_array("tracks", _set(2, 1000)),
        r"tracks\.npy: track index 1000 at row 2 is outside the 8 tracks of manifest\.json",
    ),
    "negative-track": (
        _edit_array("tracks", _set(2, -1)),
        r"tracks\.npy: track index -1 at row 2 is outside",
    ),
    "track-that-was-skipped": (
        _edit_array("tracks", _set(1, 3)),
        r"tracks\.npy: row 1 points at track 3 \(blues\.broken\), whose status in manifest\.json "
        r"is 'error', not 'ok'",
    ),
    "negative-position": (
        _edit_array("positions", _set(4, -1)),
        r"positions\.npy: position -1 at row 4 of track 1 \(blues\.00001\) is negative",
    ),
    "position-past-the-track": (
        _edit_array("positions", _set(4, 7)),
        r"positions\.npy: position 7 at row 4 .* not below its 3 segments",
    ),
    "labels-int64": (
        _edit_array("labels", lambda v: v.astype(np.int64)),
        r"labels\.npy is int64, not int32",
    ),
    "features-float64": (
        _edit_shard(lambda v: v.astype(np.float64)),
        r"features/0000-00000\.npy holds float64 \(18, 431, 13\), where store\.json lists "
        r"float32 \(18, 431, 13\); prepare it again with --overwrite",
    ),
    "features-wrong-frames": (
        _edit_shard(lambda v: v[:, :400]),
        r"0000-00000\.npy holds float32 \(18, 400, 13\), where store\.json lists float32 "
        r"\(18, 431, 13\)",
    ),
    "features-cut-short": (
        lambda s: os.truncate(s / SHARD, (s / SHARD).stat().st_size - 4),
        r"0000-00000\.npy is cut short: \d+ bytes, where its 18 rows need \d+",
    ),
    "features-missing": (
        lambda s: (s / SHARD).unlink(),
        r"features/0000-00000\.npy cannot be read \(No such file or directory\)",
    ),
    "features-not-npy": (
        lambda s: (s / SHARD).write_bytes(b"not an array"),
        r"0000-00000\.npy is not a \.npy array file",
    ),
    "shards-rows-differ": (
        _edit_json("store.json", lambda d: d["shards"][0].update(rows=17)),
        r"store\.json: its shards hold 17 rows, but it says 18 segments",
    ),
    "shard-outside-features": (
        _edit_json("store.json", lambda d: d["shards"][0].update(file="../x.npy")),
        r"store\.json: shard 0 names '\.\./x\.npy', not a features/ file",
    ),
    "shards-not-a-list": (
        _edit_json("store.json", lambda d: d.update(shards="all")),
        r"store\.json: shards is 'all', not a list of feature shards",
    ),
    "manifest-truncated": (_truncate("manifest.json"), r"manifest\.json is not readable JSON"),
    "manifest-missing": (lambda s: (s / "manifest.json").unlink(), r"manifest\.json is missing"),
    "manifest-not-an-object": (
        lambda s: (s / "manifest.json").write_text("[]"),
        r"manifest\.json holds a list, not a JSON object",
    ),
    "manifest-no-tracks": (
        _edit_json("manifest.json", lambda d: d.pop("tracks")),
        r"manifest\.json has no 'tracks'",
    ),
    "manifest-status-not-text": (
        _edit_json("manifest.json", lambda d: d["tracks"][2].update(status=1)),
        r"manifest\.json: track 2 has status 1, not a str",
    ),
    "manifest-unknown-genre": (
        _edit_json("manifest.json", lambda d: d["tracks"][0].update(genre="jazz")),
        r"manifest\.json: track 0 \(blues\.00000\) has genre 'jazz', not one of its genres",
    ),
    "store-json-truncated": (_truncate("store.json"), r"store\.json is not readable JSON"),
    "store-json-not-an-object": (
        lambda s: (s / "store.json").write_text('"a store"'),
        r"store\.json holds a str, not a JSON object",
    ),
    "store-json-version-3": (
        _edit_json("store.json", lambda d: d.update(version=3)),
        r"store\.json: store format version 3, expected one of 1, 2",
    ),
    "store-json-no-segments": (
        _edit_json("store.json", lambda d: d.pop("segments")),
        r"store\.json has no 'segments'",
    ),
    "store-json-segments-text": (
        _edit_json("store.json", lambda d: d.update(segments="18")),
        r"store\.json: segments is '18', not a whole number",
    ),
    "store-json-bad-config": (
        _edit_json("store.json", lambda d: d["feature_config"].update(n_fft=0)),
        r"store\.json: feature_config is not a valid config .*n_fft",
    ),
    "genres-differ": (
        _edit_json("store.json", lambda d: d.update(genres=["blues", "rock"])),
        r"genres of store\.json \(blues, rock\) and of manifest\.json \(blues, metal\) differ",
    ),
    "digests-not-a-mapping": (
        _edit_json("store.json", lambda d: d.update(sha256="abc")),
        r"store\.json: sha256 is 'abc', not file name -> hex digest",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_open_names_each_inconsistency(store_copy: Path, damage: str) -> None:
    apply, words = DAMAGES[damage]
    FeatureStore.open(store_copy)  # whole before the damage
    apply(store_copy)
    with pytest.raises(StoreError, match=words) as caught:
        FeatureStore.open(store_copy)
    assert str(caught.value).startswith(f"{store_copy}: ")
    assert "\n" not in str(caught.value)


def _flip_byte(file: Path, offset: int) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x01
    file.write_bytes(bytes(data))


def test_a_flipped_byte_is_caught_by_open_and_verify(store_copy: Path) -> None:
    info = json.loads((store_copy / "store.json").read_text())
    assert sorted(info["sha256"]) == ["labels.npy", "positions.npy", "tracks.npy"]
    assert [s["file"] for s in info["shards"]] == [SHARD]
    assert info["shards"][0]["sha256"] == file_digest(store_copy / SHARD)
    assert verify_store(store_copy).verified == ("labels.npy", "tracks.npy", "positions.npy", SHARD)
    _flip_byte(store_copy / SHARD, (store_copy / SHARD).stat().st_size - 5)
    expected = (
        rf"^{store_copy}: features/0000-00000\.npy does not match its digest in store\.json "
        r"\(corrupt or altered\); prepare it again with --overwrite$"
    )
    with pytest.raises(StoreError, match=expected):
        FeatureStore.open(store_copy)
    with pytest.raises(StoreError, match=expected):
        verify_store(store_copy)


def test_small_arrays_are_always_verified_features_only_below_the_limit(
    store_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "STORE_VERIFY_BYTES", 0)  # as if the store were huge
    assert FeatureStore.open(store_copy).verified == ("labels.npy", "tracks.npy", "positions.npy")
    _flip_byte(store_copy / SHARD, (store_copy / SHARD).stat().st_size - 5)
    FeatureStore.open(store_copy)  # too big to hash at every open ...
    with pytest.raises(StoreError, match=r"0000-00000\.npy does not match its digest"):
        verify_store(store_copy)  # ... but the check command always does
    positions = np.load(store_copy / "positions.npy")
    positions[[0, 1]] = positions[[1, 0]]  # still valid positions: only the digest can tell
    np.save(store_copy / "positions.npy", positions)
    with pytest.raises(StoreError, match=r"positions\.npy does not match its digest"):
        FeatureStore.open(store_copy)


def test_a_store_without_digests_opens_as_before(store_copy: Path) -> None:
    """Stores written before digests were recorded: the other checks only."""
    _edit_json("store.json", lambda d: d.pop("sha256"))(store_copy)
    assert FeatureStore.open(store_copy).verified == (SHARD,)  # a shard's digest is its index's
    features = np.load(store_copy / SHARD)
    features[11, 200, 3] = np.inf
    np.save(store_copy / SHARD, features)
    with pytest.raises(StoreError, match=r"0000-00000\.npy does not match its digest"):
        FeatureStore.open(store_copy)
    _edit_json(
        "store.json", lambda d: d["shards"][0].update(sha256=file_digest(store_copy / SHARD))
    )(store_copy)
    assert len(FeatureStore.open(store_copy)) == 18
    with pytest.raises(StoreError, match=r"features: row 11 \(track metal\.00000\) holds"):
        verify_store(store_copy)


def test_prepare_refuses_a_corrupt_store_until_overwrite(store_copy: Path, tmp_path: Path) -> None:
    manifest = json.loads((store_copy / "manifest.json").read_text())
    out = tmp_path / "out"
    final = store_path(out, FeatureConfig())
    shutil.copytree(store_copy, final)
    _flip_byte(final / SHARD, 500)
    with pytest.raises(StoreError, match="prepare it again with --overwrite"):
        prepare(manifest["root"], out, progress=False, log=lambda _: None)
    store = prepare(manifest["root"], out, overwrite=True, progress=False, log=lambda _: None)
    assert store.verified == ("labels.npy", "tracks.npy", "positions.npy", SHARD)


# --- prepare: non-finite features, argument checks ---------------------------------------------


def _tone_folder(root: Path) -> Path:
    """Two genres of two 11 s sine tones each, and a float WAV whose samples are ~1e18."""
    rate = 22050
    t = np.arange(11 * rate) / rate
    for g, genre in enumerate(("blues", "metal")):
        (root / genre).mkdir(parents=True)
        for k in range(2):
            tone = 0.3 * np.sin(2 * np.pi * (220 + 110 * g + 30 * k) * t)
            sf.write(root / genre / f"{genre}.{k:05d}.wav", tone, rate, subtype="PCM_16")
    huge = (1e18 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    sf.write(root / "metal" / "metal.huge.wav", huge, rate, subtype="FLOAT")
    return root


def test_prepare_skips_a_file_whose_features_are_not_finite(tmp_path: Path) -> None:
    data = _tone_folder(tmp_path / "data")
    messages: list[str] = []
    store = prepare(data, tmp_path / "out", batch_size=1, progress=False, log=messages.append)
    huge = next(t for t in store.manifest.tracks if t.id == "metal.huge")
    assert huge.status == "error"
    assert huge.error == (
        "features are not finite (NaN or infinite values; samples up to 1.0e+18 are not "
        "audio-scale)"
    )
    assert [m for m in messages if "metal.huge.wav" in m] == [f"skipped {huge.path}: {huge.error}"]
    assert np.isfinite(store.features).all() and store.features.shape == (4, 431, 13)
    ok = [i for i, t in enumerate(store.manifest.tracks) if t.status == "ok"]
    assert store.tracks.tolist() == ok and len(ok) == 4
    assert verify_store(store.path).verified[-1] == SHARD


def test_sharded_prepare_skips_non_finite_and_records_digests(tmp_path: Path) -> None:
    data = _tone_folder(tmp_path / "data")
    config = FeatureConfig(segment_seconds=5.0)
    for index in (1, 0):
        extract_shard(data, tmp_path / "out", config, index, 2, batch_size=3)
    merged = merge_shards(data, tmp_path / "out", config, 2, log=lambda _: None)
    statuses = {t.id: t.status for t in merged.manifest.tracks}
    assert statuses.pop("metal.huge") == "error" and set(statuses.values()) == {"ok"}
    assert np.isfinite(merged.features).all() and len(merged) == 8
    assert set(merged.info["sha256"]) == {f"{n}.npy" for n in ARRAYS[1:]}
    assert [s["file"] for s in merged.info["shards"]] == [
        "features/0000-00000.npy",
        "features/0001-00000.npy",
    ]
    assert len(verify_store(merged.path).verified) == 5


def test_merging_refuses_a_missing_shard_and_writes_no_store(tmp_path: Path) -> None:
    data = _tone_folder(tmp_path / "data")
    config = FeatureConfig(segment_seconds=5.0)
    written = extract_shard(data, tmp_path / "out", config, 0, 2, batch_size=3)
    missing = written.with_name("part-00001-of-00002.npz")
    with pytest.raises(StoreError) as caught:
        merge_shards(data, tmp_path / "out", config, 2, log=lambda _: None)
    assert str(caught.value) == f"{missing}: shard missing; did every process finish extracting?"
    assert not store_path(tmp_path / "out", config).exists() and written.is_file()


@pytest.mark.parametrize(
    ("setting", "value", "shown"),
    [
        ("batch_size", 0, "0"),
        ("workers", 0, "0"),
        ("workers", -2, "-2"),
        ("batch_size", 1.5, "1.5"),
        ("batch_size", 4097, "4097"),
        # issue 35, item 21: a traceback, and an empty --out left behind
        ("batch_size", 99999999999999999999, "99999999999999999999"),
        ("shard_segments", 1 << 30, str(1 << 30)),
    ],
)
def test_prepare_refuses_bad_counts_before_touching_a_folder(
    tmp_path: Path, setting: str, value: float, shown: str
) -> None:
    out = tmp_path / "out"
    pattern = rf"^prepare setting {setting}={re.escape(shown)} .*must be a count from 1 to "
    with pytest.raises(ConfigError, match=pattern):
        prepare(tmp_path / "no-such-data", out, progress=False, **{setting: value})
    assert not out.exists()


# --- feature shards --------------------------------------------------------------------------


def test_sharded_features_index_like_the_array_they_hold(tmp_path: Path) -> None:
    from genre_jax.store_shards import ShardedFeatures, ShardWriter

    rows = np.random.default_rng(0).normal(size=(23, 5, 3)).astype(np.float32)
    writer = ShardWriter(tmp_path, "0000", 4)
    for start in (0, 3, 4, 11, 12, 20):  # uneven pieces across shard boundaries
        stop = {0: 3, 3: 4, 4: 11, 11: 12, 12: 20, 20: 23}[start]
        writer.add(rows[start:stop])
    shards = writer.close()
    assert [s["rows"] for s in shards] == [4, 4, 4, 4, 4, 3]
    assert all(s["sha256"] == file_digest(tmp_path / s["file"]) for s in shards)
    view = ShardedFeatures(tmp_path, shards, (5, 3))
    assert view.shape == rows.shape and len(view) == 23 and view.dtype == np.float32
    picks = [
        5,
        -1,
        slice(None),
        slice(2, 19, 3),
        slice(None, None, -2),
        [22, 0, 7, 7, 8, 9, 3],
        np.array([[1, 2], [20, 4]]),
        np.arange(23) % 3 == 0,
        (slice(3, 9), 2),
        ([4, 1], slice(None), 0),
        (7, 1, 2),
        np.array([], np.int64),
    ]
    for key in picks:
        np.testing.assert_array_equal(view[key], rows[key], err_msg=repr(key))
    np.testing.assert_array_equal(np.asarray(view), rows)
    for bad in (23, -24, [0, 23], np.ones(5, bool)):
        with pytest.raises(IndexError):
            view[bad]
    import pickle

    np.testing.assert_array_equal(pickle.loads(pickle.dumps(view))[[1, 9]], rows[[1, 9]])


def test_shard_size_changes_no_row(tmp_path: Path, synthetic_small: Path) -> None:
    config = FeatureConfig(segment_seconds=5.0)
    data = synthetic_small / "genres_original"
    quiet = {"progress": False, "log": lambda _: None}
    one = prepare(data, tmp_path / "one", config, shard_segments=10_000, **quiet)
    many = prepare(data, tmp_path / "many", config, shard_segments=7, **quiet)
    assert len(one.info["shards"]) == 1 and len(many.info["shards"]) == -(-len(many) // 7)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(many, name)[:], getattr(one, name)[:], err_msg=name)
    assert many.manifest.to_json() == one.manifest.to_json()
    reused = prepare(data, tmp_path / "many", config, **quiet)  # other shards, the same store
    assert reused.info["shards"] == many.info["shards"]


def test_a_store_of_format_1_opens_and_reads_as_before(store_copy: Path) -> None:
    """Stores written before feature shards: every feature in one memory-mapped features.npy,
    its digest in ``sha256``, ``version`` 1."""
    sharded = FeatureStore.open(store_copy)
    features = np.asarray(sharded.features[:])
    np.save(store_copy / "features.npy", features)
    shutil.rmtree(store_copy / "features")
    info = json.loads((store_copy / "store.json").read_text())
    info.pop("shards")
    info["version"] = 1
    info["sha256"]["features.npy"] = file_digest(store_copy / "features.npy")
    (store_copy / "store.json").write_text(json.dumps(info))
    old = verify_store(store_copy)
    assert isinstance(old.features, np.memmap)
    assert old.verified == tuple(f"{n}.npy" for n in ARRAYS)
    np.testing.assert_array_equal(old.features, features)
    for name in ARRAYS[1:]:
        np.testing.assert_array_equal(getattr(old, name), getattr(sharded, name))
    _flip_byte(store_copy / "features.npy", (store_copy / "features.npy").stat().st_size - 5)
    with pytest.raises(StoreError, match=r"features\.npy does not match its digest"):
        FeatureStore.open(store_copy)


def test_a_prepare_killed_while_building_leaves_nothing_a_rerun_keeps(
    synthetic_small: Path, tmp_path: Path
) -> None:
    """Issue 35, item 23: ``kill -9`` during ``prepare`` left its hidden
    ``.<store>.tmp-XXXX/`` folder, which no rerun removed. A rerun removes the folders of
    processes of this machine that are gone, and leaves a running process's."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "genre_jax.cli", "prepare", "--data-dir"]
    command += [str(synthetic_small), "--out", str(out), "--no-progress", "--workers", "1"]
    process = subprocess.Popen(
        command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    final = store_path(out, FeatureConfig())
    staged: list[Path] = []
    deadline = time.monotonic() + 300
    while not staged and process.poll() is None and time.monotonic() < deadline:
        staged = list(out.glob(f".{final.name}.tmp-*"))
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert staged, "the store's staging folder never appeared before the process ended"
    assert all(path.is_dir() for path in staged)  # left behind by the killed process
    running = out / f".{final.name}.tmp-{os.getpid()}@{socket.gethostname()}.abcd1234"
    running.mkdir()  # as this (running) process's own staging folder would be named
    messages: list[str] = []
    store = prepare(synthetic_small, out, progress=False, log=messages.append)
    assert sorted(out.glob(".*")) == [running]
    assert any("left by an earlier prepare that was killed" in m for m in messages)
    assert len(store) and store.path == final
