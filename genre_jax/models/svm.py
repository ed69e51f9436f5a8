"""The seed study's SVM baseline, on exactly the arrays the networks see, flattened.

Each segment's ``(frames, coefficients)`` features become one vector (431 x 13 = 5,603 values for
a 10 s segment); a StandardScaler and an RBF SVC (``C=1``, ``gamma='scale'``) follow. Probability
outputs come from ``CalibratedClassifierCV(SVC(...), ensemble=False)``: one SVC fitted on all the
training data, its decision values calibrated by sigmoids fitted on cross-validated decisions
(scikit-learn >= 1.9 deprecates ``SVC(probability=True)``).

Segment labels are the SVC's own vote (:func:`vote_labels`), as the seed's
``SVC(probability=True).predict`` returned; the calibrated probabilities feed song-level
aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genre_jax.models import rbf
from genre_jax.models.rbf import GramRBFSVM, SupportVectorRBF
from genre_jax.models.spec import PIPELINE, DemoRecipe, ModelSpec, SeedFigures
from genre_jax.models.statsvm import SummaryStatistics
from genre_jax.settings import setting

# Pipelines saved before genre_jax.models was split by model (2026-12) name these classes
# here; skops finds a class by its module and name, so they stay importable from this module.
LEGACY_CLASSES = (GramRBFSVM, SupportVectorRBF, SummaryStatistics)


@dataclass(frozen=True)
class SVMSettings:
    """The seed's SVM: an RBF SVC on the flattened, standardised segments.

    Attributes:
        c: SVM regularisation ``C``.
        gamma: RBF ``gamma``: ``scale``, ``auto`` or a positive number.
        backend: ``jax`` (the RBF kernel matrix computed by JAX, libsvm's solver on it) or
            ``sklearn`` (libsvm computes the kernel); the same predictions, ``jax`` much faster.
    """

    c: float = setting(1.0, above=0)
    gamma: str = "scale"
    backend: str = setting("jax", choices=("jax", "sklearn"))

    def __post_init__(self) -> None:
        rbf.check_gamma(self.gamma)


def build(settings: SVMSettings, frames: int, coefficients: int, labels: np.ndarray) -> Pipeline:
    """Unfitted StandardScaler -> calibrated RBF SVC pipeline with the settings' C and gamma.

    ``backend``: ``jax`` computes the kernel matrix with JAX (:class:`GramRBFSVM`); ``sklearn``
    leaves it to libsvm. Both give the same predictions. The calibration has 5 folds, fewer
    when a genre has fewer training segments (:func:`genre_jax.models.rbf.calibration_folds`).
    """
    gamma = rbf.check_gamma(settings.gamma)
    if settings.backend == "jax":
        svm = GramRBFSVM(C=settings.c, gamma=gamma)
    else:
        svc = SVC(kernel="rbf", C=settings.c, gamma=gamma)
        svm = CalibratedClassifierCV(svc, method="sigmoid", ensemble=False)
    return rbf.calibration_folds(
        Pipeline([("scale", StandardScaler()), ("svm", svm)]), labels, "svm"
    )


def vote_labels(model: Pipeline, rows: np.ndarray) -> np.ndarray:
    """Labels by the SVC's own one-vs-one vote, as the seed's ``SVC(probability=True).predict``.

    The calibrated probabilities (``model.predict_proba``) come from sigmoids fitted on
    cross-validated decisions; their argmax can differ from the vote, exactly as with
    scikit-learn's ``probability=True``. Segment labels follow the seed (the vote); song-level
    aggregation uses the probabilities.
    """
    step = model.named_steps["svm"]
    scaled = model[:-1].transform(rows)
    final = (
        step.calibrated_.calibrated_classifiers_[0].estimator
        if isinstance(step, GramRBFSVM)
        else step.calibrated_classifiers_[0].estimator
    )
    return np.asarray(final.predict(scaled))


SPEC = ModelSpec(
    name="svm",
    family=PIPELINE,
    description="the seed's SVM: an RBF SVC on the flattened, standardised segments",
    build=build,
    settings=SVMSettings,
    trusted_types=rbf.TRUSTED_TYPES,
    predict_labels=vote_labels,
    describe=rbf.describe,
    demo=DemoRecipe(),
    seed=SeedFigures(segment_accuracy=0.65),
)
