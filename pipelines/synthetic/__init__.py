"""Seeded synthetic microscopy images with exact answers, for tests, benchmarks and demos.

``generate(scenario, size_px, seed)`` draws particles (log-normal sizes, touching pairs, chains
and clusters), optional single atoms, an uneven noisy support, probe blur, a burnt-in scale
bar, and returns the image with its exact instance masks, the same objects as LabelMe
polygons, and "user labels" (a few crops with every object in them outlined).
``write_sample`` writes ``image.tif``, ``labels.json`` and ``truth.json``.

The scenario registry is imported eagerly (it is light, so the CLI can list it); the generator
loads scipy and scikit-image on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from pipelines.synthetic.scenarios import (
    PARTICLE,
    SCENARIOS,
    SINGLE_SITE,
    ScenarioConfig,
    get_scenario,
    list_scenarios,
)

_LAZY = {
    name: "pipelines.synthetic.sample"
    for name in (
        "IMAGE_NAME",
        "LABELS_NAME",
        "TRUTH_NAME",
        "SyntheticSample",
        "choose_crops",
        "exact_polygons",
        "generate",
        "write_sample",
    )
}

__all__ = [
    "IMAGE_NAME",
    "LABELS_NAME",
    "PARTICLE",
    "SCENARIOS",
    "SINGLE_SITE",
    "TRUTH_NAME",
    "ScenarioConfig",
    "SyntheticSample",
    "choose_crops",
    "exact_polygons",
    "generate",
    "get_scenario",
    "list_scenarios",
    "write_sample",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
