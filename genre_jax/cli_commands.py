"""The ``genre-jax`` subcommands, each a thin layer over an importable function.

Each takes the parsed options (:mod:`genre_jax.cli_parser`), resolves the settings (defaults,
then an experiment file, then the command line), calls the module that does the work and prints
what it made. Each imports its module when it runs: they pull in heavy dependencies (orbax,
scikit-learn, matplotlib, librosa, TensorFlow's checkpoint reader) that ``--help``, a usage
error and the other subcommands do not need.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.experiment import Experiment, load_experiment
from genre_jax.fileio import cache_dir
from genre_jax.options import dataclass_from_options as from_options
from genre_jax.options import given_options, train_config_from_options
from genre_jax.settings import require_same


def _ensure_synthetic(args: argparse.Namespace) -> Path:
    """The built-in synthetic dataset of ``--tracks-per-genre`` and ``--seed``, in the cache."""
    from genre_jax.datasets import generate_synthetic
    from genre_jax.synthetic import synthetic_data_dir

    out = synthetic_data_dir(args.tracks_per_genre, args.seed)
    print(f"Built-in synthetic dataset: {out}")
    generate_synthetic(out, tracks_per_genre=args.tracks_per_genre, seed=args.seed, progress=True)
    return out


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


# --- subcommands ---------------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> int:
    from genre_jax.datasets import generate_synthetic

    root = generate_synthetic(
        args.out, tracks_per_genre=args.tracks_per_genre, seed=args.seed, progress=True
    )
    print(f"Synthetic dataset ready: {root}")
    return 0


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
    from genre_jax.crossval import crossval, prepare_stores
    from genre_jax.crossval_folds import check_repeats

    if bool(args.features) == bool(args.data_dir):
        raise ConfigError("crossval: give exactly one of --data-dir DIR or --features STORE")
    experiment = _experiment(args)
    check_repeats(args.repeats, _train_configs(args, experiment)[0].split_seed)  # before stores
    if args.data_dir:
        bases = experiment.member_features if experiment else (None,)
        features = prepare_stores(
            args.data_dir,
            args.out,
            (from_options(FeatureConfig, args, base=base) for base in bases),
            features_dir=args.features_dir,
            subset=args.subset,
            progress=not args.no_progress,
        )
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
        repeats=args.repeats,
        audio=not args.no_audio,
    )
    if report:
        from genre_jax.crossval_report import crossval_markdown

        print(crossval_markdown(report))
        print(f"Wrote {Path(args.out) / 'report.json'}, report.md and report.html")
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
        args.run_dir,
        part=args.part,
        features=args.features,
        window_hop=args.window_hop,
        audio=not args.no_audio,
    )
    print(markdown_report(report))
    print(f"Wrote {report['report_file']} (and .md, .html) and confusion matrices in plots/")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from genre_jax.compare import compare

    written: list[str] = []  # said after the table
    result = compare(
        args.run_dirs,
        out=args.out,
        resamples=args.resamples,
        seed=args.seed,
        audio=not args.no_audio,
        overwrite=args.overwrite,
        log=written.append,
    )
    print(result["markdown"])
    for line in written:
        print(line)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from genre_jax.predict import predict_command

    return predict_command(
        args.paths,
        args.run_dir,
        top_k=args.top_k,
        as_json=args.json,
        window_hop=args.window_hop,
        plot=args.plot,
        overwrite=args.overwrite,
    )


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

    record = export_run(args.run_dir, args.out, overwrite=args.overwrite, format=args.format)
    print(
        f"Exported {record['model']['name']} ({len(record['genres'])} genres, "
        f"{record['segment_seconds']:g} s segments at {record['sample_rate']} Hz) to {args.out}"
    )
    loader = "genre_jax.exported_onnx" if args.format == "onnx" else "genre_jax.exported"
    print(
        f"Load it with genre_jax.load({str(args.out)!r}) (or {loader}.load); sidecar "
        f"{args.out}.json"
    )
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from genre_jax.model_card import write_card

    try:
        path = write_card(args.folder)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    print(f"wrote {path}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from genre_jax.audio_plots import plot_file

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
    return _benchmarks_main()(args.bench_args)


def _benchmarks_main():
    """``benchmarks.run.main`` of the checkout this package runs from: the benchmarks are not
    installed with the package (a top-level ``benchmarks`` would collide with other
    projects'), so ``genre-jax bench`` works from a checkout (an editable install) only."""
    import importlib
    import sys

    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "benchmarks" / "run.py").is_file() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        return importlib.import_module("benchmarks.run").main
    except ModuleNotFoundError as error:
        if error.name not in ("benchmarks", "benchmarks.run"):
            raise ConfigError(f"bench: the benchmarks import a missing module ({error})") from error
        raise ConfigError(
            "bench: the benchmarks are not installed with the package; run them from a "
            "checkout of the repository (python -m benchmarks.run, or genre-jax bench from an "
            "editable install: pip install -e .)"
        ) from error
