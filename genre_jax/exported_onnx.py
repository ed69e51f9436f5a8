"""Run a model exported by ``genre-jax export --format onnx`` with ONNX Runtime.

``genre-jax export --run-dir DIR --out FILE --format onnx`` writes FILE, an ONNX model of the
run's network in evaluation mode followed by softmax: features ``(batch, frames,
coefficients)`` float32 -> genre probabilities ``(batch, genres)``, for any batch size (the
graph's first dimension is symbolic, ``batch``); and FILE.json beside it, the sidecar: the
genres, the sample rate, the segment length, the feature settings, the run it came from, the
ONNX file's SHA-256 and a digest of the sidecar itself. The features are not in the graph:
jax2onnx does not convert :func:`genre_jax.features.extract` (its padding of a symbolic batch
fails), so this loader computes them with genre_jax's own extraction, the same code ``train``
and ``predict`` use, and the whole path from audio is ``predict``'s::

    from genre_jax.exported_onnx import load   # needs the extra: pip install 'genre-jax[onnx]'
    model = load("cnn.onnx")
    probabilities = model(segments)             # (n, model.segment_samples) float32 -> (n, genres)
    model.genres, model.sample_rate, model.segment_samples
    model.from_features(features)               # (n, frames, coefficients) -> (n, genres)

Other runtimes read FILE alone: its input is ``features``, its output ``probabilities``, and
its metadata (``metadata_props``) names the genres in order.

The two files are bound both ways, as the StableHLO export's are (:mod:`genre_jax.exported`):
the sidecar records the ONNX file's SHA-256 (``program_sha256``), and the ONNX model carries the
digest of the sidecar's content (:func:`genre_jax.exported.content_digest`) in its metadata
under :data:`DIGEST_KEY`. An edited, replaced or mismatched file is refused with
:class:`~genre_jax.exported.ExportError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genre_jax import exported
from genre_jax.exported import ExportError, content_digest

FORMAT = "genre-jax-onnx/1"
KIND = "ONNX export"  # how messages name it
DIGEST_KEY = "genre_jax.sidecar_content_sha256"  # metadata_props: the sidecar's content digest
GENRES_KEY = "genre_jax.genres"  # metadata_props: the genres, a JSON list in output order
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
EXTRA = "pip install 'genre-jax[onnx]'"


def import_onnxruntime() -> Any:
    """``onnxruntime``, or an ImportError in one line naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ModuleNotFoundError(
            f"ONNX exports run with onnxruntime, which is not installed: {EXTRA}",
            name="onnxruntime",
        ) from None
    return onnxruntime


def check_sidecar(record: Any, side: Path) -> dict[str, Any]:
    """``record`` (the parsed ``side``) if it is the sidecar of an ONNX export that nobody
    edited since it was written (this format, its own digest matching).

    Raises:
        ExportError: naming ``side`` and what is wrong.
    """
    return exported.check_sidecar(record, side, (FORMAT,), KIND)


class OnnxExportedModel(exported.ExportedModel):
    """A loaded ONNX export: call it on segments ``(n, segment_samples)`` for probabilities
    (:class:`genre_jax.exported.ExportedModel`'s interface and checks); its ``program`` is the
    onnxruntime session, also named ``session``."""

    def __init__(self, session: Any, sidecar: dict[str, Any]) -> None:
        from genre_jax.config import FeatureConfig

        super().__init__(session, sidecar)
        self.session = session
        self.feature_config = FeatureConfig.from_json(sidecar["feature_config"])

    def _probabilities(self, segments: np.ndarray) -> np.ndarray:
        from genre_jax.features import extract_jit

        return self.from_features(np.asarray(extract_jit(segments, self.feature_config)))

    def from_features(self, features: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, genres)`` of features ``(n, frames, coefficients)``, the run's
        (:func:`genre_jax.features.extract` with :attr:`feature_config`)."""
        features = np.asarray(features, np.float32)
        (spec,) = self.session.get_inputs()
        if features.ndim != 3 or list(features.shape[1:]) != list(spec.shape[1:]):
            raise ValueError(
                f"features of shape {features.shape}; this model reads (n, "
                f"{', '.join(map(str, spec.shape[1:]))})"
            )
        (probabilities,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: features})
        return probabilities


def load(path: str | Path) -> OnnxExportedModel:
    """The ONNX model exported to ``path``, checked against its sidecar ``path.json``.

    Raises:
        ExportError: either file is missing or unreadable, the sidecar was edited (its digest
            differs), the ONNX file's bytes are not those the sidecar records, they are not an
            ONNX model, or the sidecar's content is not the one the model was exported with.
        ModuleNotFoundError: onnxruntime is not installed (the message names the extra).
    """
    path = Path(path)
    data, record, side = exported.read_export(path, (FORMAT,), KIND)
    session = open_session(data, path)
    carried = session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY)
    if carried != content_digest(record):
        raise ExportError(
            f"{side}: not the sidecar {path} was exported with (its genres or settings "
            "differ from those the ONNX model carries; edited, or taken from another export)"
        )
    return OnnxExportedModel(session, record)


def open_session(data: bytes, path: Path | str) -> Any:
    """An ONNX Runtime session (CPU) on the serialized model ``data`` read from ``path``.

    Raises:
        ExportError: ``data`` is not an ONNX model ONNX Runtime runs.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: jax2onnx's shape hints draw merge warnings
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise ExportError(f"{path}: not an ONNX model ONNX Runtime runs ({reason})") from None
