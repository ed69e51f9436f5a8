"""What a song and a feature store are, and the one check that songs are the ones a run was
built on.

**A song** is its decoded audio, not its path, size or modification time. Its identity,
:attr:`genre_jax.datasets.Track.content`, is :func:`audio_digest`: the SHA-256 (first 32 hex
digits) of the samples the decoder gives at the file's own sample rate and channel count, each
rounded to 16 bits, after a header naming that rate and count. A copy, a move, a re-download
and a lossless transcode (FLAC of a WAV, WAV of a FLAC) decode to the same samples and keep it;
a lossy re-encode, a resample, a trim or an edit does not. Features are never hashed for
identity: XLA sums floats in another order on another CPU, so their bytes change with the
machine while the song does not. ``prepare`` records each usable track's identity in the
store's manifest as it decodes it (:func:`genre_jax.audio.load_song`).

**A store's data** is identified by :func:`data_identity`: the SHA-256 over its tracks in
manifest order, each as its identity, genre and whether it is usable. Two stores of the same
songs found in the same order (the same data, copied, moved or transcoded) have the same data
identity, whatever their feature settings; another order is another identity, because splits
are made over that order.

**A run's songs** (:class:`Songs`, :func:`songs_of`) are the entries of each part of its split:
``"<identity> <genre>"`` for a song-level split, ``"<identity> <genre> <position>"`` for the
seed's segment-level one. ``config.json`` records the data identity and a digest of each part
(:meth:`Songs.record`); ``songs.json`` beside it holds the entries themselves
(:func:`write_songs`, :func:`read_songs`), so that a run's songs are known without its store.

**The check**: :func:`require_songs` compares what a run, a fold or an ensemble recorded with
what a store and a split give now; resume, cross-validation continuing, ensembles (when made and
when loaded), evaluation on another store and windows decoded again all call it or
:func:`require_song_audio`, and all raise :class:`IdentityError`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genre_jax import legacy
from genre_jax.settings import ConfigError

if TYPE_CHECKING:  # only read here; the store and splits import this module's callers
    from genre_jax.manifest import Manifest
    from genre_jax.splits import Split
    from genre_jax.store import FeatureStore

__all__ = [
    "PARTS",
    "SONGS_FILE",
    "AudioDigest",
    "IdentityError",
    "Songs",
    "audio_digest",
    "data_identity",
    "read_songs",
    "require_identities",
    "require_song_audio",
    "require_songs",
    "songs_of",
    "write_songs",
]

PARTS = ("train", "val", "test")
SONGS_FILE = "songs.json"
DIGEST_CHARS = 32  # hex digits of a song's identity kept (128 bits)
_FORMAT = "genre-jax audio 1"  # changes only if what is hashed changes


class IdentityError(ConfigError):
    """The songs (or the data, or a cached file) are not the ones a run, a fold, an ensemble
    or an evaluation was built on, or cannot be told; the message names both sides.

    A song is identified by the digest of its decoded audio (:func:`audio_digest`: the samples
    at the file's own rate and channels, rounded to 16 bits), never by its path, size, time or
    features; a store's data by its songs in order with their genres (:func:`data_identity`);
    a run by the songs of each part of its split (:class:`Songs`)."""


class AudioDigest:
    """A song's identity computed block by block: :meth:`update` with consecutive blocks of
    ``(frames, channels)`` samples gives the same :meth:`hexdigest` as :func:`audio_digest` of
    them joined."""

    def __init__(self, rate: int, channels: int) -> None:
        self._hash = hashlib.sha256(f"{_FORMAT}|{int(rate)} Hz|{int(channels)} ch\n".encode())
        self.channels = int(channels)

    def update(self, samples: np.ndarray) -> None:
        """Add ``(frames, channels)`` float samples (full scale 1.0), rounded to 16 bits."""
        samples = np.asarray(samples, np.float32)
        if samples.ndim != 2 or samples.shape[1] != self.channels:
            raise ValueError(f"samples of shape {samples.shape}, not (frames, {self.channels})")
        scaled = np.rint(np.clip(samples, -1.0, 1.0) * np.float32(32768.0))
        self._hash.update(np.clip(scaled, -32768, 32767).astype("<i2").tobytes())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:DIGEST_CHARS]


def audio_digest(samples: np.ndarray, rate: int) -> str:
    """A song's identity: 32 hex digits of the SHA-256 of its ``(frames, channels)`` samples at
    its own ``rate``, rounded to 16 bits (see the module's docstring)."""
    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    digest = AudioDigest(rate, samples.shape[1])
    digest.update(samples)
    return digest.hexdigest()


def data_identity(manifest: Manifest) -> str | None:
    """The identity of a store's data: SHA-256 (32 hex) over its tracks in manifest order, each
    as ``"<identity> <genre> <usable>"``; None when a usable track has no identity (an older
    store: :mod:`genre_jax.legacy`)."""
    digest = hashlib.sha256()
    for track in manifest.tracks:
        usable = track.status == "ok"
        if usable and not track.content:
            return None
        digest.update(f"{track.content or '-'}\t{track.genre}\t{int(usable)}\n".encode())
    return digest.hexdigest()[:DIGEST_CHARS]


def require_identities(store: FeatureStore, what: str) -> str:
    """The store's data identity; :class:`IdentityError` for a store without one
    (:func:`genre_jax.legacy.refuse_unidentified_store`; ``what`` says what needed it)."""
    identity = store.identity
    if identity is None:
        legacy.refuse_unidentified_store(store, what)
    return identity


def _entries_digest(entries: Sequence[str]) -> str:
    return hashlib.sha256("".join(f"{e}\n" for e in entries).encode()).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True)
class Songs:
    """The songs of a split's parts, by content.

    Attributes:
        data: the data identity of the store the split was made on (:func:`data_identity`).
        split: the split's name.
        level: ``"song"`` (entries ``"<identity> <genre>"``) or ``"segment"`` (entries
            ``"<identity> <genre> <position>"``, the seed's leaky split).
        parts: each part's entries, sorted; None when only the digests are known
            (:meth:`from_record` without ``songs.json``).
        digests: each part's digest (SHA-256 of its entries, a line each).
        counts: each part's number of entries.
    """

    data: str
    split: str
    level: str
    digests: Mapping[str, str]
    counts: Mapping[str, int]
    parts: Mapping[str, tuple[str, ...]] | None = None

    @classmethod
    def from_parts(
        cls, data: str, split: str, level: str, parts: Mapping[str, Iterable[str]]
    ) -> Songs:
        sorted_parts = {p: tuple(sorted(parts[p])) for p in PARTS}
        return cls(
            data=data,
            split=split,
            level=level,
            digests={p: _entries_digest(e) for p, e in sorted_parts.items()},
            counts={p: len(e) for p, e in sorted_parts.items()},
            parts=sorted_parts,
        )

    def record(self) -> dict[str, Any]:
        """What ``config.json`` keeps (``"songs"``): data identity, split, level, and each
        part's digest and count."""
        return {
            "data": self.data,
            "split": self.split,
            "level": self.level,
            "digests": dict(self.digests),
            "counts": dict(self.counts),
        }

    @classmethod
    def from_record(cls, record: Any, where: str) -> Songs:
        """The :meth:`record` read back (parts unknown); :class:`IdentityError` naming
        ``where`` for a record that is not one."""
        ok = (
            isinstance(record, dict)
            and all(isinstance(record.get(k), str) for k in ("data", "split", "level"))
            and all(isinstance(record.get(k), dict) for k in ("digests", "counts"))
            and all(isinstance(record["digests"].get(p), str) for p in PARTS)
            and all(type(record["counts"].get(p)) is int for p in PARTS)
        )
        if not ok:
            raise IdentityError(f"{where}: its 'songs' record is damaged (not written by us)")
        return cls(
            data=record["data"],
            split=record["split"],
            level=record["level"],
            digests={p: record["digests"][p] for p in PARTS},
            counts={p: record["counts"][p] for p in PARTS},
        )

    def songs(self, part: str) -> set[str]:
        """``"<identity> <genre>"`` of each song of ``part`` (entries known)."""
        if self.parts is None:
            raise ValueError("the entries of this run's songs are not known")
        return {" ".join(e.split(" ")[:2]) for e in self.parts[part]}

    def differences(self, now: Songs) -> list[str]:
        """How ``now`` differs from these songs, part by part, for a message (empty when they
        are the same): counts then and now, entries added and gone when both sides' entries
        are known, and how many of the test songs now were trained on."""
        found = []
        for part in PARTS:
            if self.digests[part] == now.digests[part]:
                continue
            text = f"{part} {self.counts[part]} then, {now.counts[part]} now"
            if self.parts is not None and now.parts is not None:
                then_set, now_set = set(self.parts[part]), set(now.parts[part])
                text += f" ({len(now_set - then_set)} added, {len(then_set - now_set)} gone)"
            found.append(text)
        if self.parts is not None and now.parts is not None:
            trained = self.songs("train") | self.songs("val")
            leaked = now.songs("test") & trained
            if leaked:
                found.append(f"{len(leaked)} of the test songs now were trained on")
        return found


def _entry(content: str, genre: str, position: int | None = None) -> str:
    return f"{content} {genre}" if position is None else f"{content} {genre} {position}"


def songs_of(store: FeatureStore, split: Split, what: str = "this run") -> Songs:
    """The songs of ``split``'s parts on ``store``, by content.

    Raises:
        IdentityError: the store records no song identities (:func:`require_identities`).
    """
    data = require_identities(store, what)
    tracks = store.manifest.tracks
    parts: dict[str, list[str]] = {}
    for part in PARTS:
        if split.level == "song":
            parts[part] = [_entry(tracks[i].content, tracks[i].genre) for i in getattr(split, part)]
        else:
            index = split.segment_indices(part, store.tracks)
            parts[part] = [
                _entry(tracks[int(t)].content, tracks[int(t)].genre, int(q))
                for t, q in zip(store.tracks[index], store.positions[index], strict=True)
            ]
    return Songs.from_parts(data, split.name, split.level, parts)


def require_songs(
    recorded: Songs, store: FeatureStore, split: Split, what: str, *, hint: str = ""
) -> Songs:
    """THE check: ``split`` on ``store`` gives exactly the songs ``recorded`` (what a run, a
    fold or an ensemble member was built on) in every part; returns them.

    Args:
        recorded: the songs recorded when the run was made (:func:`read_songs`, or
            :meth:`Songs.from_record` of its ``config.json``).
        store, split: what is given now.
        what: who asks, for the message (``"run runs/cnn1"``).
        hint: what the user can do, appended to the message.

    Raises:
        IdentityError: the songs differ (the store, its data identity and fingerprint, the
            split and how each part differs are named), or the store has no identities.
    """
    now = songs_of(store, split, what)
    if dict(now.digests) == dict(recorded.digests) and now.level == recorded.level:
        return now
    differences = recorded.differences(now)
    raise IdentityError(
        f"{what} was built on other songs than store {store.path} gives with split "
        f"{split.name} (the store's data identity {now.data[:12]}, data fingerprint "
        f"{store.info.get('data_fingerprint')}; the run's data identity {recorded.data[:12]}): "
        f"{'; '.join(differences) or 'another split level'}" + (f"; {hint}" if hint else "")
    )


def require_song_audio(path: str | Path, content: str | None, now: str, what: str) -> None:
    """The audio at ``path``, decoded again (identity ``now``), is the song ``content`` the
    store recorded for it; :class:`IdentityError` otherwise (``what`` says who asks)."""
    if content is not None and content != now:
        raise IdentityError(
            f"{path}: is not the song the store was built from (its audio identity is "
            f"{now[:12]}, the store's {content[:12]}: replaced or edited since), so {what} "
            "would score other audio; restore the file, or prepare the store again"
        )


def write_songs(run_dir: Path, songs: Songs) -> dict[str, Any]:
    """Write ``songs.json`` (every entry) into ``run_dir`` atomically; return the record for
    ``config.json``."""
    from genre_jax.fileio import atomic_write_json

    assert songs.parts is not None
    atomic_write_json(
        run_dir / SONGS_FILE, {**songs.record(), "parts": {p: list(songs.parts[p]) for p in PARTS}}
    )
    return songs.record()


def read_songs(run_dir: Path, record: Any) -> Songs:
    """A run's songs: the record of its ``config.json`` with the entries of its ``songs.json``
    when that file is there and matches the record's digests.

    Raises:
        IdentityError: the record is damaged, or ``songs.json`` is not the record's (edited).
    """
    where = f"{run_dir / 'config.json'}"
    songs = Songs.from_record(record, where)
    path = run_dir / SONGS_FILE
    if not path.is_file():
        return songs
    from genre_jax.fileio import JSONFileError, read_json_object

    try:
        data = read_json_object(path)
        parts = {p: data["parts"][p] for p in PARTS}
        if not all(
            isinstance(e, list) and all(isinstance(x, str) for x in e) for e in parts.values()
        ):
            raise TypeError("entries are not strings")
    except (JSONFileError, KeyError, TypeError) as error:
        raise IdentityError(f"{path}: not a songs file of ours ({error})") from None
    full = Songs.from_parts(songs.data, songs.split, songs.level, parts)
    if dict(full.digests) != dict(songs.digests):
        raise IdentityError(f"{path}: does not match the songs recorded in {where} (edited)")
    return full


def duplicate_songs(manifest: Manifest) -> list[tuple[str, list[str]]]:
    """Usable tracks that are the same audio: ``(identity, [their paths])`` for each identity
    held by more than one track."""
    counts = Counter(t.content for t in manifest.tracks if t.status == "ok" and t.content)
    return [
        (content, [t.path for t in manifest.tracks if t.content == content])
        for content, n in counts.items()
        if n > 1
    ]
