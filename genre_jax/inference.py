"""Load a finished run for inference, from its files alone (no optimiser, no training code).

``Predictor.predict_proba(features)`` gives class probabilities for ``(segments, frames,
coefficients)`` features, the same for every registered model.
"""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genre_jax.checkpoint import CheckpointError, load_model
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.ensemble import check_members, ensemble_name, is_ensemble, is_mixed, member_dirs
from genre_jax.fileio import JSONFileError, read_json_object
from genre_jax.fit_pipeline import segment_labels
from genre_jax.models import PIPELINE
from genre_jax.models.rbf import flatten
from genre_jax.models.sklearn_io import PIPELINE_FILE, load_pipeline
from genre_jax.parallel import replicated, shard_batch
from genre_jax.settings import config_diff


class RunConfigError(ConfigError):
    """A run directory's ``config.json`` is not a run's or an ensemble's (a list, an export's
    sidecar, a section of the wrong type): one line naming the file and what is wrong."""


_EXPORT_FORMAT_PREFIX = "genre-jax-export/"  # genre_jax.exported.FORMAT's family


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of the run (or ensemble) ``run_dir``, checked to have the shape one
    genre-jax wrote before anything reads a field of it.

    A run's holds ``train`` and ``features`` (settings objects, which must parse), ``genres``
    (distinct names) and ``split`` (an object); an ensemble's also ``members`` (paths) with
    one ``member_models`` name each and, for a mixed one, one ``member_features`` object each.
    What a field's value means (the split's fields, the songs' digests, the checkpoint's
    binding) is checked where it is used.

    Raises:
        CheckpointError: ``run_dir`` has no ``config.json``.
        RunConfigError: the file is not JSON, not an object, an export's sidecar, or a field
            is missing or of the wrong type (named, with the file).
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no config.json)")
    try:
        config = read_json_object(path)
    except JSONFileError as error:
        raise RunConfigError(f"{path}: {error}; not a run's config.json") from None
    if str(config.get("format", "")).startswith(_EXPORT_FORMAT_PREFIX):
        raise RunConfigError(
            f"{path}: is the sidecar of a genre-jax export, not a run's config.json"
        )

    def refuse(what: str) -> typing.NoReturn:
        raise RunConfigError(f"{path}: {what}; not a run's config.json")

    for key in ("train", "features", "split"):
        if key not in config:
            refuse(f"has no {key!r}")
        if not isinstance(config[key], dict):
            refuse(f"{key!r} is {_json_type(config[key])}, not an object")
    genres = config.get("genres")
    if not _strings(genres) or not genres or len(set(genres)) != len(genres):
        refuse(f"'genres' must be a list of distinct names, not {_short(genres)}")
    try:
        TrainConfig.from_json(config["train"])
        FeatureConfig.from_json(config["features"])
    except ConfigError as error:
        refuse(str(error))
    if is_ensemble(config):
        members = config["members"]
        if not _strings(members) or not members or not all(members):
            refuse(f"'members' must be a list of run directories, not {_short(members)}")
        models = config.get("member_models")
        if not _strings(models) or len(models) != len(members):
            refuse(f"'member_models' must name each of the {len(members)} members' models")
        if is_mixed(config):
            mixed = config["member_features"]
            if not isinstance(mixed, list) or len(mixed) != len(members):
                refuse(f"'member_features' must hold one object per member ({len(members)})")
            for index, features in enumerate(mixed):
                if not isinstance(features, dict):
                    refuse(f"'member_features'[{index}] is not an object")
                try:
                    FeatureConfig.from_json(features)
                except ConfigError as error:
                    refuse(f"'member_features'[{index}]: {error}")
    return config


def _json_type(value: Any) -> str:
    """``a list``, ``a number``: what a JSON value is, for an error message."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    kinds = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def make_predict(
    graphdef: nnx.GraphDef, batch_size: int, mesh: Any = None, *, embed: bool = False
) -> Callable:
    """Jitted ``predict(model_state, x) -> logits`` in evaluation mode, in fixed-size batches;
    with ``embed``, the network's penultimate layer instead (its ``embed`` method, see
    :mod:`genre_jax.models.spec`).

    With a ``mesh`` (see :mod:`genre_jax.parallel`), each batch is split along its ``data``
    axis; ``batch_size`` must then be a multiple of the number of devices.
    """

    @jax.jit
    def predict(model_state: Any, x: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, model_state)
        apply = model.embed if embed else model
        n = x.shape[0]
        batches = math.ceil(n / batch_size)
        padded = jnp.pad(x, [(0, batches * batch_size - n), (0, 0), (0, 0)])
        chunks = padded.reshape(batches, batch_size, *x.shape[1:])
        logits = jax.lax.map(lambda chunk: apply(shard_batch(chunk, mesh), train=False), chunks)
        logits = logits.reshape(batches * batch_size, -1)[:n]
        if mesh is not None:  # every process can read the result
            logits = jax.lax.with_sharding_constraint(logits, replicated(mesh))
        return logits

    return predict


@dataclass
class Predictor:
    """A trained model with the settings it was trained under."""

    run_dir: Path
    model_name: str
    genres: list[str]
    train_config: TrainConfig
    feature_config: FeatureConfig
    _predict: Any
    _labels: Any = None
    members: list[Predictor] | None = None  # an ensemble's
    mixed: bool = False  # an ensemble whose members read different features

    @property
    def readers(self) -> list[Predictor]:
        """The predictors that each read features of their own settings: a mixed ensemble's
        members, else this predictor alone."""
        return list(self.members or []) if self.mixed else [self]

    def require_one_feature_set(self) -> None:
        """Refuse, naming the run, features for a mixed ensemble (each member reads its own)."""
        if self.mixed:
            raise ConfigError(
                f"{self.run_dir}: an ensemble whose members read different features takes each "
                "member's own; evaluate it on its members' stores, or predict audio files"
            )

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(segments, classes)`` of ``(segments, frames, coeffs)``."""
        self.require_one_feature_set()
        features = np.asarray(features, np.float32)
        expected = (self.feature_config.n_frames, self.feature_config.n_features)
        if features.ndim != 3 or features.shape[1:] != expected:
            raise ValueError(
                f"features of shape {features.shape}; this run needs (segments, {expected[0]}, "
                f"{expected[1]})"
            )
        if features.shape[0] == 0:
            return np.zeros((0, len(self.genres)))
        return np.asarray(self._predict(features), np.float64)

    def predict(self, features: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
        """Segment labels: the argmax of the probabilities, or for the SVM the SVC's own vote
        (as the seed's ``SVC(probability=True).predict``). Pass ``probabilities`` already
        computed for these features to avoid computing them again."""
        if self._labels is not None and len(features):
            self.predict_proba(features[:1])  # the same shape check
            return np.asarray(self._labels(np.asarray(features, np.float32)))
        if probabilities is None:
            probabilities = self.predict_proba(features)
        return probabilities.argmax(axis=1)


def load_predictor(run_dir: str | Path, batch_size: int = 64) -> Predictor:
    """The model of ``run_dir`` (its best checkpoint, or its SVM file) ready to predict.

    A network's genres and train and feature settings are those of its verified checkpoint
    (:func:`genre_jax.checkpoint.load_model`, which also refuses a ``config.json`` edited
    since). An ensemble directory (:mod:`genre_jax.ensemble`) gives the mean probability of its
    members' predictors, labels by its argmax, once each member is checked to be the run it was
    when the ensemble was made (:func:`genre_jax.ensemble.check_members`); an ensemble that
    contains itself, or a member whose feature settings or genres are not those of the
    ensemble's ``config.json``, is a
    :class:`~genre_jax.checkpoint.CheckpointError`. A ``config.json`` (the run's, or a
    member's) that is not shaped as one genre-jax wrote is a :class:`RunConfigError`
    (:func:`read_run_config`), before any other file is read.
    """
    return _load_predictor(Path(run_dir), batch_size, ())


def _load_predictor(run_dir: Path, batch_size: int, loading: tuple[Path, ...]) -> Predictor:
    """:func:`load_predictor`; ``loading`` holds the resolved ensembles being loaded, outermost
    first, of which ``run_dir`` is a member."""

    config = read_run_config(run_dir)
    train_config = TrainConfig.from_json(config["train"])
    feature_config = FeatureConfig.from_json(config["features"])
    if is_ensemble(config):
        inside = (*loading, run_dir.resolve())
        members = []
        for member in member_dirs(run_dir, config):
            resolved = member.resolve()
            if resolved == inside[-1]:
                raise CheckpointError(f"{run_dir}: ensemble member {member} is the ensemble itself")
            if resolved in inside:
                raise CheckpointError(
                    f"{run_dir}: ensemble member {member} contains this ensemble (through its "
                    "members)"
                )
            predictor = _load_predictor(member, batch_size, inside)
            _check_member(predictor, config, run_dir, len(members))
            members.append(predictor)
        check_members(run_dir, config)  # each member as it was when the ensemble was made

        def mean_probabilities(x: np.ndarray) -> np.ndarray:
            return np.mean([m.predict_proba(x) for m in members], axis=0)

        return Predictor(
            run_dir,
            ensemble_name(config),
            list(config["genres"]),
            train_config,
            feature_config,
            mean_probabilities,
            members=members,
            mixed=is_mixed(config),
        )
    if train_config.spec.family == PIPELINE:
        pipeline = load_pipeline(run_dir / PIPELINE_FILE)  # checks config.json by its sidecar

        def predict(x: np.ndarray) -> np.ndarray:
            return pipeline.predict_proba(flatten(x))

        def labels(x: np.ndarray) -> np.ndarray:
            return segment_labels(train_config.spec, pipeline, x)

        genres = config["genres"]
    else:
        model, meta = load_model(run_dir)
        graphdef, state = nnx.split(model)
        logits_fn = make_predict(graphdef, batch_size)

        def predict(x: np.ndarray) -> np.ndarray:
            logits = np.asarray(logits_fn(state, jnp.asarray(x)), np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            return probs / probs.sum(axis=1, keepdims=True)

        genres = meta["genres"]
        train_config = TrainConfig.from_json(meta["train_config"])
        feature_config = FeatureConfig.from_json(meta["feature_config"])
        labels = None
    return Predictor(
        run_dir, train_config.model, list(genres), train_config, feature_config, predict, labels
    )


def _check_member(member: Predictor, config: dict[str, Any], run_dir: Path, index: int) -> None:
    """An ensemble's member (number ``index``) must read the features and know the genres its
    config.json names."""
    mixed = config.get("member_features")
    ensemble_features = FeatureConfig.from_json(mixed[index] if mixed else config["features"])
    differences = config_diff(member.feature_config, ensemble_features)
    if differences:
        fields = "; ".join(
            f"features.{k}: {a!r} in the member, {b!r} in the ensemble" for k, a, b in differences
        )
        raise CheckpointError(
            f"{run_dir}: ensemble member {member.run_dir} has other feature settings than the "
            f"ensemble's config.json ({fields})"
        )
    if list(member.genres) != list(config["genres"]):
        raise CheckpointError(
            f"{run_dir}: ensemble member {member.run_dir}: genres {member.genres} differ from "
            f"the ensemble config.json's {config['genres']}"
        )
