"""The model protocol: a model defined in this file alone, registered through the public
function, trains, evaluates, predicts and cross-validates through the command line.

``mlp`` is a network (mean over time, one hidden layer); ``logreg`` a pipeline (logistic
regression on the flattened, standardised segments). Nothing in the package names them.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from genre_jax.cli import main
from genre_jax.config import TrainConfig
from genre_jax.inference import load_predictor
from genre_jax.models import NETWORK, PIPELINE, ModelSpec, model_names, register
from genre_jax.settings import ConfigError, setting

from .conftest import child_env

PACKAGE = Path(__file__).parent.parent / "genre_jax"


@dataclass(frozen=True)
class MLPSettings:
    """A tiny network of this test.

    Attributes:
        hidden: units of the hidden layer.
    """

    hidden: int = setting(64, minimum=1)


class MLP(nnx.Module):
    def __init__(self, n_features: int, n_classes: int, hidden: int, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(n_features, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, n_classes, rngs=rngs)

    def __call__(self, x, *, train: bool = False, key=None, mask=None):
        return self.out(nnx.relu(self.hidden(jnp.mean(x, axis=1))))


@dataclass(frozen=True)
class LogRegSettings:
    """Logistic regression of this test.

    Attributes:
        c: inverse regularisation strength.
    """

    c: float = setting(1.0, above=0)


def build_logreg(settings: LogRegSettings, frames: int, coefficients: int, labels) -> Pipeline:
    return Pipeline(
        [("scale", StandardScaler()), ("lr", LogisticRegression(C=settings.c, max_iter=200))]
    )


MLP_SPEC = ModelSpec(
    name="mlp",
    family=NETWORK,
    description="mean over time, one hidden layer",
    settings=MLPSettings,
    build=lambda s, n_features, n_classes, rngs: MLP(n_features, n_classes, s.hidden, rngs),
)
LOGREG_SPEC = ModelSpec(
    name="logreg",
    family=PIPELINE,
    description="logistic regression on the flattened segments",
    settings=LogRegSettings,
    build=build_logreg,
    trusted_types={"sklearn.linear_model._logistic.LogisticRegression"},
)
# Registered on import: also what GENRE_JAX_MODELS=tests.test_protocol does for the CLI.
register(MLP_SPEC, replace=True)
register(LOGREG_SPEC, replace=True)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    import soundfile as sf

    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    t = np.arange(12 * 22050) / 22050
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    return path


MODELS = {"mlp": ["--model-hidden", "8", "--epochs", "2"], "logreg": ["--model-c", "0.5"]}


@pytest.mark.parametrize("model", MODELS)
def test_a_model_of_ones_own_runs_every_command(
    model, synthetic_store, wav, tmp_path, capsys
) -> None:
    store = str(synthetic_store.path)
    run = tmp_path / "run"
    options = ["--model", model, *MODELS[model], "--no-progress"]
    assert main(["train", "--features", store, "--run-dir", str(run), *options]) == 0
    # The model section, written whole, is what evaluate and predict rebuild from.
    section = json.loads((run / "config.json").read_text())["train"]["model"]
    settings = {"mlp": {"hidden": 8}, "logreg": {"c": 0.5}}[model]
    assert section == {"name": model, **settings}
    predictor = load_predictor(run)
    assert predictor.train_config.model_section() == section
    assert main(["evaluate", "--run-dir", str(run)]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["model"] == model and report["model_settings"] == section
    assert 0 <= report["song_accuracy"] <= 1 and report["songs"] > 0
    capsys.readouterr()
    assert main(["predict", str(wav), "--run-dir", str(run), "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert prediction["genre"] in synthetic_store.genres
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    cv = tmp_path / "cv"
    folds = ["--split", "kfold", "--folds", "2", "--val-per-genre", "1"]
    assert main(["crossval", "--features", store, "--out", str(cv), *options, *folds]) == 0
    cv_report = json.loads((cv / "report.json").read_text())
    assert cv_report["model"] == model and len(cv_report["per_fold"]) == 2
    assert cv_report["train"]["model"] == {"name": model, **settings}


def test_the_network_is_built_from_its_section(synthetic_store, tmp_path) -> None:
    """The restored network has the hidden width its section names, not the default."""
    run = tmp_path / "run"
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run)]
    assert (
        main([*argv, "--model", "mlp", "--model-hidden", "5", "--epochs", "1", "--no-progress"])
        == 0
    )
    from genre_jax.checkpoint import load_model

    model, _ = load_model(run)
    assert model.hidden.kernel[...].shape == (13, 5)


def test_a_setting_of_another_model_is_refused_with_its_name(
    synthetic_store, tmp_path, capsys
) -> None:
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(tmp_path / "r")]
    assert main([*argv, "--model", "cnn", "--model-hidden", "8"]) == 2
    err = capsys.readouterr().err
    assert "hidden=8" in err and "does not apply to model 'cnn'" in err and "mlp" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match=r"c=0.5: does not apply to model 'mlp'"):
        TrainConfig.from_flat({"model": "mlp", "c": 0.5})
    with pytest.raises(ConfigError, match=r"hidden=0: must be >= 1"):
        TrainConfig.from_json({"model": {"name": "mlp", "hidden": 0}})
    with pytest.raises(ConfigError, match="lr_schedule: apply to networks only"):
        TrainConfig.from_flat({"model": "logreg", "lr_schedule": "cosine"})


def test_registration_refuses_a_clashing_name_or_type() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(MLP_SPEC)

    @dataclass(frozen=True)
    class Clash:
        c: str = "one"  # a float in svm, statsvm, musicnnsvm, logreg: one --model-c option

    with pytest.raises(ValueError, match="setting 'c' has another type"):
        register(ModelSpec("clash", PIPELINE, "", build_logreg, settings=Clash))
    assert "clash" not in model_names()


PLUGINS = {
    "dup": ("register(models.get_spec('svm'))", "model 'svm' is already registered"),
    "badname": (
        "register(dataclasses.replace(models.get_spec('svm'), name='My-Model'))",
        "model name 'My-Model': use lower-case letters, digits and _",
    ),
    "badfamily": (
        "register(dataclasses.replace(models.get_spec('svm'), name='mine', family='tree'))",
        "model 'mine': family 'tree' not one of",
    ),
    "notaspec": ("register('svm')", "register() takes a ModelSpec, not str"),
}


@pytest.mark.parametrize("plugin", PLUGINS)
def test_a_plugin_that_cannot_register_is_one_line(
    plugin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Issue 35, item 21: a ``GENRE_JAX_MODELS`` module registering a duplicate or badly named
    model was a traceback. It is one line naming the variable, the module and the reason, exit
    2; the registry is unchanged."""
    code, reason = PLUGINS[plugin]
    module = f"genre_jax_test_plugin_{plugin}"
    header = (
        "import dataclasses\nfrom genre_jax import models\nfrom genre_jax.models import register\n"
    )
    (tmp_path / f"{module}.py").write_text(header + code + "\n")
    monkeypatch.chdir(tmp_path)  # the variable's modules are also looked for here
    monkeypatch.setenv("GENRE_JAX_MODELS", module)
    names = model_names()
    assert main(["synth", "--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genre-jax: error: GENRE_JAX_MODELS: module {module!r}: "), err
    assert err.count("\n") == 1 and reason in err, err
    assert model_names() == names and not (tmp_path / "data").exists()


def test_help_lists_the_registered_models_and_every_choice() -> None:
    """A plugin named in GENRE_JAX_MODELS appears in the choices of a fresh process; ``train
    --help`` lists the models by name and ``--model NAME --help`` (one or several) their
    settings."""
    root = Path(__file__).parent.parent

    def help_text(*argv: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "genre_jax.cli", "train", *argv, "--help"],
            env=child_env(GENRE_JAX_MODELS="tests.test_protocol", COLUMNS="200"),
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    text = help_text()
    choices = re.search(r"--model \{([^}]*)\}", text).group(1).split(",")
    assert choices == [*model_names()]  # the built-in ones and this file's two
    assert {"cnn", "gru", "svm", "melstat", "statsvm", "musicnnsvm", "mlp", "logreg"} <= set(
        choices
    )
    for enumerated in ("{constant,cosine}", "{song,kfold,official,fault-filtered,seed-leaky}",
                       "{auto,artist,song}", "{auto,device,stream}",
                       "{auto,scan,steps}", "{best-val,last}"):  # fmt: skip
        assert enumerated in text, enumerated
    assert "--model.hidden" not in text and "--model NAME --help" in text
    # One option per setting name; its help names the models that have it, each default.
    text = help_text("--model", "melstat", "--model", "mlp", "--model", "svm")
    assert "--model.hidden" in text and "[melstat, mlp] units of the hidden" in text
    assert "default: 128 (melstat), 64 (mlp)" in text
    assert "SVM regularisation C" in text  # each option's help is its field's docstring
    assert "{jax,sklearn}" in text
    # One model: its settings alone, under its name.
    text = help_text("--model", "gru")
    assert "settings of model gru" in text and "--model.units" in text
    assert "--model.hidden" not in text


def test_old_spellings_still_work_with_a_notice(synthetic_store, tmp_path, capsys) -> None:
    run = tmp_path / "svm"
    argv = ["train", "--features", str(synthetic_store.path), "--run-dir", str(run)]
    assert main([*argv, "--model", "svm", "--svm-c", "2", "--no-time-flip", "--no-progress"]) == 0
    assert "--svm-c is now --model.c" in capsys.readouterr().err
    assert load_predictor(run).train_config.model_settings.c == 2.0
    assert main(["evaluate", "--run-dir", str(run), "--split", "val"]) == 0
    assert "--split is now --part" in capsys.readouterr().err
    assert (run / "report-val.json").is_file()


def test_no_module_outside_the_registry_and_specs_asks_a_models_name() -> None:
    """The special cases that chose a model by name are gone from the package, and none came
    back: outside ``genre_jax/models/`` no code compares a model's name (``model ==``,
    ``in SVM_MODELS``, ``is_network`` ...) or holds a registered name as a string of its own
    (prose that mentions one is fine)."""
    names = {"cnn", "gru", "svm", "melstat", "statsvm", "musicnnsvm"}
    assert names <= set(model_names())
    name_check = re.compile(r"model\s*(==|!=)|\bin SVM_MODELS\b|\bis_network\b|\bNETWORKS\b")
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        with tokenize.open(path) as handle:
            tokens = list(tokenize.generate_tokens(handle.readline))
        code: dict[int, str] = {}
        for token in tokens:
            if token.type == tokenize.STRING:
                try:
                    value = ast.literal_eval(token.string)
                except ValueError:  # an f-string: its fields are code, checked as such
                    value = None
                if value in names:
                    found.append(f"{path.name}:{token.start[0]}: the name {value!r}")
            elif token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                code[token.start[0]] = code.get(token.start[0], "") + " " + token.string
        found += [f"{path.name}:{n}: {text}" for n, text in code.items() if name_check.search(text)]
    assert found == [], "\n".join(found)


def test_reports_say_what_ran_beside_the_experiment_file(synthetic_small, tmp_path) -> None:
    """An experiment file's protocol line describes the file's own settings; given another
    folder and other settings beside it, the reports say what actually ran."""
    out = tmp_path / "cv"
    config = Path(__file__).parent.parent / "configs" / "gtzan-dev-svm.json"
    argv = ["crossval", "--config", str(config), "--data-dir", str(synthetic_small)]
    given = ["--segment-seconds", "3", "--folds", "2", "--model-c", "2"]
    assert main([*argv, "--out", str(out), *given, "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    data = str(synthetic_small.resolve())
    assert report["data_dir"].startswith(data)  # the genres' folder inside it
    assert report["given"] == {"segment_seconds": 3.0, "folds": 2, "model.c": 2.0}
    assert report["experiment_file"] == str(config)
    text = (out / "report.md").read_text()
    ran = next(line for line in text.splitlines() if line.startswith("Ran on"))
    assert report["data_dir"] in ran and "3 s segments" in ran
    assert "folds=2" in ran and "model.c=2.0" in ran and "segment_seconds=3.0" in ran
    assert "The file's own protocol: gtzan-dev excerpts" in ran  # labelled as the file's
    assert "\nProtocol: gtzan-dev" not in text  # never as what ran
    fold = json.loads((out / "fold-0" / "report.json").read_text())
    assert fold["data_dir"] == report["data_dir"]
    assert "3 s segments" in fold["ran"] and "model.c=2.0" in fold["ran"]
    assert fold["model_settings"] == {"name": "svm", "c": 2.0, "gamma": "scale", "backend": "jax"}


def test_field_docs_reads_both_docstring_layouts() -> None:
    """Option help comes from the Attributes section, as Google style writes it (indented
    under a summary) or as a one-line-summary docstring starts with it."""
    from genre_jax.settings import field_docs

    @dataclass(frozen=True)
    class Indented:
        """Summary.

        Attributes:
            first: one line.
            second: runs on
                over two lines.

        Notes: not a field.
        """

        first: int = 1
        second: int = 2

    @dataclass(frozen=True)
    class Leading:
        """Attributes:
        only: the first line is the section's head.
        """

        only: int = 0

    assert field_docs(Indented) == {"first": "one line.", "second": "runs on over two lines."}
    assert field_docs(Leading) == {"only": "the first line is the section's head."}
    assert field_docs(MLPSettings) == {"hidden": "units of the hidden layer."}
