"""Evaluation and prediction: batched segment throughput, and seconds per 30 s audio file.

Rows:

- ``<model> predict, batch B``: segments per second of ``make_predict`` (evaluation mode,
  fixed-size batches under one jit) on ``(N, 431, 13)`` features (``(N, 431, 128)`` log-mel
  for melstat) already on the device, the path evaluation takes over a test set;
- ``cnn end to end, one 30 s file``: seconds of :func:`genre_jax.predict.predict_file` on a 30 s
  WAV (decode, cut into 10 s segments, extract their MFCCs, class probabilities from a
  :class:`genre_jax.inference.Predictor` loaded from a run directory), the ``predict`` command's
  path. The run is a tiny real one: the synthetic dataset (3 songs per
  genre), its feature store, one epoch of ``train_run``; its accuracy is irrelevant, only the
  path is timed. Skipped by ``--quick`` (the tiny training run alone takes longer than the
  whole smoke test should).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import soundfile

from benchmarks.common import Options
from benchmarks.timing import Row, progress, report, time_call
from benchmarks.training import MODELS, initial_state, model_coeffs, synthetic_batch
from genre_jax.config import TrainConfig
from genre_jax.datasets import generate_synthetic
from genre_jax.inference import load_predictor, make_predict
from genre_jax.predict import predict_file
from genre_jax.prepare import prepare
from genre_jax.runner import train_run
from genre_jax.train import model_state_of

TINY_TRACKS_PER_GENRE = 3  # the fewest for which the song split has a song in every part


def predict_rows(options: Options) -> list[Row]:
    """Segments/s of ``make_predict`` for every model (weights untrained: speed only)."""
    rows = []
    n, batch = options.predict_samples, options.predict_batch
    for model in MODELS:
        x, _ = synthetic_batch(n, seed=1, coeffs=model_coeffs(model))
        graphdef, state, _ = initial_state(model)
        predict = make_predict(graphdef, batch)
        weights = model_state_of(state)
        progress(f"inference: {model} predict, {n} segments, batch {batch}")
        timing = time_call(lambda p=predict, w=weights, x=x: p(w, x), options.repeats)
        setting = {"model": model, "batch": batch, "segments": n, "input": "on device"}
        rows.append(
            Row.rate(
                "inference",
                f"{model} predict, batch {batch}",
                "segments/s",
                timing,
                n,
                setting=setting,
            )
        )
        report(rows[-1])
    return rows


def tiny_run(work: Path, model: str = "cnn") -> tuple[Path, Path]:
    """Train a one-epoch ``model`` run on the synthetic dataset; return (run dir, a 30 s WAV)."""
    quiet = lambda _: None  # noqa: E731
    root = generate_synthetic(work / "data", tracks_per_genre=TINY_TRACKS_PER_GENRE, seed=0)
    store = prepare(work / "data", work / "features", progress=False, log=quiet)
    config = TrainConfig(model=model, epochs=1, patience=0)
    train_run(store.path, work / "run", config, progress=False, log=quiet)
    return work / "run", sorted(root.rglob("*.wav"))[0]


def file_pipeline(run_dir: Path, audio: Path) -> Callable[[], Any]:
    """``call()`` predicts the file's genre with :func:`genre_jax.predict.predict_file`."""
    predictor = load_predictor(run_dir)

    def call() -> None:
        prediction = predict_file(audio, predictor)
        if prediction.error:
            raise RuntimeError(f"{audio}: {prediction.error}")

    return call


def file_rows(options: Options) -> list[Row]:
    """Seconds per 30 s file, end to end, with a predictor loaded from a tiny trained run."""
    name = "cnn end to end, one 30 s file"
    if not options.file_row:
        reason = "--quick: the tiny training run it needs takes longer than the smoke test"
        return [Row.skipped("inference", name, reason)]
    with tempfile.TemporaryDirectory(prefix="genre-jax-bench-") as work:
        progress("inference: training a tiny run for the end-to-end file row")
        run_dir, audio = tiny_run(Path(work))
        call = file_pipeline(run_dir, audio)
        progress(f"inference: end to end on {audio.name}")
        timing = time_call(call, options.repeats)
        info = soundfile.info(str(audio))
        setting = {
            "model": "cnn",
            "file": f"{info.format} {info.subtype} {info.samplerate} Hz, {info.duration:.1f} s",
            "steps": "predict_file: streamed decode, 10 s segments, extract_jit, predict_proba",
            "run": f"synthetic {TINY_TRACKS_PER_GENRE} songs/genre, 1 epoch",
        }
        row = Row.duration("inference", name, "s/file", timing, setting=setting)
        row.extra = {"files_per_s": 1.0 / timing.median}
        report(row)
        return [row]


def run(options: Options) -> tuple[list[Row], list[dict]]:
    """Prediction-throughput rows for every network and the end-to-end file row."""
    return predict_rows(options) + file_rows(options), []
