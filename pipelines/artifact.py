"""The model folder: one reader/writer shared by every engine.

Layout of ``MODEL_DIR``::

    model.json    task, engine, config, classes, metrics, versions, created (UTC ISO 8601)
    weights.pt    ``torch.save`` of a state dict, loaded with ``weights_only=True``
    (extra files an engine wants, e.g. ``training_curve.json``)

A folder is written to a temporary sibling first and renamed into place, so a crash during
saving never leaves a half model that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.errors import InvalidInput, ModelError
from pipelines.fileio import atomic_write_json, extract_zip, sha256_file

MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.pt"
TASKS = ("detect", "classify")
FORMAT_VERSION = 1
MAX_MODEL_ZIP_BYTES = 4 << 30


@dataclass(frozen=True)
class ModelInfo:
    """What ``model.json`` holds; ``config`` is the engine's dataclass config as a dict."""

    task: str
    engine: str
    config: dict[str, Any]
    classes: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def package_versions() -> dict[str, str]:
    """Versions that matter for reproducing a model."""
    versions = {"python": platform.python_version()}
    for name in ("nocode-ml", "torch", "torchvision", "timm", "numpy", "scikit-image"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config (or a plain dict) as a JSON-ready dict."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return dict(config)


def check_model_target(out_dir: str | os.PathLike[str]) -> None:
    """Refuse an ``out_dir`` that saving a model would destroy: a file, or a folder that holds
    anything but a model's own files (saving replaces the whole folder).

    Why: an output folder named by mistake (the images' folder, a model folder that
    predictions were also written into) must not be wiped. Called before training, so the
    user hears it at once, not after minutes of training, and again by :func:`save_model`.
    """
    target = Path(out_dir)
    if target.is_file():
        raise InvalidInput(f"{target} is a file; choose a folder name for the model")
    entries = {entry.name for entry in target.iterdir()} if target.is_dir() else set()
    if not entries:
        return
    if MODEL_JSON not in entries:
        raise InvalidInput(
            f"{target} already holds files and is not a model folder; choose a new folder "
            "name for the model (an existing model folder is replaced)"
        )
    others = sorted(entries - _model_files(target))
    if others:
        raise InvalidInput(
            f"{target} holds a model and other files ({', '.join(others[:3])}); move them "
            "out, or choose a new folder name for the model"
        )


def _model_files(folder: Path) -> set[str]:
    """The names a model folder's own files have: as listed in its ``model.json``, or, for
    folders saved before the list was kept (or with an unreadable ``model.json``), the
    standard ones and the classifier's training curve."""
    try:
        listed = json.loads((folder / MODEL_JSON).read_text(encoding="utf-8")).get("files")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        listed = None
    if isinstance(listed, list) and all(isinstance(name, str) for name in listed):
        return {MODEL_JSON, *listed}
    return {MODEL_JSON, WEIGHTS_FILE, "training_curve.json"}


def save_model(
    out_dir: str | os.PathLike[str],
    *,
    task: str,
    engine: str,
    config: Any,
    classes: list[str],
    state_dict: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a complete model folder atomically and return its path.

    An existing model folder at ``out_dir`` is replaced only after the new one is complete;
    any other existing folder is refused (:func:`check_model_target`).
    """
    import torch

    check_model_target(out_dir)

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    # Resolved, so "." or "models/" still have a parent and a name for the rename.
    target = Path(out_dir).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    info = ModelInfo(
        task=task,
        engine=engine,
        config=config_to_dict(config),
        classes=list(classes),
        metrics=dict(metrics or {}),
        versions=package_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        extra=dict(extra or {}),
    )
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        torch.save(state_dict, staging / WEIGHTS_FILE)
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        info_dict = info.to_dict()
        info_dict["weights_sha256"] = sha256_file(staging / WEIGHTS_FILE)
        info_dict["files"] = sorted([WEIGHTS_FILE, *(extra_files or {})])
        atomic_write_json(staging / MODEL_JSON, info_dict)
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            staging.rename(target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Path(out_dir)


@contextmanager
def opened_model(path: str | os.PathLike[str]) -> Iterator[Path]:
    """The model folder at ``path``, or the model zip the app downloads unpacked into a
    temporary folder (removed afterwards), so a downloaded model is used as it is."""
    source = Path(path)
    if not (source.is_file() and zipfile.is_zipfile(source)):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="nocode-model-") as folder:
        unpacked = extract_zip(source, Path(folder) / "zip", MAX_MODEL_ZIP_BYTES, "a model zip")
        found = sorted(unpacked.rglob(MODEL_JSON), key=lambda p: len(p.parts))
        if not found:
            raise ModelError(
                f"{source.name} holds no {MODEL_JSON}; is it a model downloaded from the app?"
            )
        # The folder's name is the model id predictions record: the zip's name, as a folder
        # unpacked by hand would have (the app's zips hold a "model/" folder).
        yield found[0].parent.rename(Path(folder) / source.stem)


def read_model_info(model_dir: str | os.PathLike[str]) -> ModelInfo:
    """Read and validate ``model.json``; a ModelError says what is wrong with the folder."""
    folder = Path(model_dir)
    if folder.is_file() and zipfile.is_zipfile(folder):
        raise ModelError(f"{folder} is a zip file; unzip it and give the folder it holds")
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist; train a model first")
    path = folder / MODEL_JSON
    if not path.is_file():
        raise ModelError(f"{folder} is not a model folder: {MODEL_JSON} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path} is corrupt ({error}); train the model again") from error
    if not isinstance(raw, dict):
        raise ModelError(f"{path} is corrupt (not a JSON object); train the model again")
    missing = [key for key in ("task", "engine", "config", "classes") if key not in raw]
    if missing:
        raise ModelError(f"{path} lacks {', '.join(missing)}; train the model again")
    if raw["task"] not in TASKS:
        raise ModelError(f"{path} has unknown task {raw['task']!r}; expected one of {TASKS}")
    known = {f.name for f in dataclasses.fields(ModelInfo)}
    extra = dict(raw.get("extra") or {})
    extra.update({k: v for k, v in raw.items() if k not in known})
    return ModelInfo(**{k: v for k, v in raw.items() if k in known and k != "extra"}, extra=extra)


def load_model(
    model_dir: str | os.PathLike[str], expected_task: str | None = None
) -> tuple[ModelInfo, dict[str, Any]]:
    """Read ``model.json`` and the weights (``weights_only=True``, on CPU)."""
    import torch

    info = read_model_info(model_dir)
    if expected_task is not None and info.task != expected_task:
        raise ModelError(
            f"{model_dir} is a '{info.task}' model, not a '{expected_task}' model; "
            "choose a model trained for this task"
        )
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{model_dir} is incomplete: {WEIGHTS_FILE} is missing; train again")
    expected_hash = info.extra.get("weights_sha256")
    if expected_hash and sha256_file(weights) != expected_hash:
        raise ModelError(f"{weights} does not match its checksum (corrupt copy?); train again")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise ModelError(f"{weights} cannot be read ({error}); train the model again") from error
    if not isinstance(state, dict):
        raise ModelError(f"{weights} does not hold a state dict; train the model again")
    return info, state
