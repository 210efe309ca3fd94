"""Small parsers shared by sub-commands."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pipelines.errors import InvalidInput

# Python's and other spellings people type for JSON's true/false/null.
_WORDS = {"true": True, "false": False, "yes": True, "no": False, "none": None, "null": None}


def parse_config_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["seed=3", "name=unet"]`` -> ``{"seed": 3, "name": "unet"}``; values parsed as JSON
    when they are valid JSON (numbers, true/false, lists), ``True``/``False``/``None`` (any
    case) as those, else kept as strings. The engines then check each value's type."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"'{item}' is not KEY=VALUE; write e.g. --set seed=3")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = _WORDS.get(raw.strip().lower(), raw)
        overrides[key.strip()] = value
    return overrides
