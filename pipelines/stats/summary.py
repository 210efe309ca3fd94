"""Per-class (and per-image) summary rows: counts, sizes with intervals, densities, neighbours.

One row describes one group of counted objects. Values that cannot exist (the spread of one
object, a density without calibration in µm²) are NaN in the DataFrame, written as empty cells
(CSV/XLSX) or ``null`` (JSON), and the row's ``notes`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipelines.stats.catalysis import Metal, dispersion
from pipelines.stats.distributions import (
    STATISTICS,
    WEIGHTINGS,
    BootstrapIntervals,
    LogNormalFit,
    bootstrap_intervals,
    lognormal_fit,
    point_statistics,
)
from pipelines.stats.spatial import ClarkEvans

NM2_PER_UM2 = 1.0e6
PX2_PER_MEGAPIXEL = 1.0e6
POOLED_IMAGE = "all images"


@dataclass(frozen=True)
class SizeBlock:
    """Distribution statistics of one sample of diameters in one unit."""

    unit: str
    n: int
    values: dict[tuple[str, str], float]
    intervals: BootstrapIntervals | None
    lognormal: LogNormalFit | None

    def value(self, weighting: str, statistic: str) -> float:
        return self.values.get((weighting, statistic), math.nan)

    def interval(self, weighting: str, statistic: str) -> tuple[float, float]:
        if self.intervals is None:
            return (math.nan, math.nan)
        return self.intervals.intervals.get((weighting, statistic), (math.nan, math.nan))


def size_block(
    diameters: np.ndarray, unit: str, resamples: int, confidence: float, seed: int
) -> SizeBlock:
    """Point statistics, bootstrap intervals and log-normal fit of positive diameters."""
    values = np.asarray(diameters, dtype=np.float64)
    return SizeBlock(
        unit=unit,
        n=int(values.size),
        values=point_statistics(values),
        intervals=bootstrap_intervals(values, resamples, confidence, seed),
        lognormal=lognormal_fit(values),
    )


def scale_block(block: SizeBlock, factor: float, unit: str) -> SizeBlock:
    """The same statistics in another unit (every statistic here scales linearly)."""
    intervals = block.intervals
    if intervals is not None:
        intervals = replace(
            intervals,
            intervals={
                k: (lo * factor, hi * factor) for k, (lo, hi) in intervals.intervals.items()
            },
        )
    lognormal = block.lognormal
    if lognormal is not None:
        lognormal = replace(
            lognormal,
            mu=lognormal.mu + math.log(factor),
            geometric_mean=lognormal.geometric_mean * factor,
        )
    return SizeBlock(
        unit=unit,
        n=block.n,
        values={k: v * factor for k, v in block.values.items()},
        intervals=intervals,
        lognormal=lognormal,
    )


def size_columns(block: SizeBlock) -> dict[str, float]:
    """Wide summary columns of a size block (number-weighted statistics plus D[3,2], D[4,3])."""
    u = block.unit
    columns: dict[str, float] = {}

    def put(name: str, weighting: str, statistic: str) -> None:
        low, high = block.interval(weighting, statistic)
        columns[f"{name}_{u}"] = block.value(weighting, statistic)
        columns[f"{name}_{u}_ci_low"] = low
        columns[f"{name}_{u}_ci_high"] = high

    put("mean_diameter", "number", "mean")
    put("median_diameter", "number", "median")
    put("std_diameter", "number", "sd")
    put("d10", "number", "d10")
    put("d50", "number", "d50")
    put("d90", "number", "d90")
    put("sauter_diameter", "area", "mean")
    put("volume_weighted_diameter", "volume", "mean")
    fit = block.lognormal
    columns[f"geometric_mean_diameter_{u}"] = fit.geometric_mean if fit else math.nan
    columns["geometric_sd"] = fit.geometric_sd if fit else math.nan
    columns[f"lognormal_mu_ln_{u}"] = fit.mu if fit else math.nan
    columns["lognormal_sigma"] = fit.sigma if fit else math.nan
    ks = fit.ks_p_value if fit and fit.ks_p_value is not None else math.nan
    columns["lognormal_ks_p"] = ks
    return columns


def distribution_rows(image: str, label: str, block: SizeBlock) -> list[dict[str, Any]]:
    """Long-format rows: every weighting × statistic with its interval (none without data)."""
    rows: list[dict[str, Any]] = []
    if block.n == 0:
        return rows
    for weighting in WEIGHTINGS:
        for statistic in STATISTICS:
            low, high = block.interval(weighting, statistic)
            rows.append(
                {
                    "image": image,
                    "label": label,
                    "weighting": weighting,
                    "statistic": statistic,
                    "value": block.value(weighting, statistic),
                    "ci_low": low,
                    "ci_high": high,
                    "unit": block.unit,
                    "n": block.n,
                }
            )
    return rows


@dataclass(frozen=True)
class GroupInput:
    """Everything one summary row is computed from (counted objects of one class).

    Arrays are per counted object; ``diameter_nm``/``feret_min_nm`` are None when any image of
    the group lacks calibration. ``area_um2`` is the counting area in µm² (None uncalibrated).
    """

    image: str
    label: str
    images: int
    analysed: int
    touching_border: int
    area_px: np.ndarray
    diameter_px: np.ndarray
    diameter_nm: np.ndarray | None
    feret_max_px: np.ndarray
    feret_min_px: np.ndarray
    feret_min_nm: np.ndarray | None
    aspect_ratio: np.ndarray
    circularity: np.ndarray
    nn_px: np.ndarray
    nn_nm: np.ndarray | None
    nn_edge_px: np.ndarray
    nn_edge_nm: np.ndarray | None
    counting_area_px: float
    counting_area_um2: float | None
    nm_per_px: float | None  # one scale shared by the whole group, else None
    counting_rule: str
    clark_evans: ClarkEvans | None
    spatial_per_image: bool


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def summary_row(
    group: GroupInput,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    metal: Metal | None,
    nano_threshold_nm: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One wide summary row and its long distribution rows."""
    notes: list[str] = []
    counted = int(group.area_px.size)
    sized = group.diameter_px > 0
    n_sized = int(sized.sum())
    row: dict[str, Any] = {
        "image": group.image,
        "label": group.label,
        "images": group.images,
        "objects": group.analysed,
        "counted": counted,
        "touching_border": group.touching_border,
        "without_area": counted - n_sized,
        "counting_rule": group.counting_rule,
        "analysed_area_px": group.counting_area_px,
        "analysed_area_um2": group.counting_area_um2,
        "mean_area_px": _mean(group.area_px[sized]),
    }
    if counted == 0:
        if group.analysed and group.touching_border == group.analysed:
            notes.append(
                f"all {group.analysed} objects touch the border and none was counted; "
                "use the counting rule 'all' or 'guard_frame'"
            )
        else:
            notes.append("no counted objects")
    if counted - n_sized:
        notes.append(
            f"{counted - n_sized} object(s) without area (points or degenerate outlines) are "
            "counted but left out of size statistics"
        )
    if n_sized == 1:
        notes.append("one sized object: no spread, confidence interval or log-normal fit")
    block_px = size_block(group.diameter_px[sized], "px", resamples, confidence, seed)
    blocks = [block_px]
    calibrated = group.diameter_nm is not None
    if calibrated:
        row["mean_area_nm2"] = (
            _mean(group.area_px[sized] * group.nm_per_px**2)
            if group.nm_per_px is not None
            else _mean((group.diameter_nm[sized] / 2) ** 2 * math.pi)
        )
        if group.nm_per_px is not None:
            blocks.append(scale_block(block_px, group.nm_per_px, "nm"))
        else:
            blocks.append(size_block(group.diameter_nm[sized], "nm", resamples, confidence, seed))
    else:
        notes.append(
            "no calibration (a pixel size is missing): sizes in px, density per megapixel "
            "(10⁶ px²); nm-based values "
            "(density per µm², dispersion, nanomaterial share) need nm per px"
        )
    for block in blocks:
        row.update(size_columns(block))
    distributions = [r for b in blocks for r in distribution_rows(group.image, group.label, b)]
    # Density and coverage.
    row["density_per_mpx"] = counted / group.counting_area_px * PX2_PER_MEGAPIXEL
    row["density_per_um2"] = (
        counted / group.counting_area_um2 if group.counting_area_um2 else math.nan
    )
    row["coverage_fraction"] = float(group.area_px.sum() / group.counting_area_px)
    # Shape descriptors.
    row["mean_feret_max_px"] = _mean(group.feret_max_px[sized])
    row["mean_feret_min_px"] = _mean(group.feret_min_px[sized])
    row["mean_aspect_ratio"] = _mean(group.aspect_ratio[sized])
    row["mean_circularity"] = _mean(group.circularity[sized])
    # Neighbours.
    for name, values in (("nn", group.nn_px), ("nn_edge", group.nn_edge_px)):
        row[f"{name}_mean_px"] = _mean(values)
        row[f"{name}_median_px"] = _median(values)
    for name, values in (("nn", group.nn_nm), ("nn_edge", group.nn_edge_nm)):
        if values is not None:
            row[f"{name}_mean_nm"] = _mean(values)
            row[f"{name}_median_nm"] = _median(values)
    if counted and not np.isfinite(group.nn_px).any():
        notes.append("a single object of this class: no nearest neighbour")
    ce = group.clark_evans
    row["clark_evans_r"] = ce.index if ce else math.nan
    row["clark_evans_z"] = ce.z if ce else math.nan
    row["clark_evans_p"] = ce.p_value if ce else math.nan
    if ce is None:
        notes.append(
            "Clark–Evans is computed per image (see the per-image table)"
            if not group.spatial_per_image
            else "Clark–Evans needs at least 2 objects"
        )
    # Catalysis extras.
    if metal is not None:
        row["metal"] = metal.symbol
        nm_block = blocks[-1] if calibrated else None
        if nm_block is not None and n_sized:
            value, clipped = dispersion(nm_block.value("area", "mean"), metal)
            low_d, high_d = nm_block.interval("area", "mean")
            row["dispersion"] = value
            row["dispersion_ci_low"] = dispersion(high_d, metal)[0]
            row["dispersion_ci_high"] = dispersion(low_d, metal)[0]
            if clipped:
                notes.append("dispersion clipped to 1: the hemisphere model fails below ~1 nm")
        else:
            row["dispersion"] = row["dispersion_ci_low"] = row["dispersion_ci_high"] = math.nan
            if calibrated:
                notes.append("no sized objects for a dispersion")
    if group.feret_min_nm is not None and n_sized:
        threshold = nano_threshold_nm
        row["nano_share_feret_min"] = float((group.feret_min_nm[sized] <= threshold).mean())
        row["nano_share_diameter"] = float((group.diameter_nm[sized] <= threshold).mean())
    else:
        row["nano_share_feret_min"] = row["nano_share_diameter"] = math.nan
    row["notes"] = "; ".join(notes)
    return row, distributions
