"""The accelerator path on CPU (issue 36, item 2): every network trains, evaluates and predicts
with ``--kernels reference``, the plain operations a GPU or TPU runs (``conv(x)``,
``jax.random.bernoulli``, the fused GRU recurrence, the scan epoch driver), so that what an
accelerator runs is trained end to end by every CI run, which has only a CPU. The fast kernels
are held to these references op by op in ``tests/test_kernels.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genre_jax import kernels
from genre_jax.cli import main
from genre_jax.inference import load_predictor

NETWORKS = {"cnn": "mfcc", "gru": "mfcc", "melstat": "logmel"}  # each with the features it reads


@pytest.fixture(scope="module")
def stores(synthetic_small: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reference-stores")
    found = {}
    for kind in ("mfcc", "logmel"):
        argv = ["prepare", "--data-dir", str(synthetic_small), "--out", str(out / kind)]
        assert main([*argv, "--segment-seconds", "3", "--kind", kind, "--no-progress"]) == 0
        (store,) = [p for p in (out / kind).iterdir() if (p / "store.json").is_file()]
        found[kind] = store
    return found


@pytest.mark.parametrize("model", NETWORKS)
def test_each_network_runs_every_command_on_the_reference_kernels(
    model: str, stores: dict[str, Path], synthetic_small: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    store = stores[NETWORKS[model]]
    run = tmp_path / "run"
    options = ["--model", model, "--epochs", "2", "--patience", "0", "--no-progress"]
    argv = ["train", "--features", str(store), "--run-dir", str(run), *options]
    assert main([*argv, "--kernels", "reference"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["kernels"] == "reference" and config["kernels"] == "reference"
    assert kernels.requested() == "auto"  # the run's mode ended with it
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 2 and all(np.isfinite(r["loss"]) for r in history)

    monkeypatch.setenv(kernels.KERNELS_ENV, "reference")  # what evaluate and predict read
    assert kernels.active() == "reference"
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert 0 <= report["song_accuracy"] <= 1 and report["songs"] > 0
    capsys.readouterr()
    clip = next(iter(sorted(synthetic_small.rglob("*.wav"))))
    assert main(["predict", str(clip), "--run-dir", str(run), "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    # The same checkpoint predicts the same on the fast kernels, within float tolerance.
    x = np.asarray(load_predictor(run).predict_proba(_segments(store)))
    monkeypatch.setenv(kernels.KERNELS_ENV, "fast")
    fast = np.asarray(load_predictor(run).predict_proba(_segments(store)))
    np.testing.assert_allclose(fast, x, rtol=1e-4, atol=1e-5)


def _segments(store: Path) -> np.ndarray:
    from genre_jax.store import FeatureStore

    return np.asarray(FeatureStore.open(store).features[:12])
