"""Atomic writes and run metadata shared by every module that writes files.

A write goes to a temporary name in the same folder, is flushed to disk, and is renamed into
place, so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    The file gets the permissions an ordinary write would (``mkstemp`` alone makes it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


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
