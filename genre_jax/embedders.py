"""What computes embeddings (``genre-jax embed``): the pretrained musicnn tagger, or a trained
network's penultimate layer.

An :class:`Embedder` names the features it reads and maps a batch of them to one row per
segment. musicnn reads 16 kHz log-compressed mel bands
(:data:`~genre_jax.models.musicnn.INPUT_FEATURES`) and averages its 3 s patches over a segment;
a network run embeds with its own feature settings, its ``embed`` method giving the activations
its output layer reads (:mod:`genre_jax.models.spec`). :mod:`genre_jax.embed` runs one over
audio files or a feature store and writes the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.checkpoint import load_model, state_digest
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.ensemble import is_ensemble
from genre_jax.models import PIPELINE, get_spec
from genre_jax.models.musicnn import (
    DEFAULT_CHECKPOINT,
    INPUT_FEATURES,
    PATCH_SECONDS,
    MusicnnEmbedding,
    cache_key,
)

MODELS = ("musicnn",)  # the pretrained embedders ``--model`` names


@dataclass(frozen=True)
class Embedder:
    """What computes the embeddings.

    Attributes:
        name: ``musicnn``, or the run's model name.
        key: its name in a store's embedding cache (weights or network digest included).
        feature_config: the features it reads (the segment length included).
        rows_of: ``(n, frames, coefficients)`` features -> ``(n, width)`` float32, each row
            from its own segment alone.
        source: what the file's ``settings`` record of it (digests, run folder).
    """

    name: str
    key: str
    feature_config: FeatureConfig
    rows_of: Callable[[np.ndarray], np.ndarray]
    source: dict[str, Any]


def musicnn_embedder(
    segment_seconds: float = PATCH_SECONDS, weights: str = DEFAULT_CHECKPOINT
) -> Embedder:
    """A pretrained tagger of the musicnn wheel, the checkpoint ``weights`` (fetched once,
    :func:`~genre_jax.models.musicnn.load_weights`), on ``segment_seconds`` segments: musicnn's
    1,706 values (max pool, mean pool, penultimate layer) or the VGG tagger's 1,280."""
    config = FeatureConfig(**INPUT_FEATURES, segment_seconds=segment_seconds)
    network = MusicnnEmbedding(config.n_frames, config.n_features, checkpoint=weights).fit(None)

    def rows_of(features: np.ndarray) -> np.ndarray:
        return network.embed_rows(np.asarray(features, np.float32).reshape(len(features), -1))

    key = cache_key(network.weights_)
    source = {"model": "musicnn", "weights": key, "checkpoint": weights}
    return Embedder("musicnn", key, config, rows_of, source)


def network_embedder(run_dir: str | Path, batch_size: int = 64) -> Embedder:
    """A trained network's penultimate layer (its best checkpoint), on its own features.

    Raises:
        ConfigError: ``run_dir`` holds an ensemble, a pipeline, or a network without an
            ``embed`` method.
        CheckpointError: not a finished run (see :func:`genre_jax.checkpoint.load_model`).
    """
    import jax.numpy as jnp
    from flax import nnx

    from genre_jax.inference import make_predict, read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    if is_ensemble(config):
        raise ConfigError(
            f"{run_dir}: an ensemble has no one penultimate layer; embed one of its members"
        )
    name = TrainConfig.from_json(config["train"]).model
    if get_spec(name).family == PIPELINE:
        raise ConfigError(
            f"{run_dir}: model {name!r} is a scikit-learn pipeline, not a network; embed takes "
            "a network's run (for musicnn's embeddings: --model musicnn)"
        )
    model, meta = load_model(run_dir)
    if not callable(getattr(model, "embed", None)):
        raise ConfigError(
            f"{run_dir}: network {name!r} has no embed method (the layer its output reads), "
            "so it cannot be embedded"
        )
    graphdef, state = nnx.split(model)
    apply = make_predict(graphdef, batch_size, embed=True)
    digest = meta.get("state_sha256") or state_digest(state)

    def rows_of(features: np.ndarray) -> np.ndarray:
        return np.asarray(apply(state, jnp.asarray(features, jnp.float32)), np.float32)

    source = {"model": name, "run_dir": str(run_dir), "epoch": meta.get("epoch"), "state": digest}
    return Embedder(
        name,
        f"{name}-{digest[:16]}",
        FeatureConfig.from_json(meta["feature_config"]),
        rows_of,
        source,
    )
