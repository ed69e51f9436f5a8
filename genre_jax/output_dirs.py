"""The output folders genre-jax writes (a run, an ensemble, a cross-validation): their markers,
what each kind holds, and what ``--overwrite`` may delete.

Every output folder genre-jax creates holds a marker file, :data:`MARKER`, naming the project
and the kind of folder, and :data:`LAYOUTS` says what each kind holds. ``--overwrite`` deletes
only a folder whose marker names the kind being replaced and that holds nothing but that
(:func:`remove_own_dir`), so neither a mistyped path nor a user's notes put in a run's folder
are lost. A folder older than markers is recognised by its config
(:func:`genre_jax.legacy.unmarked_config`).

Apart from :mod:`genre_jax.fileio` (atomic writes, reading files whole), which it writes and
reads with.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path
from typing import Any

from genre_jax import legacy
from genre_jax.fileio import JSONFileError, atomic_write_json, read_json_object

MARKER = ".genre-jax.json"

FILE = "file"
"""In a :data:`LAYOUTS` entry: a regular file."""
ORBAX_STEP = "orbax step"
"""In a :data:`LAYOUTS` entry: a checkpoint step's folder (``12``; ``12.orbax-checkpoint-tmp...``
when a save was cut short). orbax writes all of it, in its own version's layout, so it is not
looked into."""
_ORBAX_TMP = ".orbax-checkpoint-tmp"

_PLOTS = {"training_curves.png": FILE, "confusion_*.png": FILE}
_TENSORBOARD = {"events.out.tfevents.*": FILE}
_EVALUATED = {  # what evaluate adds to a run or an ensemble (genre_jax.evaluate, .metrics)
    "report.json": FILE,
    "report-*.json": FILE,  # -val, -hop0.5s, -test-on-<store>-<hash>
    "report.md": FILE,
    "report-*.md": FILE,
    "report.html": FILE,  # the report page (genre_jax.report_pages)
    "report-*.html": FILE,
    "metrics.jsonl": FILE,
    "plots": _PLOTS,
    "tensorboard": _TENSORBOARD,
}
_SERIES = {"[0-9]*": ORBAX_STEP}

LAYOUTS: dict[str, dict[str, Any]] = {
    "run": {
        MARKER: FILE,
        "config.json": FILE,
        "labels.json": FILE,
        "songs.json": FILE,
        "history.json": FILE,
        "summary.json": FILE,
        "svm.skops": FILE,  # a pipeline model and its binding (genre_jax.models.sklearn_io)
        "svm.json": FILE,
        "MODEL_CARD.md": FILE,  # genre_jax.model_card
        "checkpoints": {"latest": _SERIES, "best": _SERIES, "partial": _SERIES},
        **_EVALUATED,
    },
    "ensemble": {
        MARKER: FILE,
        "config.json": FILE,
        "labels.json": FILE,
        "songs.json": FILE,
        "MODEL_CARD.md": FILE,
        **_EVALUATED,
        "*": ("run",),  # members made inside it (a cross-validation's fold-<k>/<model>)
    },
    "crossval": {
        MARKER: FILE,
        "experiment.json": FILE,
        "report.json": FILE,
        "report.md": FILE,
        "report.html": FILE,
        "MODEL_CARD.md": FILE,
        "metrics.jsonl": FILE,
        "plots": {"confusion_*.png": FILE},
        "tensorboard": _TENSORBOARD,
        "fold-*": ("run", "ensemble"),
        "split-seed-*": {"fold-*": ("run", "ensemble")},  # crossval --repeats R, R > 1
    },
    "compare": {  # genre-jax compare --out (genre_jax.compare)
        MARKER: FILE,
        "comparison.md": FILE,
        "comparison.json": FILE,
        "report.html": FILE,
    },
}
"""Everything genre-jax writes in each kind of output folder, the one place that says so: a
name pattern (``fnmatch``, first match) for each entry, and what it is: :data:`FILE`, a folder
holding what a nested pattern dict says, :data:`ORBAX_STEP`, or a tuple of kinds (a folder of
one of them, by its marker, or an empty folder). Beside these, the temporary file of an atomic
write that was killed (``.<name>.<random>.tmp``, of a file named here) is ours too.
``--overwrite`` deletes a folder only when everything in it is in its layout
(:func:`remove_own_dir`)."""
_NAMES = {
    "run": "run folder",
    "ensemble": "ensemble",
    "crossval": "cross-validation folder",
    "compare": "comparison folder",
}


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


def _slot(entry: str, layout: dict[str, Any]) -> Any:
    """What ``layout`` says the entry ``entry`` is (None: nothing of ours). Of hidden names,
    ours are the marker and a killed atomic write's temporary file (``.<name>.<random>.tmp``,
    :func:`atomic_writer`), a :data:`FILE` when the file it was for is one."""
    if entry.startswith(".") and entry != MARKER:
        parts = entry[1:].rsplit(".", 2)
        leftover = len(parts) == 3 and parts[2] == "tmp" and _slot(parts[0], layout) == FILE
        return FILE if leftover else None
    for pattern, slot in layout.items():
        if fnmatch.fnmatchcase(entry, pattern):
            return slot
    return None


def foreign_entries(
    path: str | os.PathLike, layout: dict[str, Any], keep: tuple[str, ...] = (), prefix: str = ""
) -> list[str]:
    """What in the folder ``path`` genre-jax did not write by ``layout`` (:data:`LAYOUTS`),
    looking into its subfolders: paths relative to ``path`` (after ``prefix``), a folder's
    with a ``/``. A link is never ours; entries named in ``keep`` are not looked at."""
    path, found = Path(path), []
    for entry in sorted(os.listdir(path)):
        if entry in keep:
            continue
        target, name = path / entry, prefix + entry
        slot = _slot(entry, layout)
        folder = target.is_dir() and not target.is_symlink()
        if slot is None or target.is_symlink():
            found.append(name + ("/" if folder else ""))
        elif slot == FILE:
            if not target.is_file():
                found.append(name + ("/" if folder else ""))
        elif not folder:
            found.append(name)
        elif slot == ORBAX_STEP:
            if not entry.split(_ORBAX_TMP)[0].isdigit():
                found.append(name + "/")
        elif isinstance(slot, dict):
            found += foreign_entries(target, slot, prefix=name + "/")
        else:
            found += _foreign_in_member(target, slot, name + "/")
    return found


def _foreign_in_member(path: Path, kinds: tuple[str, ...], prefix: str) -> list[str]:
    """:func:`foreign_entries` of a folder that must be of one of ``kinds`` (a fold, an
    ensemble's member): by its marker, or a config of that kind in a folder older than markers
    (:func:`genre_jax.legacy.unmarked_config`); an empty folder is one made and killed before
    its marker was written."""
    kind = dir_kind(path)
    if kind is None:
        if not os.listdir(path):
            return []
        kind = next((k for k in kinds if legacy.unmarked_config(path, k) is not None), None)
    if kind not in kinds:
        return [prefix]
    return foreign_entries(path, LAYOUTS[kind], prefix=prefix)


def describe_entries(path: str | os.PathLike, limit: int = 6) -> str:
    """``a.txt, docs/, ... (9 entries)``: what a folder holds, for an error message."""
    entries = sorted(os.listdir(path))
    shown = [e + ("/" if (Path(path) / e).is_dir() else "") for e in entries[:limit]]
    more = f", ... ({len(entries)} entries)" if len(entries) > limit else ""
    return ", ".join(shown) + more


def remove_own_dir(
    path: str | os.PathLike, kind: str, *, delete: bool = True, keep: tuple[str, ...] = ()
) -> None:
    """Delete the folder ``path`` for ``--overwrite``, only if genre-jax wrote it as a ``kind``
    and everything in it.

    Its marker must name ``kind`` (or, for a folder older than markers, its config must be a
    ``kind``'s, :func:`genre_jax.legacy.unmarked_config`, and it must hold nothing else); and
    everything in it, subfolders included (a run's checkpoints, plots and event files, a
    cross-validation's folds, an ensemble's members), must be what genre-jax writes there
    (:data:`LAYOUTS`). A file of the user's (``notes.txt``, ``fold-0/mine.txt``) is not
    deleted with the rest, nor kept in a folder that then holds another run beside notes on
    the old one: the whole folder is refused, naming it, and nothing is deleted.
    ``delete=False`` only checks (the processes of a multi-process run other than the first).
    Entries named in ``keep`` stay (with the folder itself): a cross-validation's own feature
    store, prepared just before.

    Raises:
        OutputDirError: the folder is not a ``kind`` of genre-jax's, or holds something
            genre-jax did not write; what it holds, or that, is named.
    """
    path = Path(path)
    found = dir_kind(path)
    unmarked = found is None and legacy.unmarked_config(path, kind) is not None
    foreign = foreign_entries(path, LAYOUTS[kind], keep) if found == kind or unmarked else []
    if found != kind and not (unmarked and not foreign):
        what = f"a genre-jax {found}" if found else "not written by genre-jax"
        raise OutputDirError(
            f"{path}: --overwrite replaces only a {kind} folder of genre-jax's, and this one is "
            f"{what} (it holds {describe_entries(path)}); remove it yourself or choose another"
        )
    if foreign:
        more = f" ({len(foreign)} in all)" if len(foreign) > 6 else ""
        raise OutputDirError(
            f"{path}: --overwrite deletes only what genre-jax wrote, and this {_NAMES[kind]} "
            f"also holds {', '.join(foreign[:6])}{more}; move that out (or delete it yourself) "
            "and run again"
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
