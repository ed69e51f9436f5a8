"""Atomic writes, temporary folders and run metadata shared by every module that writes files.

A write goes to a temporary name in the same folder, is flushed to disk, and is renamed into
place, so a killed process leaves either the old file or the new one, never half of one. A
folder is built under a temporary name and renamed into place (:func:`staging_dir`,
:func:`publish_dir`).

Files read whole are read only when they are regular files (:func:`require_regular_file`,
:func:`open_regular`): a FIFO or a device in a file's place would block or never end.

The output folders genre-jax writes (their markers, what each holds, ``--overwrite``) are
:mod:`genre_jax.output_dirs`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import stat
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


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read 4 MB at a time."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(4 << 20))
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(buffer[:size])
    return digest.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


REGULAR_FILE = "a regular file"


def file_kind(mode: int) -> str:
    """What an ``st_mode`` says a path is, for messages: :data:`REGULAR_FILE`, ``a FIFO``,
    ``a folder``, ``a character device``, ``a block device``, ``a socket`` or ``a link``."""
    kinds = (
        (stat.S_ISREG, REGULAR_FILE),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


class NotRegularFileError(OSError, ValueError):
    """A file to be read whole is not a regular file: a FIFO (reading it blocks until another
    process writes), a device (``/dev/zero`` never ends), a folder or a socket; or it cannot be
    examined. ``str(error)`` is one line naming the file; ``reason`` is the reason alone
    (``a FIFO, not a regular file``).

    A ValueError (a user's input that cannot be used) and an OSError, so that a caller that
    handled what ``open`` raised for a folder (``IsADirectoryError``) handles this the same way.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def require_regular_file(path: str | os.PathLike, what: str) -> None:
    """Refuse ``path`` unless it is a regular file (a link to one is), before something
    (``np.load``, a digest) opens and reads it whole. ``what`` names it in the message:
    ``{what} {path}: a FIFO, not a regular file``.

    Raises:
        NotRegularFileError: ``path`` is not a regular file, or cannot be examined (missing,
            no permission: ``{what} {path}: cannot be read (No such file or directory)``).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        reason = f"cannot be read ({error.strerror})"
        raise NotRegularFileError(f"{what} {path}: {reason}", reason) from None
    kind = file_kind(mode)
    if kind != REGULAR_FILE:
        reason = f"{kind}, not a regular file"
        raise NotRegularFileError(f"{what} {path}: {reason}", reason)


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of ``path``, which must be a regular file: it is examined before
    it is opened (a device is not opened at all) and again once open, without blocking (a FIFO
    put in its place meanwhile is refused, not waited on). The caller closes it.

    Raises:
        NotRegularFileError: ``path`` is not a regular file (``{path}: a FIFO, not a regular
            file``).
        OSError: it cannot be opened (missing, no permission).
    """
    mode = os.stat(path).st_mode
    if file_kind(mode) == REGULAR_FILE:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        mode = os.fstat(fd).st_mode
        if file_kind(mode) == REGULAR_FILE:
            return fd
        os.close(fd)
    reason = f"{file_kind(mode)}, not a regular file"
    raise NotRegularFileError(f"{path}: {reason}", reason)


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``, a regular file (:func:`open_regular`: a FIFO or a device in its
    place is refused, never read forever).

    Raises:
        NotRegularFileError: ``path`` is not a regular file.
        OSError: it cannot be read.
        ValueError: it is not UTF-8 JSON.
    """
    with os.fdopen(open_regular(path), encoding="utf-8") as handle:
        return json.load(handle)


class JSONFileError(ValueError):
    """A file meant to hold a JSON object does not; ``str(error)`` is the reason alone (``is
    not readable JSON (...)``, ``holds a list, not a JSON object``, ``is a FIFO, not a regular
    file``), for the caller to put after the file's name in its own error."""


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path`` (``store.json``, ``manifest.json``, a run's ``config.json``,
    a folder's marker).

    Raises:
        JSONFileError: the file is not a regular file (a FIFO, a device, a folder), cannot be
            read, is not JSON (or not UTF-8), or holds something other than an object.
    """
    try:
        data = read_json(path)
    except NotRegularFileError as error:
        raise JSONFileError(f"is {error.reason}") from None
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise JSONFileError(f"is not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise JSONFileError(f"holds a {type(data).__name__}, not a JSON object")
    return data


def _owner() -> str:
    """``<pid>@<host>``: which process made a temporary folder (in its name)."""
    return f"{os.getpid()}@{socket.gethostname()}"


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary sibling of ``final``, ``.<name>.tmp-<pid>@<host>.<random>``, that is
    removed unless the caller renames it (a killed process's is removed by the next
    :func:`remove_abandoned`)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-{_owner()}."))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


def remove_abandoned(final: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``final`` that a killed process left: the folders of
    :func:`staging_dir` and :func:`publish_dir` named for a process of this machine that is
    no longer running (``kill -9`` during ``prepare``). A folder of a running process, of
    another machine, or named otherwise is left alone. Returns the folders removed."""
    final = Path(final)
    name = re.escape(final.name)
    patterns = (  # staging_dir's, with tempfile's random letters; publish_dir's, without
        re.compile(rf"\.{name}\.tmp-(\d+)@(.+)\.[a-z0-9_]+"),
        re.compile(rf"\.{name}\.old-(\d+)@(.+)"),
    )
    removed = []
    host = socket.gethostname()
    for entry in final.parent.glob(f".{glob.escape(final.name)}.*-*@*"):
        match = patterns[0].fullmatch(entry.name) or patterns[1].fullmatch(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        if match[2] == host and _process_gone(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def publish_dir(staged: Path, final: Path, replace: bool = False) -> bool:
    """Rename a completed ``staged`` folder to ``final``.

    Returns False when ``final`` already exists and ``replace`` is False (another process
    finished first; ``staged`` is left for the caller's cleanup). With ``replace``, the old
    folder is first moved aside, then deleted once the new one is in place.
    """
    if final.exists():
        if not replace:
            return False
        trash = final.with_name(f".{final.name}.old-{_owner()}")
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
