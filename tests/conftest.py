"""Shared fixtures: where the real audio lives, and the built-in synthetic dataset.

The suite's expectations (golden losses, kill-and-resume equality) are for one CPU device. A
``--xla_force_host_platform_device_count`` that the user exported for other work is removed
from this process's environment here, before JAX starts, and every test that starts a process
gives it its environment explicitly (:func:`child_env`); tests that need simulated devices set
the flag for their own child processes.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


def _without_device_count(flags: str) -> str:
    return " ".join(_DEVICE_COUNT_FLAG.sub("", flags).split())


if "XLA_FLAGS" in os.environ:
    os.environ["XLA_FLAGS"] = _without_device_count(os.environ["XLA_FLAGS"])


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a process a test starts: this one's (without a simulated device
    count) with the project on ``PYTHONPATH``, then ``overrides``."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = _without_device_count(env.get("XLA_FLAGS", ""))
    env["PYTHONPATH"] = str(ROOT)
    env.update(overrides)
    return env


SHARED_DATA = Path(
    os.environ.get("GENRE_JAX_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def shared(relative: str) -> Path:
    """A path under the shared real-audio folder; skips the test when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real audio not available: {path} (set GENRE_JAX_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def gtzan_mini() -> Path:
    return shared("gtzan-mini")


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in synthetic dataset, 3 tracks per genre (generated once per session)."""
    from genre_jax.datasets import generate_synthetic

    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate_synthetic(out, tracks_per_genre=3, seed=0)
    return out


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory):
    """Feature store (seed's MFCC settings, 10 s segments) of 10 synthetic tracks per genre."""
    from genre_jax.datasets import generate_synthetic
    from genre_jax.prepare import prepare

    base = tmp_path_factory.mktemp("synthetic10")
    generate_synthetic(base / "data", tracks_per_genre=10, seed=0)
    return prepare(base / "data", base / "features", progress=False, log=lambda _: None)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``musicnn`` wheel (the pretrained weights), downloaded once per session with pip or
    taken from ``$GENRE_JAX_MUSICNN_WHEEL``; tests that need it skip where it cannot be had."""
    from benchmarks.musicnn import find_wheel
    from genre_jax.models.musicnn import WeightsError

    try:
        return find_wheel(tmp_path_factory.mktemp("musicnn"))
    except WeightsError as error:
        pytest.skip(f"the musicnn wheel cannot be downloaded here: {error}")


@contextlib.contextmanager
def converted_weights(wheel: Path, cache: Path, checkpoints: Sequence[str]) -> Iterator[Path]:
    """While open: the wheel's ``checkpoints`` converted once into ``cache``, which
    ``$GENRE_JAX_CACHE`` names (``$GENRE_JAX_MUSICNN_WHEEL`` the wheel); both restored after."""
    from genre_jax.models import musicnn

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(musicnn.CACHE_ENV, str(cache))
        patch.setenv(musicnn.WHEEL_ENV, str(wheel))
        for checkpoint in checkpoints:
            musicnn.load_weights(log=lambda _: None, checkpoint=checkpoint)
        yield cache


@pytest.fixture(scope="session")
def short_songs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic genres, 3 songs of 4 s each."""
    from genre_jax.datasets import generate_synthetic

    out = tmp_path_factory.mktemp("short") / "data"
    generate_synthetic(out, tracks_per_genre=3, seconds=4.0, seed=0)
    return out


@pytest.fixture(scope="session")
def logc_store(short_songs: Path, tmp_path_factory: pytest.TempPathFactory):
    """The taggers' input features of :func:`short_songs`, 2 s segments (one patch): 60."""
    from genre_jax.config import FeatureConfig
    from genre_jax.models.musicnn import INPUT_FEATURES
    from genre_jax.prepare import prepare

    features = FeatureConfig(**INPUT_FEATURES, segment_seconds=2.0)
    out = tmp_path_factory.mktemp("logc") / "features"
    return prepare(short_songs, out, features, progress=False, log=lambda _: None)


@pytest.fixture(scope="session")
def cnn_run(synthetic_store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CNN trained one epoch on :func:`synthetic_store` (tests copy it before changing it)."""
    from genre_jax.config import TrainConfig
    from genre_jax.runner import train_run

    run = tmp_path_factory.mktemp("cnn-run") / "cnn"
    config = TrainConfig(model="cnn", epochs=1, patience=0, time_flip=False)
    train_run(synthetic_store.path, run, config, progress=False, log=lambda _: None)
    return run
