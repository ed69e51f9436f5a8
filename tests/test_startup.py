"""Start-up (issue 36, item 6): reading settings and building the command line load no model
code. ``genre_jax.config`` imports no JAX, Flax or scikit-learn and no model module; no
subcommand's ``--help`` imports one either (``train --model NAME --help`` imports that
model's), and a built-in model's module is imported when its model is first asked for. How
long it takes is measured in ``benchmarks/`` (the ``startup`` rows), never asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import child_env

HEAVY = ("jax", "flax", "sklearn", "optax", "orbax", "scipy")


def _modules_after(code: str) -> dict[str, list[str]]:
    """Run ``code`` in a fresh interpreter; the heavy packages and model modules it loaded."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps({{'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules), "
        "'models': sorted(m for m in sys.modules if m.startswith('genre_jax.models.') "
        "and m != 'genre_jax.models.spec')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_reading_settings_loads_no_model_code() -> None:
    loaded = _modules_after(
        "from genre_jax.config import TrainConfig, FeatureConfig\n"
        "from genre_jax.models import model_names\n"
        "assert model_names()[:3] == ('cnn', 'gru', 'svm')"
    )
    assert loaded == {"heavy": [], "models": []}


@pytest.mark.parametrize(
    "command", ["", "prepare", "evaluate", "predict", "synth", "train", "crossval"]
)
def test_help_of_a_command_loads_no_model_code(command: str) -> None:
    """Also ``train --help``: it lists the models by name, each one's settings are
    ``train --model NAME --help``'s."""
    argv = [command, "--help"] if command else ["--help"]
    code = (
        "import contextlib, io\nfrom genre_jax.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})"
    )
    assert _modules_after(code) == {"heavy": [], "models": []}


def test_a_model_is_imported_when_first_asked_for() -> None:
    loaded = _modules_after(
        "from genre_jax.config import TrainConfig\nTrainConfig(model='statsvm')"
    )
    assert loaded["models"] == ["genre_jax.models.rbf", "genre_jax.models.statsvm",
                                "genre_jax.models.summary"]  # fmt: skip


def test_a_model_module_may_import_the_config_first() -> None:
    """No import cycle: a built-in model imported before anything else, then the settings."""
    loaded = _modules_after(
        "import genre_jax.models.cnn\nfrom genre_jax.config import TrainConfig\n"
        "assert TrainConfig(model='cnn').spec is genre_jax.models.cnn.SPEC"
    )
    assert "genre_jax.models.cnn" in loaded["models"]


def test_help_of_one_model_loads_that_model_only() -> None:
    code = (
        "import contextlib, io\nfrom genre_jax.cli import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main(['train', '--model', 'statsvm', '--help'])\n"
        "text = ' '.join(out.getvalue().split())\n"
        "assert 'settings of model statsvm' in text and '--model.harmonic_percussive' in text\n"
        "assert 'cepstral' in text and '--model.width' not in text, text"
    )
    loaded = _modules_after(code)
    assert loaded["models"] == ["genre_jax.models.rbf", "genre_jax.models.statsvm",
                                "genre_jax.models.summary"]  # fmt: skip
