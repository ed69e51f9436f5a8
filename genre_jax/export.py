"""``genre-jax export``: a trained network as one serialized StableHLO program.

The program is the whole path from audio to probabilities: segments ``(batch, samples)`` at the
run's sample rate -> the run's features (:func:`genre_jax.features.extract`, in float32) -> the
network in evaluation mode -> softmax, traced by :func:`jax.export.export` with a symbolic
batch size, so one file serves any batch. The weights are constants inside it. The sidecar
(``FILE.json``) names the genres, the sample rate, the segment length, the feature and model
settings and the run it came from, and binds the program by its SHA-256
(:mod:`genre_jax.exported` loads both and checks them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax.checkpoint import load_model
from genre_jax.config import FeatureConfig, TrainConfig
from genre_jax.ensemble import is_ensemble
from genre_jax.exported import FORMAT, canonical, sidecar_path
from genre_jax.features import extract
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, read_json
from genre_jax.models import NETWORK
from genre_jax.settings import ConfigError


def export_run(run_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Export the network of ``run_dir`` (its best checkpoint) to ``out`` and ``out.json``;
    return the sidecar.

    Raises:
        ConfigError: the run is a pipeline or an ensemble (only a single network exports), or
            ``out`` exists and ``overwrite`` is not set.
    """
    run_dir, out = Path(run_dir), Path(out)
    config = read_json(run_dir / "config.json")
    if is_ensemble(config):
        raise ConfigError(f"export: {run_dir} is an ensemble; export each member's run")
    train = TrainConfig.from_json(config["train"])
    if train.spec.family != NETWORK:
        raise ConfigError(
            f"export: {run_dir} holds model {train.model!r}, a {train.spec.family}; only "
            "networks export as a program"
        )
    if (out.exists() or sidecar_path(out).exists()) and not overwrite:
        raise ConfigError(f"export: {out} exists; pass --overwrite to replace it")
    model, meta = load_model(run_dir)
    features = FeatureConfig.from_json(meta["feature_config"])
    graphdef, state = nnx.split(model)

    def probabilities(segments: jax.Array) -> jax.Array:
        network = nnx.merge(graphdef, state)
        logits = network(extract(segments, features), train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    (batch,) = jax.export.symbolic_shape("batch")
    shape = jax.ShapeDtypeStruct((batch, features.segment_samples), jnp.float32)
    program = jax.export.export(jax.jit(probabilities))(shape).serialize()
    record = {
        "format": FORMAT,
        "program_sha256": hashlib.sha256(program).hexdigest(),
        "genres": list(meta["genres"]),
        "sample_rate": features.sample_rate,
        "segment_seconds": features.segment_seconds,
        "segment_samples": features.segment_samples,
        "feature_config": features.to_json(),
        "model": train.model_section(),
        "source_run": str(run_dir.resolve()),
        "best_epoch": meta.get("epoch"),
        "jax_version": jax.__version__,
    }
    record["sidecar_sha256"] = hashlib.sha256(canonical(record)).hexdigest()
    atomic_write_bytes(out, bytes(program))
    atomic_write_json(sidecar_path(out), record)
    return record
