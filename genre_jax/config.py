"""Every setting as a frozen dataclass; the seed study's values are the defaults.

Configs are data: each round-trips through JSON, hashes to a stable key, and generates its own
command-line options, so a run can be repeated from its ``config.json`` alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting has an invalid value, or two configs that must agree do not."""


def setting(
    default: Any,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its allowed range: ``minimum <= value <= maximum``, ``value >
    above``, ``value < below``, or one of ``choices``. :func:`check_fields` enforces it."""
    bounds = {"minimum": minimum, "above": above, "below": below, "maximum": maximum}
    meta = {k: v for k, v in bounds.items() if v is not None}
    if choices is not None:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


def _range_text(meta: Any) -> str:
    """``>= 1``, ``> 0``, ``in [0, 1)``, ``one of a, b``: the range a field's metadata sets."""
    if "choices" in meta:
        return "one of " + ", ".join(meta["choices"])
    parts = []
    for key, sign in (("minimum", ">="), ("above", ">"), ("below", "<"), ("maximum", "<=")):
        if key in meta:
            parts.append(f"{sign} {meta[key]:g}")
    return " and ".join(parts)


def _type_problem(value: Any, base: type, optional: bool) -> str | None:
    """Why ``value`` is not of the declared type (None when it is)."""
    if value is None:
        return None if optional else f"must be {base.__name__}, not None"
    if base is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, not {value!r}"
        return None
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, not {value!r}"
        return None if math.isfinite(value) else f"must be a finite number, not {value!r}"
    if base is str:
        return None if isinstance(value, str) else f"must be text, not {value!r}"
    return None


def check_fields(config: Any, what: str) -> None:
    """Check every field of a dataclass instance against its declared type and range.

    Types come from the annotations (``int``, ``float``, ``str``, ``bool``, ``X | None``):
    a float must be finite, an int must not be a bool or a float. Ranges and choices come
    from :func:`setting`. The first problem is a :class:`ConfigError` naming the field, e.g.
    ``train setting epochs=2.5: must be a whole number, not 2.5``.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        base, optional = _scalar_type(hints[f.name])
        problem = _type_problem(value, base, optional)
        if problem is None and value is not None and f.metadata:
            meta = f.metadata
            if "choices" in meta:
                ok = value in meta["choices"]
            else:
                ok = (
                    value >= meta.get("minimum", -math.inf)
                    and value > meta.get("above", -math.inf)
                    and value < meta.get("below", math.inf)
                    and value <= meta.get("maximum", math.inf)
                )
            if not ok:
                problem = f"must be {_range_text(meta)}"
        if problem is not None:
            raise ConfigError(f"{what} {f.name}={value!r}: {problem}")


FEATURE_KINDS = ("mfcc", "logmel", "logc")


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes model input (the seed's recipe by default).

    Attributes:
        kind: ``"mfcc"`` (the seed's 13 MFCCs), ``"logmel"`` (dB mel spectrogram) or ``"logc"``
            (``log10(1 + 10000 * mel power)``, the input of the pretrained musicnn).
        sample_rate: target rate in Hz; every file is resampled to it.
        segment_seconds: length of the non-overlapping segments cut from each track, in s.
        n_mfcc: MFCC coefficients kept (``kind="mfcc"``).
        n_fft: FFT size and Hann window length, in samples.
        hop_length: frame step, in samples.
        n_mels: Slaney mel bands.
        fmin: lowest mel band edge, Hz.
        fmax: highest mel band edge, Hz; ``None`` means ``sample_rate / 2``.
        top_db: dB floor below each segment's own maximum; ``None`` disables it (dB kinds).
        amin: power floor before the logarithm (dB kinds).
    """

    kind: str = setting("mfcc", choices=FEATURE_KINDS)
    sample_rate: int = setting(22050, minimum=1000, maximum=768000)
    segment_seconds: float = setting(10.0, above=0, maximum=3600)
    n_mfcc: int = setting(13, minimum=1)
    n_fft: int = setting(2048, minimum=2, maximum=65536)
    hop_length: int = setting(512, minimum=1)
    n_mels: int = setting(128, minimum=1, maximum=1024)
    fmin: float = setting(0.0, minimum=0)
    fmax: float | None = setting(None, above=0)
    top_db: float | None = setting(80.0, minimum=0)
    amin: float = setting(1e-10, above=0)

    def __post_init__(self) -> None:
        check_fields(self, "feature setting")
        if self.segment_samples < self.n_fft // 2 + 1:
            raise ConfigError(
                f"feature setting segment_seconds={self.segment_seconds}: a segment of "
                f"{self.segment_samples} samples is shorter than half the FFT (n_fft={self.n_fft})"
            )
        if self.hop_length > self.segment_samples:
            raise ConfigError(
                f"feature setting hop_length={self.hop_length}: longer than a segment "
                f"({self.segment_samples} samples)"
            )
        if self.n_mfcc > self.n_mels:
            raise ConfigError(f"feature setting n_mfcc={self.n_mfcc}: exceeds n_mels={self.n_mels}")
        if not 0 <= self.fmin < self.max_frequency <= self.sample_rate / 2:
            raise ConfigError(
                f"feature settings fmin={self.fmin}, fmax={self.fmax}: need "
                f"0 <= fmin < fmax <= sample_rate/2 = {self.sample_rate / 2}"
            )

    @property
    def max_frequency(self) -> float:
        """Upper mel edge in Hz (``fmax`` or the Nyquist frequency)."""
        return float(self.sample_rate / 2 if self.fmax is None else self.fmax)

    @property
    def segment_samples(self) -> int:
        """Samples per segment (220500 for the seed's 10 s at 22050 Hz)."""
        return round(self.segment_seconds * self.sample_rate)

    @property
    def n_frames(self) -> int:
        """Frames per segment with centred framing (431 for the seed's settings)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def n_features(self) -> int:
        """Coefficients per frame: ``n_mfcc`` for MFCC, ``n_mels`` for the mel kinds."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureConfig:
        return from_json(cls, data)

    def hash(self) -> str:
        """Stable 12-hex-digit key of the settings (identical configs, identical hash)."""
        return config_hash(self)


def config_hash(config: Any) -> str:
    """SHA-256 of the canonical JSON of a dataclass config, first 12 hex digits."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def from_json(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from a JSON dict; unknown fields are an error naming them."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
    return cls(**data)


def config_diff(expected: Any, actual: Any) -> list[tuple[str, Any, Any]]:
    """Fields where two configs of the same dataclass differ: ``(name, expected, actual)``."""
    a, b = dataclasses.asdict(expected), dataclasses.asdict(actual)
    return [(k, a[k], b.get(k)) for k in a if a[k] != b.get(k)]


def require_same(expected: Any, actual: Any, what: str) -> None:
    """Raise :class:`ConfigError` naming every differing field of two configs."""
    diff = config_diff(expected, actual)
    if diff:
        fields = "; ".join(f"{k}: expected {x!r}, found {y!r}" for k, x, y in diff)
        raise ConfigError(f"{what} does not match: {fields}")


# --- command-line options generated from the dataclasses ---------------------------------------

_UNSET = object()  # option default: "not given", distinct from an explicit 'none'


def _scalar_type(annotation: Any) -> tuple[type, bool]:
    """(base type, optional?) of a field annotation such as ``float | None``."""
    hint = annotation
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    return hint, optional


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add ``--<prefix><field>`` options for every field of ``cls``; defaults stay unset."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} settings")
    for f in dataclasses.fields(cls):
        base, optional = _scalar_type(hints[f.name])
        flag = "--" + (prefix + f.name).replace("_", "-")
        dest = prefix + f.name
        help_text = f"default: {f.default!r}" + (" ('none' disables)" if optional else "")
        if f.metadata:
            help_text += f"; {_range_text(f.metadata)}"
        if base is bool:
            group.add_argument(
                flag, dest=dest, default=_UNSET, action=argparse.BooleanOptionalAction
            )
            continue
        convert = _optional(base) if optional else base
        group.add_argument(flag, dest=dest, default=_UNSET, type=convert, help=help_text)


def _optional(base: type) -> Any:
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else base(text)

    convert.__name__ = base.__name__
    return convert


def dataclass_from_options(
    cls: type[T], args: argparse.Namespace, prefix: str = "", base: T | None = None
) -> T:
    """Apply the options given on the command line on top of ``base`` (or the defaults)."""
    changes = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(args, prefix + f.name, _UNSET)
        if value is not _UNSET:
            changes[f.name] = value
    start = base if base is not None else cls()
    return dataclasses.replace(start, **changes)  # type: ignore[type-var]


SPLITS = ("song", "kfold", "fault-filtered", "seed-leaky")
LR_SCHEDULES = ("constant", "cosine")
TIME_FLIP_MODES = ("double", "random")
SELECTIONS = ("best-val", "last")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (the seed's recipe by default).

    Attributes:
        model: registered model name (``cnn``, ``gru``, ``melstat``, ``svm``, ``statsvm``,
            ``musicnnsvm``).
        epochs: maximum epochs (the seed ran 100).
        batch_size: examples per optimiser step.
        learning_rate: Adam step size (the peak of the schedule).
        lr_schedule: ``constant`` (the seed) or ``cosine``: linear warmup over
            ``warmup_steps`` from 0, then cosine decay to 1 % of ``learning_rate`` at the last
            step of ``epochs``.
        warmup_steps: optimiser steps of linear warmup (``lr_schedule=cosine`` only).
        patience: early stopping on validation loss after this many epochs without a new best
            (best weights restored); 0 disables it.
        select: weights kept at the end: ``best-val`` (lowest validation loss, the seed's
            early-stopping restore) or ``last`` (the final epoch; validation is only reported).
        time_flip: augment with segments reversed in time.
        time_flip_mode: ``double`` (the seed: every training segment is added reversed, doubling
            the set) or ``random`` (each example of each batch is reversed with probability 1/2).
        label_smoothing: cross-entropy targets ``(1 - s) * one_hot + s / classes``; 0: off.
        specaug_masks: SpecAugment: stripes of each kind (time and coefficient) masked per
            training example with the example's mean; 0: off.
        specaug_time: widest time stripe, frames (widths are uniform in 0 ... this).
        specaug_freq: widest coefficient stripe, bands (widths are uniform in 0 ... this).
        seed: initialisation, shuffling and dropout.
        split: ``song`` (stratified 80/10/10 by song), ``kfold`` (song-level, fold ``fold`` of
            ``folds`` as test), ``fault-filtered`` (published GTZAN split), ``seed-leaky`` (the
            seed's segment-level split; leaks songs across parts, for reproduction only).
        split_seed: seed of the split (independent of ``seed``).
        folds: number of folds for ``split=kfold``.
        fold: the test fold for ``split=kfold``.
        val_per_genre: ``kfold`` only: songs per genre held out of training for validation.
        svm_c: SVM regularisation ``C``.
        svm_gamma: SVM RBF ``gamma``: ``scale``, ``auto`` or a number.
        svm_backend: ``jax`` (the RBF kernel matrix computed by JAX, libsvm's solver on it) or
            ``sklearn`` (libsvm computes the kernel); the same predictions, ``jax`` much faster.
        harmonic_percussive: ``statsvm`` only: also summarise the harmonic and the percussive
            part of each log-mel segment (median-filtering separation), tripling the statistics.
        gru_unroll: time steps per loop iteration in the GRU's scan (speed only); 0 picks the
            one measured fastest for the backend (1 on CPU, 8 on a GPU or TPU).
        epoch_driver: ``scan`` (one jitted scan per epoch), ``steps`` (one jitted call per
            step) or ``auto`` (the faster measured for the model and backend); speed only.
    """

    model: str = "cnn"
    epochs: int = setting(100, minimum=1)
    batch_size: int = setting(32, minimum=1)
    learning_rate: float = setting(1e-4, above=0)
    lr_schedule: str = setting("constant", choices=LR_SCHEDULES)
    warmup_steps: int = setting(100, minimum=0)
    patience: int = setting(20, minimum=0)
    select: str = setting("best-val", choices=SELECTIONS)
    time_flip: bool = True
    time_flip_mode: str = setting("double", choices=TIME_FLIP_MODES)
    label_smoothing: float = setting(0.0, minimum=0, below=1)
    specaug_masks: int = setting(0, minimum=0)
    specaug_time: int = setting(10, minimum=0)
    specaug_freq: int = setting(12, minimum=0)
    seed: int = setting(0, minimum=0)
    split: str = setting("song", choices=SPLITS)
    split_seed: int = setting(0, minimum=0)
    folds: int = setting(5, minimum=2)
    fold: int = setting(0, minimum=0)
    val_per_genre: int = setting(1, minimum=0)
    svm_c: float = setting(1.0, above=0)
    svm_gamma: str = "scale"
    svm_backend: str = setting("jax", choices=("jax", "sklearn"))
    harmonic_percussive: bool = False
    gru_unroll: int = setting(0, minimum=0)
    epoch_driver: str = setting("auto", choices=("auto", "scan", "steps"))

    def __post_init__(self) -> None:
        check_fields(self, "train setting")
        if self.split == "kfold" and self.fold >= self.folds:
            raise ConfigError(f"train setting fold={self.fold}: must be in [0, folds={self.folds})")
        if self.svm_gamma not in ("scale", "auto"):
            try:
                gamma = float(self.svm_gamma)
            except ValueError:
                gamma = math.nan
            if not (math.isfinite(gamma) and gamma > 0):
                raise ConfigError(
                    f"train setting svm_gamma={self.svm_gamma!r}: 'scale', 'auto' or a "
                    "positive number"
                )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        return from_json(cls, data)


# --- experiment files ---------------------------------------------------------------------------

EXPERIMENT_KEYS = ("description", "protocol", "features", "train", "members")


@dataclass(frozen=True)
class Experiment:
    """An experiment file: feature and training settings, with a description and protocol.

    JSON with any of the keys ``description`` (text), ``protocol`` (text, e.g. "gtzan-dev,
    2 s segments, 5-fold song-level CV"), ``features`` (:class:`FeatureConfig` fields) and
    ``train`` (:class:`TrainConfig` fields); fields left out keep their defaults, and options
    given on the command line override the file. ``features`` is ``None`` when the file has no
    such key (then any store is accepted).

    An ensemble file lists ``members``: paths of other experiment files (relative to it), all
    with the same features; ``crossval`` trains each member on every fold and evaluates the
    mean of their probabilities (:mod:`genre_jax.ensemble`). Its ``features`` and ``train``
    are the first member's.
    """

    features: FeatureConfig | None
    train: TrainConfig
    description: str = ""
    protocol: str = ""
    members: tuple[Experiment, ...] = ()

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)


EXPERIMENT_MAX_BYTES = 1 << 20  # an experiment file is a few hundred bytes of JSON


def read_settings_file(path: str | Path, what: str = "experiment file") -> Any:
    """The JSON object of a small settings file: a regular file (not a FIFO or a device,
    which would block or never end) of at most :data:`EXPERIMENT_MAX_BYTES`."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: not found") from None
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path}: not a regular file")
    if info.st_size > EXPERIMENT_MAX_BYTES:
        raise ConfigError(
            f"{what} {path}: {info.st_size:,} bytes, more than a settings file's "
            f"{EXPERIMENT_MAX_BYTES:,}"
        )
    try:
        with open(path, "rb") as handle:
            text = handle.read(EXPERIMENT_MAX_BYTES + 1).decode("utf-8")
        return json.loads(text)
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path}: not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{what} {path}: not valid JSON ({error})") from None
    except RecursionError:
        raise ConfigError(f"{what} {path}: JSON nested too deeply") from None


def load_experiment(path: str | Path, _within: tuple[Path, ...] = ()) -> Experiment:
    """Read an experiment file; every problem is a :class:`ConfigError` naming the file.

    ``_within`` holds the ensemble files that led here (a file listing itself, directly or
    through another member, is refused rather than read forever).
    """
    path = Path(path)
    data = read_settings_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"experiment file {path}: must hold a JSON object")
    unknown = sorted(set(data) - set(EXPERIMENT_KEYS))
    if unknown:
        raise ConfigError(
            f"experiment file {path}: unknown key(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(EXPERIMENT_KEYS)})"
        )
    for key in ("description", "protocol"):
        if not isinstance(data.get(key, ""), str):
            raise ConfigError(f"experiment file {path}: {key!r} must be text")
    for key in ("features", "train"):
        if not isinstance(data.get(key, {}), dict):
            raise ConfigError(f"experiment file {path}: {key!r} must be an object of settings")
    description, protocol = data.get("description", ""), data.get("protocol", "")
    if "members" in data:
        return _load_ensemble(path, data, description, protocol, (*_within, path.resolve()))
    try:
        features = FeatureConfig.from_json(data["features"]) if "features" in data else None
        train = TrainConfig.from_json(data.get("train", {}))
    except (ConfigError, TypeError) as error:
        raise ConfigError(f"experiment file {path}: {error}") from None
    return Experiment(features, train, description, protocol)


def _load_ensemble(
    path: Path, data: dict, description: str, protocol: str, within: tuple[Path, ...]
) -> Experiment:
    names = data["members"]
    if set(data) & {"features", "train"}:
        raise ConfigError(f"experiment file {path}: 'members' sets its own features and train")
    if not isinstance(names, list) or len(names) < 2:
        raise ConfigError(f"experiment file {path}: 'members' must list >= 2 experiment files")
    members = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"experiment file {path}: member {name!r} is not the name of an experiment file"
            )
        member_path = path.parent / name
        if member_path.resolve() in within:
            raise ConfigError(f"experiment file {path}: member {name} is the ensemble itself")
        member = load_experiment(member_path, within)
        if member.is_ensemble:
            raise ConfigError(f"experiment file {path}: member {name} is itself an ensemble")
        members.append(member)
    first = members[0]
    for name, member in zip(names[1:], members[1:], strict=True):
        if member.features != first.features:
            raise ConfigError(
                f"experiment file {path}: member {name} reads other features than {names[0]}"
            )
        for shared in ("folds", "split_seed"):
            if getattr(member.train, shared) != getattr(first.train, shared):
                raise ConfigError(
                    f"experiment file {path}: member {name} has another {shared} than {names[0]}"
                )
    return Experiment(first.features, first.train, description, protocol, tuple(members))
