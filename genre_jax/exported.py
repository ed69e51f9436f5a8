"""Run a model exported by ``genre-jax export``, with nothing of genre_jax but this file.

``genre-jax export --run-dir DIR --out FILE`` writes FILE, one serialized StableHLO program
(:mod:`jax.export`): audio segments ``(batch, samples)`` at the run's sample rate ->
features -> network -> genre probabilities ``(batch, genres)``, for any batch size; and
FILE.json beside it: the genres, the sample rate, the segment length, the feature settings,
the run it came from, the program's SHA-256 and a digest of the sidecar itself. This module
imports only jax and numpy (copy it anywhere)::

    from genre_jax.exported import load   # or: from exported import load, a copy of this file
    model = load("cnn.stablehlo")
    probabilities = model(segments)        # (n, model.segment_samples) float32 -> (n, genres)
    model.genres, model.sample_rate, model.segment_samples

A program or sidecar that is not what was written (edited, replaced, truncated) is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from jax import export

FORMAT = "genre-jax-export/1"
SIDECAR_SUFFIX = ".json"


class ExportError(ValueError):
    """An exported model or its sidecar is missing, edited or not one ``export`` wrote."""


def canonical(record: dict[str, Any]) -> bytes:
    """The JSON bytes a sidecar's digest is taken over (every key but ``sidecar_sha256``)."""
    body = {k: v for k, v in record.items() if k != "sidecar_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


class ExportedModel:
    """A loaded export: call it on segments ``(n, segment_samples)`` for probabilities."""

    def __init__(self, program: Any, sidecar: dict[str, Any]) -> None:
        self.program = program
        self.sidecar = sidecar
        self.genres: list[str] = list(sidecar["genres"])
        self.sample_rate: int = int(sidecar["sample_rate"])
        self.segment_samples: int = int(sidecar["segment_samples"])

    def __call__(self, segments: np.ndarray) -> np.ndarray:
        segments = np.asarray(segments, np.float32)
        if segments.ndim != 2 or segments.shape[1] != self.segment_samples:
            raise ValueError(
                f"segments of shape {segments.shape}; this model reads "
                f"(n, {self.segment_samples}) at {self.sample_rate} Hz"
            )
        return np.asarray(self.program.call(segments))


def load(path: str | Path) -> ExportedModel:
    """The model exported to ``path``, checked against its sidecar ``path.json``.

    Raises:
        ExportError: either file is missing or unreadable, the sidecar was edited (its digest
            differs), or the program's bytes are not those the sidecar records.
    """
    path = Path(path)
    side = sidecar_path(path)
    try:
        data = path.read_bytes()
        record = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{path}: cannot read the export or its sidecar ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ExportError(f"{side}: not the sidecar of a genre-jax export ({FORMAT})")
    if hashlib.sha256(canonical(record)).hexdigest() != record.get("sidecar_sha256"):
        raise ExportError(f"{side}: edited after it was written (its digest differs)")
    if hashlib.sha256(data).hexdigest() != record.get("program_sha256"):
        raise ExportError(
            f"{path}: its bytes are not those its sidecar records (replaced or edited)"
        )
    try:
        program = export.deserialize(bytearray(data))
    except Exception as error:  # jax raises flatbuffer and value errors on foreign bytes
        raise ExportError(f"{path}: not a serialized jax.export program ({error})") from None
    return ExportedModel(program, record)
