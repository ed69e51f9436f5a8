"""``genre-jax export``: the exported program's probabilities are ``predict``'s on real clips,
at more than one batch size; it runs with nothing of genre_jax but its loader; a tampered
program or sidecar is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genre_jax.audio import load_audio, segment
from genre_jax.cli import main
from genre_jax.exported import ExportError, load, sidecar_path

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
    assert sidecar["model"] == {"name": "cnn"} and sidecar["source_run"] == str(cnn_run.resolve())
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
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert exported.read_bytes() == before
