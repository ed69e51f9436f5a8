"""``genre-jax export --format onnx``: the ONNX model's probabilities are ``predict``'s (on
synthetic segments and on real clips), at any batch size, in ONNX Runtime with our loader and
without it; a tampered model, an edited sidecar or another export's sidecar is refused; only
networks export."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax2onnx", reason="ONNX export needs jax2onnx: pip install 'genre-jax[onnx]'")
ort = pytest.importorskip(
    "onnxruntime", reason="ONNX export needs onnxruntime: pip install 'genre-jax[onnx]'"
)

from genre_jax.audio import load_audio, segment  # noqa: E402
from genre_jax.cli import main  # noqa: E402
from genre_jax.config import ConfigError  # noqa: E402
from genre_jax.export import export_run  # noqa: E402
from genre_jax.exported import ExportError, canonical, sidecar_path  # noqa: E402
from genre_jax.exported_onnx import FORMAT, load  # noqa: E402
from genre_jax.features import extract_jit  # noqa: E402
from genre_jax.inference import load_predictor  # noqa: E402

from .conftest import child_env, shared  # noqa: E402

# predict computes float32 features and logits and a float64 softmax; ONNX Runtime computes the
# network in float32 with its own kernels (measured: under 1e-7 on the CNN, GRU and melstat).
ATOL = 1e-4


@pytest.fixture(scope="module")
def onnx_export(cnn_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    record = export_run(cnn_run, out, format="onnx")
    assert record["format"] == FORMAT
    return out


def _segments(n: int, samples: int) -> np.ndarray:
    """Noise and tones: segments of music-like level, each different."""
    rng = np.random.default_rng(0)
    t = np.arange(samples) / 22050.0
    tones = [np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 2000, n)]
    return (0.05 * rng.standard_normal((n, samples)) + 0.3 * np.array(tones)).astype(np.float32)


def test_the_onnx_model_gives_predicts_probabilities(cnn_run, onnx_export) -> None:
    model = load(onnx_export)
    assert model.genres == json.loads((cnn_run / "labels.json").read_text())
    segments = _segments(5, model.segment_samples)
    features = np.asarray(extract_jit(segments, model.feature_config))
    expected = load_predictor(cnn_run).predict_proba(features)
    assert expected.shape == (5, len(model.genres))
    assert np.abs(expected - expected[0]).max() > 1e-3, "the segments must be told apart"
    whole = model(segments)
    one_by_one = np.concatenate([model(s[None]) for s in segments])
    np.testing.assert_allclose(whole, expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(one_by_one, expected, atol=ATOL, rtol=0)

    # The file alone, in ONNX Runtime without our loader: a symbolic batch, named input and
    # output, the genres in its metadata.
    session = ort.InferenceSession(str(onnx_export), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("features", "probabilities")
    assert inp.shape == ["batch", *features.shape[1:]]
    assert json.loads(session.get_modelmeta().custom_metadata_map["genre_jax.genres"]) == (
        model.genres
    )
    for batch in (1, 2, 5):
        (got,) = session.run(None, {"features": features[:batch]})
        np.testing.assert_allclose(got, expected[:batch], atol=ATOL, rtol=0)


def test_the_onnx_model_gives_predicts_probabilities_on_real_clips(
    cnn_run, onnx_export, capsys
) -> None:
    root = shared("gtzan-mini")
    clips = [sorted((root / "genres_original" / g).iterdir())[0] for g in ("blues", "metal")]
    clips.append(shared("other/vibe_ace_44k_stereo.ogg"))
    model = load(onnx_export)
    capsys.readouterr()
    assert main(["predict", *map(str, clips), "--run-dir", str(cnn_run), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    for clip, prediction in zip(clips, predictions, strict=True):
        segments = segment(load_audio(clip, model.sample_rate), model.segment_samples)
        assert len(segments) >= 2, clip
        expected = np.array(prediction["segment_probabilities"][: len(segments)])
        np.testing.assert_allclose(model(segments), expected, atol=ATOL, rtol=0, err_msg=str(clip))


def _copy(export: Path, to: Path) -> Path:
    shutil.copy(export, to)
    shutil.copy(sidecar_path(export), sidecar_path(to))
    return to


def _rewrite(side: Path, **changes) -> None:
    """Edit a sidecar and recompute its own digest, as someone who read this code could."""
    record = {**json.loads(side.read_text()), **changes}
    record["sidecar_sha256"] = hashlib.sha256(canonical(record)).hexdigest()
    side.write_text(json.dumps(record))


def test_a_tampered_model_or_edited_sidecar_is_refused(onnx_export, tmp_path) -> None:
    copy = _copy(onnx_export, tmp_path / "copy.onnx")
    load(copy)  # the copy itself loads
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="its bytes are not those its sidecar records"):
        load(copy)

    shutil.copy(onnx_export, copy)
    side = sidecar_path(copy)
    record = json.loads(side.read_text())
    side.write_text(json.dumps({**record, "genres": record["genres"][::-1]}))
    with pytest.raises(ExportError, match=r"copy\.onnx\.json: edited after it was written"):
        load(copy)
    _rewrite(side, genres=record["genres"][::-1])  # its own digest recomputed: the model knows
    with pytest.raises(ExportError, match=r"not the sidecar .*copy\.onnx was exported with"):
        load(copy)
    side.unlink()
    with pytest.raises(ExportError, match="cannot read"):
        load(copy)


def test_another_exports_sidecar_is_refused(cnn_run, onnx_export, tmp_path) -> None:
    """The sidecar of the same network exported from another run folder (the same weights,
    another ``source_run``), beside this model; and a StableHLO export's sidecar."""
    other_run = shutil.copytree(cnn_run, tmp_path / "other-run")
    other = export_run(other_run, tmp_path / "other.onnx", format="onnx")
    copy = _copy(onnx_export, tmp_path / "copy.onnx")
    shutil.copy(sidecar_path(tmp_path / "other.onnx"), sidecar_path(copy))
    with pytest.raises(ExportError, match="its bytes are not those its sidecar records"):
        load(copy)
    mine = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert other["program_sha256"] != mine  # the same weights; the metadata differs
    _rewrite(sidecar_path(copy), program_sha256=mine)
    with pytest.raises(ExportError, match=r"not the sidecar .* was exported with"):
        load(copy)

    export_run(cnn_run, tmp_path / "cnn.stablehlo")
    shutil.copy(sidecar_path(tmp_path / "cnn.stablehlo"), sidecar_path(copy))
    with pytest.raises(ExportError, match="not the sidecar of a genre-jax ONNX export"):
        load(copy)


def test_out_refusals_and_only_networks(synthetic_store, cnn_run, onnx_export, tmp_path) -> None:
    """The refusals of the StableHLO export: an existing export is replaced only with
    ``overwrite`` (an ONNX export is recognised as one), a file not ours never; a pipeline
    does not export."""
    copy = _copy(onnx_export, tmp_path / "copy.onnx")
    before = copy.read_bytes()
    with pytest.raises(ConfigError, match=r"exist \(an export\); pass --overwrite"):
        export_run(cnn_run, copy, format="onnx")
    assert copy.read_bytes() == before
    copy.write_bytes(b"cut short by a killed export")  # the sidecar still says ours
    export_run(cnn_run, copy, format="onnx", overwrite=True)
    assert load(copy).genres == load(onnx_export).genres
    mine = tmp_path / "notes.onnx"
    mine.write_text("mine")
    with pytest.raises(ConfigError, match=r"is not an export of genre-jax .* never replaced"):
        export_run(cnn_run, mine, format="onnx", overwrite=True)
    assert mine.read_text() == "mine"

    run = tmp_path / "svm"
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run)]
    assert main([*argv, "--model", "svm", "--no-time-flip", "--no-progress"]) == 0
    with pytest.raises(ConfigError, match="model 'svm', a pipeline; only networks export"):
        export_run(run, tmp_path / "svm.onnx", format="onnx")
    with pytest.raises(ConfigError, match="format 'tflite'; choose one of stablehlo, onnx"):
        export_run(cnn_run, tmp_path / "x", format="tflite")
    assert not (tmp_path / "svm.onnx").exists() and not (tmp_path / "x").exists()


def test_the_loader_names_the_extra_without_onnxruntime(onnx_export) -> None:
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from genre_jax.exported_onnx import load\n"
        "try:\n"
        f"    load({str(onnx_export)!r})\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "ONNX exports run with onnxruntime, which is not installed: pip install 'genre-jax[onnx]'"
    )
