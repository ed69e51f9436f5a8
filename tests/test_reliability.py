"""Fault injection: tampered and truncated checkpoints, hostile inputs, kills during prepare."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import numpy as np
import pytest

from genre_jax.checkpoint import CheckpointError
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.inference import load_predictor
from genre_jax.models import get_spec, specs
from genre_jax.output_dirs import OutputDirError
from genre_jax.runner import train_run
from tests.conftest import child_env

ROOT = Path(__file__).resolve().parents[1]


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
    from genre_jax.prepare import prepare

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
    from genre_jax.prepare import prepare
    from genre_jax.store import FeatureStore, store_path

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
    process = subprocess.Popen(
        command, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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
        env=child_env(),
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
    with pytest.raises(ConfigError, match="model: 'gru' in the run, 'cnn' given"):
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
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if x.startswith("PEAK"))
    base, hour = (float(v) for v in line.split()[1:])
    print(f"peak RSS: {base:.0f} MB after a 30 s file, {hour:.0f} MB after a 1-hour file")
    assert hour - base < 150, f"peak RSS grew by {hour - base:.0f} MB for the 1-hour file"


# --- issue 15: nothing lost, nothing silently wrong, one-line errors ------------------------------


def cli(capsys, *argv: str) -> tuple[int, str]:
    """Run ``genre-jax ARGV`` in this process: (exit status, standard error)."""
    from genre_jax.cli import main

    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    return code, capsys.readouterr().err


def one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "error:" in lines[0], err
    for word in words:
        assert word in lines[0], (word, lines[0])


def listing(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def svm_runs(synthetic_store, tmp_path_factory) -> tuple[Path, Path]:
    """Two finished SVM runs on the same store and split (C = 1 and 3), and the store."""
    base = tmp_path_factory.mktemp("svm-runs")
    for name, c in (("a", 1.0), ("b", 3.0)):
        config = TrainConfig.from_flat({"model": "svm", "time_flip": False, "c": c})
        train_run(synthetic_store.path, base / name, config, progress=False, log=lambda _: None)
    return base / "a", base / "b", synthetic_store.path


def test_ensemble_refuses_an_existing_run_or_a_member_as_its_folder(
    svm_runs, cnn_run: Path, tmp_path: Path
) -> None:
    """Item 1: `ensemble A B --out C` over a finished run C replaced C's config.json; `--out A`
    made A list itself (RecursionError later)."""
    import shutil

    from genre_jax.ensemble import make_ensemble

    a, b, _ = svm_runs
    finished = tmp_path / "c"
    shutil.copytree(cnn_run, finished)
    before = listing(finished)
    with pytest.raises(OutputDirError, match="already holds a run"):
        make_ensemble([a, b], finished)
    assert listing(finished) == before
    before_a = listing(a)
    with pytest.raises(OutputDirError, match="is the ensemble itself"):
        make_ensemble([a, b], a)
    assert listing(a) == before_a
    make_ensemble([a, b], tmp_path / "ab")
    with pytest.raises(OutputDirError, match="is a member of"):
        make_ensemble([tmp_path / "ab", a], b)  # b is inside the member ensemble ab
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"not empty \(it holds notes.txt\)"):
        make_ensemble([a, b], tmp_path / "full")


def test_overwrite_refuses_a_folder_genre_jax_did_not_write(
    synthetic_store, tmp_path: Path
) -> None:
    """Item 2: `--overwrite` removed d/docs of a folder that merely held a config.json."""
    d = tmp_path / "d"
    (d / "docs").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "docs" / "a").write_text("x")
    with pytest.raises(OutputDirError, match=r"not written by genre-jax \(it holds config.json"):
        train_run(
            synthetic_store.path,
            d,
            TrainConfig(model="svm", time_flip=False),
            overwrite=True,
            progress=False,
        )
    assert (d / "docs" / "a").read_text() == "x"
    cv = tmp_path / "cv"
    (cv / "docs").mkdir(parents=True)
    (cv / "experiment.json").write_text('{"members": {}, "feature_hash": "x"}')
    (cv / "docs" / "a").write_text("x")
    from genre_jax.crossval import crossval

    with pytest.raises(OutputDirError, match="not written by genre-jax"):
        crossval(
            synthetic_store.path,
            cv,
            TrainConfig(model="svm", time_flip=False, folds=2),
            overwrite=True,
            progress=False,
            log=lambda _: None,
        )
    assert (cv / "docs" / "a").read_text() == "x"


def test_overwrite_replaces_our_own_runs_old_and_new(synthetic_store, tmp_path: Path) -> None:
    from genre_jax.output_dirs import MARKER

    config = TrainConfig(model="svm", time_flip=False)
    run = tmp_path / "run"
    quiet = {"progress": False, "log": lambda _: None}
    train_run(synthetic_store.path, run, config, **quiet)
    assert json.loads((run / MARKER).read_text()) == {"project": "genre_jax", "kind": "run"}
    (run / "summary.json").write_text("{}")
    train_run(synthetic_store.path, run, config, overwrite=True, **quiet)
    assert json.loads((run / "summary.json").read_text())["model"] == "svm"
    (run / MARKER).unlink()  # a run written before markers: recognised by what it holds
    (run / "svm.json").unlink()  # (nor had it the SVM's binding)
    train_run(synthetic_store.path, run, config, overwrite=True, **quiet)
    assert (run / MARKER).is_file()


FEATURE_FIELDS = [f.name for f in dataclasses.fields(FeatureConfig)]
# model_settings holds the model's own settings (a dataclass per model): those are checked
# one by one below (MODEL_FIELDS), as the other fields are here.
TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model_settings"]
MODEL_FIELDS = [(spec.name, f.name) for spec in specs() for f in dataclasses.fields(spec.settings)]


def bad_values(cls: type, name: str) -> list[object]:
    """NaN, infinity and a negative number for numeric fields; a wrong type for every field."""
    hint = typing.get_type_hints(cls)[name]
    base = next(a for a in typing.get_args(hint) or (hint,) if a is not type(None))
    wrong = {bool: "yes", int: 2.5, float: "ten", str: 3}[base]
    numeric = [math.nan, math.inf, -1] if base in (int, float) else []
    return [*numeric, wrong]


@pytest.mark.parametrize(
    ("cls", "name"),
    [(FeatureConfig, n) for n in FEATURE_FIELDS] + [(TrainConfig, n) for n in TRAIN_FIELDS],
)
def test_every_setting_refuses_nan_infinity_negative_and_wrong_types(cls, name: str) -> None:
    """Items 4 and 10: each field of each dataclass, from JSON as an experiment file gives it."""
    exempt = {("TrainConfig", "model")}  # any name: refused by the registry when training
    for value in bad_values(cls, name):
        if (cls.__name__, name) in exempt and isinstance(value, str):
            continue
        with pytest.raises(ConfigError, match=rf"\b{name}=") as caught:
            cls.from_json({name: value})
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("model", "name"), MODEL_FIELDS)
def test_every_model_setting_refuses_nan_infinity_negative_and_wrong_types(
    model: str, name: str
) -> None:
    """Items 4 and 10 for each model's own settings, from JSON as an experiment file gives them
    (the model section, or flat beside the model's name)."""
    for value in bad_values(get_spec(model).settings, name):
        for train in ({"model": {"name": model, name: value}}, {"model": model, name: value}):
            with pytest.raises(ConfigError, match=rf"\b{name}=") as caught:
                TrainConfig.from_json(train)
            assert "\n" not in str(caught.value)


NUMERIC_OPTIONS = (
    [
        ("prepare", f.name, None)
        for f in dataclasses.fields(FeatureConfig)
        if f.name != "kind"  # a text choice
    ]
    + [
        ("train", f.name, None)
        for f in dataclasses.fields(TrainConfig)
        if typing.get_type_hints(TrainConfig)[f.name] in (int, float)
    ]
    + [
        ("train", name, model)  # a model's own setting: --model.<name>, given with --model
        for model, name in MODEL_FIELDS
        if typing.get_type_hints(get_spec(model).settings)[name] in (int, float)
    ]
)


@pytest.mark.parametrize(("command", "name", "model"), NUMERIC_OPTIONS)
def test_cli_options_give_one_line_errors_for_nan_infinity_and_negatives(
    capsys, tmp_path: Path, command: str, name: str, model: str | None
) -> None:
    flag = f"--model.{name}" if model else "--" + name.replace("_", "-")
    where = (
        ["--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
        if command == "prepare"
        else ["--features", str(tmp_path / "none"), "--run-dir", str(tmp_path / "run")]
    )
    where += ["--model", model] if model else []
    for value in ("nan", "inf", "-1"):
        code, err = cli(capsys, command, *where, flag, value)
        assert code == 2, (flag, value, err)
        named = f"{name}=" if model else name  # a short model setting (c) by its assignment
        one_line_error(err, named if "invalid" not in err else flag)
    assert not list(tmp_path.iterdir())  # nothing touched


def test_experiment_files_with_wrong_values_are_one_line_errors(
    capsys, synthetic_store, tmp_path: Path
) -> None:
    """Item 10 (files) and 11 (a FIFO or a device as --config)."""
    files = {
        "fraction.json": ({"train": {"epochs": 2.5}}, "epochs=2.5"),
        "text.json": ({"train": {"epochs": "ten"}}, "epochs='ten'"),
        "members.json": ({"members": [1, 2]}, "member 1"),
        "self.json": ({"members": ["self.json", "fraction.json"]}, "the ensemble itself"),
        "deep.json": (None, "nested too deeply"),
        "list.json": ({"train": [1]}, "'train' must be an object"),
    }
    for name, (data, _) in files.items():
        text = "[" * 100_000 + "]" * 100_000 if data is None else json.dumps(data)
        (tmp_path / name).write_text(text)
    os.mkfifo(tmp_path / "fifo.json")
    files["fifo.json"] = (None, "not a regular file")
    files["/dev/zero"] = (None, "not a regular file")
    for name, (_, words) in files.items():
        path = name if name.startswith("/") else str(tmp_path / name)
        run = tmp_path / "runs" / name.strip("/").replace("/", "-")
        code, err = cli(
            capsys,
            "train",
            "--features",
            str(synthetic_store.path),
            "--run-dir",
            str(run),
            "--config",
            path,
        )
        assert code == 2, (name, err)
        one_line_error(err, words)
        assert not run.exists()


def test_splits_and_batches_that_cannot_be_are_refused_before_anything_is_written(
    capsys, synthetic_store, tmp_path: Path
) -> None:
    """Item 10: --folds 1000, --val-per-genre 8 of 8 training songs per genre (crossval left
    experiment.json behind)."""
    store = str(synthetic_store.path)
    out = tmp_path / "cv"
    for options, words in (
        (["--folds", "1000"], "folds=1000"),
        (["--folds", "1"], "folds=1"),
        (["--folds", "5", "--val-per-genre", "8"], "val_per_genre=8"),
        (["--split-seed", "-1"], "split_seed=-1"),
    ):
        code, err = cli(capsys, "crossval", "--features", store, "--out", str(out), *options)
        assert code == 2, (options, err)
        one_line_error(err, words)
        assert not out.exists()


def test_a_batch_larger_than_the_data_takes_the_whole_set(synthetic_store, tmp_path: Path) -> None:
    """Item 10: --batch-size 100000 on a few hundred examples padded every batch to 100,000
    (tens of GB); now the step takes the whole set, exactly as a batch of its size does."""
    histories, lines = [], []
    for name, batch in (("huge", 100_000), ("exact", 480)):
        config = TrainConfig(model="cnn", epochs=1, patience=0, batch_size=batch)
        train_run(synthetic_store.path, tmp_path / name, config, progress=False, log=lines.append)
        histories.append(json.loads((tmp_path / name / "history.json").read_text()))
    assert any("480 training examples: each step takes them all" in line for line in lines)
    assert histories[0] == histories[1]


def test_command_arguments_out_of_range_are_one_line_errors(capsys, tmp_path: Path) -> None:
    """Item 10: prepare --batch-size 0 / --workers 0, synth --tracks-per-genre 0, plot --seconds
    nan; item 11: plot --out DIR, an output path that is a file."""
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(22050, np.float32), 22050)
    file = tmp_path / "file"
    file.write_text("x")
    cases = [
        (["prepare", "--synthetic", "--batch-size", "0"], "--batch-size"),
        (["prepare", "--synthetic", "--workers", "0"], "--workers"),
        (["synth", "--out", str(tmp_path / "s"), "--tracks-per-genre", "0"], "--tracks-per-genre"),
        (["plot", str(wav), "--seconds", "nan"], "--seconds"),
        (["plot", str(wav), "--out", str(tmp_path)], "is a folder"),
        (["train", "--features", str(tmp_path), "--run-dir", str(file)], "not a folder"),
        (["ensemble", str(tmp_path), str(tmp_path), "--out", str(file)], "not a folder"),
        (["predict", str(wav), "--run-dir", str(tmp_path), "--top-k", "0"], "--top-k"),
    ]
    for argv, words in cases:
        code, err = cli(capsys, *argv)
        assert code == 2, (argv, err)
        one_line_error(err, words)
    assert not (tmp_path / "s").exists() and file.read_text() == "x"


def test_resume_of_a_foreign_config_and_unwritable_places_are_one_line_errors(
    capsys, synthetic_store, tmp_path: Path
) -> None:
    """Item 11: `train --resume` on a config.json genre-jax did not write; an output folder
    that cannot be created (here under /proc, which refuses new entries even to root)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"name": "my notes"}')
    store = str(synthetic_store.path)
    code, err = cli(capsys, "train", "--features", store, "--run-dir", str(run), "--resume")
    assert code == 2
    one_line_error(err, "not the config of a genre-jax run")
    assert (run / "config.json").read_text() == '{"name": "my notes"}'
    code, err = cli(
        capsys,
        "train",
        "--features",
        store,
        "--run-dir",
        "/proc/genre-jax-test/run",
        "--model",
        "svm",
    )
    assert code == 2
    one_line_error(err, "/proc/genre-jax-test")


def test_divergent_training_says_no_checkpoint_was_written(synthetic_store, tmp_path: Path) -> None:
    """Item 12: a learning rate of 1e9 diverges in the first epoch; the message said "the last
    good checkpoint (epoch 0) is kept" when none existed."""
    from genre_jax.train import TrainingError

    run = tmp_path / "run"
    config = TrainConfig(model="cnn", epochs=2, learning_rate=1e9, patience=0, time_flip=False)
    with pytest.raises(TrainingError, match=r"epoch 1: .*no checkpoint was written"):
        train_run(synthetic_store.path, run, config, progress=False, log=lambda _: None)
    assert not list((run / "checkpoints" / "latest").glob("[0-9]*"))
    # Issue 35, item 18: a fresh run that failed before anything was kept left its folder, so
    # the corrected command was refused as "already holds a run". Now nothing is left.
    assert not run.exists()
    corrected = dataclasses.replace(config, epochs=1, learning_rate=1e-4)
    train_run(synthetic_store.path, run, corrected, progress=False, log=lambda _: None)
    assert (run / "summary.json").is_file()


@pytest.fixture(scope="module")
def all_test_store(synthetic_small: Path, tmp_path_factory) -> Path:
    """A CSV manifest whose split column puts every track in ``test``, prepared."""
    from genre_jax.prepare import prepare

    root = tmp_path_factory.mktemp("all-test")
    lines = ["path,genre,split"]
    for path in sorted(synthetic_small.rglob("*.wav")):
        lines.append(f"{path},{path.parent.name},test")
    (root / "tracks.csv").write_text("\n".join(lines) + "\n")
    config = FeatureConfig(segment_seconds=10.0)
    return prepare(root / "tracks.csv", root / "features", config, progress=False).path


@pytest.mark.parametrize("model", ["svm", "cnn"])
def test_no_training_songs_is_one_line_and_no_run_folder(
    all_test_store: Path, model: str, tmp_path: Path, capsys
) -> None:
    """Issue 35, item 17: a dataset's own split with every track in ``test`` gave svm's
    "cannot reshape", cnn's ZeroDivisionError (or "no validation songs"), and the run folder
    was left behind."""
    run = tmp_path / "run"
    code, err = cli(
        capsys, "train", "--features", str(all_test_store), "--run-dir", str(run),
        "--model", model, "--split", "official", "--epochs", "1", "--no-progress",
    )  # fmt: skip
    assert code == 2
    one_line_error(err, "has no training songs", "official")
    assert not run.exists()


def test_crossval_from_a_data_folder_writes_nothing_outside_out(
    capsys, synthetic_small: Path, tmp_path: Path, monkeypatch
) -> None:
    """Item 14: `crossval --data-dir D --out Y` put its features in ./runs/features."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "y"
    argv = ["crossval", "--data-dir", str(synthetic_small), "--out", str(out), "--no-progress"]
    options = ["--model", "svm", "--no-time-flip", "--folds", "3", "--segment-seconds", "5"]
    code, err = cli(capsys, *argv, *options)
    assert code == 0, err
    assert not list(work.iterdir())
    assert list((out / "features").glob("*/store.json"))
    assert (out / "report.json").is_file()
    code, err = cli(capsys, *argv, *options, "--overwrite")  # keeps its own store
    assert code == 0, err
    assert list((out / "features").glob("*/store.json"))


def test_a_full_disk_during_training_is_one_line_and_the_checkpoint_stays(
    synthetic_store, tmp_path: Path
) -> None:
    """Item 11: a full disk during training gave five orbax tracebacks. The disk is filled
    with a file-size limit (RLIMIT_FSIZE), which makes every write past it fail as a full
    disk's would; resuming without the limit then finishes the run."""
    run = tmp_path / "run"
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "limit = int(sys.argv[1])\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
        "from genre_jax.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    options = ["--model", "cnn", "--epochs", "3", "--patience", "0", "--no-progress"]
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run), *options]
    done = subprocess.run(
        [sys.executable, "-c", script, str(200_000), *argv],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    one_line_error(done.stderr, "resume with --resume")
    from genre_jax.cli import main

    assert main([*argv, "--resume"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 3


def test_interrupt_and_a_closed_pipe_end_in_one_line(svm_runs, tmp_path: Path) -> None:
    """Item 11: SIGINT printed a traceback; `predict --json | head -1` a BrokenPipeError."""
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(11 * 22050) / 10.0).astype(np.float32), 22050)
    command = [sys.executable, "-m", "genre_jax.cli", "predict", str(wav), "--run-dir"]
    # The reader has gone before anything is written (``| head -1`` after its line): closing
    # the read end first makes the write fail every time, where reading a line first raced
    # the writer, which could finish its whole (small) output into the pipe's buffer.
    reader, writer = os.pipe()
    process = subprocess.Popen(
        [*command, str(svm_runs[0]), "--json"],
        env=child_env(),
        stdout=writer,
        stderr=subprocess.PIPE,
    )
    os.close(writer)
    os.close(reader)
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    run = tmp_path / "run"
    # A shell without job control starts background jobs with SIGINT ignored, and an ignored
    # signal stays ignored across exec: handle it here while the child starts, so that the
    # child gets the default, as a terminal's foreground process has (a handler is reset on
    # exec). A preexec_fn would do it in the child, but forks a multithreaded JAX process.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "genre_jax.cli", "train", "--features", str(svm_runs[2]),
             "--run-dir", str(run), "--no-progress", "--epochs", "50", "--patience", "0"],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "training examples" in process.stdout.readline()  # training has begun
    time.sleep(2.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["genre-jax train: interrupted; resume with --resume"], err


def _wav_header(rate: int, data_bytes: int, extra: bytes = b"") -> bytes:
    """A 16-bit mono PCM RIFF header declaring ``data_bytes`` of samples, ``extra`` chunks
    before the data chunk."""
    import struct

    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, rate, 2 * rate, 2, 16)
    body = b"WAVE" + fmt + extra + struct.pack("<4sI", b"data", data_bytes)
    return b"RIFF" + struct.pack("<I", len(body) - 4 + data_bytes) + body


def test_a_folder_mixing_hostile_files_with_real_clips_is_prepared(
    capsys, gtzan_mini: Path, tmp_path: Path
) -> None:
    """Issue 15's mix: items 4 (samples around 1e18), 6 (a truncated WAV whose big LIST chunk
    hid the cut; a truncated Ogg), 8 (sample rate 0) and 9 (1 Hz over 200 KB) beside real
    GTZAN clips: every bad file named with its reason, every good one stored, exit 0."""
    import struct

    import soundfile as sf

    data = tmp_path / "data"
    real = {}
    for genre in ("blues", "jazz"):
        (data / genre).mkdir(parents=True)
        source = gtzan_mini / "genres_original" / genre / f"{genre}.00000.wav"
        (data / genre / source.name).symlink_to(source)  # read in place, never copied
        real[genre] = source
    blues = data / "blues"
    (blues / "rate0.wav").write_bytes(_wav_header(0, 4) + b"\0" * 4)
    (blues / "rate1hz.wav").write_bytes(_wav_header(1, 200_000) + b"\x01\x00" * 100_000)
    listing_chunk = struct.pack("<4sI", b"LIST", 100_000) + b"\0" * 100_000
    samples = (np.sin(np.arange(5 * 22050) / 7.0) * 8000).astype("<i2").tobytes()
    (blues / "biglist.wav").write_bytes(
        (_wav_header(22050, len(samples), listing_chunk) + samples)[: 100_000 + 60_000]
    )
    clip, rate = sf.read(real["jazz"], dtype="float32")
    sf.write(data / "jazz" / "huge.wav", clip[: 5 * rate] * 1e18, rate, subtype="FLOAT")
    sf.write(data / "jazz" / "cut.ogg", clip[: 10 * rate], rate, format="OGG")
    ogg = (data / "jazz" / "cut.ogg").read_bytes()
    (data / "jazz" / "cut.ogg").write_bytes(ogg[: int(len(ogg) * 0.6)])
    out = tmp_path / "out"
    argv = ["prepare", "--data-dir", str(data), "--out", str(out), "--segment-seconds", "2"]
    from genre_jax.cli import main

    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    from genre_jax.store import FeatureStore, resolve_store

    store = FeatureStore.open(resolve_store(out))
    tracks = {Path(t.path).name: t for t in store.manifest.tracks}
    reasons = {
        "rate0.wav": "sample rate 0",
        "rate1hz.wav": "sample rate 1 Hz",
        "biglist.wav": "truncated",
        "huge.wav": "not finite",
    }
    for name, words in reasons.items():
        assert tracks[name].status == "error" and words in tracks[name].error, tracks[name]
        assert f"skipped {data}" in printed and name in printed  # told, not only recorded
    assert tracks["cut.ogg"].status == "ok" and "truncated" in (tracks["cut.ogg"].warning or "")
    assert f"warning {data / 'jazz' / 'cut.ogg'}" in printed
    for source in real.values():
        assert tracks[source.name].status == "ok" and tracks[source.name].segments == 15
    stored = {store.manifest.tracks[i].id for i in np.unique(store.tracks)}
    assert stored == {"blues.00000", "jazz.00000", "cut"}
    assert np.isfinite(store.features).all()
