"""Prediction on audio files: streaming decode, segments, errors, the command's output.

The reference for every streamed result is the plain path computed here from the library's
parts: ``load_audio`` -> ``segment`` -> ``extract_jit`` on the whole file -> ``predict_proba``.
"""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_jax.audio import AudioError, iter_audio_blocks, load_audio, segment
from genre_jax.config import ConfigError, TrainConfig
from genre_jax.features import extract_jit
from genre_jax.inference import Predictor, load_predictor
from genre_jax.predict import TrackPrediction, predict_command, predict_file, predict_paths
from genre_jax.runner import train_run
from genre_jax.synthetic import GENRES, synthesize_clip
from tests.conftest import shared

BLUES = "gtzan-mini/genres_original/blues/blues.00000.wav"
OGG = "other/vibe_ace_44k_stereo.ogg"
RUN_CONFIGS = {
    "svm": TrainConfig(model="svm", time_flip=False),
    "cnn": TrainConfig(model="cnn", epochs=1, patience=0, time_flip=False),
}


@pytest.fixture(scope="module")
def trained(synthetic_store, tmp_path_factory) -> Callable[[str], tuple[Path, Predictor]]:
    """``trained(model)``: (run directory, loaded predictor), each model trained once."""
    base = tmp_path_factory.mktemp("predict-runs")
    cache: dict[str, tuple[Path, Predictor]] = {}

    def get(model: str) -> tuple[Path, Predictor]:
        if model not in cache:
            run_dir = base / model
            train_run(
                synthetic_store.path, run_dir, RUN_CONFIGS[model], progress=False, log=lambda _: 0
            )
            cache[model] = (run_dir, load_predictor(run_dir))
        return cache[model]

    return get


@pytest.fixture(scope="module")
def svm(trained) -> tuple[Path, Predictor]:
    return trained("svm")


def reference_probabilities(path: Path, predictor: Predictor, pad: bool = False) -> np.ndarray:
    """Per-segment probabilities by the non-streaming path, the whole file at once."""
    config = predictor.feature_config
    audio = load_audio(path, config.sample_rate)
    if pad:
        audio = np.pad(audio, (0, config.segment_samples - audio.shape[0]))
    segments = segment(audio, config.segment_samples)
    return predictor.predict_proba(np.asarray(extract_jit(segments, config)))


def write_clip(path: Path, seconds: float, rate: int = 22050, channels: int = 1) -> Path:
    mono = synthesize_clip("rock", 0, seconds=seconds, sample_rate=rate)
    data = np.stack([mono * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    sf.write(path, data, rate, subtype="PCM_16")
    return path


def write_truncated(path: Path) -> Path:
    write_clip(path, 12.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_text_as_wav(path: Path) -> Path:
    path.write_text("these are liner notes, not audio\n" * 20)
    return path


def write_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def write_header_only(path: Path) -> Path:
    sf.write(path, np.zeros(0, np.float32), 22050)
    return path


def write_zero_rate(path: Path) -> Path:
    """The 48-byte PCM WAV of issue 15 whose header says 0 Hz."""
    path.write_bytes(
        b"RIFF\x28\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\0\x02\0\x10\0"
        b"data\x04\0\0\0\0\0\0\0"
    )
    return path


# --- streaming decode -----------------------------------------------------------------------------


@pytest.mark.parametrize("relative", [BLUES, OGG])
def test_streamed_blocks_are_load_audio_sample_for_sample(relative: str) -> None:
    path = shared(relative)
    whole = load_audio(path)
    blocks = list(iter_audio_blocks(path, block_seconds=3.3))
    assert len(blocks) > 5 and all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (write_truncated, "truncated"),
        (write_text_as_wav, "not decodable"),
        (write_empty, "empty"),
        (write_header_only, "header only"),
        (write_zero_rate, "implausible sample rate 0 Hz"),
        (Path, "no such file"),
    ],
)
def test_streamed_decode_raises_load_audio_errors(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as whole:
        load_audio(path)
    with pytest.raises(AudioError) as streamed:
        list(iter_audio_blocks(path))
    assert reason in streamed.value.reason and streamed.value.reason == whole.value.reason
    assert str(path) in str(streamed.value)


def test_streamed_decode_rejects_nan_samples(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    data = np.zeros(22050 * 3, np.float32)
    data[22050 * 2] = np.nan
    sf.write(path, data, 22050, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        list(iter_audio_blocks(path, block_seconds=1.0))


# --- one file -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["svm", "cnn"])
@pytest.mark.parametrize(("relative", "segments"), [(BLUES, 3), (OGG, 6)])
def test_real_clips_give_probabilities_over_the_ten_genres(
    trained, model: str, relative: str, segments: int
) -> None:
    _, predictor = trained(model)
    result = predict_file(shared(relative), predictor)
    assert result.error is None
    assert list(result.probabilities) == list(GENRES) == predictor.genres
    assert abs(sum(result.probabilities.values()) - 1.0) < 1e-6
    assert result.segments == segments and not result.padded
    rows = np.array(result.segment_probabilities)
    assert rows.shape == (segments, 10)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-6)
    assert result.genre == max(result.probabilities, key=result.probabilities.get)


@pytest.mark.parametrize("model", ["svm", "cnn"])
def test_streaming_equals_the_whole_file_path(trained, model: str) -> None:
    _, predictor = trained(model)
    path = shared(BLUES)
    reference = reference_probabilities(path, predictor)
    # 2 segments in memory: the 3 segments of the 30 s file arrive in two chunks
    result = predict_file(path, predictor, max_segments_in_memory=2)
    np.testing.assert_allclose(result.segment_probabilities, reference, atol=1e-4)
    mean = reference.mean(axis=0)
    np.testing.assert_allclose(list(result.probabilities.values()), mean, atol=1e-4)
    assert result.genre == GENRES[int(np.argmax(mean))]


def test_long_file_is_streamed_in_bounded_memory(svm, tmp_path: Path) -> None:
    _, predictor = svm
    path = write_clip(tmp_path / "long.wav", 180.0, rate=44100, channels=2)
    decoded_native = 180 * 44100 * 2 * 4  # bytes of the whole file as float32 at its own rate
    predict_file(path, predictor, max_segments_in_memory=4)  # compile outside the measurement
    tracemalloc.start()
    try:
        small = predict_file(path, predictor, max_segments_in_memory=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    large = predict_file(path, predictor, max_segments_in_memory=64)
    assert small.segments == large.segments == 18
    np.testing.assert_allclose(small.segment_probabilities, large.segment_probabilities, atol=1e-6)
    assert small.probabilities == pytest.approx(large.probabilities, abs=1e-6)
    # 4 segments of audio (3.5 MB), a 10 s read block and one padded batch: far below the whole
    # decoded file (63.5 MB; load_audio itself peaks above 90 MB on it)
    assert peak < decoded_native / 2, f"peak {peak / 1e6:.1f} MB"


def test_file_shorter_than_a_segment_is_zero_padded_to_one(svm, tmp_path: Path) -> None:
    _, predictor = svm
    path = write_clip(tmp_path / "short.wav", 5.0, rate=16000)
    result = predict_file(path, predictor)
    assert result.padded and result.segments == 1 and result.error is None
    assert result.duration == pytest.approx(5.0, abs=1e-3)
    reference = reference_probabilities(path, predictor, pad=True)
    np.testing.assert_allclose(result.segment_probabilities, reference, atol=1e-4)
    full = predict_file(write_clip(tmp_path / "full.wav", 25.0), predictor)
    assert not full.padded and full.segments == 2  # the 5 s remainder is dropped, as in training


def test_top_k_is_sorted_and_capped(svm) -> None:
    _, predictor = svm
    result = predict_file(shared(BLUES), predictor, top_k=5)
    assert len(result.top_k) == 5
    values = [p for _, p in result.top_k]
    assert values == sorted(values, reverse=True)
    assert result.top_k[0][0] == result.genre
    assert all(result.probabilities[g] == p for g, p in result.top_k)
    ranked = sorted(result.probabilities.values(), reverse=True)
    assert values == ranked[:5]
    assert len(predict_file(shared(BLUES), predictor, top_k=50).top_k) == 10
    with pytest.raises(ConfigError, match="top_k"):
        predict_file(shared(BLUES), predictor, top_k=0)


def test_zero_rate_wav_is_a_per_file_error(svm, tmp_path: Path) -> None:
    _, predictor = svm
    result = predict_file(write_zero_rate(tmp_path / "r0.wav"), predictor)
    assert result.genre is None and "implausible sample rate 0 Hz" in result.error


def test_samples_far_beyond_audio_scale_are_a_per_file_error(svm, tmp_path: Path) -> None:
    _, predictor = svm
    mono = synthesize_clip("rock", 0, seconds=12.0, sample_rate=22050)
    path = tmp_path / "huge.wav"
    sf.write(path, (mono / np.abs(mono).max() * 1e18).astype(np.float32), 22050, subtype="FLOAT")
    result = predict_file(path, predictor)
    assert result.genre is None and result.segments == 0 and result.probabilities == {}
    assert result.error == "features are not finite (samples up to 1.0e+18: not audio-scale values)"
    sf.write(path, mono, 22050, subtype="FLOAT")  # the same clip at audio scale
    assert predict_file(path, predictor).error is None


# --- many files and the command -------------------------------------------------------------------


def bad_and_good_folder(root: Path) -> tuple[Path, list[Path], list[Path]]:
    root.mkdir()
    (root / "sub").mkdir()
    good = [write_clip(root / "a.wav", 11.0), write_clip(root / "sub" / "b.flac", 21.0, 44100, 2)]
    bad = [write_truncated(root / "cut.wav"), write_text_as_wav(root / "sub" / "notes.wav")]
    (root / "readme.txt").write_text("not an audio extension: ignored")
    return root, good, bad


def test_predict_paths_reports_unreadable_files_and_predicts_the_rest(svm, tmp_path: Path) -> None:
    _, predictor = svm
    root, good, bad = bad_and_good_folder(tmp_path / "music")
    results = predict_paths([root], predictor)
    assert [r.path for r in results] == [str(p) for p in sorted(good + bad)]
    by_path = {r.path: r for r in results}
    for path in good:
        assert by_path[str(path)].error is None and by_path[str(path)].segments >= 1
    assert "truncated" in by_path[str(bad[0])].error
    assert "not decodable" in by_path[str(bad[1])].error
    assert all(by_path[str(p)].genre is None and by_path[str(p)].segments == 0 for p in bad)


def test_predict_command_table_and_errors(svm, tmp_path: Path) -> None:
    run_dir, _ = svm
    root, _, bad = bad_and_good_folder(tmp_path / "music")
    out, err = io.StringIO(), io.StringIO()
    assert predict_command([root], run_dir, out=out, err=err) == 0
    for path in bad:
        assert str(path) in err.getvalue()
    assert "truncated" in err.getvalue() and "not decodable" in err.getvalue()
    table = out.getvalue()
    assert "a.wav" in table and "b.flac" in table and "cut.wav" not in table
    assert any(genre in table for genre in GENRES)


def test_a_file_given_without_an_audio_extension_is_refused(svm, tmp_path: Path) -> None:
    _, predictor = svm
    clip = write_clip(tmp_path / "clip.wav", 11.0)
    named = [tmp_path / "clip.txt", tmp_path / "clip", tmp_path / "clip.WAV"]
    for path in named:
        path.write_bytes(clip.read_bytes())  # real audio, whatever the name
    results = predict_paths([clip, *named], predictor)
    assert [r.path for r in results] == [str(clip), *map(str, named)]
    assert results[0].error is None and results[3].error is None  # extensions: any case
    assert results[1].genre is None and results[1].error.startswith(
        "extension '.txt' is not an audio extension (accepted: .aif, .aiff, .au, .flac, "
    )
    assert ".opus" in results[1].error and ".wav" in results[1].error
    assert results[2].error.startswith("no file extension (accepted: .aif, ")


def test_predict_command_exits_1_when_nothing_could_be_read(svm, tmp_path: Path) -> None:
    run_dir, _ = svm
    files = [write_truncated(tmp_path / "cut.wav"), write_text_as_wav(tmp_path / "notes.wav")]
    out, err = io.StringIO(), io.StringIO()
    assert predict_command([*files, tmp_path / "missing.ogg"], run_dir, out=out, err=err) == 1
    assert "no such file" in err.getvalue() and "missing.ogg" in err.getvalue()
    assert out.getvalue() == ""


def test_predict_command_json(svm, tmp_path: Path) -> None:
    run_dir, _ = svm
    bad = write_text_as_wav(tmp_path / "notes.wav")
    out, err = io.StringIO(), io.StringIO()
    code = predict_command([shared(OGG), bad], run_dir, top_k=2, as_json=True, out=out, err=err)
    assert code == 0
    records = json.loads(out.getvalue())
    assert [r["path"] for r in records] == [str(shared(OGG)), str(bad)]
    ok, failed = records
    expected = {"path", "genre", "probabilities", "segments", "top_k", "padded", "error"}
    assert expected <= set(ok) and expected <= set(failed)
    assert ok["segments"] == 6 and ok["error"] is None and len(ok["top_k"]) == 2
    assert abs(sum(ok["probabilities"].values()) - 1.0) < 1e-6
    assert ok["genre"] == ok["top_k"][0]["genre"]
    assert failed["genre"] is None and "not decodable" in failed["error"]
    assert str(bad) in err.getvalue()


def test_to_json_round_trips_through_json() -> None:
    record = TrackPrediction(
        "x.wav", "jazz", {"jazz": 0.75, "rock": 0.25}, 2, [[0.5, 0.5], [1.0, 0.0]], [("jazz", 0.75)]
    )
    assert json.loads(json.dumps(record.to_json()))["top_k"] == [
        {"genre": "jazz", "probability": 0.75}
    ]


# --- a run directory whose config.json is not a run's ------------------------------------------

_SETTINGS = {"train": {}, "features": {}, "split": {}, "genres": ["jazz", "rock"]}
NOT_A_RUN = {
    "a list": ([], "holds a list, not a JSON object"),
    "train a number": ({"train": 3}, "'train' is a number, not an object"),
    "no genres": ({**_SETTINGS, "genres": None}, "'genres' must be a list of distinct names"),
    "an export's sidecar": (
        {"format": "genre-jax-export/2", "genres": ["jazz", "rock"], "sample_rate": 22050},
        "is the sidecar of a genre-jax export",
    ),
    "an ensemble whose members are a number": (
        {**_SETTINGS, "members": 3, "member_models": ["cnn"]},
        "'members' must be a list of run directories, not 3",
    ),
    "an ensemble without its members' models": (
        {**_SETTINGS, "members": ["a", "b"]},
        "'member_models' must name each of the 2 members' models",
    ),
    "an ensemble of a member that is not a run": (
        {**_SETTINGS, "members": ["member"], "member_models": ["cnn"]},
        "member/config.json: holds a list",
    ),
}


@pytest.mark.parametrize("case", NOT_A_RUN)
def test_a_config_json_that_is_not_a_runs_is_one_line_in_every_command(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 35, item 19: a ``--run-dir`` whose config.json was ``[]``, an export's sidecar or
    an ensemble-shaped object with bad members gave TypeError/KeyError tracebacks in
    ``evaluate``, ``predict`` and ``export``. Each is one line naming the file, exit 2, and
    nothing is written."""
    from genre_jax.cli import main
    from genre_jax.inference import RunConfigError

    config, reason = NOT_A_RUN[case]
    run = tmp_path / "run"
    (run / "member").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    (run / "member" / "config.json").write_text("[]")
    clip = write_clip(tmp_path / "clip.wav", 1.0)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(RunConfigError, match=re.escape(reason)):
        load_predictor(run)
    commands = {
        "evaluate": ["evaluate", "--run-dir", str(run)],
        "predict": ["predict", str(clip), "--run-dir", str(run)],
        "export": ["export", "--run-dir", str(run), "--out", str(tmp_path / "model")],
    }
    for command, argv in commands.items():
        capsys.readouterr()
        assert main(argv) == 2, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"genre-jax {command}: error: "), err
        if command == "export" and case.endswith("not a run"):  # no member is read
            assert f"{run} is an ensemble; export each member's run" in err
            continue
        assert "config.json: " in err and reason in err, err
    assert sorted(tmp_path.rglob("*")) == before
