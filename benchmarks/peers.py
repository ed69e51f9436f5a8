"""Peers: the seed's CNN and GRU in Keras (TensorFlow) and PyTorch, trained next to ours.

Each peer builds the seed's exact network (layer list of ``reference/seed-report.txt``), Adam
1e-4 (epsilon 1e-7, Keras's), sparse categorical cross-entropy, batch 32 (``Options.peer_batch``;
the quick preset uses 8; the CNN again at ``Options.peer_large_batch``, 256), input (431, 13). For
every model, ours (``make_train_epoch`` with the model's ``auto`` driver) and each installed peer
train on the same shuffled samples per call, timed round-robin in one loop so that they share
the machine's noise; the ratios are ours / peer in samples per second.

- Keras: ``model.fit(x, y, batch_size=32, epochs=1, shuffle=True)``, the seed's own loop, with
  Keras's default compilation (``jit_compile="auto"``; the row records what it chose);
- PyTorch: an eager loop of ``zero_grad``, forward, ``backward``, ``step`` over shuffled
  batches, twice: with torch's default thread count (one per core) and with one thread. On a
  small shared machine torch's OpenMP barriers collapse when another process holds a core
  (the two-thread GRU drops about tenfold), so the faster of the two is the fair peer.

A peer that is not installed (or fails to import) gives a ``skipped`` row saying why; they
install with the ``bench-peers`` extra.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import CLASSES, COEFFS, FRAMES, Options
from benchmarks.timing import Row, progress, ratio, report, time_interleaved
from benchmarks.training import epoch_runner, parameter_counts
from genre_jax.config import TrainConfig
from genre_jax.train import epoch_driver

MODELS = ("cnn", "gru")
Trainer = tuple[Callable[[], None], dict[str, Any]]  # (one epoch over the data, its setting)


# --- PyTorch -------------------------------------------------------------------------------------


def load_torch_before_tensorflow() -> None:
    """Import torch, and triton where torch's CUDA build brings it, before TensorFlow loads.

    Torch's first optimiser step imports triton, whose LLVM crashes the process (a segfault in
    ``libtriton.so``) when TensorFlow's is already loaded (torch 2.14 from PyPI beside
    tensorflow-cpu 2.21); loaded the other way round both run. A full benchmark run loads
    TensorFlow in the ``musicnn`` path, before the peers. Nothing happens without torch.
    """
    for name in ("torch", "triton"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def torch_model(name: str) -> Any:
    """The seed's network in PyTorch, logits out (Keras's BatchNorm momentum and epsilon)."""
    import torch
    from torch import nn

    def norm(cls: type, channels: int) -> nn.Module:
        return cls(channels, eps=1e-3, momentum=0.01)  # Keras momentum 0.99 = torch 0.01

    def head(width: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(width, 128), nn.ReLU(), nn.Dropout(0.4), nn.Linear(128, CLASSES)
        )

    class SeedCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            blocks: list[nn.Module] = []
            for c_in, c_out in ((1, 32), (32, 64), (64, 64)):
                conv = nn.Conv2d(c_in, c_out, 3, padding=1)
                blocks += [conv, nn.ReLU(), norm(nn.BatchNorm2d, c_out), nn.MaxPool2d(2)]
                blocks.append(nn.Dropout(0.3))
            self.blocks, self.head = nn.Sequential(*blocks), head(64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.blocks(x.unsqueeze(1)).mean(dim=(2, 3)))

    class SeedGRU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru1 = nn.GRU(COEFFS, 64, batch_first=True)
            self.gru2 = nn.GRU(64, 96, batch_first=True)
            self.norm1, self.norm2 = norm(nn.BatchNorm1d, 64), norm(nn.BatchNorm1d, 96)
            self.drop, self.head = nn.Dropout(0.3), head(96)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm1(self.drop(self.gru1(x)[0]).transpose(1, 2)).transpose(1, 2)
            h = self.norm2(self.drop(self.gru2(h)[0]).transpose(1, 2))  # (batch, 96, time)
            return self.head(h.mean(dim=2))

    return SeedCNN() if name == "cnn" else SeedGRU()


@functools.cache
def _torch_default_threads() -> int:
    import torch

    return torch.get_num_threads()  # read once, before any row changes it


def torch_trainer(
    name: str, x: np.ndarray, y: np.ndarray, batch: int, threads: int | None = None
) -> Trainer:
    """An eager PyTorch epoch over ``x``, ``y`` in shuffled batches, on ``threads`` threads
    (torch's default when None), set at the start of every epoch."""
    import torch

    threads = threads or _torch_default_threads()
    torch.manual_seed(0)
    net = torch_model(name).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs, ys = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    generator = torch.Generator().manual_seed(0)

    def epoch() -> None:
        torch.set_num_threads(threads)
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), batch):
            rows = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(xs[rows]), ys[rows]).backward()
            optimizer.step()

    stats = sum(b.numel() for n, b in net.named_buffers() if n.endswith(("_mean", "_var")))
    params = sum(p.numel() for p in net.parameters())
    setting = {
        "framework": f"torch {torch.__version__}",
        "mode": "eager",
        "threads": threads,
        "keras_count": int(params + stats),
    }
    return epoch, setting


# --- Keras (TensorFlow) --------------------------------------------------------------------------


def _keras() -> Any:
    """Keras on its TensorFlow backend (unless ``KERAS_BACKEND`` says otherwise), TF quiet."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def keras_model(name: str) -> Any:
    """The seed's network as the seed wrote it: Keras Sequential, softmax out, compiled."""
    keras = _keras()
    layers = keras.layers

    if name == "cnn":
        stack: list[Any] = [keras.Input((FRAMES, COEFFS, 1))]
        for channels in (32, 64, 64):
            conv = layers.Conv2D(channels, (3, 3), activation="relu", padding="same")
            stack += [conv, layers.BatchNormalization(), layers.MaxPooling2D((2, 2))]
            stack.append(layers.Dropout(0.3))
        stack.append(layers.GlobalAveragePooling2D())
    else:
        stack = [keras.Input((FRAMES, COEFFS))]
        for units in (64, 96):
            stack += [layers.GRU(units, return_sequences=True), layers.Dropout(0.3)]
            stack.append(layers.BatchNormalization())
        stack.append(layers.GlobalAveragePooling1D())
    stack += [layers.Dense(128, activation="relu"), layers.Dropout(0.4)]
    stack.append(layers.Dense(CLASSES, activation="softmax"))
    model = keras.Sequential(stack)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def keras_trainer(name: str, x: np.ndarray, y: np.ndarray, batch: int) -> Trainer:
    """One ``model.fit`` epoch over ``x``, ``y``, shuffled, as the seed trained."""
    keras = _keras()
    keras.utils.set_random_seed(0)
    model = keras_model(name)
    inputs = x[..., None] if name == "cnn" else x

    def epoch() -> None:
        model.fit(inputs, y, batch_size=batch, epochs=1, shuffle=True, verbose=0)

    setting = {
        "framework": f"keras {keras.__version__} ({keras.backend.backend()})",
        "mode": "model.fit",
        "jit_compile": str(getattr(model, "jit_compile", "unknown")),
        "keras_count": int(model.count_params()),
    }
    return epoch, setting


PEERS: dict[str, tuple[str, Callable[..., Trainer]]] = {
    "keras": ("tensorflow", keras_trainer),
    "torch": ("torch", torch_trainer),
    "torch-1-thread": ("torch", functools.partial(torch_trainer, threads=1)),
}


def unavailable(module: str) -> str | None:
    """Why ``module`` cannot be used (not installed, or its import fails), or None."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[bench-peers]')"
    try:
        importlib.import_module(module)
    except ImportError as error:
        return f"{module} does not import: {error}"
    return None


def run(options: Options) -> tuple[list[Row], list[dict]]:
    """Ours and every installed peer per model at ``peer_batch`` (and the CNN again at
    ``peer_large_batch``), and the ratios ours / peer."""
    missing = {peer: unavailable(module) for peer, (module, _) in PEERS.items()}
    batch = options.peer_batch
    runs = [(model, batch, batch * max(2, options.peer_samples // batch), "") for model in MODELS]
    if options.peer_large_batch:
        large = options.peer_large_batch
        runs.append(("cnn", large, 2 * large, f" at batch {large}"))
    rows: list[Row] = []
    ratios: list[dict] = []
    for model, batch, n, label in runs:
        new_rows, new_ratios = compare(model, batch, n, label, missing, options)
        rows += new_rows
        ratios += new_ratios
    return rows, ratios


def compare(
    model: str, batch: int, n: int, label: str, missing: dict[str, str | None], options: Options
) -> tuple[list[Row], list[dict]]:
    """One model's round-robin of ours and the installed peers on ``n`` random samples in
    batches of ``batch``; rows ``"<model> train steps<label>, <framework>"``."""
    x = np.random.default_rng(0).standard_normal((n, FRAMES, COEFFS), np.float32)
    y = (np.arange(n) % CLASSES).astype(np.int32)
    driver = epoch_driver(TrainConfig(model=model))
    fns: dict[str, Callable[[], Any]] = {"ours": epoch_runner(model, driver, batch, n)}
    settings = {"ours": {"framework": "genre_jax", "mode": f"{driver} driver"}}
    settings["ours"]["keras_count"] = parameter_counts(model)["keras_count"]
    for peer, (_, build) in PEERS.items():
        if missing[peer] is None:
            progress(f"peers: building the {peer} {model}")
            fns[peer], settings[peer] = build(model, x, y, batch)
    progress(f"peers: {model}, {' vs '.join(fns)}, batch {batch}, {n} samples per call")
    timings = time_interleaved(fns, options.repeats, budget_s=3 * options.budget_s)
    common = {"model": model, "batch": batch, "samples_per_call": n, "optimizer": "adam 1e-4"}
    by_name: dict[str, Row] = {}
    for name, timing in timings.items():
        row = Row.rate("peers", f"{model} train steps{label}, {name}", "samples/s", timing, n)
        row.setting = {**common, **settings[name]}
        by_name[name] = row
        report(row)
    for peer, reason in missing.items():
        if reason is not None:
            by_name[peer] = Row.skipped("peers", f"{model} train steps{label}, {peer}", reason)
            progress(f"peers: {peer} skipped: {reason}")
    ratios = []
    ran = [p for p in PEERS if by_name[p].ok]
    for peer in ran:
        title = f"{model} training{label}: ours / {peer}"
        ratios.append(ratio(title, by_name["ours"], by_name[peer], paired=True))
    if len(ran) > 1:
        fastest = max(ran, key=lambda p: by_name[p].median)
        title = f"{model} training{label}: ours / faster peer ({fastest})"
        ratios.append(ratio(title, by_name["ours"], by_name[fastest], paired=True))
    return list(by_name.values()), ratios
