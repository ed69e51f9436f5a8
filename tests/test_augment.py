"""Augmentation, label smoothing and the learning-rate schedule against numpy references."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genre_jax.augment import random_time_flip, smoothed_targets, spec_augment
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.optimizer import learning_rate_schedule
from genre_jax.step import masked_cross_entropy
from genre_jax.train import check_fit_settings


def test_random_time_flip_reverses_about_half_the_examples() -> None:
    x = np.asarray(jax.random.normal(jax.random.key(0), (400, 20, 5)))
    out = np.asarray(random_time_flip(jnp.asarray(x), jax.random.key(1)))
    same = np.all(out == x, axis=(1, 2))
    flipped = np.all(out == x[:, ::-1], axis=(1, 2))
    assert np.all(same ^ flipped)  # every example is one or the other, never both or neither
    # 400 fair coin flips: outside [150, 250] has probability < 1e-6.
    assert 150 <= flipped.sum() <= 250
    again = np.asarray(random_time_flip(jnp.asarray(x), jax.random.key(1)))
    np.testing.assert_array_equal(out, again)  # a key decides, nothing else


def _stripes(masked_lines: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of True as (start, width)."""
    runs, start = [], None
    for i, value in enumerate([*masked_lines, False]):
        if value and start is None:
            start = i
        elif not value and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


@pytest.mark.parametrize("masks", [1, 2])
def test_spec_augment_masks_whole_stripes_with_the_example_mean(masks: int) -> None:
    frames, coefficients, max_t, max_f = 40, 16, 6, 4
    x = np.asarray(jax.random.normal(jax.random.key(2), (64, frames, coefficients)))
    out = np.asarray(spec_augment(jnp.asarray(x), jax.random.key(3), masks, max_t, max_f))
    widths_t, widths_f = [], []
    for example, result in zip(x, out, strict=True):
        changed = result != example  # a normal draw never equals its mean exactly
        rows = changed.all(axis=1)
        cols = changed.all(axis=0)
        # Every changed cell lies in a fully masked time row or coefficient column.
        np.testing.assert_array_equal(changed, rows[:, None] | cols[None, :])
        np.testing.assert_allclose(result[changed], example.mean(), rtol=0, atol=1e-6)
        for runs, widest, out_widths in ((rows, max_t, widths_t), (cols, max_f, widths_f)):
            stripes = _stripes(runs)
            assert sum(w for _, w in stripes) <= masks * widest
            out_widths.append(sum(w for _, w in stripes))
    # Widths are uniform in 0..max: over 64 examples some are masked, some not, all bounded.
    assert 0 < np.mean(widths_t) <= masks * max_t and 0 < np.mean(widths_f) <= masks * max_f
    np.testing.assert_array_equal(
        np.asarray(spec_augment(jnp.asarray(x), jax.random.key(3), 0, max_t, max_f)), x
    )


def test_label_smoothing_targets_and_loss_match_numpy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 12)
    mask = np.arange(12) < 9  # the last three rows are padding
    targets = np.asarray(smoothed_targets(jnp.asarray(labels), 10, 0.1))
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(targets[np.arange(12), labels], 0.91, atol=1e-6)
    log_probs = logits.astype(np.float64) - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    reference = -np.sum(targets * log_probs, axis=1)[mask].mean()
    loss = masked_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask), 0.1)
    assert float(loss) == pytest.approx(reference, rel=1e-5)
    plain = masked_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
    assert float(plain) == pytest.approx(-log_probs[np.arange(12), labels][mask].mean(), rel=1e-5)


def test_cosine_schedule_warms_up_then_decays_to_one_percent() -> None:
    config = TrainConfig(
        learning_rate=1e-3, lr_schedule="cosine", warmup_steps=20, epochs=10, patience=0
    )
    schedule = learning_rate_schedule(config, steps_per_epoch=12)
    total, peak = 120, 1e-3

    def reference(step: int) -> float:
        if step < 20:
            return peak * step / 20
        progress = min((step - 20) / (total - 20), 1.0)
        return 0.01 * peak + (peak - 0.01 * peak) * 0.5 * (1 + math.cos(math.pi * progress))

    for step in (0, 5, 19, 20, 21, 60, 119, 120, 500):
        assert float(schedule(step)) == pytest.approx(reference(step), rel=1e-5, abs=1e-12)
    assert learning_rate_schedule(TrainConfig(learning_rate=3e-4), 12) == 3e-4


def test_training_settings_that_do_not_fit_are_named() -> None:
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ConfigError, match="time_flip_mode"):
        TrainConfig(time_flip_mode="sometimes")
    with pytest.raises(ConfigError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ConfigError, match="patience=20"):
        check_fit_settings(TrainConfig(select="last"), 87, 128)
    with pytest.raises(ConfigError, match="specaug_freq=13"):
        check_fit_settings(TrainConfig(specaug_masks=1, specaug_freq=13), 431, 13)
    with pytest.raises(ConfigError, match="specaug_time=90"):
        check_fit_settings(TrainConfig(specaug_masks=1, specaug_time=90), 87, 128)
    check_fit_settings(TrainConfig(specaug_masks=1, specaug_freq=12), 431, 13)
