"""The Python API in one call: ``genre_jax.load(path)`` and the model it returns.

::

    import genre_jax

    model = genre_jax.load("runs/cnn")          # a run, an ensemble, or an exported program
    model.genres, model.sample_rate
    model.predict("song.mp3")                   # [{"label": "rock", "score": 0.81}, ...]
    model.predict(["a.wav", "b.ogg"], top_k=3)  # one list per file
    model.predict(waveform, sample_rate=44100)  # an array in memory, resampled to the model's
    scores = model.predict("song.mp3", window_hop=1.0)
    scores.windows                              # per window: start, end and its scores
    model.embed("song.mp3")                     # a network's penultimate layer, mean over segments

Each prediction is the Hugging Face pipeline convention, a list of ``{"label", "score"}``
sorted by score (the ``top_k`` first; every genre when ``top_k`` is None), as a
:class:`Prediction`: a list that also carries the per-segment (or, with ``window_hop``,
per-window) probabilities and the command's own record
(:class:`~genre_jax.predict.TrackPrediction`).
A file is read exactly as ``genre-jax predict`` reads it (the same code: streamed, any
format, full segments, a file shorter than one segment zero-padded to one), so the
probabilities are the command's. A waveform in memory is down-mixed (channel average) and
resampled with soxr's HQ filter, as a decoded file is, then cut the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.config import ConfigError

PathLike = str | os.PathLike
Input = PathLike | np.ndarray


class PredictError(ValueError):
    """An input that gives no prediction (a file that cannot be read, a waveform that is not
    audio): one line naming the input and the reason."""


class Prediction(list):
    """The scores of one input, ``[{"label": genre, "score": probability}, ...]`` highest
    first (Hugging Face's pipeline convention), with what they were computed from.

    Attributes:
        track: the full record, as ``genre-jax predict --json`` prints it.
        genres: the model's genres, the columns of :attr:`probabilities`.
    """

    def __init__(self, scores: list[dict[str, Any]], track: Any, genres: Sequence[str]) -> None:
        super().__init__(scores)
        self.track = track
        self.genres = list(genres)

    @property
    def probabilities(self) -> np.ndarray:
        """``(rows, genres)``: each segment's (or, with a window hop, each window's)
        probabilities in the model's genre order."""
        return np.asarray(self.track.segment_probabilities, np.float64)

    @property
    def starts(self) -> np.ndarray:
        """``(rows,)``: each row's start in seconds."""
        return np.asarray(self.track.window_starts, np.float64)

    @property
    def windows(self) -> list[dict[str, Any]]:
        """Per window (or segment): its ``start`` and ``end`` in seconds and its ``scores``,
        every genre highest first in the same convention."""
        length = self.track.window_seconds
        return [
            {
                "start": float(start),
                "end": float(start + length),
                "scores": _scores(row, self.genres),
            }
            for start, row in zip(self.starts, self.probabilities, strict=True)
        ]


def _scores(row: np.ndarray, genres: Sequence[str]) -> list[dict]:
    """Every genre's ``{"label", "score"}`` in ``row``, highest first (ties in genre order)."""
    order = np.argsort(-np.asarray(row), kind="stable")
    return [{"label": genres[i], "score": float(row[i])} for i in order]


@dataclass(frozen=True)
class _Reader:
    """One way of turning audio into probability rows: a model's sample rate, segment length,
    and what it computes of a chunk of segments (None when their features are not finite)."""

    sample_rate: int
    segment_samples: int
    rows_of: Callable[[np.ndarray], np.ndarray | None]


class Model:
    """A trained model, whatever it was saved as (see :func:`load`).

    Attributes:
        path: what was loaded.
        kind: ``"run"``, ``"ensemble"`` or ``"export"``.
        name: the model's name (``cnn``, ``svm``, an ensemble's ``ensemble(cnn+gru)``...).
        genres: the genres it tells apart, in the order of its probabilities.
        sample_rate: the rate it reads audio at (a mixed ensemble: its first member's).
        segment_seconds: the length of audio each of its answers reads.
    """

    def __init__(self, path: Path, kind: str, name: str, genres: Sequence[str], readers) -> None:
        self.path = path
        self.kind = kind
        self.name = name
        self.genres = list(genres)
        self._readers: list[_Reader] = list(readers)
        self.sample_rate = self._readers[0].sample_rate
        self.segment_seconds = self._readers[0].segment_samples / self.sample_rate
        self.predictor = None  # a run's or an ensemble's Predictor (genre_jax.inference)

    def __repr__(self) -> str:
        return (
            f"<genre_jax {self.kind} {self.name!r}: {len(self.genres)} genres, "
            f"{self.segment_seconds:g} s at {self.sample_rate} Hz, from {self.path}>"
        )

    # --- predict ---------------------------------------------------------------------------

    def predict(
        self,
        x: Input | Sequence[Input],
        *,
        sample_rate: int | None = None,
        top_k: int | None = None,
        window_hop: float | None = None,
    ) -> Prediction | list[Prediction]:
        """The genre scores of ``x``: a path, a waveform, or a list of either.

        Args:
            x: an audio file (any format, any length), a waveform ``(samples,)`` or
                ``(channels, samples)`` at ``sample_rate``, or a list of these.
            sample_rate: the rate of a waveform (required for one; not for files, whose
                rate is read from them).
            top_k: how many genres each list holds, highest first; all when None.
            window_hop: score windows of one segment every ``window_hop`` seconds (the genre
                over time, :attr:`Prediction.windows`) instead of non-overlapping segments.

        Returns:
            A :class:`Prediction` for one input, a list of them for a list.

        Raises:
            PredictError: an input gives no prediction (named, with the reason).
            ConfigError: ``top_k`` below 1 or a window hop out of range.
        """
        if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
            raise ConfigError(f"predict setting top_k={top_k}: must be a whole number >= 1")
        if window_hop is not None:
            from genre_jax.windows import check_hop

            check_hop(window_hop)
        inputs, single = _inputs(x)
        answers = [self._predict_one(item, sample_rate, top_k, window_hop) for item in inputs]
        return answers[0] if single else answers

    def _predict_one(
        self, item: Input, sample_rate: int | None, top_k: int | None, hop: float | None
    ) -> Prediction:
        from genre_jax.predict import track_prediction

        label, found = _reader_rows(self._readers, item, sample_rate, hop, "probabilities")
        track = track_prediction(label, self.genres, found, top_k or len(self.genres))
        scores = [{"label": genre, "score": score} for genre, score in track.top_k]
        return Prediction(scores, track, self.genres)

    # --- embed -----------------------------------------------------------------------------

    def embed(
        self,
        x: Input | Sequence[Input],
        *,
        sample_rate: int | None = None,
        per_segment: bool = False,
    ) -> np.ndarray | list[np.ndarray]:
        """A network run's penultimate layer (its ``embed`` method) of ``x`` (as
        :meth:`predict` takes it): per input the mean over its segments ``(width,)``, or with
        ``per_segment`` every segment's row ``(segments, width)``; float32.

        Raises:
            ConfigError: the model is an ensemble, a pipeline or an export (they have no one
                embedding layer; ``genre-jax embed --model musicnn`` embeds with the
                pretrained tagger).
            PredictError: an input gives no embedding (named, with the reason).
        """
        if self.kind == "export":
            raise ConfigError(
                f"{self.path}: an export computes probabilities only; embed with its run"
            )
        from genre_jax.embedders import network_embedder
        from genre_jax.segment_rows import features_rows

        embedder = network_embedder(self.path)
        config = embedder.feature_config
        reader = _Reader(
            config.sample_rate, config.segment_samples, features_rows(config, embedder.rows_of)
        )
        inputs, single = _inputs(x)
        rows = []
        for item in inputs:
            _, (found,) = _reader_rows([reader], item, sample_rate, None, "embeddings")
            found_rows = np.asarray(found.rows, np.float32)
            rows.append(found_rows if per_segment else found_rows.mean(axis=0))
        return rows[0] if single else rows


def _reader_rows(
    readers: Sequence[_Reader], item: Input, sample_rate: int | None, hop: float | None, what: str
) -> tuple[str, list]:
    """What each reader computes of ``item``: a label for messages and records, and one
    :class:`~genre_jax.segment_rows.FileRows` per reader (a file read as ``genre-jax
    predict`` reads it; a waveform resampled to each reader's rate)."""
    from genre_jax.segment_rows import FileRefused, audio_file_rows, stream_rows

    try:
        if isinstance(item, np.ndarray):
            mono = _mono(item, sample_rate)
            label = f"<waveform of {mono.shape[0]} samples at {sample_rate} Hz>"
            return label, [
                stream_rows(
                    [_resample(mono, sample_rate, r.sample_rate)],
                    r.sample_rate,
                    r.segment_samples,
                    r.rows_of,
                    what=what,
                    hop_seconds=hop,
                )
                for r in readers
            ]
        if sample_rate is not None:
            raise PredictError(
                f"{item}: sample_rate={sample_rate} is for a waveform; a file's own rate is "
                "read from it"
            )
        return str(item), [
            audio_file_rows(
                item, r.sample_rate, r.segment_samples, r.rows_of, what=what, hop_seconds=hop
            )
            for r in readers
        ]
    except FileRefused as refused:
        what_input = "waveform" if isinstance(item, np.ndarray) else str(item)
        raise PredictError(f"{what_input}: {refused.reason}") from None


def _inputs(x: Any) -> tuple[list[Input], bool]:
    """``x`` as a list of inputs, and whether it was one input."""
    if isinstance(x, str | os.PathLike | np.ndarray):
        return [x], True
    if isinstance(x, Sequence) and not isinstance(x, bytes) and len(x) > 0:
        for item in x:
            if not isinstance(item, str | os.PathLike | np.ndarray):
                raise PredictError(
                    f"an input of type {type(item).__name__}: give a path or a waveform array"
                )
        return list(x), False
    raise PredictError(
        f"an input of type {type(x).__name__}: give a path, a waveform array or a non-empty "
        "list of them"
    )


def _mono(waveform: np.ndarray, sample_rate: int | None) -> np.ndarray:
    """A waveform ``(samples,)`` or ``(channels, samples)`` as mono float32 (the channels'
    mean, as a decoded file's), checked to be audio."""
    from genre_jax.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if sample_rate is None:
        raise PredictError("waveform: give its sample_rate (the rate it was recorded at)")
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate:
        raise PredictError(f"waveform: sample_rate={sample_rate!r} is not a whole number of Hz")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise PredictError(
            f"waveform: sample_rate={sample_rate} Hz is outside {MIN_SAMPLE_RATE}.."
            f"{MAX_SAMPLE_RATE} Hz"
        )
    if not np.issubdtype(waveform.dtype, np.number) or np.iscomplexobj(waveform):
        raise PredictError(f"waveform: of dtype {waveform.dtype}, not real samples")
    if np.issubdtype(waveform.dtype, np.signedinteger):  # PCM: full scale is 2 ** (bits - 1)
        waveform = waveform / np.float32(2 ** (8 * waveform.dtype.itemsize - 1))
    elif np.issubdtype(waveform.dtype, np.unsignedinteger):
        raise PredictError(f"waveform: of dtype {waveform.dtype}; give float or signed PCM")
    if waveform.ndim == 2:
        if waveform.shape[0] > waveform.shape[1]:
            raise PredictError(
                f"waveform: of shape {waveform.shape}; a 2-D waveform is (channels, samples), "
                "as librosa gives it (transpose soundfile's (samples, channels))"
            )
        waveform = waveform.T.astype(np.float32).mean(axis=1, dtype=np.float32)
    elif waveform.ndim != 1:
        raise PredictError(
            f"waveform: of shape {waveform.shape}; give (samples,) or (channels, samples)"
        )
    mono = np.ascontiguousarray(waveform, np.float32)
    if mono.shape[0] == 0:
        raise PredictError("waveform: has no samples")
    if not np.isfinite(mono).all():
        raise PredictError("waveform: contains NaN or infinite samples")
    return mono


def _resample(mono: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``mono`` at ``target`` Hz by soxr's HQ filter, as :func:`genre_jax.audio.load_audio`
    resamples a decoded file."""
    if rate == target:
        return mono
    import soxr

    return np.ascontiguousarray(soxr.resample(mono, rate, target, quality="HQ"), np.float32)


# --- load ----------------------------------------------------------------------------------------


def load(path: PathLike, *, batch_size: int = 64) -> Model:
    """The model saved at ``path``, ready to predict.

    ``path`` is a run directory (``genre-jax train``), an ensemble (``genre-jax ensemble``)
    or an exported program (``genre-jax export``: the program's file, its sidecar
    ``FILE.json`` beside it). Each is checked as the commands check it: a run's checkpoint or
    pipeline file against its ``config.json``, an ensemble's members against what they were
    when it was made, an export's program and sidecar against each other.

    Raises:
        ConfigError: ``path`` is none of these (named, with why).
        CheckpointError, RunConfigError, ExportError: as the commands raise them.
    """
    path = Path(path)
    if path.is_dir():
        return _load_run(path, batch_size)
    from genre_jax.exported import sidecar_path

    side = sidecar_path(path)
    if path.is_file() and side.is_file():
        return _load_export(path, side)
    if not path.exists():
        raise ConfigError(f"{path}: does not exist (give a run directory or an export's file)")
    raise ConfigError(
        f"{path}: not a run directory, an ensemble or an export (an export's file has its "
        f"sidecar {side.name} beside it)"
    )


def _load_run(path: Path, batch_size: int) -> Model:
    from genre_jax.inference import load_predictor

    predictor = load_predictor(path, batch_size)
    from genre_jax.segment_rows import features_rows

    readers = []
    for reader in predictor.readers:
        config = reader.feature_config
        readers.append(
            _Reader(
                config.sample_rate,
                config.segment_samples,
                features_rows(config, reader.predict_proba),
            )
        )
    kind = "ensemble" if predictor.members else "run"
    model = Model(path, kind, predictor.model_name, predictor.genres, readers)
    model.predictor = predictor
    return model


def _load_export(path: Path, side: Path) -> Model:
    try:
        record = json.loads(side.read_text())
        fmt = str(record.get("format", "")) if isinstance(record, dict) else ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        fmt = ""  # the loader names what is wrong with it
    if fmt.startswith("genre-jax-onnx/"):
        from genre_jax import exported_onnx as loader
    else:
        from genre_jax import exported as loader
    program = loader.load(path)
    name = str(program.sidecar.get("model", {}).get("name", "export"))

    def rows_of(segments: np.ndarray) -> np.ndarray:
        return np.asarray(program(segments), np.float64)

    reader = _Reader(program.sample_rate, program.segment_samples, rows_of)
    return Model(path, "export", name, program.genres, [reader])
