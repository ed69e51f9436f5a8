"""``genre-jax export``: the exported program's probabilities are ``predict``'s on real clips,
at more than one batch size; it runs with nothing of genre_jax but its loader; a tampered
program or sidecar is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from packaging.requirements import Requirement

from genre_jax.audio import load_audio, segment
from genre_jax.cli import main
from genre_jax.exported import (
    FORMAT,
    UNBOUND_FORMAT,
    ExportError,
    UnboundExportWarning,
    canonical,
    load,
    sidecar_path,
)

from .conftest import child_env, shared

# predict computes float32 features and logits and a float64 softmax; the program computes
# the same in float32 end to end, in other batch shapes.
ATOL = 1e-5


@pytest.fixture(scope="module")
def exported(cnn_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("program") / "cnn.stablehlo"
    assert main(["export", "--run-dir", str(cnn_run), "--out", str(out)]) == 0
    return out


def _clips() -> list[Path]:
    root = shared("gtzan-mini")
    if not root.is_dir():
        pytest.skip(f"real clips not found at {root} (set GENRE_JAX_SHARED_DATA)")
    return [sorted((root / "genres_original" / g).iterdir())[0] for g in ("blues", "metal")] + [
        shared("other/vibe_ace_44k_stereo.ogg")
    ]


def test_the_program_gives_predicts_probabilities(cnn_run, exported, capsys) -> None:
    model = load(exported)
    sidecar = json.loads(sidecar_path(exported).read_text())
    assert model.genres == json.loads((cnn_run / "labels.json").read_text())
    assert sidecar["model"] == {"name": "cnn", "channels": [32, 64, 64]}
    assert sidecar["source_run"] == str(cnn_run.resolve())
    clips = _clips()
    capsys.readouterr()
    assert main(["predict", *map(str, clips), "--run-dir", str(cnn_run), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    for clip, prediction in zip(clips, predictions, strict=True):
        segments = segment(load_audio(clip, model.sample_rate), model.segment_samples)
        expected = np.array(prediction["segment_probabilities"][: len(segments)])
        assert len(segments) >= 2, clip
        whole = model(segments)  # every segment in one call ...
        one_by_one = np.concatenate([model(s[None]) for s in segments])  # ... and one at a time
        np.testing.assert_allclose(whole, expected, atol=ATOL, err_msg=str(clip))
        np.testing.assert_allclose(one_by_one, expected, atol=ATOL, err_msg=str(clip))


def test_the_program_runs_without_genre_jax(exported, tmp_path) -> None:
    """Only the loader file, copied elsewhere; importing genre_jax is made impossible."""
    shutil.copy(Path(__file__).parent.parent / "genre_jax" / "exported.py", tmp_path / "loader.py")
    model = load(exported)
    x = np.random.default_rng(0).standard_normal((2, model.segment_samples)).astype(np.float32)
    np.save(tmp_path / "x.npy", 0.1 * x)
    code = (
        "import sys, json; sys.modules['genre_jax'] = None\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import numpy as np, loader\n"
        f"m = loader.load({str(exported)!r})\n"
        f"print(json.dumps(m(np.load({str(tmp_path / 'x.npy')!r})).tolist()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(json.loads(result.stdout), model(0.1 * x), atol=1e-7)


def test_a_tampered_program_or_sidecar_is_refused(exported, tmp_path) -> None:
    copy = tmp_path / "copy.stablehlo"
    shutil.copy(exported, copy)
    shutil.copy(sidecar_path(exported), sidecar_path(copy))
    load(copy)  # the copy itself loads
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="not those its sidecar records"):
        load(copy)
    shutil.copy(exported, copy)
    record = json.loads(sidecar_path(copy).read_text())
    sidecar_path(copy).write_text(json.dumps({**record, "genres": record["genres"][::-1]}))
    with pytest.raises(ExportError, match="edited after it was written"):
        load(copy)
    sidecar_path(copy).unlink()
    with pytest.raises(ExportError, match="cannot read"):
        load(copy)


def test_only_networks_export(synthetic_store, exported, tmp_path, capsys) -> None:
    run = tmp_path / "svm"
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run)]
    assert main([*argv, "--model", "svm", "--no-time-flip", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["export", "--run-dir", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "model 'svm', a pipeline; only networks export" in capsys.readouterr().err
    before = exported.read_bytes()
    source = json.loads(sidecar_path(exported).read_text())["source_run"]
    assert main(["export", "--run-dir", source, "--out", str(exported)]) == 2  # no --overwrite
    assert "exist (an export); pass --overwrite" in capsys.readouterr().err
    assert exported.read_bytes() == before


def _one_error(capsys, argv: list[str]) -> str:
    """Run the command, which must refuse in one line (exit 2); that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genre-jax export: error: "), err
    return err


def test_export_replaces_only_an_export_of_ours_and_nothing_of_a_run(
    cnn_run, exported, tmp_path, capsys
) -> None:
    """Issue 35, item 13 (and 25's ``--out DIR --overwrite``): ``--out RUN/config
    --overwrite`` replaced the run's config.json with the sidecar (the run no longer loaded),
    the refusal without --overwrite named a file that did not exist, and an existing folder
    gave "...tmp: Is a directory"."""
    run = tmp_path / "run"
    shutil.copytree(cnn_run, run)
    config = (run / "config.json").read_bytes()
    export = ["export", "--run-dir", str(run), "--out"]

    for out in (run / "config", run / "plots" / "model"):
        err = _one_error(capsys, [*export, str(out), "--overwrite"])
        assert f"--out {out} lies in a run folder of genre-jax, {run}" in err
    assert (run / "config.json").read_bytes() == config
    assert not (run / "config").exists() and not (run / "plots" / "model.json").exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.json").write_text('{"mine": true}')
    (mine / "program").write_text("mine too")
    err = _one_error(capsys, [*export, str(mine / "notes")])  # the file that exists is named
    assert f"{mine / 'notes.json'} exists and is not an export of genre-jax" in err
    for out in ("notes", "program"):
        err = _one_error(capsys, [*export, str(mine / out), "--overwrite"])
        assert "is not an export of genre-jax" in err and "never replaced" in err
    err = _one_error(capsys, [*export, str(mine), "--overwrite"])
    assert f"export: {mine} is a folder; --out names the program's file" in err
    assert (mine / "notes.json").read_text() == '{"mine": true}'
    assert (mine / "program").read_text() == "mine too"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.json", "program"]

    ours = tmp_path / "ours" / "cnn.stablehlo"
    ours.parent.mkdir()
    shutil.copy(exported, ours)
    shutil.copy(sidecar_path(exported), sidecar_path(ours))
    err = _one_error(capsys, [*export, str(ours)])
    assert f"{ours} and {sidecar_path(ours)} exist (an export); pass --overwrite" in err
    ours.write_bytes(b"a program cut short by a killed export")  # the sidecar still says ours
    assert main([*export, str(ours), "--overwrite"]) == 0
    assert load(ours).genres == json.loads((run / "config.json").read_text())["genres"]


def _rewrite(side: Path, **changes) -> None:
    """Edit a sidecar and recompute its own digest, as someone who read this code could."""
    record = {**json.loads(side.read_text()), **changes}
    record["sidecar_sha256"] = hashlib.sha256(canonical(record)).hexdigest()
    side.write_text(json.dumps(record))


NOT_ITS_SIDECAR = r"not the sidecar .* was exported with"


def test_the_sidecar_is_bound_to_the_program_not_only_to_itself(exported, tmp_path) -> None:
    """Issue 35, item 25: the sidecar's digest covered only the sidecar, so reversed genres
    with a recomputed digest loaded. The program now carries the digest of the sidecar's
    content; relabelling the sidecar as the older, unbound format does not skip the check."""
    copy = tmp_path / "copy.stablehlo"
    shutil.copy(exported, copy)
    side = sidecar_path(copy)
    shutil.copy(sidecar_path(exported), side)
    genres = load(copy).genres
    _rewrite(side, genres=genres[::-1])
    with pytest.raises(ExportError, match=NOT_ITS_SIDECAR):
        load(copy)
    _rewrite(side, genres=genres, format=UNBOUND_FORMAT)  # the right genres, relabelled
    with pytest.raises(ExportError, match=NOT_ITS_SIDECAR):
        load(copy)
    _rewrite(side, genres=genres[::-1], format=UNBOUND_FORMAT)
    with pytest.raises(ExportError, match=NOT_ITS_SIDECAR):
        load(copy)


def _unbound_export(path: Path, genres: list[str], format: str) -> None:
    """An export as format 1 wrote it: a program named ``probabilities``, which carries no
    digest, and a sidecar bound to the program by its SHA-256 only."""

    def probabilities(segments):
        return jax.nn.softmax(jnp.stack([segments.mean(axis=1), segments.std(axis=1)], 1), -1)

    (batch,) = jax.export.symbolic_shape("batch")
    shape = jax.ShapeDtypeStruct((batch, 8), jnp.float32)
    program = bytes(jax.export.export(jax.jit(probabilities))(shape).serialize())
    path.write_bytes(program)
    record = {"format": format, "program_sha256": hashlib.sha256(program).hexdigest()}
    record |= {"genres": genres, "sample_rate": 8, "segment_seconds": 1.0, "segment_samples": 8}
    record["sidecar_sha256"] = hashlib.sha256(canonical(record)).hexdigest()
    sidecar_path(path).write_text(json.dumps(record))


def test_an_older_unbound_export_loads_with_a_warning(tmp_path) -> None:
    """Format-1 exports stay loadable (a deployed model whose run is gone is not stranded),
    with a warning saying what is not checked; an unbound program beside a sidecar of the
    current format is refused."""
    old = tmp_path / "old.stablehlo"
    _unbound_export(old, ["a", "b"], UNBOUND_FORMAT)
    with pytest.warns(UnboundExportWarning, match="export the run again"):
        model = load(old)
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    expected = np.exp(np.stack([x.mean(1), x.std(1)], 1))
    np.testing.assert_allclose(model(x), expected / expected.sum(1, keepdims=True), rtol=1e-5)
    forged = tmp_path / "forged.stablehlo"
    _unbound_export(forged, ["a", "b"], FORMAT)
    with pytest.raises(ExportError, match="does not carry the digest of its sidecar"):
        load(forged)


def test_flatbuffers_is_a_declared_dependency() -> None:
    """Issue 35, item 16: jax.export's (de)serialization imports flatbuffers, which jax does
    not depend on; it came only with the test extra, through TensorFlow. It must be one of
    genre-jax's own dependencies, with a range the installed version satisfies."""
    from jax._src.export import serialization  # what Exported.serialize / deserialize import

    assert serialization.flatbuffers.__name__ == "flatbuffers"
    pyproject = Path(__file__).parent.parent / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    (requirement,) = [r for r in map(Requirement, dependencies) if r.name == "flatbuffers"]
    assert requirement.specifier, "give flatbuffers a version range"
    assert requirement.specifier.contains(version("flatbuffers"))
