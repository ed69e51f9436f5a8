"""Multi-device training: the same steps on 1 device and on 8 simulated CPU devices.

Simulated host devices share this machine's cores, so on CPU the row reports correctness (the
largest parameter difference after the same steps) and not speed. On a machine with several
accelerators the same function times real scaling: ``jax.device_count()`` devices, the global
batch split over a ``data`` mesh.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import Options, Row, Timing, progress, run_script

DEVICES = 8

_SCRIPT = """
import json, sys, time
import jax, numpy as np
from genre_jax.config import TrainConfig
from genre_jax.parallel import data_mesh
from genre_jax.splits import SplitArrays
from genre_jax.train import fit
model, frames, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
n = 32 * steps
x = rng.normal(size=(n, frames, 13)).astype(np.float32)
y = (np.arange(n) % 10).astype(np.int32)
data = SplitArrays(x, y, x[:16], y[:16], x[:16], y[:16])
config = TrainConfig(model=model, epochs=2, batch_size=32, patience=0, time_flip=False)
out = {"devices": jax.device_count()}
states = {}
for name, mesh in (("one", None), ("mesh", data_mesh())):
    result = fit(config, data, 10, mesh=mesh)
    seconds = result.seconds
    states[name] = jax.tree.leaves(result.model_state)
    out[name + "_s"] = seconds
out["max_diff"] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                      for a, b in zip(states["one"], states["mesh"]))
print("RESULT " + json.dumps(out))
"""


def _measure(model: str, frames: int, steps: int) -> dict[str, Any]:
    flags = f"--xla_force_host_platform_device_count={DEVICES}"
    args = [model, str(frames), str(steps)]
    return run_script(_SCRIPT, args, 900, JAX_PLATFORMS="cpu", XLA_FLAGS=flags)


def run(options: Options) -> tuple[list[Row], list[dict[str, Any]]]:
    frames, steps = (48, 2) if options.quick else (431, 3)
    rows = []
    for model in ("gru",) if options.quick else ("cnn", "gru"):
        progress(f"parallel: {model}, 1 device vs {DEVICES} simulated devices")
        result = _measure(model, frames, steps)
        setting = {
            "model": model,
            "devices": result["devices"],
            "global_batch": 32,
            "steps_per_epoch": steps,
            "epochs": 2,
            "input": f"(32, {frames}, 13)",
        }
        extra = {
            "max_param_diff": result["max_diff"],
            "one_device_s": round(result["one_s"], 2),
            "note": "simulated CPU devices share 2 cores: correctness only, not speed",
        }
        rows.append(
            Row.duration(
                "parallel",
                f"{model} fit, data mesh of {DEVICES} simulated devices",
                "s/run",
                Timing([result["mesh_s"]]),
                setting=setting,
                extra=extra,
            )
        )
    return rows, []
