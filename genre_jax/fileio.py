"""Atomic writes, output folders and run metadata shared by every module that writes files.

A write goes to a temporary name in the same folder, is flushed to disk, and is renamed into
place, so a killed process leaves either the old file or the new one, never half of one.

Every output folder genre-jax creates (a run, an ensemble, a cross-validation) holds a marker
file, :data:`MARKER`, naming the project and the kind of folder. ``--overwrite`` deletes only a
folder whose marker names the kind being replaced (:func:`remove_own_dir`), so a mistyped
path never costs a folder that genre-jax did not write.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_LIBRARIES = (
    "genre-jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "librosa",
    "scikit-learn",
    "soundfile",
    "soxr",
)


def _file_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[Any]:
    """A binary file that becomes ``path`` atomically when the block ends without an error
    (temporary file, fsync, rename); on an error the temporary file is removed.

    The file gets the permissions an ordinary write would (``mkstemp`` alone makes it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class JSONFileError(ValueError):
    """A file meant to hold a JSON object does not; ``str(error)`` is the reason alone (``is
    not readable JSON (...)``, ``holds a list, not a JSON object``), for the caller to put
    after the file's name in its own error."""


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        JSONFileError: the file cannot be read, is not JSON (or not UTF-8), or holds
            something other than an object.
    """
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise JSONFileError(f"is not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise JSONFileError(f"holds a {type(data).__name__}, not a JSON object")
    return data


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary sibling of ``final`` that is removed unless the caller renames it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(staged: Path, final: Path, replace: bool = False) -> bool:
    """Rename a completed ``staged`` folder to ``final``.

    Returns False when ``final`` already exists and ``replace`` is False (another process
    finished first; ``staged`` is left for the caller's cleanup). With ``replace``, the old
    folder is first moved aside, then deleted once the new one is in place.
    """
    if final.exists():
        if not replace:
            return False
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        os.replace(staged, final)
        shutil.rmtree(trash, ignore_errors=True)
        return True
    try:
        os.rename(staged, final)
    except OSError:
        if final.exists():
            return False
        raise
    return True


MARKER = ".genre-jax.json"

# What a folder of each kind written before markers existed may hold, top level only.
_LEGACY_ENTRIES = {
    "run": (
        "config.json",
        "labels.json",
        "history.json",
        "summary.json",
        "checkpoints",
        "svm.skops",
        "plots",
        "report*.json",
        "report*.md",
        # What evaluate adds to a run written before markers (genre_jax.metrics).
        "metrics.jsonl",
        "tensorboard",
    ),
    "crossval": (
        "experiment.json",
        "fold-*",
        "report.json",
        "report.md",
        "plots",
        "metrics.jsonl",
        "tensorboard",
    ),
}
_LEGACY_CONFIG = {"run": "config.json", "crossval": "experiment.json"}


class OutputDirError(ValueError):
    """An output folder cannot be used as asked: it is a file, holds something else, or is
    not a folder of the kind that would be replaced."""


def mark_dir(path: str | os.PathLike, kind: str) -> None:
    """Create ``path`` (if needed) and record in it that genre-jax wrote it as a ``kind``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / MARKER, {"project": "genre_jax", "kind": kind})


def dir_kind(path: str | os.PathLike) -> str | None:
    """The kind of genre-jax folder ``path`` is, from its marker, or None (no marker, or a
    marker that is not ours)."""
    try:
        marker = read_json_object(Path(path) / MARKER)
    except JSONFileError:
        return None
    if marker.get("project") == "genre_jax":
        kind = marker.get("kind")
        return kind if isinstance(kind, str) else None
    return None


def _is_legacy(path: Path, kind: str, keep: tuple[str, ...] = ()) -> bool:
    """A folder of ``kind`` written before markers: only the names such a folder holds (and
    those in ``keep``), and a config naming genre-jax's fields."""

    patterns = _LEGACY_ENTRIES.get(kind)
    if patterns is None:
        return False
    for entry in os.listdir(path):
        if entry not in keep and not any(fnmatch.fnmatch(entry, p) for p in patterns):
            return False
    try:
        config = read_json_object(path / _LEGACY_CONFIG[kind])
    except JSONFileError:
        return False
    if kind == "crossval":
        return {"members", "feature_hash"} <= set(config)
    versions = config.get("versions")
    return isinstance(versions, dict) and "genre-jax" in versions


def describe_entries(path: str | os.PathLike, limit: int = 6) -> str:
    """``a.txt, docs/, ... (9 entries)``: what a folder holds, for an error message."""
    entries = sorted(os.listdir(path))
    shown = [e + ("/" if (Path(path) / e).is_dir() else "") for e in entries[:limit]]
    more = f", ... ({len(entries)} entries)" if len(entries) > limit else ""
    return ", ".join(shown) + more


def remove_own_dir(
    path: str | os.PathLike, kind: str, *, delete: bool = True, keep: tuple[str, ...] = ()
) -> None:
    """Delete the folder ``path`` for ``--overwrite``, only if genre-jax wrote it as a ``kind``.

    Its marker must name ``kind`` (or, for a folder written before markers, it must hold
    nothing but what such a folder holds). ``delete=False`` only checks (the processes of a
    multi-process run other than the first). Entries named in ``keep`` stay (with the folder
    itself): a cross-validation's own feature store, prepared just before.

    Raises:
        OutputDirError: the folder is not a ``kind`` of genre-jax's; what it holds is named.
    """
    path = Path(path)
    found = dir_kind(path)
    if found != kind and not (found is None and _is_legacy(path, kind, keep)):
        what = f"a genre-jax {found}" if found else "not written by genre-jax"
        raise OutputDirError(
            f"{path}: --overwrite replaces only a {kind} folder of genre-jax's, and this one is "
            f"{what} (it holds {describe_entries(path)}); remove it yourself or choose another"
        )
    if not delete:
        return
    if not keep:
        shutil.rmtree(path)
        return
    for entry in os.listdir(path):
        if entry not in keep:
            target = path / entry
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()


def require_folder_or_absent(path: str | os.PathLike, what: str) -> None:
    """Refuse an output path that exists and is not a folder (a file, a device, a FIFO)."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise OutputDirError(f"{path}: exists and is not a folder; {what} needs a folder")


def cache_dir() -> Path:
    """Where fetched or generated data is kept (the synthetic dataset, pretrained weights):
    ``$GENRE_JAX_CACHE``, else ``$XDG_CACHE_HOME/genre_jax``, else ``~/.cache/genre_jax``."""
    if os.environ.get("GENRE_JAX_CACHE"):
        return Path(os.environ["GENRE_JAX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "genre_jax"


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries whose behaviour a result depends on."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
