"""``musicnnsvm`` (ours): an RBF SVM on embeddings of a pretrained tagger of the musicnn wheel.

Each ``logc`` segment becomes the embedding of the tagger ``weights`` names: musicnn's 1,706
values (:mod:`genre_jax.models.musicnn`) or the VGG tagger's 1,280 (:mod:`genre_jax.models.vgg`),
standardised, then an RBF SVC whose probabilities are isotonic calibrations averaged over 5
folds, as in ``statsvm``. The store must hold musicnn's input features
(:data:`~genre_jax.models.musicnn.INPUT_FEATURES`); the weights are fetched once
(``genre-jax fetch-musicnn``) and saved inside the fitted pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from genre_jax.models import rbf
from genre_jax.models.musicnn import (
    CHECKPOINTS,
    DEFAULT_CHECKPOINT,
    INPUT_FEATURES,
    MusicnnEmbedding,
)
from genre_jax.models.spec import PIPELINE, ModelSpec
from genre_jax.settings import setting


@dataclass(frozen=True)
class MusicnnSVMSettings:
    """The SVC on musicnn's embeddings.

    Attributes:
        c: SVM regularisation ``C``.
        gamma: RBF ``gamma``: ``scale``, ``auto`` or a positive number.
        weights: the wheel's checkpoint that embeds: ``MSD_musicnn`` (Million Song Dataset
            tags), ``MTT_musicnn`` (MagnaTagATune tags), or the VGG-like tagger trained on
            either, ``MSD_vgg`` and ``MTT_vgg``.
    """

    c: float = setting(1.0, above=0)
    gamma: str = "scale"
    weights: str = setting(DEFAULT_CHECKPOINT, choices=tuple(CHECKPOINTS))

    def __post_init__(self) -> None:
        rbf.check_gamma(self.gamma)


def build(
    settings: MusicnnSVMSettings, frames: int, coefficients: int, labels: np.ndarray
) -> Pipeline:
    """Unfitted ``musicnnsvm``: pretrained musicnn embeddings -> StandardScaler -> isotonic-
    calibrated RBF SVC."""
    pipeline = Pipeline(
        [
            ("embed", MusicnnEmbedding(frames, coefficients, checkpoint=settings.weights)),
            ("scale", StandardScaler()),
            ("svm", rbf.calibrated_svc(settings.c, settings.gamma)),
        ]
    )
    return rbf.calibration_folds(pipeline, labels, "musicnnsvm")


def describe(model: Pipeline) -> dict[str, int]:
    """The RBF figures, with the pretrained network's weights among the values kept."""
    figures = rbf.describe(model)
    weights = model.named_steps["embed"].weights_.values()
    return {**figures, "parameters": figures["parameters"] + int(sum(v.size for v in weights))}


SPEC = ModelSpec(
    name="musicnnsvm",
    family=PIPELINE,
    description="ours: an RBF SVM on embeddings of a pretrained tagger (needs its weights)",
    build=build,
    settings=MusicnnSVMSettings,
    input_features=INPUT_FEATURES,
    trusted_types=frozenset({"genre_jax.models.musicnn.MusicnnEmbedding"}),
    describe=describe,
)
