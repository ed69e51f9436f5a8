"""Run directories written before the model protocol (issue 16) still evaluate and predict,
with the numbers they gave then.

``tests/data/legacy/`` holds run directories of every built-in model but musicnnsvm (whose
weights are a download) and a cross-validation folder, written by the code of commit
``058eba0`` (its README has every command), with what that code's ``evaluate`` and
``predict`` gave (``expected.json``). Their ``config.json`` files have the flat settings of
those days (``"model": "statsvm", "svm_c": 3.0``); the pipelines' skops files name classes at
their old module paths. The feature stores are rebuilt here from the built-in synthetic data
with the recorded settings and checked against the recorded array digests first; the runs'
own store is put back where their config names it (:func:`_put_back`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest

from genre_jax.audio import load_audio
from genre_jax.config import FeatureConfig, TrainConfig
from genre_jax.evaluate import evaluate_run
from genre_jax.inference import load_predictor
from genre_jax.matching import select_segments
from genre_jax.prepare import prepare
from genre_jax.store import FeatureStore
from genre_jax.synthetic import generate_synthetic
from tests.test_features import assert_parity

LEGACY = Path(__file__).parent / "data" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
RUNS = sorted(EXPECTED["runs"])
# Probabilities on this machine were bit-identical; another CPU may order float sums
# differently, so networks' softmax outputs may move in the last digits.
ATOL = 1e-6


def _assert_close(got: object, recorded: object, where: str) -> None:
    """Equal JSON values, floats to :data:`ATOL`."""
    if isinstance(recorded, dict):
        assert isinstance(got, dict) and got.keys() == recorded.keys(), where
        for key in recorded:
            _assert_close(got[key], recorded[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(got, list) and len(got) == len(recorded), where
        for i, (a, b) in enumerate(zip(got, recorded, strict=True)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(recorded, float):
        assert got == pytest.approx(recorded, abs=ATOL), where
    else:
        assert got == recorded, where


@pytest.fixture(scope="module")
def legacy_stores(tmp_path_factory) -> dict[str, FeatureStore]:
    """The stores the legacy runs were trained on, rebuilt and checked array by array.

    The labels, track indices and positions are integers: their bytes are the recorded ones on
    any machine. The features are floats that XLA sums in another order on another instruction
    set (AVX2 against AVX-512), so their bytes are not compared; each segment is checked
    against librosa, the independent reference, within :func:`tests.test_features.assert_parity`'s
    tolerance.
    """
    root = tmp_path_factory.mktemp("legacy")
    data = generate_synthetic(root / "data", tracks_per_genre=4, seed=0, progress=False)
    stores = {}
    for name, recorded in EXPECTED["stores"].items():
        config = FeatureConfig.from_json(recorded["feature_config"])
        store = prepare(data, root / "stores" / name, config, progress=False, log=lambda _: None)
        assert store.config.hash() == recorded["feature_hash"]
        assert len(store) == recorded["segments"]
        for array, digest in recorded["sha256"].items():
            if array != "features.npy":
                path = store.path / array
                assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, array
        _assert_features_match_librosa(store)
        _put_back(store, recorded["data_fingerprint"], _recorded_path(name))
        stores[name] = store
    return stores


def _assert_features_match_librosa(store: FeatureStore) -> None:
    """Every segment's features against librosa's of the same samples (the MFCCs of the log-mel
    in dB, or that log-mel), elementwise within ``1e-3 + 1e-6 x |librosa|``."""
    config = store.config
    features = np.asarray(store.features[:])
    for row, (track, position) in enumerate(zip(store.tracks, store.positions, strict=True)):
        audio = load_audio(store.manifest.tracks[int(track)].path, config.sample_rate)
        start = int(position) * config.segment_samples
        y = audio[start : start + config.segment_samples].astype(np.float64)
        mel = dict(n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels)
        mel.update(fmin=config.fmin, fmax=config.fmax)
        power = librosa.feature.melspectrogram(y=y, sr=config.sample_rate, **mel)
        db = librosa.power_to_db(power, ref=1.0, amin=config.amin, top_db=config.top_db)
        reference = (
            librosa.feature.mfcc(S=db, n_mfcc=config.n_mfcc) if config.kind == "mfcc" else db
        )
        assert_parity(features[row], reference.T)


def _recorded_path(store_name: str) -> Path:
    """Where the legacy code wrote the store the runs of ``store_name`` name in their config."""
    run = next(r for r, e in EXPECTED["runs"].items() if e["store"] == store_name)
    return Path(json.loads((LEGACY / "rundirs" / run / "config.json").read_text())["store"])


def _put_back(store: FeatureStore, fingerprint: str, where: Path) -> None:
    """The runs' own store, as the legacy code left it, at the path their config names.

    Evaluating a run on a store of other files (these rebuilt ones: the same audio, rewritten,
    so another data fingerprint) matches its songs through the run's own store. That store's
    arrays are the rebuilt ones (their digests checked above); its ``data_fingerprint``, which
    hashes the audio files' modification times, is the one recorded (a rebuild cannot give
    it). Put in place by a rename, once per machine (pytest workers may race for it).
    """
    if where.is_dir():
        info = json.loads((where / "store.json").read_text())
        assert info["data_fingerprint"] == fingerprint, f"{where}: another store is there"
        return
    where.parent.mkdir(parents=True, exist_ok=True)
    staging = where.parent / f".{where.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(store.path, staging)
    info = json.loads((staging / "store.json").read_text())
    (staging / "store.json").write_text(json.dumps({**info, "data_fingerprint": fingerprint}))
    try:
        os.rename(staging, where)
    except OSError:  # another worker put it there first
        shutil.rmtree(staging)


@pytest.fixture(scope="module")
def legacy_runs(tmp_path_factory) -> Path:
    """A copy of the recorded run directories (evaluate writes its reports into them)."""
    copy = tmp_path_factory.mktemp("legacy-runs") / "rundirs"
    shutil.copytree(LEGACY / "rundirs", copy)
    return copy


def test_old_flat_settings_become_the_model_sections() -> None:
    """The legacy flags of statsvm's run (``--svm-c 3 --harmonic-percussive``) are its model
    section now; every other model's legacy fields, at the defaults all runs wrote, vanish."""
    for run in RUNS:
        saved = json.loads((LEGACY / "rundirs" / run / "config.json").read_text())["train"]
        assert isinstance(saved["model"], str) and "svm_c" in saved  # the old, flat form
        config = TrainConfig.from_json(saved)
        assert config.model == saved["model"]
        assert TrainConfig.from_json(config.to_json()) == config
    statsvm = json.loads((LEGACY / "rundirs" / "statsvm" / "config.json").read_text())["train"]
    section = TrainConfig.from_json(statsvm).model_section()
    assert section["c"] == 3.0 and section["harmonic_percussive"] is True
    gru = json.loads((LEGACY / "rundirs" / "gru" / "config.json").read_text())["train"]
    section = TrainConfig.from_json(gru).model_section()  # the seed's units, now a setting
    assert section == {"name": "gru", "units": (64, 96), "unroll": 0}


@pytest.mark.parametrize("run", RUNS)
def test_a_legacy_run_evaluates_as_it_did(run, legacy_stores, legacy_runs) -> None:
    expected = EXPECTED["runs"][run]
    store = legacy_stores[expected["store"]]
    run_dir = legacy_runs / run
    report = evaluate_run(run_dir, features=store.path)
    recorded = expected["report"]
    for key, value in recorded.items():
        if key != "evaluated_on":  # names the store, at another path here
            _assert_close(report[key], value, key)
    selection = select_segments(store, json.loads((run_dir / "config.json").read_text()), "test")
    assert selection.index.tolist() == expected["test_segment_index"]
    predictor = load_predictor(run_dir)
    x = np.asarray(store.features[selection.index])
    probabilities = predictor.predict_proba(x)
    np.testing.assert_allclose(probabilities, expected["test_segment_probabilities"], atol=ATOL)
    assert predictor.predict(x, probabilities).tolist() == expected["test_segment_predicted"]


@pytest.mark.parametrize("run", RUNS)
def test_a_legacy_run_predicts_as_it_did(run, legacy_runs, capsys) -> None:
    from genre_jax.cli import main

    assert (
        main(["predict", str(LEGACY / "clip.wav"), "--run-dir", str(legacy_runs / run), "--json"])
        == 0
    )
    (result,) = json.loads(capsys.readouterr().out)
    (recorded,) = EXPECTED["runs"][run]["predict"]
    assert result["genre"] == recorded["genre"]
    assert result["segments"] == recorded["segments"] and result["padded"] == recorded["padded"]
    got = [result["probabilities"][g] for g in recorded["probabilities"]]
    np.testing.assert_allclose(got, list(recorded["probabilities"].values()), atol=ATOL)


def test_a_legacy_crossval_report_still_renders() -> None:
    """A cross-validation folder written before reports said what ran (no data folder, no
    experiment file recorded) still reads as a report."""
    from genre_jax.crossval_report import crossval_markdown

    report = json.loads((LEGACY / "rundirs" / "crossval-svm" / "report.json").read_text())
    text = crossval_markdown(report)
    assert "2-fold song-level cross-validation" in text
    assert "an unrecorded data folder" in text
    mean = 100 * report["mean"]["song_accuracy"]
    assert f"{mean:.2f}" in text
