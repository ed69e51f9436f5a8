"""Command-line options generated from the settings dataclasses.

Every field of :class:`~genre_jax.config.FeatureConfig` and :class:`~genre_jax.config.TrainConfig`
becomes an option (``segment_seconds`` -> ``--segment-seconds``), and every setting of every
registered model becomes ``--model.<name>``, its dotted name as in ``config.json``'s model
section (``c`` -> ``--model.c``, ``dropout_rate`` -> ``--model.dropout_rate``); each option's
help is its field's description from the class docstring, with its default and its range or
choices. A tuple setting takes its values comma-separated (``--model.channels 16,32,32``).
Options not given stay unset, so an experiment file's values survive them. The old spellings
of the model settings (``--model-c``, and from the days before model sections ``--svm-c``,
``--gru-unroll`` ...: :func:`old_model_flags`) still work, with a notice.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, TypeVar

from genre_jax.config import LEGACY_MODEL_SETTINGS, FeatureConfig, TrainConfig
from genre_jax.models import DEFAULT_MODEL, ModelSpec, get_spec, model_names, specs
from genre_jax.settings import element_type, field_docs, range_text, scalar_type

T = TypeVar("T")

UNSET = object()  # an option's default: "not given", distinct from an explicit 'none'
MODEL_PREFIX = "model_"  # a model setting's dest: model_<name>
MODEL_FLAG = "--model."  # and its option: --model.<name>
TRAIN_SKIP = ("model", "model_settings")  # TrainConfig fields with options of their own


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def model_flag(name: str) -> str:
    """The option of model setting ``name``: its dotted name, ``--model.dropout_rate``."""
    return MODEL_FLAG + name


def old_model_flags(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The old spellings of the model settings ``names``, each to its option: the table
    every old spelling is accepted (with a notice) from.

    ``--model-<name>`` (``--model-dropout-rate``: the spelling before options took the
    settings' dotted names) and the flat names of the days before model sections
    (:data:`~genre_jax.config.LEGACY_MODEL_SETTINGS`: ``--svm-c`` -> ``--model.c``).
    """
    table = {_flag(MODEL_PREFIX + name): model_flag(name) for name in names}
    for old, (new, _) in LEGACY_MODEL_SETTINGS.items():
        if new in names:
            table[_flag(old)] = model_flag(new)
    return table


def _optional(base: Any) -> Any:
    def convert(text: str) -> Any:
        return None if text.lower() == "none" else base(text)

    convert.__name__ = base.__name__
    return convert


def _whole_number(text: str) -> int:
    """``int(text)``; digits beyond Python's limit for reading a number (4,300) are refused by
    their count, not echoed whole (a setting's own range is checked with the settings)."""
    try:
        return int(text)
    except ValueError:
        digits = text.strip().lstrip("+-")
        if len(digits) > 40 and digits.isdigit():
            raise argparse.ArgumentTypeError(
                f"a whole number of {len(digits):,} digits, beyond any setting's range"
            ) from None
        raise


_whole_number.__name__ = "int"  # argparse names the type in "invalid int value: 'x'"


def _truth(text: str) -> bool:
    """``true``/``false`` (also ``yes``/``no``, ``1``/``0``): a value of a tuple of bools."""
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        return words[text.lower()]
    except KeyError:
        raise ValueError(text) from None


_truth.__name__ = "bool"


def _tuple_of(convert: Any) -> Any:
    """A converter of comma-separated values (``16,32,32``) to a tuple, each by ``convert``;
    an empty text or a value ``convert`` refuses is an argparse error quoting it."""

    def parse(text: str) -> tuple:
        if not text.strip():
            raise argparse.ArgumentTypeError(
                f"no value: give one or more {convert.__name__} values, comma-separated"
            )
        values = []
        for part in text.split(","):
            try:
                values.append(convert(part.strip()))
            except (ValueError, argparse.ArgumentTypeError):
                raise argparse.ArgumentTypeError(
                    f"invalid {convert.__name__} value {part.strip()!r} in {text!r} "
                    f"(one or more {convert.__name__} values, comma-separated)"
                ) from None
        return tuple(values)

    parse.__name__ = f"{convert.__name__} tuple"
    return parse


def _converter(base: Any, optional: bool) -> Any:
    """What reads an option's text as a value of the setting's type (``base``, maybe
    ``None``); a tuple setting's from comma-separated values."""
    element = element_type(base)
    if element is not None:
        convert = _tuple_of({int: _whole_number, bool: _truth}.get(element, element))
    else:
        convert = _whole_number if base is int else base
    return _optional(convert) if optional else convert


def _shown_default(value: Any) -> str:
    """A default as the option takes it: ``32,64,64`` for a tuple, else its repr."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return repr(value)


def _help(doc: str, default: Any, meta: Any, optional: bool, each: bool = False) -> str:
    """``doc [default: 1.0; > 0]``, escaped for argparse's %-formatting; ``default`` is a
    value, or the text of several models' defaults; ``each``: a tuple's range, of each value."""
    text = (doc or "").replace("``", "")
    shown = default if isinstance(default, _Defaults) else _shown_default(default)
    detail = f"default: {shown}" + (", 'none' disables" if optional else "")
    if meta and ("choices" not in meta or each):  # a single value's choices argparse shows
        detail += f"; {range_text(meta)}" + (" each" if each else "")
    return f"{text} [{detail}]".strip().replace("%", "%%")


class _Defaults(str):
    """The defaults of a setting several models have, each named: ``128 (melstat), 64 (mlp)``."""


def _add_field(
    group: argparse._ArgumentGroup,
    dest: str,
    annotation: Any,
    f: dataclasses.Field,
    doc: str,
    default: Any = None,
    flag: str | None = None,
) -> None:
    """Add the option ``flag`` (default ``--<dest>``) for field ``f`` of type ``annotation``."""
    base, optional = scalar_type(annotation)
    flags = (flag or _flag(dest),)
    meta = f.metadata
    each = element_type(base) is not None
    help_text = _help(doc, f.default if default is None else default, meta, optional, each)
    if base is bool:
        group.add_argument(
            *flags,
            dest=dest,
            default=UNSET,
            action=argparse.BooleanOptionalAction,
            help=help_text,
        )
        return
    choices = meta.get("choices") if meta and not each else None
    metavar = None  # argparse's: the choices, or the dest in capitals
    if each:
        metavar = f.name.upper() + ",..."
    elif flag is not None and choices is None:
        metavar = f.name.upper()
    group.add_argument(
        *flags,
        dest=dest,
        default=UNSET,
        type=_converter(base, optional),
        choices=choices,
        metavar=metavar,
        help=help_text,
    )


def add_dataclass_options(
    parser: argparse.ArgumentParser, cls: type, title: str | None = None, skip: tuple = ()
) -> None:
    """Add ``--<field>`` options for every field of ``cls`` (but ``skip``); defaults unset."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} settings")
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            _add_field(group, f.name, hints[f.name], f, docs.get(f.name, ""))


class _LegacyFlag(argparse.Action):
    """An old spelling of an option: sets the new one and says so once, on standard error."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: str | None = None) -> None:
        new = self.new if not option.startswith("--no-") else "--no-" + self.new[2:]
        print(f"{parser.prog}: notice: {option} is now {new}", file=sys.stderr)
        if self.nargs == 0:
            values = not option.startswith("--no-")
        setattr(namespace, self.dest, values)


def add_legacy_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    old: str,
    new: str,
    dest: str,
    **kwargs: Any,
) -> None:
    """Accept ``old`` for the option ``new`` (same ``dest``), hidden from ``--help``."""
    parser.add_argument(
        old, dest=dest, default=UNSET, action=_LegacyFlag, new=new, help=argparse.SUPPRESS, **kwargs
    )


def _model_settings(
    chosen: tuple[ModelSpec, ...],
) -> dict[str, tuple[dataclasses.Field, Any, str, dict[str, Any]]]:
    """The ``chosen`` models' settings by name: (field, annotation, doc, {model: default})
    (the field and doc of the first model that has it)."""
    found: dict[str, tuple[dataclasses.Field, Any, str, dict[str, Any]]] = {}
    for spec in chosen:
        hints = typing.get_type_hints(spec.settings)
        docs = field_docs(spec.settings)
        for f in dataclasses.fields(spec.settings):
            if f.name not in found:
                found[f.name] = (f, hints[f.name], docs.get(f.name, ""), {})
            found[f.name][3][spec.name] = f.default
    return found


def _model_help(spec: ModelSpec) -> str:
    names = ", ".join(spec.setting_names()) or "none"
    return f"{spec.name} ({spec.family}): {spec.description}; settings: {names}"


def add_train_options(
    parser: argparse.ArgumentParser, described: tuple[str, ...] | None = None
) -> None:
    """``--model`` (the registered models), the shared training settings, and the models'
    own settings as ``--model.<name>`` (their old spellings, :func:`old_model_flags`,
    hidden, with a notice).

    ``described``: None builds every model's settings (what parsing needs); a tuple is for
    ``--help``, which then describes only the models named there (``train --model melstat
    --help``; none for a bare ``train --help``), so that help imports no other model's code.
    """
    chosen = specs() if described is None else tuple(get_spec(n) for n in described)
    if described is None or described:
        listed = "; ".join(_model_help(s) for s in chosen)
    else:
        listed = (
            f"one of {', '.join(model_names())}; `{parser.prog} --model NAME --help` describes "
            "a model and lists its settings"
        )
    parser.add_argument(
        "--model",
        dest="model",
        default=UNSET,
        choices=list(model_names()),
        help=f"the model [default: {DEFAULT_MODEL!r}]; " + listed.replace("%", "%%"),
    )
    add_dataclass_options(parser, TrainConfig, "shared training settings", skip=TRAIN_SKIP)
    if described is not None and len(described) == 1:
        title = f"settings of model {described[0]} (--model.<setting>, as in config.json)"
    elif described == ():
        title = (
            "model settings (--model.<setting>, as in config.json's model section; "
            f"`{parser.prog} --model NAME --help` lists a model's)"
        )
    else:
        title = (
            "model settings (--model.<setting>, as in config.json's model section; each "
            "applies to the models named, others refuse it)"
        )
    group = parser.add_argument_group(title)
    settings = _model_settings(chosen)
    old_flags = old_model_flags(tuple(settings))
    for name, (f, annotation, doc, owners) in settings.items():
        defaults = None
        if len(set(map(repr, owners.values()))) > 1:
            defaults = _Defaults(", ".join(f"{_shown_default(v)} ({m})" for m, v in owners.items()))
        dest, new = MODEL_PREFIX + name, model_flag(name)
        shown = doc if len(chosen) == 1 else f"[{', '.join(owners)}] {doc}"
        _add_field(group, dest, annotation, f, shown, defaults, new)
        base, optional = scalar_type(annotation)
        for old in (old for old, flag in old_flags.items() if flag == new):
            if base is bool:  # both spellings, as BooleanOptionalAction made them
                for spelling in (old, "--no-" + old[2:]):
                    add_legacy_option(group, spelling, new, dest, nargs=0)
            else:
                add_legacy_option(group, old, new, dest, type=_converter(base, optional))


def dataclass_from_options(cls: type[T], args: argparse.Namespace, base: T | None = None) -> T:
    """Apply the options given on the command line on top of ``base`` (or the defaults)."""
    changes = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(args, f.name, UNSET)
        if value is not UNSET:
            changes[f.name] = value
    start = base if base is not None else cls()
    return dataclasses.replace(start, **changes)  # type: ignore[type-var]


def train_config_from_options(
    args: argparse.Namespace, base: TrainConfig | None = None
) -> TrainConfig:
    """The train config of ``base`` (or the defaults) with the options given on top.

    ``--model`` naming another model than ``base``'s starts from that model's default
    settings (``base``'s were another model's); ``--model.<setting>`` options then apply,
    and one the model does not have is refused, naming it.
    """
    base = base if base is not None else TrainConfig()
    tree = base.to_json()
    chosen = getattr(args, "model", UNSET)
    if chosen not in (UNSET, base.model):
        tree["model"] = {"name": chosen}
    for name in base.shared():
        value = getattr(args, name, UNSET)
        if value is not UNSET:
            tree[name] = value
    for key, value in vars(args).items():
        if key.startswith(MODEL_PREFIX) and value is not UNSET:
            tree["model"][key[len(MODEL_PREFIX) :]] = value
    return TrainConfig.from_json(tree)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (feature, shared training, ``model`` and
    ``model.<setting>``), by their settings' dotted names: what a report lists as given
    beside an experiment file."""
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    names |= {f.name for f in dataclasses.fields(TrainConfig)} - {"model_settings"}
    given = {}
    for key, value in vars(args).items():
        if value is not UNSET and key.startswith(MODEL_PREFIX):
            given["model." + key[len(MODEL_PREFIX) :]] = value
        elif value is not UNSET and key in names:
            given[key] = value
    return given
