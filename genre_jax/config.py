"""The settings of a run: how audio becomes features, and how a model is trained.

:class:`FeatureConfig` (:mod:`genre_jax.feature_config`, here too) and :class:`TrainConfig`
are frozen dataclasses whose defaults are the seed study's recipe. A train config holds the
settings every model shares (epochs, split, seed ...) and one *model section*: the registered
model's name and its own settings (:mod:`genre_jax.models`), written whole to ``config.json``::

    {"model": {"name": "statsvm", "c": 3.0, "harmonic_percussive": true, ...}, "epochs": 100, ...}

Configs are data: each round-trips through JSON, and any run can be repeated from its
``config.json`` alone; the flat form of older files is read too (:meth:`TrainConfig.from_flat`,
its oldest names through :data:`LEGACY_MODEL_SETTINGS`).

A config refuses, when built, what it can know alone (ranges, settings that contradict each
other or the model); :func:`genre_jax.input_checks.check_against_features` refuses what a
train config cannot do with a store's features (the training runner calls it before it writes
anything).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genre_jax.feature_config import FEATURE_KINDS, FeatureConfig
from genre_jax.kernels import KERNEL_MODES
from genre_jax.models import DEFAULT_MODEL, PIPELINE, ModelSpec, get_spec, specs
from genre_jax.settings import (
    INT32_MAX,
    SEED_MAX,
    ConfigError,
    check_fields,
    json_values,
    setting,
)

__all__ = [
    "FEATURE_KINDS",
    "RUN_OPTIONS",
    "ConfigError",
    "FeatureConfig",
    "TrainConfig",
    "model_name",
]

SPLITS = ("song", "kfold", "official", "fault-filtered", "seed-leaky")
GROUPS = ("auto", "artist", "song")
LR_SCHEDULES = ("constant", "cosine")
TIME_FLIP_MODES = ("double", "random")
SELECTIONS = ("best-val", "last")
EPOCH_DRIVER_CHOICES = ("auto", "scan", "steps")
FEEDS = ("auto", "device", "stream")

# Train settings that change only speed or placement, never a result: a run records them, but
# they do not bind it, so `train --resume` may change them (genre_jax.resume).
RUN_OPTIONS = ("epoch_driver", "feed", "checkpoint_steps", "kernels")

# Flat train settings of the days before model sections (2026-12): name -> (the model setting
# it became, the value every run wrote for it). A run directory or experiment file that names
# one keeps working; a value other than that default for a model without the setting is
# refused, naming it, as any setting that does not apply is.
LEGACY_MODEL_SETTINGS: dict[str, tuple[str, Any]] = {
    "svm_c": ("c", 1.0),
    "svm_gamma": ("gamma", "scale"),
    "svm_backend": ("backend", "jax"),
    "harmonic_percussive": ("harmonic_percussive", False),
    "gru_unroll": ("unroll", 0),
}

# Shared settings for a network's pretrained layers; a network without any refuses them.
PRETRAINED_SETTINGS = ("freeze_epochs", "pretrained_lr_scale")
# SpecAugment's stripes are unrolled in the compiled training step, one piece each: a few
# are the method (Park et al. used 1-2 of each kind); thousands would take minutes to compile.
SPECAUG_MASKS_MAX = 100

# Shared settings that only a network's training step reads; a pipeline model refuses them.
NETWORK_ONLY = (
    "lr_schedule",
    "schedule_epochs",
    "label_smoothing",
    "specaug_masks",
    "mixup",
    "freeze_epochs",
    "pretrained_lr_scale",
    "select",
    "feed",
    "checkpoint_steps",
)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (the seed's recipe by default).

    Attributes:
        model: the registered model (``genre-jax train --help`` lists them).
        epochs: maximum epochs (the seed ran 100).
        batch_size: examples per optimiser step.
        learning_rate: Adam step size (the peak of the schedule).
        lr_schedule: ``constant`` (the seed) or ``cosine``: linear warmup over
            ``warmup_steps`` from 0, then cosine decay to 1 % of ``learning_rate`` at the last
            step of ``epochs`` (or of ``schedule_epochs``).
        schedule_epochs: ``lr_schedule=cosine`` only: the epochs the schedule spans; 0: all
            ``epochs``. A run resumed for more epochs than it was started with gives its
            original number here to continue on its schedule (the rate stays at its end).
        warmup_steps: optimiser steps of linear warmup (``lr_schedule=cosine`` only).
        patience: early stopping on validation loss after this many epochs without a new best
            (best weights restored); 0 disables it.
        select: weights kept at the end: ``best-val`` (lowest validation loss, the seed's
            early-stopping restore) or ``last`` (the final epoch; validation is only reported;
            with ``patience=0``, since every epoch would count as the best).
        time_flip: augment with segments reversed in time.
        time_flip_mode: ``double`` (the seed: every training segment is added reversed, doubling
            the set) or ``random`` (each example of each batch is reversed with probability 1/2).
        label_smoothing: cross-entropy targets ``(1 - s) * one_hot + s / classes``; 0: off.
        specaug_masks: SpecAugment: stripes of each kind (time and coefficient) masked per
            training example with the example's mean; 0: off.
        specaug_time: widest time stripe, frames (widths are uniform in 0 ... this); below a
            segment's frames.
        specaug_freq: widest coefficient stripe, bands (widths are uniform in 0 ... this);
            below the coefficients per frame.
        mixup: mixup (Zhang et al., 2018): each training example is mixed with another of its
            batch, inputs and targets, in a proportion drawn from Beta(mixup, mixup); 0: off.
        freeze_epochs: a network with pretrained layers (``musicnn``) trains only its new
            layers for this many first epochs; the pretrained parameters and their optimiser
            state stay as they are. 0: all trained from the first step.
        pretrained_lr_scale: the pretrained layers' learning rate as a fraction of
            ``learning_rate`` (its schedule too); the new layers take ``learning_rate``.
        seed: initialisation, shuffling and dropout (32 bits: what JAX's keys and
            scikit-learn's random_state take).
        split: ``song`` (stratified 80/10/10 by song), ``kfold`` (song-level, fold ``fold`` of
            ``folds`` as test), ``official`` (the dataset's own split: FMA's, a CSV manifest's
            split column), ``fault-filtered`` (published GTZAN split), ``seed-leaky`` (the
            seed's segment-level split; leaks songs across parts, for reproduction only).
        group_by: what ``song`` and ``kfold`` keep in one part: ``artist`` (every track of an
            artist; tracks of no known artist each on their own), ``song``, or ``auto``
            (artist wherever the dataset names artists, song otherwise).
        split_seed: seed of the split (independent of ``seed``; 32 bits, as ``seed``).
        folds: number of folds for ``split=kfold``.
        fold: the test fold for ``split=kfold``.
        val_per_genre: ``kfold`` only: songs per genre held out of training for validation.
        epoch_driver: ``scan`` (one jitted scan per epoch), ``steps`` (one jitted call per
            step) or ``auto`` (the faster measured for the model and backend); speed only.
        feed: where training reads its segments: ``device`` (all on every device, the
            fastest), ``stream`` (read from the store batch by batch, each process its share:
            for stores no device holds) or ``auto`` (the device while they fit); the same
            batches in the same order either way.
        checkpoint_steps: a streamed run also checkpoints every this many optimiser steps
            inside an epoch, and a resumed run goes on from there (0: at the end of each epoch
            only, as a device-resident run does); ``feed=auto`` then streams, and
            ``feed=device`` is refused.
        kernels: how the networks and features are computed: ``reference`` (the plain
            operations an accelerator runs), ``fast`` (formulations measured faster on CPU,
            :mod:`genre_jax.kernels`) or ``auto`` (``$GENRE_JAX_KERNELS``, else fast on CPU and
            reference elsewhere); the same parameters either way, speed only.
        model_settings: the model's own settings (its spec's settings dataclass); ``None``
            gives its defaults.
    """

    model: str = DEFAULT_MODEL
    epochs: int = setting(100, minimum=1, maximum=INT32_MAX)
    batch_size: int = setting(32, minimum=1, maximum=INT32_MAX)
    learning_rate: float = setting(1e-4, above=0)
    lr_schedule: str = setting("constant", choices=LR_SCHEDULES)
    schedule_epochs: int = setting(0, minimum=0, maximum=INT32_MAX)
    warmup_steps: int = setting(100, minimum=0, maximum=INT32_MAX)
    patience: int = setting(20, minimum=0, maximum=INT32_MAX)
    select: str = setting("best-val", choices=SELECTIONS)
    time_flip: bool = True
    time_flip_mode: str = setting("double", choices=TIME_FLIP_MODES)
    label_smoothing: float = setting(0.0, minimum=0, below=1)
    specaug_masks: int = setting(0, minimum=0, maximum=SPECAUG_MASKS_MAX)
    specaug_time: int = setting(10, minimum=0, maximum=INT32_MAX)
    specaug_freq: int = setting(12, minimum=0, maximum=INT32_MAX)
    mixup: float = setting(0.0, minimum=0)
    freeze_epochs: int = setting(0, minimum=0, maximum=INT32_MAX)
    pretrained_lr_scale: float = setting(1.0, above=0)
    seed: int = setting(0, minimum=0, maximum=SEED_MAX)
    split: str = setting("song", choices=SPLITS)
    group_by: str = setting("auto", choices=GROUPS)
    split_seed: int = setting(0, minimum=0, maximum=SEED_MAX)
    folds: int = setting(5, minimum=2, maximum=INT32_MAX)
    fold: int = setting(0, minimum=0)
    val_per_genre: int = setting(1, minimum=0, maximum=INT32_MAX)
    epoch_driver: str = setting("auto", choices=EPOCH_DRIVER_CHOICES)
    feed: str = setting("auto", choices=FEEDS)
    checkpoint_steps: int = setting(0, minimum=0, maximum=INT32_MAX)
    kernels: str = setting("auto", choices=KERNEL_MODES)
    model_settings: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise ConfigError(f"train setting model={self.model!r}: must be a model's name")
        spec = get_spec(self.model)
        settings = spec.settings() if self.model_settings is None else self.model_settings
        if type(settings) is not spec.settings:
            raise ConfigError(
                f"train setting model_settings: a {type(settings).__name__}, not the settings "
                f"of model {self.model!r} ({spec.settings.__name__})"
            )
        check_fields(settings, "model setting")
        object.__setattr__(self, "model_settings", settings)
        check_fields(self, "train setting")
        if self.split == "kfold" and self.fold >= self.folds:
            raise ConfigError(f"train setting fold={self.fold}: must be in [0, folds={self.folds})")
        if spec.family == PIPELINE:
            self._refuse_network_settings(spec)
        else:
            self._refuse_contradictions(spec)

    def _refuse_contradictions(self, spec: ModelSpec) -> None:
        """A network's settings that contradict each other or the model, refused when the
        config is built (before any folder is written), each naming the settings."""
        if self.schedule_epochs and self.lr_schedule != "cosine":
            raise ConfigError(
                f"train setting schedule_epochs={self.schedule_epochs}: the span of a cosine "
                f"schedule; lr_schedule={self.lr_schedule!r} has none"
            )
        if self.select == "last" and self.patience:
            raise ConfigError(
                f"train settings select='last' and patience={self.patience}: with select='last' "
                "every epoch is kept as the best, so early stopping would never stop; set "
                "patience=0 (or select='best-val')"
            )
        given = self.given(PRETRAINED_SETTINGS)
        if given:
            from genre_jax.input_checks import has_pretrained_layers  # traces the network

            if has_pretrained_layers(spec, self.model_settings) is False:
                raise ConfigError(no_pretrained_layers(self, given))

    def _refuse_network_settings(self, spec: ModelSpec) -> None:
        """A pipeline trains once on fixed arrays: settings of the network step do not apply."""
        given = self.given(NETWORK_ONLY)
        if self.time_flip and self.time_flip_mode == "random":
            given.append("time_flip_mode")
        if given:
            raise ConfigError(
                f"train setting(s) {', '.join(given)}: apply to networks only, not model="
                f"{self.model!r} (its time flip doubles the training set: "
                "time_flip_mode='double')"
            )

    @property
    def feed_asked(self) -> str:
        """The feed the runner chooses from: ``feed``, but ``stream`` where ``feed='auto'``
        and ``checkpoint_steps`` is set, since only a streamed epoch checkpoints inside itself
        (the same batches in the same order either way). ``feed='device'`` with
        ``checkpoint_steps`` is refused by :func:`check_against_features`."""
        return "stream" if self.feed == "auto" and self.checkpoint_steps else self.feed

    @property
    def schedule_span(self) -> int:
        """The epochs a cosine schedule spans: ``schedule_epochs``, or all ``epochs``."""
        return self.schedule_epochs or self.epochs

    def given(self, names: tuple[str, ...]) -> list[str]:
        """Those of the shared settings ``names`` that are not at their defaults."""
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        return [n for n in names if getattr(self, n) != defaults[n]]

    @property
    def spec(self) -> ModelSpec:
        """The registered model's spec."""
        return get_spec(self.model)

    def model_section(self) -> dict[str, Any]:
        """``{"name": model, **its settings}``: the ``model`` of :meth:`to_json`."""
        return {"name": self.model, **dataclasses.asdict(self.model_settings)}

    def shared(self) -> dict[str, Any]:
        """The settings every model shares (all fields but the model's)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("model", "model_settings")
        }

    def dotted(self) -> dict[str, Any]:
        """Every setting by its one dotted name, as flags and reports name it: ``model`` (the
        name), ``model.<setting>`` for the model's own and the shared ones by name; what a
        difference between two configs is reported in (:func:`~genre_jax.settings.config_diff`)."""
        own = {f"model.{k}": v for k, v in dataclasses.asdict(self.model_settings).items()}
        return {"model": self.model, **own, **self.shared()}

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model_section(), **self.shared()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Read :meth:`to_json`'s tree (the model's settings in its section, ``{"model":
        {"name": "svm", "c": 3.0}, "epochs": 50}``), or the flat form of older runs and
        experiment files (:meth:`from_flat`); anything that is not a setting of the chosen
        model or of every model is a :class:`ConfigError` naming it."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"train settings must be an object, not {data!r}")
        section = data.get("model")
        if not isinstance(section, Mapping):
            return cls.from_flat(data)
        section = dict(section)
        if "name" not in section:
            raise ConfigError("train setting model: its section names no model ('name')")
        name = section.pop("name")
        beside = {k: v for k, v in data.items() if k != "model"}
        clashes = sorted(set(section) & set(beside))
        if clashes:
            raise ConfigError(
                f"model setting(s) {', '.join(clashes)}: given both in the model section "
                "and beside it"
            )
        spec = _spec_of(name)
        own, shared = _sort_settings(spec, beside)
        for key, value in section.items():
            if key not in spec.setting_names():
                raise ConfigError(_not_a_setting(key, value, spec))
        return cls._of(spec, {**section, **own}, shared)

    @classmethod
    def from_flat(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from the flat form, the model's settings beside the shared ones
        (``{"model": "svm", "c": 3.0, "epochs": 50}``): the form of the oldest runs and
        experiment files (:mod:`genre_jax.legacy`), and a short way to write a config in code. The
        model's own settings are told from the shared ones by name; the oldest names
        (:data:`LEGACY_MODEL_SETTINGS`) are translated."""
        spec = _spec_of(data.get("model", DEFAULT_MODEL))
        own, shared = _sort_settings(spec, {k: v for k, v in data.items() if k != "model"})
        return cls._of(spec, own, shared)

    @classmethod
    def _of(cls, spec: ModelSpec, own: dict[str, Any], shared: dict[str, Any]) -> TrainConfig:
        """The config of ``spec``'s model with its settings ``own`` (JSON's lists read as the
        tuple settings, :func:`~genre_jax.settings.json_values`) and the shared ``shared``."""
        try:
            model_settings = spec.settings(**json_values(spec.settings, own))
        except TypeError as error:  # a settings class's own check of argument types
            raise ConfigError(f"model {spec.name!r} settings: {error}") from None
        return cls(model=spec.name, model_settings=model_settings, **shared)


def _spec_of(name: Any) -> ModelSpec:
    """The spec of the model ``name`` (a train setting), whose settings must not take a shared
    setting's name."""
    spec = get_spec(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"train setting model={name!r}: must be a model's name")
    clash = sorted(set(spec.setting_names()) & SHARED_NAMES)
    if clash:
        raise ConfigError(
            f"model {name!r}: its setting(s) {', '.join(clash)} have the name of a shared "
            "train setting; rename them in its settings class"
        )
    return spec


def _sort_settings(
    spec: ModelSpec, items: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model's own, shared)`` settings of ``items`` written side by side, by name (an old
    name of :data:`LEGACY_MODEL_SETTINGS` translated; one at the default it
    had for every model is dropped where this model has no such setting)."""
    own_names = set(spec.setting_names())
    own: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    for key, value in items.items():
        if key in SHARED_NAMES:
            shared[key] = value
            continue
        target = key
        if key in LEGACY_MODEL_SETTINGS:
            target, legacy_default = LEGACY_MODEL_SETTINGS[key]
            if target not in own_names and value == legacy_default:
                continue  # written by every run of the day; it meant nothing here
        if target in own_names:
            own.setdefault(target, value)
            continue
        raise ConfigError(_not_a_setting(key, value, spec))
    return own, shared


SHARED_NAMES = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {
    "model",
    "model_settings",
}


def no_pretrained_layers(config: TrainConfig, given: list[str]) -> str:
    """Why ``given`` pretrained-layer settings are refused for ``config``'s model."""
    settings = ", ".join(f"{n}={getattr(config, n)}" for n in given)
    return (
        f"train setting(s) {settings}: model {config.model!r} has no pretrained layers for "
        "them to apply to"
    )


def _not_a_setting(key: str, value: Any, spec: ModelSpec) -> str:
    """Why ``key`` is refused for ``spec``'s model: the models it belongs to, or none."""
    target = LEGACY_MODEL_SETTINGS.get(key, (key, None))[0]
    owners = [s.name for s in specs() if target in s.setting_names()]
    own = ", ".join(spec.setting_names()) or "none"
    if owners:
        return (
            f"model setting {key}={value!r}: does not apply to model {spec.name!r} (its "
            f"settings: {own}); it is a setting of {', '.join(owners)}"
        )
    return (
        f"train setting {key}={value!r}: unknown setting (model {spec.name!r} has: {own}; "
        "`genre-jax train --help` lists the shared ones)"
    )


def model_name(train: Any) -> str | None:
    """The model's name in a ``train`` object of a ``config.json``, in either form (a model
    section or, in older runs, the name itself); ``None`` when it names none."""
    model = train.get("model") if isinstance(train, Mapping) else None
    if isinstance(model, Mapping):
        model = model.get("name")
    return model if isinstance(model, str) else None
