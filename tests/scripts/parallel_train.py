"""Train a few steps on fixed data and save the parameters: run by tests/test_parallel.py in
subprocesses (8 simulated CPU devices, or one process of a two-process run, device-resident or
streamed from a feature store)."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.parallel import data_mesh, initialize
from genre_jax.splits import SplitArrays
from genre_jax.store import FeatureStore
from genre_jax.store_splits import make_split, split_arrays
from genre_jax.streaming import Rows, streamed_split
from genre_jax.train import fit

STREAMED = TrainConfig(model="cnn", epochs=2, batch_size=36, patience=0, select="last")
"""What the streamed two-process run trains (two epochs of the store's default split)."""


class Watched(Rows):
    """Rows that remember which rows were read (to show each process reads its own)."""

    def __init__(self, rows: Rows) -> None:
        super().__init__(rows.features, rows.index, rows.time_flip)
        self.read: list[np.ndarray] = []

    def __getitem__(self, key):
        if not isinstance(key, slice):
            self.read.append(np.asarray(key, np.int64))
        return super().__getitem__(key)


def leaves(state) -> dict[str, np.ndarray]:
    found = jax.tree_util.tree_leaves_with_path(state)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in found}


def fixed_data(n: int) -> SplitArrays:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 48, 13)).astype(np.float32)
    y = (np.arange(n) % 10).astype(np.int32)
    return SplitArrays(x, y, x[:16], y[:16], x[:16], y[:16])


def train(model: str, n: int, mesh) -> dict[str, np.ndarray]:
    config = TrainConfig(model=model, epochs=1, batch_size=32, patience=0, time_flip=False)
    return leaves(fit(config, fixed_data(n), 10, mesh=mesh).model_state)


if __name__ == "__main__":
    mode, model, out = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "simulated":  # XLA_FLAGS gives this process 8 CPU devices
        assert jax.device_count() == 8, jax.devices()
        try:
            fit(TrainConfig(model=model, batch_size=30), fixed_data(32), 10, mesh=data_mesh())
            raise SystemExit("a global batch of 30 on 8 devices was not refused")
        except ConfigError as error:
            assert "batch_size=30" in str(error), error
        one = train(model, 96, mesh=None)  # 3 steps of the global batch on device 0
        eight = train(model, 96, mesh=data_mesh())  # the same 3 steps split over 8 devices
        np.savez(
            out,
            **{f"one{k}": v for k, v in one.items()},
            **{f"eight{k}": v for k, v in eight.items()},
        )
    elif mode == "evaluate":  # one process of two, predicting its half of the test segments
        import json

        from genre_jax.evaluate import evaluate_run

        assert initialize()
        report = evaluate_run(model)  # the run's folder, in place of a model
        Path(out).write_text(json.dumps(report))
    elif mode == "predict":  # one process of two, predicting its half of a folder's files
        import contextlib
        import io

        from genre_jax.predict import predict_command

        assert initialize()
        folder, run_dir = model.split("|")  # the folder and the run, in place of a model
        printed = io.StringIO()
        with contextlib.redirect_stderr(io.StringIO()):
            code = predict_command([folder], run_dir, as_json=True, out=printed)
        Path(out).write_text(f"{code}\n{printed.getvalue()}")
    elif mode == "streamed":  # one process of two, reading its rows of each batch from a store
        assert initialize()
        assert jax.process_count() == 2 and jax.device_count() == 2
        store = FeatureStore.open(model)  # the store's path, in place of a model
        split = make_split(store, STREAMED)
        data = streamed_split(store, split, True)
        data.x_train = Watched(data.x_train)
        state = fit(STREAMED, data, len(store.genres), mesh=data_mesh()).model_state
        held = fit(STREAMED, split_arrays(store, split, True), len(store.genres), mesh=data_mesh())
        np.savez(
            out,
            read=np.concatenate(data.x_train.read),
            **{f"streamed{k}": v for k, v in leaves(state).items()},
            **{f"held{k}": v for k, v in leaves(held.model_state).items()},
        )
    else:  # one process of a distributed run, settings from GENRE_JAX_* variables
        assert initialize()
        assert jax.process_count() == 2 and jax.device_count() == 2
        np.savez(out, **train(model, 64, mesh=data_mesh()))  # 2 steps
