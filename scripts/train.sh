#!/usr/bin/env bash
# genre-jax train with the arguments given; multi-process settings come from the environment.
set -euo pipefail
exec "${GENRE_JAX_PYTHON:-python3}" -m genre_jax.cli train "$@"
