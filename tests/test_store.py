"""The feature store and `genre-jax prepare`: contents, bad files, reuse, separation by config."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from genre_jax.audio import load_audio
from genre_jax.cli import main
from genre_jax.config import FeatureConfig
from genre_jax.store import FeatureStore, StoreError, prepare, resolve_store, store_path


@pytest.fixture
def small_dataset(synthetic_small: Path, tmp_path: Path) -> Path:
    """Two synthetic genres, 3 tracks each, plus a truncated wav and a text file named .wav."""
    root = tmp_path / "data"
    for genre in ("blues", "metal"):
        shutil.copytree(synthetic_small / "genres_original" / genre, root / genre)
    good = (root / "blues" / "blues.00000.wav").read_bytes()
    (root / "blues" / "blues.broken.wav").write_bytes(good[: len(good) // 3])
    (root / "metal" / "metal.text.wav").write_text("RIFF? no, just text pretending to be audio\n")
    return root


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
    import os

    from genre_jax.fileio import atomic_write_json

    atomic_write_json(tmp_path / "a.json", {"x": 1})
    (tmp_path / "b.json").write_text("{}")
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == (
        tmp_path / "b.json"
    ).stat().st_mode & 0o777
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
