"""One identity of songs and data, checked everywhere (issue 35, items 1-6, 9 and 10).

A song is its decoded audio (:func:`genre_jax.identity.audio_digest`), a store's data its songs
in order (:func:`genre_jax.identity.data_identity`), and every consumer (resume, crossval
continuing, ensembles, evaluation on another store) refuses other songs with one error type,
:class:`genre_jax.identity.IdentityError`. Each ``test_item_*`` is a minimal reproduction of the
issue's text, on small synthetic data (8 kHz, 1 s segments, shards of 7 segments) so that the
file runs in a few minutes on two cores; the other tests check the mechanism itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from genre_jax.audio import load_song
from genre_jax.cli import main
from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.crossval import crossval
from genre_jax.datasets import generate_synthetic
from genre_jax.embedding_cache import cache_files, store_table
from genre_jax.ensemble import check_members, make_ensemble
from genre_jax.evaluate import evaluate_run
from genre_jax.identity import (
    AudioDigest,
    IdentityError,
    audio_digest,
    data_identity,
    read_songs,
)
from genre_jax.inference import load_predictor
from genre_jax.prepare import prepare
from genre_jax.runner import train_run
from genre_jax.store import FeatureStore, verify_store
from genre_jax.store_checks import StoreError
from genre_jax.store_splits import make_split
from tests.conftest import converted_weights

QUIET = {"progress": False, "log": lambda _: None}
RATE = 8000  # the synthetic songs' and the features' sample rate: small, so decoding is quick
SECONDS = 6.0  # six 1 s segments a song: the SVM's calibration needs >= 5 per genre
FEATURES = FeatureConfig(
    sample_rate=RATE, segment_seconds=1.0, n_fft=512, hop_length=128, n_mels=40
)
SHARD_SEGMENTS = 7  # the issue's --shard-segments 7: many shards, some of equal rows
GENRES = ("blues", "classical", "country", "disco")  # of the ten: fewer rows, smaller plots
SVM = TrainConfig(model="svm", time_flip=False)
# A network trained one epoch, streamed with a checkpoint after every step (3 steps an
# epoch on 24 training segments), so that a checkpoint inside the epoch is left behind.
CNN = TrainConfig(
    model="cnn",
    epochs=1,
    batch_size=8,
    patience=0,
    time_flip=False,
    feed="stream",
    checkpoint_steps=1,
)


def _prepare(data: Path, out: Path) -> FeatureStore:
    return prepare(data, out, FEATURES, shard_segments=SHARD_SEGMENTS, **QUIET)


def _synthetic(out: Path, tracks_per_genre: int) -> Path:
    """The synthetic songs of :data:`GENRES` (the same songs for any ``tracks_per_genre``,
    as many more as asked)."""
    root = generate_synthetic(
        out, tracks_per_genre=tracks_per_genre, seconds=SECONDS, sample_rate=RATE, workers=1
    )
    for genre in root.iterdir():
        if genre.name not in GENRES:
            shutil.rmtree(genre)
    return out


def _copy_data(source: Path, target: Path) -> Path:
    """A copy file by file with new modification times (so another data fingerprint)."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    return target


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what a refusal must leave as it was)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@dataclasses.dataclass(frozen=True)
class Data:
    """The shared data: the synthetic songs of :data:`GENRES`, 3 a genre (``syn3``) and the
    same plus a fourth (``syn4``), and the stores of them, of a copy of ``syn3`` with new
    modification times (``copy3``) and of ``syn3`` without one song (``less3``)."""

    syn3: Path
    store3: FeatureStore
    store4: FeatureStore
    copy3: FeatureStore
    less3: FeatureStore


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("identity")
    _synthetic(root / "syn3", 3)
    _synthetic(root / "syn4", 4)
    _copy_data(root / "syn3", root / "copy3")
    _copy_data(root / "syn3", root / "less3")
    (root / "less3" / "genres_original" / "disco" / "disco.00002.wav").unlink()
    return Data(
        syn3=root / "syn3",
        store3=_prepare(root / "syn3", root / "st3"),
        store4=_prepare(root / "syn4", root / "st4"),
        copy3=_prepare(root / "copy3", root / "stcopy3"),
        less3=_prepare(root / "less3", root / "stless3"),
    )


@pytest.fixture(scope="module")
def svm_run(data: Data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SVM trained on ``store3`` (split song, seed 0: 1 test song a genre), evaluated."""
    run = tmp_path_factory.mktemp("svm") / "svm1"
    train_run(data.store3.path, run, SVM, **QUIET)
    evaluate_run(run)
    return run


@pytest.fixture(scope="module")
def cnn_run(data: Data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A streamed CNN trained one epoch on ``store3``, checkpointing every step (tests copy
    it before resuming it)."""
    run = tmp_path_factory.mktemp("cnn") / "cnn1"
    train_run(data.store3.path, run, CNN, **QUIET)
    return run


# --- the mechanism ---------------------------------------------------------------------------


def test_a_songs_identity_is_its_decoded_audio(tmp_path: Path) -> None:
    """A lossless transcode and a copy with another modification time keep a song's identity;
    one sample changed by one step, or a resample, give another."""
    rng = np.random.default_rng(0)
    samples = rng.integers(-20000, 20000, size=(RATE, 2), dtype=np.int16)
    wav = tmp_path / "song.wav"
    sf.write(wav, samples, RATE, subtype="PCM_16")
    flac = tmp_path / "song.flac"
    sf.write(flac, samples, RATE, subtype="PCM_16", format="FLAC")
    copy = tmp_path / "copy.wav"
    shutil.copyfile(wav, copy)
    os.utime(copy, ns=(10**18, 10**18))
    edited = samples.copy()
    edited[RATE // 2, 1] += 1
    sf.write(tmp_path / "edited.wav", edited, RATE, subtype="PCM_16")
    resampled = soxr.resample(samples.astype(np.float32) / 32768, RATE, 11025)
    sf.write(tmp_path / "resampled.wav", resampled, 11025, subtype="PCM_16")

    identity = load_song(wav, RATE)[1]
    assert identity == audio_digest(samples.astype(np.float32) / 32768, RATE)
    assert load_song(flac, RATE)[1] == identity
    assert load_song(copy, RATE)[1] == identity
    assert load_song(wav, 16000)[1] == identity  # the file's own rate, not the one asked
    assert load_song(tmp_path / "edited.wav", RATE)[1] != identity
    assert load_song(tmp_path / "resampled.wav", RATE)[1] != identity
    assert audio_digest(samples.astype(np.float32) / 32768, 11025) != identity


def test_an_audio_digest_block_by_block_is_the_whole_ones() -> None:
    samples = np.random.default_rng(1).uniform(-1, 1, size=(1000, 2)).astype(np.float32)
    digest = AudioDigest(RATE, 2)
    for start, end in ((0, 1), (1, 300), (300, 301), (301, 1000)):
        digest.update(samples[start:end])
    assert digest.hexdigest() == audio_digest(samples, RATE)
    assert audio_digest(samples[:, :1], RATE) == audio_digest(samples[:, 0], RATE)


def test_the_data_identity_is_the_songs_in_order_with_their_genres(data: Data) -> None:
    manifest = data.store3.manifest
    identity = data_identity(manifest)
    assert identity is not None
    assert identity == data.store3.identity == data.store3.info["data_identity"]
    assert data.copy3.identity == identity  # other paths and times, the same songs
    assert data.store4.identity != identity and data.less3.identity != identity
    tracks = manifest.tracks
    reordered = dataclasses.replace(manifest, tracks=[tracks[1], tracks[0], *tracks[2:]])
    assert data_identity(reordered) != identity
    genre = "rock" if tracks[0].genre != "rock" else "pop"
    relabelled = [dataclasses.replace(tracks[0], genre=genre), *tracks[1:]]
    assert data_identity(dataclasses.replace(manifest, tracks=relabelled)) != identity
    unknown = [dataclasses.replace(tracks[0], content=None), *tracks[1:]]
    assert data_identity(dataclasses.replace(manifest, tracks=unknown)) is None


def test_an_edited_songs_file_is_refused(svm_run: Path, tmp_path: Path) -> None:
    record = json.loads((svm_run / "config.json").read_text())["songs"]
    run = tmp_path / "run"
    run.mkdir()
    assert read_songs(run, record).parts is None  # without songs.json: the digests only
    shutil.copyfile(svm_run / "songs.json", run / "songs.json")
    songs = read_songs(run, record)
    assert songs.parts is not None and len(songs.parts["test"]) == record["counts"]["test"]

    edited = json.loads((run / "songs.json").read_text())
    edited["parts"]["train"].append(edited["parts"]["test"].pop())  # a test song now trained
    (run / "songs.json").write_text(json.dumps(edited))
    with pytest.raises(IdentityError, match=r"songs\.json: does not match .*config\.json"):
        read_songs(run, record)
    (run / "songs.json").write_text(json.dumps({"parts": {"train": [1]}}))
    with pytest.raises(IdentityError, match=r"songs\.json: not a songs file"):
        read_songs(run, record)


# --- the items -----------------------------------------------------------------------


def test_item_1_resume_on_a_store_with_other_songs_is_refused(
    data: Data, cnn_run: Path, svm_run: Path, tmp_path: Path
) -> None:
    """``train --resume`` with ``--features`` of a dataset holding extra songs (its split
    rebuilt there) is refused, naming the store, its data fingerprint and the split, and the
    run is left as it was (the songs are checked before any checkpoint is read, so the run's
    one epoch may be finished). A store of a copy of the run's songs is accepted."""
    run = tmp_path / "cnn1"
    shutil.copytree(cnn_run, run)
    before = _listing(run)
    split = make_split(data.store4, CNN).name
    pattern = (
        rf"{re.escape(str(data.store4.path))} .*split {re.escape(split)} .*data fingerprint "
        rf"{data.store4.info['data_fingerprint']}"
    )
    with pytest.raises(IdentityError, match=pattern):
        train_run(data.store4.path, run, CNN, resume=True, **QUIET)
    assert _listing(run) == before
    # The same songs copied elsewhere (another fingerprint, the same identity) do resume.
    svm = tmp_path / "svm1"
    shutil.copytree(svm_run, svm)
    train_run(data.copy3.path, svm, SVM, resume=True, **QUIET)


def test_item_1_a_checkpoint_inside_an_epoch_resumed_on_a_smaller_store_is_refused(
    data: Data, cnn_run: Path, tmp_path: Path
) -> None:
    """A streamed run killed inside its first epoch (only its ``--checkpoint-steps``
    checkpoints written) resumed on a store of one song fewer: refused before any step."""
    run = tmp_path / "cnn1"
    shutil.copytree(cnn_run, run)
    for name in ("latest", "best"):  # as killed before the epoch's end was checkpointed
        shutil.rmtree(run / "checkpoints" / name)
    for name in ("summary.json", "history.json"):
        (run / name).unlink(missing_ok=True)
    assert any(p.name.isdigit() for p in (run / "checkpoints" / "partial").iterdir())
    before = _listing(run)
    with pytest.raises(IdentityError, match=rf"{re.escape(str(data.less3.path))} .*train "):
        train_run(data.less3.path, run, CNN, resume=True, **QUIET)
    assert _listing(run) == before


def test_item_2_crossval_continues_only_on_the_songs_it_started_on(
    data: Data, tmp_path: Path
) -> None:
    """An interrupted cross-validation (fold 1 never trained) continued with another
    dataset's store is refused, fold 0 kept as it was; continued on a copy of its own songs,
    it goes on."""
    out = tmp_path / "cv"
    config = TrainConfig(model="svm", time_flip=False, folds=2, val_per_genre=0)
    crossval(data.store3.path, out, config, **QUIET)
    shutil.rmtree(out / "fold-1")  # as killed before fold 1 started
    before = _listing(out)
    with pytest.raises(IdentityError, match=rf"{re.escape(str(out))}: .*other songs"):
        crossval(data.store4.path, out, config, **QUIET)
    assert _listing(out) == before
    report = crossval(data.copy3.path, out, config, **QUIET)
    assert (out / "fold-1" / "summary.json").is_file()
    assert report["songs"] == len(data.store3.manifest.tracks)


def test_item_3_a_member_on_a_copy_with_another_split_seed_is_refused(
    data: Data, svm_run: Path, tmp_path: Path
) -> None:
    """A member trained on a copy of the data (new modification times, so another data
    fingerprint) with another split seed trained on some of the ensemble's test songs: the
    ensemble is refused, naming how many; with the same split seed it is made."""
    other = tmp_path / "svm-copy-seed1"
    train_run(data.copy3.path, other, dataclasses.replace(SVM, split_seed=1), **QUIET)
    with pytest.raises(IdentityError, match=r"other test songs .*it trained on [1-9]\d* of them"):
        make_ensemble([svm_run, other], tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    same = tmp_path / "svm-copy-seed0"
    train_run(data.copy3.path, same, SVM, **QUIET)
    make_ensemble([svm_run, same], tmp_path / "made")
    assert (tmp_path / "made" / "config.json").is_file()


@pytest.fixture(scope="module")
def retrained_member(
    data: Data, svm_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """An ensemble of ``svm_run`` and an SVM (C = 3), that member then retrained in place with
    C = 10: the ensemble and the retrained member."""
    root = tmp_path_factory.mktemp("retrained")
    member = root / "svm-c3"
    train_run(
        data.store3.path,
        member,
        TrainConfig.from_flat({"model": "svm", "time_flip": False, "c": 3.0}),
        **QUIET,
    )
    ensemble = root / "ensemble"
    config = make_ensemble([svm_run, member], ensemble)
    check_members(ensemble, config)  # as made: its members are its own
    retrained = TrainConfig.from_flat({"model": "svm", "time_flip": False, "c": 10.0})
    train_run(data.store3.path, member, retrained, overwrite=True, **QUIET)
    return ensemble, member


def test_item_3_a_member_retrained_in_place_is_refused(retrained_member) -> None:
    ensemble, member = retrained_member
    config = json.loads((ensemble / "config.json").read_text())
    with pytest.raises(IdentityError, match=rf"member {re.escape(str(member))} changed"):
        check_members(ensemble, config)


def test_item_3_a_member_retrained_in_place_is_refused_when_loaded(retrained_member) -> None:
    ensemble, member = retrained_member
    with pytest.raises(IdentityError, match=re.escape(str(member))):
        load_predictor(ensemble)


def test_item_4_windows_refuse_test_files_overwritten_since(data: Data, tmp_path: Path) -> None:
    """The test files overwritten with training files of the same genre and size: scoring
    windows decoded from them now would score training songs, so ``--window-hop`` refuses."""
    audio = _copy_data(data.syn3, tmp_path / "syn")
    store = _prepare(audio, tmp_path / "features")
    run = tmp_path / "svm"
    train_run(store.path, run, SVM, **QUIET)
    split = json.loads((run / "config.json").read_text())["split"]
    tracks = store.manifest.tracks
    for test in split["test"]:
        source = next(tracks[i] for i in split["train"] if tracks[i].genre == tracks[test].genre)
        assert Path(source.path).stat().st_size == Path(tracks[test].path).stat().st_size
        shutil.copyfile(source.path, tracks[test].path)
    overwritten = "|".join(re.escape(tracks[i].path) for i in split["test"])
    with pytest.raises(IdentityError, match=overwritten):
        evaluate_run(run, window_hop=0.5)


def test_item_5_a_lossless_copy_is_scored_on_the_runs_own_test_songs(
    data: Data, svm_run: Path, tmp_path: Path
) -> None:
    """FLAC of the WAVs: the same songs, so the run is scored on its own test songs (not on
    all of them as "another dataset", training songs included)."""
    flac = tmp_path / "flac"
    for wav in sorted(data.syn3.rglob("*.wav")):
        target = flac / wav.relative_to(data.syn3).with_suffix(".flac")
        target.parent.mkdir(parents=True, exist_ok=True)
        samples, rate = sf.read(wav, dtype="int16")
        sf.write(target, samples, rate, subtype="PCM_16", format="FLAC")
    store = _prepare(flac, tmp_path / "features")
    own = json.loads((svm_run / "report.json").read_text())
    report = evaluate_run(svm_run, features=store.path)
    assert "another dataset" not in report["evaluated_on"]
    assert report["songs"] == own["songs"] == len(GENRES)  # one test song a genre
    assert report["segments"] == own["segments"]
    for key in ("song_accuracy", "segment_accuracy"):
        assert report[key] == pytest.approx(own[key], abs=1e-9)
    assert store.identity == data.store3.identity
    assert store.info["data_fingerprint"] != data.store3.info["data_fingerprint"]


def test_item_6_a_shard_list_swapped_or_repeated_is_refused(data: Data, tmp_path: Path) -> None:
    """``store.json``'s shard entries swapped, or one listed twice (rows still summing to the
    segments), are refused by ``check --store`` and when the store is opened."""
    shards = data.store3.info["shards"]
    full = [i for i, s in enumerate(shards) if s["rows"] == SHARD_SEGMENTS]
    i, j = full[0], full[1]
    stores = {}
    for name in ("swapped", "repeated", "intact"):
        stores[name] = tmp_path / name
        shutil.copytree(data.store3.path, stores[name])
    for name, edit in (("swapped", (shards[j], shards[i])), ("repeated", (shards[i], shards[i]))):
        info = json.loads((stores[name] / "store.json").read_text())
        info["shards"][i], info["shards"][j] = edit
        (stores[name] / "store.json").write_text(json.dumps(info))
        with pytest.raises(StoreError, match=re.escape(edit[0]["file"])):
            verify_store(stores[name])
        with pytest.raises(StoreError, match="shard"):
            FeatureStore.open(stores[name])
        assert main(["check", "--store", str(stores[name])]) == 2
    assert main(["check", "--store", str(stores["intact"])]) == 0


def test_item_9_an_altered_embedding_table_is_noticed_and_computed_again(
    data: Data, tmp_path: Path
) -> None:
    """A row of a store's cached embeddings overwritten: ``check --store`` refuses the store
    and the table is computed again, not served; an intact copy of the cache is served."""
    key = "musicnn-test-embeddings"
    calls = []

    def compute(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return np.stack([rows.mean(axis=1), rows.std(axis=1)], axis=1)

    def open_copy(name: str) -> FeatureStore:
        shutil.copytree(data.store3.path, tmp_path / name)  # another path: not in this
        return FeatureStore.open(tmp_path / name)  # process's memory, read from its disk

    original = store_table(open_copy("written"), key, compute)
    rows = np.asarray(data.store3.features[0 : len(data.store3)], np.float32)
    expected = compute(rows.reshape(len(rows), -1))
    np.testing.assert_allclose(original, expected, rtol=1e-6)
    shutil.copytree(tmp_path / "written", tmp_path / "intact")
    shutil.copytree(tmp_path / "written", tmp_path / "altered")
    calls.clear()
    intact = FeatureStore.open(tmp_path / "intact")
    verify_store(intact.path)
    np.testing.assert_allclose(store_table(intact, key, compute), expected, rtol=1e-6)
    assert not calls  # served from the cache

    altered = FeatureStore.open(tmp_path / "altered")
    table_path, _ = cache_files(altered, key)
    table = np.load(table_path, mmap_mode="r+")
    table[5] = [1e3, -1e3]
    table.flush()
    del table
    with pytest.raises(StoreError, match=re.escape(table_path.name)):
        verify_store(altered.path)
    assert main(["check", "--store", str(altered.path)]) == 2
    np.testing.assert_allclose(store_table(altered, key, compute), expected, rtol=1e-6)
    assert calls  # computed again, not served
    verify_store(altered.path)  # and written again as computed


def test_item_9_altered_converted_musicnn_weights_are_converted_again_or_refused(
    wheel: Path, tmp_path: Path
) -> None:
    """One array of the cached, converted musicnn weights scaled: converted again from the
    wheel when there is one, refused naming the file when there is none; never served."""
    from genre_jax.models import musicnn

    checkpoint = "MSD_musicnn"
    with converted_weights(wheel, tmp_path / "cache", [checkpoint]):
        path = musicnn.cached_weights_path(checkpoint)
        published = musicnn.load_weights(log=lambda _: None, checkpoint=checkpoint)
        name = sorted(published)[0]

        def scale_one() -> None:
            with np.load(path) as stored:
                weights = {k: stored[k] for k in stored.files}
            weights[name] = weights[name] * 2
            np.savez(path, **weights)

        scale_one()
        again = musicnn.load_weights(log=lambda _: None, checkpoint=checkpoint)
        np.testing.assert_allclose(again[name], published[name], rtol=1e-7)
        with np.load(path) as stored:  # the cache holds the published weights again
            np.testing.assert_allclose(stored[name], published[name], rtol=1e-7)

        scale_one()
        with pytest.MonkeyPatch.context() as patch:  # no wheel to convert from
            patch.delenv(musicnn.WHEEL_ENV)
            with pytest.raises(musicnn.WeightsError, match=re.escape(str(path))):
                musicnn.load_weights(fetch=False, log=lambda _: None, checkpoint=checkpoint)


@pytest.mark.parametrize("split", ["seed-leaky", "official", "fault-filtered"])
def test_item_10_crossval_refuses_a_split_it_does_not_run(
    data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str
) -> None:
    """Cross-validation runs song-level k-fold: another split is refused, naming it, before
    anything is written (it ran k-fold while its report listed the split given)."""
    out = tmp_path / "cv"
    config = TrainConfig(model="svm", time_flip=False, folds=2, val_per_genre=0, split=split)
    with pytest.raises(ConfigError, match=rf"split={split!r}"):
        crossval(data.store3.path, out, config, **QUIET)
    argv = ["crossval", "--features", str(data.store3.path), "--out", str(out)]
    argv += ["--model", "svm", "--folds", "2", "--val-per-genre", "0", "--split", split]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"split={split!r}" in error
    assert not out.exists()
