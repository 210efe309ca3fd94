"""Types every detection engine shares: options, detections, the trained-detector interface.

Data contract (as :mod:`pipelines.formats.masks`): ``Detections.instances.labels`` is
``(H, W) int32``, 0 = background, ``k`` = instance ``k``; ``class_ids[k - 1]`` is the 1-based
class index into ``class_names``; ``scores[k - 1]`` is the instance's confidence in [0, 1].
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.errors import InvalidInput
from pipelines.formats.masks import InstanceMasks
from pipelines.options import check_option_types, reject_unknown_options
from pipelines.progress import Progress, ProgressCallback


@dataclass(frozen=True)
class DetectOptions:
    """What the user may change at prediction time (the engine's tuned values are the defaults).

    ``min_area_px``/``max_area_px`` drop objects outside the size range; ``None`` keeps the
    model's own limits (learned from the labelled objects). ``tile_px`` is the largest side of
    the tile cores the image is split into (an engine may use smaller ones: Mask R-CNN keeps
    the tile size it was trained on, whose scale its anchors learnt); each tile also reads
    ``overlap_px`` of context on every side (``None``: the engine's safe default, above its
    receptive field or the largest object). ``ignore_scale_bar`` leaves out objects lying on a
    burnt-in scale bar, its text or an info strip (:mod:`pipelines.imaging.marks`).
    """

    score_threshold: float = 0.5
    min_area_px: float | None = None
    max_area_px: float | None = None
    tile_px: int = 1024
    overlap_px: int | None = None
    ignore_scale_bar: bool = True

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> DetectOptions:
        """Build from user options; unknown keys and bad values are a one-line error."""
        options = dict(options or {})
        reject_unknown_options(options, cls)
        made = cls(**check_option_types(options, cls, "prediction option"))
        if not 0.0 <= made.score_threshold <= 1.0:
            raise InvalidInput(f"score_threshold must be in [0, 1], got {made.score_threshold}")
        if made.tile_px < 64:
            raise InvalidInput(f"tile_px must be at least 64, got {made.tile_px}")
        if made.overlap_px is not None and not 0 <= made.overlap_px < made.tile_px // 2:
            raise InvalidInput(f"overlap_px must be in [0, tile_px/2), got {made.overlap_px}")
        for name in ("min_area_px", "max_area_px"):
            value = getattr(made, name)
            if value is not None and value < 0:
                raise InvalidInput(f"{name} must be positive, got {value}")
        return made


@dataclass(eq=False)
class Detections:
    """Instances found in one image, with one score per instance and timings in seconds.

    ``ignored_on_scale_bar``: objects left out because they lay on a burnt-in scale bar or its
    text.
    """

    instances: InstanceMasks
    scores: np.ndarray
    timings_s: dict[str, float] = field(default_factory=dict)
    ignored_on_scale_bar: int = 0

    @property
    def count(self) -> int:
        return self.instances.count


class Detector(ABC):
    """A trained model of one engine: real state (weights, tuned parameters), so a class.

    ``extra()`` returns JSON-ready values the engine needs besides its weights (polarity,
    tuned post-processing); ``state_dict()`` the tensors saved in ``weights.pt``.
    """

    engine: str = ""
    # Whether the network runs in bfloat16 (set by engines that can); recorded with outputs.
    bfloat16: bool = False

    def __init__(self, config: Any, classes: list[str]) -> None:
        self.config = config
        self.classes = list(classes)

    @abstractmethod
    def detect(
        self,
        image: np.ndarray,
        options: DetectOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> Detections:
        """Find every object in a ``(H, W)`` image of raw intensities (any dtype)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def extra(self) -> dict[str, Any]:
        return {}


@dataclass
class TrainContext:
    """Where and how long an engine trains; ``deadline`` is a ``time.monotonic()`` value."""

    device: str = "cpu"
    deadline: float | None = None
    progress: ProgressCallback | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def seconds_left(self) -> float:
        if self.deadline is None:
            return float("inf")
        return self.deadline - time.monotonic()


def report_train_step(
    context: TrainContext,
    step: int,
    losses: list[float],
    started: float,
    budget_s: float,
    max_steps: int,
    window: int,
) -> None:
    """Send "train" progress after ``step`` steps of a time-budgeted (or step-capped) loop.

    The total is estimated from the rate so far; the loss shown is the mean of the last
    ``window`` steps. ``started`` is a ``time.monotonic()`` value.
    """
    if context.progress is None:
        return
    rate = (time.monotonic() - started) / step
    total = max(step, round(budget_s / rate))  # steps the time budget allows
    if max_steps:
        total = min(total, max_steps)
    context.progress(
        Progress(
            stage="train",
            done=step,
            total=total,
            metrics={"loss": float(np.mean(losses[-window:]))},
            eta_s=max(0.0, (total - step) * rate),
        )
    )


def train_summary(step: int, losses: list[float], started: float, window: int) -> dict[str, Any]:
    """The training metrics every engine saves: steps, seconds and the final (windowed) loss."""
    return {
        "train_steps": step,
        "train_seconds": round(time.monotonic() - started, 1),
        "final_loss": float(np.mean(losses[-window:])) if losses else None,
    }
