"""The wheel installs cleanly: built from the checkout, installed with its dependencies from the
package index into a fresh virtual environment outside the checkout, it runs from there.

In that environment, with the current folder outside the checkout: ``genre-jax --version`` is
pyproject's version; every module of the installed package imports (a module that needs an
optional extra may fail only for want of that extra's packages); every third-party module the
package's sources import, at module level or inside a function, is a declared dependency or an
extra's; only ``genre_jax`` is installed (no ``benchmarks``); LICENSE and ``py.typed`` ship; and a
tiny synthetic dataset is prepared, a network trained for one epoch and a song predicted.

Skipped only when the package index cannot be reached. Most of its time is the installation
(several minutes on a 2-core machine, unpacking jaxlib, scipy and the rest).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import child_env

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]

# Modules whose feature needs an optional extra: they may fail to import only with a
# ModuleNotFoundError naming one of that extra's packages.
OPTIONAL_MODULES: dict[str, tuple[str, frozenset[str]]] = {
    "genre_jax.exported_onnx": ("onnx", frozenset({"onnx", "onnxruntime", "jax2onnx"})),
}
# Imports of the package's sources that are not distributions: `genre-jax bench` imports the
# checkout's benchmarks folder, refusing in one line where there is none.
NOT_DISTRIBUTIONS = {"benchmarks"}

# Run by the fresh environment's interpreter: every module of the installed package imported,
# and every third-party import of its sources with the distribution that provides it.
PROBE = r"""
import ast, importlib, importlib.metadata as md, json, pkgutil, sys, traceback
from pathlib import Path

import genre_jax

def failure(error):
    return {"type": type(error).__name__, "name": getattr(error, "name", None),
            "message": str(error), "traceback": traceback.format_exc(limit=-3)}

modules = {}
def on_error(name):
    modules[name] = failure(sys.exc_info()[1])

names = ["genre_jax"] + [m.name for m in pkgutil.walk_packages(
    genre_jax.__path__, "genre_jax.", onerror=on_error)]
for name in names:
    if name in modules:
        continue
    try:
        importlib.import_module(name)
        modules[name] = None
    except BaseException as error:
        modules[name] = failure(error)

imports = {}
package = Path(genre_jax.__file__).parent
for path in sorted(package.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            tops = [node.module.split(".")[0]]
        else:
            continue
        for top in tops:
            if top != "genre_jax" and top not in sys.stdlib_module_names:
                where = f"{path.relative_to(package.parent)}:{node.lineno}"
                imports.setdefault(top, []).append(where)

providers = md.packages_distributions()
print(json.dumps({
    "file": genre_jax.__file__,
    "modules": modules,
    "imports": {top: {"where": where, "distributions": providers.get(top, [])}
                for top, where in imports.items()},
    "requires": md.requires("genre-jax") or [],
}))
"""


def normalize(name: str) -> str:
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(requires: list[str]) -> dict[str, set[str]]:
    """Each required distribution with the extras naming it ('' for the core dependencies)."""
    declared: dict[str, set[str]] = {}
    for requirement in requires:
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        declared.setdefault(normalize(name), set()).add(extra.group(1) if extra else "")
    return declared


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    """``command``'s standard output; its whole output in the failure when it fails."""
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}\n{done.stdout[-4000:]}\n"
        f"{done.stderr[-4000:]}"
    )
    return done.stdout


def index_reachable(tmp: Path) -> tuple[bool, str]:
    """Whether pip can fetch from the package index (setuptools, which building needs too)."""
    download = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp)]
    try:
        done = subprocess.run(
            [*download, "--timeout", "20", "--retries", "1", "setuptools>=77"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, "pip download setuptools took over 180 s"
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"exit {done.returncode}"


def copy_checkout(destination: Path) -> Path:
    """The checkout without its environments, builds and outputs: a build in place would leave
    build/ in the checkout, and a stale build/lib would go into the wheel."""
    ignored = shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "runs",
        ".cache", ".ruff_cache", ".pytest_cache", "results",
    )  # fmt: skip
    shutil.copytree(ROOT, destination, ignore=ignored, symlinks=True)
    return destination


def test_the_wheel_installs_and_runs_in_a_fresh_environment(tmp_path: Path) -> None:
    reachable, reason = index_reachable(tmp_path / "probe")
    if not reachable:
        pytest.skip(f"the package index cannot be reached: {reason}")
    timings: dict[str, float] = {}
    started = time.monotonic()

    # The wheel, built from a copy of the checkout.
    source = copy_checkout(tmp_path / "source")
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(wheels)],
        cwd=tmp_path, env=child_env())  # fmt: skip
    (wheel,) = wheels.glob("genre_jax-*.whl")
    assert wheel.name.startswith(f"genre_jax-{VERSION}-")
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        dist_info = f"genre_jax-{VERSION}.dist-info"
        top_level = archive.read(f"{dist_info}/top_level.txt").decode().split()
        record = archive.read(f"{dist_info}/RECORD").decode().splitlines()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert top_level == ["genre_jax"]
    installed_tops = {line.split(",")[0].split("/")[0] for line in record if line}
    assert installed_tops == {"genre_jax", dist_info}, installed_tops
    assert not [name for name in files if name.startswith("benchmarks")]
    assert f"{dist_info}/licenses/LICENSE" in files, files
    assert "genre_jax/py.typed" in files
    assert "License-Expression: MIT" in metadata
    timings["build"] = time.monotonic() - started

    # A fresh environment outside the checkout, the wheel and its dependencies from the index.
    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = child_env()
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "GENRE_JAX_MODELS"):
        env.pop(name, None)
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        GENRE_JAX_CACHE=str(tmp_path / "cache"),  # pip's cache stays: quick after the main install
        MPLBACKEND="Agg",
    )
    run([sys.executable, "-m", "venv", str(venv)], cwd=elsewhere, env=env)
    python = str(venv / "bin" / "python")
    start = time.monotonic()
    run([python, "-m", "pip", "install", "--no-compile", str(wheel)], cwd=elsewhere, env=env)
    timings["install"] = time.monotonic() - start

    # The command and its version.
    assert run(["genre-jax", "--version"], cwd=elsewhere, env=env).split() == [
        "genre-jax",
        VERSION,
    ]
    # Nothing but genre_jax: benchmarks is the checkout's, not the installation's.
    found = run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('benchmarks') is None)"],
        cwd=elsewhere,
        env=env,
    )
    assert found.strip() == "True", "benchmarks is importable from the installation"

    # Every module imports; every third-party import is declared.
    start = time.monotonic()
    probe = json.loads(run([python, "-c", PROBE], cwd=elsewhere, env=env).splitlines()[-1])
    timings["imports"] = time.monotonic() - start
    assert Path(probe["file"]).is_relative_to(venv), probe["file"]
    assert len(probe["modules"]) > 50, sorted(probe["modules"])
    broken = []
    for module, error in sorted(probe["modules"].items()):
        if error is None:
            continue
        extra, packages = OPTIONAL_MODULES.get(module, ("", frozenset()))
        if error["type"] == "ModuleNotFoundError" and error["name"] in packages:
            continue
        needs = f" (needs extra {extra!r}: {sorted(packages)})" if extra else ""
        broken.append(
            f"{module}{needs}: {error['type']} {error['message']}; missing module "
            f"{error['name']!r}\n{error['traceback']}"
        )
    assert not broken, "modules of the installed package do not import:\n" + "\n".join(broken)
    for extra, _ in OPTIONAL_MODULES.values():
        assert extra in PYPROJECT["project"]["optional-dependencies"], extra

    # A tiny run: a synthetic genre a track, one epoch of a small CNN, one song predicted.
    start = time.monotonic()
    data, stores, run_dir = elsewhere / "data", elsewhere / "stores", elsewhere / "run"
    run(["genre-jax", "synth", "--out", str(data), "--tracks-per-genre", "1"], elsewhere, env)
    prepare = ["genre-jax", "prepare", "--data-dir", str(data), "--out", str(stores)]
    run([*prepare, "--no-progress"], elsewhere, env)
    train = ["genre-jax", "train", "--model", "cnn", "--features", str(stores)]
    train += ["--run-dir", str(run_dir), "--epochs", "1", "--model.channels", "4,4,4"]
    run([*train, "--select", "last", "--patience", "0", "--no-progress"], elsewhere, env)
    genres = json.loads((run_dir / "labels.json").read_text())
    song = min((data / "genres_original" / "jazz").glob("*.wav"))
    predict = ["genre-jax", "predict", str(song), "--run-dir", str(run_dir), "--json"]
    (answer,) = json.loads(run(predict, elsewhere, env))
    assert answer["genre"] in genres and set(answer["probabilities"]) == set(genres), answer
    timings["train and predict"] = time.monotonic() - start
    print(", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items()))

    # Last, so that a missing declaration does not hide whether the run works.
    declared = declared_requirements(probe["requires"])
    undeclared = []
    for top, found_in in sorted(probe["imports"].items()):
        if top in NOT_DISTRIBUTIONS:
            continue
        # Installed: the distribution providing it; an extra's, not installed: by its name.
        candidates = [normalize(d) for d in found_in["distributions"]] or [normalize(top)]
        if not any(candidate in declared for candidate in candidates):
            where = ", ".join(found_in["where"])
            undeclared.append(f"{top} ({', '.join(candidates)}), imported at {where}")
    assert not undeclared, "imported but not declared in pyproject:\n" + "\n".join(undeclared)
