"""Learning on real music (slow; run with ``pytest -m slow``): the gtzan-dev excerpts, 2 s
segments, 5-fold song-level stratified cross-validation (split seed 0), through ``crossval``
and the experiment files in ``configs/`` (the results tables of the README and docs/results.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genre_jax.crossval import crossval
from genre_jax.experiment import load_experiment
from genre_jax.prepare import prepare
from tests.conftest import shared

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_SVM = 0.599  # ../shared/data/README.md: seed's SVM recipe, same protocol


def run_experiment(name: str, tmp_path: Path) -> dict:
    experiment = load_experiment(ROOT / "configs" / f"{name}.json")
    store = prepare(shared("gtzan-dev"), tmp_path / "features", experiment.features, progress=False)
    assert len(store) == 409  # every excerpt is 2 to 3 s: one full 2 s segment each
    report = crossval(store.path, tmp_path / name, experiment.train, progress=False)
    print(f"{name}: {report['mean']} +- {report['std']}")
    return report


def test_svm_reproduces_the_reference_on_gtzan_dev(tmp_path: Path) -> None:
    # One segment per song: the segment label (the SVC's vote, as the seed's SVC.predict) is
    # the song's label, the figure the reference reports.
    report = run_experiment("gtzan-dev-svm", tmp_path)
    mean = report["mean"]["segment_accuracy"]
    assert abs(mean - REFERENCE_SVM) <= 0.03, f"{mean:.3f} vs reference {REFERENCE_SVM}"


def test_melstat_beats_the_seed_recipes_on_gtzan_dev(tmp_path: Path) -> None:
    # Measured 65.3 % with the file's seed 0 and 63.3-65.3 % over init seeds 0-2
    # (docs/results.md); the seed's recipes give 53-59 % song accuracy here and the reference
    # SVM 59.9 %.
    report = run_experiment("gtzan-dev-melstat", tmp_path)
    assert report["mean"]["song_accuracy"] >= REFERENCE_SVM, report["per_fold"]


def test_statsvm_beats_the_seed_recipes_on_gtzan_dev(tmp_path: Path) -> None:
    # Measured 69.4 % (split seeds 1 and 2: 68.5 and 67.5 %); the reference SVM 59.9 %.
    report = run_experiment("gtzan-dev-statsvm", tmp_path)
    assert report["mean"]["song_accuracy"] >= REFERENCE_SVM + 0.05, report["per_fold"]


def test_musicnnsvm_reaches_the_target_on_gtzan_dev(tmp_path: Path, monkeypatch) -> None:
    # Pretrained musicnn embeddings (fetched with pip into a temporary cache): measured 82.6 %
    # (split seeds 1 and 2: 80.2 and 81.9 %); issue 8's target is 75 %.
    from genre_jax.models.musicnn import WeightsError, load_weights

    monkeypatch.setenv("GENRE_JAX_CACHE", str(tmp_path / "cache"))
    try:
        load_weights(log=lambda _: None)
    except WeightsError as error:
        pytest.skip(f"the musicnn weights cannot be downloaded here: {error}")
    report = run_experiment("gtzan-dev-musicnnsvm", tmp_path)
    assert report["mean"]["song_accuracy"] >= 0.75, report["per_fold"]


def test_ensemble_of_ours_beats_the_seed_recipes_on_gtzan_dev(tmp_path: Path) -> None:
    # Measured 71.2 % (split seeds 1 and 2: 70.7 and 69.4 %).
    experiment = load_experiment(ROOT / "configs" / "gtzan-dev-ensemble.json")
    store = prepare(shared("gtzan-dev"), tmp_path / "features", experiment.features, progress=False)
    configs = [member.train for member in experiment.members]
    report = crossval(store.path, tmp_path / "ensemble", configs, progress=False)
    assert report["model"] == "ensemble(melstat+statsvm)"
    assert report["mean"]["song_accuracy"] >= REFERENCE_SVM + 0.07, report["per_fold"]
