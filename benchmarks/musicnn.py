"""The pretrained musicnn: our JAX port against TensorFlow running the published graph.

Rows (``musicnn`` path), timed round-robin on the same inputs, 2 s segments of musicnn's input
features (126 frames x 96 bands, each repeated to one 187-frame patch), batch 64:

- ``musicnn embeddings (ours, JAX), batch B``: :func:`genre_jax.models.musicnn.embeddings`,
  jitted, input on the device: what ``musicnnsvm`` computes for every segment;
- ``musicnn embeddings (TensorFlow graph), batch B``: the checkpoint's own inference graph run
  by TensorFlow 2 in graph mode (:func:`tensorflow_musicnn`) on the same patches, fetching the
  same tensors;
- ``VGG (MSD_vgg) embeddings (ours, JAX | TensorFlow graph), batch B``: the same for the
  wheel's VGG tagger (:mod:`genre_jax.models.vgg`, its 1,280-value embedding) against that
  checkpoint's own graph fetching its five pooled maps.

Fine-tuning rows (``musicnn``'s training gradient, batch :data:`TUNE_BATCH`, 4 in the quick
preset, timed the same way):

- ``musicnn front-end kernel gradient (patch products | XLA)``: the gradient of the first
  timbral convolution's kernel (7 x 38 x 1 x 204 on 193 x 96 inputs), by
  :func:`genre_jax.models.layers.conv2d_valid_patch_gradient` and by XLA's own
  kernel-gradient convolution, with their ratio;
- ``musicnn fine-tuning gradient, every pretrained layer``: the gradient of a loss on the
  embedding with respect to every weight but the input's batch norm, as ``model=musicnn``
  trains.

Both need the ``musicnn`` wheel (downloaded with pip, or ``$GENRE_JAX_MUSICNN_WHEEL``); the
TensorFlow row needs TensorFlow (the ``test`` or ``bench-peers`` extra). A missing one is a
skipped row that says why. The tests use :func:`tensorflow_musicnn` as their reference.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import Options
from benchmarks.timing import Row, progress, ratio, report, time_interleaved
from genre_jax.config import FeatureConfig
from genre_jax.kernels.conv import conv2d_valid_patch_gradient, conv2d_valid_xla
from genre_jax.models import musicnn, tagger_layers

# The published graph's tensors for what genre_jax.models.musicnn.network() returns.
GRAPH_OUTPUTS = {
    "tags": "model/Sigmoid",
    "pooled": "model/concat_2",  # (batch, 753, 2): max and mean over time
    "penultimate": "model/dropout_1/cond/Merge",  # the batch-normed dense layer, dropout off
}
# The same for the VGG checkpoints (genre_jax.models.vgg.network()).
VGG_GRAPH_OUTPUTS = {
    "tags": "model/Sigmoid",
    **{
        f"pool{i}": f"model/max_pooling2d{'' if i == 1 else f'_{i - 1}'}/MaxPool"
        for i in range(1, 6)
    },
}
SEGMENT = FeatureConfig(**musicnn.INPUT_FEATURES, segment_seconds=2.0)  # 126 frames


def tensorflow_musicnn(
    prefix: str, outputs: dict[str, str] = GRAPH_OUTPUTS
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """TensorFlow running the checkpoint's inference graph: ``call(x (B, 187, 96)) -> outputs``.

    ``prefix`` is the checkpoint prefix (``.../MSD_musicnn/``). The meta graph is pruned to the
    forward tensors of ``outputs`` (:data:`GRAPH_OUTPUTS`, or :data:`VGG_GRAPH_OUTPUTS` for a
    VGG checkpoint), its variables frozen to the checkpoint's values
    by TensorFlow's own reader (the saved training ops name shapes TensorFlow 2 no longer
    accepts). The graph runs in its own session; eager execution stays on for the rest of the
    process (Keras needs it). Raises ImportError without TensorFlow.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    meta.ParseFromString(Path(prefix + ".meta").read_bytes())
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, list(outputs.values()))
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    for node in graph_def.node:
        node.attr.pop("_output_shapes", None)
        if node.op == "VariableV2":
            value = reader.get_tensor(node.name)
            node.op = "Const"
            node.attr.clear()
            node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    fetches = {k: f"{v}:0" for k, v in outputs.items()}

    def call(x: np.ndarray) -> dict[str, np.ndarray]:
        feed = {"model/Placeholder:0": x, "model/Placeholder_2:0": False}
        return session.run(fetches, feed)

    return call


def unpack_checkpoint(wheel: Path, out: Path, checkpoint: str = musicnn.DEFAULT_CHECKPOINT) -> str:
    """Extract the wheel's ``checkpoint`` (MSD musicnn by default) under ``out``; return its
    prefix (a str: a Path would drop the prefix's trailing separator)."""
    prefix = f"musicnn/{checkpoint}/"
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(prefix):
                archive.extract(name, out)
    return f"{out}/{prefix}"


def find_wheel(work: Path) -> Path:
    """``$GENRE_JAX_MUSICNN_WHEEL``, or the wheel downloaded with pip into ``work``."""
    local = os.environ.get(musicnn.WHEEL_ENV)
    return Path(local) if local else musicnn.download_wheel(work, log=progress)


def run(options: Options) -> tuple[list[Row], list[dict]]:
    """Embedding throughput of our port and of TensorFlow, and their ratio, for musicnn and
    the VGG tagger (MSD checkpoints); then the fine-tuning rows."""
    batch = options.predict_batch
    with tempfile.TemporaryDirectory(prefix="genre-jax-musicnn-") as work:
        try:
            wheel = find_wheel(Path(work))
        except musicnn.WeightsError as error:
            reason = f"the musicnn wheel cannot be had: {error}"
            name = f"musicnn embeddings (ours, JAX), batch {batch}"
            return [Row.skipped("musicnn", name, reason)], []
        rows, ratios = [], []
        for label, checkpoint, outputs in (
            ("musicnn", "MSD_musicnn", GRAPH_OUTPUTS),
            ("VGG (MSD_vgg)", "MSD_vgg", VGG_GRAPH_OUTPUTS),
        ):
            found, paired = embedding_rows(
                wheel, Path(work), label, checkpoint, outputs, batch, options
            )
            rows += found
            ratios += paired
        # read while the wheel is there: a downloaded one goes with the folder
        weights = {k: jnp.asarray(v) for k, v in musicnn.weights_from_wheel(wheel).items()}
    tune_rows, tune_ratios = fine_tuning(weights, options)
    return rows + tune_rows, ratios + tune_ratios


def embedding_rows(
    wheel: Path,
    work: Path,
    label: str,
    checkpoint: str,
    outputs: dict[str, str],
    batch: int,
    options: Options,
) -> tuple[list[Row], list[dict]]:
    """``checkpoint``'s embeddings by our port and by TensorFlow running its graph
    (``outputs``), timed round-robin on the same 2 s segments; their ratio."""
    ours_name = f"{label} embeddings (ours, JAX), batch {batch}"
    theirs_name = f"{label} embeddings (TensorFlow graph), batch {batch}"
    weights = {k: jnp.asarray(v) for k, v in musicnn.weights_from_wheel(wheel, checkpoint).items()}
    network = musicnn.architecture_of(checkpoint)
    rng = np.random.default_rng(0)
    shape = (batch, SEGMENT.n_frames, SEGMENT.n_mels)
    on_device = jnp.asarray(rng.uniform(0, 4, shape).astype(np.float32))
    patches = np.asarray(tagger_layers.patches(on_device)[0])  # what ours feeds its network
    calls = {ours_name: lambda: network.embeddings(weights, on_device)}
    try:
        tensorflow = tensorflow_musicnn(unpack_checkpoint(wheel, work, checkpoint), outputs)
        calls[theirs_name] = lambda: tensorflow(patches)
        skipped = []
    except ImportError as error:
        skipped = [Row.skipped("musicnn", theirs_name, f"TensorFlow not installed ({error})")]
    progress(
        f"musicnn: {label} embeddings of {batch} 2 s segments, ours and TensorFlow round-robin"
    )
    timings = time_interleaved(calls, options.repeats)
    setting = {
        "batch": batch,
        "checkpoint": checkpoint,
        "segment": "2 s = 126 frames x 96 bands, repeated to 187",
    }
    rows = []
    for name, timing in timings.items():
        rows.append(Row.rate("musicnn", name, "segments/s", timing, batch, setting=setting))
        report(rows[-1])
    ratios = []
    if len(rows) == 2:
        ratios.append(ratio(f"{label} embeddings: ours / TensorFlow", *rows, paired=True))
    return rows + skipped, ratios


TUNE_BATCH = 32


def fine_tuning(weights: dict, options: Options) -> tuple[list[Row], list[dict]]:
    """The fine-tuning gradient's rows (see the module docstring); the quick preset's batch is
    4 (a smoke test: compilation is most of its time)."""
    batch = 4 if options.quick else TUNE_BATCH
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(batch, 193, 96, 1)).astype(np.float32))
    kernel = weights["conv2d/kernel"]
    probe = jnp.asarray(rng.normal(size=(batch, 187, 59, 204)).astype(np.float32))

    def kernel_gradient(conv: Callable) -> Callable:
        return jax.jit(jax.grad(lambda k: jnp.sum(conv(x, k) * probe)))

    patch_name = f"musicnn front-end kernel gradient (patch products), batch {batch}"
    xla_name = f"musicnn front-end kernel gradient (XLA), batch {batch}"
    whole_name = f"musicnn fine-tuning gradient, every pretrained layer, batch {batch}"
    patch = kernel_gradient(conv2d_valid_patch_gradient)
    xla = kernel_gradient(conv2d_valid_xla)
    inputs = jnp.asarray(rng.uniform(0, 4, (batch, 187, 96)).astype(np.float32))
    fixed = {k: v for k, v in weights.items() if k.startswith("batch_normalization/")}
    trained = {k: v for k, v in weights.items() if k not in fixed}

    def loss(w: dict) -> jax.Array:
        out = musicnn.features({**w, **fixed}, inputs)
        return sum(jnp.sum(v**2) for v in out.values())

    whole = jax.jit(jax.grad(loss))
    calls = {
        patch_name: lambda: patch(kernel),
        xla_name: lambda: xla(kernel),
        whole_name: lambda: whole(trained),
    }
    progress(f"musicnn: fine-tuning gradients at batch {batch}, round-robin")
    timings = time_interleaved(calls, options.repeats)
    setting = {"batch": batch, "input": "187 frames x 96 bands"}
    rows = [
        Row.rate("musicnn", name, "segments/s", timing, batch, setting=setting)
        for name, timing in timings.items()
    ]
    for row in rows:
        report(row)
    return rows, [ratio("musicnn kernel gradient: patch products / XLA", rows[0], rows[1], True)]
