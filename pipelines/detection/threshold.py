"""``threshold``: the classical baseline — flatten, smooth, threshold, distance watershed.

No network: "training" calibrates the smoothing, the threshold (in noise σ) and the watershed
marker depth ``h`` on the labelled crops by grid search, in seconds. It serves as an instant
preview and as the yardstick the learned engines must beat. Expect undersized objects: a hard
threshold on blurred, noisy objects cuts inside the true boundary.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from pipelines.detection.base import Detections, DetectOptions, Detector, TrainContext
from pipelines.detection.data import TrainingSet, normalise, objects_are_dark
from pipelines.detection.maxima import sparse_h_maxima
from pipelines.detection.postprocess import MatchCounts, match_instances
from pipelines.detection.registry import EngineSpec, register_engine
from pipelines.formats.masks import InstanceMasks
from pipelines.progress import StageTimer

log = logging.getLogger(__name__)

# The log area of a class with no object inside the crops: so far from any object's that the
# class is never chosen (0, the log area of one pixel, gave it every noise speck).
UNSEEN_LOG_AREA = 1e6


@dataclass(frozen=True)
class ThresholdConfig:
    """Search grids for the calibration; ``background_px`` 0 = from the labelled sizes."""

    smoothing_grid_px: tuple[float, ...] = (0.5, 1.0, 2.0)
    threshold_grid_sigma: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
    h_grid_px: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)
    background_px: int = 0

    def __post_init__(self) -> None:
        grids = (
            ("smoothing_grid_px", self.smoothing_grid_px, True),  # 0: no smoothing
            ("threshold_grid_sigma", self.threshold_grid_sigma, False),
            ("h_grid_px", self.h_grid_px, False),
        )
        for name, grid, zero_ok in grids:
            valid = (math.isfinite(v) and (v >= 0 if zero_ok else v > 0) for v in grid)
            if not grid or not all(valid):
                bound = "0 or more" if zero_ok else "above 0"
                raise ValueError(f"{name} needs at least one value, each {bound}")
        if self.background_px < 0:
            raise ValueError(f"background_px must be 0 or more, got {self.background_px}")


@dataclass(frozen=True)
class ThresholdParams:
    """Calibrated values (saved in the model folder)."""

    invert: bool = False
    background_px: int = 41
    smoothing_px: float = 1.0
    threshold_sigma: float = 4.0
    h_px: float = 1.0
    min_area_px: tuple[float, ...] = (1.0,)
    class_log_areas: tuple[float, ...] = (0.0,)


def flatten(image: np.ndarray, invert: bool, background_px: int) -> np.ndarray:
    """Normalised image minus a grey-opening background, divided by the MAD noise."""
    normalised = normalise(image, invert)
    factor = max(1, background_px // 10)
    small = normalised[::factor, ::factor]
    size = max(3, round(background_px / factor) | 1)
    background = ndimage.uniform_filter(ndimage.grey_opening(small, size=(size, size)), 3)
    if factor > 1:
        background = ndimage.zoom(
            background,
            (normalised.shape[0] / small.shape[0], normalised.shape[1] / small.shape[1]),
            order=1,
        )[: normalised.shape[0], : normalised.shape[1]]
        background = np.pad(
            background,
            (
                (0, normalised.shape[0] - background.shape[0]),
                (0, normalised.shape[1] - background.shape[1]),
            ),
            mode="edge",
        )
    flat = normalised - background
    residual = flat - ndimage.median_filter(flat[::4, ::4], size=3).mean()
    sample = residual[::4, ::4]
    noise = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    return (flat / max(noise, 1e-6)).astype(np.float32)


def segment(
    flat: np.ndarray, smoothing_px: float, threshold_sigma: float, h_px: float
) -> np.ndarray:
    """Instance labels from a flattened image: threshold then distance-transform watershed."""
    from skimage.segmentation import watershed

    smooth = ndimage.gaussian_filter(flat, smoothing_px) if smoothing_px > 0 else flat
    # Smoothing lowers the noise σ: rescale so the threshold stays in units of its own noise.
    noise_gain = 1.0 / max(1e-6, np.sqrt(4 * np.pi * smoothing_px**2)) if smoothing_px > 0 else 1
    mask = smooth > threshold_sigma * max(noise_gain, 0.05)
    if not mask.any():
        return np.zeros(flat.shape, dtype=np.int32)
    distance = ndimage.distance_transform_edt(mask)
    markers, _ = ndimage.label(sparse_h_maxima(distance, h_px))
    return watershed(-distance, markers, mask=mask).astype(np.int32)


class ThresholdDetector(Detector):
    """Calibrated classical segmentation; the score of every object is 1."""

    engine = "threshold"

    def __init__(self, config: ThresholdConfig, classes: list[str], params: ThresholdParams):
        super().__init__(config, classes)
        self.params = params

    def detect(
        self, image: np.ndarray, options: DetectOptions | None = None, progress: Any = None
    ) -> Detections:
        options = options or DetectOptions()
        started = time.perf_counter()
        params = self.params
        timer = StageTimer(progress, "predict", 1)
        flat = flatten(image, params.invert, params.background_px)
        labels = segment(flat, params.smoothing_px, params.threshold_sigma, params.h_px)
        instances = self.classify(labels, options)
        timer.update(1)
        return Detections(
            instances=instances,
            scores=np.ones(instances.count, dtype=np.float32),
            timings_s={"network_s": 0.0, "postprocess_s": time.perf_counter() - started},
        )

    def classify(self, labels: np.ndarray, options: DetectOptions) -> InstanceMasks:
        """One class per object by its area (nearest labelled median in log area); size filters."""
        count = int(labels.max(initial=0))
        area = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
        log_areas = np.array(self.params.class_log_areas)
        class_index = np.argmin(
            np.abs(np.log(np.maximum(area, 1))[:, None] - log_areas[None, :]), axis=1
        )
        minimum = (
            np.array(self.params.min_area_px)[class_index]
            if options.min_area_px is None
            else np.full(count + 1, options.min_area_px)
        )
        keep = (area > 0) & (area >= minimum)
        if options.max_area_px is not None:
            keep &= area <= options.max_area_px
        keep[0] = False
        lookup = np.zeros(count + 1, dtype=np.int32)
        kept = np.flatnonzero(keep)
        lookup[kept] = np.arange(1, kept.size + 1)
        return InstanceMasks(
            labels=lookup[labels],
            class_ids=(class_index[kept] + 1).astype(np.int32),
            class_names=list(self.classes),
        )

    def extra(self) -> dict[str, Any]:
        params = self.params
        return {
            "threshold_params": {
                "invert": params.invert,
                "background_px": params.background_px,
                "smoothing_px": params.smoothing_px,
                "threshold_sigma": params.threshold_sigma,
                "h_px": params.h_px,
                "min_area_px": list(params.min_area_px),
                "class_log_areas": list(params.class_log_areas),
            }
        }


def train(data: TrainingSet, config: ThresholdConfig, context: TrainContext) -> ThresholdDetector:
    """Calibrate the classical pipeline on the labelled crops (grid search, best F1)."""
    invert = objects_are_dark(data)
    areas = data.object_areas_px()
    all_areas = np.concatenate([a for a in areas.values() if a.size])
    largest_diameter = 2 * np.sqrt(all_areas.max() / np.pi)
    background_px = config.background_px or int(max(15, 3 * largest_diameter)) | 1
    log_areas = tuple(
        float(np.median(np.log(areas[name]))) if areas[name].size else UNSEEN_LOG_AREA
        for name in data.class_names
    )
    # The same noise-speck limit as the U-Net, so the baseline is compared fairly.
    min_area = tuple(data.min_object_area_px())
    crops = []
    for item in data.images:
        flat = flatten(item.pixels, invert, background_px)
        for box in item.boxes:
            crops.append((flat[box.slices()], item.instances.labels[box.slices()]))
    grid = [
        (s, t, h)
        for s in config.smoothing_grid_px
        for t in config.threshold_grid_sigma
        for h in config.h_grid_px
    ]
    timer = StageTimer(context.progress, "calibrate", len(grid), min_interval_s=0.5)
    best: tuple[tuple[float, float], ThresholdParams, MatchCounts] | None = None
    for index, (smoothing, threshold, h_px) in enumerate(grid):
        params = ThresholdParams(
            invert, background_px, smoothing, threshold, h_px, min_area, log_areas
        )
        detector = ThresholdDetector(config, data.class_names, params)
        tp = fp = fn = 0
        errors = []
        for flat, truth in crops:
            labels = segment(flat, smoothing, threshold, h_px)
            predicted = detector.classify(labels, DetectOptions()).labels
            counts = match_instances(predicted, truth)
            tp += counts.true_positives
            fp += counts.false_positives
            fn += counts.false_negatives
            errors.append(counts.diameter_errors)
        total = MatchCounts(tp, fp, fn, np.concatenate(errors))
        key = (total.f1, -total.mean_abs_diameter_error)
        if best is None or key > best[0]:
            best = (key, params, total)
        timer.update(index + 1, f1=total.f1)
    assert best is not None
    _, params, total = best
    context.metrics.update(
        {
            "crop_f1": round(total.f1, 4),
            "crop_mean_abs_diameter_error_pct": round(100 * total.mean_abs_diameter_error, 2),
            "invert": invert,
        }
    )
    return ThresholdDetector(config, data.class_names, params)


def load(
    config: ThresholdConfig,
    classes: list[str],
    state: dict[str, Any],
    extra: dict[str, Any],
    device: str = "cpu",
) -> ThresholdDetector:
    """Rebuild from the calibrated values saved in ``model.json``."""
    from pipelines.errors import ModelError

    raw = extra.get("threshold_params")
    if not isinstance(raw, dict):
        raise ModelError("the threshold model lacks its calibrated values; train it again")
    try:
        params = ThresholdParams(
            invert=bool(raw["invert"]),
            background_px=int(raw["background_px"]),
            smoothing_px=float(raw["smoothing_px"]),
            threshold_sigma=float(raw["threshold_sigma"]),
            h_px=float(raw["h_px"]),
            min_area_px=tuple(float(a) for a in raw["min_area_px"]),
            class_log_areas=tuple(float(a) for a in raw["class_log_areas"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(
            f"the threshold model's calibration is damaged ({error}); train again"
        ) from error
    if not params.h_px > 0:
        raise ModelError("the threshold model's calibration is damaged (h_px); train again")
    if len(params.class_log_areas) != len(classes):
        raise ModelError(
            "the threshold model's calibration does not match its classes; train again"
        )
    return ThresholdDetector(config, classes, params)


register_engine(
    EngineSpec(
        name="threshold",
        config_type=ThresholdConfig,
        train=train,
        load=load,
        summary="classical: flatten + threshold + distance watershed, calibrated on the crops",
    )
)
