"""``genre-jax demo``: the whole pipeline in one command, the first thing a newcomer runs.

Built-in synthetic data (generated once, cached) or a real folder; prepare the feature stores
(the seed's MFCCs, and 128-band log-mel for our models); train the seed's CNN, GRU and SVM and
our ``melstat`` and ``statsvm``; evaluate each on held-out songs; print the comparison table
with the seed's reported figures beside it, and where the plots and runs are.

On synthetic data the seed's networks use a short schedule (fewer epochs, a larger learning
rate) so the demo finishes in minutes on a laptop CPU; on real data (``--data-dir``) they use
the seed's full recipe (100 epochs, Adam 1e-4, batch 32, early stopping with patience 20).
Our models use their own recipes (:data:`MELSTAT_RECIPE` and :data:`STATSVM_RECIPE`, those of
``configs/gtzan-dev-melstat.json`` and ``configs/gtzan-dev-statsvm.json``), melstat with fewer
epochs on synthetic data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genre_jax.config import FeatureConfig, TrainConfig
from genre_jax.models import NETWORKS

MODELS = ("cnn", "gru", "svm", "melstat", "statsvm")

# Our model's recipe (the seed's recipe is the default TrainConfig).
MELSTAT_RECIPE: dict[str, Any] = {
    "epochs": 60,
    "learning_rate": 1e-3,
    "lr_schedule": "cosine",
    "warmup_steps": 60,
    "patience": 0,
    "select": "last",
    "time_flip_mode": "random",
    "label_smoothing": 0.1,
    "specaug_masks": 2,
}
STATSVM_RECIPE: dict[str, Any] = {"svm_c": 3.0, "harmonic_percussive": True, "time_flip": False}
RECIPES: dict[str, dict[str, Any]] = {"melstat": MELSTAT_RECIPE, "statsvm": STATSVM_RECIPE}

# Short schedule for the synthetic demo.
SYNTHETIC_SCHEDULE: dict[str, dict[str, Any]] = {
    "cnn": {"epochs": 20, "learning_rate": 1e-3},
    "gru": {"epochs": 30, "learning_rate": 1e-3},
    "svm": {},
    "melstat": {"epochs": 20, "warmup_steps": 20},
    "statsvm": {},
}

# Feature settings per model: the seed's MFCCs, or 128 log-mel bands (same segments).
LOGMEL = FeatureConfig(kind="logmel", n_mels=128)
MODEL_FEATURES: dict[str, FeatureConfig] = {"melstat": LOGMEL, "statsvm": LOGMEL}


def demo_configs(real_data: bool, quick: bool = False) -> dict[str, TrainConfig]:
    """The train config of each model: its recipe for real data, shorter for synthetic data."""
    configs = {}
    for model in MODELS:
        config = TrainConfig(model=model, **RECIPES.get(model, {}))
        if not real_data:
            config = dataclasses.replace(config, **SYNTHETIC_SCHEDULE[model])
        if quick and model in NETWORKS:
            config = dataclasses.replace(config, epochs=2, patience=0)
        configs[model] = config
    return configs


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
    from genre_jax.cli import synthetic_data_dir
    from genre_jax.datasets import generate_synthetic
    from genre_jax.evaluate import compare_runs, comparison_markdown, evaluate_run
    from genre_jax.fileio import atomic_write_bytes
    from genre_jax.runner import train_run
    from genre_jax.store import prepare

    out_dir = Path(out_dir)
    synthetic = data_dir is None or _is_synthetic(data_dir)
    if data_dir is None:
        data_dir = synthetic_data_dir(tracks_per_genre, seed=0)
        log(f"Built-in synthetic dataset ({tracks_per_genre} tracks per genre): {data_dir}")
        generate_synthetic(data_dir, tracks_per_genre=tracks_per_genre, progress=progress)
    stores: dict[FeatureConfig, Any] = {}
    runs = []
    for model, config in demo_configs(real_data=not synthetic, quick=quick).items():
        features = MODEL_FEATURES.get(model, FeatureConfig())
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
    from genre_jax.synthetic import MARKER_NAME

    return (Path(data_dir) / MARKER_NAME).is_file()
