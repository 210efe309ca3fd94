"""Engine registry: name → (config dataclass, train function, load function).

Like timm's ``register_model``/``create_model``: the CLI, the app and job specs name engines the
same way, and adding an engine touches one module. Built-in engines are imported lazily so
listing them does not import torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipelines.errors import InvalidInput
from pipelines.options import check_option_types

DEFAULT_ENGINE = "unet"
_BUILTIN_MODULES = {
    "unet": "pipelines.detection.unet",
    "threshold": "pipelines.detection.threshold",
    "maskrcnn": "pipelines.detection.maskrcnn",
}


@dataclass(frozen=True)
class EngineSpec:
    """One engine: ``train(data, config, context) -> Detector`` and
    ``load(config, classes, state_dict, extra) -> Detector``."""

    name: str
    config_type: type
    train: Callable[..., Any]
    load: Callable[..., Any]
    summary: str


_REGISTRY: dict[str, EngineSpec] = {}


def register_engine(spec: EngineSpec) -> EngineSpec:
    """Add an engine (called by each engine module at import)."""
    _REGISTRY[spec.name] = spec
    return spec


def list_engines() -> list[str]:
    """Names of every engine, the default first."""
    names = sorted(set(_BUILTIN_MODULES) | set(_REGISTRY))
    return sorted(names, key=lambda name: name != DEFAULT_ENGINE)


def get_engine(name: str | None) -> EngineSpec:
    """The engine called ``name`` (``None``: the default)."""
    name = name or DEFAULT_ENGINE
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        raise InvalidInput(
            f"unknown detection engine {name!r}; choose one of: {', '.join(list_engines())}"
        )
    return _REGISTRY[name]


def create_config(name: str | None, overrides: dict[str, Any] | None = None) -> Any:
    """The engine's frozen config with ``overrides`` applied; unknown keys are an error."""
    spec = get_engine(name)
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidInput(
            f"settings of engine {spec.name!r} must be key: value pairs, got {overrides!r}"
        )
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(spec.config_type)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InvalidInput(
            f"engine {spec.name!r} has no setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(fields))}"
        )
    overrides = check_option_types(overrides, spec.config_type, f"setting of engine {spec.name!r}:")
    try:
        return spec.config_type(**overrides)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"invalid setting for engine {spec.name!r}: {error}") from error
