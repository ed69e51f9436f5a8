"""Live metrics: ``metrics.jsonl`` line by line through a kill and a resume, TensorBoard event
files read back with TensorFlow's own event reader, and the headline figures of evaluate and
crossval in the same files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genre_jax.cli import main
from genre_jax.config import TrainConfig
from genre_jax.metrics import METRICS_FILE, read_metrics
from genre_jax.runner import train_run

from .conftest import child_env

# Fields that a rerun reproduces exactly (timing does not).
DETERMINISTIC = ("epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def _deterministic(records: list[dict]) -> list[dict]:
    return [{k: r[k] for k in DETERMINISTIC} for r in records]


def _latest_checkpoint(run_dir: Path) -> int:
    folder = run_dir / "checkpoints" / "latest"
    steps = [int(p.name) for p in folder.glob("*") if p.name.isdigit()] if folder.exists() else []
    return max(steps, default=0)


def test_metrics_survive_a_kill_and_resume_without_duplicates(synthetic_store, tmp_path) -> None:
    epochs = 8
    config = TrainConfig.from_flat(
        {"model": "cnn", "epochs": epochs, "patience": 0, "time_flip": False,
         "learning_rate": 1e-3, "lr_schedule": "cosine", "warmup_steps": 5}
    )  # fmt: skip
    reference = tmp_path / "reference"
    train_run(synthetic_store.path, reference, config, progress=False, log=lambda _: None)
    expected = read_metrics(reference)
    assert [r["epoch"] for r in expected] == list(range(1, epochs + 1))
    history = json.loads((reference / "history.json").read_text())
    assert [{k: r[k] for k in history[0]} for r in expected] == history  # derived from it
    assert len({r["learning_rate"] for r in expected}) > 1  # the cosine schedule, logged

    killed = tmp_path / "killed"
    options = ["--model", "cnn", "--epochs", str(epochs), "--patience", "0", "--no-time-flip",
               "--learning-rate", "1e-3", "--lr-schedule", "cosine",
               "--warmup-steps", "5"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "genre_jax.cli", "train", "--features", str(synthetic_store.path),
         "--run-dir", str(killed), "--no-progress", *options],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while _latest_checkpoint(killed) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "training never reached epoch 3"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    checkpointed = _latest_checkpoint(killed)
    assert 3 <= checkpointed < epochs, f"the kill landed at epoch {checkpointed}"
    survived = read_metrics(killed)
    # Every finished epoch's line is there, in order (a line is written just before its
    # checkpoint, so the epoch after the last checkpoint may be there too), each as in an
    # uninterrupted run.
    assert len(survived) in (checkpointed, checkpointed + 1)
    assert _deterministic(survived) == _deterministic(expected[: len(survived)])

    train_run(synthetic_store.path, killed, config, resume=True, progress=False, log=lambda _: None)
    resumed = read_metrics(killed)
    assert _deterministic(resumed) == _deterministic(expected)  # every epoch once
    # The epochs before the kill keep the timing they were measured with.
    assert [r["seconds"] for r in resumed[:checkpointed]] == [
        r["seconds"] for r in survived[:checkpointed]
    ]


def test_a_pipeline_fit_is_one_line_and_evaluate_adds_its_figures(
    synthetic_store, tmp_path
) -> None:
    run = tmp_path / "svm"
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run)]
    assert main([*argv, "--model", "svm", "--no-time-flip", "--no-progress"]) == 0
    (fit,) = read_metrics(run)
    history = json.loads((run / "history.json").read_text())
    assert {k: fit[k] for k in history[0]} == history[0]
    assert fit["seconds"] > 0 and fit["samples_per_second"] > 0
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    event = read_metrics(run)[-1]
    report = json.loads((run / "report.json").read_text())
    assert event["event"] == "evaluate" and event["part"] == "test"
    assert event["song_accuracy"] == report["song_accuracy"]
    assert event["macro_f1"] == report["macro_avg"]["f1"]


def _events(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the event files under ``folder``, read by TensorFlow's event reader
    (independent of the writer): tag -> step -> value; and the image tags as tag -> {}."""
    tf = pytest.importorskip("tensorflow")
    found: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                found.setdefault(value.tag, {})
                if kind == "simple_value":
                    found[value.tag][event.step] = value.simple_value
    return found


def test_tensorboard_event_files_hold_every_epoch(synthetic_store, tmp_path) -> None:
    pytest.importorskip("tensorboardX")
    run = tmp_path / "cnn"
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run)]
    options = ["--model", "cnn", "--epochs", "3", "--patience", "0", "--no-progress"]
    assert main([*argv, *options, "--tensorboard"]) == 0
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    events = _events(run / "tensorboard")
    records = [r for r in read_metrics(run) if "event" not in r]
    assert len(records) == 3
    for tag, key in (("train/loss", "loss"), ("val/accuracy", "val_accuracy"),
                     ("train/learning_rate", "learning_rate"),
                     ("time/samples_per_second", "samples_per_second")):  # fmt: skip
        assert sorted(events[tag]) == [1, 2, 3], tag
        np.testing.assert_allclose(
            [events[tag][r["epoch"]] for r in records], [r[key] for r in records], rtol=1e-6
        )
    report = json.loads((run / "report.json").read_text())
    assert events["evaluate/song_accuracy"] == {3: pytest.approx(report["song_accuracy"])}
    assert "evaluate/test/confusion_song" in events  # the confusion matrix, as an image
    # summary.json says where the training seconds went: per epoch its steps and validation
    # (together the record's seconds), and parts that add up to no more than the fit's time.
    summary = json.loads((run / "summary.json").read_text())
    timing = summary["timing"]
    assert len(timing["epochs"]) == len(timing["validation"]) == 3
    per_epoch = zip(timing["epochs"], timing["validation"], records, strict=True)
    for steps, validation, record in per_epoch:
        assert steps > 0 and validation > 0
        assert steps + validation == pytest.approx(record["seconds"], abs=2e-3)
    parts = timing["setup"] + sum(timing["epochs"]) + sum(timing["validation"])
    parts += timing["logging"] + timing["checkpoints"]
    assert timing["logging"] > 0 and timing["checkpoints"] > 0
    assert parts <= summary["train_seconds"] + 0.01


def test_crossval_logs_each_fold_and_the_mean(synthetic_store, tmp_path) -> None:
    pytest.importorskip("tensorboardX")
    out = tmp_path / "cv"
    argv = ["crossval", "--features", str(synthetic_store.path), "--out", str(out)]
    options = ["--model", "svm", "--split", "kfold", "--folds", "2", "--no-time-flip"]
    assert main([*argv, *options, "--tensorboard", "--no-progress"]) == 0
    lines = read_metrics(out)
    report = json.loads((out / "report.json").read_text())
    assert [r["fold"] for r in lines if r["event"] == "fold"] == [0, 1]
    (summary,) = [r for r in lines if r["event"] == "crossval"]
    assert summary["mean_song_accuracy"] == report["mean"]["song_accuracy"]
    events = _events(out / "tensorboard")
    assert sorted(events["fold/song_accuracy"]) == [0, 1]
    for fold in (0, 1):  # one folder per fold, each with its own run's figures
        assert (out / f"fold-{fold}" / "tensorboard").is_dir()
        assert _events(out / f"fold-{fold}" / "tensorboard")["train/accuracy"]
    # Running it again (a finished experiment) writes the folds' lines anew, not twice.
    assert main([*argv, *options, "--tensorboard", "--no-progress"]) == 0
    assert [r["fold"] for r in read_metrics(out) if r["event"] == "fold"] == [0, 1]
    assert (out / METRICS_FILE).is_file()


def test_tensorboard_without_the_extra_is_one_line(synthetic_store, tmp_path) -> None:
    """Without tensorboardX, --tensorboard says which extra to install, and writes nothing."""
    run = tmp_path / "run"
    code = (
        "import sys; sys.modules['tensorboardX'] = None\n"
        "from genre_jax.cli import main\n"
        f"sys.exit(main(['train', '--features', {str(synthetic_store.path)!r}, '--run-dir', "
        f"{str(run)!r}, '--model', 'svm', '--tensorboard']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "genre-jax train: error: --tensorboard: the tensorboardX writer is not installed "
        "(pip install 'genre-jax[tensorboard]')"
    ]
    assert not run.exists()
