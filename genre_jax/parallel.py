"""Data parallelism on JAX's own runtime: one ``data`` mesh axis over every device of every host.

Parameters, optimiser state and (GTZAN-sized) datasets are replicated; each batch is sharded
along the ``data`` axis. The jitted step is the same function on 1 or N devices: XLA's SPMD
partitioner turns the batch reductions (loss, gradients, BatchNorm statistics) into
all-reduces, so N devices compute what one device computes with the same global batch.

Multi-host: :func:`initialize` calls ``jax.distributed.initialize`` when coordinator settings
are given (flags, or ``GENRE_JAX_COORDINATOR``, ``GENRE_JAX_NUM_PROCESSES`` and
``GENRE_JAX_PROCESS_ID``); on a cluster that JAX detects by itself (SLURM, TPU pods),
``GENRE_JAX_DISTRIBUTED=1`` is enough.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from genre_jax.config import ConfigError

DATA_AXIS = "data"


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Join a multi-process run when settings say so; return True if distributed.

    Arguments default to ``GENRE_JAX_COORDINATOR`` (``host:port``), ``GENRE_JAX_NUM_PROCESSES``
    and ``GENRE_JAX_PROCESS_ID``. With none of them, ``GENRE_JAX_DISTRIBUTED=1`` lets JAX
    detect the cluster (SLURM, TPU pod); otherwise the run is single-process. On CPU the gloo
    collectives are selected first (JAX's CPU backend needs them across processes).
    """
    env = os.environ
    coordinator = coordinator or env.get("GENRE_JAX_COORDINATOR")
    if num_processes is None and env.get("GENRE_JAX_NUM_PROCESSES"):
        num_processes = int(env["GENRE_JAX_NUM_PROCESSES"])
    if process_id is None and env.get("GENRE_JAX_PROCESS_ID"):
        process_id = int(env["GENRE_JAX_PROCESS_ID"])
    auto = env.get("GENRE_JAX_DISTRIBUTED", "") == "1"
    if coordinator is None and not auto:
        return False
    if coordinator is not None and (num_processes is None or process_id is None):
        raise ConfigError(
            "distributed run: a coordinator address needs the number of processes and this "
            "process's id (--num-processes/--process-id or GENRE_JAX_NUM_PROCESSES/_PROCESS_ID)"
        )
    # The CPU backend needs gloo for cross-process collectives; GPU and TPU ignore the setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator is None:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    return True


def is_main_process() -> bool:
    """Process 0 writes reports, plots and the feature store; every process joins checkpoints."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches this point (no-op in a single-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def process_block(total: int, index: int | None = None, count: int | None = None) -> range:
    """The items of ``total`` that process ``index`` of ``count`` (by default: this process of
    all) works on: contiguous blocks in process order whose sizes differ by at most one."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    return range(index * total // count, (index + 1) * total // count)


def gather_blocks(block: np.ndarray) -> list[np.ndarray]:
    """Every process's ``block`` (of any length along its first axis; the same dtype and
    other axes everywhere), in process order, on every process."""
    if jax.process_count() == 1:
        return [block]
    sizes = np.asarray(multihost_utils.process_allgather(np.array([len(block)], np.int64)))
    padded = np.zeros((int(sizes.max()), *block.shape[1:]), block.dtype)
    padded[: len(block)] = block
    gathered = np.asarray(multihost_utils.process_allgather(padded, tiled=False))
    return [part[: int(size)] for part, size in zip(gathered, sizes.reshape(-1), strict=True)]


def default_mesh() -> Mesh | None:
    """The data mesh when there is more than one device, else None (plain single-device jit)."""
    return data_mesh() if jax.device_count() > 1 else None


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A one-axis ``data`` mesh over ``devices`` (default: every device of every process)."""
    devices = list(devices) if devices is not None else jax.devices()
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """The global batch must split evenly over the ``data`` axis; say so clearly otherwise."""
    devices = mesh.shape[DATA_AXIS]
    if batch_size % devices:
        lower, upper = batch_size // devices * devices, -(-batch_size // devices) * devices
        raise ConfigError(
            f"train setting batch_size={batch_size}: must be a multiple of the {devices} devices "
            f"of the data mesh (for example {lower or devices} or {upper})"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of ``tree`` (identical on every process) on every device of ``mesh``.

    Built from host copies with ``make_array_from_callback``, which works for a mesh spanning
    several processes as well as for one.
    """
    sharding = replicated(mesh)

    def put(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(leaf))
            placed = jax.make_array_from_callback(data.shape, sharding, lambda i: data[i])
            return jax.random.wrap_key_data(placed, impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def shard_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Inside a jitted function: constrain a batch to be split along the ``data`` axis."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))
