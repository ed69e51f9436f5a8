"""A run's model is bound to its run: edited checkpoint metadata, another run's checkpoints
behind a symbolic link, a config.json edited after training, an SVM file or sidecar replaced
or edited, and an ensemble that contains itself are refused, each naming what differs; runs
written before the binding still load and predict as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from genre_jax.binding import BINDING_KEYS
from genre_jax.checkpoint import CheckpointError, RunCheckpoints
from genre_jax.config import TrainConfig
from genre_jax.inference import load_predictor
from genre_jax.runner import train_run

QUIET = {"progress": False, "log": lambda _: None}
CNN = TrainConfig(model="cnn", epochs=1, patience=0, time_flip=False)


@pytest.fixture(scope="module")
def runs(synthetic_store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bound-runs")
    configs = {
        "cnn": CNN,
        "other": TrainConfig(model="cnn", epochs=1, patience=0, time_flip=False, seed=1),
        "svm": TrainConfig(model="svm", time_flip=False),
    }
    for name, config in configs.items():
        train_run(synthetic_store.path, root / name, config, **QUIET)
    return {name: root / name for name in configs}


@pytest.fixture(scope="module")
def features(synthetic_store) -> np.ndarray:
    return np.asarray(synthetic_store.features[:8])


def copy_run(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target, symlinks=True)
    return target


def step_dir(run: Path, series: str = "best") -> Path:
    (step,) = [p for p in (run / "checkpoints" / series).iterdir() if p.name.isdigit()]
    return step


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def swap_first_genres(data: dict) -> None:
    data["genres"][0], data["genres"][1] = data["genres"][1], data["genres"][0]


def test_untampered_run_predicts_identically_and_reformatting_is_no_edit(
    runs, features, tmp_path: Path
) -> None:
    for name in ("cnn", "svm"):
        run = copy_run(runs[name], tmp_path, name)
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps(config, indent=7, sort_keys=True))
        copied, original = load_predictor(run), load_predictor(runs[name])
        np.testing.assert_array_equal(
            copied.predict_proba(features), original.predict_proba(features)
        )
        np.testing.assert_array_equal(copied.predict(features), original.predict(features))
        assert copied.genres == original.genres == config["genres"]
    meta = json.loads((step_dir(runs["cnn"]) / "meta" / "metadata").read_text())
    assert set(BINDING_KEYS) <= set(meta)
    assert set(meta["config_keys_sha256"]) >= {"features", "train", "genres", "split"}


def test_swapped_genres_in_the_metadata_are_refused(runs, tmp_path: Path) -> None:
    run = copy_run(runs["cnn"], tmp_path)
    edit_json(step_dir(run) / "meta" / "metadata", swap_first_genres)
    with pytest.raises(CheckpointError, match=r"metadata was edited.*genres: \['classical'"):
        load_predictor(run)
    edit_json(run / "config.json", swap_first_genres)  # both, consistently: still refused
    with pytest.raises(CheckpointError, match="metadata was edited"):
        load_predictor(run)


def test_edited_metadata_settings_are_refused(runs, tmp_path: Path) -> None:
    run = copy_run(runs["cnn"], tmp_path)
    edit_json(step_dir(run) / "meta" / "metadata", lambda m: m["feature_config"].update(n_mels=64))
    with pytest.raises(CheckpointError, match=r"feature_config\.n_mels: 64 in the metadata"):
        load_predictor(run)


@pytest.mark.parametrize("where", ["series", "step"])
def test_checkpoints_behind_a_symlink_are_refused(runs, tmp_path: Path, where: str) -> None:
    run = copy_run(runs["cnn"], tmp_path)
    if where == "series":
        shutil.rmtree(run / "checkpoints" / "best")
        (run / "checkpoints" / "best").symlink_to(runs["other"] / "checkpoints" / "best")
    else:
        step = step_dir(run)
        shutil.rmtree(step)
        step.symlink_to(step_dir(runs["other"]))
    with pytest.raises(CheckpointError, match="is a symbolic link; a run's checkpoints"):
        load_predictor(run)


def test_latest_behind_a_symlink_is_refused_on_resume(
    runs, synthetic_store, tmp_path: Path
) -> None:
    run = copy_run(runs["cnn"], tmp_path)
    shutil.rmtree(run / "checkpoints" / "latest")
    (run / "checkpoints" / "latest").symlink_to(runs["other"] / "checkpoints" / "latest")
    with pytest.raises(CheckpointError, match="latest is a symbolic link"):
        RunCheckpoints(run)
    with pytest.raises(CheckpointError, match="latest is a symbolic link"):
        train_run(synthetic_store.path, run, CNN, resume=True, **QUIET)


@pytest.mark.parametrize("model", ["cnn", "svm"])
@pytest.mark.parametrize("field, value", [("n_mfcc", 20), ("n_mels", 64)])
def test_edited_feature_settings_in_config_json_are_refused(
    runs, tmp_path: Path, model: str, field: str, value: int
) -> None:
    run = copy_run(runs[model], tmp_path)
    edit_json(run / "config.json", lambda c: c["features"].update({field: value}))
    with pytest.raises(CheckpointError, match=rf"config\.json: edited since .*features\.{field}"):
        load_predictor(run)


def test_edited_split_in_config_json_is_refused_by_key(runs, tmp_path: Path) -> None:
    run = copy_run(runs["cnn"], tmp_path)
    edit_json(run / "config.json", lambda c: c["split"].update(name="edited"))
    with pytest.raises(CheckpointError, match=r"edited since .*\(split changed\)"):
        load_predictor(run)


def test_edited_sidecar_or_svm_file_is_refused(runs, tmp_path: Path) -> None:
    import skops.io as sio

    from genre_jax.fit_pipeline import fit_pipeline

    run = copy_run(runs["svm"], tmp_path, "sidecar")
    edit_json(run / "svm.json", swap_first_genres)
    with pytest.raises(CheckpointError, match=r"sidecar was edited.*genres"):
        load_predictor(run)

    run = copy_run(runs["svm"], tmp_path, "replaced")  # another valid model in its place
    rng = np.random.default_rng(0)
    other = fit_pipeline(
        rng.normal(size=(60, 4, 3)), np.repeat(np.arange(6), 10), TrainConfig(model="svm")
    )
    (run / "svm.skops").write_bytes(sio.dumps(other))
    with pytest.raises(CheckpointError, match=r"svm\.skops: its bytes are not those"):
        load_predictor(run)

    run = copy_run(runs["svm"], tmp_path, "flipped")
    data = bytearray((run / "svm.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (run / "svm.skops").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"svm\.skops: its bytes are not those"):
        load_predictor(run)


def write_legacy(series_dir: Path, template) -> None:
    """Save the step of ``series_dir`` again as the code before the binding did: orbax's
    StandardSave of the state and JsonSave of metadata holding only ``state_sha256``."""
    import orbax.checkpoint as ocp

    step = int(step_dir(series_dir.parents[1], series_dir.name).name)
    reader = ocp.CheckpointManager(
        series_dir.absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=1, create=False)
    )
    restored = reader.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
        ),
    )
    reader.close()
    meta = {k: v for k, v in restored["meta"].items() if k not in BINDING_KEYS}
    shutil.rmtree(series_dir)
    writer = ocp.CheckpointManager(
        series_dir.absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=1)
    )
    writer.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(restored["state"]), meta=ocp.args.JsonSave(meta)
        ),
    )
    writer.wait_until_finished()
    writer.close()


@pytest.fixture(scope="module")
def legacy_run(runs, tmp_path_factory) -> Path:
    from genre_jax.checkpoint import abstract_model_state
    from genre_jax.train import init_state

    run = copy_run(runs["cnn"], tmp_path_factory.mktemp("legacy"))
    config = json.loads((run / "config.json").read_text())
    n_features, n_classes = config["features"]["n_mfcc"], len(config["genres"])
    best = abstract_model_state("cnn", n_features, n_classes, CNN)[1]
    write_legacy(run / "checkpoints" / "best", best)
    write_legacy(run / "checkpoints" / "latest", init_state(CNN, n_features, n_classes)[1])
    return run


def test_legacy_run_loads_predicts_identically_and_resumes(
    runs, legacy_run: Path, features, synthetic_store, tmp_path: Path
) -> None:
    meta = json.loads((step_dir(legacy_run) / "meta" / "metadata").read_text())
    assert "state_sha256" in meta and not set(BINDING_KEYS) & set(meta)
    reference = load_predictor(runs["cnn"])
    legacy = load_predictor(legacy_run)
    np.testing.assert_array_equal(legacy.predict_proba(features), reference.predict_proba(features))
    assert legacy.genres == reference.genres
    run = copy_run(legacy_run, tmp_path)
    train_run(synthetic_store.path, run, CNN, resume=True, **QUIET)  # restores latest and best
    np.testing.assert_array_equal(
        load_predictor(run).predict_proba(features), reference.predict_proba(features)
    )


def test_legacy_run_still_checks_what_it_can(legacy_run: Path, tmp_path: Path) -> None:
    run = copy_run(legacy_run, tmp_path, "genres")
    edit_json(step_dir(run) / "meta" / "metadata", swap_first_genres)
    with pytest.raises(CheckpointError, match=r"does not match the run's config\.json \(genres"):
        load_predictor(run)
    run = copy_run(legacy_run, tmp_path, "features")
    edit_json(run / "config.json", lambda c: c["features"].update(n_mels=64))
    with pytest.raises(CheckpointError, match=r"feature_config\.n_mels: 128 in the metadata"):
        load_predictor(run)


def test_legacy_svm_without_sidecar_still_loads(runs, features, tmp_path: Path) -> None:
    run = copy_run(runs["svm"], tmp_path)
    (run / "svm.json").unlink()
    np.testing.assert_array_equal(
        load_predictor(run).predict_proba(features),
        load_predictor(runs["svm"]).predict_proba(features),
    )


def test_ensemble_containing_itself_is_refused(runs, tmp_path: Path) -> None:
    from genre_jax.ensemble import make_ensemble

    twin = copy_run(runs["cnn"], tmp_path, "twin")
    out = tmp_path / "ensemble"
    make_ensemble([runs["cnn"], twin], out)

    def add_member(config: dict, member: Path) -> None:  # as a well-formed config names one
        config["members"].append(str(member))
        config["member_models"].append("cnn")

    edit_json(out / "config.json", lambda c: add_member(c, out))
    with pytest.raises(CheckpointError, match="is the ensemble itself"):
        load_predictor(out)
    outer = tmp_path / "outer"
    make_ensemble([runs["cnn"], twin], outer)
    edit_json(outer / "config.json", lambda c: add_member(c, out))
    edit_json(out / "config.json", lambda c: c["members"].__setitem__(-1, str(outer)))
    with pytest.raises(CheckpointError, match="contains this ensemble"):
        load_predictor(outer)


def test_ensemble_with_edited_feature_settings_is_refused(runs, tmp_path: Path) -> None:
    from genre_jax.ensemble import make_ensemble

    out = tmp_path / "ensemble"
    make_ensemble([runs["cnn"], copy_run(runs["cnn"], tmp_path, "twin")], out)
    load_predictor(out)
    edit_json(out / "config.json", lambda c: c["features"].update(n_mels=64))
    with pytest.raises(CheckpointError, match=r"features\.n_mels: 128 in the member, 64"):
        load_predictor(out)
