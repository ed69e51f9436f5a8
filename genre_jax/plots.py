"""Figures as PNG files (matplotlib, non-interactive Agg backend), written atomically.

Every figure has a title and labelled axes with units.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from genre_jax.fileio import atomic_write_bytes


def save_figure(figure: plt.Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Render ``figure`` to PNG at ``path`` atomically and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def training_curves(
    history: Sequence[dict[str, float]], path: str | os.PathLike, title: str = "Training"
) -> None:
    """Accuracy and loss per epoch, training against validation (as in the seed's figures)."""
    epochs = [h["epoch"] for h in history]
    figure, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((acc_ax, "accuracy", "accuracy"), (loss_ax, "loss", "loss")):
        ax.plot(
            epochs,
            [100 * h[key] if key == "accuracy" else h[key] for h in history],
            label=f"training {label}",
        )
        ax.plot(
            epochs,
            [100 * h[f"val_{key}"] if key == "accuracy" else h[f"val_{key}"] for h in history],
            label=f"validation {label}",
        )
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_title("Accuracy")
    loss_ax.set_ylabel("cross-entropy loss (nats)")
    loss_ax.set_title("Loss")
    figure.suptitle(title)
    save_figure(figure, path)
