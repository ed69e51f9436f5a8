"""Repeated k-fold cross-validation (``crossval(..., repeats=R)``): R partitions of k folds, one
per split seed, in one folder; the report's figures over all folds and per repeat equal the
folds' own reports and single cross-validations of each split seed; the interval of the mean is
the corrected resampled t interval; a folder continues only with the repeats it was started
with, and a killed one keeps its finished folds; :func:`fold_runs` lists every fold's report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from genre_jax.config import ConfigError, TrainConfig
from genre_jax.crossval import crossval
from genre_jax.crossval_folds import FoldRun, fold_runs
from genre_jax.crossval_report import FOLD_METRICS
from genre_jax.identity import IdentityError
from genre_jax.metrics import read_metrics
from genre_jax.output_dirs import LAYOUTS, foreign_entries
from genre_jax.settings import SEED_MAX

ROOT = Path(__file__).resolve().parents[1]
LEGACY_CV = ROOT / "tests" / "data" / "legacy" / "rundirs" / "crossval-svm"
QUIET = {"progress": False, "log": lambda _: None}
FOLDS, REPEATS = 3, 3
EXACT = 1e-12  # figures of the same folds, summed in another order at most


def svm(**settings) -> TrainConfig:
    """The cheapest model: the seed's SVM, no time flip."""
    return TrainConfig(model="svm", time_flip=False, folds=FOLDS, **settings)


@pytest.fixture(scope="module")
def repeated(synthetic_store, tmp_path_factory) -> tuple[Path, dict]:
    """3 x 3-fold SVM cross-validation of the synthetic store (split seeds 0, 1, 2)."""
    out = tmp_path_factory.mktemp("cv-repeats") / "svm"
    return out, crossval(synthetic_store.path, out, svm(), repeats=REPEATS, **QUIET)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its modification time (ns) and size."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.stat()
            found[str(path.relative_to(folder))] = (info.st_mtime_ns, info.st_size)
    return found


def corrected_interval(values: list[float], folds: int) -> tuple[float, float]:
    """Nadeau & Bengio's corrected resampled t interval (95 %), written out independently."""
    x = np.asarray(values, np.float64)
    n = x.size
    half = stats.t.ppf(0.975, n - 1) * np.sqrt((1 / n + 1 / (folds - 1)) * np.var(x, ddof=1))
    return x.mean() - half, x.mean() + half


def test_repeats_lay_out_a_partition_per_split_seed(repeated, synthetic_store) -> None:
    out, report = repeated
    songs = len(synthetic_store.manifest.tracks)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("fold-", "split-"))) == [
        "split-seed-0",
        "split-seed-1",
        "split-seed-2",
    ]
    tests = {}
    for seed in range(REPEATS):
        for fold in range(FOLDS):
            run = out / f"split-seed-{seed}" / f"fold-{fold}"
            train = json.loads((run / "config.json").read_text())["train"]
            assert (train["split_seed"], train["fold"]) == (seed, fold), run
            tests[seed, fold] = json.loads((run / "report.json").read_text())
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["repeats"] == REPEATS and experiment["split_seeds"] == [0, 1, 2]
    assert report["repeats"] == REPEATS and report["split_seeds"] == [0, 1, 2]
    assert [(r["split_seed"], r["repeat"], r["fold"]) for r in report["per_fold"]] == [
        (s, s, f) for s in range(REPEATS) for f in range(FOLDS)
    ]
    # Each partition tests every song once: R x the dataset's songs in all.
    assert report["songs"] == REPEATS * songs
    for row in report["per_fold"]:
        own = tests[row["split_seed"], row["fold"]]
        assert row["song_accuracy"] == own["song_accuracy"] and row["songs"] == own["songs"]
    # The pooled confusion sums the folds' own confusions, over all repeats.
    confusion = sum(np.array(t["confusion"]["song"]["counts"]) for t in tests.values())
    assert report["confusion_song_counts"] == confusion.tolist()
    assert abs(report["pooled_song_accuracy"] - np.trace(confusion) / confusion.sum()) < EXACT
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    # Written by the cross-validation only: --overwrite recognises everything in it.
    assert foreign_entries(out, LAYOUTS["crossval"]) == []


def test_figures_over_all_folds_and_per_repeat_equal_numpy(repeated) -> None:
    _, report = repeated
    rows = report["per_fold"]
    for metric in FOLD_METRICS:
        values = np.array([r[metric] for r in rows], np.float64)
        assert abs(report["mean"][metric] - values.mean()) < EXACT, metric
        assert abs(report["std"][metric] - values.std(ddof=0)) < EXACT, metric
        low, high = corrected_interval(list(values), FOLDS)
        assert abs(report["interval"][metric][0] - low) < EXACT, metric
        assert abs(report["interval"][metric][1] - high) < EXACT, metric
        # The corrected interval is wider than the naive one over the 9 folds.
        naive = stats.t.ppf(0.975, len(rows) - 1) * values.std(ddof=1) / np.sqrt(len(rows))
        assert high - low > 2 * naive or values.std() == 0, metric
    method = report["interval_method"]
    assert "Nadeau & Bengio" in method["name"] and "1/(folds-1)" in method["formula"]
    assert method["confidence"] == 0.95 and method["n"] == REPEATS * FOLDS
    assert [r["split_seed"] for r in report["per_repeat"]] == [0, 1, 2]
    for repeat in report["per_repeat"]:
        own = [r for r in rows if r["split_seed"] == repeat["split_seed"]]
        assert repeat["songs"] == sum(r["songs"] for r in own)
        for metric in FOLD_METRICS:
            values = np.array([r[metric] for r in own], np.float64)
            assert abs(repeat["mean"][metric] - values.mean()) < EXACT
            assert abs(repeat["std"][metric] - values.std()) < EXACT


def test_the_report_and_card_show_every_repeat(repeated) -> None:
    out, report = repeated
    text = (out / "report.md").read_text()
    assert "3-fold song-level cross-validation, 3 repeats" in text
    assert "| split seed | fold | songs |" in text
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    for row in report["per_fold"]:
        assert f"| {row['split_seed']} | {row['fold']} | {row['songs']} | " in text
    for repeat in report["per_repeat"]:
        mean, std = repeat["mean"]["song_accuracy"], repeat["std"]["song_accuracy"]
        assert f"| {repeat['split_seed']} | {repeat['songs']} | {pct(mean)} +- {pct(std)} |" in text
    low, high = report["interval"]["song_accuracy"]
    assert f"{pct(low)} to {pct(high)} %" in text and "corrected resampled t interval" in text
    assert "Over all 3 x 3 = 9 folds" in text
    card = (out / "MODEL_CARD.md").read_text()
    assert "3 x 3-fold cross-validation" in card and "split seeds 0, 1, 2" in card
    assert f'genre_jax.load("{out / "split-seed-0" / "fold-0"}")' in card
    # metrics.jsonl: one line per fold of every repeat, each (split seed, fold) once.
    folds = [(r["split_seed"], r["fold"]) for r in read_metrics(out) if r["event"] == "fold"]
    assert folds == [(s, f) for s in range(REPEATS) for f in range(FOLDS)]


def test_each_repeat_is_the_crossval_of_its_split_seed(repeated, synthetic_store, tmp_path) -> None:
    """The folds of repeat r are those of a single cross-validation with split_seed = s + r."""
    _, report = repeated
    for repeat in report["per_repeat"]:
        seed = repeat["split_seed"]
        out = tmp_path / f"seed-{seed}"
        single = crossval(synthetic_store.path, out, svm(split_seed=seed), **QUIET)
        assert sorted(p.name for p in out.glob("fold-*")) == ["fold-0", "fold-1", "fold-2"]
        assert not list(out.glob("split-seed-*"))  # one partition: the layout of before
        assert single["repeats"] == 1 and single["split_seeds"] == [seed]
        assert {(r["split_seed"], r["repeat"]) for r in single["per_fold"]} == {(seed, 0)}
        for metric in FOLD_METRICS:
            assert abs(single["mean"][metric] - repeat["mean"][metric]) < EXACT
            assert abs(single["std"][metric] - repeat["std"][metric]) < EXACT
        assert abs(single["pooled_song_accuracy"] - repeat["pooled_song_accuracy"]) < EXACT
        assert single["songs"] == repeat["songs"] == len(synthetic_store.manifest.tracks)
        low, high = corrected_interval([r["song_accuracy"] for r in single["per_fold"]], FOLDS)
        assert abs(single["interval"]["song_accuracy"][0] - low) < EXACT
        assert abs(single["interval"]["song_accuracy"][1] - high) < EXACT
        assert "corrected resampled t interval" in (out / "report.md").read_text()


def test_other_repeats_are_refused_before_anything_is_written(
    repeated, synthetic_store, tmp_path
) -> None:
    out, _ = repeated
    before = listing(out)
    for repeats, settings, message in (
        (2, {}, r"holds 3 repeats \(split seeds 0 to 2\), not 2 repeats"),
        (1, {}, r"holds 3 repeats \(split seeds 0 to 2\), not 1 repeat \(split seed 0\)"),
        (3, {"split_seed": 1}, r"not 3 repeats \(split seeds 1 to 3\)"),
    ):
        with pytest.raises(ConfigError, match=message + r".*--overwrite") as caught:
            crossval(synthetic_store.path, out, svm(**settings), repeats=repeats, **QUIET)
        assert "\n" not in str(caught.value)
    assert listing(out) == before
    # A bad count is named before the folder exists.
    fresh = tmp_path / "fresh"
    for repeats in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match=r"^--repeats .*whole number >= 1"):
            crossval(synthetic_store.path, fresh, svm(), repeats=repeats, **QUIET)
    with pytest.raises(ConfigError, match=r"^--repeats 2: .*4294967296, above the largest"):
        crossval(synthetic_store.path, fresh, svm(split_seed=SEED_MAX), repeats=2, **QUIET)
    assert not fresh.exists()


def test_fold_runs_lists_every_fold_and_reads_folders_of_before(
    repeated, synthetic_store, tmp_path
) -> None:
    out, _ = repeated
    runs = fold_runs(out)
    assert len(runs) == REPEATS * FOLDS
    assert runs[4] == FoldRun(1, 1, 1, out / "split-seed-1" / "fold-1", "report.json")
    assert all((r.run_dir / r.report_name).is_file() for r in runs)
    # A folder of one partition whose experiment.json has no "repeats" (as written before).
    single = tmp_path / "single"
    crossval(synthetic_store.path, single, svm(split_seed=5), **QUIET)
    experiment = json.loads((single / "experiment.json").read_text())
    del experiment["repeats"], experiment["split_seeds"]
    (single / "experiment.json").write_text(json.dumps(experiment))
    assert fold_runs(single) == [
        FoldRun(5, 0, f, single / f"fold-{f}", "report.json") for f in range(FOLDS)
    ]
    kept = (single / "fold-1" / "summary.json").stat().st_mtime_ns
    again = crossval(synthetic_store.path, single, svm(split_seed=5), **QUIET)  # continues
    assert (single / "fold-1" / "summary.json").stat().st_mtime_ns == kept
    assert again["repeats"] == 1 and again["split_seeds"] == [5]
    # The committed folder of an older version (no repeats, no data identity).
    assert [(r.split_seed, r.repeat, r.fold) for r in fold_runs(LEGACY_CV)] == [
        (0, 0, 0),
        (0, 0, 1),
    ]
    # Windowed evaluation reads each fold's windowed report, which this folder lacks.
    experiment["window_hop"] = 0.5
    (single / "experiment.json").write_text(json.dumps(experiment))
    with pytest.raises(ConfigError, match=r"fold-0/report-hop0\.5s\.json: missing"):
        fold_runs(single)
    with pytest.raises(ConfigError, match="a genre-jax run folder, not a cross-validation"):
        fold_runs(out / "split-seed-0" / "fold-0")
    with pytest.raises(ConfigError, match=r"no experiment\.json"):
        fold_runs(tmp_path)


def test_a_killed_repeated_run_keeps_its_folds(repeated, synthetic_store) -> None:
    out, report = repeated
    kept = {
        p: (out / p / "summary.json").stat().st_mtime_ns
        for p in ("split-seed-0/fold-0", "split-seed-2/fold-2")
    }
    # Split seed 1's fold 2 as a run killed during training.
    killed = out / "split-seed-1" / "fold-2"
    for name in ("summary.json", "report.json", "svm.skops"):
        (killed / name).unlink()
    again = crossval(synthetic_store.path, out, svm(), repeats=REPEATS, **QUIET)
    assert {p: (out / p / "summary.json").stat().st_mtime_ns for p in kept} == kept
    assert (killed / "svm.skops").is_file()
    assert again["mean"] == report["mean"] and again["interval"] == report["interval"]
    timing = ("train_seconds",)
    for new, old in zip(again["per_fold"], report["per_fold"], strict=True):
        assert {k: v for k, v in new.items() if k not in timing} == {
            k: v for k, v in old.items() if k not in timing
        }
    # Each kept fold is checked against its own split seed: two folds swapped are refused.
    one, two = out / "split-seed-1" / "fold-0", out / "split-seed-2" / "fold-0"
    one.rename(out / "swap")
    two.rename(one)
    (out / "swap").rename(two)
    try:
        with pytest.raises(IdentityError, match="split seed 1, fold 0"):
            crossval(synthetic_store.path, out, svm(), repeats=REPEATS, **QUIET)
    finally:
        one.rename(out / "swap")
        two.rename(one)
        (out / "swap").rename(two)


def test_an_ensemble_repeats_and_overwrite_replaces_the_folder(synthetic_store, tmp_path) -> None:
    """Several models per fold work with repeats; --overwrite takes the nested folds too."""
    out = tmp_path / "ensemble"
    flat = {"model": "svm", "time_flip": False, "folds": 2}
    members = [TrainConfig.from_flat(flat), TrainConfig.from_flat({**flat, "c": 10.0})]
    report = crossval(synthetic_store.path, out, members, repeats=2, **QUIET)
    for seed in (0, 1):
        for fold in (0, 1):
            fold_dir = out / f"split-seed-{seed}" / f"fold-{fold}"
            assert (fold_dir / "report.json").is_file()  # the fold's ensemble, evaluated
            for member in ("svm-0", "svm-1"):
                config = json.loads((fold_dir / member / "config.json").read_text())
                assert (config["train"]["split_seed"], config["train"]["fold"]) == (seed, fold)
    assert len(report["per_fold"]) == 4
    assert report["songs"] == 2 * len(synthetic_store.manifest.tracks)
    assert [r.run_dir for r in fold_runs(out)] == [
        out / f"split-seed-{s}" / f"fold-{f}" for s in (0, 1) for f in (0, 1)
    ]
    assert foreign_entries(out, LAYOUTS["crossval"]) == []
    single = crossval(
        synthetic_store.path, out, TrainConfig.from_flat(flat), overwrite=True, **QUIET
    )
    assert not list(out.glob("split-seed-*")) and single["repeats"] == 1
    assert sorted(p.name for p in out.glob("fold-*")) == ["fold-0", "fold-1"]


def test_compare_pairs_every_repeats_songs(repeated, synthetic_store, tmp_path) -> None:
    """``compare`` of two 3-repeat folders pairs each song once per split seed; its accuracy
    is the pooled accuracy over all folds, and a folder of one repeat is refused beside them."""
    from genre_jax.compare import compare
    from genre_jax.paired import CompareError

    out, report = repeated
    other = tmp_path / "svm-flip"  # another model: trained on time-flipped copies too
    flipped = TrainConfig(model="svm", time_flip=True, folds=FOLDS)
    crossval(synthetic_store.path, other, flipped, repeats=REPEATS, **QUIET)
    result = compare([out, other], resamples=500, log=lambda _: None)
    paired = result["paired"]
    songs = len(synthetic_store.manifest.tracks)
    assert paired["units"] == REPEATS * songs and paired["songs"] == songs
    assert paired["partitions"] == ["split seed 0", "split seed 1", "split seed 2"]
    assert paired["pairs"][0]["accuracy_a"] == pytest.approx(report["pooled_song_accuracy"])
    assert "optimistic" in result["markdown"]  # the caveat on correlated repeats is stated
    single = tmp_path / "svm-1"
    crossval(synthetic_store.path, single, svm(), **QUIET)
    with pytest.raises(CompareError, match=r"\['split seed 0'\], .*'split seed 1'"):
        compare([single, out], log=lambda _: None)
