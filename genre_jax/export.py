"""``genre-jax export``: a trained network as one serialized StableHLO program.

The program is the whole path from audio to probabilities: segments ``(batch, samples)`` at the
run's sample rate -> the run's features (:func:`genre_jax.features.extract`, in float32) -> the
network in evaluation mode -> softmax, traced by :func:`jax.export.export` with a symbolic
batch size, so one file serves any batch. The weights are constants inside it. The sidecar
(``FILE.json``) names the genres, the sample rate, the segment length, the feature and model
settings and the run it came from, and binds the program by its SHA-256; the program carries
the digest of the sidecar's content in its name (:mod:`genre_jax.exported` loads both and
checks both ways).

``--overwrite`` replaces only an export of ours, recognised by its sidecar (a known format and
its own digest matching): any other file at ``OUT`` or ``OUT.json`` stays, and so does every
file inside a folder genre-jax writes (a run, an ensemble, a cross-validation), where no
export is written at all: ``train --overwrite`` replaces such a folder whole.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from genre_jax import legacy
from genre_jax.checkpoint import load_model
from genre_jax.config import FeatureConfig, TrainConfig
from genre_jax.ensemble import is_ensemble
from genre_jax.exported import (
    FORMAT,
    ExportError,
    canonical,
    check_sidecar,
    program_name,
    sidecar_path,
)
from genre_jax.features import extract
from genre_jax.fileio import JSONFileError, atomic_write_bytes, atomic_write_json, read_json_object
from genre_jax.inference import read_run_config
from genre_jax.models import NETWORK
from genre_jax.output_dirs import MARKER, dir_kind
from genre_jax.settings import ConfigError

_SIDECAR_LIMIT = 1 << 20  # bytes: a sidecar is under 2 KB; a larger file at OUT.json is not one


def export_run(run_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Export the network of ``run_dir`` (its best checkpoint) to ``out`` and ``out.json``;
    return the sidecar.

    Raises:
        ConfigError: the run is a pipeline or an ensemble (only a single network exports);
            ``out`` or its sidecar is a folder, lies in a folder genre-jax writes, or exists
            and is not an export of ours (even with ``overwrite``), or exists and ``overwrite``
            is not set (:func:`check_export_out`).
        RunConfigError: the run's ``config.json`` is not a run's.
    """
    run_dir, out = Path(run_dir), Path(out)
    config = read_run_config(run_dir)
    if is_ensemble(config):
        raise ConfigError(f"export: {run_dir} is an ensemble; export each member's run")
    train = TrainConfig.from_json(config["train"])
    if train.spec.family != NETWORK:
        raise ConfigError(
            f"export: {run_dir} holds model {train.model!r}, a {train.spec.family}; only "
            "networks export as a program"
        )
    check_export_out(out, overwrite=overwrite)
    model, meta = load_model(run_dir)
    features = FeatureConfig.from_json(meta["feature_config"])
    graphdef, state = nnx.split(model)

    def probabilities(segments: jax.Array) -> jax.Array:
        network = nnx.merge(graphdef, state)
        logits = network(extract(segments, features), train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    record = {
        "format": FORMAT,
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
    # The program carries the digest of everything above (its name, which jax.export keeps),
    # the sidecar the digest of the program: neither can be swapped or edited alone.
    probabilities.__name__ = program_name(record)
    (batch,) = jax.export.symbolic_shape("batch")
    shape = jax.ShapeDtypeStruct((batch, features.segment_samples), jnp.float32)
    program = jax.export.export(jax.jit(probabilities))(shape).serialize()
    record["program_sha256"] = hashlib.sha256(program).hexdigest()
    record["sidecar_sha256"] = hashlib.sha256(canonical(record)).hexdigest()
    atomic_write_bytes(out, bytes(program))
    atomic_write_json(sidecar_path(out), record)
    return record


def check_export_out(out: Path, *, overwrite: bool) -> None:
    """Refuse an ``--out`` whose writing would cost a file that is not an export of ours,
    before the run is loaded; with ``overwrite``, an existing export of ours is replaced.

    Raises:
        ConfigError: ``out`` or ``out.json`` is a folder; ``out``'s folder is (or lies in) a
            folder genre-jax writes; ``out`` or ``out.json`` exists and ``out.json`` is not the
            sidecar of an export (whatever ``overwrite`` says); or an export is there and
            ``overwrite`` is not set. The existing file is named.
    """
    side = sidecar_path(out)
    for path in (out, side):
        if path.is_dir():
            raise ConfigError(
                f"export: {path} is a folder; --out names the program's file (its sidecar is "
                "written beside it as OUT.json)"
            )
    owner = _genre_jax_folder(out.parent)
    if owner is not None:
        raise ConfigError(
            f"export: --out {out} lies in {owner}; write the export outside the folders "
            "genre-jax writes (their files are the run's own, and --overwrite of the run "
            "replaces them)"
        )
    existing = [p for p in (out, side) if os.path.lexists(p)]
    if not existing:
        return
    reason = _not_an_export(side)
    if reason is not None:
        raise ConfigError(
            f"export: {existing[0]} exists and is not an export of genre-jax ({reason}); it is "
            "never replaced, even with --overwrite: remove it yourself or choose another --out"
        )
    if not overwrite:
        named = " and ".join(str(p) for p in existing)
        verb = "exist" if len(existing) > 1 else "exists"
        raise ConfigError(f"export: {named} {verb} (an export); pass --overwrite to replace it")


def _not_an_export(side: Path) -> str | None:
    """None if ``side`` is the sidecar of an export of ours (a known format, its own digest
    matching), else why not."""
    if not side.is_file():  # a dangling link, a FIFO or nothing at all
        return f"{side} is not a sidecar file" if os.path.lexists(side) else f"no {side}"
    if side.stat().st_size > _SIDECAR_LIMIT:
        return f"{side} is too large to be a sidecar"
    try:
        check_sidecar(read_json_object(side), side)
    except JSONFileError as error:
        return f"{side} {error}"
    except ExportError as error:
        return str(error)
    return None


def _genre_jax_folder(folder: Path) -> str | None:
    """The folder genre-jax wrote (``a run folder runs/cnn``) that ``folder`` is or lies in:
    one with our marker (any kind), or a run older than markers (a ``config.json`` with
    ``train`` settings and genre-jax's version: :func:`genre_jax.legacy.unmarked_config`);
    None if there is none."""
    try:
        folder = folder.resolve()
    except RuntimeError:  # a link loop (Python < 3.13): no folder of ours, and no export there
        return None
    for candidate in (folder, *folder.parents):
        kind = dir_kind(candidate) if (candidate / MARKER).is_file() else None
        if kind is not None:
            return f"a {kind} folder of genre-jax, {candidate}"
    config = legacy.unmarked_config(folder, "run")
    if config is not None and "train" in config:
        return f"a run folder of genre-jax, {folder}"
    return None
