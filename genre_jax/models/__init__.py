"""The model registry: the only list of model names.

Each model module exports a ``SPEC`` (:class:`~genre_jax.models.spec.ModelSpec`); the
built-in ones are listed in :data:`BUILT_IN`, in the order ``--help`` and the demo list them,
and each is imported when its model is first asked for (:func:`get_spec`, :func:`specs`). A
researcher's own model is one module with a spec, registered by :func:`register` from their
code, or named in ``GENRE_JAX_MODELS`` (comma-separated modules, imported by the command
line), or offered by an installed package under the entry-point group ``genre_jax.models``
(each entry a module that registers its models when imported, or a ``ModelSpec``).

Built in: networks ``cnn`` and ``gru`` (the seed's), ``melstat`` (ours, for log-mel input) and
``musicnn`` (ours: the pretrained musicnn fine-tuned); pipelines ``svm`` (the seed's),
``statsvm`` (ours, on summary statistics) and ``musicnnsvm`` (ours, on embeddings of the
pretrained musicnn).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import typing
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from genre_jax.models.spec import (
    NETWORK,
    PIPELINE,
    DemoRecipe,
    ModelSpec,
    ModelSpecError,
    NoSettings,
    SeedFigures,
)
from genre_jax.settings import ConfigError, check_fields, scalar_type

if TYPE_CHECKING:
    from flax import nnx

__all__ = [
    "DEFAULT_MODEL",
    "NETWORK",
    "PIPELINE",
    "DemoRecipe",
    "ModelSpec",
    "ModelSpecError",
    "NoSettings",
    "SeedFigures",
    "build_network",
    "get_spec",
    "load_plugins",
    "model_names",
    "register",
    "specs",
]

DEFAULT_MODEL = "cnn"  # what a train config without a model trains: the seed's CNN
PLUGINS_ENV = "GENRE_JAX_MODELS"
ENTRY_POINT_GROUP = "genre_jax.models"

# The built-in models, in the order --help and the demo list them, by the module whose SPEC
# declares each. A module is imported when its model is first asked for, so that reading
# settings (genre_jax.config) or building the command line loads no model code.
BUILT_IN: dict[str, str] = {
    "cnn": "genre_jax.models.cnn",
    "gru": "genre_jax.models.gru",
    "svm": "genre_jax.models.svm",
    "melstat": "genre_jax.models.melstat",
    "statsvm": "genre_jax.models.statsvm",
    "musicnnsvm": "genre_jax.models.musicnnsvm",
    "musicnn": "genre_jax.models.musicnn_net",
}

_REGISTRY: dict[str, ModelSpec] = {}


def _load_built_in(name: str) -> None:
    """Import built-in model ``name``'s module and register its spec (once; a spec a user
    registered under the name since is kept)."""
    if name in _REGISTRY:
        return
    spec = importlib.import_module(BUILT_IN[name]).SPEC
    if spec.name != name:
        raise ModelSpecError(f"{BUILT_IN[name]}: its SPEC is named {spec.name!r}, not {name!r}")
    _REGISTRY[name] = spec


def _load_built_ins() -> None:
    for name in BUILT_IN:
        _load_built_in(name)


def _setting_types(spec: ModelSpec) -> dict[str, object]:
    hints = typing.get_type_hints(spec.settings)
    return {f.name: scalar_type(hints[f.name]) for f in dataclasses.fields(spec.settings)}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry and return it.

    Its name must be new (``replace=True`` swaps a registered spec, e.g. when a notebook
    re-runs the cell). A setting name another model also uses must have the same type there,
    since both share one command-line option.

    Raises:
        ModelSpecError: ``spec`` is not a :class:`ModelSpec`, its name is not a lower-case
            identifier or is taken, or a setting is called ``name`` or clashes in type.
    """
    if not isinstance(spec, ModelSpec):
        raise ModelSpecError(f"register() takes a ModelSpec, not {type(spec).__name__}")
    _load_built_ins()  # a new model's settings are checked against theirs
    name = spec.name
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ModelSpecError(f"model name {spec.name!r}: use lower-case letters, digits and _")
    if spec.name in _REGISTRY and not replace:
        raise ModelSpecError(
            f"model {spec.name!r} is already registered (register(spec, replace=True) swaps it)"
        )
    types = _setting_types(spec)
    if "name" in types:
        raise ModelSpecError(f"model {spec.name!r}: a setting cannot be called 'name'")
    for other in _REGISTRY.values():
        if other.name == spec.name:
            continue
        for key, kind in _setting_types(other).items():
            if key in types and types[key] != kind:
                raise ModelSpecError(
                    f"model {spec.name!r}: setting {key!r} has another type than in model "
                    f"{other.name!r}, which shares its option --model.{key}"
                )
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """The spec of model ``name``; a :class:`ConfigError` naming the registered ones if none."""
    if isinstance(name, str) and name in BUILT_IN:
        _load_built_in(name)
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"train setting model={name!r}: not a registered model; one of "
            f"{', '.join(model_names())} (a model of your own is registered with "
            f"genre_jax.models.register, or by naming its module in {PLUGINS_ENV})"
        ) from None


def model_names() -> tuple[str, ...]:
    """Every registered model's name: the built-in ones in their order, then the others in
    registration order (no model module is imported)."""
    return (*BUILT_IN, *(name for name in _REGISTRY if name not in BUILT_IN))


def specs() -> tuple[ModelSpec, ...]:
    """Every registered spec, in :func:`model_names`' order (imports every model)."""
    _load_built_ins()
    return tuple(_REGISTRY[name] for name in model_names())


def load_plugins() -> list[str]:
    """Import the modules named in ``GENRE_JAX_MODELS`` and the installed packages' entry
    points of group ``genre_jax.models``; return what was loaded.

    A module registers its models when imported; an entry point may instead name a
    ``ModelSpec``, which is registered here. A module that cannot be imported, or whose
    models cannot be registered (:class:`ModelSpecError`: a name taken or malformed, a bad
    spec), is a :class:`ConfigError` naming it and the reason.
    """
    loaded = []
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            _import_here(module)
        except ImportError as error:
            raise ConfigError(f"{PLUGINS_ENV}: cannot import {module!r} ({error})") from None
        except ModelSpecError as error:
            raise ConfigError(f"{PLUGINS_ENV}: module {module!r}: {error}") from None
        loaded.append(module)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = entry.load()
            if isinstance(value, ModelSpec):
                register(value, replace=True)
        except ModelSpecError as error:
            raise ConfigError(
                f"entry point {entry.name!r} ({entry.value}) of group {ENTRY_POINT_GROUP}: {error}"
            ) from None
        loaded.append(entry.value)
    return loaded


def _import_here(module: str) -> None:
    """Import ``module``, also from the current folder, as ``python -m`` would find it (the
    ``genre-jax`` script does not look there): ``GENRE_JAX_MODELS=my_models genre-jax ...``
    finds ``./my_models.py``."""
    try:
        importlib.import_module(module)
        return
    except ModuleNotFoundError as error:
        if error.name != module.split(".")[0]:
            raise  # the module was found; something it imports was not
    here = os.getcwd()
    sys.path.insert(0, here)
    try:
        importlib.import_module(module)
    finally:
        sys.path.remove(here)


def build_network(
    name: str, settings: object, n_features: int, n_classes: int, seed: int = 0
) -> nnx.Module:
    """A freshly initialised network ``name`` (its ``settings``; ``None``: the defaults) for
    inputs with ``n_features`` per frame."""
    from flax import nnx

    spec = get_spec(name)
    if spec.family != NETWORK:
        raise ConfigError(f"model={name!r}: a {spec.family}, not a network")
    settings = spec.settings() if settings is None else settings
    check_fields(settings, "model setting")  # a TrainConfig checks them; a caller may not
    return spec.build(settings, n_features, n_classes, nnx.Rngs(params=seed))
