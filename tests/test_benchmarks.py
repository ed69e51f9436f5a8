"""Benchmarks: a ``--quick`` run times every path and writes the JSON and the markdown table."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.commands import CONFIGS, crossval_rows
from benchmarks.common import Options
from benchmarks.peers import PEERS, unavailable
from benchmarks.run import PATHS, build_parser, main, options_from
from benchmarks.timing import Row, Timing, ratio

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    status = main(["--quick", "--out", str(out)])
    result = json.loads((out / "benchmarks-quick.json").read_text())
    assert not [r for r in result["rows"] if r["status"] == "failed"]
    assert status == 0 and result["complete"]
    return result, out


def _ok(rows: list[dict], **where: str) -> list[dict]:
    """Rows that ran and whose fields or settings have the given values."""

    def matches(row: dict) -> bool:
        return all(row.get(k) == v or row["setting"].get(k) == v for k, v in where.items())

    return [row for row in rows if row["status"] == "ok" and matches(row)]


def test_quick_run_has_a_row_for_every_path(quick_result: tuple[dict, Path]) -> None:
    result, _ = quick_result
    rows = result["rows"]
    assert {r["path"] for r in rows} == set(PATHS)
    for row in rows:
        if row["status"] == "ok":
            for key in ("median", "min", "max", "q1", "q3"):
                assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key, row[key])
            assert row["min"] <= row["median"] <= row["max"]
            assert row["repeats"] == len(row["values"]) >= 1
        else:
            assert row["status"] == "skipped" and row["reason"], row
    assert len(_ok(rows, path="features")) == 6  # ours and librosa twice, two layouts
    for model in ("cnn", "gru", "melstat"):
        assert _ok(rows, path="training", model=model), model
        assert _ok(rows, path="inference", model=model), model
    for model in ("cnn", "gru"):
        assert _ok(rows, path="peers", model=model, framework="genre_jax"), model
    chunked = [r for r in _ok(rows, path="training", model="cnn") if "conv_chunk" in r["setting"]]
    assert len(chunked) == 2  # XLA's convolutions in chunks and over the whole batch
    assert any("convolutions in chunks / whole batch" in r["name"] for r in result["ratios"])
    assert _ok(rows, path="svm")
    for feed in ("device", "streamed"):  # the epoch row and the two memory rows of each feed
        assert len(_ok(rows, path="streaming", feed=feed)) == 3, feed
    parallel = _ok(rows, path="parallel", model="gru")
    assert parallel and parallel[0]["setting"]["devices"] == 8
    assert parallel[0]["extra"]["max_param_diff"] <= 1e-5  # 8 simulated devices equal one
    for peer in PEERS:  # each peer ran or says why it was skipped, for both models
        named = [r for r in rows if r["path"] == "peers" and r["name"].endswith(f", {peer}")]
        assert len(named) == 2, peer
    keras_counts = {"cnn": 65994, "gru": 76170}
    for row in _ok(rows, path="peers"):  # a peer that ran built the seed's exact network
        assert row["setting"]["keras_count"] == keras_counts[row["setting"]["model"]], row["name"]


def test_quick_run_reports_parity_settings_device_and_ratios(
    quick_result: tuple[dict, Path],
) -> None:
    result, out = quick_result
    features = _ok(result["rows"], path="features")
    ours = [r for r in features if r["name"].startswith("jax")]
    assert ours and all(r["extra"]["rel_l2_error"] < 1e-4 for r in ours)
    training = _ok(result["rows"], path="training")
    # melstat on 128 bands: two 3-tap 128->128 convolutions (2 x 49,152), three BatchNorms
    # (3 x 256 parameters + 3 x 256 statistics), Dense(816 -> 128) = 104,576 (816 = 2 x 128
    # pooled + 3 x 128 band statistics + 16 x 11 modulation values), Dense(128 -> 10) = 1,290,
    # and the standardisation's 2 x 128 statistics.
    melstat = 2 * 49_152 + 3 * 256 + 104_576 + 1_290 + 3 * 256 + 256
    counts = {"cnn": 65994, "gru": 76170, "melstat": melstat}
    assert all(r["extra"]["keras_count"] == counts[r["setting"]["model"]] for r in training)
    # the CPU formulations beside what they replaced: the first block both ways, the dropout
    # mask three ways, each with its ratios
    for title, ways in (("cnn first block forward and backward", 2), ("dropout mask", 3)):
        assert len([r for r in training if r["name"].startswith(title)]) == ways, title
        assert len([q for q in result["ratios"] if q["name"].startswith(title)]) == ways - 1
    assert all(r["setting"] for r in result["rows"] if r["status"] == "ok")
    device = result["device"]
    assert device["platform"] and device["cpu_model"] and device["cpu_cores"] >= 1
    assert result["versions"]["jax"] != "not installed"
    names = [q["name"] for q in result["ratios"]]
    assert any("ours / librosa" in name for name in names)
    assert all(math.isfinite(q["ratio"]) and q["ratio"] > 0 for q in result["ratios"])
    page = (out / "benchmarks-quick.md").read_text()
    assert "| path | benchmark | median | unit |" in page
    assert "ours / theirs" in page and device["cpu_model"] in page


def test_ratio_is_a_speed_up_for_rates_and_durations() -> None:
    fast, slow = Timing([1.0, 1.0, 1.0]), Timing([4.0, 4.0, 4.0])
    rate_ours, rate_theirs = Row.rate("p", "a", "x/s", fast, 8), Row.rate("p", "b", "x/s", slow, 8)
    assert ratio("r", rate_ours, rate_theirs)["ratio"] == pytest.approx(4.0)
    seconds_ours = Row.duration("p", "a", "s", fast)
    seconds_theirs = Row.duration("p", "b", "s", slow)
    assert ratio("r", seconds_ours, seconds_theirs)["ratio"] == pytest.approx(4.0)


def test_a_missing_peer_is_skipped_with_the_reason() -> None:
    reason = unavailable("surely_no_such_module_for_genre_jax")
    assert reason is not None and "not installed" in reason and "bench-peers" in reason


def test_skip_crossval_skips_the_files_its_patterns_match_and_says_which(tmp_path: Path) -> None:
    fine_tuning = "gtzan-dev-musicnn.json,gtzan-dev-musicnn-*"
    options = options_from(build_parser().parse_args(["--skip-crossval", fine_tuning]))
    assert options.crossval_skip == ("gtzan-dev-musicnn.json", "gtzan-dev-musicnn-*")
    # Every file skipped: one skipped row each, in file order, and no dataset is built.
    everything = ("gtzan-dev-musicnn.json", "gtzan-dev-musicnn-*", "*")
    rows = crossval_rows(Options.full(crossval_skip=everything), tmp_path)
    files = sorted(f.name for f in CONFIGS.glob("*.json"))
    assert [row.name for row in rows] == [f"crossval {name}" for name in files]
    assert not any(row.ok for row in rows) and not list(tmp_path.iterdir())
    reasons = {row.name.removeprefix("crossval "): row.reason for row in rows}
    tuned = {"gtzan-dev-musicnn-gentle.json", "gtzan-dev-musicnn-probe.json"}
    tuned |= {"gtzan-dev-musicnn-vgg-probe.json"}
    for name in tuned:  # the first pattern that matches is the one named
        assert reasons[name] == "--skip-crossval 'gtzan-dev-musicnn-*'", name
    assert reasons["gtzan-dev-musicnn.json"] == "--skip-crossval 'gtzan-dev-musicnn.json'"
    assert reasons["gtzan-dev-musicnnsvm.json"] == "--skip-crossval '*'"


def test_skip_crossval_refuses_a_pattern_that_matches_nothing() -> None:
    with pytest.raises(SystemExit, match=r"--skip-crossval: 'musicnn-\*' matches no experiment"):
        options_from(build_parser().parse_args(["--skip-crossval", "gtzan-dev-cnn.json,musicnn-*"]))


def test_runs_as_a_module_from_the_repository_root() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout and "--svm-train" in done.stdout
