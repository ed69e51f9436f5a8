"""Saving and loading fitted pipelines with skops, and the sidecar that binds one to its run.

Loading checks every type the file names against a fixed list (:func:`trusted_types`:
scikit-learn's and numpy's own, and each registered model's ``trusted_types``), so a
tampered file can name no code to run. In a run directory the file is written as
``svm.skops`` for every pipeline model (the name of the first one, kept so that every run
directory reads the same).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import skops.io as sio
from sklearn.pipeline import Pipeline

from genre_jax import legacy
from genre_jax.binding import (
    CheckpointError,
    bind,
    check_binding,
    check_config,
    read_run_config,
)
from genre_jax.config import model_name
from genre_jax.fileio import atomic_write_bytes, atomic_write_json
from genre_jax.models import specs

PIPELINE_FILE = "svm.skops"

# What every pipeline may hold: scikit-learn's steps, calibrations (sigmoid, and the isotonic
# one of rbf.calibrated_svc) and SVC, and numpy's values.
BASE_TRUSTED_TYPES = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.isotonic.IsotonicRegression",
        "sklearn.svm._classes.SVC",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.int32",
        "builtins.slice",
    }
)


class UntrustedModelError(ValueError):
    """A saved model names types outside :func:`trusted_types`; it was not loaded."""


def trusted_types() -> frozenset[str]:
    """Every type a saved pipeline may name: the base list and each registered model's."""
    return BASE_TRUSTED_TYPES.union(*(spec.trusted_types for spec in specs()))


def save_pipeline(model: Pipeline, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` with skops, atomically.

    In a run directory (a ``config.json`` beside ``path``) a sidecar ``<stem>.json`` follows,
    also atomically: the SHA-256 of the file's bytes, the run's model, genres, train and feature
    settings, the digests of its ``config.json`` and a binding digest over them all
    (:func:`genre_jax.binding.bind`), which :func:`load_pipeline` checks. Without a
    ``config.json`` no sidecar is written.
    """
    path = Path(path)
    data = sio.dumps(model)
    atomic_write_bytes(path, data)
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        return
    config = read_run_config(config_path, path)
    train = config.get("train")
    record = {
        "skops_sha256": hashlib.sha256(data).hexdigest(),
        "model": model_name(train),
        "genres": config.get("genres"),
        "train_config": train,
        "feature_config": config.get("features"),
        "feature_hash": config.get("feature_hash"),
    }
    atomic_write_json(path.with_suffix(".json"), bind(record, config_path, "skops_sha256"))


def load_pipeline(path: str | os.PathLike) -> Pipeline:
    """Load a pipeline written by :func:`save_pipeline`, refusing any type outside the trusted list.

    The file's bytes, the sidecar :func:`save_pipeline` writes beside it in a run directory and
    the run's ``config.json`` must be those it recorded (a file older than sidecars:
    :func:`genre_jax.legacy.pipeline_without_sidecar`).

    Raises:
        UntrustedModelError: the file names a type we do not trust, or is not a skops file.
        CheckpointError: the sidecar was edited, the file is not the one it records (replaced,
            tampered), or ``config.json`` was edited since (the differing field named).
    """
    path = Path(path)
    data = path.read_bytes()
    if not legacy.pipeline_without_sidecar(path):
        _check_sidecar(path, data)
    try:
        named = set(sio.get_untrusted_types(data=data))
    except Exception as error:  # skops raises zipfile, JSON and key errors on corrupt files
        raise UntrustedModelError(f"{path}: not a readable skops model file ({error})") from error
    unexpected = sorted(named - trusted_types())
    if unexpected:
        raise UntrustedModelError(f"{path}: refuses to load untrusted types {unexpected}")
    try:
        return sio.loads(data, trusted=sorted(named))
    except Exception as error:  # same: any failure means the file is corrupt
        raise UntrustedModelError(f"{path}: corrupt skops model file ({error})") from error


def _check_sidecar(path: Path, data: bytes) -> None:
    """Refuse ``data`` (the bytes of ``path``) unless its sidecar is intact, records these
    bytes, and the ``config.json`` beside it is the one it was saved with."""
    sidecar = path.with_suffix(".json")
    record = read_run_config(sidecar, path)
    config_path = path.parent / "config.json"
    config = read_run_config(config_path, path) if config_path.is_file() else None
    check_binding(record, "skops_sha256", config, sidecar, "sidecar")
    if hashlib.sha256(data).hexdigest() != record.get("skops_sha256"):
        raise CheckpointError(
            f"{path}: its bytes are not those its sidecar {sidecar.name} records (replaced, "
            "tampered or corrupt)"
        )
    check_config(record, config, config_path, path)
