"""Evaluation from checkpoints, comparison, and the demo in its quick mode."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from genre_jax.cli import main
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.datasets import Track, generate_synthetic
from genre_jax.demo import demo_configs, synthetic_settings
from genre_jax.evaluate import compare_runs, evaluate_run
from genre_jax.identity import IdentityError
from genre_jax.inference import load_predictor
from genre_jax.legacy import match_tracks
from genre_jax.matching import select_segments
from genre_jax.models import get_spec
from genre_jax.prepare import prepare
from genre_jax.reports import comparison_markdown
from genre_jax.runner import train_run
from genre_jax.scoring import aggregate_songs
from genre_jax.store import FeatureStore
from genre_jax.store_splits import make_split

PNG = b"\x89PNG\r\n\x1a\n"


def test_song_aggregation_against_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    tracks = np.repeat([7, 3, 9, 4], 3)
    labels = np.repeat([1, 0, 2, 2], 3)
    probs = rng.dirichlet(np.ones(3), size=12)
    predicted = probs.argmax(1)
    predicted[9:] = [0, 1, 2]  # track 4: a three-way vote tie
    songs = aggregate_songs(tracks, labels, probs, predicted)
    for i, track in enumerate(songs.tracks):
        rows = tracks == track
        mean = probs[rows].mean(0)
        assert songs.by_mean[i] == mean.argmax()
        votes = np.bincount(predicted[rows], minlength=3)
        best = np.flatnonzero(votes == votes.max())
        assert songs.by_vote[i] == best[np.argmax(mean[best])]
        assert songs.labels[i] == labels[rows][0]
    assert list(songs.tracks) == [3, 4, 7, 9]


@pytest.fixture(scope="module")
def runs(synthetic_store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-runs")
    configs = {
        "cnn": TrainConfig(model="cnn", epochs=2, patience=0, time_flip=False),
        "gru": TrainConfig(model="gru", epochs=2, patience=0, time_flip=False),
        "svm": TrainConfig(model="svm", time_flip=False),
        "melstat": TrainConfig(model="melstat", epochs=2, patience=0, time_flip=False),
        "statsvm": TrainConfig(model="statsvm", time_flip=False),
    }
    for name, config in configs.items():
        train_run(synthetic_store.path, root / name, config, progress=False, log=lambda _: None)
    return {name: root / name for name in configs}


@pytest.mark.parametrize("model", ["cnn", "gru", "svm", "melstat", "statsvm"])
def test_evaluate_round_trip(runs, synthetic_store, model: str) -> None:
    run = runs[model]
    report = evaluate_run(run)
    saved = json.loads((run / "report.json").read_text())
    assert report.pop("report_file") == str(run / "report.json")
    assert saved == json.loads(json.dumps(report))
    assert saved["store"] == str(synthetic_store.path.resolve())
    for key in ("segment_accuracy", "song_accuracy", "per_genre", "confusion"):
        assert key in saved
    index = make_split(synthetic_store, TrainConfig(model=model)).segment_indices(
        "test", synthetic_store.tracks
    )
    predicted = load_predictor(run).predict(np.asarray(synthetic_store.features[index]))
    assert report["segment_accuracy"] == pytest.approx(
        np.mean(predicted == synthetic_store.labels[index])
    )
    assert report["segments"] == 30 and report["songs"] == 10
    assert set(report["per_genre"]) == set(synthetic_store.genres)
    assert sum(m["support"] for m in report["per_genre"].values()) == 10
    assert np.sum(report["confusion"]["segment"]["counts"]) == 30
    normalized = np.array(report["confusion"]["song"]["normalized"])
    np.testing.assert_allclose(normalized.sum(1), 1.0, atol=1e-6)
    for level in ("song", "segment"):
        for kind in ("counts", "normalized"):
            assert (run / "plots" / f"confusion_{level}_{kind}.png").read_bytes()[:8] == PNG
    assert "| blues |" in (run / "report.md").read_text()
    # Each song once, by its audio's identity, agreeing with the song-level figures.
    songs = report["per_song"]
    split = make_split(synthetic_store, TrainConfig(model=model))
    test_tracks = split.part_tracks("test", synthetic_store.tracks)
    tracks = [synthetic_store.manifest.tracks[int(i)] for i in test_tracks]
    assert sorted(s["song"] for s in songs) == sorted(f"{t.genre}/{t.content}" for t in tracks)
    right = [s["predicted"] == s["genre"] for s in songs]
    assert np.mean(right) == pytest.approx(report["song_accuracy"])
    assert np.mean([s["predicted_vote"] == s["genre"] for s in songs]) == pytest.approx(
        report["song_accuracy_vote"]
    )
    assert sum(sum(s["segment_votes"]) for s in songs) == 30
    for s in songs:
        assert sum(s["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert s["predicted"] == report["genres"][int(np.argmax(s["probabilities"]))]
    page = (run / "report.html").read_text()
    assert page.count('<article class="song"') == right.count(False)
    assert ("PCA 1" in page) == (model in ("cnn", "gru", "melstat"))  # networks have a map


@pytest.mark.parametrize("model", ["cnn", "svm"])
def test_evaluate_reads_a_chunk_of_segments_at_a_time(
    runs, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    """Segments read and predicted 7 at a time (a large store's way) give the same report as
    all 30 at once."""
    from genre_jax import evaluate

    whole = evaluate_run(runs[model], write=False)
    monkeypatch.setattr(evaluate, "EVALUATE_CHUNK", 7)
    chunked = evaluate_run(runs[model], write=False)
    assert chunked == whole and whole["segments"] == 30


def test_evaluate_refuses_a_store_with_other_feature_settings(runs, synthetic_small, tmp_path):
    other = prepare(
        synthetic_small,
        tmp_path / "f",
        FeatureConfig(segment_seconds=5.0),
        progress=False,
        log=lambda _: None,
    )
    with pytest.raises(ConfigError, match="segment_seconds"):
        evaluate_run(runs["svm"], features=other.path)
    assert main(["evaluate", "--run-dir", str(runs["svm"]), "--features", str(other.path)]) == 2


def test_compare_lists_runs_and_the_seed_reference(runs, capsys) -> None:
    rows = compare_runs([runs["cnn"], runs["svm"]])
    assert [r["model"] for r in rows] == ["cnn", "svm", "cnn", "gru", "svm"]
    seed = [r for r in rows if r["run"] == "seed report"]
    assert all("leaky" in r["protocol"] for r in seed)
    assert {r["model"]: r["segment_accuracy"] for r in seed} == {
        "cnn": 0.8249,
        "gru": 0.7114,
        "svm": 0.65,
    }
    assert main(["compare", str(runs["gru"])]) == 0
    assert "leaky" in capsys.readouterr().out


def test_compare_two_runs_pairs_their_test_songs(runs, tmp_path, capsys) -> None:
    """Two runs on the same split: every pair of the three is tested on the ten test songs,
    Holm's adjustment named, and the page written; another out path is refused as a file."""
    out = tmp_path / "cmp"
    folders = [str(runs[m]) for m in ("cnn", "svm", "statsvm")]
    assert main(["compare", *folders, "--out", str(out), "--no-audio"]) == 0
    result = json.loads((out / "comparison.json").read_text())
    paired = result["paired"]
    assert paired["units"] == 10 and len(paired["pairs"]) == 3
    assert "Holm" in paired["correction"] and paired["partitions"] == ["test"]
    for pair in paired["pairs"]:
        n = pair["a_right_b_wrong"] + pair["a_wrong_b_right"] + pair["both_right"]
        assert n + pair["both_wrong"] == 10
        assert pair["p_holm"] >= pair["p"]
    page = (out / "report.html").read_text()
    assert "<audio" not in page and "--no-audio" in page
    assert main(["compare", *folders, "--out", str(tmp_path / "table.md")]) == 2
    assert "names a folder" in capsys.readouterr().err
    before = (out / "comparison.json").stat().st_mtime_ns
    assert main(["compare", *folders, "--out", str(out)]) == 2  # a comparison is there
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "comparison.json").stat().st_mtime_ns == before
    (out / "notes.txt").write_text("mine")
    assert main(["compare", *folders, "--out", str(out), "--overwrite"]) == 2
    assert "notes.txt" in capsys.readouterr().err and (out / "notes.txt").is_file()


def test_demo_quick_runs_end_to_end(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GENRE_JAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    code = main(["demo", "--quick", "--tracks-per-genre", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    table = (out / "comparison.md").read_text()
    for model in ("cnn", "gru", "svm", "melstat", "statsvm"):
        assert (out / model / "report.json").is_file()
        assert f"| {out / model} | {model} |" in table
    assert table.count("seed report") == 3
    melstat = json.loads((out / "melstat" / "config.json").read_text())
    assert melstat["features"]["kind"] == "logmel" and melstat["train"]["label_smoothing"] == 0.1


def test_demo_scales_early_stopping_with_its_shorter_synthetic_schedule() -> None:
    synthetic, real = demo_configs(real_data=False), demo_configs(real_data=True)
    seed = TrainConfig()  # the seed's schedule: 100 epochs, patience 20
    for name in ("cnn", "gru"):
        epochs = get_spec(name).demo.synthetic["epochs"]
        assert synthetic[name].epochs == epochs < seed.epochs
        assert synthetic[name].patience == round(seed.patience * epochs / seed.epochs)
        assert (real[name].epochs, real[name].patience) == (seed.epochs, seed.patience)
    assert (synthetic["cnn"].patience, synthetic["gru"].patience) == (4, 6)
    assert synthetic["melstat"].patience == real["melstat"].patience == 0  # no early stopping
    # A patience the synthetic settings give is kept; one that rounds to 0 stays at least 1;
    # a schedule that is not shorter keeps the recipe's patience.
    recipe = {"model": "cnn", "epochs": 100, "patience": 20}
    assert synthetic_settings(recipe, {"epochs": 30, "patience": 9})["patience"] == 9
    assert synthetic_settings(recipe, {"epochs": 2})["patience"] == 1
    assert "patience" not in synthetic_settings(recipe, {"epochs": 100})
    assert "patience" not in synthetic_settings(recipe, {"learning_rate": 1e-3})
    assert "patience" not in synthetic_settings({**recipe, "patience": 0}, {"epochs": 30})


def _track(track_id: str, genre: str, size: int | None = None) -> Track:
    return Track(id=track_id, genre=genre, path=f"/data/{genre}/{track_id}.wav", size=size)


def test_songs_are_matched_by_genre_id_and_size_where_both_record_it() -> None:
    wanted = [
        _track("blues.00000", "blues", 100),  # its file changed size: another song
        _track("blues.00001", "blues", 100),
        _track("jazz.00000", "jazz"),  # no size recorded on this side: genre and id decide
        _track("rock.00000", "rock", 50),
        _track("x", "blues"),  # the same id in another genre is another song
        _track("pop.00009", "pop", 10),  # not there at all
    ]
    available = [
        _track("jazz.00000", "jazz", 7),
        _track("blues.00001", "blues", 100),
        _track("blues.00000", "blues", 101),
        _track("rock.00000", "rock"),
        _track("x", "jazz"),
    ]
    assert match_tracks(wanted, available).tolist() == [-1, 1, 0, 3, -1, -1]
    assert match_tracks([], available).tolist() == []


QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture(scope="module")
def small_run(synthetic_store, tmp_path_factory) -> tuple[Path, FeatureStore]:
    """An SVM run on the 10-tracks-per-genre store (1 test song per genre), with its report."""
    run = tmp_path_factory.mktemp("small-run") / "run"
    train_run(synthetic_store.path, run, TrainConfig(model="svm", time_flip=False), **QUIET)
    evaluate_run(run)
    return run, synthetic_store


def _copy_data(source: Path, target: Path) -> Path:
    """The dataset copied file by file with new modification times (so another fingerprint)."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    return target


@pytest.fixture(scope="module")
def copied_store(small_run, tmp_path_factory) -> FeatureStore:
    """A store of the run's dataset copied elsewhere: the same files, another fingerprint."""
    _, store = small_run
    root = tmp_path_factory.mktemp("copied")
    data = _copy_data(Path(store.manifest.root).parent, root / "data")
    copy = prepare(data, root / "features", **QUIET)
    assert copy.info["data_fingerprint"] != store.info["data_fingerprint"]
    return copy


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _figures(report: dict) -> dict:
    keys = ("segments", "songs", "segment_accuracy", "song_accuracy", "song_accuracy_vote")
    return {k: report[k] for k in (*keys, "per_genre", "per_genre_segment", "confusion")}


def _split_ids(run: Path, part: str) -> list[str]:
    config = json.loads((run / "config.json").read_text())
    manifest = json.loads((Path(config["store"]) / "manifest.json").read_text())
    return sorted(manifest["tracks"][i]["id"] for i in config["split"][part])


def test_a_copy_of_the_data_is_scored_on_the_runs_own_test_songs(small_run, copied_store) -> None:
    run, _ = small_run
    copy = copied_store
    own_bytes = (run / "report.json").read_bytes()
    own = json.loads(own_bytes)

    config = json.loads((run / "config.json").read_text())
    selection = select_segments(copy, config, "test", run)
    evaluated = sorted(
        {copy.manifest.tracks[t].id for t in np.asarray(copy.tracks)[selection.index]}
    )
    assert evaluated == _split_ids(run, "test") and len(evaluated) == 10

    report = evaluate_run(run, features=copy.path)
    assert _figures(report) == _figures(own)
    assert "found by their audio in" in report["evaluated_on"]
    assert "another dataset" not in report["evaluated_on"]
    assert (run / "report.json").read_bytes() == own_bytes  # the run's own report is kept
    digest = hashlib.sha256(str(copy.path.resolve()).encode()).hexdigest()[:8]
    suffix = f"-test-on-{copy.path.name}-{digest}"
    assert report["report_file"] == str(run / f"report{suffix}.json")
    saved = json.loads((run / f"report{suffix}.json").read_text())
    assert saved["store"] == str(copy.path.resolve()) and _figures(saved) == _figures(own)
    assert str(copy.path.resolve()) in (run / f"report{suffix}.md").read_text()
    for level in ("song", "segment"):
        for kind in ("counts", "normalized"):
            assert (run / "plots" / f"confusion_{level}_{kind}{suffix}.png").read_bytes()[:8] == PNG

    val = evaluate_run(run, part="val", features=copy.path)
    assert val["report_file"] == str(run / f"report-val-on-{copy.path.name}-{digest}.json")
    assert val["songs"] == len(_split_ids(run, "val")) == 10


def test_a_leaky_run_on_a_copy_scores_its_own_test_segments(
    small_run, copied_store, tmp_path
) -> None:
    """The seed's segment-level split, mapped by song and position in the song."""
    _, store = small_run
    run = tmp_path / "leaky"
    config = TrainConfig(model="svm", time_flip=False, split="seed-leaky")
    train_run(store.path, run, config, **QUIET)
    own = evaluate_run(run)
    on_copy = evaluate_run(run, features=copied_store.path)
    assert on_copy["leaky_split"] and _figures(on_copy) == _figures(own)
    assert own["segments"] < len(store)


def test_a_copy_missing_a_test_song_is_refused(small_run, tmp_path) -> None:
    run, store = small_run
    data = _copy_data(Path(store.manifest.root).parent, tmp_path / "copy")
    lost = store.manifest.tracks[json.loads((run / "config.json").read_text())["split"]["test"][3]]
    (data / Path(lost.path).relative_to(Path(store.manifest.root).parent)).unlink()
    copy = prepare(data, tmp_path / "copy-features", **QUIET)
    before = _files(run)
    with pytest.raises(
        IdentityError, match=rf"1 of the run's 10 test songs are not in it .*{re.escape(lost.id)}"
    ):
        evaluate_run(run, features=copy.path)
    assert _files(run) == before
    code = main(["evaluate", "--run-dir", str(run), "--features", str(copy.path)])
    assert code == 2 and _files(run) == before


def test_another_dataset_is_scored_whole_beside_the_runs_report(small_run, tmp_path) -> None:
    run, _ = small_run
    own_bytes = (run / "report.json").read_bytes()
    root = generate_synthetic(tmp_path / "other", tracks_per_genre=2, seed=1)
    for path in sorted(root.glob("*/*.wav")):  # other songs: none has an id of the run's
        path.rename(path.with_name(path.name.replace(".000", ".other")))
    other = prepare(tmp_path / "other", tmp_path / "other-features", **QUIET)
    report = evaluate_run(run, features=other.path)
    assert report["songs"] == 20 and report["segments"] == len(other)
    assert report["evaluated_on"].endswith("(another dataset)")
    assert Path(report["report_file"]).name.startswith(f"report-test-on-{other.path.name}-")
    assert (run / "report.json").read_bytes() == own_bytes


def test_without_the_runs_store_its_songs_are_found_by_their_audio(small_run, tmp_path) -> None:
    """The run's own store is gone: its songs (``songs.json``) are still found in a copy of
    its data holding more songs (so in another order, another data identity); without
    ``songs.json`` they cannot be, and the evaluation is refused."""
    _, store = small_run
    own_store = tmp_path / "features" / store.path.name
    shutil.copytree(store.path, own_store)
    run = tmp_path / "run"
    train_run(own_store, run, TrainConfig(model="svm", time_flip=False), **QUIET)
    own = evaluate_run(run)
    shutil.rmtree(own_store)
    data = _copy_data(Path(store.manifest.root).parent, tmp_path / "more")
    extra = generate_synthetic(tmp_path / "extra", tracks_per_genre=1, seed=7)
    for path in sorted(extra.glob("*/*.wav")):
        shutil.copyfile(path, data / "genres_original" / path.parent.name / f"x-{path.name}")
    more = prepare(data, tmp_path / "more-features", **QUIET)
    assert more.identity != store.identity
    report = evaluate_run(run, features=more.path)
    assert _figures(report) == _figures(own) and "found by their audio" in report["evaluated_on"]
    (run / "songs.json").unlink()
    with pytest.raises(IdentityError, match=r"songs\.json is missing"):
        evaluate_run(run, features=more.path)


def test_a_legacy_run_still_evaluates(small_run, copied_store, tmp_path) -> None:
    """A run written before runs recorded a data fingerprint, with a store whose manifest
    records no file sizes: scored on its own test songs, on its store and on a copy."""
    run, store = small_run
    own = json.loads((run / "report.json").read_text())
    legacy_store = tmp_path / "features" / store.path.name
    shutil.copytree(store.path, legacy_store)
    manifest = json.loads((legacy_store / "manifest.json").read_text())
    for track in manifest["tracks"]:
        track.pop("size", None)
    (legacy_store / "manifest.json").write_text(json.dumps(manifest))
    legacy = tmp_path / "legacy-run"
    # Earlier code wrote no sidecar beside svm.skops (and no report yet).
    shutil.copytree(run, legacy, ignore=shutil.ignore_patterns("report*", "plots", "svm.json"))
    config = json.loads((legacy / "config.json").read_text())
    del config["data_fingerprint"]
    config["store"] = str(legacy_store)
    (legacy / "config.json").write_text(json.dumps(config))

    report = evaluate_run(legacy)
    assert _figures(report) == _figures(own)
    assert report["report_file"] == str(legacy / "report.json")
    assert _figures(evaluate_run(legacy, features=copied_store.path)) == _figures(own)


def test_compare_only_reads_and_marks_a_run_evaluated_now(small_run, tmp_path) -> None:
    run, store = small_run
    fresh = tmp_path / "fresh"
    train_run(store.path, fresh, TrainConfig(model="svm", time_flip=False), **QUIET)
    before = _files(fresh)
    assert "report.json" not in before
    rows = compare_runs([fresh, run])
    assert _files(fresh) == before  # nothing written, not even plots
    assert [r["evaluated_now"] for r in rows[:2]] == [True, False]
    expected = evaluate_run(fresh, write=False)
    assert expected["report_file"] is None and _files(fresh) == before
    assert rows[0]["song_accuracy"] == expected["song_accuracy"]
    assert rows[0]["segment_accuracy"] == expected["segment_accuracy"]
    table = comparison_markdown(rows)
    assert f"| {fresh} * | svm |" in table and f"| {run} | svm |" in table
    assert "evaluated now" in table and "no report.json" in table
    assert "evaluated now" not in comparison_markdown(compare_runs([run]))
