"""The commands a user starts, timed whole: wall seconds of the real ``genre-jax`` process.

Each row runs the command line itself (``python -m genre_jax.cli ...``, the console script's
own entry point) in a fresh process, so start-up, imports and compilation count as they do
for a user. Rows:

- ``train <model>, E epochs``: ``genre-jax train`` on a synthetic store of ``T`` songs per
  genre (the full run: 100, GTZAN's 1,000 30 s clips, 3,000 segments of 10 s, 4,800 training
  segments with the time flip), ``--epochs E --patience 0``. Beside the wall seconds it names
  where they went, from the run's ``summary.json`` timing: the epochs' training steps at the
  steady rate (the median epoch after the first, times the epochs), compilation (the first
  epoch's and the first validation's excess over their medians), validation, checkpoints,
  metrics logging, set-up, the history and plots, and start-up with the rest (imports,
  reading the store, the split). ``overhead_pct`` is everything but the steady epochs and
  compilation, as a percentage of the steady epochs.
- ``evaluate <model> run``: ``genre-jax evaluate`` of the CNN run above (its test songs).
- ``predict, N files``: ``genre-jax predict`` of ``N`` 30 s WAV files with the CNN run.
- ``crossval <file>``: ``genre-jax crossval --config configs/<file>`` on a small synthetic
  dataset (``--data-dir``: the features are prepared from the audio, as a user's first run
  does), with ``--epochs`` given (stated in the row; the pipelines do not read it);
  musicnnsvm's pretrained weights are fetched first if they are not cached. ``--skip-crossval
  PATTERNS`` (``Options.crossval_skip``) skips the files its shell patterns match, each row
  naming the pattern: ``gtzan-dev-musicnn.json,gtzan-dev-musicnn-*`` leaves out the four
  fine-tuning files, about an hour of a full run on 2 cores.
- ``demo``: ``genre-jax demo`` as a newcomer runs it (its built-in synthetic data, cached
  after the first run), with each model's training seconds.

- ``startup: <what>``: a fresh interpreter that imports ``genre_jax.config`` (reading
  settings), and ``genre-jax --help``, ``genre-jax prepare --help`` and ``genre-jax train
  --help`` (the last imports every model, whose settings are its options); the median of
  ``repeats`` runs each.

``--quick`` runs the startup rows, and the train (1 epoch, 3 songs per genre), evaluate and
predict rows at tiny sizes, and skips the crossval and demo rows (minutes each).
"""

from __future__ import annotations

import fnmatch
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Options
from benchmarks.timing import Row, Timing, progress, report
from genre_jax.datasets import generate_synthetic

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_MODELS = ("cnn", "gru")


def genre_jax(*args: str, cwd: Path) -> float:
    """Wall seconds of ``genre-jax ARGS`` in a fresh process; its output is kept only to
    explain a failure."""
    command = [sys.executable, "-m", "genre_jax.cli", *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"genre-jax {' '.join(args)} exited {done.returncode}: {tail}")
    return seconds


def where_it_went(wall: float, timing: dict[str, Any]) -> dict[str, float]:
    """The wall seconds of a train command split as the module docstring says, from the
    run's ``summary.json`` timing (at least two epochs for a steady rate)."""
    epochs, validation = timing["epochs"], timing["validation"]
    steady_epoch = statistics.median(epochs[1:]) if len(epochs) > 1 else epochs[0]
    steady_validation = statistics.median(validation[1:]) if len(validation) > 1 else 0.0
    compile_s = (epochs[0] - steady_epoch) + (validation[0] - steady_validation)
    fit = timing["setup"] + sum(epochs) + sum(validation) + timing["logging"]
    fit += timing["checkpoints"]
    parts = {
        "epochs_steady_s": steady_epoch * len(epochs),
        "compilation_s": compile_s,
        "validation_s": steady_validation * len(validation),
        "checkpoints_s": timing["checkpoints"],
        "logging_s": timing["logging"],
        "setup_s": timing["setup"],
        "history_and_plots_s": timing["history_and_plots"],
        "startup_and_rest_s": wall - fit - timing["history_and_plots"],
    }
    overhead = wall - parts["epochs_steady_s"] - compile_s
    parts["overhead_pct"] = 100 * overhead / parts["epochs_steady_s"]
    return {k: round(v, 2) for k, v in parts.items()}


def train_rows(options: Options, work: Path) -> tuple[list[Row], Path]:
    """The train rows, and the CNN run for the evaluate and predict rows."""
    songs = options.command_songs
    data = generate_synthetic(work / "data", tracks_per_genre=songs, seed=0)
    progress(f"commands: prepare, synthetic {songs} songs per genre")
    store = work / "features"  # prepare's --out, which train reads as its store
    genre_jax("prepare", "--data-dir", str(data), "--out", str(store), "--no-progress", cwd=work)
    rows = []
    for model in TRAIN_MODELS:
        run_dir = work / f"run-{model}"
        epochs = options.command_epochs
        args = ["--model", model, "--epochs", str(epochs), "--patience", "0", "--no-progress"]
        progress(f"commands: train {model}, {epochs} epochs")
        wall = genre_jax("train", "--features", str(store), "--run-dir", str(run_dir), *args,
                         cwd=work)  # fmt: skip
        summary = json.loads((run_dir / "summary.json").read_text())
        setting = {
            "model": model,
            "command": f"genre-jax train --features STORE --run-dir RUN {' '.join(args)}",
            "store": f"synthetic, {songs} songs per genre, 10 s MFCC segments",
            "split": summary["split"],
        }
        row = Row.duration("commands", f"train {model}, {epochs} epochs", "s", Timing([wall]),
                           setting=setting)  # fmt: skip
        row.extra = where_it_went(wall, summary["timing"])
        report(row)
        rows.append(row)
    return rows, work / "run-cnn"


def evaluate_predict_rows(options: Options, work: Path, run_dir: Path) -> list[Row]:
    """``evaluate`` of the CNN run, ``predict`` of ``predict_files`` 30 s files with it."""
    progress("commands: evaluate the cnn run")
    wall = genre_jax("evaluate", "--run-dir", str(run_dir), cwd=work)
    setting = {"command": "genre-jax evaluate --run-dir RUN", "model": "cnn"}
    rows = [Row.duration("commands", "evaluate cnn run", "s", Timing([wall]), setting=setting)]
    report(rows[-1])
    files = sorted((work / "data").rglob("*.wav"))[: options.predict_files]
    progress(f"commands: predict {len(files)} files")
    wall = genre_jax("predict", *map(str, files), "--run-dir", str(run_dir), cwd=work)
    setting = {"command": "genre-jax predict FILE... --run-dir RUN", "files": len(files)}
    setting["file"] = "30 s WAV, 22,050 Hz mono"
    row = Row.duration("commands", f"predict, {len(files)} files", "s", Timing([wall]),
                       setting=setting)  # fmt: skip
    row.extra = {"seconds_per_file": round(wall / len(files), 3)}
    report(row)
    return [*rows, row]


def crossval_files(skip: tuple[str, ...] = ()) -> dict[Path, str | None]:
    """Every experiment file in ``configs/``, in name order, with the first of ``skip``'s
    shell patterns that matches its name (None: the file is cross-validated).

    Raises:
        ValueError: a pattern that matches no experiment file (a typo would otherwise skip
            nothing and say nothing).
    """
    files = sorted(CONFIGS.glob("*.json"))
    for pattern in skip:
        if not any(fnmatch.fnmatch(file.name, pattern) for file in files):
            names = ", ".join(file.name for file in files)
            raise ValueError(f"{pattern!r} matches no experiment file in configs/ ({names})")
    return {file: next((p for p in skip if fnmatch.fnmatch(file.name, p)), None) for file in files}


def crossval_rows(options: Options, work: Path) -> list[Row]:
    """``crossval`` of every experiment file in ``configs/`` on a small synthetic dataset;
    a file that ``options.crossval_skip`` names gets a skipped row saying which pattern."""
    files = crossval_files(options.crossval_skip)
    if options.quick:
        reason = "--quick: a cross-validation takes minutes"
        return [Row.skipped("commands", f"crossval {f.name}", reason) for f in files]
    songs = options.crossval_songs
    chosen = None in files.values()
    data = generate_synthetic(work / "cv-data", tracks_per_genre=songs, seed=0) if chosen else None
    rows = []
    for file, pattern in files.items():
        name = f"crossval {file.name}"
        if pattern is not None:
            rows.append(Row.skipped("commands", name, f"--skip-crossval {pattern!r}"))
            continue
        out = work / f"cv-{file.stem}"
        args = ["--config", str(file), "--data-dir", str(data), "--out", str(out)]
        args += ["--features-dir", str(work / "cv-features"), "--no-progress"]
        given = ["--epochs", str(options.crossval_epochs)]
        progress(f"commands: {name}")
        wall = genre_jax("crossval", *args, *given, cwd=work)
        setting = {
            "command": f"genre-jax crossval --config configs/{file.name} --data-dir DATA "
            f"--out OUT --features-dir FEATURES {' '.join(given)}",
            "data": f"synthetic, {songs} songs per genre (features prepared once per setting)",
        }
        row = Row.duration("commands", name, "s", Timing([wall]), setting=setting)
        report(row)
        rows.append(row)
    return rows


def demo_row(options: Options, work: Path) -> Row:
    """``genre-jax demo`` with its defaults, each model's training seconds beside the wall."""
    if options.quick:
        return Row.skipped("commands", "demo", "--quick: the demo takes minutes")
    progress("commands: demo")
    out = work / "demo"
    wall = genre_jax("demo", "--out", str(out), "--no-progress", cwd=work)
    trained = {}
    for summary in sorted(out.glob("*/summary.json")):
        trained[summary.parent.name] = json.loads(summary.read_text()).get("train_seconds")
    setting = {"command": "genre-jax demo --out OUT --no-progress", "data": "built-in synthetic"}
    row = Row.duration("commands", "demo", "s", Timing([wall]), setting=setting)
    row.extra = {f"{model}_train_s": seconds for model, seconds in trained.items()}
    report(row)
    return row


STARTUP = {  # row name -> the arguments of a fresh interpreter
    "import genre_jax.config": ["-c", "import genre_jax.config"],
    "genre-jax --help": ["-m", "genre_jax.cli", "--help"],
    "genre-jax prepare --help": ["-m", "genre_jax.cli", "prepare", "--help"],
    "genre-jax train --help": ["-m", "genre_jax.cli", "train", "--help"],
}


def startup_rows(options: Options, work: Path) -> list[Row]:
    """Wall seconds of a fresh interpreter doing each of :data:`STARTUP`, median of
    ``options.repeats``."""
    rows = []
    for name, args in STARTUP.items():
        progress(f"commands: startup, {name}")
        seconds = []
        for _ in range(max(1, options.repeats)):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, *args], cwd=work, capture_output=True)
            seconds.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"{name} exited {done.returncode}: {done.stderr[-400:]!r}")
        setting = {"command": f"python {' '.join(args)}"}
        rows.append(Row.duration("commands", f"startup: {name}", "s", Timing(seconds),
                                 setting=setting))  # fmt: skip
        report(rows[-1])
    return rows


def run(options: Options) -> tuple[list[Row], list[dict]]:
    """Every command row (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="genre-jax-bench-commands-") as tmp:
        work = Path(tmp)
        startup = startup_rows(options, work)
        rows, cnn_run = train_rows(options, work)
        rows = startup + rows
        rows += evaluate_predict_rows(options, work, cnn_run)
        rows += crossval_rows(options, work)
        rows.append(demo_row(options, work))
    return rows, []
