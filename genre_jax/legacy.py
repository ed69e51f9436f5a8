"""Readers of what earlier versions of genre-jax wrote, in one place.

The main paths read one format, today's. Where they may meet a file of an earlier version they
call one function here, which upgrades the old record to today's shape as it is read or, where
that cannot be done, applies what the old format allows and says why. Dropping a format is
deleting its functions and their calls. This module imports no model or training code when it
is imported (the package's modules it needs are imported inside its functions). It stays one
module past ~400 lines on purpose: every old format in one place to read, and to retire.

Each old format, the commit that replaced it, and how it is read now:

**Feature stores.**

* *Format 1* (``store.json`` ``"version": 1``; feature shards, format 2, since 43e5fd0,
  2026-12-02): every feature in one ``features.npy`` beside the small arrays, its digest in
  ``sha256`` with theirs. It opens with the same checks, ``features.npy`` memory-mapped
  (:func:`whole_features`, :func:`open_whole_arrays`); its embedding cache is bound to that
  digest (:func:`whole_features_key`).
* *No digests* (no ``sha256`` in ``store.json``; recorded since ce5bd7e, 2026-12-01): it opens
  with every other check, its ``verified`` empty (``check --store`` says no digests were
  recorded); a format-1 store's embedding cache is then bound to the size and modification time
  of ``features.npy`` (:func:`whole_features_key`).
* *No song identities* (tracks of ``manifest.json`` without ``content``, no ``data_identity``
  in ``store.json``; recorded since 972a91c, 2026-12-07): it opens (its ``identity`` is None,
  and ``store.json``'s identity is not compared with the manifest's), and the runs trained on
  it still evaluate on it; ``prepare`` of the same data builds it again to record them
  (:func:`rebuild_unidentified`); whatever records or compares songs (training,
  cross-validation, evaluating on it a run that recorded its songs) refuses it
  (:func:`refuse_unidentified_store`); a mixed ensemble's members key its songs by genre and
  track id (:func:`song_key_by_id`).
* *Manifests without later fields*: ``layout``, ``metadata``, ``subset`` and ``excluded`` (FMA
  and CSV datasets, c6c8255, 2026-12-02) are upgraded to a folder layout with none of them
  (:func:`upgrade_manifest`); a track's ``warning`` and ``size`` (dcfcf39, 2026-12-01),
  ``artist`` and ``split`` (c6c8255) and ``content`` (972a91c) are None, the defaults of
  :class:`genre_jax.manifest.Track`.
* *Embedding tables without a digest* (``embeddings/<key>.json`` without ``sha256``; recorded
  since 78227ef, 2026-12-07): never served (no digest matches), computed again when next
  needed, and passed over by ``check --store`` (:func:`genre_jax.embedding_cache.verify_tables`).

**Runs, ensembles and their files.**

* *No folder marker* (no ``.genre-jax.json``; written since dc3217d, 2026-12-01): a run, an
  ensemble or a cross-validation folder is recognised by its config (:func:`unmarked_config`),
  for ``--overwrite`` (which replaces it only when it holds nothing else) and for ``export``
  (which writes nothing inside it).
* *Checkpoints before the binding* (metadata with ``state_sha256`` alone; bound since 4faf8ac,
  2026-12-01): restored with their arrays checked against that digest, the metadata's genres,
  model and settings equal to those of ``config.json`` (:func:`check_unbound_meta`).
* *Latest checkpoints before metrics.jsonl* (no ``metrics_log``; 12d2bcf, 2026-12-01): the
  epochs' history is their log (:func:`upgrade_latest_meta`).
* *Pipelines without a sidecar* (``svm.skops`` without ``svm.json``; 4faf8ac): loaded with the
  trusted-types check alone (:func:`pipeline_without_sidecar`).
* *No resume record* (no ``resumed`` in ``config.json``; 24ad1fc, 2026-12-07): the checkpoints
  bind all of ``config.json``, so the run resumes only unchanged
  (:func:`require_changes_allowed`).
* *No song identities* (no ``songs`` in ``config.json``; c68b7c1, 2026-12-07,
  :func:`without_songs`): such a run resumes only on its own store, unchanged (the same data
  fingerprint) and split the same way (:func:`require_same_store`); it is evaluated on its
  split where the store has its data fingerprint, else on its songs found by genre, track id
  and file size through its own store (:func:`select_segments_by_track`, :func:`match_tracks`);
  such ensemble members must hold out the same test tracks of the same data
  (:func:`require_same_test_tracks`).
* *Ensembles without member digests* (no ``member_digests``; c68b7c1): their members are not
  compared when the ensemble loads (:func:`genre_jax.ensemble.check_members`).

**Elsewhere.** Exports of format ``genre-jax-export/1``, whose program does not carry its
sidecar's digest (format 2 since b85583d, 2026-12-07), are read by :mod:`genre_jax.exported`
itself, which must run with nothing of genre_jax beside it.

**Settings.** Train settings written flat, before models had sections (``"model": "svm",
"svm_c": 3.0``), are read by :meth:`genre_jax.config.TrainConfig.from_flat`, the oldest names
through :data:`genre_jax.config.LEGACY_MODEL_SETTINGS` (kept there: nearly every module imports
the config, which must not import this module and, through it, the rest of the package).

**Cross-validation folders.**

* *No data identity* (no ``data_identity`` in ``experiment.json``; c68b7c1, 2026-12-07): its
  folds continue only on the store they were made on (:func:`require_same_crossval_store`).
* *Reports before they said what ran* (no ``data_dir``, ``experiment_file`` or ``given``) and
  *folds before artist grouping* (no ``grouped_by``: grouped by song) are upgraded when the
  report is made (:func:`upgrade_crossval_experiment`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

if TYPE_CHECKING:  # for annotations only (most of these modules import this one)
    from genre_jax.manifest import Manifest, Track
    from genre_jax.matching import Selection
    from genre_jax.splits import Split
    from genre_jax.store import FeatureStore

WHOLE_FEATURES_VERSION = 1
"""``store.json``'s ``version`` of a format-1 store: every feature in one ``features.npy``."""
_CONFIG_FILES = {"run": "config.json", "ensemble": "config.json", "crossval": "experiment.json"}


# Feature stores.


def whole_features(info: Mapping[str, Any]) -> bool:
    """Whether ``store.json`` (its version checked) is a format-1 store's: every feature in one
    ``features.npy``, no shards."""
    return info["version"] == WHOLE_FEATURES_VERSION


def open_whole_arrays(path: Path) -> dict[str, np.ndarray]:
    """A format-1 store's four arrays, ``features.npy`` first, each memory-mapped read-only
    (:func:`genre_jax.store_checks.load_array`)."""
    from genre_jax.extraction import ARRAYS
    from genre_jax.store_checks import load_array

    return {name: load_array(path, name) for name in ARRAYS}


def whole_features_key(path: Path, info: Mapping[str, Any]) -> str:
    """What the embedding cache of the format-1 store at ``path`` is bound to: the recorded
    digest of its ``features.npy``, or its size and modification time in a store written before
    digests were recorded."""
    recorded = info.get("sha256", {}).get("features.npy")
    if recorded is None:
        stat = (path / "features.npy").stat()
        recorded = f"{stat.st_size}-{stat.st_mtime_ns}"
    return recorded


def upgrade_manifest(data: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest.json``'s object with the fields added since (FMA and CSV datasets) that it
    lacks: the folder layout, no table, no subset, no track left out. A track's later fields
    are None by :class:`~genre_jax.manifest.Track`'s defaults."""
    return {"layout": "folders", "metadata": None, "subset": None, "excluded": [], **data}


def rebuild_unidentified(store: FeatureStore, log: Callable[[str], None]) -> bool:
    """Whether ``prepare`` builds the store of the same data again: one written before songs
    were identified by their audio, whose songs nothing could then be sure of (said through
    ``log``)."""
    if store.identity is not None:
        return False
    log(
        f"Feature store {store.path} was written before songs were identified by their audio; "
        "building it again to record them"
    )
    return True


def refuse_unidentified_store(store: FeatureStore, what: str) -> NoReturn:
    """Refuse a store written before songs were identified by their audio, which ``what``
    needs to be sure of its songs.

    Raises:
        IdentityError: always.
    """
    from genre_jax.identity import IdentityError

    raise IdentityError(
        f"{store.path}: written before songs were identified by their audio, so {what} "
        "cannot be sure of its songs; prepare the store again (prepare --overwrite)"
    )


def song_key_by_id(track: Track) -> tuple[str, str]:
    """A song of a store written before songs were identified by their audio: its genre and
    track id (what a copy of the same data keeps)."""
    return track.genre, track.id


# Run folders and what they hold.


def unmarked_config(path: Path, kind: str) -> dict[str, Any] | None:
    """The config of a ``kind`` folder of genre-jax's written before folders had a marker, or
    None when ``path`` holds none: a run's names genre-jax's version, an ensemble's and a
    cross-validation's list members and the feature hash."""
    from genre_jax.fileio import JSONFileError, read_json_object

    name = _CONFIG_FILES.get(kind)
    if name is None:
        return None
    try:
        config = read_json_object(path / name)
    except JSONFileError:
        return None
    if kind == "run":
        versions = config.get("versions")
        return config if isinstance(versions, dict) and "genre-jax" in versions else None
    return config if {"members", "feature_hash"} <= set(config) else None


def check_unbound_meta(
    meta: Mapping[str, Any], config: Mapping[str, Any] | None, where: Path
) -> None:
    """A checkpoint written before the binding (its metadata records ``state_sha256`` alone,
    checked with its arrays): its metadata's genres, model and settings must equal those of the
    run's ``config.json`` (when there is one), the only binding it has.

    Raises:
        CheckpointError: a copied field differs (each named, in both).
    """
    from genre_jax.binding import CheckpointError, describe_differences, metadata_mismatches

    differences = metadata_mismatches(meta, config) if config is not None else []
    if differences:
        raise CheckpointError(
            f"{where}: the metadata does not match the run's config.json "
            f"({describe_differences(differences, 'the metadata', 'config.json')})"
        )


def upgrade_latest_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A latest checkpoint's metadata with its ``metrics_log``: one written before
    ``metrics.jsonl`` existed holds the epochs' history alone, which is its log."""
    return {**meta, "metrics_log": meta.get("metrics_log", [dict(r) for r in meta["history"]])}


def pipeline_without_sidecar(path: Path) -> bool:
    """Whether the pipeline file ``path`` (``svm.skops``) was written before pipelines had a
    sidecar binding them (``svm.json``): it loads with the trusted-types check alone."""
    return not path.with_suffix(".json").is_file()


def require_changes_allowed(
    config: Mapping[str, Any], changes: Mapping[str, Any], what: str
) -> None:
    """A resume may change the settings ``changes`` of the run whose ``config.json`` is
    ``config`` only if it records resumes (``resumed``): the checkpoints of a run written before
    then bind all of ``config.json``, so a change would make them unloadable.

    Raises:
        ConfigError: the run has no resume record (each change named, as it was).
    """
    from genre_jax.resume import RESUMED_KEY
    from genre_jax.settings import ConfigError

    if isinstance(config.get(RESUMED_KEY), list):
        return
    raise ConfigError(
        f"{what} was written before a resume could change its settings (its checkpoints "
        f"bind all of config.json), so it resumes only as it was: "
        f"{', '.join(f'{k}={x!r}' for k, (x, _) in changes.items())}"
    )


# Cross-validation folders.


def require_same_crossval_store(
    out_dir: Path, saved: Mapping[str, Any], experiment: Mapping[str, Any]
) -> None:
    """A cross-validation folder without a data identity continues only on the store its
    folds were made on.

    Raises:
        IdentityError: ``experiment`` names another store.
    """
    from genre_jax.identity import IdentityError

    if saved.get("store") != experiment["store"]:
        raise IdentityError(
            f"cross-validation {out_dir}: was written before songs were identified by "
            f"their audio on store {saved.get('store')}, not {experiment['store']}; its "
            "folds continue only on that store (--overwrite starts afresh)"
        )


def upgrade_crossval_experiment(experiment: Mapping[str, Any]) -> dict[str, Any]:
    """``experiment.json`` with the fields of later versions: no data folder, experiment file
    or settings given recorded (reports did not say what ran), folds grouped by song (before
    artist-grouped folds)."""
    defaults = {"data_dir": None, "experiment_file": None, "given": {}, "grouped_by": "song"}
    return {**defaults, **experiment}


# Runs and ensembles written before songs were identified by content.


def without_songs(config: Mapping[str, Any]) -> bool:
    """Whether a run's or an ensemble's ``config.json`` was written before songs were
    identified by content (it records no ``songs``)."""
    return "songs" not in config


def require_same_store(
    what: str, saved: Mapping[str, Any], store: FeatureStore, split: Split, hint: str
) -> None:
    """A run without song identities (:func:`without_songs`) resumes only on the store it was
    trained on, unchanged (the same data fingerprint), split the same way.

    Raises:
        IdentityError: another store, or another split (``hint`` says what to do).
    """
    from genre_jax.identity import IdentityError

    same = (
        saved.get("data_fingerprint") == store.info.get("data_fingerprint")
        and saved.get("split") == split.to_json()
    )
    if not same:
        raise IdentityError(
            f"{what} was written before songs were identified by their audio, and store "
            f"{store.path} (data fingerprint {store.info.get('data_fingerprint')}, split "
            f"{split.name}) is not the store it was trained on (data fingerprint "
            f"{saved.get('data_fingerprint')}) split the same way; {hint}"
        )


def require_same_test_tracks(members: Sequence[Path], configs: Sequence[Mapping[str, Any]]) -> None:
    """Ensemble members of which one has no song identities (:func:`without_songs`) hold out the
    same test songs as the first member if they were trained on the same data (the same data
    fingerprint) and their splits' test tracks are the same; otherwise nothing tells their test
    songs apart.

    Raises:
        IdentityError: a member was trained on other data, or holds out other test tracks.
    """
    from genre_jax.identity import IdentityError
    from genre_jax.splits import Split

    first, first_config = members[0], configs[0]
    for member, config in zip(members[1:], configs[1:], strict=True):
        if config.get("data_fingerprint") != first_config.get("data_fingerprint"):
            raise IdentityError(
                f"ensemble member {member}: it or {first} was written before songs were "
                "identified by their audio, and they were trained on different data (data "
                "fingerprints differ), so their test songs cannot be compared; retrain them"
            )
        tests = [Split.from_json(c["split"]).test for c in (first_config, config)]
        if not np.array_equal(np.sort(tests[0]), np.sort(tests[1])):
            raise IdentityError(
                f"ensemble member {member}: holds out other test songs than {first}"
            )


def match_tracks(wanted: Sequence[Track], available: Sequence[Track]) -> np.ndarray:
    """Index in ``available`` of the same song as each track of ``wanted`` (-1 where none).

    A song is identified by its genre and track id, and by its file size where both tracks
    record one (manifests written before sizes were recorded have none): a copied or moved
    dataset keeps all three, while its modification times, and so its data fingerprint, change.
    """
    where: dict[tuple[str, str], int] = {}
    for i, track in enumerate(available):
        where.setdefault((track.genre, track.id), i)
    found = np.full(len(wanted), -1, dtype=np.int64)
    for k, track in enumerate(wanted):
        i = where.get((track.genre, track.id))
        if i is None:
            continue
        sizes = track.size, available[i].size
        if None in sizes or sizes[0] == sizes[1]:
            found[k] = i
    return found


def select_segments_by_track(
    store: FeatureStore,
    run_config: Mapping[str, Any],
    split: Split,
    part: str,
    run_dir: str | Path,
) -> Selection:
    """:func:`genre_jax.matching.select_segments` for a run without song identities
    (:func:`without_songs`), matched as it was then: on a store with the run's data fingerprint,
    the split's ``part``; on another, the run's ``part`` songs found by genre, track id and file
    size (:func:`match_tracks`) through the run's own store, or all of another dataset.

    Raises:
        ConfigError: the store holds songs of the run but misses some ``part`` songs; the run's
            own store, needed to know its songs, is gone or was rebuilt from other data.
    """
    from genre_jax.matching import Selection
    from genre_jax.settings import ConfigError

    fingerprint = run_config.get("data_fingerprint")
    same_data = fingerprint is not None and store.info.get("data_fingerprint") == fingerprint
    run = None if same_data else _run_data(store, run_config, run_dir, split.level == "segment")
    if run is None:  # the run's data, or a run recording no fingerprint on its own store
        index = split.segment_indices(part, store.tracks)
        return Selection(index, f"{split.name} ({part})", split.leaky)
    mapping = match_tracks(run.manifest.tracks, store.manifest.tracks)
    songs = {p: run.part_tracks(split, p) for p in ("train", "val", "test")}
    if not np.any(mapping[np.concatenate(list(songs.values()))] >= 0):
        return Selection(
            np.arange(len(store)), f"all of {store.manifest.root} (another dataset)", False
        )
    if run.tracks is None or run.positions is None:  # a song-level split
        found = mapping[songs[part]]
        index = np.flatnonzero(np.isin(store.tracks, found[found >= 0]))
        present = np.isin(found, store.tracks)
    else:  # a segment-level split: each segment by its song and position in the song
        segment_of = {
            (int(t), int(q)): s
            for s, (t, q) in enumerate(zip(store.tracks, store.positions, strict=True))
        }
        wanted = split.segment_indices(part, run.tracks)
        keys = zip(mapping[run.tracks[wanted]], run.positions[wanted], strict=True)
        located = np.array([segment_of.get((int(t), int(q)), -1) for t, q in keys], np.int64)
        present = ~np.isin(songs[part], run.tracks[wanted][located < 0])
        index = np.sort(located[located >= 0])
    if not np.all(present):
        missing = songs[part][~present]
        example = run.manifest.tracks[int(missing[0])]
        raise ConfigError(
            f"{store.path}: holds songs of run {run_dir} (its data, copied or moved), but "
            f"{len(missing)} of the {len(songs[part])} {part} songs are missing from it (e.g. "
            f"{example.genre}/{example.id}, or its file changed size); a figure on the rest would "
            "not be the run's: use a store of the complete data"
        )
    return Selection(
        index, f"{split.name} ({part}), its songs found in {store.manifest.root}", split.leaky
    )


@dataclass
class _RunData:
    """What the run's own store says about its songs: the manifest its split indexes and, for a
    segment-level split, the track and position of each of its segments."""

    manifest: Manifest
    tracks: np.ndarray | None = None
    positions: np.ndarray | None = None

    def part_tracks(self, split: Split, part: str) -> np.ndarray:
        """Track indices (into :attr:`manifest`) of the songs of the split's ``part``."""
        return split.part_tracks(part, self.tracks)


def _run_data(
    store: FeatureStore, run_config: Mapping[str, Any], run_dir: str | Path, segments: bool
) -> _RunData | None:
    """The run's songs from its own store (its manifest, and its ``tracks``/``positions``
    arrays when ``segments``); None when ``store`` is that store and the run recorded no
    fingerprint to tell whether it was rebuilt since."""
    from genre_jax.settings import ConfigError
    from genre_jax.store import FeatureStore
    from genre_jax.store_checks import StoreError

    path = run_config.get("store")
    fingerprint = run_config.get("data_fingerprint")
    need = (
        f"it is needed to match the songs of {store.path} (data fingerprint "
        f"{store.info.get('data_fingerprint')}, the run's {fingerprint}) to the run's split"
    )
    if path is None:
        raise ConfigError(f"{run_dir}: config.json names no feature store; {need}")
    path = Path(path)
    if fingerprint is None and path.resolve() == store.path.resolve():
        return None
    try:
        own = FeatureStore.open(path)
    except StoreError as error:
        message = f"{run_dir}: the run's feature store {path} is gone or unreadable ({error})"
        raise ConfigError(f"{message}; {need}") from error
    built_from = own.info.get("data_fingerprint")
    run = _RunData(own.manifest, own.tracks, own.positions) if segments else _RunData(own.manifest)
    if fingerprint is not None and built_from != fingerprint:
        raise ConfigError(
            f"{run_dir}: the run's feature store {path} was rebuilt from other data since the "
            f"run was trained (data fingerprint {built_from}, the run's {fingerprint}), so its "
            f"split no longer names the run's songs; {need}"
        )
    return run
