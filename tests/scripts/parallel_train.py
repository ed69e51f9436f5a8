"""Train a few steps on fixed data and save the parameters: run by tests/test_parallel.py in
subprocesses (8 simulated CPU devices, or one process of a two-process run)."""

from __future__ import annotations

import sys

import jax
import numpy as np

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.parallel import data_mesh, initialize
from genre_jax.splits import SplitArrays
from genre_jax.train import fit


def fixed_data(n: int) -> SplitArrays:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 48, 13)).astype(np.float32)
    y = (np.arange(n) % 10).astype(np.int32)
    return SplitArrays(x, y, x[:16], y[:16], x[:16], y[:16])


def train(model: str, n: int, mesh) -> dict[str, np.ndarray]:
    config = TrainConfig(model=model, epochs=1, batch_size=32, patience=0, time_flip=False)
    result = fit(config, fixed_data(n), 10, mesh=mesh)
    leaves = jax.tree_util.tree_leaves_with_path(result.model_state)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


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
    else:  # one process of a distributed run, settings from GENRE_JAX_* variables
        assert initialize()
        assert jax.process_count() == 2 and jax.device_count() == 2
        np.savez(out, **train(model, 64, mesh=data_mesh()))  # 2 steps
