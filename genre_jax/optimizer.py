"""The optimiser of a network: Optax Adam with Keras's epsilon, the learning-rate schedule, and
the pretrained layers' own rate and frozen epochs.

Parameters declared :class:`~genre_jax.models.layers.Pretrained` (a network's published
weights) are labelled apart (:func:`pretrained_labels`) so that ``freeze_epochs`` and
``pretrained_lr_scale`` apply to them alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from flax import nnx

from genre_jax.config import TrainConfig
from genre_jax.models.layers import Pretrained


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int) -> float | optax.Schedule:
    """The learning rate: a constant, or warmup + cosine decay over the schedule's span
    (``epochs``, or ``schedule_epochs``; after it the rate stays at its end)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    total = max(1, config.schedule_span * steps_per_epoch)
    end = 0.01 * config.learning_rate
    warmup = min(config.warmup_steps, total - 1)
    if warmup == 0:
        return optax.cosine_decay_schedule(config.learning_rate, total, alpha=0.01)
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total, end)


ADAM_EPSILON = 1e-7  # Keras's


def is_pretrained(variable: Any) -> bool:
    return isinstance(variable, Pretrained)


def map_variables(fn: Callable, *states: Any) -> Any:
    """``fn`` of each variable (not each array) of ``states`` (``nnx.State`` trees alike)."""
    return jax.tree.map(fn, *states, is_leaf=lambda v: isinstance(v, nnx.Variable))


def pretrained_labels(params: Any) -> Any:
    """``"pretrained"`` or ``"new"`` for each parameter of ``params`` (an ``nnx.State``), by
    whether it is a :class:`~genre_jax.models.layers.Pretrained` parameter."""
    return map_variables(lambda v: "pretrained" if is_pretrained(v) else "new", params)


def has_pretrained(params: Any) -> bool:
    return "pretrained" in jax.tree.leaves(pretrained_labels(params))


def make_optimizer(
    config: TrainConfig, steps_per_epoch: int = 1, pretrained: bool = False
) -> optax.GradientTransformation:
    """Adam with Keras's epsilon (1e-7) at the configured learning rate (or schedule).

    With ``pretrained`` (the network has :class:`~genre_jax.models.layers.Pretrained`
    parameters), an ``optax.multi_transform`` of two Adams: the new parameters at the
    learning rate, the pretrained ones at ``pretrained_lr_scale`` times it, their Adam
    starting only after ``freeze_epochs`` epochs (before that their updates are zero and
    their optimiser state untouched, ``optax.transforms.conditionally_mask``).
    """
    learning_rate = learning_rate_schedule(config, steps_per_epoch)
    if not pretrained:
        return optax.adam(learning_rate, eps=ADAM_EPSILON)
    scale = config.pretrained_lr_scale
    if callable(learning_rate):
        scaled = lambda step: scale * learning_rate(step)  # noqa: E731
    else:
        scaled = scale * learning_rate
    frozen_steps = config.freeze_epochs * steps_per_epoch
    thawed = optax.transforms.conditionally_mask(
        optax.scale_by_adam(eps=ADAM_EPSILON), lambda count: count >= frozen_steps
    )
    transforms = {
        "new": optax.adam(learning_rate, eps=ADAM_EPSILON),
        "pretrained": optax.chain(thawed, optax.scale_by_learning_rate(scaled)),
    }
    return optax.multi_transform(transforms, pretrained_labels)
