"""What the rest of genre_jax knows about a model: its :class:`ModelSpec`.

Each model module describes its model once, as a ``SPEC``; :mod:`genre_jax.models` registers
the specs and is the only list of model names. Runner, training, inference, persistence,
the demo, the benchmarks and the command line ask the spec, never the name.

Two families:

- ``network``: a Flax NNX module trained by :mod:`genre_jax.step`'s jitted step. ``build``
  is ``build(settings, n_features, n_classes, rngs) -> nnx.Module``; the module is called as
  ``model(x, train=..., key=..., mask=...) -> logits`` on ``(batch, frames, coefficients)``.
  A network that also has ``model.embed(x, train=..., key=..., mask=...) -> (batch, width)``,
  the activations its output layer reads, can be embedded (``genre-jax embed --run-dir``);
  the built-in networks have one, and ``embed`` refuses a network without it by name.
- ``pipeline``: a scikit-learn-style estimator fitted once on the flattened segments
  (:mod:`genre_jax.fit_pipeline`). ``build`` is ``build(settings, frames, coefficients,
  labels) -> estimator`` (unfitted; ``labels`` are the training labels, for choices such as
  calibration folds); the estimator needs ``fit(x, y)`` and ``predict_proba(x)`` on
  ``(segments, frames * coefficients)`` float32 rows, and is saved with skops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from genre_jax.settings import ConfigError

NETWORK = "network"
PIPELINE = "pipeline"
FAMILIES = (NETWORK, PIPELINE)
EPOCH_DRIVERS = ("scan", "steps")


class ModelSpecError(ConfigError):
    """A model cannot be described or registered as given: its spec is malformed (family,
    epoch driver, settings class), its name is not a lower-case identifier or is taken, or a
    setting clashes with another model's. A model module named in ``GENRE_JAX_MODELS`` that
    raises it is reported as one line naming the module."""


@dataclass(frozen=True)
class NoSettings:
    """A model with no settings of its own (its architecture is fixed)."""


@dataclass(frozen=True)
class DemoRecipe:
    """How ``genre-jax demo`` runs a model.

    Attributes:
        features: feature settings beside the defaults (e.g. ``{"kind": "logmel"}``); the
            demo prepares one store per distinct set.
        train: train and model settings of the model's recipe, on real data.
        synthetic: settings changed on top of ``train`` for the synthetic data (a short
            schedule that finishes in minutes on a laptop CPU). Where they shorten the epochs
            and do not set ``patience``, the demo scales early stopping's patience with them
            (:func:`genre_jax.demo.synthetic_settings`).
    """

    features: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    synthetic: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedFigures:
    """What the seed study reported for its own version of a model (``genre-jax compare``
    shows it beside the runs).

    Attributes:
        segment_accuracy: test accuracy, segment level, on its leaky random split.
        parameters: values of the model as Keras counts them (None: not reported).
    """

    segment_accuracy: float
    parameters: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered model, described once.

    Attributes:
        name: the name runs, experiment files and ``--model`` use.
        family: ``network`` (trained by the jitted step) or ``pipeline`` (scikit-learn fit).
        description: one line for ``--help`` and the docs.
        build: the constructor (its signature per family: see the module docstring).
        settings: the frozen dataclass of the model's own settings, today's values as
            defaults; its docstring's ``Attributes:`` section is the options' help.
        input_features: feature settings the model needs (``{"kind": "logc", ...}``); a store
            with other values is refused before training, naming each.
        time_reversal_invariant: the model's output does not change when a segment is
            reversed in time (then doubling the training set with reversed copies is skipped).
        cpu_epoch_driver: networks: ``steps`` (one jitted call per step) or ``scan`` (one
            jitted scan per epoch), whichever was measured faster on CPU; accelerators use
            ``scan``.
        trusted_types: pipelines: the classes (``module.Name``) of this model that its skops
            file may name, beside scikit-learn's and numpy's own.
        predict_labels: pipelines: ``(fitted, rows) -> labels`` when a segment's label is
            not the argmax of its probabilities (the seed's SVM votes); default
            ``fitted.predict``.
        describe: pipelines: ``fitted -> dict`` of figures for the run's summary
            (``parameters``: values kept to predict, and e.g. support vectors).
        demo: how ``genre-jax demo`` runs it; ``None`` keeps it out of the demo.
        seed: the seed study's figures for its version of the model; ``None`` for ours.
    """

    name: str
    family: str
    description: str
    build: Callable[..., Any]
    settings: type = NoSettings
    input_features: Mapping[str, Any] = field(default_factory=dict)
    time_reversal_invariant: bool = False
    cpu_epoch_driver: str = "steps"
    trusted_types: frozenset[str] = frozenset()
    predict_labels: Callable[[Any, Any], Any] | None = None
    describe: Callable[[Any], dict[str, Any]] | None = None
    demo: DemoRecipe | None = None
    seed: SeedFigures | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ModelSpecError(
                f"model {self.name!r}: family {self.family!r} not one of {FAMILIES}"
            )
        if self.cpu_epoch_driver not in EPOCH_DRIVERS:
            raise ModelSpecError(
                f"model {self.name!r}: cpu_epoch_driver {self.cpu_epoch_driver!r} not one of "
                f"{EPOCH_DRIVERS}"
            )
        frozen = (
            dataclasses.is_dataclass(self.settings) and self.settings.__dataclass_params__.frozen
        )
        if not frozen:
            raise ModelSpecError(f"model {self.name!r}: settings must be a frozen dataclass")
        object.__setattr__(self, "trusted_types", frozenset(self.trusted_types))

    def setting_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.settings))
