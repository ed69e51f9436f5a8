"""Streamed training: the same batches in the same order as the device-resident path."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from genre_jax.config import TrainConfig
from genre_jax.store_splits import make_split, split_arrays
from genre_jax.streaming import Rows, choose_feed, streamed_split
from genre_jax.train import fit


def _leaves(state) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_leaves_with_path(state)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def test_streamed_split_reads_what_split_arrays_gathers(synthetic_store) -> None:
    split = make_split(synthetic_store, TrainConfig())
    for flip in (False, True):
        held = split_arrays(synthetic_store, split, flip)
        streamed = streamed_split(synthetic_store, split, flip)
        for part in ("train", "val", "test"):
            x, rows = getattr(held, f"x_{part}"), getattr(streamed, f"x_{part}")
            assert rows.shape == x.shape and len(rows) == len(x)
            np.testing.assert_array_equal(rows[:], x)
            np.testing.assert_array_equal(
                getattr(streamed, f"y_{part}"), getattr(held, f"y_{part}")
            )
        pick = np.random.default_rng(0).integers(0, len(held.x_train), 40)
        np.testing.assert_array_equal(streamed.x_train[pick], held.x_train[pick])
    with pytest.raises(IndexError, match="1-D index"):
        streamed.x_train[np.zeros((2, 2), np.int64)]


@pytest.mark.parametrize(
    ("model", "driver", "window"), [("cnn", "scan", 3), ("gru", "scan", 5), ("cnn", "steps", 1)]
)
def test_streamed_epochs_train_the_same_parameters(
    synthetic_store, monkeypatch: pytest.MonkeyPatch, model: str, driver: str, window: int
) -> None:
    """Two epochs (the seed's time-flip doubling, a padded last batch, dropout) read from the
    store a window of batches at a time, against the device-resident epochs: parameters
    within 1e-5. 14 batches per epoch in windows of 3 or 5 (the last one shorter), or one
    call per batch with the steps driver."""
    from genre_jax import streamed_epochs

    config = TrainConfig(
        model=model, epochs=2, batch_size=36, patience=0, select="last", epoch_driver=driver
    )
    row_bytes = 431 * 13 * 4
    monkeypatch.setattr(streamed_epochs, "STREAM_WINDOW_BYTES", window * 36 * row_bytes)
    assert streamed_epochs.stream_window(36, row_bytes, driver) == window
    split = make_split(synthetic_store, config)
    held = fit(config, split_arrays(synthetic_store, split, True), 10)
    streamed = fit(config, streamed_split(synthetic_store, split, True), 10)
    assert [r["epoch"] for r in streamed.history] == [1, 2]
    for a, b in zip(held.history, streamed.history, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([b[k] for k in b], [a[k] for k in a], rtol=1e-5, atol=1e-6)
    one, other = _leaves(held.model_state), _leaves(streamed.model_state)
    assert one.keys() == other.keys()
    for name in one:
        np.testing.assert_allclose(other[name], one[name], atol=1e-5, err_msg=name)


def test_auto_feed_streams_only_what_the_device_cannot_hold(monkeypatch) -> None:
    from genre_jax import streaming

    monkeypatch.setattr(streaming, "device_budget", lambda: 1000)
    assert choose_feed("auto", 1000) == "device" and choose_feed("auto", 1001) == "stream"
    assert choose_feed("stream", 1) == "stream" and choose_feed("device", 10**12) == "device"


def test_rows_flip_the_second_half_in_time() -> None:
    features = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    rows = Rows(features, np.array([2, 0]), time_flip=True)
    assert rows.shape == (4, 3, 2) and rows.nbytes == 4 * 3 * 2 * 4
    expected = np.concatenate([features[[2, 0]], features[[2, 0], ::-1]])
    np.testing.assert_array_equal(rows[[3, 0, 2, 1]], expected[[3, 0, 2, 1]])


def _partial_steps(run_dir) -> list[int]:
    folder = run_dir / "checkpoints" / "partial"
    return [int(p.name) for p in folder.glob("*") if p.name.isdigit()] if folder.exists() else []


def test_a_streamed_run_killed_inside_an_epoch_resumes_there_exactly(
    synthetic_store, tmp_path
) -> None:
    """kill -9 after a checkpoint inside the second epoch (every 4 of its 15 steps); the
    resumed run goes on from that step and ends with the parameters, history and metrics of
    a run never interrupted."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from genre_jax.checkpoint import load_model
    from genre_jax.metrics import read_metrics
    from genre_jax.runner import train_run

    from .conftest import child_env

    options = {"model": "cnn", "epochs": 3, "batch_size": 16, "patience": 0, "time_flip": False}
    options |= {"feed": "stream", "checkpoint_steps": 4}
    config = TrainConfig.from_flat(options)
    steps = -(-240 // 16)  # 240 training segments (80 songs, 3 each), no time flip
    reference = tmp_path / "reference"
    train_run(synthetic_store.path, reference, config, progress=False, log=lambda _: None)

    killed = tmp_path / "killed"
    flags = [f"--{k.replace('_', '-')}" for k in ("model", "epochs", "batch_size", "patience")]
    argv = [a for pair in zip(flags, ["cnn", "3", "16", "0"], strict=True) for a in pair]
    argv += ["--no-time-flip", "--feed", "stream", "--checkpoint-steps", "4"]
    process = subprocess.Popen(
        [sys.executable, "-m", "genre_jax.cli", "train", "--features", str(synthetic_store.path),
         "--run-dir", str(killed), "--no-progress", *argv],
        env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not [s for s in _partial_steps(killed) if s > steps] and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint inside epoch 2"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    inside = max(_partial_steps(killed))
    assert inside % steps and inside < 3 * steps, f"the kill landed after step {inside}"

    messages: list[str] = []
    train_run(
        synthetic_store.path, killed, config, resume=True, progress=False, log=messages.append
    )
    for name in ("history.json",):
        assert json.loads((killed / name).read_text()) == json.loads((reference / name).read_text())
    keep = ("epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy")
    assert [{k: r[k] for k in keep} for r in read_metrics(killed)] == [
        {k: r[k] for k in keep} for r in read_metrics(reference)
    ]
    (resumed, _), (uninterrupted, _) = load_model(killed), load_model(reference)
    one, other = _leaves(nnx_state(uninterrupted)), _leaves(nnx_state(resumed))
    for name in one:
        np.testing.assert_array_equal(other[name], one[name], err_msg=name)


def nnx_state(model):
    from flax import nnx

    return nnx.state(model)
