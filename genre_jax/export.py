"""``genre-jax export``: a trained network as one serialized StableHLO program, or as ONNX.

The program is the whole path from audio to probabilities: segments ``(batch, samples)`` at the
run's sample rate -> the run's features (:func:`genre_jax.features.extract`, in float32) -> the
network in evaluation mode -> softmax, traced by :func:`jax.export.export` with a symbolic
batch size, so one file serves any batch. The weights are constants inside it. The sidecar
(``FILE.json``) names the genres, the sample rate, the segment length, the feature and model
settings and the run it came from, and binds the program by its SHA-256; the program carries
the digest of the sidecar's content in its name (:mod:`genre_jax.exported` loads both and
checks both ways).

``--format onnx`` writes an ONNX model of the network and softmax instead (converted by
jax2onnx, with a symbolic batch size): features ``(batch, frames, coefficients)`` ->
probabilities, as jax2onnx does not convert the feature extraction;
:mod:`genre_jax.exported_onnx` loads it, computes the features with genre_jax's own
extraction, and checks the two files both ways (the ONNX model carries the sidecar's content
digest in its ``metadata_props``). Each conversion is run in ONNX Runtime on a probe batch and
refused unless it gives the network's probabilities within 1e-4.

``--overwrite`` replaces only an export of ours, recognised by its sidecar (a known format and
its own digest matching): any other file at ``OUT`` or ``OUT.json`` stays, and so does every
file inside a folder genre-jax writes (a run, an ensemble, a cross-validation), where no
export is written at all: ``train --overwrite`` replaces such a folder whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
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
    content_digest,
    program_name,
    sidecar_path,
)
from genre_jax.exported_onnx import (
    DIGEST_KEY,
    GENRES_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    import_onnxruntime,
    open_session,
)
from genre_jax.exported_onnx import FORMAT as ONNX_FORMAT
from genre_jax.exported_onnx import check_sidecar as check_onnx_sidecar
from genre_jax.features import extract, extract_jit
from genre_jax.fileio import JSONFileError, atomic_write_bytes, atomic_write_json, read_json_object
from genre_jax.inference import read_run_config
from genre_jax.models import NETWORK
from genre_jax.output_dirs import MARKER, dir_kind
from genre_jax.settings import ConfigError

CARD_SUFFIX = ".md"  # the model card beside the export (genre_jax.model_card.export_card)
_SIDECAR_LIMIT = 1 << 20  # bytes: a sidecar is under 2 KB; a larger file at OUT.json is not one


EXPORT_FORMATS = ("stablehlo", "onnx")  # what --format chooses
ONNX_EXTRA = "pip install 'genre-jax[onnx]'"
_ONNX_OPSET = 23  # jax2onnx's default; onnxruntime 1.22 and later run it
_ONNX_ATOL = 1e-4  # the converted graph against the network in JAX, on a probe batch


def export_run(
    run_dir: str | Path, out: str | Path, *, overwrite: bool = False, format: str = "stablehlo"
) -> dict[str, Any]:
    """Export the network of ``run_dir`` (its best checkpoint) to ``out`` and ``out.json``,
    with its model card ``out.md`` (:func:`genre_jax.model_card.export_card`); return the
    sidecar. ``format``: ``"stablehlo"``, one serialized program from audio
    segments to probabilities (:mod:`genre_jax.exported` loads it), or ``"onnx"``, an ONNX
    model from features to probabilities (:mod:`genre_jax.exported_onnx` loads it).

    Raises:
        ConfigError: the run is a pipeline or an ensemble (only a single network exports);
            ``out`` or its sidecar is a folder, lies in a folder genre-jax writes, or exists
            and is not an export of ours (even with ``overwrite``), or exists and ``overwrite``
            is not set (:func:`check_export_out`); an unknown ``format``; for ONNX, jax2onnx
            or onnxruntime is not installed, or the network does not convert (or converts to
            a graph whose probabilities differ from the network's by more than 1e-4).
        RunConfigError: the run's ``config.json`` is not a run's.
    """
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"export: format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
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
    if format == "onnx":
        jax2onnx = _import_jax2onnx()
    model, meta = load_model(run_dir)
    features = FeatureConfig.from_json(meta["feature_config"])
    graphdef, state = nnx.split(model)
    record = {
        "format": ONNX_FORMAT if format == "onnx" else FORMAT,
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

    def network(x: jax.Array) -> jax.Array:
        logits = nnx.merge(graphdef, state)(x, train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    if format == "onnx":
        program = _onnx_program(jax2onnx, network, features, record)
    else:

        def probabilities(segments: jax.Array) -> jax.Array:
            return network(extract(segments, features))

        # The program carries the digest of everything above (its name, which jax.export
        # keeps), the sidecar the digest of the program: neither can be swapped or edited alone.
        probabilities.__name__ = program_name(record)
        (batch,) = jax.export.symbolic_shape("batch")
        shape = jax.ShapeDtypeStruct((batch, features.segment_samples), jnp.float32)
        program = bytes(jax.export.export(jax.jit(probabilities))(shape).serialize())
    record["program_sha256"] = hashlib.sha256(program).hexdigest()
    record["sidecar_sha256"] = hashlib.sha256(canonical(record)).hexdigest()
    atomic_write_bytes(out, program)
    atomic_write_json(sidecar_path(out), record)
    from genre_jax.model_card import export_card

    atomic_write_bytes(card_path(out), export_card(record, out).encode())
    return record


def card_path(out: str | Path) -> Path:
    """``FILE.md``: the model card written beside the export ``FILE`` (and its ``FILE.json``)."""
    out = Path(out)
    return out.with_name(out.name + CARD_SUFFIX)


def _import_jax2onnx() -> Any:
    """jax2onnx (and onnxruntime, which checks what it converts), or a ConfigError naming the
    extra. Its import is quiet: plugins for libraries other than ours that fail to import
    under this jax log tracebacks."""
    try:
        with _quiet_converter():
            import jax2onnx
        import_onnxruntime()
    except ImportError as error:
        raise ConfigError(
            f"export --format onnx needs jax2onnx and onnxruntime ({error.name or error} is "
            f"not installed): {ONNX_EXTRA}"
        ) from None
    return jax2onnx


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """jax2onnx's and onnx_ir's warnings off while converting (skipped plugins of other
    libraries, shape hints, BatchNorm taken in inference mode, as ours is exported): a
    conversion that fails raises, and the graph is checked after."""
    loggers = [logging.getLogger(name) for name in ("jax2onnx", "onnx_ir", "onnx_ir.serde")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    root = logging.getLogger()
    root.addFilter(_not_from_jax2onnx)  # its BatchNorm plugin warns on the root logger
    try:
        with warnings.catch_warnings():  # its plugins read flax's deprecated Variable.value
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="jax2onnx")
            yield
    finally:
        root.removeFilter(_not_from_jax2onnx)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _not_from_jax2onnx(record: logging.LogRecord) -> bool:
    """Drop a warning jax2onnx logs on the root logger: "BatchNorm exported with
    use_running_average=False; converting to inference mode", which is what we export."""
    return not (record.levelno < logging.ERROR and "jax2onnx" in record.pathname)


def _onnx_program(
    jax2onnx: Any,
    network: Callable[[jax.Array], jax.Array],
    features: FeatureConfig,
    record: dict[str, Any],
) -> bytes:
    """The ONNX model of ``network`` (features ``(batch, frames, coefficients)`` ->
    probabilities, ``batch`` symbolic), carrying the digest of ``record``'s content in its
    metadata; checked against ``network`` in JAX on the features of a probe batch.

    Raises:
        ConfigError: the network does not convert, or its graph's probabilities differ.
    """
    name = record["model"]["name"]
    probe = np.random.default_rng(0).standard_normal((3, features.segment_samples))
    x = np.asarray(extract_jit(jnp.asarray(0.1 * probe, jnp.float32), features))
    version = _dist_version("jax2onnx")
    record["onnx"] = {
        "jax2onnx_version": version,
        "opset": _ONNX_OPSET,
        "input": {"name": INPUT_NAME, "shape": ["batch", *x.shape[1:]], "dtype": "float32"},
        "output": {"name": OUTPUT_NAME, "shape": ["batch", len(record["genres"])]},
    }
    try:
        with _quiet_converter():
            proto = jax2onnx.to_onnx(
                network,
                [("batch", *x.shape[1:])],
                model_name=f"genre_jax_{name}",
                opset=_ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
            )
    except Exception as error:  # jax2onnx raises what its plugins or jax's tracing raise
        reason = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
        raise ConfigError(
            f"export: model {name!r} does not convert to ONNX with jax2onnx {version} "
            f"({type(error).__name__}: {reason[:200]})"
        ) from None
    for key, value in ((DIGEST_KEY, content_digest(record)), (GENRES_KEY, record["genres"])):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    proto.producer_name, proto.producer_version = "genre-jax", _dist_version("genre-jax")
    data = proto.SerializeToString()
    try:
        session = open_session(data, f"the ONNX model of {name}")
    except ExportError as error:
        raise ConfigError(f"export: {error}") from None
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    want = np.asarray(jax.jit(network)(x))
    worst = float(np.max(np.abs(got - want)))
    if not worst <= _ONNX_ATOL:
        raise ConfigError(
            f"export: model {name!r} converts to ONNX (jax2onnx {version}) with probabilities "
            f"that differ from the network's by {worst:.3g} (over {_ONNX_ATOL:g}); export it "
            "with --format stablehlo"
        )
    return data


def _dist_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``unknown``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def check_export_out(out: Path, *, overwrite: bool) -> None:
    """Refuse an ``--out`` whose writing would cost a file that is not an export of ours,
    before the run is loaded; with ``overwrite``, an existing export of ours is replaced.

    Raises:
        ConfigError: ``out``, ``out.json`` or ``out.md`` is a folder; ``out``'s folder is (or
            lies in) a folder genre-jax writes; ``out``, ``out.json`` or ``out.md`` (the model
            card) exists and ``out.json`` is not the sidecar of an export (whatever
            ``overwrite`` says); or an export is there and ``overwrite`` is not set. The
            existing file is named.
    """
    side = sidecar_path(out)
    for path in (out, side, card_path(out)):
        if path.is_dir():
            raise ConfigError(
                f"export: {path} is a folder; --out names the program's file (its sidecar and "
                "model card are written beside it as OUT.json and OUT.md)"
            )
    owner = _genre_jax_folder(out.parent)
    if owner is not None:
        raise ConfigError(
            f"export: --out {out} lies in {owner}; write the export outside the folders "
            "genre-jax writes (their files are the run's own, and --overwrite of the run "
            "replaces them)"
        )
    existing = [p for p in (out, side, card_path(out)) if os.path.lexists(p)]
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
        record = read_json_object(side)
        if isinstance(record, dict) and record.get("format") == ONNX_FORMAT:
            check_onnx_sidecar(record, side)
        else:
            check_sidecar(record, side)
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
