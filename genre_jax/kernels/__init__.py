"""Kernels: formulations that are faster on one backend, each an implementation of a plain
reference op, and the one switch that chooses between them.

A *reference op* is the plain JAX formulation an accelerator runs (:mod:`genre_jax.kernels.ops`:
``conv(x)``, ``jax.random.bernoulli``, the fused GRU recurrence, extraction of the whole batch
at once). A *kernel* computes the same values (bitwise, or within the tolerances its tests state)
in a way measured faster on CPU. The models call the ops and never ask the backend; an op asks
:func:`active` when it is traced and runs its kernel (where the kernel's own conditions hold:
a concrete batch, one device, one input channel ...) or its reference.

The mode is ``auto`` (the kernels on the CPU backend, the references elsewhere), ``reference``
or ``fast``; it is set by :func:`use` (a block), :func:`set_mode` (the process) or the
environment variable :data:`KERNELS_ENV`, in that order of precedence. :func:`active` is the
only place in ``genre_jax`` that reads ``jax.default_backend()``.

The mode is read while a function is traced, so a compiled function keeps the kernels it was
traced with: a function compiled once and called under both modes must take the mode as a
static argument (as :func:`genre_jax.features.extract_jit` does), and a jitted closure (a
training step) is built again after a switch.

:data:`KERNELS` lists every kernel with its reference op; the figures that justified each are in
``docs/benchmarks.md`` ("Kernels").
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from genre_jax.settings import ConfigError

KERNEL_MODES = ("auto", "reference", "fast")
KERNELS_ENV = "GENRE_JAX_KERNELS"

_mode: str | None = None  # set by set_mode or use; None: the environment, else "auto"


@dataclass(frozen=True)
class Kernel:
    """A fast implementation of the reference op ``op``.

    Attributes:
        op: the reference op's name in :mod:`genre_jax.kernels.ops`.
        module: the module holding the implementation (imported when first run).
        function: the implementation, called with the op's arguments.
        applies: a predicate of the op's arguments in the same module, or None (always): where
            it is False the reference runs.
    """

    op: str
    module: str
    function: str
    applies: str | None = None

    def resolve(self) -> tuple[Callable[..., Any], Callable[..., bool] | None]:
        """The implementation and its predicate (None: it always applies)."""
        module = importlib.import_module(self.module)
        predicate = None if self.applies is None else getattr(module, self.applies)
        return getattr(module, self.function), predicate


KERNELS = {
    kernel.op: kernel
    for kernel in (
        Kernel("conv2d_same", "genre_jax.kernels.conv", "conv2d_same"),
        Kernel("conv_block", "genre_jax.kernels.conv_block", "conv_block", "fused_applies"),
        Kernel("dropout_mask", "genre_jax.kernels.threefry", "dropout_mask", "draws_applies"),
        Kernel("gru_recurrence", "genre_jax.kernels.gru", "gru_by_gate"),
        Kernel("extract_batch", "genre_jax.kernels.extraction", "in_chunks", "chunks_apply"),
        Kernel("conv2d_valid", "genre_jax.kernels.conv", "conv2d_valid_patch_gradient"),
    )
}


def _check(mode: object, source: str) -> str:
    if mode not in KERNEL_MODES:
        choices = ", ".join(KERNEL_MODES)
        raise ConfigError(f"{source}={mode!r} is not a kernel mode; choose one of {choices}")
    return str(mode)


def requested() -> str:
    """The mode asked for: the one set by :func:`use` or :func:`set_mode`, else the environment
    variable :data:`KERNELS_ENV`'s value, else ``auto``. A value of the variable that is no
    mode raises :class:`~genre_jax.settings.ConfigError`."""
    if _mode is not None:
        return _mode
    value = os.environ.get(KERNELS_ENV)
    return "auto" if value is None else _check(value, KERNELS_ENV)


def active() -> str:
    """``fast`` or ``reference``: the requested mode with ``auto`` resolved (``fast`` on the
    CPU backend, ``reference`` on every other)."""
    mode = requested()
    if mode == "auto":
        import jax  # here, so that reading settings (genre_jax.config) imports no JAX

        return "fast" if jax.default_backend() == "cpu" else "reference"
    return mode


def set_mode(mode: str | None) -> None:
    """Set the mode for the process (None: back to the environment variable, else ``auto``)."""
    global _mode
    _mode = None if mode is None else _check(mode, "kernels")


@contextlib.contextmanager
def use(mode: str) -> Iterator[None]:
    """Run the block's tracing under ``mode``; the mode before it is restored after."""
    global _mode
    checked = _check(mode, "kernels")
    saved = _mode
    _mode = checked
    try:
        yield
    finally:
        _mode = saved


def dispatch(op: str, reference: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``op`` of the arguments: its kernel where the active mode is ``fast`` and the kernel
    applies to them, else ``reference``."""
    if active() == "fast":
        implementation, applies = KERNELS[op].resolve()
        if applies is None or applies(*args, **kwargs):
            return implementation(*args, **kwargs)
    return reference(*args, **kwargs)
