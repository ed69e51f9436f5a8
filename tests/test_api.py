"""The Python API (``genre_jax.load``) and the genre over time (``predict --window-hop``).

The reference for ``load(...).predict`` is the command itself, ``genre-jax predict --json``,
run in this process on the same files; the reference for the windows is the whole file
decoded at once and cut by :func:`genre_jax.windows.windows`, scored by the run's predictor.
"""

from __future__ import annotations

import json
import tracemalloc
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import genre_jax
from genre_jax.api import PredictError
from genre_jax.audio import load_audio
from genre_jax.cli import main
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.ensemble import make_ensemble
from genre_jax.inference import load_predictor
from genre_jax.predict import predict_file
from genre_jax.runner import train_run
from genre_jax.segment_rows import score_segments
from genre_jax.synthetic import synthesize_clip
from genre_jax.windows import windows

from .conftest import shared

OGG = "other/vibe_ace_44k_stereo.ogg"
SAME = 1e-6  # the API runs the command's own code: only the JSON's float repr lies between
PROGRAM = 1e-5  # an export computes in float32 end to end (tests/test_export.py)


@pytest.fixture(scope="module")
def runs(cnn_run, synthetic_store, tmp_path_factory) -> dict[str, Path]:
    """A CNN run, an SVM run and their ensemble, on the synthetic store; and the CNN's export."""
    base = tmp_path_factory.mktemp("api")
    svm = base / "svm"
    train_run(
        synthetic_store.path,
        svm,
        TrainConfig(model="svm", time_flip=False),
        progress=False,
        log=lambda _: None,
    )
    make_ensemble([cnn_run, svm], base / "ensemble")
    program = base / "cnn.stablehlo"
    assert main(["export", "--run-dir", str(cnn_run), "--out", str(program)]) == 0
    return {"cnn": cnn_run, "svm": svm, "ensemble": base / "ensemble", "export": program}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A 25 s mono WAV at 22,050 Hz, and a 21 s stereo float WAV at 44.1 kHz (resampled)."""
    base = tmp_path_factory.mktemp("api-clips")
    mono = synthesize_clip("rock", 0, seconds=25.0, sample_rate=22050)
    sf.write(base / "rock.wav", mono, 22050, subtype="PCM_16")
    left = synthesize_clip("jazz", 1, seconds=21.0, sample_rate=44100)
    stereo = np.stack([left, 0.5 * left[::-1]], axis=1).astype(np.float32)
    sf.write(base / "jazz44k.wav", stereo, 44100, subtype="FLOAT")
    return {"rock": base / "rock.wav", "jazz": base / "jazz44k.wav"}


def command_json(paths: list[Path], run: Path, capsys, *extra: str) -> list[dict]:
    """What ``genre-jax predict PATHS --run-dir RUN --json`` prints."""
    capsys.readouterr()
    assert main(["predict", *map(str, paths), "--run-dir", str(run), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def assert_same(prediction, record: dict, genres: list[str], atol: float) -> None:
    """An API prediction against the command's record of the same input."""
    np.testing.assert_allclose(
        prediction.probabilities, record["segment_probabilities"], atol=atol, rtol=0
    )
    scores = {item["label"]: item["score"] for item in prediction}
    assert set(scores) == set(genres)
    for genre in genres:
        assert scores[genre] == pytest.approx(record["probabilities"][genre], abs=atol)
    assert [item["score"] for item in prediction] == sorted(scores.values(), reverse=True)
    assert prediction[0]["label"] == record["genre"]


@pytest.mark.parametrize("kind", ["cnn", "svm", "ensemble", "export"])
def test_load_predicts_paths_lists_and_waveforms_as_the_command(kind, runs, clips, capsys) -> None:
    model = genre_jax.load(runs[kind])
    run = runs["cnn"] if kind == "export" else runs[kind]  # an export's numbers are its run's
    genres = json.loads((run / "config.json").read_text())["genres"]
    assert model.genres == genres and model.sample_rate == 22050 and model.segment_seconds == 10
    assert model.kind == {"cnn": "run", "svm": "run"}.get(kind, kind)
    files = [clips["rock"], clips["jazz"]]
    records = command_json(files, run, capsys)
    atol = PROGRAM if kind == "export" else SAME

    one = model.predict(files[0])  # a path
    assert_same(one, records[0], genres, atol)
    both = model.predict(files)  # a list of paths
    assert isinstance(both, list) and len(both) == 2
    for prediction, record in zip(both, records, strict=True):
        assert_same(prediction, record, genres, atol)
    # the 44.1 kHz stereo clip in memory, (channels, samples): resampled as the file is decoded
    stereo, rate = sf.read(clips["jazz"], dtype="float32")
    assert rate == 44100
    in_memory = model.predict(stereo.T, sample_rate=rate)
    assert_same(in_memory, records[1], genres, atol)
    top = model.predict(files[0], top_k=3)
    assert [item["label"] for item in top] == [item["label"] for item in one[:3]]


def test_load_runs_an_onnx_export_as_the_command(runs, clips, tmp_path, capsys) -> None:
    pytest.importorskip("jax2onnx", reason="ONNX export needs the onnx extra")
    pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra")
    graph = tmp_path / "cnn.onnx"
    argv = ["export", "--run-dir", str(runs["cnn"]), "--out", str(graph), "--format", "onnx"]
    assert main(argv) == 0
    model = genre_jax.load(graph)
    assert model.kind == "export" and model.name == "cnn"
    (record,) = command_json([clips["jazz"]], runs["cnn"], capsys)
    assert_same(model.predict(clips["jazz"]), record, model.genres, 1e-4)  # onnxruntime's sums


def test_windows_are_the_whole_files_windows_and_bounded_in_memory(runs, tmp_path) -> None:
    predictor = load_predictor(runs["svm"])
    config = predictor.feature_config
    clip = synthesize_clip("metal", 2, seconds=180.0, sample_rate=44100)
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([clip, clip], axis=1), 44100, subtype="PCM_16")
    hop = 2.5
    audio = load_audio(path, config.sample_rate)
    expected = score_segments(
        np.array(windows(audio, config.segment_samples, round(hop * config.sample_rate))),
        predictor,
    )
    assert len(expected) == 1 + (len(audio) - config.segment_samples) // round(hop * 22050)
    predict_file(path, predictor, window_hop=hop, max_segments_in_memory=4)  # compile first
    tracemalloc.start()
    try:
        result = predict_file(path, predictor, window_hop=hop, max_segments_in_memory=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(result.segment_probabilities, expected, atol=SAME, rtol=0)
    assert result.window_hop == hop and result.window_seconds == 10.0
    assert result.window_starts[:3] == [0.0, 2.5, 5.0]
    decoded_native = 180 * 44100 * 2 * 4  # the whole file as float32 at its own rate
    assert peak < decoded_native / 2, f"peak {peak / 1e6:.1f} MB"
    # the API gives the same windows, as scores per window
    windowed = genre_jax.load(runs["svm"]).predict(path, window_hop=hop)
    assert len(windowed.windows) == len(expected)
    assert windowed.windows[1]["start"] == 2.5 and windowed.windows[1]["end"] == 12.5
    best = expected[1].argmax()
    assert windowed.windows[1]["scores"][0]["label"] == predictor.genres[best]


def test_a_file_shorter_than_one_window_is_padded_to_one(runs, tmp_path) -> None:
    predictor = load_predictor(runs["svm"])
    path = tmp_path / "short.wav"
    sf.write(path, synthesize_clip("pop", 0, seconds=4.0, sample_rate=22050), 22050)
    result = predict_file(path, predictor, window_hop=1.0)
    plain = predict_file(path, predictor)
    assert result.padded and result.segments == 1
    np.testing.assert_allclose(result.segment_probabilities, plain.segment_probabilities)


def test_genre_over_time_of_the_61_s_ogg(runs, tmp_path, capsys) -> None:
    ogg = shared(OGG)
    if not ogg.is_file():
        pytest.skip(f"{ogg} not found (set GENRE_JAX_SHARED_DATA)")
    plot = tmp_path / "taggram.png"
    (record,) = command_json([ogg], runs["cnn"], capsys, "--window-hop", "1", "--plot", str(plot))
    samples = len(load_audio(ogg, 22050))
    assert samples / 22050 == pytest.approx(record["duration"])
    assert record["segments"] == 1 + (samples - 10 * 22050) // 22050  # 52 for its 61.5 s
    assert record["window_starts"] == [float(i) for i in range(record["segments"])]
    assert len(record["segment_probabilities"]) == record["segments"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    # the plot is refused, before anything is predicted, where it would replace a file
    before = plot.read_bytes()
    assert main(["predict", str(ogg), "--run-dir", str(runs["cnn"]), "--plot", str(plot)]) == 2
    assert f"{plot}: exists; pass --overwrite" in capsys.readouterr().err
    assert plot.read_bytes() == before
    argv = ["predict", str(ogg), "--run-dir", str(runs["cnn"]), "--plot", str(ogg), "--overwrite"]
    assert main(argv) == 2  # never the input, even with --overwrite
    assert "is the audio file" in capsys.readouterr().err


def test_several_files_get_one_plot_each(runs, clips, tmp_path, capsys) -> None:
    out = tmp_path / "genre.png"
    command_json([clips["rock"], clips["jazz"]], runs["svm"], capsys, "--plot", str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genre-jazz44k.png", "genre-rock.png"]


def test_embed_is_the_networks_penultimate_layer(runs, clips) -> None:
    from genre_jax.embedders import network_embedder
    from genre_jax.features import extract_jit

    model = genre_jax.load(runs["cnn"])
    rows = model.embed(clips["rock"], per_segment=True)
    embedder = network_embedder(runs["cnn"])
    audio = load_audio(clips["rock"], 22050)
    segments = audio[: 2 * 220500].reshape(2, 220500)
    expected = embedder.rows_of(np.asarray(extract_jit(segments, embedder.feature_config)))
    np.testing.assert_allclose(rows, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(model.embed(clips["rock"]), expected.mean(axis=0), atol=1e-5)
    with pytest.raises(ConfigError, match="pipeline"):
        genre_jax.load(runs["svm"]).embed(clips["rock"])
    with pytest.raises(ConfigError, match="export"):
        genre_jax.load(runs["export"]).embed(clips["rock"])


def test_bad_inputs_are_refused_by_name(runs, clips, tmp_path) -> None:
    model = genre_jax.load(runs["svm"])
    with pytest.raises(PredictError, match="sample_rate"):
        model.predict(np.zeros(22050, np.float32))
    with pytest.raises(PredictError, match="is for a waveform"):
        model.predict(clips["rock"], sample_rate=22050)
    with pytest.raises(PredictError, match=r"\(channels, samples\)"):
        model.predict(np.zeros((22050, 2), np.float32), sample_rate=22050)
    with pytest.raises(PredictError, match="NaN"):
        model.predict(np.full(22050, np.nan, np.float32), sample_rate=22050)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEnot audio")
    with pytest.raises(PredictError, match=str(broken)):
        model.predict([clips["rock"], broken])
    with pytest.raises(ConfigError, match="top_k"):
        model.predict(clips["rock"], top_k=0)
    with pytest.raises(ConfigError, match="not a run directory"):
        genre_jax.load(clips["rock"])
    with pytest.raises(ConfigError, match="does not exist"):
        genre_jax.load(tmp_path / "missing")


def test_int16_waveforms_are_read_at_full_scale(runs, clips) -> None:
    model = genre_jax.load(runs["svm"])
    pcm, rate = sf.read(clips["rock"], dtype="int16")
    floats, _ = sf.read(clips["rock"], dtype="float32")
    np.testing.assert_allclose(
        model.predict(pcm, sample_rate=rate).probabilities,
        model.predict(floats, sample_rate=rate).probabilities,
        atol=SAME,
    )


def test_the_package_names_its_api_and_version() -> None:
    assert genre_jax.__version__ == version("genre-jax")
    for name in genre_jax.__all__:
        assert getattr(genre_jax, name) is not None, name
    assert callable(genre_jax.load)
    with pytest.raises(AttributeError):
        _ = genre_jax.not_a_name
