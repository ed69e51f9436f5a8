"""What a resumed run may change (issue 36, item 4): run options and epochs, not its identity.

``train --resume`` starts from the run's own settings; options given on the command line may
change the run options (feed, epoch driver, checkpoint steps) and extend ``epochs``. With a
constant learning rate a run continued from 2 to 4 epochs has the parameters of a 4-epoch run;
a cosine schedule, which spans all epochs, continues only on the span it was trained on.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from genre_jax.cli import main
from genre_jax.inference import load_predictor
from genre_jax.kernels import active

QUIET = ["--no-progress"]
# A small CNN run: 2 epochs at a constant rate; patience 0 so that 2 and 4 epochs stop alike.
BASE = ["--model", "cnn", "--patience", "0", "--no-time-flip", "--batch-size", "64"]
BASE += ["--learning-rate", "1e-3"]


def train(store: Path, run: Path, *options: str) -> None:
    assert main(["train", "--features", str(store), "--run-dir", str(run), *QUIET, *options]) == 0


def history(run: Path) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def assert_histories_equal(one: list[dict], other: list[dict]) -> None:
    assert len(one) == len(other)
    for a, b in zip(one, other, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-6, err_msg=key)


@pytest.fixture(scope="module")
def two_epochs(synthetic_store, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("resume") / "two"
    train(synthetic_store.path, run, *BASE, "--epochs", "2", "--feed", "device")
    return run


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    return copy


def test_resume_for_more_epochs_equals_the_longer_run(
    synthetic_store, two_epochs: Path, tmp_path: Path
) -> None:
    """``--resume --epochs 4`` of a 2-epoch constant-rate run, streamed this time, has the
    history and predictions of a 4-epoch run (1e-6); config.json records the change."""
    reference = tmp_path / "four"
    train(synthetic_store.path, reference, *BASE, "--epochs", "4")
    run = copy_of(two_epochs, tmp_path)
    train(synthetic_store.path, run, "--resume", "--epochs", "4", "--feed", "stream")
    assert_histories_equal(history(run), history(reference))
    x = np.asarray(synthetic_store.features[:24])
    np.testing.assert_allclose(
        load_predictor(run).predict_proba(x),
        load_predictor(reference).predict_proba(x),
        rtol=1e-6,
        atol=1e-6,
    )
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 4 and config["train"]["feed"] == "stream"
    changed = {"epochs": [2, 4], "feed": ["device", "stream"]}
    assert config["resumed"] == [{"after_epoch": 2, "changed": changed, "kernels": active()}]


def test_a_run_option_alone_changes_and_the_earlier_checkpoints_still_load(
    synthetic_store, two_epochs: Path, tmp_path: Path
) -> None:
    """A finished run resumed on another feed and epoch driver: nothing to train, the change
    recorded, and the best checkpoint saved before config.json changed still loads and
    predicts as before."""
    run = copy_of(two_epochs, tmp_path)
    x = np.asarray(synthetic_store.features[:8])
    before = load_predictor(run).predict_proba(x)
    train(synthetic_store.path, run, "--resume", "--feed", "stream", "--epoch-driver", "steps")
    config = json.loads((run / "config.json").read_text())
    assert config["resumed"][0]["changed"] == {
        "epoch_driver": ["auto", "steps"],
        "feed": ["device", "stream"],
    }
    np.testing.assert_array_equal(load_predictor(run).predict_proba(x), before)
    assert len(history(run)) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--learning-rate", "1e-2"], r"learning_rate: 0\.001 in the run, 0\.01 given"),
        (["--model", "gru"], r"model: 'cnn' in the run, 'gru' given"),
        (["--epochs", "1"], r"epochs=1: run .* has already trained 2 epochs; give epochs >= 2"),
    ],
)
def test_what_binds_the_run_is_refused_naming_it(
    synthetic_store, two_epochs: Path, tmp_path: Path, capsys, options, message
) -> None:
    run = copy_of(two_epochs, tmp_path)
    before = (run / "config.json").read_bytes()
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run), "--resume"]
    assert main(argv + QUIET + options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message, err), err
    assert (run / "config.json").read_bytes() == before


def test_a_cosine_schedule_continues_only_on_its_own_span(
    synthetic_store, tmp_path: Path, capsys
) -> None:
    """Resuming a cosine run for more epochs is refused naming the schedule and the setting
    that continues it; with ``--schedule-epochs 2`` it continues, the rate at its end."""
    run = tmp_path / "cosine"
    cosine = [*BASE, "--lr-schedule", "cosine", "--warmup-steps", "2", "--epochs", "2"]
    train(synthetic_store.path, run, *cosine)
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run), "--resume"]
    assert main([*argv, *QUIET, "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "lr_schedule='cosine' over 2 epochs" in err and "schedule_epochs=2" in err, err
    train(synthetic_store.path, run, "--resume", "--epochs", "3", "--schedule-epochs", "2")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(line)["learning_rate"] for line in lines if '"learning_rate"' in line]
    assert len(rates) == 3 and rates[1] > rates[2]  # decaying until the span's last step
    assert rates[2] == pytest.approx(0.01 * 1e-3, rel=1e-6)  # then at its end


def test_a_run_without_a_resume_record_resumes_only_as_it_was(
    synthetic_store, two_epochs: Path, tmp_path: Path, capsys
) -> None:
    """A run written before resumes could change settings (no ``resumed`` in config.json: its
    checkpoints bind the whole file) resumes unchanged, and refuses a change naming it."""
    run = copy_of(two_epochs, tmp_path)
    config = json.loads((run / "config.json").read_text())
    del config["resumed"]
    (run / "config.json").write_text(json.dumps(config))
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run), "--resume"]
    assert main([*argv, *QUIET, "--epochs", "3"]) == 2
    assert "resumes only as it was: epochs=2" in capsys.readouterr().err
    assert main([*argv, *QUIET]) == 0
