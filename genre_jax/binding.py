"""The digest that binds what a run saved (a checkpoint's metadata, a pipeline's sidecar) to
the run's ``config.json``.

A record carries the SHA-256 of the run's ``config.json`` as canonical JSON (``config_sha256``)
and of each of its top-level keys (``config_keys_sha256``), both over its identity view
(:func:`genre_jax.resume.identity_view`: without what a resume may change, ``config_view``
says so), and ``binding_sha256`` over the digest of the saved content and the canonical JSON of
the rest of the record. :func:`check_binding` refuses a record edited since it was written,
:func:`check_config` a ``config.json`` edited since, each naming the fields that differ.

Apart from :mod:`genre_jax.checkpoint` (orbax, the training state) so that a model's own files
(:mod:`genre_jax.models.sklearn_io`) bind themselves without importing how networks are
trained and saved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genre_jax.fileio import JSONFileError, read_json_object
from genre_jax.resume import identity_view

# Metadata keys this module adds to each step (beside ``state_sha256``).
BINDING_KEYS = ("config_view", "config_sha256", "config_keys_sha256", "binding_sha256")
IDENTITY_VIEW = "identity"  # config_view: the digests are of genre_jax.resume.identity_view
# Metadata fields that copy a part of config.json: (metadata key, path inside config.json).
CONFIG_COPIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("genres", ("genres",)),
    ("model", ("train", "model", "name")),  # older runs name the model itself: not compared
    ("feature_config", ("features",)),
    ("train_config", ("train",)),
    ("feature_hash", ("feature_hash",)),
)


class CheckpointError(ValueError):
    """A run has no usable checkpoint, or its checkpoint does not fit the model it names."""


def canonical_json(obj: Any) -> str:
    """``obj`` as canonical JSON (sorted keys, no spaces): the same text for equal parsed
    objects, however their file was formatted."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_run_config(path: Path, where: Path) -> dict[str, Any]:
    """The parsed ``config.json`` at ``path``; a :class:`CheckpointError` naming ``where`` when
    it is unreadable or not a JSON object."""
    try:
        return read_json_object(path)
    except JSONFileError as error:
        raise CheckpointError(f"{where}: {path} {error}") from error


def config_record(config_path: Path) -> dict[str, Any]:
    """The digests of a run's ``config.json`` recorded beside its model, as canonical JSON: of
    its identity view (:func:`genre_jax.resume.identity_view`: without what a resume may
    change) and of each of the view's top-level keys (both ``None`` when there is no such
    file). ``config_view`` says which view was digested."""
    if not config_path.is_file():
        return {"config_sha256": None, "config_keys_sha256": None}
    config = identity_view(read_run_config(config_path, config_path.parent))
    return {
        "config_view": IDENTITY_VIEW,
        "config_sha256": _sha256(canonical_json(config)),
        "config_keys_sha256": {k: _sha256(canonical_json(v)) for k, v in config.items()},
    }


def _bound_view(record: Mapping[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """What of ``config`` the ``record`` digested: the identity view, or for a step written
    before resumes could change settings (no ``config_view``), the whole file."""
    return identity_view(config) if record.get("config_view") == IDENTITY_VIEW else config


def binding_digest(record: Mapping[str, Any], content_key: str) -> str:
    """SHA-256 over ``record[content_key]`` (the digest of the arrays, or of the model file) and
    the canonical JSON of the whole ``record`` but its ``binding_sha256``."""
    rest = {k: v for k, v in record.items() if k != "binding_sha256"}
    return _sha256(f"{record.get(content_key)}|{canonical_json(rest)}")


def bind(record: Mapping[str, Any], config_path: Path, content_key: str) -> dict[str, Any]:
    """``record`` with the digests of the run's ``config_path`` and the binding digest over it
    all (:data:`BINDING_KEYS`); ``record[content_key]`` is the digest of what it describes."""
    bound = {k: v for k, v in record.items() if k not in BINDING_KEYS}
    bound.update(config_record(config_path))
    bound["binding_sha256"] = binding_digest(bound, content_key)
    return bound


class _Absent:
    def __repr__(self) -> str:
        return "nothing"


_ABSENT = _Absent()


def _differences(saved: Any, now: Any, name: str) -> list[tuple[str, Any, Any]]:
    """``(dotted field, saved value, present value)`` for each leaf where two JSON values
    differ (compared as canonical JSON, so ``1`` and ``1.0`` differ as in the digests)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [
            difference
            for key in sorted(saved.keys() | now.keys(), key=str)
            for difference in _differences(
                saved.get(key, _ABSENT), now.get(key, _ABSENT), f"{name}.{key}"
            )
        ]
    if saved is _ABSENT or now is _ABSENT or canonical_json(saved) != canonical_json(now):
        return [(name, saved, now)]
    return []


def _lookup(config: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = config
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return _ABSENT
        value = value[key]
    return value


def metadata_mismatches(
    record: Mapping[str, Any], config: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """Where a record's copies of ``config.json`` (:data:`CONFIG_COPIES`: genres, model,
    feature and train settings, feature hash) differ from it; fields either lacks are skipped."""
    found: list[tuple[str, Any, Any]] = []
    for key, path in CONFIG_COPIES:
        now = _lookup(config, path)
        if key in record and now is not _ABSENT:
            found += _differences(record[key], now, key)
    return found


def describe_differences(differences: list[tuple[str, Any, Any]], saved: str, now: str) -> str:
    return "; ".join(f"{f}: {a!r} in {saved}, {b!r} in {now}" for f, a, b in differences)


def check_binding(
    record: Mapping[str, Any],
    content_key: str,
    config: Mapping[str, Any] | None,
    where: Path,
    what: str = "metadata",
) -> None:
    """Refuse a ``record`` (a checkpoint's metadata, an SVM sidecar) edited after it was
    written: its binding digest differs. The error names the fields that no longer match the
    run's ``config`` (genres, ``feature_config.n_mfcc`` ...) when it can."""
    if binding_digest(record, content_key) == record.get("binding_sha256"):
        return
    differences = metadata_mismatches(record, config) if config is not None else []
    described = describe_differences(differences, f"the {what}", "config.json")
    detail = f" ({described})" if differences else ""
    raise CheckpointError(
        f"{where}: the {what} was edited after it was saved (its binding digest differs){detail}"
    )


def check_config(
    record: Mapping[str, Any], config: Mapping[str, Any] | None, config_path: Path, where: Path
) -> None:
    """Refuse a run's ``config.json`` that is not the one ``record`` was saved with, naming each
    top-level key that differs and, for the keys the record copies (``features``, ``train``,
    ``genres``, ``feature_hash``), each differing field."""
    recorded = record.get("config_sha256")
    if config is None:
        if recorded is None:
            return
        raise CheckpointError(f"{where}: {config_path} is missing; it was saved with one")
    if recorded is None:
        raise CheckpointError(
            f"{where}: saved without a config.json, yet {config_path} exists (another run's "
            "checkpoint)"
        )
    config = _bound_view(record, config)
    if _sha256(canonical_json(config)) == recorded:
        return
    keys = record.get("config_keys_sha256")
    keys = keys if isinstance(keys, dict) else {}
    copies = {path[0]: record.get(key) for key, path in CONFIG_COPIES if len(path) == 1}
    copies = {k: v for k, v in copies.items() if v is not None}
    problems = []
    for key in sorted(keys.keys() | config.keys()):
        if key not in config:
            problems.append(f"{key} removed")
        elif key not in keys:
            problems.append(f"{key} added")
        elif _sha256(canonical_json(config[key])) != keys[key]:
            differences = _differences(copies[key], config[key], key) if key in copies else []
            problems += [f"{f} {a!r} -> {b!r}" for f, a, b in differences] or [f"{key} changed"]
    raise CheckpointError(
        f"{config_path}: edited since {where} was saved ({'; '.join(problems) or 'reordered'})"
    )
