"""Model cards: ``MODEL_CARD.md`` in every run directory, ensemble and cross-validation folder,
and the card of an export, in the Hugging Face convention (YAML front matter, then Markdown).

A card is made from files only, never recomputed: the folder's own (``config.json``,
``summary.json``, the run's own test report, a cross-validation's ``experiment.json`` and
``report.json``) and, for the data folder of a run not yet evaluated, the ``store.json`` of
the store its ``config.json`` names, while it exists. It is written again whenever they
change: a run finished (:mod:`genre_jax.runner`), an ensemble made (:mod:`genre_jax.ensemble`),
a report written by ``evaluate`` (:mod:`genre_jax.evaluate`), a cross-validation summarised
(:mod:`genre_jax.crossval`); :func:`write_card` by hand. ``model-index`` holds the measured
accuracies in Hugging Face's format; the ``genre_jax`` section repeats the body's figures for
programs. :data:`genre_jax.output_dirs.LAYOUTS` lists the card, so ``--overwrite`` takes it.

The module stays one (about 500 lines) because it is one artefact: what each kind of folder
records, gathered (``_Facts``), and the one card all kinds share, rendered from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genre_jax.config import RUN_OPTIONS
from genre_jax.fileio import JSONFileError, atomic_write_bytes, read_json_object
from genre_jax.output_dirs import dir_kind

CARD_NAME = "MODEL_CARD.md"
_LIBRARY = "genre-jax"  # library_name in the front matter: what marks a card as ours
_IDENTITY = "data identity (the songs' decoded audio, in order)"
_FINGERPRINT = "data fingerprint (the data folder's files)"
_FEATURE_HASH = "feature hash (the feature settings)"
_KINDS = {"run": "run directory", "ensemble": "ensemble", "crossval": "cross-validation",
          "export": "exported program"}  # fmt: skip
_MEMBER_WEIGHTS = (
    "Members that read a pretrained musicnn tagger (its wheel's weights, ISC licence) name "
    "the checkpoint in their own config.json and card."
)


def write_card(folder: str | Path) -> Path:
    """Write ``folder/MODEL_CARD.md`` (atomically) from the folder's files; return its path.
    The kind is the folder's marker's, else told by its files (``experiment.json``: a
    cross-validation; a ``config.json`` listing ``members``: an ensemble; else a run).

    Raises:
        ValueError: the folder holds no run, ensemble or cross-validation, or one of its
            files is not the JSON object genre-jax writes (named).
    """
    folder = Path(folder)
    kind = dir_kind(folder)
    if kind is None and (folder / "experiment.json").is_file():
        kind = "crossval"
    elif kind is None and (folder / "config.json").is_file():
        kind = "ensemble" if "members" in _read(folder / "config.json") else "run"
    if kind not in ("run", "ensemble", "crossval"):
        raise ValueError(
            f"{folder}: not a run, ensemble or cross-validation folder of genre-jax's (no "
            "marker, config.json or experiment.json); no model card"
        )
    path = folder / CARD_NAME
    if not is_our_card(path):
        raise ValueError(
            f"{path}: exists and is not a card genre-jax wrote (no front matter naming "
            f"library_name {_LIBRARY!r}); it is left as it is"
        )
    facts = _crossval_facts(folder) if kind == "crossval" else _run_facts(folder, kind)
    atomic_write_bytes(path, _render(facts, []).encode())
    return path


def is_our_card(path: Path) -> bool:
    """``path`` may be (re)written: nothing is there, or a card genre-jax wrote (its YAML
    front matter names ``library_name: "genre-jax"``); a file of the user's is never
    replaced."""
    if not path.exists() and not path.is_symlink():
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    front = head.split("\n---", 1)[0] if head.startswith("---\n") else ""
    return f"library_name: {json.dumps(_LIBRARY)}" in front


def update_card(folder: str | Path, log: Callable[[str], None] = print) -> None:
    """:func:`write_card` where a folder was just finished: a card that cannot be made (a
    folder of an older layout) is a warning naming why, never the loss of the work."""
    try:
        write_card(folder)
    except (OSError, ValueError, KeyError, TypeError) as error:
        log(f"warning: {folder}/{CARD_NAME} not written ({type(error).__name__}: {error})")


def export_card(record: dict[str, Any], program_path: str | Path) -> str:
    """The card of the export at ``program_path`` from its sidecar ``record``
    (:func:`genre_jax.export.export_run`): the program and its settings, and the data, split
    and accuracy of its source run, read from that run's files while it exists (said to be
    unknown when it does not)."""
    source = Path(record.get("source_run") or "")
    facts = _Facts(record["model"]["name"], {"train": {"model": record["model"]}}, "export")
    facts.features = record.get("feature_config") or {}
    kept = bool(record.get("source_run")) and (source / "config.json").is_file()
    if kept:
        facts.__dict__.update({**vars(_run_facts(source, "run")), "kind": "export"})
    facts.folder = Path(program_path)
    genres = list(record.get("genres") or [])
    head = [
        f"Exported program `{program_path}` ({record.get('format')}, SHA-256 "
        f"`{record.get('program_sha256')}`; sidecar `{program_path}.json`): segments of "
        f"{record.get('segment_seconds', 0):g} s at {record.get('sample_rate')} Hz to "
        f"probabilities over {len(genres)} genres ({', '.join(genres)}); the weights of epoch "
        f"{record.get('best_epoch')} of its source run.",
        f"Source run: `{source}`"
        + (
            " (the data, split and accuracy below are read from its files)."
            if kept
            else ": no longer here, so its data, split and measured accuracy are unknown to "
            "this card (the run's own MODEL_CARD.md has them, where it was kept)."
        ),
    ]
    return _render(facts, head)


class _Facts:
    """What a card says, gathered from the files before it is rendered."""

    def __init__(self, model: str, config: dict[str, Any], kind: str) -> None:
        self.model, self.config, self.kind, self.folder = model, config, kind, Path(".")
        self.features: dict[str, Any] = config.get("features") or {}
        self.trains: dict[str, dict[str, Any]] = {"": config.get("train") or {}}
        self.data_dir: str | None = None
        self.digests: dict[str, Any] = {}
        self.split_lines: list[str] = []
        self.dataset_split = ""
        self.leaky = False
        self.results: list[tuple[str, float, str]] = []  # (level, accuracy, metric's name)
        self.protocol: list[str] = []
        self.extra: dict[str, Any] = {}  # more of the front matter's genre_jax section


def _read(path: Path) -> dict[str, Any]:
    try:
        return read_json_object(path)
    except JSONFileError as error:
        raise ValueError(f"{path} {error}") from None


def _optional(path: Path) -> dict[str, Any]:
    return _read(path) if path.is_file() else {}


def _model_of(train: dict[str, Any]) -> str:
    section = train.get("model")
    from genre_jax.models import DEFAULT_MODEL

    return str(section.get("name") if isinstance(section, dict) else section or DEFAULT_MODEL)


def _pct(value: Any) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, int | float) else "-"


def _split_text(split: dict[str, Any], train: dict[str, Any]) -> str:
    name, level = split.get("name", "?"), split.get("level", "song")
    if split.get("leaky"):
        return (
            f"Split `{name}`: the seed's random split of segments. Segments of one song land "
            "in train and test, so its test accuracy is inflated (kept to reproduce the seed)."
        )
    grouped = "by artist (no artist on two sides)" if name.startswith("artist-") else "by song"
    how = {
        "kfold": f"fold {train.get('fold')} of {train.get('folds')}-fold cross-validation, "
        f"split seed {train.get('split_seed')}, {train.get('val_per_genre')} validation "
        "song(s) per genre held out of the training folds",
        "official": "the dataset's own split",
        "fault-filtered": "the published fault-filtered GTZAN split (artist-disjoint)",
    }.get(str(train.get("split")), f"stratified by genre, split seed {train.get('split_seed')}")
    sizes = ", ".join(
        f"{len(split[p])} {p}" for p in ("train", "val", "test") if isinstance(split.get(p), list)
    )
    unit = "songs" if level == "song" else "segments"
    return f"Split `{name}`: {level}-level, grouped {grouped}; {how}. Parts: {sizes} {unit}."


def _run_facts(folder: Path, kind: str) -> _Facts:
    config = _read(folder / "config.json")
    model = _model_of(config.get("train") or {})
    if kind == "ensemble":
        model = f"ensemble({'+'.join(config.get('member_models', []))})"
    facts = _Facts(model, config, kind)
    facts.folder, summary = folder, _optional(folder / "summary.json")
    names = ["report.json", *sorted(p.name for p in folder.glob("report-hop*s.json"))]
    name = next((n for n in names if (folder / n).is_file()), None)  # its own test report
    report = _read(folder / name) if name else {}
    store = Path(str(config.get("store"))) / "store.json"
    facts.data_dir = report.get("data_dir") or (
        _optional(store).get("data_root") if config.get("store") else None
    )
    facts.digests = {
        _IDENTITY: (config.get("songs") or {}).get("data"),
        _FINGERPRINT: config.get("data_fingerprint"),
        _FEATURE_HASH: config.get("feature_hash"),
    }
    split = config.get("split") or {}
    facts.leaky = bool(split.get("leaky") or report.get("leaky_split"))
    facts.split_lines = [_split_text(split, config.get("train") or {})]
    facts.dataset_split = f"{split.get('name', '?')} (test)"
    if kind == "ensemble":
        facts.trains = {}  # each member's are in its own config.json and card
        members = zip(config.get("members", []), config.get("member_models", []), strict=False)
        facts.split_lines.append(
            "Members (the mean of their probabilities; each one's weights bound by a digest "
            "in config.json): " + ", ".join(f"`{p}` ({m})" for p, m in members) + "."
        )
    if report:
        facts.results = [
            ("song", report["song_accuracy"], "Song-level accuracy (mean probability)"),
            ("segment", report["segment_accuracy"], "Segment-level accuracy"),
        ]
        hop = report.get("window_hop")
        facts.protocol = [
            f"Measured by `genre-jax evaluate` (`{name}`) on {report.get('evaluated_on')}: "
            f"{report.get('songs')} test songs, {report.get('segments')} segments. A song's "
            "genre is the mean of its segments' probabilities"
            + (f" (over windows every {hop:g} s)" if hop else "")
            + f"; by majority vote, song accuracy {_pct(report.get('song_accuracy_vote'))}."
        ]
        facts.extra = {
            **{f"{level}_accuracy": value for level, value, _ in facts.results},
            "test_songs": report.get("songs"),
            "test_segments": report.get("segments"),
        }
    else:
        facts.protocol = [
            f"Not evaluated yet: `genre-jax evaluate --run-dir {folder}` measures the test "
            "songs' accuracy and writes the run's card again."
        ]
    if summary.get("val_accuracy") is not None:
        epoch = f", best epoch {summary['best_epoch']}" if summary.get("best_epoch") else ""
        facts.protocol += ["", f"Validation accuracy (segments{epoch}): "
                           f"{_pct(summary['val_accuracy'])}."]  # fmt: skip
    return facts


def _crossval_facts(folder: Path) -> _Facts:
    experiment, report = _read(folder / "experiment.json"), _optional(folder / "report.json")
    members = experiment.get("members") or {}
    train = next(iter(members.values()), {})
    facts = _Facts(
        str(report.get("model") or experiment.get("model")), {"train": train}, "crossval"
    )
    facts.folder, facts.features = folder, experiment.get("features") or {}
    if len(members) > 1:
        facts.trains = dict(members)
    facts.data_dir = report.get("data_dir") or experiment.get("data_dir")
    facts.digests = {
        _IDENTITY: experiment.get("data_identity"),
        _FEATURE_HASH: experiment.get("feature_hash"),
    }
    folds, seed = report.get("folds", train.get("folds")), train.get("split_seed")
    seeds = experiment.get("split_seeds") or [seed]  # one before repeats were recorded
    grouped = "artist" if experiment.get("grouped_by") == "artist" else "song"
    held = ", ".join(str(m.get("val_per_genre")) for m in members.values())
    kfold, seed_text, fold_dir = f"{folds}-fold", f"split seed {seed}", "fold-<i>/"
    partition = ""
    if len(seeds) > 1:  # repeated k-fold: a partition per split seed
        kfold = f"{len(seeds)} x {folds}-fold"
        seed_text = f"split seeds {', '.join(str(s) for s in seeds)}"
        fold_dir, partition = "split-seed-<s>/fold-<i>/", " of a partition"
    facts.split_lines = [
        f"{kfold} cross-validation, stratified by genre, grouped by {grouped} (no "
        f"{grouped} in two folds{partition}), {seed_text}; {held} validation song(s) per "
        f"genre held out of each fold's training songs. Each fold (`{fold_dir}`) is a run "
        "directory or an ensemble with its own card."
        + (f" Members: {', '.join(members)}." if len(members) > 1 else "")
    ]
    facts.dataset_split = f"{kfold} {grouped}-level cross-validation, {seed_text}"
    facts.extra = {"folds": folds, "split_seed": seed, "grouped_by": grouped}
    if len(seeds) > 1:
        facts.extra.update(repeats=len(seeds), split_seeds=seeds)
    if not report:
        facts.protocol = ["No report.json yet: the cross-validation has not finished."]
        return facts
    mean, std = report["mean"], report["std"]
    all_folds = f"{folds} folds" if len(seeds) == 1 else f"{len(seeds)} x {folds} folds"
    facts.results = [
        ("song", mean["song_accuracy"], f"Song-level accuracy, mean of {all_folds}"),
        ("segment", mean["segment_accuracy"], f"Segment-level accuracy, mean of {all_folds}"),
    ]
    once, tests, head, rule = "once", "songs", "| fold |", "| --- |"
    if len(seeds) > 1:
        once, tests = "once per repeat", "song tests"
        head, rule = "| split seed | fold |", "| --- | --- |"
    seed_cell = (lambda r: "") if len(seeds) == 1 else (lambda r: f"{r['split_seed']} | ")
    facts.protocol = [
        f"Every song is tested {once}, in the fold that holds it out: {report.get('songs')} "
        f"{tests} over {all_folds}. Song accuracy {_pct(mean['song_accuracy'])} +- "
        f"{_pct(std['song_accuracy'])}, segment accuracy {_pct(mean['segment_accuracy'])} +- "
        f"{_pct(std['segment_accuracy'])} (mean +- standard deviation over folds, ddof=0); "
        f"pooled over the folds, {_pct(report.get('pooled_song_accuracy'))} of the songs.",
        *_interval_lines(report),
        "",
        f"{head} test songs | test segments | song acc. | segment acc. |",
        f"{rule} --- | --- | --- | --- |",
        *(
            f"| {seed_cell(r)}{r['fold']} | {r['songs']} | {r['segments']} | "
            f"{_pct(r['song_accuracy'])} | {_pct(r['segment_accuracy'])} |"
            for r in report.get("per_fold", [])
        ),
    ]
    facts.extra.update(
        song_accuracy_mean=mean["song_accuracy"],
        song_accuracy_std=std["song_accuracy"],
        segment_accuracy_mean=mean["segment_accuracy"],
        segment_accuracy_std=std["segment_accuracy"],
        test_songs=report.get("songs"),
    )
    if len(seeds) > 1:  # the songs of one partition (each is tested once per repeat)
        facts.extra["test_songs"] = (report.get("per_repeat") or [{}])[0].get("songs")
    return facts


def _interval_lines(report: dict[str, Any]) -> list[str]:
    """The interval of the mean song accuracy a cross-validation's report gives (none in
    reports written before intervals)."""
    interval = (report.get("interval") or {}).get("song_accuracy")
    if not interval:
        return []
    return [
        "",
        f"95 % confidence interval of the mean song accuracy: {_pct(interval[0])} to "
        f"{_pct(interval[1])} (corrected resampled t interval, Nadeau & Bengio 2003: the folds "
        "share training songs, so the naive interval over folds would be too narrow).",
    ]


def _spec(model: str) -> Any:
    from genre_jax.models import get_spec
    from genre_jax.settings import ConfigError

    try:
        return get_spec(model)
    except ConfigError:
        return None  # an ensemble, or a researcher's model not registered in this process


def _reads_weights(spec: Any) -> bool:
    """A model with a ``weights`` setting reads a pretrained tagger's checkpoint."""
    return spec is not None and "weights" in {f.name for f in dataclasses.fields(spec.settings)}


def _pretrained(train: dict[str, Any]) -> list[str]:
    section = train.get("model")
    weights = section.get("weights") if isinstance(section, dict) else None
    if not isinstance(weights, str):
        return []
    from genre_jax.models import musicnn

    source = "the Million Song Dataset's Last.fm tags" if weights.startswith("MSD") else (
        "MagnaTagATune's tags"
    )  # fmt: skip
    return [
        f"`{weights}` of the `musicnn` wheel on PyPI ({musicnn.WHEEL_REQUIREMENT}, SHA-256 "
        f"`{musicnn.WHEEL_SHA256}`; Pons and Serra, ISMIR 2019), **ISC licence**, learnt from "
        f"{source}. They are not part of genre-jax; this model's saved weights contain them "
        "(fine-tuned, or as its embedding step), so their ISC notice goes with them."
    ]


def _render(facts: _Facts, head: list[str]) -> str:
    folder, data = facts.folder, facts.data_dir
    path = Path(data or "")
    name = path.parent.name if path.name in ("genres_original", "genres", "Data") else path.name
    name = name or "unknown"
    from genre_jax.synthetic import MARKER_NAME

    synthetic = bool(data) and any((p / MARKER_NAME).is_file() for p in (path, path.parent))
    spec = _spec(facts.model)
    members = facts.config.get("member_models") or [_model_of(t) for t in facts.trains.values()]
    families = {getattr(_spec(m), "family", None) for m in members}
    pretrained = [line for t in facts.trains.values() for line in _pretrained(t)]
    if facts.kind == "ensemble" and any(_reads_weights(_spec(m)) for m in members):
        pretrained = [_MEMBER_WEIGHTS]
    tags = ["genre-classification", "music", "audio-classification"]
    tags += [t for t in ("gtzan", "fma") if t in str(data).lower()]
    tags += ["synthetic"] * synthetic + [*dict.fromkeys([facts.model, *members]), "jax"]
    tags += ["flax"] * (facts.kind == "export" or "network" in families)
    tags += ["scikit-learn"] * ("pipeline" in families) + ["musicnn"] * bool(pretrained)
    licence = {"license": "other", "license_name": "mit-and-isc"} if pretrained else {}
    front: dict[str, Any] = {
        "pipeline_tag": "audio-classification",
        "library_name": _LIBRARY,
        "license": "mit",
        **licence,
        "tags": tags,
    }
    if facts.results:
        front["metrics"] = ["accuracy"]
        result = {
            "task": {"type": "audio-classification", "name": "Music genre classification"},
            "dataset": {"name": name, "type": name, "split": facts.dataset_split},
            "metrics": [{"type": "accuracy", "value": v, "name": n} for _, v, n in facts.results],
        }
        front["model-index"] = [{"name": f"{facts.model} ({folder.name})", "results": [result]}]
    digests = {k.split(" (")[0].replace(" ", "_"): v for k, v in facts.digests.items() if v}
    front["genre_jax"] = {"kind": facts.kind, "model": facts.model, "data_dir": data,
                          "dataset": name, **digests, **facts.extra}  # fmt: skip
    again = f"`genre-jax card {folder}` writes it again"
    if facts.kind == "export":
        again = "by `genre_jax.model_card.export_card`"
    features = ", ".join(f"`{k}`={json.dumps(v)}" for k, v in facts.features.items())
    lines = [
        "---", *_yaml(front), "---", "", f"# {facts.model} on {name}", "",
        f"Model card of the genre-jax {_KINDS[facts.kind]} `{folder}`, written from its "
        f"files ({again}).", "",
        *(line for h in head for line in (h, "")),
        "## Model", "", f"`{facts.model}`" + (f": {spec.description}." if spec else "."), "",
        *_settings_tables(facts), f"Features: {features}.", "",
        "## Data", "",
        f"Data folder: `{data or 'not recorded (its store is gone)'}`"
        + (" (the built-in synthetic dataset)." if synthetic else "."),
        *(f"- {what}: `{value}`" for what, value in facts.digests.items() if value), "",
        "## Split", "", *facts.split_lines, "",
        "## Results", "",
        *(f"- **{level}-level accuracy: {_pct(value)}**" for level, value, _ in facts.results),
        *[""] * bool(facts.results), *facts.protocol, "",
        *_seed_section(facts.model, spec),
        "## Pretrained weights", "",
        *(pretrained or ["None: every weight was trained from scratch on the data above."]), "",
        "Licence: MIT (genre-jax's code, and the weights trained here)"
        + ("; the pretrained weights: ISC." if pretrained else "."), "",
        "## Known limits", "", *_limits(facts, synthetic, name), "",
        "## How to use", "", *_usage(facts),
    ]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def _settings_tables(facts: _Facts) -> list[str]:
    """Each train config's settings by their dotted names, as ``config.json`` nests them."""
    if not facts.trains:
        return ["Its members' settings are in their own config.json and MODEL_CARD.md.", ""]
    out = []
    for member, train in facts.trains.items():
        out += [f"Member `{member}`:", ""] if member else []
        out += ["| setting | value |", "| --- | --- |"]
        for key, value in train.items():
            pairs = [(key, value)]
            if key == "model" and isinstance(value, dict):
                own = [(f"model.{k}", v) for k, v in value.items() if k != "name"]
                pairs = [("model", value.get("name")), *own]
            out += [
                f"| `{k}` | `{json.dumps(v)}`{' (run option)' if k in RUN_OPTIONS else ''} |"
                for k, v in pairs
            ]
        out.append("")
    return out


def _seed_section(model: str, spec: Any) -> list[str]:
    from genre_jax.models import specs

    seeds = [(s.name.upper(), s.seed.segment_accuracy) for s in specs() if s.seed is not None]
    figures = ", ".join(f"{name} {_pct(value)}" for name, value in seeds)
    own = getattr(spec, "seed", None)
    text = (
        f"The seed study reported {_pct(own.segment_accuracy)} segment-level test accuracy for "
        f"its version of `{model}` ({figures} for its models)"
        if own
        else f"The seed study's models reached {figures} segment-level test accuracy"
    )
    return [
        "## The seed study, for comparison",
        "",
        text + " on a random split of segments that leaks songs: segments of one song were in "
        "both its training and its test set, which inflates them. They compare with a run on "
        "the seed's leaky split, not with song-level figures on a song-level split.",
        "",
    ]


def _limits(facts: _Facts, synthetic: bool, data_name: str) -> list[str]:
    seconds, rate = facts.features.get("segment_seconds"), facts.features.get("sample_rate")
    out = [
        f"- Trained and tested on {seconds:g} s segments at {rate} Hz; a song's genre is the "
        "mean over its segments, and audio shorter than a segment is not what it learnt from."
        if isinstance(seconds, int | float)
        else "- The segment length is not recorded."
    ]
    if synthetic:
        out.append(
            "- Trained on genre-jax's built-in **synthetic** dataset: its figures say nothing "
            "about real music."
        )
    if facts.leaky:
        out.append("- The split leaks songs between training and test: accuracy is inflated.")
    if "gtzan" in str(facts.data_dir).lower():
        out.append(
            "- GTZAN has replicated tracks, mislabelings and strong artist repetition (Sturm, "
            "2012): a split that does not group by artist puts one artist on both sides."
        )
    songs = facts.extra.get("test_songs")
    if isinstance(songs, int) and songs:
        out.append(
            f"- {songs} test songs: one song moves the accuracy by {100 / songs:.2f} points."
        )
    out.append(f"- The genres are the {data_name} folder's; other music is forced into them.")
    return out


def _usage(facts: _Facts) -> list[str]:
    path, intro = str(facts.folder), []
    if facts.kind == "crossval":
        seeds = facts.extra.get("split_seeds")
        first = f"split-seed-{seeds[0]}/fold-0" if seeds else "fold-0"
        path = str(facts.folder / first)
        where = "split-seed-<s>/fold-<i>/" if seeds else "fold-<i>/"
        intro = [f"Each fold is a model of its own (`{where}`), e.g. the first:", ""]
    code = ["```python", "import genre_jax", "", f'genre_jax.load("{path}").predict("song.wav")']
    if facts.kind == "export":  # a program, not a run directory
        return [*code, "```"]
    return [
        *intro,
        *code,
        "```",
        "",
        "```sh",
        f"genre-jax predict song.wav --run-dir {path}",
        "```",
    ]


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """Block YAML of JSON-like ``value``; scalars are written as JSON, which YAML reads."""
    pad, lines = " " * indent, []
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        lead = f"{pad}{key}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(item, dict) and item and isinstance(value, list):
            nested = _yaml(item, indent + 2)
            lines += [f"{pad}- {nested[0].lstrip()}", *nested[1:]]
        elif isinstance(item, dict | list) and item:
            lines += [lead, *_yaml(item, indent + 2)]
        else:
            lines.append(f"{lead} {_scalar(item)}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return json.dumps(value if isinstance(value, bool | int | float | None) else str(value))
