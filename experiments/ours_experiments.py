"""Issue 8 experiments: our networks on the gtzan-dev excerpts, 5-fold song-level CV.

The protocol is the one of ``tests/test_real_music.py`` and ``../shared/data/README.md``: 2 s
segments (one per excerpt), folds of :func:`genre_jax.store_splits.make_split` with
``TrainConfig(split="kfold", folds=5, fold=i, val_per_genre=1)``, test accuracy per fold, mean
and standard deviation over the folds.

This is the search that chose ``melstat``; the chosen recipe runs through the library itself
as ``genre-jax crossval --config configs/gtzan-dev-melstat.json``. Training here is a small
jitted loop of its own, for options the library does not carry (each measured and not kept):
mixup, AdamW, random 2 s crops of the whole (2-3 s) excerpt, seed ensembles, flipped
test-time copies, best-validation selection on 10 songs. It shares the library's augmentation
(random time flip, SpecAugment, label smoothing); the schedule is warmup + cosine. The
networks: ``tcn`` and ``cnn2d`` (:mod:`experiments.models`, not registered), ``stat``
(:class:`genre_jax.models.melstat.MelStatNet` with the options below) and ``seedcnn`` (the
registered ``cnn``). Run from the repository root (``experiments`` is not installed)::

    python -m experiments.ours_experiments --model tcn --features logmel128 --epochs 60
    python -m experiments.ours_experiments --model cnn2d --mixup 0.4 --specaug 2 --crops

The excerpts are ``<shared-data>/gtzan-dev``; ``--shared-data`` defaults to
``$GENRE_JAX_SHARED_DATA``, else ``../shared/data`` beside the repository (as the tests read
it). Each run prints one line per fold and a summary, and appends a JSON record to ``--log``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.models import MelCNN, MelTCN
from genre_jax.audio import load_audio
from genre_jax.augment import random_time_flip, smoothed_targets, spec_augment
from genre_jax.config import FeatureConfig, TrainConfig
from genre_jax.features import extract_jit
from genre_jax.inference import make_predict
from genre_jax.models import build_network, get_spec
from genre_jax.models.melstat import MelStatNet, count_values
from genre_jax.prepare import prepare
from genre_jax.store import FeatureStore
from genre_jax.store_splits import make_split

# The shared real-audio folder, as the tests find it (tests/conftest.py).
SHARED_DATA = os.environ.get("GENRE_JAX_SHARED_DATA") or str(
    Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
DATASET = "gtzan-dev"
FEATURES = {
    "logmel128": FeatureConfig(kind="logmel", n_mels=128, segment_seconds=2.0),
    "logmel64": FeatureConfig(kind="logmel", n_mels=64, segment_seconds=2.0),
    "mfcc13": FeatureConfig(kind="mfcc", n_mfcc=13, segment_seconds=2.0),
    "mfcc40": FeatureConfig(kind="mfcc", n_mfcc=40, segment_seconds=2.0),
}


# --- data -----------------------------------------------------------------------------------------


def crop_bank(store: FeatureStore, hop_seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Features of every 2 s window of each excerpt, ``hop_seconds`` apart.

    Returns ``(crops, count)``: ``crops[s, j]`` is window ``j`` of segment ``s``'s track
    (window 0 is the store's own segment), ``count[s]`` how many windows the track has; unused
    slots repeat window 0.
    """
    config = store.config
    hop = round(hop_seconds * config.sample_rate)
    windows = []
    for track_index in store.tracks:
        track = store.manifest.tracks[int(track_index)]
        audio = load_audio(Path(store.manifest.root) / track.path, config.sample_rate)
        starts = range(0, audio.shape[0] - config.segment_samples + 1, hop)
        windows.append(np.stack([audio[s : s + config.segment_samples] for s in starts]))
    most = max(len(w) for w in windows)
    crops = np.zeros((len(windows), most, config.n_frames, config.n_features), np.float32)
    count = np.array([len(w) for w in windows])
    for i, w in enumerate(windows):
        feats = np.asarray(extract_jit(jnp.asarray(w), config))
        crops[i, : len(w)] = feats
        crops[i, len(w) :] = feats[0]
    if not np.allclose(crops[:, 0], store.features, atol=1e-3):
        raise RuntimeError("window 0 of the crop bank differs from the store's segments")
    return crops, count


# --- model and optimiser --------------------------------------------------------------------------


def build(args: argparse.Namespace, n_features: int, n_classes: int, seed: int) -> nnx.Module:
    rngs = nnx.Rngs(params=seed)
    input_norm = args.norm == "bn"
    defaults = {"tcn": (96, 96, 128), "cnn2d": (16, 32, 64, 64), "stat": (128,)}
    if args.model in defaults:
        given = tuple(int(c) for c in args.channels.split(",")) if args.channels else None
        common = {
            "channels": given or defaults[args.model],
            "dropout_rate": args.dropout,
            "head_dropout": args.head_dropout,
            "rngs": rngs,
        }
    if args.model in ("tcn", "cnn2d"):
        network = MelTCN if args.model == "tcn" else MelCNN
        return network(n_features, n_classes, input_norm=input_norm, **common)
    if args.model == "stat":
        return MelStatNet(
            n_features,
            n_classes,
            input_norm="batchnorm" if input_norm else "none",  # "standard": done here
            modulation_groups=args.modulation,
            modulation_bins=args.modulation_bins,
            cepstral=args.cepstral,
            **common,
        )
    if args.model == "seedcnn":
        settings = get_spec("cnn").settings()  # the seed's CNN has none of its own
        return build_network("cnn", settings, n_features, n_classes, seed=seed)
    raise ValueError(f"unknown model {args.model!r}")


def optimizer(args: argparse.Namespace, total_steps: int) -> optax.GradientTransformation:
    if args.schedule == "cosine":
        warmup = max(1, min(total_steps // 10, 100))
        lr: Any = optax.warmup_cosine_decay_schedule(
            0.0, args.lr, warmup, total_steps, end_value=args.lr * 0.01
        )
    else:
        lr = args.lr
    if args.weight_decay > 0:
        return optax.adamw(lr, weight_decay=args.weight_decay)
    return optax.adam(lr, eps=1e-7)


# --- the pure training step -----------------------------------------------------------------------


def make_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, args: argparse.Namespace):
    n_classes = args.n_classes

    def loss_fn(params, rest, x, targets, key):
        model = nnx.merge(graphdef, params, rest, copy=True)
        mask = jnp.ones(x.shape[0], bool)
        logits = model(x, train=True, key=key, mask=mask)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, nnx.state(model, nnx.Not(nnx.Param))

    @jax.jit
    def step(state: dict, x: jax.Array, y: jax.Array, key: jax.Array):
        k_flip, k_spec, k_mix, k_perm, k_drop = jax.random.split(key, 5)
        if args.flip:
            x = random_time_flip(x, k_flip)
        if args.specaug:
            x = spec_augment(x, k_spec, args.specaug, args.mask_t, args.mask_f)
        targets = smoothed_targets(y, n_classes, args.smooth)
        if args.mixup:
            lam = jax.random.beta(k_mix, args.mixup, args.mixup)
            lam = jnp.maximum(lam, 1 - lam)
            perm = jax.random.permutation(k_perm, x.shape[0])
            x = lam * x + (1 - lam) * x[perm]
            targets = lam * targets + (1 - lam) * targets[perm]
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, rest), grads = grad_fn(state["params"], state["rest"], x, targets, k_drop)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "rest": rest, "opt": opt}, loss

    return step


# --- one fold -------------------------------------------------------------------------------------


def val_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def train_member(args, train, val, seed: int, fold: int):
    """Train one network; return (selected state, final state, selected epoch)."""
    train_bank, train_count, y_train = train
    x_val, y_val = val
    n = len(y_train)
    batches = n // args.batch
    model = build(args, train_bank.shape[-1], args.n_classes, seed)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    args.graphdef = graphdef
    tx = optimizer(args, batches * args.epochs)
    state = {"params": params, "rest": rest, "opt": tx.init(params)}
    step = make_step(graphdef, tx, args)
    predict = make_predict(graphdef, 64)
    key = jax.random.key(seed)
    rng = np.random.default_rng((seed, fold))
    best = {"loss": math.inf, "epoch": 0, "state": None}
    for epoch in range(args.epochs):
        pick = (rng.random(n) * train_count).astype(int) if args.crops else np.zeros(n, int)
        x_epoch = jnp.asarray(train_bank[np.arange(n), pick])
        order = rng.permutation(n)
        for b in range(batches):
            rows = order[b * args.batch : (b + 1) * args.batch]
            step_key = jax.random.fold_in(key, epoch * batches + b)
            state, _ = step(state, x_epoch[rows], jnp.asarray(y_train[rows]), step_key)
        if args.select == "best-val" and len(y_val):
            current = nnx.merge_state(state["params"], state["rest"])
            loss = val_loss(np.asarray(predict(current, x_val)), y_val)
            if loss < best["loss"]:
                best = {"loss": loss, "epoch": epoch + 1, "state": current}
    final = nnx.merge_state(state["params"], state["rest"])
    chosen = best["state"] if best["state"] is not None else final
    return chosen, final, best["epoch"]


def test_probs(args, model_state, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities; with ``--tta-flip`` averaged with those of the reversed input."""
    predict = make_predict(args.graphdef, 64)
    probs = jax.nn.softmax(predict(model_state, x))
    if args.tta_flip:
        probs = (probs + jax.nn.softmax(predict(model_state, x[:, ::-1].copy()))) / 2
    return np.asarray(probs)


def run_fold(args, store, crops, count, fold: int) -> dict[str, Any]:
    config = TrainConfig(split="kfold", folds=5, fold=fold, val_per_genre=args.val_per_genre)
    split = make_split(store, config)
    idx = {p: split.segment_indices(p, store.tracks) for p in ("train", "val", "test")}
    x_all = np.asarray(store.features, np.float32)
    if args.centre:  # the excerpts' loudness was rescaled: remove each one's mean level
        x_all = x_all - x_all.mean(axis=(1, 2), keepdims=True)
        if crops is not None:
            crops = crops - crops.mean(axis=(2, 3), keepdims=True)
    y_all = np.asarray(store.labels, np.int32)
    bank = crops if crops is not None else x_all[:, None]
    n_crops = count if crops is not None else np.ones(len(x_all), int)
    if args.norm == "standard":
        train_x = x_all[idx["train"]]
        mean = train_x.mean(axis=(0, 1))
        std = train_x.std(axis=(0, 1)) + 1e-5
    else:
        mean, std = np.zeros(x_all.shape[-1], np.float32), np.ones(x_all.shape[-1], np.float32)

    def scale(a: np.ndarray) -> np.ndarray:
        return ((a - mean) / std).astype(np.float32)

    x_test, x_val = scale(x_all[idx["test"]]), scale(x_all[idx["val"]])
    y_test, y_val = y_all[idx["test"]], y_all[idx["val"]]
    train_bank = scale(bank[idx["train"]])
    train_count, y_train = n_crops[idx["train"]], y_all[idx["train"]]

    probs, last_probs, best_epochs = 0.0, 0.0, []
    for member in range(args.ensemble):
        seed = args.seed + 1000 * member
        chosen, final, best_epoch = train_member(
            args, (train_bank, train_count, y_train), (x_val, y_val), seed, fold
        )
        if args.tta_crops and crops is not None:  # mean probability over every window
            test_bank, test_count = scale(bank[idx["test"]]), n_crops[idx["test"]]
            windows = test_bank.shape[1]
            flat = test_bank.reshape(-1, *test_bank.shape[2:])
            valid = (np.arange(windows)[None, :] < test_count[:, None])[..., None]
            for state, acc in ((chosen, "probs"), (final, "last")):
                p = test_probs(args, state, flat).reshape(len(test_count), windows, -1)
                p = (p * valid).sum(axis=1) / test_count[:, None]
                if acc == "probs":
                    probs = probs + p
                else:
                    last_probs = last_probs + p
        else:
            probs = probs + test_probs(args, chosen, x_test)
            last_probs = last_probs + test_probs(args, final, x_test)
        best_epochs.append(best_epoch)
    predicted, last_predicted = np.argmax(probs, 1), np.argmax(last_probs, 1)
    return {
        "fold": fold,
        "accuracy": float(np.mean(predicted == y_test)),
        "last_accuracy": float(np.mean(last_predicted == y_test)),
        "best_epoch": best_epochs,
        "n_test": len(y_test),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="")
    p.add_argument(
        "--shared-data",
        default=SHARED_DATA,
        help=f"folder holding {DATASET}/ (default: $GENRE_JAX_SHARED_DATA or ../shared/data)",
    )
    p.add_argument("--model", default="tcn", choices=("tcn", "cnn2d", "stat", "seedcnn"))
    p.add_argument("--features", default="logmel128", choices=tuple(FEATURES))
    p.add_argument("--channels", default="")
    p.add_argument("--norm", default="standard", choices=("none", "standard", "bn"))
    p.add_argument("--centre", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--specaug", type=int, default=0, help="masks of each kind (0: off)")
    p.add_argument("--mask-t", type=int, default=10)
    p.add_argument("--mask-f", type=int, default=12)
    p.add_argument("--mixup", type=float, default=0.0, help="Beta alpha (0: off)")
    p.add_argument("--smooth", type=float, default=0.0)
    p.add_argument("--modulation", type=int, default=0, help="melstat band groups (0: off)")
    p.add_argument("--modulation-bins", type=int, default=11)
    p.add_argument("--cepstral", type=int, default=0, help="melstat DCT stats (0: off)")
    p.add_argument("--crops", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--crop-hop", type=float, default=0.1)
    p.add_argument("--tta-crops", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--schedule", default="const", choices=("const", "cosine"))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--head-dropout", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--select", default="last", choices=("last", "best-val"))
    p.add_argument("--val-per-genre", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ensemble", type=int, default=1, help="networks (seeds) averaged")
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--folds", default="0,1,2,3,4")
    p.add_argument("--stores", default="/tmp/ours_stores2")
    p.add_argument("--log", default="/tmp/ours_results.jsonl")
    args = p.parse_args(argv)
    started = time.perf_counter()
    data = Path(args.shared_data) / DATASET
    store = prepare(data, args.stores, FEATURES[args.features], progress=False, log=lambda _: None)
    args.n_classes = len(store.genres)
    wanted = args.crops or args.tta_crops
    crops, count = crop_bank(store, args.crop_hop) if wanted else (None, None)
    model = build(args, store.features.shape[-1], args.n_classes, args.seed)
    print(f"{args.name or args.model}: {count_values(model)}", flush=True)
    results = []
    for fold in (int(f) for f in args.folds.split(",")):
        t0 = time.perf_counter()
        r = run_fold(args, store, crops, count, fold)
        r["seconds"] = time.perf_counter() - t0
        results.append(r)
        print(
            f"  fold {fold}: {100 * r['accuracy']:.1f} % (last {100 * r['last_accuracy']:.1f}, "
            f"best epoch {r['best_epoch']}) {r['seconds']:.0f} s",
            flush=True,
        )
    acc = np.array([r["accuracy"] for r in results])
    wall = time.perf_counter() - started
    print(f"{args.name}: {100 * acc.mean():.1f} % +- {100 * acc.std():.1f}  ({wall:.0f} s)")
    record = {
        "name": args.name,
        "args": {k: v for k, v in vars(args).items() if k not in ("n_classes", "graphdef")},
        "mean": float(acc.mean()),
        "std": float(acc.std()),
        "folds": results,
        "wall_s": wall,
    }
    with open(args.log, "a") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
