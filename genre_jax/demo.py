"""``genre-jax demo``: the whole pipeline in one command, the first thing a newcomer runs.

Built-in synthetic data (generated once, cached) or a real folder; prepare the feature stores
each model's demo recipe asks for (the seed's MFCCs, and 128-band log-mel for our models);
train every registered model that has a demo recipe (:class:`~genre_jax.models.DemoRecipe`:
the seed's CNN, GRU and SVM, our ``melstat`` and ``statsvm``); evaluate each on held-out
songs; print the comparison table with the seed's reported figures beside it, and where the
plots and runs are.

On real data (``--data-dir``) each model runs its recipe (the seed's: 100 epochs, Adam 1e-4,
batch 32, early stopping with patience 20; ours: those of ``configs/gtzan-dev-melstat.json``
and ``configs/gtzan-dev-statsvm.json``); on synthetic data the networks use a shorter
schedule (the recipe's ``synthetic`` settings, early stopping's patience scaled with the
epochs) so the demo finishes in minutes on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from genre_jax.config import ConfigError, FeatureConfig, TrainConfig
from genre_jax.datasets import generate_synthetic
from genre_jax.evaluate import compare_runs, evaluate_run
from genre_jax.fileio import atomic_write_bytes
from genre_jax.models import NETWORK, get_spec, specs
from genre_jax.prepare import prepare
from genre_jax.reports import comparison_markdown
from genre_jax.runner import train_run
from genre_jax.synthetic import MARKER_NAME, synthetic_data_dir

QUICK = {"epochs": 2, "patience": 0}  # --quick: each network's smoke test


def demo_models() -> tuple[str, ...]:
    """The registered models the demo runs (those with a demo recipe), in registry order."""
    return tuple(spec.name for spec in specs() if spec.demo is not None)


def demo_features(model: str) -> FeatureConfig:
    """The feature settings of ``model``'s demo recipe."""
    spec = get_spec(model)
    if spec.demo is None:
        raise ConfigError(f"model={model!r}: has no demo recipe (its spec's demo is None)")
    return FeatureConfig(**spec.demo.features)


def demo_configs(real_data: bool, quick: bool = False) -> dict[str, TrainConfig]:
    """The train config of each demo model: its recipe for real data, shorter for synthetic
    data (:func:`synthetic_settings`), 2 epochs per network with ``quick``."""
    configs = {}
    for spec in specs():
        if spec.demo is None:
            continue
        settings = {"model": spec.name, **spec.demo.train}
        if not real_data:
            settings.update(synthetic_settings(settings, spec.demo.synthetic))
        if quick and spec.family == NETWORK:
            settings.update(QUICK)
        configs[spec.name] = TrainConfig.from_flat(settings)
    return configs


def synthetic_settings(recipe: Mapping[str, Any], synthetic: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a recipe changes for the synthetic data: its ``synthetic`` ones, and the
    early-stopping patience scaled with the epochs where those shorten the schedule and do not
    set it.

    The scaled patience keeps the recipe's ratio of patience to epochs (the seed's 20 of 100:
    4 of the CNN's 20 synthetic epochs, 6 of the GRU's 30), rounded and at least 1; a recipe
    without early stopping (patience 0) keeps none. Unscaled, the seed's 20 epochs of patience
    could stop a 30-epoch run only when its best epoch came in the first 10.
    """
    settings = dict(synthetic)
    if "epochs" in settings and "patience" not in settings:
        full = TrainConfig.from_flat(dict(recipe))
        if full.patience and settings["epochs"] < full.epochs:
            scaled = round(full.patience * settings["epochs"] / full.epochs)
            settings["patience"] = max(1, scaled)
    return settings


def run_demo(
    out_dir: str | Path = "runs/demo",
    data_dir: str | Path | None = None,
    *,
    tracks_per_genre: int = 10,
    quick: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run the demo and return the comparison rows (also in ``<out>/comparison.md``).

    ``quick`` (for tests) trains each network for 2 epochs; ``tracks_per_genre`` sizes the
    synthetic dataset.
    """
    out_dir = Path(out_dir)
    synthetic = data_dir is None or _is_synthetic(data_dir)
    if data_dir is None:
        data_dir = synthetic_data_dir(tracks_per_genre, seed=0)
        log(f"Built-in synthetic dataset ({tracks_per_genre} tracks per genre): {data_dir}")
        generate_synthetic(data_dir, tracks_per_genre=tracks_per_genre, progress=progress)
    stores: dict[FeatureConfig, Any] = {}
    runs = []
    for model, config in demo_configs(real_data=not synthetic, quick=quick).items():
        features = demo_features(model)
        if features not in stores:
            stores[features] = prepare(
                data_dir, out_dir / "features", features, progress=progress, log=log
            )
        run_dir = out_dir / model
        log(f"\n== {model.upper()} ==")
        store = stores[features]
        train_run(store.path, run_dir, config, overwrite=True, progress=progress, log=log)
        report = evaluate_run(run_dir)
        log(
            f"{model}: song accuracy {100 * report['song_accuracy']:.1f} %, segment accuracy "
            f"{100 * report['segment_accuracy']:.1f} % on {report['songs']} held-out songs"
        )
        runs.append(run_dir)
    rows = compare_runs(runs)
    table = comparison_markdown(rows)
    atomic_write_bytes(out_dir / "comparison.md", table.encode())
    log("\n" + table)
    log(f"Runs: {', '.join(str(r) for r in runs)}")
    log(f"Plots: {out_dir}/<model>/plots/ (training curves, confusion matrices)")
    log(f"Reports: {out_dir}/<model>/report.md; comparison: {out_dir / 'comparison.md'}")
    return rows


def _is_synthetic(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` is a dataset written by :func:`generate_synthetic`."""
    return (Path(data_dir) / MARKER_NAME).is_file()
