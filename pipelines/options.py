"""Checks shared by every dataclass that users fill from a dict (CLI ``--set``, job specs, app)."""

from __future__ import annotations

import dataclasses
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
