"""What a resumed run may change: its run options, and how many epochs it trains.

A run is bound by the settings that change its results (data, features, model, optimiser,
schedule, split, seeds, augmentation): ``train --resume`` refuses any of them that differs from
the run's ``config.json``, naming each. Run options (:data:`~genre_jax.config.RUN_OPTIONS`:
where segments are fed from, the epoch driver, the kernels, in-epoch checkpoints) change only
speed or placement, so a resumed run may change them. ``epochs`` may grow: the run continues
to the new total, and with a constant learning rate its parameters are those of a run given
that total from the start. A cosine schedule decays over the epochs it spans, so a longer run
would have followed another schedule from its first step; it continues only when the user asks
for the span the run was trained on (``schedule_epochs``), the rate then staying at its end.

Every resume that changes something is recorded in ``config.json``'s ``resumed`` list (the
epoch it continued after and each change, old and new), and ``config.json`` is rewritten with
the new values. Checkpoints bind the *identity view* of ``config.json``
(:func:`identity_view`), so the steps saved before the change still load. (A run older than
the ``resumed`` record resumes only unchanged: :func:`genre_jax.legacy.require_changes_allowed`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genre_jax.config import RUN_OPTIONS, TrainConfig
from genre_jax.settings import ConfigError, config_diff

# Train settings a resume may change besides the run options: the length of the run and the
# span of a cosine schedule that then keeps its original length.
LENGTH = ("epochs", "schedule_epochs")
RESUMED_KEY = "resumed"  # config.json's record of resumes that changed something


def identity_view(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a run's ``config.json``) without what a resume may change: the train
    section's run options and length, and the ``resumed`` record. Checkpoints bind this view,
    so a resume that continues a run for more epochs, or on another feed, keeps them loadable."""
    view = {k: v for k, v in config.items() if k != RESUMED_KEY}
    train = view.get("train")
    if isinstance(train, dict):
        view["train"] = {k: v for k, v in train.items() if k not in RUN_OPTIONS + LENGTH}
    return view


def complete_steps(directory: Path) -> list[int]:
    """Steps of a checkpoint series that were written whole (orbax renames a step folder to
    its number only when complete)."""
    if not directory.is_dir():
        return []
    return [int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir()]


def epochs_done(run_dir: Path) -> int:
    """The last epoch the run's ``checkpoints/latest`` holds (0 when none)."""
    return max(complete_steps(run_dir / "checkpoints" / "latest"), default=0)


def resume_changes(
    saved: TrainConfig, given: TrainConfig, done: int, where: str
) -> dict[str, list[Any]]:
    """``{setting: [saved value, given value]}`` for each run option or length that a resume of
    ``saved`` (``done`` epochs trained) with ``given`` changes.

    Raises:
        ConfigError: a setting that binds the run differs (each named, saved and given); the
            given ``epochs`` is below those already trained; or a cosine schedule would span
            another number of epochs than the one the run was trained on.
    """
    differences = config_diff(saved, given)
    binding = [d for d in differences if d[0] not in RUN_OPTIONS + LENGTH]
    if binding:
        fields = "; ".join(f"{k}: {x!r} in the run, {y!r} given" for k, x, y in binding)
        raise ConfigError(
            f"{where} (train config) does not match: {fields}; these settings change the "
            "run's results, so a resumed run keeps them (only epochs and the run options "
            f"{', '.join(RUN_OPTIONS)} may change)"
        )
    if given.epochs < done:
        raise ConfigError(
            f"train setting epochs={given.epochs}: {where} has already trained {done} epochs; "
            f"give epochs >= {done} to continue it"
        )
    if saved.lr_schedule == "cosine" and saved.schedule_span != given.schedule_span:
        raise ConfigError(
            f"train setting epochs={given.epochs}: {where} follows lr_schedule='cosine' over "
            f"{saved.schedule_span} epochs, and a schedule over {given.schedule_span} would "
            "have given other learning rates from its first step; to continue on the "
            f"schedule it was trained on (its rate staying at its end after epoch "
            f"{saved.schedule_span}) give schedule_epochs={saved.schedule_span} "
            f"(--schedule-epochs {saved.schedule_span}), or start afresh with --overwrite"
        )
    return {k: [x, y] for k, x, y in differences}


def record_resume(
    config: dict[str, Any], train: TrainConfig, done: int, changes: dict[str, list[Any]]
) -> dict[str, Any]:
    """``config`` (the run's ``config.json``) with ``train``'s settings and this resume added
    to its ``resumed`` record."""
    from genre_jax import kernels

    entry = {"after_epoch": done, "changed": changes, "kernels": kernels.active()}
    return {**config, "train": train.to_json(), RESUMED_KEY: [*config[RESUMED_KEY], entry]}
