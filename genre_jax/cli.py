"""The ``genre-jax`` command. Each subcommand is a thin layer over an importable function.

Options are generated from the settings dataclasses (:mod:`genre_jax.options`): every feature
setting (``--n-mfcc``, ``--segment-seconds`` ...), every shared training setting, ``--model``
with the registered models, and each model's own settings (``--model.c`` ...).

Each subcommand imports its module when it runs: they pull in heavy dependencies (orbax,
scikit-learn, matplotlib, librosa, TensorFlow's checkpoint reader) that ``--help``, a usage
error and the other subcommands do not need.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path

from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.experiment import Experiment, load_experiment
from genre_jax.fileio import OutputDirError, cache_dir
from genre_jax.models import load_plugins, model_names
from genre_jax.options import (
    add_dataclass_options,
    add_legacy_option,
    add_train_options,
    given_options,
    train_config_from_options,
)
from genre_jax.options import dataclass_from_options as from_options
from genre_jax.settings import require_same
from genre_jax.store_shards import DEFAULT_SHARD_SEGMENTS
from genre_jax.tables import FMA_SUBSETS


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors reported as one line (exit 2) rather than a traceback; imported lazily."""
    from genre_jax.audio import AudioError
    from genre_jax.checkpoint import CheckpointError
    from genre_jax.datasets import DatasetError
    from genre_jax.models.musicnn import WeightsError
    from genre_jax.models.sklearn_io import UntrustedModelError
    from genre_jax.runner import RunDirError
    from genre_jax.store_checks import StoreError
    from genre_jax.tf_checkpoint import TFCheckpointError
    from genre_jax.train import TrainingError

    return (
        ConfigError,
        DatasetError,
        StoreError,
        AudioError,
        OutputDirError,
        CheckpointError,
        UntrustedModelError,
        RunDirError,
        TrainingError,
        WeightsError,
        TFCheckpointError,
    )


def _describe_os_error(error: OSError) -> str:
    """``runs/x: Permission denied``: an operating-system error in one line."""
    where = error.filename if error.filename is not None else ""
    reason = error.strerror or type(error).__name__
    return f"{where}: {reason}" if where else str(error) or reason


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


def _ensure_synthetic(args: argparse.Namespace) -> Path:
    from genre_jax.datasets import generate_synthetic
    from genre_jax.synthetic import synthetic_data_dir

    out = synthetic_data_dir(args.tracks_per_genre, args.seed)
    print(f"Built-in synthetic dataset: {out}")
    generate_synthetic(out, tracks_per_genre=args.tracks_per_genre, seed=args.seed, progress=True)
    return out


# --- subcommands ---------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> int:
    from genre_jax.datasets import generate_synthetic

    root = generate_synthetic(
        args.out, tracks_per_genre=args.tracks_per_genre, seed=args.seed, progress=True
    )
    print(f"Synthetic dataset ready: {root}")
    return 0


def _experiment(args: argparse.Namespace) -> Experiment | None:
    """The experiment file of ``--config``, read once per command (None without one)."""
    return load_experiment(args.config) if getattr(args, "config", None) else None


def _provenance(args: argparse.Namespace, experiment: Experiment | None) -> dict:
    """What a report says about how a run was asked for: the experiment file, its own
    description and protocol, and every setting given beside it on the command line."""
    return {
        "experiment_file": str(args.config) if getattr(args, "config", None) else None,
        "description": experiment.description if experiment else "",
        "protocol": experiment.protocol if experiment else "",
        "given": given_options(args),
    }


def _feature_config(args: argparse.Namespace, experiment: Experiment | None) -> FeatureConfig:
    """Feature settings: defaults, then the experiment file's, then the command line's."""
    base = experiment.features if experiment is not None else None
    return from_options(FeatureConfig, args, base=base)


def _train_configs(args: argparse.Namespace, experiment: Experiment | None) -> list[TrainConfig]:
    """Training settings: defaults, then the experiment file's (each member's, for an
    ensemble), then the command line's, which apply to every member."""
    bases = [m.train for m in experiment.members] if experiment and experiment.is_ensemble else []
    if not bases:
        bases = [experiment.train if experiment else None]
    return [train_config_from_options(args, base) for base in bases]


def _require_experiment_features(
    args: argparse.Namespace, experiment: Experiment | None, features: str | Path
) -> None:
    """An experiment file that names feature settings must match the store it trains on."""
    from genre_jax.store import FeatureStore, resolve_store

    if experiment is not None and experiment.features is not None:
        store = FeatureStore.open(resolve_store(features))
        require_same(
            experiment.features,
            store.config,
            f"feature store {store.path} against experiment file {args.config}",
        )


def add_dataset_options(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--data-dir`` and ``--subset``: where a dataset is and, for FMA, which subset."""
    parser.add_argument("--data-dir", help=help_text)
    parser.add_argument(
        "--subset",
        choices=FMA_SUBSETS,
        help="FMA only: the subset (small, medium or large) [default: that of the one audio "
        "folder, fma_<subset>, there]",
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    from genre_jax.prepare import prepare

    if args.synthetic == bool(args.data_dir):
        raise ConfigError("prepare: give exactly one of --data-dir DIR or --synthetic")
    data_dir = _ensure_synthetic(args) if args.synthetic else Path(args.data_dir)
    config = _feature_config(args, _experiment(args))
    store = prepare(
        data_dir,
        args.out,
        config,
        batch_size=args.batch_size,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        subset=args.subset,
        shard_segments=args.shard_segments,
    )
    print(f"Store: {store.path}")
    print(f"  features {tuple(store.features.shape)}  genres {', '.join(store.genres)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if bool(args.data_dir) == bool(args.store):
        raise ConfigError("check: give exactly one of --data-dir DIR or --store STORE")
    if args.store and args.subset is not None:
        raise ConfigError("check: --subset chooses FMA's subset with --data-dir, not --store")
    if args.store:
        from genre_jax.store import resolve_store, verify_store

        store = verify_store(resolve_store(args.store))
        digests = (
            f"{', '.join(store.verified)} match their digests"
            if store.verified
            else "no digests recorded (a store written before they were)"
        )
        print(
            f"{store.path}: {digests}; {len(store)} segments of {len(store.manifest.tracks)} "
            "tracks, every value finite, labels and indices consistent"
        )
        return 0
    from genre_jax.check import check_command

    return check_command(args.data_dir, from_options(FeatureConfig, args), subset=args.subset)


def cmd_train(args: argparse.Namespace) -> int:
    from genre_jax.runner import train_run

    experiment = _experiment(args)
    if experiment is not None and experiment.is_ensemble:
        raise ConfigError(
            f"experiment file {args.config}: lists ensemble members; train each member's own "
            "file, or run the ensemble with crossval"
        )
    if args.resume and experiment is None:  # the run's own settings, the options given on top
        from genre_jax.runner import saved_train_config

        saved = saved_train_config(args.run_dir)
        config = train_config_from_options(args, saved)
    else:
        (config,) = _train_configs(args, experiment)
    _require_experiment_features(args, experiment, args.features)
    train_run(
        args.features,
        args.run_dir,
        config,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        provenance=_provenance(args, experiment),
        tensorboard=args.tensorboard,
    )
    print(f"Run: {args.run_dir}")
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    from genre_jax.crossval import crossval
    from genre_jax.prepare import prepare

    if bool(args.features) == bool(args.data_dir):
        raise ConfigError("crossval: give exactly one of --data-dir DIR or --features STORE")
    experiment = _experiment(args)
    if args.data_dir:
        from genre_jax.crossval import FEATURES_DIR

        features_dir = args.features_dir or Path(args.out) / FEATURES_DIR
        prepared: dict[FeatureConfig, Path] = {}  # one store per distinct feature setting
        features = []
        for base in experiment.member_features if experiment else (None,):
            config = from_options(FeatureConfig, args, base=base)
            if config not in prepared:
                store = prepare(
                    args.data_dir,
                    features_dir,
                    config,
                    progress=not args.no_progress,
                    subset=args.subset,
                )
                prepared[config] = store.path
            features.append(prepared[config])
    else:
        features = args.features
        if experiment is not None and len(set(experiment.member_features)) > 1:
            raise ConfigError(
                f"experiment file {args.config}: its members read different features, which one "
                "store cannot hold; give --data-dir, and a store is prepared for each"
            )
        _require_experiment_features(args, experiment, features)
    report = crossval(
        features,
        args.out,
        _train_configs(args, experiment),
        provenance=_provenance(args, experiment),
        tensorboard=args.tensorboard,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        window_hop=args.window_hop,
    )
    if report:
        from genre_jax.crossval import crossval_markdown

        print(crossval_markdown(report))
        print(f"Wrote {Path(args.out) / 'report.json'} and report.md")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from genre_jax.ensemble import make_ensemble

    config = make_ensemble(args.run_dirs, args.out)
    print(f"Ensemble of {', '.join(config['member_models'])}: {args.out}")
    print(f"Evaluate it with: genre-jax evaluate --run-dir {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from genre_jax.evaluate import evaluate_run
    from genre_jax.reports import markdown_report

    report = evaluate_run(
        args.run_dir, part=args.part, features=args.features, window_hop=args.window_hop
    )
    print(markdown_report(report))
    print(f"Wrote {report['report_file']} (and .md) and confusion matrices in plots/")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from genre_jax.evaluate import compare_runs
    from genre_jax.reports import comparison_markdown

    table = comparison_markdown(compare_runs(args.run_dirs))
    print(table)
    if args.out:
        from genre_jax.fileio import atomic_write_bytes

        atomic_write_bytes(args.out, table.encode())
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from genre_jax.predict import predict_command

    return predict_command(args.paths, args.run_dir, top_k=args.top_k, as_json=args.json)


def cmd_embed(args: argparse.Namespace) -> int:
    from genre_jax.embed import embed_command

    return embed_command(
        args.paths,
        args.out,
        model=args.model,
        run_dir=args.run_dir,
        segment_seconds=args.segment_seconds,
        weights=args.weights,
        overwrite=args.overwrite,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from genre_jax.export import export_run

    record = export_run(args.run_dir, args.out, overwrite=args.overwrite)
    print(
        f"Exported {record['model']['name']} ({len(record['genres'])} genres, "
        f"{record['segment_seconds']:g} s segments at {record['sample_rate']} Hz) to {args.out}"
    )
    print(f"Load it with genre_jax.exported.load({str(args.out)!r}); sidecar {args.out}.json")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from genre_jax.plots import plot_file

    out = args.out or Path(args.file).with_suffix(".png").name
    print(f"Wrote {plot_file(args.file, out, seconds=args.seconds, overwrite=args.overwrite)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from genre_jax.demo import run_demo

    run_demo(
        args.out,
        args.data_dir,
        tracks_per_genre=args.tracks_per_genre,
        quick=args.quick,
        progress=not args.no_progress,
    )
    return 0


def cmd_fetch_musicnn(args: argparse.Namespace) -> int:
    from genre_jax.models import musicnn

    names = list(musicnn.CHECKPOINTS) if args.checkpoint == "all" else [args.checkpoint]
    wheel = args.wheel or os.environ.get(musicnn.WHEEL_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if wheel is None and not musicnn.cached_weights_path(name).is_file():
                wheel = musicnn.download_wheel(Path(tmp))  # once for all the checkpoints
            weights = musicnn.load_weights(wheel, checkpoint=name)
            count = sum(v.size for v in weights.values())
            print(f"{name}: {len(weights)} arrays, {count:,} weights, in {cache_dir()}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        from benchmarks.run import main as bench_main
    except ImportError as error:
        raise ConfigError(f"bench: the benchmarks package is not importable ({error})") from error
    return bench_main(args.bench_args)


# --- parser -----------------------------------------------------------------------------------


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


MODEL_COMMANDS = ("train", "crossval")  # the subcommands with every model's settings
GLOBAL_VALUES = ("--coordinator", "--num-processes", "--process-id")  # options with a value


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. ``command`` is the subcommand about to be parsed (``""``: none, as for
    ``genre-jax --help``; ``None``: any, everything is built): the other subcommands are built
    without what imports model code (every model's settings, musicnn's checkpoint names),
    since argparse only reads the one named."""
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
        add_train_options(train)
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
    add_dataclass_options(cv, FeatureConfig, "feature settings (with --data-dir)")
    if models:
        add_train_options(cv)
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
    evaluate.set_defaults(func=cmd_evaluate)

    compare = sub.add_parser("compare", help="runs side by side, with the seed's figures")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--out", help="also write the table as markdown here")
    compare.set_defaults(func=cmd_compare)

    predict = sub.add_parser("predict", help="genre probabilities of audio files or folders")
    predict.add_argument("paths", nargs="+", metavar="PATH")
    predict.add_argument("--run-dir", required=True, help="the run (or ensemble) that predicts")
    predict.add_argument(
        "--top-k", type=positive_int, default=3, help="genres listed per file [default: 3]"
    )
    predict.add_argument("--json", action="store_true", help="print JSON")
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
        help="a trained network as one StableHLO program: audio segments -> probabilities",
    )
    exp.add_argument("--run-dir", required=True, help="the run whose best network is exported")
    exp.add_argument("--out", required=True, help="the program's file (its sidecar: OUT.json)")
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
RESUMABLE = {"train": "resume with --resume", "crossval": "run the same command to continue"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user's error is one line on standard error and exit status 2; an
    interrupt (Ctrl-C) is one line and 130; a closed output pipe (``| head``) ends quietly.

    Models of one's own (``GENRE_JAX_MODELS``, entry points) are loaded first, so that their
    names and settings are options like the built-in ones."""
    try:
        load_plugins()
    except ConfigError as error:
        print(f"genre-jax: error: {error}", file=sys.stderr)
        return 2
    args = build_parser(_command_of(argv)).parse_args(argv)
    try:
        from genre_jax.parallel import initialize

        initialize(args.coordinator, args.num_processes, args.process_id)
        return args.func(args)
    except _user_errors() as error:
        print(f"genre-jax {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``predict --json | head -1``): nothing more to say to it, and
        # the interpreter must not complain when it flushes standard output at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as error:  # a read-only or full disk, a folder where a file belongs ...
        print(f"genre-jax {args.command}: error: {_describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = RESUMABLE.get(args.command)
        print(
            f"genre-jax {args.command}: interrupted" + (f"; {hint}" if hint else ""),
            file=sys.stderr,
        )
        _exit_now(130)


def _musicnn_checkpoints() -> list[str]:
    from genre_jax.models.musicnn import CHECKPOINTS

    return list(CHECKPOINTS)


def _command_of(argv: Sequence[str] | None) -> str | None:
    """The first word of ``argv`` after the global options: the subcommand it names, or
    ``""`` when it names none (an unknown word builds the light parser too: argparse refuses
    it, listing the subcommands)."""
    words = list(sys.argv[1:] if argv is None else argv)
    while words and words[0].startswith("-"):
        del words[: 2 if words[0] in GLOBAL_VALUES else 1]
    return words[0] if words else ""


def _exit_now(status: int) -> typing.NoReturn:
    """End the process at once, without the interpreter's teardown.

    Only after an interrupt, when every write has already been finished or abandoned whole
    (checkpoints are closed and metrics fsynced in ``finally`` blocks, other files are written
    atomically): computations XLA dispatched before the interrupt may still be running, and
    tearing the runtime down under them crashed the process (SIGSEGV instead of status 130 in
    4 of 6 interrupted CNN trainings on this machine)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
