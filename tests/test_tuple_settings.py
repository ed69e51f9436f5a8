"""Tuple settings and dotted model flags (issue 36, item 3: one name per setting; settings may
be tuples).

A setting may be a tuple (the CNN's ``channels``, the GRU's ``units``): its range applies to
each value, an empty one is refused, JSON's list reads back as the tuple (configs round-trip,
compare equal and hash the same), and its option takes comma-separated values
(``--model.channels 16,32,32``). A model setting's option is its dotted name, ``--model.<name>``
as in ``config.json``'s model section; ``--model-<name>`` still works, with a notice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from genre_jax.cli import build_parser, main
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.models import PIPELINE, ModelSpec, ModelSpecError, build_network, register
from genre_jax.models.cnn import CNNSettings
from genre_jax.models.gru import GRUSettings
from genre_jax.options import train_config_from_options
from genre_jax.settings import check_fields, config_hash, from_json, setting

SMALL = (16, 32, 32)


def count(module: nnx.Module) -> int:
    return sum(int(np.size(x)) for x in jax.tree.leaves(nnx.state(module)))


@dataclass(frozen=True)
class Shapes:
    """A settings class of tuples, beside single values.

    Attributes:
        sizes: widths, one per layer.
        rates: dropout rates.
        name: a single value.
    """

    sizes: tuple[int, ...] = setting((4, 8), minimum=1)
    rates: tuple[float, ...] = setting((0.5,), minimum=0, below=1)
    name: str = "x"


def test_a_tuple_setting_round_trips_through_json_and_the_flat_form() -> None:
    # The machinery on a settings class of its own: JSON's lists read back as the tuples.
    shapes = Shapes(sizes=(2, 3, 5), rates=(0.1, 0.2))
    check_fields(shapes, "setting")
    again = from_json(Shapes, json.loads(json.dumps(dataclasses.asdict(shapes))))
    assert again == shapes and isinstance(again.sizes, tuple) and hash(again) == hash(shapes)
    assert config_hash(again) == config_hash(shapes)
    # A model's settings, in the model section and flat.
    config = TrainConfig.from_flat({"model": "cnn", "channels": SMALL})
    assert config.model_settings == CNNSettings(channels=SMALL)
    written = json.loads(json.dumps(config.to_json()))
    assert written["model"] == {"name": "cnn", "channels": list(SMALL)}
    read = TrainConfig.from_json(written)
    assert read == config and read.model_settings.channels == SMALL
    assert hash(read.model_settings) == hash(config.model_settings)
    assert read.dotted()["model.channels"] == SMALL  # the setting's one name
    assert TrainConfig.from_json({"model": "cnn", "channels": [16, 32, 32]}) == config  # flat
    gru = TrainConfig.from_json({"model": {"name": "gru", "units": [32, 48], "unroll": 2}})
    assert gru.model_settings == GRUSettings(units=(32, 48), unroll=2)


def test_old_run_configs_load_with_the_seeds_architecture() -> None:
    """A run directory's ``config.json`` from before these settings names none: the defaults,
    the seed's, apply; the default CNN still counts the seed's 65,994 values."""
    cnn = TrainConfig.from_json({"model": {"name": "cnn"}})
    assert cnn.model_settings == CNNSettings() and cnn.model_settings.channels == (32, 64, 64)
    gru = TrainConfig.from_json({"model": {"name": "gru", "unroll": 0}})
    assert gru.model_settings.units == (64, 96)
    assert count(build_network("cnn", cnn.model_settings, 13, 10)) == 65_994
    assert count(build_network("gru", gru.model_settings, 13, 10)) == 76_170


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([], "channels=(): must be a tuple of whole numbers, at least one"),
        ([16, 0, 32], "channels=(16, 0, 32): each value must be >= 1, not 0"),
        ([16, 2.5], "channels=(16, 2.5): each value must be a whole number, not 2.5"),
        (["16"], "each value must be a whole number, not '16'"),
        ("16,32", "channels='16,32': must be a tuple of whole numbers"),
        (16, "channels=16: must be a tuple of whole numbers, not 16"),
    ],
)
def test_bad_tuple_values_are_one_line_errors_naming_the_setting(value, words: str) -> None:
    for train in (
        {"model": {"name": "cnn", "channels": value}},
        {"model": "cnn", "channels": value},
    ):
        with pytest.raises(ConfigError, match=r"\bchannels=") as caught:
            TrainConfig.from_json(train)
        assert words in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"model setting rates=\(0\.5, 1\.0\): each value must"):
        check_fields(Shapes(rates=(0.5, 1.0)), "model setting")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("16,x,32", "argument --model.channels: invalid int value 'x' in '16,x,32'"),
        ("", "argument --model.channels: no value"),
        ("16,,32", "invalid int value '' in '16,,32'"),
        ("16,0,32", "model setting channels=(16, 0, 32): each value must be >= 1, not 0"),
        ("16,2.5", "invalid int value '2.5'"),
    ],
)
def test_bad_tuple_options_are_one_line_errors(capsys, tmp_path: Path, text, words) -> None:
    argv = ["train", "--features", str(tmp_path / "none"), "--run-dir", str(tmp_path / "run")]
    try:
        code = main([*argv, "--model", "cnn", f"--model.channels={text}"])
    except SystemExit as stop:  # argparse's usage errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and words in lines[0], err
    assert not list(tmp_path.iterdir())  # nothing touched


def test_help_names_the_dotted_options_and_shows_tuples_as_typed() -> None:
    train = build_parser("train")._subparsers._group_actions[0].choices["train"]
    text = " ".join(train.format_help().split())
    assert "--model.channels CHANNELS,..." in text
    assert "[cnn] output channels of each conv block" in text
    assert "[default: 32,64,64; >= 1 each]" in text
    assert "--model.units UNITS,..." in text and "[default: 64,96; >= 1 each]" in text
    assert "--model.dropout_rate DROPOUT_RATE" in text and "--model-" not in text


def test_old_spellings_of_model_options_work_with_a_notice(capsys) -> None:
    train = build_parser("train")._subparsers._group_actions[0].choices["train"]
    where = ["--features", "f", "--run-dir", "r"]
    given = [
        (["--model", "cnn", "--model-channels", "16,32,32"], "--model-channels", "channels"),
        (["--model", "gru", "--gru-unroll", "4"], "--gru-unroll", "unroll"),
        (["--model", "gru", "--model-unroll", "4"], "--model-unroll", "unroll"),
    ]
    for argv, old, name in given:
        config = train_config_from_options(train.parse_args([*where, *argv]))
        assert f"notice: {old} is now --model.{name}" in capsys.readouterr().err
        assert getattr(config.model_settings, name) == (SMALL if name == "channels" else 4)
    config = train_config_from_options(
        train.parse_args([*where, "--model", "statsvm", "--no-model-harmonic-percussive"])
    )
    err = capsys.readouterr().err
    assert "--no-model-harmonic-percussive is now --no-model.harmonic_percussive" in err
    assert config.model_settings.harmonic_percussive is False
    dotted = train.parse_args([*where, "--model", "cnn", "--model.channels", "16,32,32"])
    assert train_config_from_options(dotted).model_settings.channels == SMALL
    assert capsys.readouterr().err == ""  # the dotted spelling, no notice


def test_a_tuple_setting_clashing_in_type_is_refused_at_registration() -> None:
    @dataclass(frozen=True)
    class Flat:
        channels: int = 3  # a tuple of whole numbers in cnn: one --model.channels option

    with pytest.raises(ModelSpecError, match="setting 'channels' has another type"):
        register(ModelSpec("flatclash", PIPELINE, "", lambda *a: None, settings=Flat))


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    import soundfile as sf

    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    t = np.arange(12 * 22050) / 22050
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    return path


def test_the_cnn_trains_evaluates_and_predicts_with_other_channels(
    synthetic_store, wav, tmp_path, capsys
) -> None:
    store, run = str(synthetic_store.path), tmp_path / "cnn"
    argv = ["train", "--features", store, "--run-dir", str(run), "--model", "cnn"]
    assert main([*argv, "--model.channels", "16,32,32", "--epochs", "1", "--no-progress"]) == 0
    assert "notice" not in capsys.readouterr().err
    section = json.loads((run / "config.json").read_text())["train"]["model"]
    assert section == {"name": "cnn", "channels": [16, 32, 32]}
    parameters = json.loads((run / "summary.json").read_text())["parameters"]
    classes = len(synthetic_store.genres)
    assert parameters == count(build_network("cnn", CNNSettings(SMALL), 13, classes))
    assert parameters != count(build_network("cnn", None, 13, classes))
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["model_settings"] == section and 0 <= report["song_accuracy"] <= 1
    capsys.readouterr()
    assert main(["predict", str(wav), "--run-dir", str(run), "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert prediction["genre"] in synthetic_store.genres
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_the_gru_trains_with_other_units(synthetic_store, tmp_path) -> None:
    store, run = str(synthetic_store.path), tmp_path / "gru"
    argv = ["train", "--features", store, "--run-dir", str(run), "--model", "gru"]
    assert main([*argv, "--model.units", "32,48", "--epochs", "1", "--no-progress"]) == 0
    section = json.loads((run / "config.json").read_text())["train"]["model"]
    assert section == {"name": "gru", "units": [32, 48], "unroll": 0}
    parameters = json.loads((run / "summary.json").read_text())["parameters"]
    expected = build_network("gru", GRUSettings(units=(32, 48)), 13, len(synthetic_store.genres))
    assert parameters == count(expected)
