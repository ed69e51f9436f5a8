"""Streamed training: the same batches in the same order as the device-resident path."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from genre_jax.config import TrainConfig
from genre_jax.splits import make_split, split_arrays
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
    from genre_jax import train

    config = TrainConfig(
        model=model, epochs=2, batch_size=36, patience=0, select="last", epoch_driver=driver
    )
    row_bytes = 431 * 13 * 4
    monkeypatch.setattr(train, "STREAM_WINDOW_BYTES", window * 36 * row_bytes)
    assert train.stream_window(36, row_bytes, driver) == window
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
