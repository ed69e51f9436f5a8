"""Whether a train config can train on a store's features, asked before anything is written.

:func:`check_against_features` is everything about a :class:`~genre_jax.config.TrainConfig`
that depends on the feature settings (the model's declared input features, SpecAugment's
stripes against a segment, the network's smallest input, pretrained-layer settings) and the
run options that cannot train together; the training runner and ``crossval`` call it before
they create a folder. A network is asked about an input shape by tracing it
(``jax.make_jaxpr``: shapes only, nothing compiled or computed), so a model registered by a
researcher is checked as the built-in ones are.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.extend import core as jax_core

from genre_jax.config import (
    PRETRAINED_SETTINGS,
    ConfigError,
    FeatureConfig,
    TrainConfig,
    no_pretrained_layers,
)
from genre_jax.models import PIPELINE, ModelSpec
from genre_jax.models.layers import Pretrained

# The minimum inputs found by tracing, with the defaults: cnn 8 frames x 8 coefficients (three
# 2x2 poolings), melstat 22 frames, gru and musicnn 1 frame.
PROBE_BATCH = 2
PROBE_CLASSES = 10
PROBE_MAX_FRAMES = 4096  # the longest input the search for a network's minimum tries
PROBE_MAX_COEFFICIENTS = 1024  # the most mel bands a feature config allows


def check_against_features(config: TrainConfig, features: FeatureConfig) -> None:
    """Refuse a train config that cannot train on ``features``: one :class:`ConfigError`
    line naming the settings.

    Everything about a train config that depends on the feature settings, checked before
    anything is written (the training runner calls it before it creates the run folder),
    and the run options that cannot train together (here, not in :class:`TrainConfig`, so
    that the ``config.json`` of a run that finished with them still loads):

    - ``checkpoint_steps`` with ``feed='device'`` (only a streamed epoch checkpoints inside
      itself; ``feed='auto'`` streams for it: :attr:`TrainConfig.feed_asked`);

    - the model's own input features (``spec.input_features``, e.g. musicnn's 16 kHz ``logc``);
    - SpecAugment's widest stripes against a segment's frames and coefficients;
    - a network's input size: the network is traced on ``(batch, frames, coefficients)``
      and refused when an intermediate array has an empty axis (the CNN's three 2x2 poolings
      turn 7 frames into 0, whose mean is NaN: "training loss is nan") or its layers do not
      fit; the message gives the smallest input the network reads;
    - ``freeze_epochs`` / ``pretrained_lr_scale`` for a network without pretrained layers.
    """
    spec = config.spec
    wrong = [k for k, v in spec.input_features.items() if getattr(features, k) != v]
    if wrong:
        given = ", ".join(f"{k}={getattr(features, k)!r}" for k in wrong)
        needed = ", ".join(f"{k}={spec.input_features[k]!r}" for k in wrong)
        raise ConfigError(
            f"model={spec.name!r} reads other input features: feature setting(s) {given} "
            f"must be {needed}"
        )
    if spec.family == PIPELINE:
        return  # a pipeline's settings do not depend on the features' shape
    if config.checkpoint_steps and config.feed == "device":
        raise ConfigError(
            f"train settings checkpoint_steps={config.checkpoint_steps} and feed='device': "
            "checkpoints inside an epoch are written by streamed training only; set "
            "feed='stream' or 'auto' (or checkpoint_steps=0)"
        )
    frames, coefficients = features.n_frames, features.n_features
    shape = _shape_text(features)
    if config.specaug_masks and config.specaug_time >= frames:
        raise ConfigError(
            f"train setting specaug_time={config.specaug_time}: must be below the {frames} "
            f"frames of a segment ({shape})"
        )
    if config.specaug_masks and config.specaug_freq >= coefficients:
        raise ConfigError(
            f"train setting specaug_freq={config.specaug_freq}: must be below the "
            f"{coefficients} coefficients per frame ({shape})"
        )
    if _input_problem(spec.build, config.model_settings, frames, coefficients) is not None:
        raise ConfigError(_too_small(spec, config.model_settings, features))
    given = config.given(PRETRAINED_SETTINGS)
    if given and not _pretrained_in(spec.build, config.model_settings, coefficients):
        raise ConfigError(no_pretrained_layers(config, given))


def _shape_text(features: FeatureConfig) -> str:
    """``130 frames x 13 coefficients: segment_seconds=3, ...``: where a segment's shape
    comes from."""
    per_frame = (
        f"n_mfcc={features.n_mfcc}" if features.kind == "mfcc" else (f"n_mels={features.n_mels}")
    )
    return (
        f"feature settings segment_seconds={features.segment_seconds:g}, sample_rate="
        f"{features.sample_rate}, hop_length={features.hop_length}, {per_frame}"
    )


def _too_small(spec: ModelSpec, settings: Any, features: FeatureConfig) -> str:
    """Why ``spec``'s network cannot read ``features``' segments, with the smallest frames
    (and the segment length that gives them) or coefficients it reads, where one is found."""
    frames, coefficients = features.n_frames, features.n_features
    here = (
        f"model {spec.name!r} cannot read segments of {frames} frames x {coefficients} "
        f"coefficients ({_shape_text(features)})"
    )
    least_frames = _least(
        lambda n: _input_problem(spec.build, settings, n, coefficients), frames, PROBE_MAX_FRAMES
    )
    if least_frames is not None:
        samples = (least_frames - 1) * features.hop_length
        seconds = math.ceil(1000 * samples / features.sample_rate) / 1000  # whole ms, up
        return (
            f"{here}: segments too short for the network, which reads at least {least_frames} "
            f"frames; set segment_seconds >= {seconds:g}"
        )
    least_coefficients = _least(
        lambda n: _input_problem(spec.build, settings, frames, n),
        coefficients,
        PROBE_MAX_COEFFICIENTS,
    )
    if least_coefficients is not None:
        return (
            f"{here}: too few coefficients per frame for the network, which reads at least "
            f"{least_coefficients}"
        )
    return f"{here}: {_input_problem(spec.build, settings, frames, coefficients)}"


def _least(fails: Callable[[int], str | None], failing: int, most: int) -> int | None:
    """The smallest ``n`` in ``(failing, most]`` for which ``fails(n)`` is None, given that
    ``fails(failing)`` is not (by doubling, then bisection); None when ``most`` fails too."""
    if failing >= most or fails(most) is not None:
        return None
    low, high = failing, min(2 * failing + 1, most)
    while fails(high) is not None:
        low, high = high, min(2 * high, most)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fails(middle) is not None else (low, middle)
    return high


@functools.lru_cache(maxsize=256)
def _input_problem(build: Callable, settings: Any, frames: int, coefficients: int) -> str | None:
    """Why a network built by ``build`` cannot train on ``(batch, frames, coefficients)``
    inputs (None when it can): an intermediate array with an empty axis, or the error its
    layers raise. Traced, in training mode, never compiled or run."""
    x = jax.ShapeDtypeStruct((PROBE_BATCH, frames, coefficients), jnp.float32)
    mask = jax.ShapeDtypeStruct((PROBE_BATCH,), jnp.bool_)
    try:
        model = _abstract_network(build, settings, coefficients)
        graphdef, state = nnx.split(model)

        def forward(state: Any, x: jax.Array, mask: jax.Array) -> jax.Array:
            network = nnx.merge(graphdef, state)
            return network(x, train=True, key=jax.random.key(0), mask=mask)  # as train.py

        jaxpr = jax.make_jaxpr(forward)(state, x, mask).jaxpr
    except (TypeError, ValueError, AssertionError) as error:  # a shape error: build or trace
        return f"its layers do not fit ({(str(error).splitlines() or [''])[0][:200]})"
    empty = _empty_array(jaxpr)
    if empty is not None:
        return f"an array inside it has an empty axis ({empty})"
    return None


def _abstract_network(build: Callable, settings: Any, coefficients: int) -> nnx.Module:
    """The network ``build`` makes, with shapes but no values (``nnx.eval_shape``)."""
    return nnx.eval_shape(lambda: build(settings, coefficients, PROBE_CLASSES, nnx.Rngs(0)))


def _empty_array(jaxpr: jax_core.Jaxpr) -> str | None:
    """``shape (2, 0, 2, 64) from slice``: the first value of ``jaxpr`` (or of a jaxpr inside
    it: scans, conditionals, custom gradients) with a zero-length axis; None when none has."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            if 0 in getattr(var.aval, "shape", ()):
                return f"shape {tuple(var.aval.shape)} from {eqn.primitive}"
        for value in eqn.params.values():
            for inner in value if isinstance(value, tuple | list) else (value,):
                if isinstance(inner, jax_core.ClosedJaxpr):
                    inner = inner.jaxpr
                if isinstance(inner, jax_core.Jaxpr):
                    found = _empty_array(inner)
                    if found is not None:
                        return found
    return None


@functools.lru_cache(maxsize=64)
def _pretrained_in(build: Callable, settings: Any, coefficients: int) -> bool:
    """Whether the network ``build`` makes has :class:`~genre_jax.models.layers.Pretrained`
    parameters (what ``freeze_epochs`` and ``pretrained_lr_scale`` apply to)."""
    model = _abstract_network(build, settings, coefficients)
    return bool(jax.tree.leaves(nnx.state(model, Pretrained)))


def has_pretrained_layers(spec: ModelSpec, settings: Any) -> bool | None:
    """:func:`_pretrained_in` for the features the model declares it reads (the defaults
    beside them); None when the network cannot be built for them (a model that needs other
    features without declaring them: :func:`check_against_features` asks again with the
    store's)."""
    try:
        coefficients = FeatureConfig(**spec.input_features).n_features
        return _pretrained_in(spec.build, settings, coefficients)
    except (TypeError, ValueError):  # ConfigError included
        return None
