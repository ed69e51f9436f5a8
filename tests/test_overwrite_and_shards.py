"""Issue 35, items 14, 15 and 22: what ``--overwrite`` may delete (:data:`LAYOUTS`), a store of
many shards under a small descriptor limit, windows in bounded memory and the window hop's
range, and a FIFO in place of a store's file or a JSON file."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile

from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.fileio import (
    JSONFileError,
    NotRegularFileError,
    read_json,
    read_json_object,
    require_regular_file,
)
from genre_jax.models.svm import SVMSettings
from genre_jax.output_dirs import LAYOUTS, MARKER, OutputDirError, dir_kind, foreign_entries
from genre_jax.runner import train_run
from genre_jax.store_shards import ShardedFeatures, ShardError, ShardWriter
from tests.conftest import child_env

QUIET = {"progress": False, "log": lambda _: None}
SVM = TrainConfig(model="svm", time_flip=False, split="kfold", folds=2, val_per_genre=0)


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic genres, 4 songs of 6 s each."""
    from genre_jax.datasets import generate_synthetic

    out = tmp_path_factory.mktemp("songs") / "data"
    generate_synthetic(out, tracks_per_genre=4, seconds=6.0, seed=0)
    return out


@pytest.fixture(scope="module")
def store(songs: Path, tmp_path_factory: pytest.TempPathFactory):
    """The seed's MFCCs of :func:`songs` in 2 s segments (120), 7 rows a shard."""
    from genre_jax.prepare import prepare

    out = tmp_path_factory.mktemp("overwrite") / "features"
    return prepare(songs, out, FeatureConfig(segment_seconds=2.0), shard_segments=7, **QUIET)


@pytest.fixture(scope="module")
def svm_run(store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("svm") / "run"
    train_run(store.path, run, SVM, **QUIET)
    return run


def run_guarded(code: str, *args: str) -> str:
    """Run ``code`` in a fresh interpreter (a FIFO that blocks a read would block this one
    for good: the process is given up after five minutes instead) and return its output."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("blocked: a FIFO was opened for reading")
    assert done.returncode == 0, done.stderr
    return done.stdout


# Item 14: --overwrite deletes only what genre-jax wrote.


def test_overwrite_refuses_a_run_folder_holding_the_users_files(store, tmp_path: Path) -> None:
    """Item 14: `train --overwrite` deleted notes.txt and analysis.ipynb put in a run's
    folder. Now the run is refused, naming them, and nothing is deleted; once they are moved
    out, it is replaced (a killed atomic write's temporary file and a checkpoint step cut short
    are genre-jax's own, and go with it)."""
    run = tmp_path / "run"
    train_run(store.path, run, SVM, **QUIET)
    (run / "notes.txt").write_text("mine")
    (run / "analysis.ipynb").write_text("{}")
    (run / "plots").mkdir(exist_ok=True)
    (run / "plots" / "mine.png").write_bytes(b"png")
    (run / "tensorboard").symlink_to(tmp_path)  # a link is never genre-jax's
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(OutputDirError) as refused:
        train_run(store.path, run, SVM, overwrite=True, **QUIET)
    message = str(refused.value)
    assert "\n" not in message
    assert "analysis.ipynb, notes.txt, plots/mine.png, tensorboard" in message
    assert "--overwrite deletes only what genre-jax wrote" in message
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert (run / "notes.txt").read_text() == "mine"

    for mine in ("notes.txt", "analysis.ipynb", "plots/mine.png", "tensorboard"):
        (run / mine).unlink()
    (run / ".history.json.k2j4l5m6.tmp").write_text("[")  # atomic_writer's, killed
    (run / "checkpoints" / "latest" / "3.orbax-checkpoint-tmp-17").mkdir(parents=True)
    (run / "checkpoints" / "latest" / "3.orbax-checkpoint-tmp-17" / "x").write_text("")
    train_run(store.path, run, SVM, overwrite=True, **QUIET)
    assert not (run / "checkpoints").exists()
    assert not (run / ".history.json.k2j4l5m6.tmp").exists()
    assert dir_kind(run) == "run"


def test_crossval_overwrite_refuses_a_users_file_in_a_fold(store, tmp_path: Path) -> None:
    """Item 14: `crossval --overwrite` deleted fold-0/mine.txt. Now it is named and kept, and
    the experiment is replaced once it is moved out (its feature store is kept)."""
    from genre_jax.crossval import crossval

    cv = tmp_path / "cv"
    crossval(store.path, cv, SVM, **QUIET)
    (cv / "fold-0" / "mine.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"cross-validation folder also holds fold-0/mine"):
        crossval(store.path, cv, SVM, overwrite=True, **QUIET)
    assert (cv / "fold-0" / "mine.txt").read_text() == "mine"
    assert (cv / "report.json").is_file()
    (cv / "fold-0" / "mine.txt").unlink()
    (cv / "fold-1" / "scratch").mkdir()  # a folder of the user's inside a fold
    with pytest.raises(OutputDirError, match=r"also holds fold-1/scratch/;"):
        crossval(store.path, cv, SVM, overwrite=True, **QUIET)
    (cv / "fold-1" / "scratch").rmdir()
    crossval(store.path, cv, SVM, overwrite=True, **QUIET)
    assert (cv / "report.json").is_file()


def test_an_ensemble_crossval_is_all_genre_jax_s_own(store, tmp_path: Path) -> None:
    """Every file an ensemble's cross-validation writes (each fold an ensemble folder holding
    its members' runs), and what evaluating a fold over windows adds, is in :data:`LAYOUTS`:
    it is replaced whole; a file put in a member's folder is refused."""
    from genre_jax.crossval import crossval
    from genre_jax.evaluate import evaluate_run

    cv = tmp_path / "cv"
    members = [SVM, dataclasses.replace(SVM, model_settings=SVMSettings(c=2.0))]
    crossval(store.path, cv, members, tensorboard=True, **QUIET)
    evaluate_run(cv / "fold-1", window_hop=1.0)
    assert dir_kind(cv / "fold-1") == "ensemble"
    assert foreign_entries(cv, LAYOUTS["crossval"], keep=("features",)) == []
    (cv / "fold-1" / "svm-0" / "mine.txt").write_text("mine")
    assert foreign_entries(cv, LAYOUTS["crossval"]) == ["fold-1/svm-0/mine.txt"]
    with pytest.raises(OutputDirError, match=r"also holds fold-1/svm-0/mine.txt;"):
        crossval(store.path, cv, members, overwrite=True, **QUIET)
    (cv / "fold-1" / "svm-0" / "mine.txt").unlink()
    crossval(store.path, cv, members, overwrite=True, **QUIET)
    assert not (cv / "fold-1" / "report-hop1s.json").exists()


def test_a_network_run_with_every_output_is_all_genre_jax_s_own(store, tmp_path: Path) -> None:
    """A CNN run with all three checkpoint series, event files, the training curves and
    reports of a window evaluation holds nothing outside its layout (so ``--overwrite`` of
    such a run is never refused for a file genre-jax wrote itself)."""
    from genre_jax.evaluate import evaluate_run

    run = tmp_path / "cnn"
    config = dataclasses.replace(
        SVM, model="cnn", model_settings=None, epochs=1, patience=0, val_per_genre=1
    )
    config = dataclasses.replace(config, batch_size=8, feed="stream", checkpoint_steps=2)
    train_run(store.path, run, config, tensorboard=True, **QUIET)
    evaluate_run(run, window_hop=1.0)
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"latest", "best", "partial"}
    assert (run / "tensorboard").is_dir() and (run / "plots" / "training_curves.png").is_file()
    assert foreign_entries(run, LAYOUTS["run"]) == []


# Item 15: a store of many shards under a small descriptor limit; windows in bounded memory.

READ_UNDER_LIMIT = """
import json, os, pickle, resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[2])))
from genre_jax.store_shards import OPEN_SHARDS, ShardedFeatures
folder = sys.argv[1]
shards = json.loads(open(os.path.join(folder, "shards.json")).read())
features = ShardedFeatures(folder, shards, (2, 3))
every = features[:]
picked = features[np.random.default_rng(0).permutation(len(features))]
again = pickle.loads(pickle.dumps(features))[::-1]
print(json.dumps({
    "sums": [float(every.sum()), float(picked.sum()), float(again.sum())],
    "rows": [int(every[i, 0, 0]) for i in (0, 1, len(every) - 1)],
    "open": len(features._fds),
    "limit": OPEN_SHARDS,
}))
"""


def write_shards(folder: Path, count: int) -> list[dict]:
    """``count`` shards of one ``(2, 3)`` row each, row ``i`` filled with ``i``."""
    writer = ShardWriter(folder, "0000", 1)
    for i in range(count):
        writer.add(np.full((1, 2, 3), i, np.float32))
    shards = writer.close()
    (folder / "shards.json").write_text(json.dumps(shards))
    return shards


def test_a_store_of_more_shards_than_descriptors_is_read(tmp_path: Path) -> None:
    """Item 15: one descriptor was kept open per shard, so reading every row of a store of
    600 shards under a limit of 200 descriptors failed with "Too many open files"."""
    count = 600
    write_shards(tmp_path, count)
    result = json.loads(run_guarded(READ_UNDER_LIMIT, str(tmp_path), "200"))
    total = 6.0 * sum(range(count))
    assert result["sums"] == [total, total, total]
    assert result["rows"] == [0, 1, count - 1]
    assert result["open"] <= result["limit"]


def test_shards_read_from_many_threads_with_few_open(tmp_path: Path, monkeypatch) -> None:
    """Several threads reading at once, with at most 3 files open: every row is right and no
    file is closed while another thread reads it."""
    from genre_jax import store_shards

    monkeypatch.setattr(store_shards, "OPEN_SHARDS", 3)
    shards = write_shards(tmp_path, 40)
    features = ShardedFeatures(tmp_path, shards, (2, 3))
    expected = np.repeat(np.arange(40, dtype=np.float32), 6).reshape(40, 2, 3)
    errors: list[BaseException] = []

    def read(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(50):
                index = rng.integers(0, 40, size=9)
                np.testing.assert_array_equal(features[index], expected[index])
        except BaseException as error:  # reported below, from the main thread
            errors.append(error)

    threads = [threading.Thread(target=read, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len(features._fds) <= 3
    copy = pickle.loads(pickle.dumps(features))
    np.testing.assert_array_equal(copy[:], expected)
    features.close()
    assert not features._fds


@pytest.fixture(scope="module")
def reader(svm_run: Path):
    from genre_jax.inference import load_predictor

    return load_predictor(svm_run).readers[0]


def windows_at_once(reader, path: str, hop_seconds: float) -> np.ndarray:
    """The windows' probabilities as they were computed before: every window of the song
    copied out at once and scored in one call."""
    from genre_jax.audio import load_audio
    from genre_jax.segment_rows import score_segments
    from genre_jax.windows import windows

    config = reader.feature_config
    audio = load_audio(path, config.sample_rate)
    cut = windows(audio, config.segment_samples, max(1, round(hop_seconds * config.sample_rate)))
    return score_segments(np.ascontiguousarray(cut), reader)


def test_windows_in_bounded_calls_give_the_same_probabilities(
    reader, songs: Path, monkeypatch
) -> None:
    """Item 15: windows scored a few at a time (here calls of at most 5 windows' audio, so a
    song's windows are split over calls and calls hold several songs) have the probabilities
    of all of a song's windows at once."""
    from genre_jax import windows as windowing

    paths = [str(p) for p in sorted(songs.rglob("*.wav"))[:3]]
    monkeypatch.setattr(windowing, "BATCH_BYTES", 5 * reader.feature_config.segment_samples * 4)
    rows = windowing._window_rows(reader, paths, 0.25)
    for path, got in zip(paths, rows, strict=True):
        expected = windows_at_once(reader, path, 0.25)
        assert got.shape == expected.shape == (17, 10)  # 6 s songs: starts 0, 0.25 ... 4 s
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_windows_of_a_long_song_at_a_short_hop_use_bounded_memory(
    reader, tmp_path: Path, monkeypatch
) -> None:
    """Item 15: every window of a song was copied out at once (a one-hour song at 0.5 s: 6 GB).
    A 20 s song at a 0.02 s hop has 900 windows, 159 MB of them; its windows are now
    scored holding a few MB (traced allocations) with the probabilities of before."""
    from genre_jax import windows as windowing

    monkeypatch.setattr(windowing, "BATCH_BYTES", 4 << 20)
    rate = reader.feature_config.sample_rate
    song = tmp_path / "long.wav"
    noise = 0.1 * np.random.default_rng(0).standard_normal(20 * rate)
    soundfile.write(song, noise.astype(np.float32), rate)
    all_windows = 901 * reader.feature_config.segment_samples * 4
    tracemalloc.start()
    try:
        (rows,) = windowing._window_rows(reader, [str(song)], 0.02)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(rows) == 901
    assert peak < all_windows / 4, f"{peak / 2**20:.0f} MB at the peak"
    np.testing.assert_allclose(rows, windows_at_once(reader, str(song), 0.02), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("hop", "reason"),
    [
        (float("inf"), "not a finite number"),
        (float("nan"), "not a finite number"),
        ("1", "not a finite number"),
        (0.0001, "below 0.01 s"),
        (0.0, "below 0.01 s"),
        (-1.0, "below 0.01 s"),
        (1e300, "above 86400 s"),
    ],
)
def test_a_window_hop_out_of_range_is_one_line(hop: object, reason: str) -> None:
    """Item 15: `--window-hop inf` was an OverflowError, `--window-hop 0.0001` asked for
    73 GiB; now each is one line naming window_hop, the reason and the range."""
    from genre_jax.windows import check_hop

    with pytest.raises(ConfigError) as refused:
        check_hop(hop)
    assert str(refused.value).startswith(f"evaluation setting window_hop={hop}: {reason}")
    assert str(refused.value).endswith("it must be from 0.01 to 86400 s")
    for fine in (0.01, 0.5, 3, 86400.0):
        check_hop(fine)


# Item 22: a FIFO in place of a store's file or a JSON file.

FIFO_CHECKS = """
import json, sys
from pathlib import Path
from genre_jax.fileio import JSONFileError, NotRegularFileError, read_json_object
from genre_jax.output_dirs import dir_kind
from genre_jax.store import verify_store
from genre_jax.store_checks import StoreError
out = {}
try:
    verify_store(sys.argv[1])
except StoreError as error:
    out["store"] = str(error)
try:
    read_json_object(sys.argv[2])
except JSONFileError as error:
    out["json_object"] = str(error)
out["marker"] = dir_kind(Path(sys.argv[2]).parent)
print(json.dumps(out))
"""


def test_a_fifo_in_place_of_a_shard_or_a_json_file_is_refused(store, tmp_path: Path) -> None:
    """Item 22: a FIFO in place of features/0000-00003.npy made `check --store` (and
    `evaluate --features`) wait forever. Now the store is refused naming the shard; a FIFO in
    place of a JSON file read through read_json_object (store.json, manifest.json, a run's
    config.json, a folder's marker) is refused the same way."""
    import shutil

    copy = tmp_path / store.path.name
    shutil.copytree(store.path, copy)
    shard = copy / "features" / "0000-00003.npy"
    shard.unlink()
    os.mkfifo(shard)
    marker = tmp_path / "run" / MARKER
    marker.parent.mkdir()
    os.mkfifo(marker)
    result = json.loads(run_guarded(FIFO_CHECKS, str(copy), str(marker)))
    assert result["store"] == (
        f"{copy}: features/0000-00003.npy is a FIFO, not a regular file; prepare it again "
        "with --overwrite"
    )
    assert result["json_object"] == "is a FIFO, not a regular file"
    assert result["marker"] is None


def test_a_shard_swapped_for_a_fifo_after_opening_is_refused(tmp_path: Path) -> None:
    """A shard replaced by a FIFO after the store was opened (its file closed since, as the
    least recently read) is refused when next read, not waited on."""
    code = """
import json, os, sys
from pathlib import Path
from genre_jax.store_shards import ShardedFeatures, ShardError
folder = Path(sys.argv[1])
features = ShardedFeatures(folder, json.loads((folder / "shards.json").read_text()), (2, 3))
features.close()
shard = folder / "features" / "0000-00002.npy"
shard.unlink()
os.mkfifo(shard)
try:
    features[2]
except ShardError as error:
    print(error)
"""
    write_shards(tmp_path, 4)
    assert run_guarded(code, str(tmp_path)).strip() == (
        "features/0000-00002.npy is a FIFO, not a regular file"
    )


def test_require_regular_file_names_what_it_refuses(tmp_path: Path) -> None:
    """Item 22: the helper store.py calls before np.load of its small arrays: one line naming
    the file and what it is; a regular file, or a link to one, passes."""
    regular = tmp_path / "labels.npy"
    np.save(regular, np.arange(3))
    link = tmp_path / "link.npy"
    link.symlink_to(regular)
    require_regular_file(regular, "store file")
    require_regular_file(link, "store file")
    fifo = tmp_path / "tracks.npy"
    os.mkfifo(fifo)
    cases = {
        fifo: "a FIFO, not a regular file",
        tmp_path: "a folder, not a regular file",
        Path("/dev/null"): "a character device, not a regular file",
        tmp_path / "gone.npy": "cannot be read (No such file or directory)",
    }
    for path, reason in cases.items():
        with pytest.raises(NotRegularFileError) as refused:
            require_regular_file(path, "store file")
        assert str(refused.value) == f"store file {path}: {reason}"
        assert refused.value.reason == reason
        assert isinstance(refused.value, ValueError)


def test_json_is_still_read_from_regular_files_and_links(tmp_path: Path) -> None:
    """Item 22: the guard refuses only what is not a regular file: a JSON object in a file or
    behind a link reads as before; a folder or /dev/zero is refused, not read."""
    data = tmp_path / "store.json"
    data.write_text(json.dumps({"version": 2}))
    link = tmp_path / "manifest.json"
    link.symlink_to(data)
    assert read_json_object(data) == read_json_object(link) == {"version": 2}
    assert read_json(link) == {"version": 2}
    with pytest.raises(JSONFileError, match=r"^is a folder, not a regular file$"):
        read_json_object(tmp_path)
    with pytest.raises(NotRegularFileError, match="/dev/zero: a character device"):
        read_json("/dev/zero")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")
    with pytest.raises(ShardError, match="is a folder, not a regular file"):
        (tmp_path / "features" / "0000-00000.npy").mkdir(parents=True)
        ShardedFeatures(tmp_path, [{"file": "features/0000-00000.npy", "rows": 1}], (2, 3))
