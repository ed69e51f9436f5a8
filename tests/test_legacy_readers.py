"""The readers of :mod:`genre_jax.legacy` one by one, on records made here (the run folders of
an earlier version, end to end, are ``tests/test_legacy.py``'s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from genre_jax import legacy
from genre_jax.manifest import Manifest
from genre_jax.settings import ConfigError


def test_importing_legacy_loads_no_model_or_training_code() -> None:
    code = (
        "import json, sys, genre_jax.legacy\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('genre_jax', 'jax', 'flax', 'orbax'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["genre_jax", "genre_jax.legacy"]


def test_an_old_manifest_is_upgraded_to_a_folder_layout() -> None:
    data = {"root": "/data", "genres": ["jazz", "rock"], "tracks": []}
    upgraded = legacy.upgrade_manifest(data)
    assert upgraded == {
        **data,
        "layout": "folders",
        "metadata": None,
        "subset": None,
        "excluded": [],
    }
    assert "layout" not in data  # the record read is not changed
    fma = {**data, "layout": "fma", "subset": "small", "excluded": []}
    assert legacy.upgrade_manifest(fma)["layout"] == "fma"  # what a manifest records is kept
    assert Manifest.from_json(data).layout == "folders"


def test_a_latest_checkpoint_before_metrics_jsonl_has_its_history_as_its_log() -> None:
    history = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]
    old = {"history": history, "early_stopping": {"wait": 0}}
    upgraded = legacy.upgrade_latest_meta(old)
    assert upgraded["metrics_log"] == history and upgraded["metrics_log"][0] is not history[0]
    assert "metrics_log" not in old
    log = [{**history[0], "step": 10}]
    assert legacy.upgrade_latest_meta({**old, "metrics_log": log})["metrics_log"] is log


def test_folders_without_a_marker_are_recognised_by_their_config(tmp_path: Path) -> None:
    run, ensemble, other = tmp_path / "run", tmp_path / "ensemble", tmp_path / "other"
    for folder in (run, ensemble, other):
        folder.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {}, "versions": {"genre-jax": "0"}}))
    (ensemble / "config.json").write_text(json.dumps({"members": [], "feature_hash": "x"}))
    (other / "config.json").write_text(json.dumps({"train": {}}))
    assert legacy.unmarked_config(run, "run") == {"train": {}, "versions": {"genre-jax": "0"}}
    assert legacy.unmarked_config(ensemble, "ensemble") is not None
    assert legacy.unmarked_config(ensemble, "run") is None
    assert legacy.unmarked_config(other, "run") is None
    assert legacy.unmarked_config(run, "crossval") is None  # no experiment.json
    assert legacy.unmarked_config(run, "store") is None  # not a kind of folder
    (other / "config.json").write_text("[1, 2]")
    assert legacy.unmarked_config(other, "run") is None


def test_a_format_1_store_without_digests_binds_its_cache_to_size_and_time(
    tmp_path: Path,
) -> None:
    (tmp_path / "features.npy").write_bytes(b"0" * 10)
    recorded = {"version": 1, "sha256": {"features.npy": "a" * 64}}
    assert legacy.whole_features(recorded) and not legacy.whole_features({"version": 2})
    assert legacy.whole_features_key(tmp_path, recorded) == "a" * 64
    stat = (tmp_path / "features.npy").stat()
    key = f"{stat.st_size}-{stat.st_mtime_ns}"
    assert legacy.whole_features_key(tmp_path, {"version": 1}) == key


def test_runs_without_songs_or_a_resume_record() -> None:
    assert legacy.without_songs({"split": {}}) and not legacy.without_songs({"songs": {}})
    legacy.require_changes_allowed({"resumed": []}, {"epochs": [2, 3]}, "run r")
    with pytest.raises(ConfigError, match=r"^run r was written before .* as it was: epochs=2$"):
        legacy.require_changes_allowed({}, {"epochs": [2, 3]}, "run r")
