"""Model registry: every command finds a model by its name.

Networks (``cnn`` and ``gru``, the seed's; ``melstat``, ours for log-mel input) are Flax NNX
modules called as ``model(x, train=..., key=..., mask=...) -> logits`` on features
``(batch, frames, coefficients)``; ``svm`` (the seed's), ``statsvm`` (ours, on summary
statistics) and ``musicnnsvm`` (ours, on embeddings of the pretrained musicnn,
:mod:`genre_jax.models.musicnn`) are scikit-learn pipelines (:mod:`genre_jax.models.svm`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.models.cnn import SeedCNN
from genre_jax.models.gru import SeedGRU
from genre_jax.models.ours import MelStatNet


def gru_unroll(config: TrainConfig) -> int:
    """The GRU's scan unrolling: the configured one, or for 0 the fastest measured.

    Measured at batch 32 (``benchmarks``, GRU unroll rows): on a 2-core CPU unrolling is no
    faster than 1; on an H100 1, 2, 4, 8, 16 gave 1,320, 2,077, 2,608, 2,915, 3,035 samples/s,
    with compilation 0.4, 5, 7, 15, 46 s, so 8 is kept there.
    """
    if config.gru_unroll:
        return config.gru_unroll
    return 1 if jax.default_backend() == "cpu" else 8


NETWORKS: dict[str, Callable[..., nnx.Module]] = {
    "cnn": lambda n_features, n_classes, config, rngs: SeedCNN(n_classes, rngs=rngs),
    "gru": lambda n_features, n_classes, config, rngs: SeedGRU(
        n_features, n_classes, rngs=rngs, unroll=gru_unroll(config)
    ),
    # Modulation features need the bands to split into 16 equal groups (log-mel 64, 128 ...).
    "melstat": lambda n_features, n_classes, config, rngs: MelStatNet(
        n_features,
        n_classes,
        modulation_groups=16 if n_features % 16 == 0 else 0,
        rngs=rngs,
    ),
}
# scikit-learn pipelines (genre_jax.models.svm); musicnnsvm: on pretrained musicnn embeddings.
SVM_MODELS = ("svm", "statsvm", "musicnnsvm")
MODEL_NAMES = (*NETWORKS, *SVM_MODELS)


def is_network(name: str) -> bool:
    return name in NETWORKS


def build_network(
    name: str, n_features: int, n_classes: int, config: TrainConfig, seed: int = 0
) -> nnx.Module:
    """A freshly initialised network ``name`` for inputs with ``n_features`` per frame."""
    if name not in NETWORKS:
        raise ConfigError(f"model={name!r}: not a network; choose one of {', '.join(NETWORKS)}")
    return NETWORKS[name](n_features, n_classes, config, nnx.Rngs(params=seed))
