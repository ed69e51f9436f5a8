"""Configs: JSON round trip, stable hashes, validation naming the field, generated CLI options."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from genre_jax.config import ConfigError, FeatureConfig
from genre_jax.options import add_dataclass_options, dataclass_from_options
from genre_jax.settings import require_same


def test_seed_defaults() -> None:
    config = FeatureConfig()
    assert (config.sample_rate, config.n_mfcc, config.n_fft, config.hop_length) == (
        22050,
        13,
        2048,
        512,
    )
    assert (config.segment_samples, config.n_frames, config.n_features) == (220500, 431, 13)


def test_json_round_trip_and_hash() -> None:
    config = FeatureConfig(segment_seconds=2.0, top_db=None)
    again = FeatureConfig.from_json(config.to_json())
    assert again == config and again.hash() == config.hash()
    assert FeatureConfig().hash() != config.hash()
    assert len(config.hash()) == 12


def test_unknown_and_invalid_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="n_bins"):
        FeatureConfig.from_json({**FeatureConfig().to_json(), "n_bins": 3})
    with pytest.raises(ConfigError, match="hop_length"):
        FeatureConfig(hop_length=0)
    with pytest.raises(ConfigError, match="kind"):
        FeatureConfig(kind="cqt")
    with pytest.raises(ConfigError, match="n_mfcc"):
        FeatureConfig(n_mfcc=200)


def test_require_same_names_the_differing_field() -> None:
    with pytest.raises(ConfigError, match=r"segment_seconds: expected 10.0, found 2.0"):
        require_same(FeatureConfig(), FeatureConfig(segment_seconds=2.0), "store")
    require_same(FeatureConfig(), FeatureConfig(), "store")


def test_cli_options_are_generated_from_the_dataclass() -> None:
    parser = argparse.ArgumentParser()
    add_dataclass_options(parser, FeatureConfig)
    args = parser.parse_args(["--segment-seconds", "2", "--top-db", "none", "--n-mfcc", "20"])
    config = dataclass_from_options(FeatureConfig, args)
    assert config == dataclasses.replace(
        FeatureConfig(), segment_seconds=2.0, top_db=None, n_mfcc=20
    )
    assert dataclass_from_options(FeatureConfig, parser.parse_args([])) == FeatureConfig()
