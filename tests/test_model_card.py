"""Model cards (issue 37, item 3): every run, ensemble and cross-validation folder gets a
``MODEL_CARD.md`` whose YAML front matter parses and whose figures are the folder's own; an
export's card is made from its sidecar record.

The front matter is read with PyYAML (a dependency of flax and orbax-checkpoint, so present
wherever genre-jax is installed); the Hugging Face fields are checked by name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from genre_jax.config import TrainConfig
from genre_jax.crossval import crossval
from genre_jax.ensemble import make_ensemble
from genre_jax.evaluate import evaluate_run
from genre_jax.model_card import CARD_NAME, export_card, write_card
from genre_jax.output_dirs import LAYOUTS, foreign_entries
from genre_jax.runner import train_run

QUIET = {"progress": False, "log": lambda _: None}


def card(folder: Path) -> tuple[dict, str]:
    """The card's front matter (parsed) and its body."""
    text = (folder / CARD_NAME).read_text()
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    parsed = yaml.safe_load(front)
    assert isinstance(parsed, dict)
    return parsed, body


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def check_hugging_face_fields(front: dict, model: str) -> None:
    assert front["pipeline_tag"] == "audio-classification"
    assert front["library_name"] == "genre-jax"
    assert front["license"] == "mit"
    assert {"genre-classification", model, "jax"} <= set(front["tags"])


def check_results(front: dict, body: str, song: float, segment: float, dataset: str) -> None:
    """``model-index`` in Hugging Face's form, holding these accuracies; the body says them."""
    assert front["metrics"] == ["accuracy"]
    (entry,) = front["model-index"]
    (result,) = entry["results"]
    assert result["task"]["type"] == "audio-classification"
    assert result["dataset"]["name"] == dataset
    values = [m["value"] for m in result["metrics"]]
    assert [m["type"] for m in result["metrics"]] == ["accuracy", "accuracy"]
    assert values == [song, segment]
    assert f"song-level accuracy: {pct(song)}" in body
    assert f"segment-level accuracy: {pct(segment)}" in body


@pytest.fixture(scope="module")
def svm_run(synthetic_store, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("card") / "svm"
    train_run(synthetic_store.path, run, TrainConfig(model="svm", time_flip=False), **QUIET)
    return run


def test_a_finished_run_has_a_card_naming_its_model_and_data(svm_run, synthetic_store) -> None:
    front, body = card(svm_run)
    check_hugging_face_fields(front, "svm")
    assert "scikit-learn" in front["tags"] and "flax" not in front["tags"]
    assert "synthetic" in front["tags"]
    assert "model-index" not in front  # nothing measured on test songs yet
    config = json.loads((svm_run / "config.json").read_text())
    recorded = front["genre_jax"]
    assert recorded["kind"] == "run" and recorded["model"] == "svm"
    assert recorded["data_dir"] == synthetic_store.manifest.root
    assert recorded["data_identity"] == config["songs"]["data"]
    assert recorded["data_fingerprint"] == config["data_fingerprint"]
    assert f"Data folder: `{synthetic_store.manifest.root}` (the built-in synthetic" in body
    assert "| `model.c` | `1.0` |" in body and '| `split` | `"song"` |' in body
    assert f"Split `{config['split']['name']}`: song-level" in body
    assert "Not evaluated yet" in body
    assert "SVM 65.00 %" in body and "leaks songs" in body
    assert f'genre_jax.load("{svm_run}").predict("song.wav")' in body
    assert f"genre-jax predict song.wav --run-dir {svm_run}" in body
    assert foreign_entries(svm_run, LAYOUTS["run"]) == []  # --overwrite takes the card


def test_evaluate_writes_the_card_again_with_the_measured_accuracy(svm_run) -> None:
    report = evaluate_run(svm_run)
    front, body = card(svm_run)
    dataset = front["genre_jax"]["dataset"]
    check_results(front, body, report["song_accuracy"], report["segment_accuracy"], dataset)
    assert front["genre_jax"]["test_songs"] == report["songs"]
    assert f"{report['songs']} test songs, {report['segments']} segments" in body
    assert "Not evaluated yet" not in body
    (svm_run / CARD_NAME).unlink()
    assert write_card(svm_run) == svm_run / CARD_NAME  # by hand: the same figures
    assert card(svm_run)[0]["model-index"] == front["model-index"]


def test_a_cnn_run_card_names_the_network_and_its_settings(cnn_run, tmp_path) -> None:
    front, body = card(cnn_run)
    check_hugging_face_fields(front, "cnn")
    assert "flax" in front["tags"]
    assert "| `model.channels` | `[32, 64, 64]` |" in body
    assert "| `epochs` | `1` |" in body and '| `kernels` | `"auto"` (run option) |' in body
    assert "its version of `cnn`" in body and "82.49 %" in body
    run = tmp_path / "cnn"
    shutil.copytree(cnn_run, run)
    report = evaluate_run(run)
    front, body = card(run)
    check_results(
        front,
        body,
        report["song_accuracy"],
        report["segment_accuracy"],
        front["genre_jax"]["dataset"],
    )


def test_an_ensemble_card_lists_its_members(svm_run, synthetic_store, tmp_path) -> None:
    other = tmp_path / "svm-c10"
    config = TrainConfig.from_flat({"model": "svm", "time_flip": False, "c": 10.0})
    train_run(synthetic_store.path, other, config, **QUIET)
    out = tmp_path / "ensemble"
    make_ensemble([svm_run, other], out)
    front, body = card(out)
    assert front["genre_jax"]["kind"] == "ensemble"
    assert front["genre_jax"]["model"] == "ensemble(svm+svm)"
    assert f"`{svm_run.resolve()}` (svm)" in body and f"`{other.resolve()}` (svm)" in body
    report = evaluate_run(out)
    front, body = card(out)
    check_results(
        front,
        body,
        report["song_accuracy"],
        report["segment_accuracy"],
        front["genre_jax"]["dataset"],
    )
    assert foreign_entries(out, LAYOUTS["ensemble"]) == []
    evaluate_run(out)  # loading checks the members' digests: their cards are not part of them


def test_a_crossval_card_states_what_was_run(synthetic_store, tmp_path) -> None:
    out = tmp_path / "cv"
    config = TrainConfig(model="svm", time_flip=False, folds=3, split_seed=2)
    crossval(synthetic_store.path, out, config, **QUIET)
    report = json.loads((out / "report.json").read_text())
    front, body = card(out)
    recorded = front["genre_jax"]
    assert recorded["kind"] == "crossval"
    assert recorded["folds"] == report["folds"] == 3
    assert recorded["split_seed"] == report["split_seed"] == 2
    assert recorded["song_accuracy_mean"] == report["mean"]["song_accuracy"]
    assert recorded["song_accuracy_std"] == report["std"]["song_accuracy"]
    assert recorded["segment_accuracy_std"] == report["std"]["segment_accuracy"]
    assert recorded["data_dir"] == report["data_dir"] == synthetic_store.manifest.root
    assert recorded["test_songs"] == report["songs"]
    mean, std = report["mean"], report["std"]
    check_results(front, body, mean["song_accuracy"], mean["segment_accuracy"], recorded["dataset"])
    (entry,) = front["model-index"]
    assert entry["results"][0]["dataset"]["split"] == (
        "3-fold song-level cross-validation, split seed 2"
    )
    assert "3-fold cross-validation" in body and "split seed 2" in body
    assert f"Song accuracy {pct(mean['song_accuracy'])} +- {pct(std['song_accuracy'])}" in body
    assert f"Data folder: `{report['data_dir']}`" in body
    for row in report["per_fold"]:
        line = f"| {row['fold']} | {row['songs']} | {row['segments']} | "
        assert line + f"{pct(row['song_accuracy'])} |" in body
        fold_front, _ = card(out / f"fold-{row['fold']}")
        assert fold_front["genre_jax"]["song_accuracy"] == row["song_accuracy"]
    assert f'genre_jax.load("{out / "fold-0"}")' in body
    assert foreign_entries(out, LAYOUTS["crossval"]) == []


def test_an_export_card_reads_its_source_run_while_it_exists(
    cnn_run, synthetic_store, tmp_path
) -> None:
    config = json.loads((cnn_run / "config.json").read_text())
    record = {
        "format": "genre-jax-export/1",
        "genres": config["genres"],
        "sample_rate": 22050,
        "segment_seconds": 10.0,
        "feature_config": config["features"],
        "model": config["train"]["model"],
        "source_run": str(cnn_run.resolve()),
        "best_epoch": 1,
        "program_sha256": "ab" * 32,
    }
    program = tmp_path / "cnn.jaxexport"
    text = export_card(record, program)
    front = yaml.safe_load(text[4:].split("\n---\n", 1)[0])
    assert front["genre_jax"]["kind"] == "export" and "flax" in front["tags"]
    assert front["genre_jax"]["data_dir"] == synthetic_store.manifest.root
    assert front["genre_jax"]["data_identity"] == config["songs"]["data"]
    assert f"`{'ab' * 32}`" in text and f"Source run: `{cnn_run.resolve()}` (the data" in text
    assert f'genre_jax.load("{program}").predict("song.wav")' in text
    assert "genre-jax predict" not in text  # a program, not a run directory
    gone = export_card({**record, "source_run": str(tmp_path / "deleted")}, program)
    assert "no longer here" in gone and "model-index" not in gone
    assert "| `model.channels` | `[32, 64, 64]` |" in gone


def test_a_folder_that_is_not_ours_gets_no_card(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a run, ensemble or cross-validation"):
        write_card(tmp_path)
    assert not (tmp_path / CARD_NAME).exists()


def test_a_card_the_user_wrote_is_never_replaced(svm_run, tmp_path) -> None:
    run = tmp_path / "svm"
    shutil.copytree(svm_run, run)
    mine = "# my notes on this run\n"
    (run / CARD_NAME).write_text(mine)
    with pytest.raises(ValueError, match="not a card genre-jax wrote"):
        write_card(run)
    evaluate_run(run)  # the report is written; the card is left with a warning
    assert (run / "report.json").is_file()
    assert (run / CARD_NAME).read_text() == mine


def test_an_export_writes_its_card_beside_it(cnn_run, tmp_path) -> None:
    from genre_jax.cli import main
    from genre_jax.config import ConfigError
    from genre_jax.export import card_path, export_run

    out = tmp_path / "cnn.stablehlo"
    notes = card_path(out)
    notes.write_text("# someone else's notes\n")
    with pytest.raises(ConfigError, match="not an export of genre-jax"):
        export_run(cnn_run, out, overwrite=True)
    assert notes.read_text() == "# someone else's notes\n" and not out.exists()
    notes.unlink()
    assert main(["export", "--run-dir", str(cnn_run), "--out", str(out)]) == 0
    text = notes.read_text()
    front = yaml.safe_load(text[4:].split("\n---\n", 1)[0])
    sidecar = json.loads((tmp_path / "cnn.stablehlo.json").read_text())
    assert front["library_name"] == "genre-jax" and front["genre_jax"]["kind"] == "export"
    assert sidecar["program_sha256"] in text and str(cnn_run.resolve()) in text
    with pytest.raises(ConfigError, match="--overwrite"):
        export_run(cnn_run, out)
    assert main(["export", "--run-dir", str(cnn_run), "--out", str(out), "--overwrite"]) == 0
