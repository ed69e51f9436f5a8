"""Shared fixtures: where the real audio lives, and the built-in synthetic dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    from genre_jax.store import prepare

    base = tmp_path_factory.mktemp("synthetic10")
    generate_synthetic(base / "data", tracks_per_genre=10, seed=0)
    return prepare(base / "data", base / "features", progress=False, log=lambda _: None)
