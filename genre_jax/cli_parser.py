"""The ``genre-jax`` command line: every subcommand's options, and which function runs it.

Options are generated from the settings dataclasses (:mod:`genre_jax.options`): every feature
setting (``--n-mfcc``, ``--segment-seconds`` ...), every shared training setting, ``--model``
with the registered models, and each model's own settings (``--model.c`` ...). Each subcommand
runs a function of :mod:`genre_jax.cli_commands`; :func:`genre_jax.cli.main` parses and
dispatches.

Building the parser imports no model code unless the subcommand about to be parsed needs it
(:func:`build_parser`), so ``--help`` and a usage error stay instant.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import typing
from collections.abc import Sequence

from genre_jax.cli_commands import (
    cmd_bench,
    cmd_card,
    cmd_check,
    cmd_compare,
    cmd_crossval,
    cmd_demo,
    cmd_embed,
    cmd_ensemble,
    cmd_evaluate,
    cmd_export,
    cmd_fetch_musicnn,
    cmd_plot,
    cmd_predict,
    cmd_prepare,
    cmd_synth,
    cmd_train,
)
from genre_jax.config import FeatureConfig
from genre_jax.models import model_names
from genre_jax.options import add_dataclass_options, add_legacy_option, add_train_options
from genre_jax.store_shards import DEFAULT_SHARD_SEGMENTS
from genre_jax.tables import FMA_SUBSETS


def _whole_number_from(text: str, minimum: int) -> int:
    """``int(text)`` when it is at least ``minimum``; argparse's error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _whole_number_from(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (a seed)."""
    return _whole_number_from(text, 0)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


def add_dataset_options(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--data-dir`` and ``--subset``: where a dataset is and, for FMA, which subset."""
    parser.add_argument("--data-dir", help=help_text)
    parser.add_argument(
        "--subset",
        choices=FMA_SUBSETS,
        help="FMA only: the subset (small, medium or large) [default: that of the one audio "
        "folder, fma_<subset>, there]",
    )


CONFIG_HELP = (
    "experiment file (JSON with 'features' and 'train' settings, see configs/); "
    "options given here override it"
)


TENSORBOARD_HELP = (
    "also write every epoch's scalars (and evaluate's) as TensorBoard event files under "
    "RUN/tensorboard (needs the extra: pip install 'genre-jax[tensorboard]')"
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage error is one line (the option and the reason), exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


NO_AUDIO_HELP = (
    "leave the songs' audio excerpts out of report.html (for data that may not be shared)"
)
MODEL_COMMANDS = ("train", "crossval")  # the subcommands with every model's settings
GLOBAL_VALUES = ("--coordinator", "--num-processes", "--process-id")  # options with a value


def build_parser(
    command: str | None = None, described: tuple[str, ...] | None = None
) -> argparse.ArgumentParser:
    """The command line. ``command`` is the subcommand about to be parsed (``""``: none, as for
    ``genre-jax --help``; ``None``: any, everything is built): the other subcommands are built
    without what imports model code (every model's settings, musicnn's checkpoint names),
    since argparse only reads the one named. ``described``: for ``--help``, the models whose
    settings it lists (:func:`described_models`); None builds every model's."""
    models = command is None or command in MODEL_COMMANDS
    checkpoints = _musicnn_checkpoints() if command in (None, "embed", "fetch-musicnn") else []
    parser = _Parser(
        prog="genre-jax",
        description="Music genre classification in JAX: features, models "
        f"({', '.join(model_names())}), song-level evaluation.",
    )
    parser.add_argument("--version", action="version", version=_version())
    group = parser.add_argument_group(
        "multi-process runs (or GENRE_JAX_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID; "
        "GENRE_JAX_DISTRIBUTED=1 lets JAX detect SLURM or a TPU pod)"
    )
    group.add_argument("--coordinator", help="HOST:PORT of process 0")
    group.add_argument("--num-processes", type=int, help="processes in the run")
    group.add_argument("--process-id", type=int, help="this process's index, 0 ... N-1")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="write the built-in synthetic dataset (GTZAN layout)")
    synth.add_argument("--out", required=True, help="folder to write the dataset into")
    synth.add_argument(
        "--tracks-per-genre",
        type=positive_int,
        default=10,
        help="tracks of each genre [default: 10]",
    )
    synth.add_argument(
        "--seed", type=non_negative_int, default=0, help="the generator's seed [default: 0]"
    )
    synth.set_defaults(func=cmd_synth)

    prep = sub.add_parser(
        "prepare", help="decode, segment and extract features into a feature store"
    )
    add_dataset_options(prep, "dataset: GTZAN, FMA, any folder-per-genre tree, or a CSV manifest")
    prep.add_argument(
        "--synthetic", action="store_true", help="use the built-in synthetic dataset (cached)"
    )
    prep.add_argument("--tracks-per-genre", type=positive_int, default=10, help="with --synthetic")
    prep.add_argument("--seed", type=non_negative_int, default=0, help="with --synthetic")
    prep.add_argument("--out", default="runs/features", help="folder of feature stores")
    prep.add_argument(
        "--batch-size", type=positive_int, default=16, help="segments per extraction call"
    )
    prep.add_argument("--workers", type=positive_int, default=2, help="decoding threads")
    prep.add_argument(
        "--shard-segments",
        type=positive_int,
        default=DEFAULT_SHARD_SEGMENTS,
        help=f"segments per feature shard file [default: {DEFAULT_SHARD_SEGMENTS}]",
    )
    prep.add_argument("--overwrite", action="store_true", help="rebuild an existing store")
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")
    prep.add_argument("--config", help=CONFIG_HELP)
    add_dataclass_options(prep, FeatureConfig, "feature settings")
    prep.set_defaults(func=cmd_prepare)

    check = sub.add_parser(
        "check", help="validate a dataset folder file by file, or a feature store's arrays"
    )
    add_dataset_options(check, "dataset (as for prepare): decode every file, report problems")
    check.add_argument(
        "--store", help="feature store: verify every array against its digest and the manifest"
    )
    add_dataclass_options(check, FeatureConfig, "feature settings (with --data-dir)")
    check.set_defaults(func=cmd_check)

    train = sub.add_parser(
        "train", help=f"train a registered model ({', '.join(model_names())}) on a feature store"
    )
    train.add_argument("--features", required=True, help="feature store (or prepare's --out)")
    train.add_argument("--run-dir", required=True, help="where the run is written")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its latest checkpoint, with its own settings; "
        "options given change only epochs (to train it further) and run options (feed, "
        "epoch driver, checkpoint steps)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--tensorboard", action="store_true", help=TENSORBOARD_HELP)
    train.add_argument("--config", help=CONFIG_HELP)
    if models:
        add_train_options(train, described)
    train.set_defaults(func=cmd_train)

    cv = sub.add_parser(
        "crossval", help="song-level k-fold cross-validation: train + evaluate every fold"
    )
    cv.add_argument("--config", help=CONFIG_HELP)
    add_dataset_options(cv, "dataset (as for prepare; features are prepared first)")
    cv.add_argument("--features", help="an existing feature store instead of --data-dir")
    cv.add_argument("--features-dir", help="where --data-dir's store goes (default: OUT/features)")
    cv.add_argument("--out", required=True, help="folder of the experiment (one run per fold)")
    cv.add_argument("--overwrite", action="store_true", help="replace an existing experiment")
    cv.add_argument("--no-progress", action="store_true", help="no progress bars")
    cv.add_argument("--tensorboard", action="store_true", help=TENSORBOARD_HELP)
    cv.add_argument("--window-hop", type=float, metavar="SECONDS", help=WINDOW_HOP_HELP)
    cv.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="R",
        help="R k-fold partitions, split seeds s..s+R-1, in one folder [default: 1]",
    )
    cv.add_argument("--no-audio", action="store_true", help=NO_AUDIO_HELP)
    add_dataclass_options(cv, FeatureConfig, "feature settings (with --data-dir)")
    if models:
        add_train_options(cv, described)
    cv.set_defaults(func=cmd_crossval)

    ens = sub.add_parser(
        "ensemble", help="several finished runs as one model (mean of their probabilities)"
    )
    ens.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ens.add_argument("--out", required=True, help="the ensemble's run directory")
    ens.set_defaults(func=cmd_ensemble)

    evaluate = sub.add_parser("evaluate", help="metrics, reports and confusion matrices of a run")
    evaluate.add_argument("--run-dir", required=True, help="the run (or ensemble) to evaluate")
    evaluate.add_argument(
        "--part",
        choices=("test", "val"),
        default="test",
        help="which part of the run's split to evaluate [default: test]",
    )
    add_legacy_option(evaluate, "--split", "--part", "part", choices=("test", "val"))
    evaluate.add_argument(
        "--features", help="another store (same feature settings); default: the run's own"
    )
    evaluate.add_argument("--window-hop", type=float, metavar="SECONDS", help=WINDOW_HOP_HELP)
    evaluate.add_argument("--no-audio", action="store_true", help=NO_AUDIO_HELP)
    evaluate.set_defaults(func=cmd_evaluate)

    compare = sub.add_parser(
        "compare",
        help="runs or crossval folders side by side, and paired tests on the same songs",
    )
    compare.add_argument(
        "run_dirs",
        nargs="+",
        metavar="FOLDER",
        help="evaluated runs or ensembles (their test songs), or crossval folders",
    )
    compare.add_argument(
        "--out",
        metavar="DIR",
        help="a folder for comparison.md, comparison.json and report.html",
    )
    compare.add_argument(
        "--seed", type=int, default=0, help="the bootstrap's random seed [default: 0]"
    )
    compare.add_argument(
        "--resamples", type=int, default=10_000, help="bootstrap draws [default: 10000]"
    )
    compare.add_argument("--overwrite", action="store_true", help="replace the comparison in --out")
    compare.add_argument("--no-audio", action="store_true", help=NO_AUDIO_HELP)
    compare.set_defaults(func=cmd_compare)

    predict = sub.add_parser("predict", help="genre probabilities of audio files or folders")
    predict.add_argument("paths", nargs="+", metavar="PATH")
    predict.add_argument("--run-dir", required=True, help="the run (or ensemble) that predicts")
    predict.add_argument(
        "--top-k", type=positive_int, default=3, help="genres listed per file [default: 3]"
    )
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.add_argument(
        "--window-hop",
        type=float,
        metavar="SECONDS",
        help="score windows of one segment every SECONDS (the genre over time; JSON: each "
        "window's start and probabilities) [default: non-overlapping segments]",
    )
    predict.add_argument(
        "--plot",
        metavar="OUT.png",
        help="draw each file's probabilities over time (time x genre); several files: "
        "OUT-<file name>.png each",
    )
    predict.add_argument(
        "--overwrite", action="store_true", help="--plot: replace existing PNGs (never an input)"
    )
    predict.set_defaults(func=cmd_predict)

    emb = sub.add_parser(
        "embed",
        help="per-segment and per-track embeddings (musicnn or a trained network) to an .npz",
    )
    emb.add_argument(
        "paths", nargs="+", metavar="PATH", help="audio files and folders, or one feature store"
    )
    emb.add_argument("--out", required=True, help="the .npz file to write")
    emb.add_argument(
        "--model",
        choices=("musicnn",),
        help="a pretrained tagger of the musicnn wheel (1,706 values per segment; VGG 1,280)",
    )
    emb.add_argument(
        "--weights",
        choices=checkpoints,
        help="--model musicnn: the wheel's checkpoint [default: MSD_musicnn]",
    )
    emb.add_argument("--run-dir", help="a trained network's run: its penultimate layer")
    emb.add_argument(
        "--segment-seconds",
        type=positive_float,
        help="musicnn on audio: segment length [default: 3, one musicnn patch]",
    )
    emb.add_argument("--overwrite", action="store_true", help="replace an existing file")
    emb.set_defaults(func=cmd_embed)

    exp = sub.add_parser(
        "export",
        help="a trained network as one StableHLO program (audio segments -> probabilities) "
        "or an ONNX graph (features -> probabilities)",
    )
    exp.add_argument("--run-dir", required=True, help="the run whose best network is exported")
    exp.add_argument("--out", required=True, help="the program's file (its sidecar: OUT.json)")
    exp.add_argument(
        "--format",
        choices=("stablehlo", "onnx"),
        default="stablehlo",
        help="stablehlo: jax.export, the whole path from audio; onnx: for onnxruntime, the "
        "network from features (pip install 'genre-jax[onnx]') [default: stablehlo]",
    )
    exp.add_argument("--overwrite", action="store_true", help="replace an existing export")
    exp.set_defaults(func=cmd_export)

    plot = sub.add_parser("plot", help="waveform and mel spectrogram of an audio file (PNG)")
    plot.add_argument("file")
    plot.add_argument("--out", help="PNG path, ending in .png (default: <file name>.png here)")
    plot.add_argument(
        "--overwrite", action="store_true", help="replace an existing PNG (never the input)"
    )
    plot.add_argument("--seconds", type=positive_float, help="only the first SECONDS")
    plot.set_defaults(func=cmd_plot)

    card = sub.add_parser(
        "card", help="write a run's, ensemble's or crossval folder's MODEL_CARD.md again"
    )
    card.add_argument("folder", help="the run directory, ensemble or crossval folder")
    card.set_defaults(func=cmd_card)

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline: data, features, every model with a demo recipe, comparison",
    )
    demo.add_argument("--data-dir", help="a real dataset (default: the built-in synthetic one)")
    demo.add_argument("--out", default="runs/demo", help="where it all goes [default: runs/demo]")
    demo.add_argument(
        "--tracks-per-genre", type=positive_int, default=10, help="synthetic dataset size"
    )
    demo.add_argument("--quick", action="store_true", help="2 epochs per network (smoke test)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    fetch = sub.add_parser(
        "fetch-musicnn",
        help="download the pretrained musicnn weights (musicnnsvm) with pip, once, into the cache",
    )
    fetch.add_argument("--wheel", help="use this local copy of musicnn-0.1.0-py3-none-any.whl")
    fetch.add_argument(
        "--checkpoint",
        default="MSD_musicnn",
        choices=[*checkpoints, "all"],
        help="the wheel's checkpoint to convert (default MSD_musicnn; 'all': the four)",
    )
    fetch.set_defaults(func=cmd_fetch_musicnn)

    bench = sub.add_parser("bench", help="time every path (python -m benchmarks.run)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="options of benchmarks.run")
    bench.set_defaults(func=cmd_bench)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"genre-jax {version('genre-jax')}"
    except PackageNotFoundError:
        return "genre-jax (not installed)"


WINDOW_HOP_HELP = (
    "song-level figures from the mean probability over overlapping windows of one segment "
    "starting every SECONDS (each song decoded again) [default: the store's segments]"
)


def _musicnn_checkpoints() -> list[str]:
    from genre_jax.models.musicnn import CHECKPOINTS

    return list(CHECKPOINTS)


def command_of(argv: Sequence[str] | None) -> str | None:
    """The first word of ``argv`` after the global options: the subcommand it names, or
    ``""`` when it names none (an unknown word builds the light parser too: argparse refuses
    it, listing the subcommands)."""
    words = list(sys.argv[1:] if argv is None else argv)
    while words and words[0].startswith("-"):
        del words[: 2 if words[0] in GLOBAL_VALUES else 1]
    return words[0] if words else ""


def described_models(argv: Sequence[str] | None) -> tuple[str, ...] | None:
    """For a ``--help`` of ``argv``, the registered models it names with ``--model`` (none for
    a bare ``train --help``, which then imports no model code); None when no help is asked."""
    words = list(sys.argv[1:] if argv is None else argv)
    if "-h" not in words and "--help" not in words:
        return None
    named = [b for a, b in itertools.pairwise(words) if a == "--model"]
    named += [w.split("=", 1)[1] for w in words if w.startswith("--model=")]
    return tuple(dict.fromkeys(n for n in named if n in model_names()))
