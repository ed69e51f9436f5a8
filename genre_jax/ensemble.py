"""Ensembles: several trained runs as one model whose probabilities are the members' mean.

An ensemble is a run directory like any other (``evaluate``, ``predict`` and ``compare`` take
it) that holds no weights, only which runs it averages::

    config.json   {"members": [...], "features", "store", "split", ...} (the first member's)
    labels.json   the genre names

Members know the same genres and, when trained on the same data, hold out the same test songs,
so the ensemble is evaluated on songs none of its members trained on. They may read different
features (each its own store: a *mixed* ensemble, whose ``config.json`` lists each member's
``member_features``) as long as they cut the same segments (``segment_seconds``): the mean is
taken segment by segment, each segment found in every member's store by its song and position.
Member paths are stored relative to the ensemble directory when they lie inside it (as
``crossval`` writes them), absolute otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genre_jax.config import ConfigError, FeatureConfig, model_name
from genre_jax.fileio import (
    MARKER,
    OutputDirError,
    atomic_write_json,
    mark_dir,
    read_json,
    require_folder_or_absent,
)
from genre_jax.settings import require_same
from genre_jax.splits import Split


def is_ensemble(run_config: dict[str, Any]) -> bool:
    return "members" in run_config


def is_mixed(run_config: dict[str, Any]) -> bool:
    """An ensemble whose members read different features (each from its own store)."""
    return "member_features" in run_config


def member_dirs(run_dir: Path, run_config: dict[str, Any]) -> list[Path]:
    """The members' run directories (relative entries resolved against ``run_dir``)."""
    return [run_dir / p if not os.path.isabs(p) else Path(p) for p in run_config["members"]]


def make_ensemble(members: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Write an ensemble of the finished runs ``members`` to ``out_dir``; return its config.

    Raises:
        ConfigError: fewer than two members, a member that is not a finished run, members
            cutting other segments, with other genres or test songs (each named).
    """
    out_dir = Path(out_dir)
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    _check_out_dir(out_dir, [Path(m) for m in members])
    configs = []
    for member in map(Path, members):
        if not (member / "config.json").is_file() or not (member / "summary.json").is_file():
            raise ConfigError(f"ensemble member {member}: not a finished run (no summary.json)")
        configs.append(read_json(member / "config.json"))
    first = configs[0]
    features = [FeatureConfig.from_json(c["features"]) for c in configs]
    mixed = any(f != features[0] for f in features)
    for member, config, feature in zip(members[1:], configs[1:], features[1:], strict=True):
        if feature.segment_seconds != features[0].segment_seconds:
            require_same(features[0], feature, f"ensemble member {member} (feature settings)")
        if config["genres"] != first["genres"]:
            raise ConfigError(f"ensemble member {member}: genres {config['genres']} differ")
        if config.get("data_fingerprint") == first.get("data_fingerprint"):
            tests = [Split.from_json(c["split"]).test for c in (first, config)]
            if not np.array_equal(np.sort(tests[0]), np.sort(tests[1])):
                raise ConfigError(
                    f"ensemble member {member}: holds out other test songs than {members[0]}"
                )
    mark_dir(out_dir, "ensemble")
    paths = []
    for member in map(Path, members):
        resolved = member.resolve()
        inside = resolved.is_relative_to(out_dir.resolve())
        paths.append(str(resolved.relative_to(out_dir.resolve())) if inside else str(resolved))
    config = {
        **{k: first[k] for k in ("features", "feature_hash", "store", "split", "genres")},
        "data_fingerprint": first.get("data_fingerprint"),
        "members": paths,
        "member_models": [model_name(c["train"]) for c in configs],
        "train": first["train"],
    }
    if mixed:
        config["member_features"] = [c["features"] for c in configs]
    atomic_write_json(out_dir / "config.json", config)
    atomic_write_json(out_dir / "labels.json", first["genres"])
    return config


def _check_out_dir(out_dir: Path, members: Sequence[Path]) -> None:
    """The ensemble's folder must be new (or hold nothing but its members' own run folders,
    as ``crossval`` lays them out), and no member may be it or contain it.

    Raises:
        OutputDirError: ``out_dir`` is a file, holds a run or anything but the members, is
            one of the members, or is a member of a member (each named).
    """
    require_folder_or_absent(out_dir, "an ensemble")
    target = out_dir.resolve()
    for member in members:
        for inner in _runs_within(member, set()):
            if inner == target:
                how = "is" if inner == member.resolve() else f"is a member of {member}, so"
                raise OutputDirError(
                    f"ensemble member {member}: the output folder {out_dir} {how} the ensemble "
                    "itself; write the ensemble to a new folder"
                )
    if not out_dir.is_dir():
        return
    if (out_dir / "config.json").exists():
        raise OutputDirError(
            f"{out_dir}: already holds a run (config.json); an ensemble needs a new folder"
        )
    inside = {m.resolve() for m in members}
    others = [p.name for p in out_dir.iterdir() if p.resolve() not in inside and p.name != MARKER]
    if others:
        raise OutputDirError(
            f"{out_dir}: not empty (it holds {', '.join(sorted(others)[:6])}); an ensemble "
            "needs a new folder"
        )


def _runs_within(run_dir: Path, seen: set[Path]) -> list[Path]:
    """``run_dir`` and, for an ensemble, every run it averages, recursively (resolved)."""
    resolved = run_dir.resolve()
    if resolved in seen:
        return []
    seen.add(resolved)
    found = [resolved]
    config_path = run_dir / "config.json"
    if config_path.is_file():
        try:
            config = read_json(config_path)
        except (OSError, ValueError):
            return found
        if isinstance(config, dict) and is_ensemble(config):
            for inner in member_dirs(run_dir, config):
                found += _runs_within(inner, seen)
    return found


def ensemble_name(run_config: dict[str, Any]) -> str:
    """``ensemble(melstat+statsvm)``."""
    return f"ensemble({'+'.join(run_config['member_models'])})"
