"""Fault injection: tampered and truncated checkpoints, hostile inputs, kills during prepare."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genre_jax.checkpoint import CheckpointError
from genre_jax.config import TrainConfig
from genre_jax.inference import load_predictor
from genre_jax.runner import train_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cnn_run(synthetic_store, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reliability") / "cnn"
    config = TrainConfig(model="cnn", epochs=1, patience=0, time_flip=False)
    train_run(synthetic_store.path, run, config, progress=False, log=lambda _: None)
    return run


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def array_files(run: Path) -> list[Path]:
    state = next((run / "checkpoints" / "best").glob("*/state"))
    return sorted(p for p in state.rglob("*") if p.is_file() and p.stat().st_size > 1000)


def test_tampered_checkpoint_is_an_error(cnn_run: Path, tmp_path: Path) -> None:
    run = copy_run(cnn_run, tmp_path)
    target = array_files(run)[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(run)):
        load_predictor(run)


def test_truncated_checkpoint_is_an_error(cnn_run: Path, tmp_path: Path) -> None:
    run = copy_run(cnn_run, tmp_path)
    for target in array_files(run):
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(run)):
        load_predictor(run)


def test_intact_copy_still_loads(cnn_run: Path, tmp_path: Path, synthetic_store) -> None:
    run = copy_run(cnn_run, tmp_path)
    x = np.asarray(synthetic_store.features[:4])
    np.testing.assert_array_equal(
        load_predictor(run).predict_proba(x), load_predictor(cnn_run).predict_proba(x)
    )


def hostile_folder(root: Path) -> dict[str, str]:
    """A dataset of every kind of bad input, with one good file per genre; returns each bad
    file's relative path -> the words its error must contain."""
    import soundfile as sf

    rate = 22050
    t = np.arange(12 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    for genre in ("música latina", "hip hop"):
        (root / genre).mkdir(parents=True)
        sf.write(root / genre / "good.wav", tone, rate, subtype="PCM_16")
    bad = root / "música latina"
    (bad / "empty.wav").write_bytes(b"")
    sf.write(bad / "truncated.wav", tone, rate, subtype="PCM_16")
    data = (bad / "truncated.wav").read_bytes()
    (bad / "truncated.wav").write_bytes(data[: len(data) // 2])
    (bad / "header_only.wav").write_bytes(data[:44])
    (bad / "notes.wav").write_text("plain text renamed to .wav\n" * 40)
    sf.write(bad / "broken.au", tone, rate, format="AU")
    au = bytearray((bad / "broken.au").read_bytes())
    au[0:4] = b"XXXX"  # the magic number gone
    (bad / "broken.au").write_bytes(bytes(au))
    nan = tone.copy()
    nan[1000] = np.nan
    sf.write(bad / "nan.wav", nan, rate, subtype="FLOAT")
    sf.write(bad / "short.wav", tone[: 3 * rate], rate, subtype="PCM_16")
    other = root / "hip hop"
    sf.write(other / "rate8k.wav", tone[::3][: 11 * 8000], 8000, subtype="PCM_16")
    t96 = np.arange(11 * 96000) / 96000
    sf.write(other / "rate96k.wav", (0.3 * np.sin(2 * np.pi * 330 * t96)), 96000, subtype="PCM_24")
    sf.write(other / "six.wav", np.repeat(tone[:, None], 6, axis=1), rate, subtype="PCM_16")
    sf.write(other / "zeros.wav", np.zeros_like(tone), rate, subtype="PCM_16")
    (other / "folder.wav").mkdir()  # a directory named like an audio file
    os.symlink(root, other / "loop")  # a symlink loop back to the top
    return {
        "música latina/empty.wav": "empty",
        "música latina/truncated.wav": "truncated",
        "música latina/header_only.wav": "truncated",
        "música latina/notes.wav": "not decodable",
        "música latina/broken.au": "not decodable",
        "música latina/nan.wav": "NaN",
        "música latina/short.wav": "no full",
    }


def test_hostile_inputs_are_named_and_the_rest_proceeds(tmp_path: Path) -> None:
    from genre_jax.check import check_dataset
    from genre_jax.store import prepare

    expected = hostile_folder(tmp_path / "data")
    results = {
        os.path.relpath(r.path, tmp_path / "data"): r for r in check_dataset(tmp_path / "data")
    }
    for name, words in expected.items():
        assert results[name].level == "error", name
        assert words in "; ".join(results[name].problems), (name, results[name].problems)
    for name in (
        "hip hop/rate8k.wav",
        "hip hop/rate96k.wav",
        "hip hop/six.wav",
        "hip hop/zeros.wav",
    ):
        assert results[name].level == "warning" and results[name].segments == 1, name
    store = prepare(tmp_path / "data", tmp_path / "out", progress=False, log=lambda _: None)
    ok = {
        os.path.relpath(t.path, tmp_path / "data")
        for t in store.manifest.tracks
        if t.status == "ok"
    }
    assert ok == {
        "música latina/good.wav",
        "hip hop/good.wav",
        "hip hop/rate8k.wav",
        "hip hop/rate96k.wav",
        "hip hop/six.wav",
        "hip hop/zeros.wav",
    }
    assert np.isfinite(store.features).all()  # all-zero audio included
    errors = {
        os.path.relpath(t.path, tmp_path / "data"): t.error
        for t in store.manifest.tracks
        if t.status != "ok"
    }
    assert set(errors) == set(expected)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_during_prepare_then_rerun_equals_uninterrupted(
    synthetic_small: Path, tmp_path: Path, seed: int
) -> None:
    from genre_jax.store import FeatureStore, prepare, store_path

    reference = prepare(synthetic_small, tmp_path / "reference", progress=False, log=lambda _: None)
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "genre_jax.cli",
        "prepare",
        "--data-dir",
        str(synthetic_small),
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(random.Random(seed).uniform(1.0, 6.0))  # somewhere in start-up or extraction
    process.send_signal(signal.SIGKILL)
    process.wait()
    final = store_path(out, reference.config)
    if final.exists():  # the kill came after the rename: the store must be whole
        FeatureStore.open(final)
    store = prepare(synthetic_small, out, progress=False, log=lambda _: None)
    for name in ("features", "labels", "tracks", "positions"):
        np.testing.assert_array_equal(getattr(store, name), getattr(reference, name))


GRU_OPTIONS = [
    "--model",
    "gru",
    "--epochs",
    "6",
    "--learning-rate",
    "3e-3",
    "--no-time-flip",
    "--patience",
    "0",
]
GRU_CONFIG = TrainConfig(model="gru", epochs=6, learning_rate=3e-3, time_flip=False, patience=0)


@pytest.fixture(scope="module")
def gru_reference(synthetic_store, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("gru-reference") / "run"
    train_run(synthetic_store.path, run, GRU_CONFIG, progress=False, log=lambda _: None)
    return run


@pytest.mark.parametrize("seed", [7, 8])
def test_kill_during_train_then_resume_equals_uninterrupted(
    synthetic_store, gru_reference: Path, tmp_path: Path, seed: int
) -> None:
    import json

    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "genre_jax.cli",
        "train",
        "--features",
        str(synthetic_store.path),
        "--run-dir",
        str(run),
        "--no-progress",
        *GRU_OPTIONS,
    ]
    process = subprocess.Popen(
        command,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(random.Random(seed).uniform(3.0, 15.0))  # start-up, compile or mid-epochs
    process.send_signal(signal.SIGKILL)
    process.wait()
    train_run(
        synthetic_store.path, run, GRU_CONFIG, resume=True, progress=False, log=lambda _: None
    )
    assert json.loads((run / "history.json").read_text()) == json.loads(
        (gru_reference / "history.json").read_text()
    )
    x = np.asarray(synthetic_store.features[:8])
    np.testing.assert_array_equal(
        load_predictor(run).predict_proba(x), load_predictor(gru_reference).predict_proba(x)
    )


def test_run_dir_of_another_model_is_refused_with_the_field_named(
    synthetic_store, gru_reference: Path, tmp_path: Path
) -> None:
    import shutil

    from genre_jax.config import ConfigError
    from genre_jax.runner import RunDirError

    run = tmp_path / "run"
    shutil.copytree(gru_reference, run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(ConfigError, match="model: expected 'cnn', found 'gru'"):
        train_run(synthetic_store.path, run, TrainConfig(model="cnn"), resume=True, progress=False)
    with pytest.raises(RunDirError, match="--overwrite"):
        train_run(synthetic_store.path, run, TrainConfig(model="cnn"), progress=False)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing touched


PEAK_RSS_SCRIPT = """
import resource, sys
from genre_jax.predict import predict_command
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
assert predict_command([sys.argv[2]], sys.argv[1], as_json=True) == 0  # 30 s: warm-up
base = peak_mb()
assert predict_command([sys.argv[3]], sys.argv[1], as_json=True) == 0  # 1 hour
print(f"PEAK {base:.0f} {peak_mb():.0f}", file=sys.stderr)
"""


def test_one_hour_file_is_predicted_in_bounded_memory(synthetic_store, tmp_path: Path) -> None:
    """Decoded whole, an hour at 22050 Hz is 318 MB of float32; streamed, the peak RSS must
    grow by far less than that over a 30 s file's."""
    import soundfile as sf

    run = tmp_path / "svm"
    train_run(
        synthetic_store.path,
        run,
        TrainConfig(model="svm", time_flip=False),
        progress=False,
        log=lambda _: None,
    )
    rate = 22050
    minute = (0.2 * np.sin(2 * np.pi * 220 * np.arange(60 * rate) / rate)).astype(np.float32)
    with sf.SoundFile(tmp_path / "hour.wav", "w", rate, 1, subtype="PCM_16") as out:
        for _ in range(60):
            out.write(minute)
    sf.write(tmp_path / "short.wav", minute[: 30 * rate], rate, subtype="PCM_16")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_RSS_SCRIPT,
            str(run),
            str(tmp_path / "short.wav"),
            str(tmp_path / "hour.wav"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if x.startswith("PEAK"))
    base, hour = (float(v) for v in line.split()[1:])
    print(f"peak RSS: {base:.0f} MB after a 30 s file, {hour:.0f} MB after a 1-hour file")
    assert hour - base < 150, f"peak RSS grew by {hour - base:.0f} MB for the 1-hour file"
