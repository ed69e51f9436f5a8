"""Ensembles: several trained runs as one model whose probabilities are the members' mean.

An ensemble is a run directory like any other (``evaluate``, ``predict`` and ``compare`` take
it) that holds no weights, only which runs it averages::

    config.json   {"members": [...], "features", "store", "split", ...} (the first member's)
    labels.json   the genre names

Members must read the same features (one feature store's settings), know the same genres and,
when trained on the same store, hold out the same test songs, so the ensemble is evaluated
on songs none of its members trained on. Member paths are stored relative to the ensemble
directory when they lie inside it (as ``crossval`` writes them), absolute otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.config import ConfigError, FeatureConfig, require_same
from genre_jax.fileio import atomic_write_json, read_json
from genre_jax.splits import Split


def is_ensemble(run_config: dict[str, Any]) -> bool:
    return "members" in run_config


def member_dirs(run_dir: Path, run_config: dict[str, Any]) -> list[Path]:
    """The members' run directories (relative entries resolved against ``run_dir``)."""
    return [run_dir / p if not os.path.isabs(p) else Path(p) for p in run_config["members"]]


def make_ensemble(members: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Write an ensemble of the finished runs ``members`` to ``out_dir``; return its config.

    Raises:
        ConfigError: fewer than two members, a member that is not a finished run, members
            with other feature settings, genres or test songs (each named).
    """
    out_dir = Path(out_dir)
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    configs = []
    for member in map(Path, members):
        if not (member / "config.json").is_file() or not (member / "summary.json").is_file():
            raise ConfigError(f"ensemble member {member}: not a finished run (no summary.json)")
        configs.append(read_json(member / "config.json"))
    first = configs[0]
    for member, config in zip(members[1:], configs[1:], strict=True):
        require_same(
            FeatureConfig.from_json(first["features"]),
            FeatureConfig.from_json(config["features"]),
            f"ensemble member {member} (feature settings)",
        )
        if config["genres"] != first["genres"]:
            raise ConfigError(f"ensemble member {member}: genres {config['genres']} differ")
        if config.get("data_fingerprint") == first.get("data_fingerprint"):
            tests = [Split.from_json(c["split"]).test for c in (first, config)]
            if not np.array_equal(np.sort(tests[0]), np.sort(tests[1])):
                raise ConfigError(
                    f"ensemble member {member}: holds out other test songs than {members[0]}"
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for member in map(Path, members):
        resolved = member.resolve()
        inside = resolved.is_relative_to(out_dir.resolve())
        paths.append(str(resolved.relative_to(out_dir.resolve())) if inside else str(resolved))
    config = {
        **{k: first[k] for k in ("features", "feature_hash", "store", "split", "genres")},
        "data_fingerprint": first.get("data_fingerprint"),
        "members": paths,
        "member_models": [c["train"]["model"] for c in configs],
        "train": first["train"],
    }
    atomic_write_json(out_dir / "config.json", config)
    atomic_write_json(out_dir / "labels.json", first["genres"])
    return config


def ensemble_name(run_config: dict[str, Any]) -> str:
    """``ensemble(melstat+statsvm)``."""
    return f"ensemble({'+'.join(run_config['member_models'])})"
