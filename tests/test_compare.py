"""``genre-jax compare``'s paired tests (genre_jax.paired, genre_jax.compare): McNemar's exact
test and Holm's adjustment against statsmodels, the stratified paired bootstrap against a plain
numpy resampling written here, and the seed SVM against statsvm on the real gtzan-dev excerpts
(both cross-validated by the experiment files, split seed 0), whose figures are recomputed here
from the folds' own per-song records; folders over other songs or partitions are refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from genre_jax.cli import main
from genre_jax.compare import compare
from genre_jax.crossval import crossval
from genre_jax.experiment import load_experiment
from genre_jax.paired import (
    CompareError,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    sign_flip_p,
)
from genre_jax.prepare import prepare
from tests.conftest import shared

ROOT = Path(__file__).resolve().parents[1]


def test_mcnemar_and_holm_equal_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    tables = pytest.importorskip("statsmodels.stats.contingency_tables")
    rng = np.random.default_rng(3)
    p_values = []
    for n, bias in ((40, 0.5), (200, 0.6), (409, 0.8), (12, 0.5), (1, 0.9)):
        a = rng.random(n) < 0.7
        b = np.where(rng.random(n) < bias, a, ~a)
        n01, n10, p = mcnemar_exact(a, b)
        table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
        assert (n01, n10) == (table[0][1], table[1][0])
        reference = tables.mcnemar(np.array(table), exact=True).pvalue
        assert p == pytest.approx(reference, abs=1e-12)
        p_values.append(p)
    assert mcnemar_exact(np.ones(5, bool), np.ones(5, bool))[2] == 1.0  # no discordant unit
    assert holm(p_values) == pytest.approx(multitest.multipletests(p_values, method="holm")[1])


def reference_bootstrap(a, b, songs, genres, resamples, seed):
    """The paired bootstrap written plainly: per genre, draw its songs with replacement; the
    difference of accuracies over every unit of the songs drawn."""
    rng = np.random.default_rng(seed)
    by_song: dict[str, list[int]] = {}
    for i, song in enumerate(songs):
        by_song.setdefault(song, []).append(i)
    strata: dict[str, list[str]] = {}
    for song, units in by_song.items():
        strata.setdefault(genres[units[0]], []).append(song)
    differences = []
    for _ in range(resamples):
        units = []
        for members in strata.values():
            for k in rng.integers(0, len(members), len(members)):
                units += by_song[members[k]]
        differences.append(np.mean(a[units]) - np.mean(b[units]))
    return np.percentile(differences, [2.5, 97.5])


def test_paired_bootstrap_equals_a_plain_resampling() -> None:
    rng = np.random.default_rng(0)
    songs = [f"g{s % 4}/song{s}" for s in range(60)] * 3  # 60 songs, 3 repeats each
    genres = [s.split("/")[0] for s in songs]
    a = rng.random(len(songs)) < 0.75
    b = rng.random(len(songs)) < 0.6
    low, high = paired_bootstrap(a, b, songs, genres, resamples=20_000, seed=1)
    ref_low, ref_high = reference_bootstrap(a, b, songs, genres, 4_000, seed=2)
    # Two Monte Carlo estimates of the same percentiles: within 1.5 points of each other.
    assert abs(low - ref_low) < 0.015 and abs(high - ref_high) < 0.015
    assert low < a.mean() - b.mean() < high
    assert (low, high) == paired_bootstrap(a, b, songs, genres, resamples=20_000, seed=1)


@pytest.fixture(scope="module")
def gtzan_dev_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The seed SVM's and statsvm's 5-fold cross-validations of gtzan-dev (split seed 0)."""
    data = shared("gtzan-dev")
    root = tmp_path_factory.mktemp("gtzan-dev-cv")
    folders = {}
    for name in ("svm", "statsvm"):
        experiment = load_experiment(ROOT / "configs" / f"gtzan-dev-{name}.json")
        store = prepare(data, root / "features", experiment.features, progress=False)
        folders[name] = root / name
        crossval(store.path, folders[name], experiment.train, progress=False, log=lambda _: None)
    return folders


def per_song_correct(folder: Path) -> dict[str, bool]:
    """Each song's correctness, read from the folds' reports alone."""
    correct = {}
    for fold in sorted(folder.glob("fold-*")):
        report = json.loads((fold / "report.json").read_text())
        songs = report["per_song"]
        assert sum(s["predicted"] == s["genre"] for s in songs) == pytest.approx(
            report["song_accuracy"] * len(songs)
        )
        correct.update({s["song"]: s["predicted"] == s["genre"] for s in songs})
    return correct


def test_compare_seed_svm_and_statsvm_on_gtzan_dev(gtzan_dev_folders, tmp_path, capsys) -> None:
    tables = pytest.importorskip("statsmodels.stats.contingency_tables")
    svm, statsvm = gtzan_dev_folders["svm"], gtzan_dev_folders["statsvm"]
    out = tmp_path / "svm-vs-statsvm"
    assert main(["compare", str(svm), str(statsvm), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "comparison.json").read_text())
    pair = result["paired"]["pairs"][0]

    a_by_song, b_by_song = per_song_correct(svm), per_song_correct(statsvm)
    assert sorted(a_by_song) == sorted(b_by_song) and len(a_by_song) == 409
    songs = sorted(a_by_song)
    a = np.array([a_by_song[s] for s in songs])
    b = np.array([b_by_song[s] for s in songs])
    assert pair["accuracy_a"] == pytest.approx(a.mean(), abs=1e-12)
    assert pair["difference"] == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert pair["p"] == pytest.approx(
        tables.mcnemar(np.array(table), exact=True).pvalue, rel=1e-9, abs=1e-300
    )
    low, high = reference_bootstrap(
        a.astype(float), b.astype(float), songs, [s.split("/")[0] for s in songs], 4_000, seed=5
    )
    assert abs(pair["interval"][0] - low) < 0.015 and abs(pair["interval"][1] - high) < 0.015
    assert result["paired"]["bootstrap"]["seed"] == 0
    # statsvm is better than the seed's SVM, with evidence (measured: 16 points, p ~ 1e-8)
    assert pair["differs"] and pair["difference"] < 0 and pair["interval"][1] < 0
    assert f"{statsvm.name} better (evidence)" in printed
    assert printed.startswith((out / "comparison.md").read_text())
    page = (out / "report.html").read_text()
    assert "<audio" in page and "Paired tests" in page
    disagree = int(np.sum(a != b))
    assert f"Songs the models disagree on ({disagree})" in page

    # The same comparison from reports written before per-song records: evaluated again in
    # memory, the same figures.
    old = tmp_path / "old-svm"
    shutil.copytree(svm, old)
    for report_file in old.glob("fold-*/report.json"):
        report = json.loads(report_file.read_text())
        del report["per_song"]
        report_file.write_text(json.dumps(report))
    assert main(["compare", str(old), str(statsvm), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "comparison.json").read_text())["paired"]["pairs"]
    assert {k: again[0][k] for k in ("difference", "interval", "p")} == {
        k: pair[k] for k in ("difference", "interval", "p")
    }


def test_compare_refuses_folders_over_other_songs(gtzan_dev_folders, tmp_path, capsys) -> None:
    data = shared("gtzan-dev")
    fewer = tmp_path / "fewer"
    shutil.copytree(data, fewer, ignore=shutil.ignore_patterns("blues.00010.wav"))
    experiment = load_experiment(ROOT / "configs" / "gtzan-dev-svm.json")
    store = prepare(fewer, tmp_path / "features", experiment.features, progress=False)
    other = tmp_path / "svm-fewer"
    crossval(store.path, other, experiment.train, progress=False, log=lambda _: None)
    svm = gtzan_dev_folders["svm"]
    out = tmp_path / "refused"
    assert main(["compare", str(svm), str(other), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "did not score the same songs" in error and "1 of svm's" in error
    assert not out.exists()  # refused before anything was written

    reseeded = tmp_path / "svm-seed1"
    crossval(
        json.loads((svm / "experiment.json").read_text())["store"],
        reseeded,
        dataclasses.replace(experiment.train, split_seed=1),
        progress=False,
        log=lambda _: None,
    )
    with pytest.raises(CompareError, match=r"split seed 0.*split seed 1"):
        compare([svm, reseeded])

    # The same songs and split seed dealt into 4 folds, not 5: other partitions, refused.
    four = tmp_path / "svm-4-folds"
    crossval(
        json.loads((svm / "experiment.json").read_text())["store"],
        four,
        dataclasses.replace(experiment.train, folds=4),
        progress=False,
        log=lambda _: None,
    )
    with pytest.raises(CompareError, match=r"dealt \d+ songs to other folds"):
        compare([svm, four])
    # A folder twice (however spelt), --out inside a folder compared, a negative seed and too
    # few draws: refused before anything is read or written.
    for args, reason in (
        ([str(svm), f"{svm}/"], "given twice"),
        ([str(svm), str(four), "--out", str(svm / "cmp")], "inside"),
        ([str(svm), str(four), "--seed", "-1"], "--seed -1"),
        ([str(svm), str(four), "--resamples", "10"], "--resamples 10"),
    ):
        assert main(["compare", *args]) == 2
        assert reason in capsys.readouterr().err
    assert not (svm / "cmp").exists()


def test_real_report_pages_in_chromium(gtzan_dev_folders, tmp_path) -> None:
    """The crossval page of statsvm on gtzan-dev and the comparison's page, in a real browser:
    no console error, every confusion cell of the 409 songs, the error list, an excerpt that
    decodes, a cell's link that lands on its songs (screenshots under tmp_path)."""
    from tests.browser import check_report_page

    statsvm = gtzan_dev_folders["statsvm"]
    found = check_report_page(statsvm / "report.html", tmp_path / "crossval.png")
    # one 2 s segment per excerpt: the song and the segment matrices each hold the 409
    assert sum(count for _, _, count in found["cells"]) == 2 * 409
    wrong = sum(1 for c in per_song_correct(statsvm).values() if not c)
    assert found["audio"] == len(found["articles"]) == wrong
    assert (tmp_path / "crossval.png").stat().st_size > 10_000

    out = tmp_path / "cmp"
    compare([gtzan_dev_folders["svm"], statsvm], out=out, resamples=1_000, log=lambda _: None)
    found = check_report_page(out / "report.html", tmp_path / "compare.png")
    assert found["audio"] > 0 and found["decoded"]["duration"] > 0


def test_correlated_repeats_are_not_evidence_by_mcnemar_alone() -> None:
    """Ten songs, each tested 30 times (repeats): A is right and B wrong on every test of six
    songs, the reverse on four. McNemar counts 180 against 120 discordant units (p ~ 6e-4), but
    ten songs are the evidence: six against four is no evidence, by the p over songs (exact
    here, each song differing by 30) or the bootstrap over songs, which spans zero."""
    from genre_jax.paired import Outcomes, compare_outcomes

    units = [(f"split seed {r}", f"g{s % 2}/song{s}") for r in range(30) for s in range(10)]
    a = {u: int(u[1][-1]) < 6 for u in units}  # songs 0-5: A right, B wrong; 6-9: the reverse
    records = {u: {"genre": u[1].split("/")[0], "predicted": "x"} for u in units}
    models = [
        Outcomes("A", "a", "", ["g0", "g1"], a, records),
        Outcomes("B", "b", "", ["g0", "g1"], {u: not v for u, v in a.items()}, records),
    ]
    pair = compare_outcomes(models, resamples=2_000)["pairs"][0]
    assert (pair["a_right_b_wrong"], pair["a_wrong_b_right"]) == (180, 120)
    assert pair["p"] < 0.001  # McNemar, counting the correlated units
    assert pair["p_songs"] == pytest.approx(2 * binom.cdf(4, 10, 0.5), abs=1e-12)
    low, high = pair["interval"]
    assert low < 0 < high and not pair["differs"]


def test_p_over_songs_is_mcnemar_with_one_unit_and_exact_enumeration_with_repeats() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.random(300) < 0.7, rng.random(300) < 0.6
    songs = [f"s{i}" for i in range(300)]
    assert sign_flip_p(a, b, songs) == pytest.approx(mcnemar_exact(a, b)[2], abs=1e-12)
    # Twelve songs, three units each: every one of the 2^k sign patterns of the songs that
    # differ, enumerated.
    a, b = rng.random(36) < 0.7, rng.random(36) < 0.5
    songs = [f"s{i % 12}" for i in range(36)]
    per_song = np.array([np.sum(a[i::12].astype(int) - b[i::12]) for i in range(12)], float)
    d = per_song[per_song != 0]
    signs = np.array(np.meshgrid(*[[-1, 1]] * len(d))).reshape(len(d), -1).T
    exact = np.mean(np.abs(signs @ np.abs(d)) >= abs(d.sum()) - 1e-9)
    assert sign_flip_p(a, b, songs, resamples=200_000, seed=3) == pytest.approx(exact, abs=0.01)
