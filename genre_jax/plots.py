"""Figures as PNG files (matplotlib, non-interactive Agg backend), written atomically.

Every figure has a title and labelled axes with units. Each figure has a builder that returns
the :class:`~matplotlib.figure.Figure` (for inspection and tests) and a writer that saves it:

- :func:`training_curves`: accuracy and loss per epoch, training against validation;
- :func:`confusion_matrix`: counts, or fractions of each true genre's examples.

A track's waveform and mel spectrogram (``genre-jax plot``) are :mod:`genre_jax.audio_plots`'.
Builders use :class:`~matplotlib.figure.Figure` directly (no pyplot state), with constrained
layout, and the writers save them at their fixed size (``figsize x dpi`` pixels).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from genre_jax.fileio import atomic_write_bytes

CONFUSION_FIGSIZE = (8.0, 7.0)  # inches; at 100 dpi an 800 x 700 PNG
TRAINING_FIGSIZE = (11.0, 4.0)  # inches; at 100 dpi an 1100 x 400 PNG


def save_figure(
    figure: Figure, path: str | os.PathLike, dpi: int = 100, *, tight: bool = True
) -> None:
    """Render ``figure`` to PNG at ``path`` atomically and close it.

    With ``tight`` the image is cropped to the drawn content (its size then depends on the
    labels); without it the PNG is exactly ``figsize * dpi`` pixels.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def training_curves_figure(history: Sequence[dict[str, float]], title: str = "Training") -> Figure:
    """Accuracy (%) and loss (nats) per epoch, training against validation (the seed's figures).

    ``history`` holds one dict per epoch with ``epoch``, ``accuracy``, ``val_accuracy``,
    ``loss`` and ``val_loss`` (accuracies as fractions).
    """
    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=TRAINING_FIGSIZE, layout="constrained")
    acc_ax, loss_ax = figure.subplots(1, 2)
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
    return figure


def training_curves(
    history: Sequence[dict[str, float]], path: str | os.PathLike, title: str = "Training"
) -> None:
    """Write :func:`training_curves_figure` to ``path`` as an 1100 x 400 PNG."""
    save_figure(training_curves_figure(history, title), path, tight=False)


# --- confusion matrix -----------------------------------------------------------------------------


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum, float64 (rows of zero support stay zeros, no warning)."""
    matrix = np.asarray(matrix, np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def _check_matrix(matrix: np.ndarray, genres: Sequence[str], normalize: bool) -> np.ndarray:
    matrix = np.asarray(matrix, np.float64)
    n = len(genres)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape}: expected ({n}, {n})")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise ValueError("confusion matrix: entries must be finite and non-negative")
    if not normalize and not np.array_equal(matrix, np.round(matrix)):
        raise ValueError("confusion matrix of counts: entries must be whole numbers")
    return matrix


def confusion_matrix_figure(
    matrix: np.ndarray,
    genres: Sequence[str],
    title: str,
    *,
    normalize: bool = False,
    unit: str = "examples",
) -> Figure:
    """A confusion matrix: true genre (rows, y) against predicted genre (columns, x).

    Args:
        matrix: ``(classes, classes)`` counts; ``matrix[i, j]`` examples of genre ``i``
            predicted as genre ``j``.
        genres: the class names, in index order (the tick labels).
        title: the figure's title.
        normalize: show each row as fractions of its true genre's examples (0-1 colour
            scale, two decimals in the cells); otherwise counts (integers in the cells).
        unit: what is counted (``segments``, ``tracks``), for the colour bar's label.
    """
    counts = _check_matrix(matrix, genres, normalize)
    values = normalize_rows(counts) if normalize else counts
    vmax = 1.0 if normalize else max(1.0, float(values.max()))
    n = len(genres)
    figure = Figure(figsize=CONFUSION_FIGSIZE, layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    size = 9 if n <= 10 else max(4, 90 // n)
    for i in range(n):
        for j in range(n):
            value = values[i, j]
            text = f"{value:.2f}" if normalize else str(int(value))
            colour = "white" if value > 0.5 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=size)
    ax.set_xticks(range(n), labels=list(genres), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(genres))
    ax.set_xlabel("predicted genre")
    ax.set_ylabel("true genre")
    ax.set_title(title)
    label = f"fraction of the true genre's {unit}" if normalize else f"{unit} (count)"
    figure.colorbar(image, ax=ax, label=label)
    return figure


def confusion_matrix(
    matrix: np.ndarray,
    genres: Sequence[str],
    path: str | os.PathLike,
    title: str,
    *,
    normalize: bool = False,
    unit: str = "examples",
) -> None:
    """Write :func:`confusion_matrix_figure` to ``path`` as an 800 x 700 PNG."""
    figure = confusion_matrix_figure(matrix, genres, title, normalize=normalize, unit=unit)
    save_figure(figure, path, tight=False)


def confusion_matrices(
    matrix: np.ndarray,
    genres: Sequence[str],
    path_for: Callable[[str], str | os.PathLike],
    title_for: Callable[[str], str],
) -> None:
    """Write the matrix twice, as counts and row-normalised, at ``path_for(kind)`` titled
    ``title_for(kind)``, where ``kind`` is ``counts`` or ``normalized``."""
    for normalize in (False, True):
        kind = "normalized" if normalize else "counts"
        confusion_matrix(matrix, genres, path_for(kind), title_for(kind), normalize=normalize)
