"""Ensembles: several trained runs as one model whose probabilities are the members' mean.

An ensemble is a run directory like any other (``evaluate``, ``predict`` and ``compare`` take
it) that holds no weights, only which runs it averages::

    config.json   {"members": [...], "member_digests": [...], "features", "store", "split",
                   "songs", ...} (the first member's)
    labels.json   the genre names
    songs.json    the first member's songs, by their audio (what every member holds out)

Members know the same genres and hold out the same test songs, by their audio
(:mod:`genre_jax.identity`; a member trained on a copy of the data is compared the same way),
so the ensemble is evaluated on songs none of its members trained on. The ensemble records a
digest of each member's settings and weights (:func:`member_digest`), checked whenever it is
loaded (:func:`check_members`): a member retrained in place afterwards is refused, not averaged
silently. They may read different
features (each its own store: a *mixed* ensemble, whose ``config.json`` lists each member's
``member_features``) as long as they cut the same segments (``segment_seconds``): the mean is
taken segment by segment, each segment found in every member's store by its song and position.
Member paths are stored relative to the ensemble directory when they lie inside it (as
``crossval`` writes them), absolute otherwise.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genre_jax import legacy
from genre_jax.config import ConfigError, FeatureConfig, model_name
from genre_jax.fileio import atomic_write_json, read_json
from genre_jax.identity import IdentityError, Songs, read_songs, write_songs
from genre_jax.model_card import update_card
from genre_jax.output_dirs import MARKER, OutputDirError, mark_dir, require_folder_or_absent
from genre_jax.settings import require_same


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
            cutting other segments or with other genres (each named).
        IdentityError: a member holds out other test songs (:func:`_require_same_test_songs`).
    """
    out_dir = Path(out_dir)
    if len(members) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    _check_out_dir(out_dir, [Path(m) for m in members])
    from genre_jax.inference import read_run_config  # which loads ensembles through this module

    configs = []
    for member in map(Path, members):
        if not (member / "config.json").is_file() or not (member / "summary.json").is_file():
            raise ConfigError(f"ensemble member {member}: not a finished run (no summary.json)")
        configs.append(read_run_config(member))
    first = configs[0]
    features = [FeatureConfig.from_json(c["features"]) for c in configs]
    mixed = any(f != features[0] for f in features)
    for member, config, feature in zip(members[1:], configs[1:], features[1:], strict=True):
        if feature.segment_seconds != features[0].segment_seconds:
            require_same(features[0], feature, f"ensemble member {member} (feature settings)")
        if config["genres"] != first["genres"]:
            raise ConfigError(f"ensemble member {member}: genres {config['genres']} differ")
    songs = _require_same_test_songs([Path(m) for m in members], configs)
    digests = [member_digest(Path(m)) for m in members]
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
    config["member_digests"] = digests
    if songs is not None:
        config["songs"] = write_songs(out_dir, songs)
    atomic_write_json(out_dir / "config.json", config)
    atomic_write_json(out_dir / "labels.json", first["genres"])
    update_card(out_dir)
    return config


def _require_same_test_songs(
    members: Sequence[Path], configs: Sequence[dict[str, Any]]
) -> Songs | None:
    """Every member holds out the same test songs, by their audio (:mod:`genre_jax.identity`),
    so that the ensemble is scored on songs none of its members trained on; returns the first
    member's songs (None when a member records none: its test songs are compared by
    :func:`genre_jax.legacy.require_same_test_tracks`).

    Raises:
        IdentityError: a member holds out other test songs (how many of the first member's
            test songs it trained on is named), or its test songs cannot be told.
    """
    if any(legacy.without_songs(c) for c in configs):
        legacy.require_same_test_tracks(members, configs)
        return None
    first = members[0]
    songs = [read_songs(m, c["songs"]) for m, c in zip(members, configs, strict=True)]
    for member, other in zip(members[1:], songs[1:], strict=True):
        if other.digests["test"] == songs[0].digests["test"]:
            continue
        detail = ""
        if songs[0].parts is not None and other.parts is not None:
            trained = songs[0].songs("test") & (other.songs("train") | other.songs("val"))
            detail = f"; it trained on {len(trained)} of them"
        raise IdentityError(
            f"ensemble member {member}: holds out other test songs ({other.counts['test']}) "
            f"than {first} ({songs[0].counts['test']}), by their audio{detail}; members of "
            "an ensemble must be tested on the same songs"
        )
    return songs[0]


MODEL_FILES = ("config.json", "labels.json", "svm.skops", "svm.json", "checkpoints/best")
"""What a member predicts with: its settings, genres and weights (an ensemble member: its
config.json and labels.json, its own members being checked when it loads)."""


def member_digest(run_dir: Path) -> str:
    """SHA-256 of a member's :data:`MODEL_FILES` (each path and its bytes, folders walked in
    sorted order): recorded when the ensemble is made, compared when it is loaded, so a member
    retrained or replaced in place since is noticed. Reports, plots and metrics a member gains
    when it is evaluated are not part of it."""
    digest = hashlib.sha256()
    for name in MODEL_FILES:
        path = run_dir / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(f"{file.relative_to(run_dir).as_posix()}\n".encode())
                digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def check_members(run_dir: Path, config: dict[str, Any]) -> None:
    """The ensemble's members are the runs it was made of: each one's :func:`member_digest`
    is the one recorded (an ensemble that recorded none, :mod:`genre_jax.legacy`, is not
    checked).

    Raises:
        IdentityError: a member was retrained, replaced or edited since (named).
    """
    recorded = config.get("member_digests")
    if recorded is None:
        return
    members = member_dirs(run_dir, config)
    if not isinstance(recorded, list) or len(recorded) != len(members):
        raise IdentityError(f"{run_dir}/config.json: member_digests does not list its members")
    for member, digest in zip(members, recorded, strict=True):
        if member_digest(member) != digest:
            raise IdentityError(
                f"{run_dir}: ensemble member {member} changed since the ensemble was made "
                "(retrained, replaced or edited), so the ensemble is no longer the one that was "
                "made; make it again (genre-jax ensemble)"
            )


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
