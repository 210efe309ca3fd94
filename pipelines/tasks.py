"""One entry point per action, whatever the task: the CLI, the job worker and the app call these.

``task`` is ``"detect"`` (instance segmentation from LabelMe crops) or ``"classify"`` (whole
images or crops into classes). The engines' own modules do the work; this module only routes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipelines.artifact import TASKS, read_model_info
from pipelines.errors import InvalidInput
from pipelines.progress import ProgressCallback

PathLike = str | os.PathLike[str]


def _engine_api(task: str) -> Any:
    if task == "detect":
        from pipelines.detection import api
    elif task == "classify":
        from pipelines.classification import api
    else:
        raise InvalidInput(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return api


def check_training_settings(
    task: str, engine: str | None = None, config: dict[str, Any] | None = None
) -> None:
    """Raise InvalidInput now for an engine or settings that training would refuse, so a
    queued job does not fail minutes later for a typing mistake."""
    _engine_api(task).check_training_settings(engine, config)


def check_prediction_settings(
    task: str, inputs: Sequence[PathLike], options: dict[str, Any] | None = None
) -> None:
    """Raise InvalidInput now for inputs or options prediction would refuse; the message then
    names the user's own paths, not a job's temporary copy of them."""
    _engine_api(task).check_prediction_settings([Path(p) for p in inputs], options)


def train_model(
    task: str,
    inputs: Sequence[PathLike],
    out_dir: PathLike,
    *,
    engine: str | None = None,
    config: dict[str, Any] | None = None,
    device: str = "cpu",
    minutes: float | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Train a model of ``task`` from ``inputs`` and write its folder to ``out_dir``.

    ``config`` holds overrides of the engine's dataclass config (unknown keys are an error);
    ``minutes`` caps the training time; ``device`` is "cpu", "cuda" or "auto"
    (:mod:`pipelines.devices`, applied by the engines).
    """
    return _engine_api(task).train(
        [Path(p) for p in inputs],
        Path(out_dir),
        engine=engine,
        config=config,
        device=device,
        minutes=minutes,
        progress=progress,
    )


def predict(
    model_dir: PathLike,
    inputs: Sequence[PathLike],
    out_dir: PathLike,
    *,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Apply a trained model to images (files or folders); return the files written.

    ``device`` is "cpu", "cuda" or "auto"
    (:mod:`pipelines.devices`, applied by the engines).
    """
    info = read_model_info(model_dir)
    return _engine_api(info.task).predict(
        Path(model_dir),
        [Path(p) for p in inputs],
        Path(out_dir),
        device=device,
        options=options,
        progress=progress,
    )
