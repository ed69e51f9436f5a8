"""The ``genre-jax`` command: build the parser, run the subcommand it names, report errors.

The parser is :mod:`genre_jax.cli_parser` (options generated from the settings dataclasses);
each subcommand is a function of :mod:`genre_jax.cli_commands`, a thin layer over the module
that does the work. :func:`main` runs one and turns a user's error into one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import typing
from collections.abc import Sequence

from genre_jax.cli_parser import build_parser, command_of, described_models
from genre_jax.config import ConfigError
from genre_jax.models import load_plugins
from genre_jax.output_dirs import OutputDirError


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors reported as one line (exit 2) rather than a traceback; imported lazily."""
    from genre_jax.audio import AudioError
    from genre_jax.checkpoint import CheckpointError
    from genre_jax.datasets import DatasetError
    from genre_jax.models.musicnn import WeightsError
    from genre_jax.models.sklearn_io import UntrustedModelError
    from genre_jax.runner import RunDirError
    from genre_jax.store_checks import StoreError
    from genre_jax.tf_checkpoint import TFCheckpointError
    from genre_jax.train import TrainingError

    return (
        ConfigError,
        DatasetError,
        StoreError,
        AudioError,
        OutputDirError,
        CheckpointError,
        UntrustedModelError,
        RunDirError,
        TrainingError,
        WeightsError,
        TFCheckpointError,
    )


def _describe_os_error(error: OSError) -> str:
    """``runs/x: Permission denied``: an operating-system error in one line."""
    where = error.filename if error.filename is not None else ""
    reason = error.strerror or type(error).__name__
    return f"{where}: {reason}" if where else str(error) or reason


RESUMABLE = {"train": "resume with --resume", "crossval": "run the same command to continue"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user's error is one line on standard error and exit status 2; an
    interrupt (Ctrl-C) is one line and 130; a closed output pipe (``| head``) ends quietly.

    Models of one's own (``GENRE_JAX_MODELS``, entry points) are loaded first, so that their
    names and settings are options like the built-in ones."""
    try:
        load_plugins()
    except ConfigError as error:
        print(f"genre-jax: error: {error}", file=sys.stderr)
        return 2
    args = build_parser(command_of(argv), described_models(argv)).parse_args(argv)
    try:
        from genre_jax.parallel import initialize

        initialize(args.coordinator, args.num_processes, args.process_id)
        return args.func(args)
    except _user_errors() as error:
        print(f"genre-jax {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``predict --json | head -1``): nothing more to say to it, and
        # the interpreter must not complain when it flushes standard output at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as error:  # a read-only or full disk, a folder where a file belongs ...
        print(f"genre-jax {args.command}: error: {_describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = RESUMABLE.get(args.command)
        print(
            f"genre-jax {args.command}: interrupted" + (f"; {hint}" if hint else ""),
            file=sys.stderr,
        )
        _exit_now(130)


def _exit_now(status: int) -> typing.NoReturn:
    """End the process at once, without the interpreter's teardown.

    Only after an interrupt, when every write has already been finished or abandoned whole
    (checkpoints are closed and metrics fsynced in ``finally`` blocks, other files are written
    atomically): computations XLA dispatched before the interrupt may still be running, and
    tearing the runtime down under them crashed the process (SIGSEGV instead of status 130 in
    4 of 6 interrupted CNN trainings on this machine)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
