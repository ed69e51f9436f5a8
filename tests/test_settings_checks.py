"""Settings that were accepted and failed later (or not at all) are refused before any folder
is written (issue 35, items 11, 18, 24 and 25).

When the config is built:

- feature settings that leave mel bands empty (``--fmax 1``: every segment the same);
- seeds and other whole numbers beyond what numpy, JAX and scikit-learn take;
- contradictory training settings (``select='last'`` with early stopping, pretrained-layer
  settings for a network without any).

By the training runner, before the run folder (:func:`check_against_features`): a train config
against the features it reads (SpecAugment stripes wider than a segment, segments too short
for the network) and ``checkpoint_steps`` with ``feed='device'``; ``feed='auto'`` streams for
``checkpoint_steps`` (:attr:`TrainConfig.feed_asked`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
from flax import nnx
from sklearn.model_selection import StratifiedKFold

from genre_jax import models
from genre_jax.cli import main
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.experiment import load_experiment
from genre_jax.input_checks import check_against_features
from genre_jax.models import NETWORK, ModelSpec, build_network, register
from genre_jax.settings import SEED_MAX, setting

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.fixture(scope="module")
def store(short_songs: Path, tmp_path_factory: pytest.TempPathFactory):
    """The synthetic genres' 4 s songs in 2 s segments (87 frames x 13 MFCCs)."""
    from genre_jax.prepare import prepare

    out = tmp_path_factory.mktemp("checks") / "features"
    config = FeatureConfig(segment_seconds=2.0)
    return prepare(short_songs, out, config, progress=False, log=lambda _: None)


def refused(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one line of a command refused with exit status 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# --- 11: empty mel bands ---------------------------------------------------------------------


def test_fmax_that_leaves_mel_bands_empty_is_refused_naming_them(
    short_songs: Path, tmp_path: Path, capsys
) -> None:
    # Before: prepare --fmax 1 wrote a store whose segments all had the same features.
    with pytest.raises(ConfigError) as error:
        FeatureConfig(fmax=1)
    text = str(error.value)
    assert "fmin=0, fmax=1, n_mels=128, n_fft=2048, sample_rate=22050" in text
    assert "128 of the 128 mel bands are empty (band 0-127)" in text
    out = tmp_path / "store"
    err = refused(
        ["prepare", "--data-dir", str(short_songs), "--out", str(out), "--fmax", "1"], capsys
    )
    assert "genre-jax prepare: error: feature settings" in err and "mel bands are empty" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("settings", "empty"),
    [
        ({}, False),  # the seed's
        (
            {"kind": "logc", "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 96},
            False,
        ),
        ({"n_fft": 256}, True),  # 129 bins for 128 bands
        ({"n_fft": 512, "n_mels": 256}, True),
        ({"fmin": 300.0, "fmax": 400.0, "n_mels": 40}, True),
        ({"fmin": 300.0, "fmax": 800.0, "n_mels": 40}, False),
    ],
)
def test_empty_mel_bands_are_those_librosa_warns_of(settings: dict, empty: bool) -> None:
    """The refusal's condition is librosa's "Empty filters detected" on the same filters."""
    base = FeatureConfig()
    sr = settings.get("sample_rate", base.sample_rate)
    n_fft = settings.get("n_fft", base.n_fft)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        librosa.filters.mel(
            sr=sr,
            n_fft=n_fft,
            n_mels=settings.get("n_mels", base.n_mels),
            fmin=settings.get("fmin", 0.0),
            fmax=settings.get("fmax"),
        )
    assert any("Empty filters" in str(w.message) for w in caught) == empty
    if empty:
        with pytest.raises(ConfigError, match="mel bands are empty"):
            FeatureConfig(**settings)
    else:
        FeatureConfig(**settings)


# --- 18: seeds and other whole numbers -------------------------------------------------------


def test_the_seed_range_is_what_jax_and_scikit_learn_take() -> None:
    """Why seeds stop at 2**32 - 1: JAX keeps 32 bits of a seed (2**32 is the key of 0),
    scikit-learn refuses 2**32, and a seed beyond 64 bits is an OverflowError."""
    same = jax.random.key_data(jax.random.key(2**32)) == jax.random.key_data(jax.random.key(0))
    assert bool(jnp.all(same))
    folds = StratifiedKFold(2, shuffle=True, random_state=SEED_MAX)
    assert len(list(folds.split(np.zeros(4), [0, 0, 1, 1]))) == 2
    with pytest.raises(ValueError):
        list(
            StratifiedKFold(2, shuffle=True, random_state=SEED_MAX + 1).split(
                np.zeros(4), [0, 0, 1, 1]
            )
        )
    with pytest.raises(OverflowError):
        jax.random.key(99999999999999999999)
    assert TrainConfig(seed=SEED_MAX, split_seed=SEED_MAX).seed == SEED_MAX
    for name in ("seed", "split_seed"):
        with pytest.raises(ConfigError, match=rf"^train setting {name}=4294967296: must be >= 0 "):
            TrainConfig(**{name: SEED_MAX + 1})


def test_a_huge_seed_is_refused_before_the_run_folder(store, tmp_path: Path, capsys) -> None:
    # Before: OverflowError after the run folder was written, so the corrected command was
    # refused as "already holds a run".
    run = tmp_path / "run"
    argv = ["train", "--features", str(store.path), "--run-dir", str(run), "--model", "cnn"]
    err = refused([*argv, "--seed", "99999999999999999999"], capsys)
    assert err == (
        "genre-jax train: error: train setting seed=99999999999999999999: must be >= 0 and "
        "<= 4294967295"
    )
    assert not run.exists()
    experiment = tmp_path / "exp.json"
    experiment.write_text(json.dumps({"train": {"model": "cnn", "split_seed": 10**20}}))
    err = refused([*argv, "--config", str(experiment)], capsys)
    assert f"experiment file {experiment}: train setting split_seed=" in err
    assert "<= 4294967295" in err and not run.exists()
    # a number past Python's 4,300 digits: one line, not echoed whole
    with pytest.raises(SystemExit) as stop:  # argparse's own refusal
        main([*argv, "--seed", "9" * 5000])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "argument --seed: a whole number of 5,000 digits" in err
    assert len(err) < 200
    experiment.write_text('{"train": {"seed": ' + "9" * 5000 + "}}")
    err = refused([*argv, "--config", str(experiment)], capsys)
    assert f"experiment file {experiment}: not readable JSON" in err and len(err) < 300
    assert not run.exists()


def test_every_whole_number_setting_has_a_range_the_code_can_use() -> None:
    with pytest.raises(
        ConfigError, match=r"epochs=<a whole number of about 31 digits>: .*<= 2147483647"
    ):
        TrainConfig(epochs=10**30)
    with pytest.raises(ConfigError, match=r"batch_size=2147483648: must be >= 1 and <= 2147483647"):
        TrainConfig(batch_size=2**31)
    with pytest.raises(ConfigError, match=r"specaug_masks=1000: must be >= 0 and <= 100"):
        TrainConfig(specaug_masks=1000)
    # a model's own whole numbers: at most 64 bits, as numpy and JAX take them
    with pytest.raises(
        ConfigError, match=r"model setting width=10+: must be >= 1 and <= 9223372036854775807"
    ):
        TrainConfig.from_flat({"model": "melstat", "width": 10**20})
    # a whole number given for a float setting, beyond any float: refused, not OverflowError
    with pytest.raises(
        ConfigError, match=r"learning_rate=<a whole number of about 401 digits>: must be a finite"
    ):
        TrainConfig(learning_rate=10**400)


# --- 24, 25: contradictory training settings, refused when the config is built ---------------


def train_argv(store, run: Path) -> list[str]:
    return ["train", "--features", str(store.path), "--run-dir", str(run), "--epochs", "1"]


def test_select_last_with_early_stopping_is_refused_naming_both(store, tmp_path, capsys) -> None:
    """With select='last' every epoch counts as the best (train.fit), so patience never
    stops a run: the two contradict each other."""
    # Before: refused by train.fit, after config.json and checkpoints/ were written.
    with pytest.raises(ConfigError, match=r"select='last' and patience=20: .*set patience=0"):
        TrainConfig(select="last")
    assert TrainConfig(select="last", patience=0).select == "last"
    run = tmp_path / "run"
    err = refused([*train_argv(store, run), "--select", "last"], capsys)
    assert "train settings select='last' and patience=20" in err and not run.exists()


@pytest.mark.parametrize(
    ("model", "option", "value"),
    [("cnn", "freeze_epochs", 3), ("cnn", "pretrained_lr_scale", 0.5), ("gru", "freeze_epochs", 1)],
)
def test_pretrained_settings_for_a_network_without_pretrained_layers_are_refused(
    store, tmp_path, capsys, model: str, option: str, value
) -> None:
    # Before: refused by train.init_state, after the run folder was written.
    message = rf"train setting\(s\) {option}={value}: model '{model}' has no pretrained layers"
    with pytest.raises(ConfigError, match=message):
        TrainConfig(model=model, **{option: value})
    run = tmp_path / "run"
    flag = "--" + option.replace("_", "-")
    err = refused([*train_argv(store, run), "--model", model, flag, str(value)], capsys)
    assert f"{option}={value}: model '{model}' has no pretrained layers" in err
    assert not run.exists()


def test_pretrained_settings_are_kept_for_a_network_with_pretrained_layers() -> None:
    config = TrainConfig(model="musicnn", freeze_epochs=3, pretrained_lr_scale=0.1)
    assert (config.freeze_epochs, config.pretrained_lr_scale) == (3, 0.1)


def test_checkpoint_steps_stream_with_feed_auto_and_are_refused_with_feed_device(store) -> None:
    """Only a streamed epoch checkpoints inside itself. Before, ``--checkpoint-steps 5`` was
    silently ignored wherever ``feed='auto'`` held the data on the device: now auto streams
    for it (the same batches in the same order), and ``feed='device'`` is refused. The
    refusal is the runner's check (:func:`check_against_features`), not the config's, so a
    finished run's config.json with both still loads."""
    assert TrainConfig(checkpoint_steps=5).feed_asked == "stream"
    assert TrainConfig().feed_asked == "auto"
    assert TrainConfig(feed="device").feed_asked == "device"
    config = TrainConfig(checkpoint_steps=5, feed="device")
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(
        ConfigError, match=r"^train settings checkpoint_steps=5 and feed='device': "
    ):
        check_against_features(config, store.config)
    check_against_features(TrainConfig(checkpoint_steps=5), store.config)
    check_against_features(TrainConfig(checkpoint_steps=5, feed="stream"), store.config)


# --- 24, 25: a train config against the features it reads ------------------------------------


def test_specaug_stripes_wider_than_a_segment_are_refused(store) -> None:
    assert (store.config.n_frames, store.config.n_features) == (87, 13)
    with pytest.raises(ConfigError) as error:
        check_against_features(TrainConfig(specaug_masks=1, specaug_time=500), store.config)
    assert str(error.value).startswith(
        "train setting specaug_time=500: must be below the 87 frames of a segment (feature "
        "settings segment_seconds=2, sample_rate=22050, hop_length=512, n_mfcc=13)"
    )
    with pytest.raises(ConfigError, match=r"specaug_freq=13: must be below the 13 coeff"):
        check_against_features(TrainConfig(specaug_masks=1, specaug_freq=13), store.config)
    check_against_features(
        TrainConfig(specaug_masks=1, specaug_time=86, specaug_freq=12), store.config
    )


def test_segments_too_short_for_the_cnn_are_refused_with_the_least_it_reads() -> None:
    """0.1 s segments are 5 frames; the CNN's three 2x2 poolings leave 0, whose mean is NaN
    ("training loss is nan" before). The check traces the network and finds its minimum."""
    short = FeatureConfig(segment_seconds=0.1)
    with pytest.raises(ConfigError) as error:
        check_against_features(TrainConfig(), short)
    assert str(error.value) == (
        "model 'cnn' cannot read segments of 5 frames x 13 coefficients (feature settings "
        "segment_seconds=0.1, sample_rate=22050, hop_length=512, n_mfcc=13): segments too "
        "short for the network, which reads at least 8 frames; set segment_seconds >= 0.163"
    )
    assert FeatureConfig(segment_seconds=0.163).n_frames == 8
    check_against_features(TrainConfig(), FeatureConfig(segment_seconds=0.163))
    # the boundary is the network's own: finite outputs from 8 frames, NaN from 7
    logits = jax.jit(lambda x: build_network("cnn", None, 13, 10)(x, train=False))
    x = jnp.ones((2, 8, 13))
    assert bool(jnp.isfinite(logits(x)).all())
    assert not bool(jnp.isfinite(logits(x[:, :7])).any())
    with pytest.raises(
        ConfigError,
        match=r"too few coefficients per frame for the network, which reads at least 8$",
    ):
        check_against_features(TrainConfig(), FeatureConfig(n_mfcc=4))


def test_each_network_is_asked_its_own_minimum() -> None:
    with pytest.raises(ConfigError, match=r"'melstat' .* reads at least 22 frames"):
        check_against_features(
            TrainConfig(model="melstat"), FeatureConfig(kind="logmel", segment_seconds=0.4)
        )
    check_against_features(
        TrainConfig(model="melstat"), FeatureConfig(kind="logmel", segment_seconds=0.5)
    )
    check_against_features(TrainConfig(model="gru"), FeatureConfig(segment_seconds=0.1))


@dataclass(frozen=True)
class WindowSettings:
    """A network of this test that reads windows of frames.

    Attributes:
        window: frames each output reads ('valid' convolution over time).
    """

    window: int = setting(9, minimum=1)


class WindowNet(nnx.Module):
    def __init__(self, n_features: int, n_classes: int, window: int, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(n_features, 8, (window,), padding="VALID", rngs=rngs)
        self.out = nnx.Linear(8, n_classes, rngs=rngs)

    def __call__(self, x, *, train: bool = False, key=None, mask=None):
        return self.out(jnp.mean(self.conv(x), axis=1))


WINDOWNET = ModelSpec(
    name="windownet",
    family=NETWORK,
    description="a test network: one valid convolution over time",
    settings=WindowSettings,
    build=lambda s, n_features, n_classes, rngs: WindowNet(n_features, n_classes, s.window, rngs),
)


@pytest.fixture
def windownet():
    """Registered for one test only: other files list the registry (``train --help``)."""
    register(WINDOWNET, replace=True)
    yield WINDOWNET
    models._REGISTRY.pop(WINDOWNET.name, None)


def test_a_network_of_ones_own_is_asked_too(windownet) -> None:
    """Nothing declares the minimum of a registered network: its trace says it."""
    features = FeatureConfig(segment_seconds=0.1)  # 5 frames
    with pytest.raises(
        ConfigError, match=r"'windownet' .* reads at least 9 frames; set segment_seconds >= 0.186"
    ):
        check_against_features(TrainConfig(model="windownet"), features)
    with pytest.raises(ConfigError, match=r"reads at least 33 frames"):
        check_against_features(
            TrainConfig.from_flat({"model": "windownet", "window": 33}), features
        )
    check_against_features(TrainConfig.from_flat({"model": "windownet", "window": 5}), features)
    with pytest.raises(ConfigError, match=r"train setting\(s\) freeze_epochs=1: model 'windownet'"):
        TrainConfig(model="windownet", freeze_epochs=1)


def test_the_recipes_pass_the_checks() -> None:
    """No false refusal: every experiment file in configs/ fits its own features."""
    checked = 0
    for path in sorted(CONFIGS.glob("*.json")):
        experiment = load_experiment(path)
        for member in experiment.members or (experiment,):
            check_against_features(member.train, member.features)
            checked += 1
    assert checked >= 16


def test_train_refuses_specaug_wider_than_a_segment_without_a_run_folder(
    store, tmp_path, capsys
) -> None:
    # Before: refused by train.fit after config.json and checkpoints/ were written, and the
    # folder left behind; now by check_against_features, before the folder.
    run = tmp_path / "run"
    err = refused(
        [*train_argv(store, run), "--specaug-masks", "1", "--specaug-time", "500"], capsys
    )
    assert "specaug_time=500: must be below the 87 frames" in err
    assert not run.exists()


def test_train_refuses_segments_too_short_for_the_network_before_the_run_folder(
    short_songs: Path, tmp_path, capsys
) -> None:
    # Before: "epoch 1: training loss is nan", the run folder left behind.
    from genre_jax.prepare import prepare

    tiny = prepare(
        short_songs,
        tmp_path / "features",
        FeatureConfig(segment_seconds=0.1),
        progress=False,
        log=lambda _: None,
    )
    run = tmp_path / "run"
    err = refused(
        [
            "train",
            "--features",
            str(tiny.path),
            "--run-dir",
            str(run),
            "--epochs",
            "1",
            "--no-progress",
        ],
        capsys,
    )
    assert "segments too short for the network, which reads at least 8 frames" in err
    assert not run.exists()


def test_train_with_checkpoint_steps_streams(store, tmp_path, capsys) -> None:
    # Before: trained on the device, no checkpoint inside the epoch; the runner chooses the
    # feed from config.feed_asked.
    run = tmp_path / "run"
    assert main([*train_argv(store, run), "--checkpoint-steps", "2", "--no-progress"]) == 0
    assert "streamed from the store" in capsys.readouterr().out


def test_train_refuses_checkpoint_steps_on_the_device_before_the_run_folder(
    store, tmp_path, capsys
) -> None:
    run = tmp_path / "run"
    argv = [*train_argv(store, run), "--checkpoint-steps", "2", "--feed", "device"]
    assert "checkpoint_steps=2 and feed='device'" in refused(argv, capsys)
    assert not run.exists()
