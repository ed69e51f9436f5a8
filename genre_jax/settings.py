"""Settings as frozen dataclasses: declared ranges, type checks, JSON round trip, hashes, diffs.

The machinery every settings class uses (:class:`genre_jax.config.FeatureConfig`,
:class:`genre_jax.config.TrainConfig` and each model's own settings,
:mod:`genre_jax.models`); it knows no setting by name. A field declares its range with
:func:`setting` and its meaning in the class docstring's ``Attributes:`` section
(:func:`field_docs`), which the command line shows as the option's help.

A setting is a single value (``int``, ``float``, ``str``, ``bool``, each maybe ``| None``) or a
tuple of them (``tuple[int, ...]``: the CNN's ``channels``): a tuple holds at least one value,
its range applies to each, and JSON's list reads back as the tuple (:func:`json_values`), so
that a config round-trips, compares equal and hashes the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any, TypeVar

T = TypeVar("T")

# What a whole-number setting can be at most, whatever its declared range: numpy and JAX take
# Python ints as C longs (64 bits), so a larger one is an OverflowError wherever it reaches
# them. Settings that reach narrower types declare their own maximum:
INT64_MAX = 2**63 - 1
# jax.random.key keeps 32 bits of a seed without jax_enable_x64 (key(2**32) is key(0)), and
# scikit-learn's random_state (numpy's RandomState) refuses seeds from 2**32 on.
SEED_MAX = 2**32 - 1
# Counts that become int32 values inside a compiled step (optimiser steps, epochs: Optax's
# step count and the schedules' boundaries are int32).
INT32_MAX = 2**31 - 1


class ConfigError(ValueError):
    """A setting has an invalid value, or two configs that must agree do not."""


def setting(
    default: Any,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its allowed range: ``minimum <= value <= maximum``, ``value >
    above``, ``value < below``, or one of ``choices``; for a tuple setting, of each of its
    values. :func:`check_fields` enforces it."""
    bounds = {"minimum": minimum, "above": above, "below": below, "maximum": maximum}
    meta = {k: v for k, v in bounds.items() if v is not None}
    if choices is not None:
        meta["choices"] = choices
    return field(default=default, metadata=meta)


def scalar_type(annotation: Any) -> tuple[Any, bool]:
    """(base type, optional?) of a field annotation such as ``float | None``; a tuple
    setting's base type is its annotation, ``tuple[int, ...]`` (:func:`element_type`)."""
    hint = annotation
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    return hint, optional


def element_type(base: Any) -> Any | None:
    """``int`` for a tuple setting's base type ``tuple[int, ...]``; None for a single value."""
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
    return None


def range_text(meta: Any) -> str:
    """``>= 1``, ``> 0``, ``in [0, 1)``, ``one of a, b``: the range a field's metadata sets."""
    if "choices" in meta:
        return "one of " + ", ".join(meta["choices"])
    parts = []
    for key, sign in (("minimum", ">="), ("above", ">"), ("below", "<"), ("maximum", "<=")):
        if key in meta:
            parts.append(f"{sign} {_number(meta[key])}")
    return " and ".join(parts)


def _number(bound: float) -> str:
    """A bound as people write it: whole numbers in full (4294967295, not 4.29497e+09)."""
    if isinstance(bound, int) or (math.isfinite(bound) and float(bound).is_integer()):
        return str(int(bound))
    return f"{bound:g}"


def shown(value: Any) -> str:
    """``repr(value)``, but a whole number of more than 30 digits by its size alone (Python
    refuses to write one of more than 4,300 digits, and a line should stay a line), also
    inside a tuple or list."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value).bit_length() > 99:
        digits = int(abs(value).bit_length() * math.log10(2)) + 1
        return f"<a whole number of about {digits:,} digits>"
    if isinstance(value, tuple | list):
        inner = ", ".join(shown(v) for v in value)
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _type_problem(value: Any, base: Any, optional: bool) -> str | None:
    """Why ``value`` is not of the declared type (None when it is)."""
    if value is None:
        return None if optional else f"must be {_type_name(base)}, not None"
    element = element_type(base)
    if element is not None:
        if not isinstance(value, tuple):
            return f"must be {_type_name(base)}, not {shown(value)}"
        if not value:
            return f"must be {_type_name(base)}, at least one"
        for item in value:
            problem = _type_problem(item, element, False)
            if problem is not None:
                return f"each value {problem}"
        return None
    if base is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number, not {shown(value)}"
        return None
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, not {shown(value)}"
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int beyond any float
            finite = False
        return None if finite else f"must be a finite number, not {shown(value)}"
    if base is str:
        return None if isinstance(value, str) else f"must be text, not {value!r}"
    return None


def _type_name(base: Any) -> str:
    """``int``, or ``a tuple of whole numbers`` for a tuple setting's ``tuple[int, ...]``."""
    element = element_type(base)
    if element is not None:
        plural = {int: "whole numbers", float: "numbers", str: "texts", bool: "true/false values"}
        return f"a tuple of {plural.get(element, getattr(element, '__name__', str(element)))}"
    return getattr(base, "__name__", str(base))


def _range_problem(value: Any, base: Any, meta: Any) -> str | None:
    """Why a value of the declared type is outside its declared range (None when inside)."""
    if meta:
        if "choices" in meta:
            ok = value in meta["choices"]
        else:
            ok = (
                value >= meta.get("minimum", -math.inf)
                and value > meta.get("above", -math.inf)
                and value < meta.get("below", math.inf)
                and value <= meta.get("maximum", math.inf)
            )
        if not ok:
            return f"must be {range_text(meta)}"
    if base is int and abs(value) > INT64_MAX:
        widest = {"minimum": -INT64_MAX - 1, **meta, "maximum": INT64_MAX}
        return f"must be {range_text(widest)} (a whole number of 64 bits)"
    return None


def check_fields(config: Any, what: str) -> None:
    """Check every field of a dataclass instance against its declared type and range.

    Types come from the annotations (``int``, ``float``, ``str``, ``bool``, ``X | None``,
    ``tuple[X, ...]``): a float must be finite, an int must not be a bool or a float and must
    fit 64 bits (:data:`INT64_MAX`; a setting that reaches a narrower type declares a smaller
    ``maximum``, e.g. :data:`SEED_MAX`); a tuple must hold at least one value, each of its
    type. Ranges and choices come from :func:`setting` (a tuple's apply to each value). The
    first problem is a :class:`ConfigError` naming the field, e.g. ``train setting
    epochs=2.5: must be a whole number, not 2.5`` or ``model setting channels=(16, 0):
    each value must be >= 1, not 0``.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        base, optional = scalar_type(hints[f.name])
        problem = _type_problem(value, base, optional)
        element = element_type(base)
        if problem is None and value is not None and element is not None:
            for item in value:
                problem = _range_problem(item, element, f.metadata)
                if problem is not None:
                    problem = f"each value {problem}, not {shown(item)}"
                    break
        elif problem is None and value is not None:
            problem = _range_problem(value, base, f.metadata)
        if problem is not None:
            raise ConfigError(f"{what} {f.name}={shown(value)}: {problem}")


def config_hash(config: Any) -> str:
    """SHA-256 of the canonical JSON of a dataclass config, first 12 hex digits."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def json_values(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the list JSON wrote for each tuple setting of dataclass ``cls`` as the
    tuple it was (other values, and names that are not ``cls``'s fields, as they are)."""
    hints = typing.get_type_hints(cls)
    tuples = {
        f.name
        for f in dataclasses.fields(cls)
        if element_type(scalar_type(hints[f.name])[0]) is not None
    }
    return {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()}


def from_json(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass ``cls`` from a JSON dict; unknown fields are an error naming them."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
    return cls(**json_values(cls, data))


def dotted_settings(config: Any) -> dict[str, Any]:
    """A config's settings by their dotted names: its ``dotted()`` where it has one (a config
    with a nested section, whose fields are ``section.field``), else its fields."""
    dotted = getattr(config, "dotted", None)
    return dotted() if callable(dotted) else dataclasses.asdict(config)


def config_diff(expected: Any, actual: Any) -> list[tuple[str, Any, Any]]:
    """Settings where two configs of the same dataclass differ: ``(name, expected, actual)``."""
    a, b = dotted_settings(expected), dotted_settings(actual)
    missing = object()
    names = [*a, *(k for k in b if k not in a)]
    return [(k, a.get(k), b.get(k)) for k in names if a.get(k, missing) != b.get(k, missing)]


def require_same(expected: Any, actual: Any, what: str) -> None:
    """Raise :class:`ConfigError` naming every differing field of two configs."""
    diff = config_diff(expected, actual)
    if diff:
        fields = "; ".join(f"{k}: expected {x!r}, found {y!r}" for k, x, y in diff)
        raise ConfigError(f"{what} does not match: {fields}")


_ATTRIBUTE = re.compile(r"^(\s*)(\w+):\s?(.*)$")


def field_docs(cls: type) -> dict[str, str]:
    """Each field's description from the class docstring's ``Attributes:`` section.

    Google style, as every settings class here writes it::

        Attributes:
            epochs: maximum epochs (the seed ran 100).
            batch_size: examples per optimiser step.

    A description runs on over the more deeply indented lines below its name; the result is
    one line per field, with the spaces of the docstring collapsed.
    """
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return {}
    docs: dict[str, list[str]] = {}
    name, indent = None, None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        match = _ATTRIBUTE.match(line)
        if match and indent in (None, depth):
            indent, name = depth, match.group(2)
            docs[name] = [match.group(3).strip()]
        elif name is not None and depth > indent:
            docs[name].append(line.strip())
        else:
            break  # the section ended
    return {k: " ".join(" ".join(v).split()) for k, v in docs.items()}
