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

The two files are bound both ways. The sidecar records the program's SHA-256; the program
carries the digest of the sidecar's content (:func:`content_digest`: every field but the two
digests) in its function's name, ``genre_jax_export_<sha256>`` (``Exported.fun_name``, which
``jax.export`` serializes with the program), so a sidecar whose genres were reversed and its
own digest recomputed no longer matches its program. (Digests without a key bind files, they
do not authenticate them: someone who rewrites the program's name as well and recomputes both
digests is not stopped, as no check short of a signature would stop them.)

Exports written before the program carried that digest (format ``genre-jax-export/1``) still
load, with a :class:`UnboundExportWarning`: their sidecar is checked by its own digest only, as
it always was, and refusing them would strand a deployed model whose run may be gone; export
the run again to bind them. A program that carries a digest is checked whatever format its
sidecar claims, so relabelling a new export as an old one does not skip the check.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from jax import export

FORMAT = "genre-jax-export/2"  # the program carries its sidecar's content digest
UNBOUND_FORMAT = "genre-jax-export/1"  # before it did: the sidecar binds the program only
FORMATS = (UNBOUND_FORMAT, FORMAT)
SIDECAR_SUFFIX = ".json"
PROGRAM_NAME_PREFIX = "genre_jax_export_"
_DIGESTS = ("program_sha256", "sidecar_sha256")


class ExportError(ValueError):
    """An exported model or its sidecar is missing, edited or not one ``export`` wrote."""


class UnboundExportWarning(UserWarning):
    """An export written before its program carried its sidecar's digest was loaded."""


def canonical(record: dict[str, Any], without: tuple[str, ...] = ("sidecar_sha256",)) -> bytes:
    """The canonical JSON bytes of ``record`` less the keys ``without``: what the sidecar's
    own digest is taken over (every key but ``sidecar_sha256``)."""
    body = {k: v for k, v in record.items() if k not in without}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def content_digest(record: dict[str, Any]) -> str:
    """SHA-256 of a sidecar's content, every field but its two digests: what the program
    carries (it is fixed before the program exists, which the program's digest is not)."""
    return hashlib.sha256(canonical(record, _DIGESTS)).hexdigest()


def program_name(record: dict[str, Any]) -> str:
    """The function name a program bound to the sidecar ``record`` is exported under."""
    return PROGRAM_NAME_PREFIX + content_digest(record)


def sidecar_path(path: str | Path) -> Path:
    """``FILE.json``: where the sidecar of the program ``FILE`` is."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def check_sidecar(
    record: Any, side: Path, formats: tuple[str, ...] = FORMATS, kind: str = "export"
) -> dict[str, Any]:
    """``record`` (the parsed ``side``) if it is a sidecar that ``export`` wrote and nobody
    edited since (one of ``formats``, the newest last; its own digest matching). ``kind``
    names the export in the message (``ONNX export`` for :mod:`genre_jax.exported_onnx`).

    Raises:
        ExportError: naming ``side`` and what is wrong.
    """
    if not isinstance(record, dict) or record.get("format") not in formats:
        raise ExportError(f"{side}: not the sidecar of a genre-jax {kind} ({formats[-1]})")
    if hashlib.sha256(canonical(record)).hexdigest() != record.get("sidecar_sha256"):
        raise ExportError(f"{side}: edited after it was written (its digest differs)")
    return record


def read_export(
    path: Path, formats: tuple[str, ...] = FORMATS, kind: str = "export"
) -> tuple[bytes, dict[str, Any], Path]:
    """The bytes of the export at ``path``, its sidecar's record and the sidecar's path, once
    the sidecar is one ``export`` wrote (:func:`check_sidecar` with ``formats`` and ``kind``)
    and the bytes are those it records (a StableHLO program, or an ONNX graph).

    Raises:
        ExportError: either file is missing or unreadable, the sidecar was edited, or the
            bytes are not those the sidecar records.
    """
    side = sidecar_path(path)
    try:
        data = path.read_bytes()
        record = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{path}: cannot read the export or its sidecar ({error})") from None
    record = check_sidecar(record, side, formats, kind)
    if hashlib.sha256(data).hexdigest() != record.get("program_sha256"):
        raise ExportError(
            f"{path}: its bytes are not those its sidecar records (replaced or edited)"
        )
    return data, record, side


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
        return self._probabilities(segments)

    def _probabilities(self, segments: np.ndarray) -> np.ndarray:
        """The program's probabilities of checked ``(n, segment_samples)`` float32 segments."""
        return np.asarray(self.program.call(segments))


def load(path: str | Path) -> ExportedModel:
    """The model exported to ``path``, checked against its sidecar ``path.json``.

    Raises:
        ExportError: either file is missing or unreadable, the sidecar was edited (its digest
            differs), the program's bytes are not those the sidecar records, or the sidecar's
            content is not the one the program was exported with.

    Warns:
        UnboundExportWarning: an export of format ``genre-jax-export/1``, whose program does
            not carry its sidecar's digest (it loads as before; export again to bind it).
    """
    path = Path(path)
    data, record, side = read_export(path)
    try:
        program = export.deserialize(bytearray(data))
    except Exception as error:  # jax raises flatbuffer and value errors on foreign bytes
        raise ExportError(f"{path}: not a serialized jax.export program ({error})") from None
    _check_binding(program.fun_name, record, path, side)
    return ExportedModel(program, record)


def _check_binding(name: str, record: dict[str, Any], path: Path, side: Path) -> None:
    """The program's name must carry the digest of the sidecar's content (see the module's
    docstring); an unbound program is accepted only beside a format-1 sidecar."""
    if name.startswith(PROGRAM_NAME_PREFIX):
        if name != program_name(record):
            raise ExportError(
                f"{side}: not the sidecar {path} was exported with (its genres or settings "
                "differ from those the program carries; edited, or taken from another export)"
            )
        return
    if record["format"] != UNBOUND_FORMAT:
        raise ExportError(
            f"{path}: does not carry the digest of its sidecar, which every {record['format']} "
            "program does (replaced)"
        )
    warnings.warn(
        f"{path}: an export of format {UNBOUND_FORMAT}, whose program does not carry its "
        "sidecar's digest (its genres are checked by the sidecar's own digest only); export "
        "the run again to bind them",
        UnboundExportWarning,
        stacklevel=3,
    )
