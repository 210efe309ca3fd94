"""Checks shared by every dataclass that users fill from a dict (CLI ``--set``, job specs, app)."""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any

from pipelines.errors import InvalidInput


def reject_unknown_options(values: dict[str, Any], options_class: type) -> None:
    """Raise a one-line error naming unknown prediction options and the known ones.

    A typo (``score_treshold``) must not be ignored silently: the user would get results with
    the default they meant to change.
    """
    known = {f.name for f in dataclasses.fields(options_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInput(
            f"unknown prediction option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def check_option_types(
    values: dict[str, Any], options_class: type, what: str, prefix: str = ""
) -> dict[str, Any]:
    """``values`` checked against the field types of the dataclass ``options_class``.

    Why: a value of the wrong type (``--set tile_px=big``, ``score_threshold: null`` in a job
    spec) must be a one-line error naming the setting, not a ``TypeError`` from deep inside
    training or tiling. Whole numbers are accepted where a number is expected; lists where a
    tuple is (JSON has no tuples) and dicts where a nested settings dataclass is (checked in
    turn). Returns the values, numbers made ``float`` where the field is one. ``what`` names
    the settings in the message ("prediction option"); ``prefix`` goes before each key (a
    nested group's name).
    """
    hints = typing.get_type_hints(options_class)
    checked = dict(values)
    for key, value in values.items():
        if key in hints:
            checked[key] = _checked(value, hints[key], prefix + key, what)
    return checked


def _checked(value: Any, expected: Any, key: str, what: str) -> Any:
    """``value`` if it fits the type ``expected`` (converted where JSON cannot say it)."""
    origin, arguments = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        kinds = [kind for kind in arguments if kind is not type(None)]
        if len(kinds) == 1:
            return _checked(value, kinds[0], key, what)
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InvalidInput(f"{what} {key}={value!r} should be a list, e.g. [1, 2]")
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_checked(item, arguments[0], key, what) for item in value)
        if len(arguments) == len(value):
            return tuple(
                _checked(item, kind, key, what) for item, kind in zip(value, arguments, strict=True)
            )
        raise InvalidInput(f"{what} {key} takes {len(arguments)} values, got {value!r}")
    if dataclasses.is_dataclass(expected) and isinstance(expected, type):
        if isinstance(value, expected):
            return value
        if isinstance(value, dict):
            return check_option_types(value, expected, what, prefix=f"{key}.")
    elif expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif expected is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
    else:  # Any and the like: the dataclass checks it itself
        return value
    raise InvalidInput(f"{what} {key}={value!r} should be {_kind_words(expected)}")


def _kind_words(expected: Any) -> str:
    if dataclasses.is_dataclass(expected):
        return "a group of settings (key: value)"
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a text",
    }.get(expected, f"of type {getattr(expected, '__name__', expected)}")
