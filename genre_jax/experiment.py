"""Experiment files: feature and training settings with a description and a protocol, and
ensembles of them (``genre-jax train|crossval --config FILE``).

An experiment file is a small JSON object (:data:`EXPERIMENT_KEYS`); its ``train`` object is
read by :meth:`genre_jax.config.TrainConfig.from_json`, so it may give the model section
(``"model": {"name": "statsvm", "c": 3.0}``) or the older flat names (``"svm_c": 3.0``).
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_jax.config import ConfigError, FeatureConfig, TrainConfig

EXPERIMENT_KEYS = ("description", "protocol", "features", "train", "members")


@dataclass(frozen=True)
class Experiment:
    """An experiment file: feature and training settings, with a description and protocol.

    JSON with any of the keys ``description`` (text), ``protocol`` (text, e.g. "gtzan-dev,
    2 s segments, 5-fold song-level CV"), ``features`` (:class:`FeatureConfig` fields) and
    ``train`` (:class:`TrainConfig` fields); fields left out keep their defaults, and options
    given on the command line override the file. ``features`` is ``None`` when the file has no
    such key (then any store is accepted).

    An ensemble file lists ``members``: paths of other experiment files (relative to it); they
    may read different features (musicnnsvm's 16 kHz ``logc`` beside statsvm's log-mel) but
    must cut the same segments (``segment_seconds``). ``crossval`` prepares a store for each
    distinct feature setting, trains each member on every fold on its store and evaluates the
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

    @property
    def member_features(self) -> tuple[FeatureConfig | None, ...]:
        """Each member's feature settings (for a single experiment: its own, once)."""
        return tuple(m.features for m in self.members) if self.members else (self.features,)


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
    except ValueError as error:  # a number of more digits than Python reads (4,300)
        raise ConfigError(f"{what} {path}: not readable JSON ({str(error)[:80]})") from None
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
        if (member.features is None) != (first.features is None):
            raise ConfigError(
                f"experiment file {path}: of members {names[0]} and {name} one names feature "
                "settings and the other none; an ensemble's members name theirs all, or none"
            )
        if member.features is not None and (
            member.features.segment_seconds != first.features.segment_seconds
        ):
            raise ConfigError(
                f"experiment file {path}: member {name} cuts {member.features.segment_seconds:g} s "
                f"segments, {names[0]} {first.features.segment_seconds:g} s; an ensemble averages "
                "its members segment by segment, so they must cut the same segments"
            )
        for shared in ("folds", "split_seed", "group_by"):
            if getattr(member.train, shared) != getattr(first.train, shared):
                raise ConfigError(
                    f"experiment file {path}: member {name} has another {shared} than {names[0]}"
                )
    return Experiment(first.features, first.train, description, protocol, tuple(members))
