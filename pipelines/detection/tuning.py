"""Post-processing tuned on the labelled crops after training (``unet`` engine).

The network's maps become objects through thresholds (foreground, cores or h-maxima, per-class
core shares; :mod:`pipelines.detection.postprocess`). Good values depend on the image and on how
the training went, so each is chosen on the crops the user outlined, scored as the statistics
use the objects: F1 at IoU 0.5 and the diameter error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.detection.base import DetectOptions, TrainContext
from pipelines.detection.data import TrainingSet, normalise
from pipelines.detection.postprocess import (
    MatchCounts,
    WatershedParams,
    instances_from_maps,
    match_instances,
)
from pipelines.detection.tiling import predict_maps_tiled
from pipelines.progress import StageTimer

if TYPE_CHECKING:
    from pipelines.detection.unet import UNetDetector

log = logging.getLogger(__name__)

FG_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.88, 0.94)
CORE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MARKER_H_GRID = (0.05, 0.1, 0.2)
# Shares of an object's peak centre-ness below which its pixels are dropped (0 = none).
SHARE_GRID = (0.0, 0.3, 0.4, 0.5, 0.6)
# The share taken unless the crops clearly favour another (:func:`_tune_core_shares`): the
# lower middle of the grid's trimming shares.
PRIOR_SHARE = 0.4


@dataclass(frozen=True)
class CropMaps:
    """The network's maps over each labelled crop, with what scoring them needs.

    ``crops``: per crop ``(maps (K + 1, h, w), truth labels (h, w), class ids of the truth
    instances of its image (class_ids[label - 1]))``.
    """

    crops: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    classes: list[str]
    min_area_px: list[float]


# A class found below this F1 on its own crops is reported to the user (:func:`weak_classes`).
WEAK_CLASS_F1 = 0.5
# Crop scores this close to the best count as a tie (one object in 40 moves F1 by ~0.012).
TIE_TOLERANCE = 0.004


def tune_postprocessing(
    detector: UNetDetector, data: TrainingSet, context: TrainContext
) -> tuple[WatershedParams, dict[str, Any]]:
    """Pick the thresholds and core shares that best reproduce the labelled crops.

    Objective: per class, F1 at IoU 0.5 over the crops minus half the mean diameter error,
    averaged over the classes (:func:`_score_crops`). The crops are the training data and hold
    few touching pairs, so several core thresholds often tie there while they differ on the
    whole image (0.936 against 0.956 F1 on a benchmark image for the first and the middle of
    three tied values). Ties are therefore broken towards the
    middle of the tied range, which is the choice least likely to sit on the edge of a cliff.
    The maps are computed once per crop (with context around it), so the grid costs seconds.
    Core shares are chosen last, per class (:func:`_tune_core_shares`).
    """
    crops = _crop_maps(detector, data)
    # Thresholds first, without core shares (those are chosen last, on these thresholds).
    untrimmed = replace(detector.params, core_shares=())
    markers = [(core, 0.0) for core in CORE_GRID] + [(0.5, h) for h in MARKER_H_GRID]
    grid_size = len(FG_GRID) * len(markers)
    timer = StageTimer(context.progress, "tune", grid_size + len(SHARE_GRID), 0.5)
    scores: dict[tuple[float, tuple[float, float]], tuple[float, MatchCounts]] = {}
    for fg_index, fg_threshold in enumerate(FG_GRID):
        for marker_index, (core_threshold, marker_h) in enumerate(markers):
            timer.update(fg_index * len(markers) + marker_index)
            params = replace(
                untrimmed,
                fg_threshold=fg_threshold,
                core_threshold=core_threshold,
                marker_h=marker_h,
            )
            # Sizes matter for the statistics: 10 % diameter error costs as much as 0.05 F1.
            objectives, total = _score_crops(crops, params)
            scores[(fg_threshold, (core_threshold, marker_h))] = (_mean(objectives), total)
    timer.update(grid_size)
    best_for_marker = {marker: max(scores[(fg, marker)][0] for fg in FG_GRID) for marker in markers}
    cores = [m for m in markers if m[1] == 0.0]
    maxima = [m for m in markers if m[1] > 0.0]
    marker = _middle_of_best(cores, best_for_marker)
    # h-maxima markers are slower; use them only when (the middle of their own tie run)
    # reproduces the crops clearly better.
    h_marker = _middle_of_best(maxima, best_for_marker)
    if best_for_marker[h_marker] > best_for_marker[marker] + TIE_TOLERANCE:
        marker = h_marker
    # The foreground threshold sets the sizes: take the best one, not the middle of a tie.
    fg_threshold = max(FG_GRID, key=lambda fg: scores[(fg, marker)][0])
    params = replace(
        untrimmed, fg_threshold=fg_threshold, core_threshold=marker[0], marker_h=marker[1]
    )
    params, total = _tune_core_shares(
        crops, params, scores[(fg_threshold, marker)][1], data.few_pixels(), timer, grid_size
    )
    weak = weak_classes(crops, params)
    for advice in weak_class_advice(weak):
        log.warning("%s", advice)
    metrics = {
        "crop_f1": round(total.f1, 4),
        "weak_classes": weak,
        "crop_mean_abs_diameter_error_pct": round(100 * total.mean_abs_diameter_error, 2),
        "fg_threshold": params.fg_threshold,
        "core_threshold": params.core_threshold,
        "marker_h": params.marker_h,
        "core_shares": list(params.core_shares),
    }
    log.info("post-processing tuned on crops: %s", metrics)
    return params, metrics


def _tune_core_shares(
    crops: CropMaps,
    params: WatershedParams,
    untrimmed: MatchCounts,
    eligible: list[bool],
    timer: StageTimer,
    done: int,
) -> tuple[WatershedParams, MatchCounts]:
    """Per class of objects a few pixels wide (``eligible``), the core share the crops favour;
    0 for the other classes. ``untrimmed``: the crops' counts under ``params`` without shares,
    returned when no class is trimmed.

    Why trim: the foreground of a single atom follows its blurred halo. On one benchmark image
    15-17 of 281 atoms covering 2-3 px were found covering 5-8 px and failed IoU 0.5; keeping
    the pixels above 0.3-0.6 of the peak centre-ness matches them. A particle's rim has little
    centre-ness, and one labelled particle is too few to show that trimming it costs size, so
    larger objects keep every pixel. The gate is a size, not a name: a class of particles at
    most 6 px wide is eligible too, and its crops (scored with the diameter error) decide. The
    shares are tried for all eligible classes at once and chosen per class: an object keeps
    the class it had before trimming, so each class's score barely depends on the others'.

    Which share: :data:`PRIOR_SHARE` unless the crops favour another by more than one of
    their objects is worth (:func:`_share_margin`). ~30 labelled atoms cannot rank shares whose
    scores differ by less: taking the crops' best share within a tie instead, single-site F1
    (benchmarks/detection_postprocess.py, 12 ``particles+sites`` images a run) was 0.873-0.877
    against 0.865-0.868 untrimmed in three runs; with the prior 0.883 against 0.872, and the
    lowest image, 0.846, scored the same untrimmed; with the turned second view
    (``UNetConfig.test_time_turn``) 0.890 against 0.880.
    """
    table = []
    for index, share in enumerate(SHARE_GRID if any(eligible) else ()):
        timer.update(done + index)
        trial = replace(params, core_shares=tuple(share if e else 0.0 for e in eligible))
        table.append(_score_crops(crops, trial)[0])
    timer.update(done + len(SHARE_GRID))
    # (shares, classes); NaN where a class has no crop object
    objectives = np.array(table).reshape(len(table), len(eligible))
    counts = _crop_object_counts(crops)
    prior = SHARE_GRID.index(PRIOR_SHARE)
    shares = []
    for column, tiny, count in zip(objectives.T, eligible, counts, strict=True):
        if not tiny or not column.size or np.isnan(column).all():
            shares.append(0.0)
            continue
        best = np.nanmax(column)
        # The epsilon keeps an advantage of exactly one object from flipping with rounding.
        if column[prior] >= best - _share_margin(int(count)) - 1e-9:
            shares.append(PRIOR_SHARE)
            continue
        near_best = np.flatnonzero(column >= best - TIE_TOLERANCE)
        shares.append(SHARE_GRID[int(near_best[0])])
    params = replace(params, core_shares=tuple(shares))
    if not any(shares):
        return params, untrimmed
    return params, _score_crops(crops, params)[1]


def _share_margin(objects: int) -> float:
    """How much better than :data:`PRIOR_SHARE` another share must score on the crops: what one
    mis-sized object (a false positive and a false negative) of ``objects`` costs in F1,
    ~1/n, never less than a tie."""
    return max(TIE_TOLERANCE, 1.0 / max(1, objects))


def _crop_object_counts(crops: CropMaps) -> np.ndarray:
    """``(K,)`` labelled objects per class over the crops (the truth instances in them)."""
    counts = np.zeros(len(crops.classes), dtype=np.int64)
    for _, truth, truth_classes in crops.crops:
        present = np.unique(truth[truth > 0])
        classes = np.asarray(truth_classes)[present - 1]
        counts += np.bincount(classes, minlength=len(crops.classes) + 1)[1:]
    return counts


def _middle_of_best(candidates: list[Any], objective: dict[Any, float]) -> Any:
    """The middle candidate of the contiguous run of near-best ones around the first best.

    ``candidates`` are in grid order; a run is contiguous in that order. For a run of even
    length the upper of the two middle candidates is taken.
    """
    best = max(objective[c] for c in candidates)
    first = next(i for i, c in enumerate(candidates) if objective[c] >= best - 1e-12)
    start = stop = first
    while start > 0 and objective[candidates[start - 1]] >= best - TIE_TOLERANCE:
        start -= 1
    while stop + 1 < len(candidates) and objective[candidates[stop + 1]] >= best - TIE_TOLERANCE:
        stop += 1
    return candidates[(start + stop + 1) // 2]


def _crop_maps(detector: UNetDetector, data: TrainingSet) -> CropMaps:
    """Network maps of each labelled crop (computed with context around it), its truth labels
    and the class ids of its image's instances (``class_ids[label - 1]``)."""
    crops = []
    margin = detector.config.overlap_px
    for item in data.images:
        # Normalise with the whole image's limits, as at inference.
        normalised = normalise(item.pixels, detector.invert)
        for box in item.boxes:
            top, left = max(0, box.top - margin), max(0, box.left - margin)
            bottom = min(item.pixels.shape[0], box.bottom + margin)
            right = min(item.pixels.shape[1], box.right + margin)
            maps = predict_maps_tiled(
                detector.forward_tile,
                normalised[top:bottom, left:right],
                len(detector.classes) + 1,
                1024,
                margin,
                multiple=detector.multiple,
            )
            rows = slice(box.top - top, box.bottom - top)
            cols = slice(box.left - left, box.right - left)
            truth = item.instances.labels[box.slices()]
            crops.append((maps[:, rows, cols], truth, item.instances.class_ids))
    return CropMaps(crops, list(detector.classes), list(detector.min_area_px))


def _score_crops(crops: CropMaps, params: WatershedParams) -> tuple[np.ndarray, MatchCounts]:
    """Per-class crop objectives ``(K,)`` and the pooled counts for the metrics.

    Each class scores ``F1 − 0.5 × mean |D error|`` on its own (an object found with the wrong
    class counts against both); NaN where a class has neither truth nor predictions in the
    crops. The grid search takes the mean over the classes present (:func:`_mean`). Pooled
    over objects instead, 32 single atoms outvoted the one labelled particle: the foreground
    threshold went to 0.94 and unseen particles came out 7 % too small and split.
    """
    by_class = _class_counts(crops, params)
    objectives = np.array(
        [np.nan if c is None else c.f1 - 0.5 * c.mean_abs_diameter_error for c in by_class]
    )
    present = [c for c in by_class if c is not None]
    pooled = MatchCounts(
        sum(c.true_positives for c in present),
        sum(c.false_positives for c in present),
        sum(c.false_negatives for c in present),
        _joined([c.diameter_errors for c in present]),
    )
    return objectives, pooled


def _class_counts(crops: CropMaps, params: WatershedParams) -> list[MatchCounts | None]:
    """Per class, its matches over all crops (None where it has neither truth nor
    predictions there)."""
    n_classes = len(crops.classes)
    per_class = np.zeros((n_classes, 3), dtype=np.int64)
    errors: list[list[np.ndarray]] = [[] for _ in range(n_classes)]
    for maps, truth, truth_classes in crops.crops:
        instances, _ = instances_from_maps(
            maps[:-1],
            maps[-1],
            crops.classes,
            params,
            min_area_px=np.array(crops.min_area_px),
            score_threshold=DetectOptions().score_threshold,
        )
        present = np.unique(truth[truth > 0])
        for index in range(n_classes):
            predicted_ids = np.flatnonzero(instances.class_ids == index + 1) + 1
            truth_ids = present[truth_classes[present - 1] == index + 1]
            if predicted_ids.size == 0 and truth_ids.size == 0:
                continue
            counts = match_instances(instances.labels, truth, predicted_ids, truth_ids)
            per_class[index] += (
                counts.true_positives,
                counts.false_positives,
                counts.false_negatives,
            )
            errors[index].append(counts.diameter_errors)
    return [
        MatchCounts(*map(int, per_class[index]), _joined(errors[index]))
        if per_class[index].any()
        else None
        for index in range(n_classes)
    ]


def weak_class_advice(weak: Any) -> list[str]:
    """Plain words for each class in ``weak`` (the ``weak_classes`` of training metrics, class
    name → F1 on its own crops; anything else, as in models trained before it, gives none),
    saying what to do. One wording for the log, the command line and the Train page."""
    return [
        f"“{name}” is found at F1 {f1:.2f} on your own crops (1 = all found exactly), so its "
        f"results will be unreliable. Draw another crop around some “{name}” objects and "
        "outline every object in it, or check that they stand out from the background, then "
        "train again."
        for name, f1 in weak_class_items(weak)
    ]


def weak_class_items(weak: Any) -> list[tuple[str, float]]:
    """``(class name, F1)`` pairs of a metrics' ``weak_classes``; none for anything else."""
    if not isinstance(weak, dict):
        return []
    return [(name, f1) for name, f1 in weak.items() if isinstance(f1, int | float)]


def weak_classes(crops: CropMaps, params: WatershedParams) -> dict[str, float]:
    """Classes whose own crops the trained detector reproduces at F1 below
    :data:`WEAK_CLASS_F1`, with that F1.

    Why: the pooled crop score hides a class that failed. Faint single atoms labelled beside
    21 particles (synthetic ``sizes`` with its atoms labelled) scored F1 0.01 on their own
    crops (0.09 pooled with the particles) and came out as 5 000-9 000 false atoms in the
    image, while the particles were found at F1 0.93.
    """
    return {
        name: round(counts.f1, 3)
        for name, counts in zip(crops.classes, _class_counts(crops, params), strict=True)
        if counts is not None and counts.f1 < WEAK_CLASS_F1
    }


def _mean(objectives: np.ndarray) -> float:
    """Mean of the per-class objectives over the classes present in the crops (0 if none)."""
    present = objectives[~np.isnan(objectives)]
    return float(present.mean()) if present.size else 0.0


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0)
