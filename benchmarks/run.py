"""Run the benchmarks and write ``benchmarks.json`` and ``benchmarks.md`` (``--quick``:
``benchmarks-quick.json`` and ``.md``, so a smoke test never overwrites a full run).

    python -m benchmarks.run                 # full run (minutes)
    python -m benchmarks.run --quick         # every path at tiny sizes (a smoke test)
    python -m benchmarks.run --only features,peers --out /tmp/bench

Both files name the device (JAX's first device, its platform, the CPU model and core count,
the load average at start and end), the library versions, the options, and the setting of
every row. Paths: ``features`` (MFCC extraction against librosa), ``training`` (CNN and GRU
train steps per epoch driver, seconds per GTZAN-sized epoch), ``svm`` (fit and predict),
``inference`` (prediction throughput, seconds per 30 s file), ``musicnn`` (the pretrained
musicnn's embeddings, ours against TensorFlow), ``peers`` (Keras and PyTorch), ``commands``
(the ``genre-jax`` commands a user starts, timed whole, with where the seconds went).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import importlib.metadata
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import Options, device_info
from benchmarks.timing import Row, progress
from genre_jax.fileio import atomic_write_bytes, atomic_write_json, library_versions

PATHS = (
    "features",
    "training",
    "streaming",
    "svm",
    "inference",
    "musicnn",
    "parallel",
    "peers",
    "commands",
)
PEER_LIBRARIES = {  # library -> the distributions that provide it
    "torch": ("torch",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="Time every path of genre_jax."
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--only", default=",".join(PATHS), help="comma-separated paths to run")
    parser.add_argument("--repeats", type=int, help="steady-state repeats of cheap rows")
    parser.add_argument("--train-repeats", type=int, help="repeats of the train-step rows")
    parser.add_argument("--epoch-repeats", type=int, help="repeats of the full-epoch rows")
    parser.add_argument("--svm-train", type=int, help="SVM training segments (GTZAN: 4752)")
    parser.add_argument("--svm-test", type=int, help="SVM test segments (GTZAN: 594)")
    parser.add_argument("--epoch-samples", type=int, help="samples of the epoch rows")
    parser.add_argument(
        "--gru-unrolls", help="comma-separated GRU scan unrollings to time (default: 4,16)"
    )
    parser.add_argument(
        "--skip-crossval",
        help="comma-separated shell patterns of configs/ files whose crossval rows to skip "
        "(gtzan-dev-musicnn.json,gtzan-dev-musicnn-*: the fine-tuning files)",
    )
    return parser


def options_from(args: argparse.Namespace) -> Options:
    """The preset (``--quick`` or full) with the sizes given on the command line."""
    names = ("repeats", "train_repeats", "epoch_repeats", "svm_train", "svm_test", "epoch_samples")
    changes = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    for name, value in changes.items():
        if value < 1:
            raise SystemExit(f"--{name.replace('_', '-')}={value}: must be >= 1")
    if args.gru_unrolls is not None:
        try:
            unrolls = tuple(int(u) for u in args.gru_unrolls.split(",") if u.strip())
        except ValueError:
            raise SystemExit(f"--gru-unrolls={args.gru_unrolls!r}: not integers") from None
        if any(u < 1 for u in unrolls):
            raise SystemExit(f"--gru-unrolls={args.gru_unrolls!r}: each must be >= 1")
        changes["gru_unrolls"] = unrolls
    if args.skip_crossval is not None:
        from benchmarks.commands import crossval_files  # imports the synthetic-data builder

        patterns = tuple(p.strip() for p in args.skip_crossval.split(",") if p.strip())
        try:
            crossval_files(patterns)
        except ValueError as error:
            raise SystemExit(f"--skip-crossval: {error}") from None
        changes["crossval_skip"] = patterns
    return Options.quick_preset(**changes) if args.quick else Options.full(**changes)


def versions() -> dict[str, str]:
    """Our library versions plus the peers' (when installed)."""
    found = library_versions()
    for name, distributions in PEER_LIBRARIES.items():
        found[name] = "not installed"
        for distribution in distributions:
            try:
                found[name] = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
            if distribution != name:
                found[name] += f" ({distribution})"
            break
    return found


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pairs(values: dict[str, Any]) -> str:
    text = "; ".join(f"{key}={_number(value)}" for key, value in values.items())
    return text.replace("|", "/")


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown page: context, one table of rows, one table of ratios."""
    device, rows = result["device"], result["rows"]
    lines = [
        "# genre_jax benchmarks",
        "",
        f"- created: {result['created']} ({'quick' if result['quick'] else 'full'} sizes, "
        f"{result['wall_s']:.0f} s{'' if result['complete'] else ', INCOMPLETE'})",
        f"- command: `{result['command']}`",
        f"- device: {device['jax_device']} (platform {device['platform']}, "
        f"{device['device_kind']}); CPU {device['cpu_model']}, {device['cpu_cores']} cores "
        f"({device['cpu_cores_usable']} usable); load average {device['load_average_1min']} at "
        f"start, {result['load_average_end']} at end",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
        "- medians over the repeats after a warm-up call; `first call` is the first call alone "
        "(trace + compile + one run); rows compared with each other ran round-robin in one loop",
        "",
        "| path | benchmark | median | unit | min – max | IQR | n | first call s | setting "
        "| notes |",
        "| --- | --- | ---: | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        if row["status"] != "ok":
            status, reason = row["status"], row["reason"].replace("|", "/")
            lines.append(f"| {row['path']} | {row['name']} | {status} | | | | | | {reason} | |")
            continue
        first = "" if row["first_call_s"] is None else f"{row['first_call_s']:.2f}"
        lines.append(
            f"| {row['path']} | {row['name']} | {row['median']:.4g} | {row['unit']} | "
            f"{row['min']:.4g} – {row['max']:.4g} | {row['q1']:.4g} – {row['q3']:.4g} | "
            f"{row['repeats']} | {first} | {_pairs(row['setting'])} | {_pairs(row['extra'])} |"
        )
    if result["ratios"]:
        lines += [
            "",
            "Speed-ups (> 1: ours faster): of the medians, and the median of the per-round "
            "ratios where both ran round-robin (each round shares the machine's load).",
            "",
            "| comparison | ours / theirs (medians) | ours / theirs (per round) |",
            "| --- | ---: | ---: |",
        ]
        for r in result["ratios"]:
            paired = "" if r["paired_ratio"] is None else f"{r['paired_ratio']:.2f}x"
            lines.append(f"| {r['name']} | {r['ratio']:.2f}x | {paired} |")
    return "\n".join(lines) + "\n"


def run_path(path: str, options: Options) -> tuple[list[Row], list[dict[str, Any]]]:
    """One path's rows and ratios; a path that raises gives one ``failed`` row with the error
    (and the traceback on stderr) so that the other paths still run and are written."""
    try:
        module = importlib.import_module(f"benchmarks.{path}")
        return module.run(options)
    except Exception as error:  # reported in the results and the exit status, not swallowed
        progress(f"{path}: FAILED\n{traceback.format_exc()}")
        reason = f"{type(error).__name__}: {error}"
        return [Row.failed_path(path, f"{path} benchmarks", reason)], []


def result_paths(out: Path, quick: bool) -> tuple[Path, Path]:
    """The JSON and markdown files of a run in ``out``."""
    stem = "benchmarks-quick" if quick else "benchmarks"
    return out / f"{stem}.json", out / f"{stem}.md"


def _write(out: Path, result: dict[str, Any]) -> str:
    json_path, md_path = result_paths(out, result["quick"])
    atomic_write_json(json_path, result)
    page = markdown(result)
    atomic_write_bytes(md_path, page.encode())
    return page


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen paths, write the JSON and markdown files to ``out`` (rewritten after each
    path, so an interrupted run keeps what it measured); 0 if every path ran, else 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    options = options_from(args)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PATHS))
    if unknown or not chosen:
        given = ", ".join(unknown) if unknown else "none given"
        raise SystemExit(f"--only: unknown path(s) ({given}); choose from {', '.join(PATHS)}")
    started = time.perf_counter()
    device = device_info()
    progress(f"device {device['jax_device']}, {device['cpu_model']}, {device['cpu_cores']} cores")
    rows: list[Row] = []
    ratios: list[dict[str, Any]] = []
    result = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *argv]),
        "quick": options.quick,
        "complete": False,
        "options": dataclasses.asdict(options),
        "device": device,
        "versions": versions(),
    }
    out = Path(args.out)
    todo = [p for p in PATHS if p in chosen]
    if "peers" in todo:  # before the musicnn path loads TensorFlow (see the function)
        importlib.import_module("benchmarks.peers").load_torch_before_tensorflow()
    for i, path in enumerate(todo):
        new_rows, new_ratios = run_path(path, options)
        rows += new_rows
        ratios += new_ratios
        result |= {
            "complete": i == len(todo) - 1,
            "wall_s": round(time.perf_counter() - started, 1),
            "load_average_end": round(os.getloadavg()[0], 2),
            "rows": [row.to_json() for row in rows],
            "ratios": ratios,
        }
        page = _write(out, result)
    print(page)
    progress("wrote {} and {}".format(*result_paths(out, options.quick)))
    failed = [row.path for row in rows if row.failed]
    if failed:
        progress(f"FAILED paths: {', '.join(failed)} (see the rows and the tracebacks above)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
