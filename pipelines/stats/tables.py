"""Result tables of :func:`pipelines.stats.api.compute_statistics` (internal helpers).

The per-object columns are gathered here while images are processed, then turned into the
``objects`` DataFrame and the inputs of each summary row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines.stats.counting import CountingOutcome, Region
from pipelines.stats.distributions import histogram_edges, weighted_histogram
from pipelines.stats.measure import ObjectMeasurements
from pipelines.stats.runcard import Calibration
from pipelines.stats.spatial import centre_nearest_neighbours, edge_nearest_neighbours
from pipelines.stats.summary import NM2_PER_UM2, GroupInput


@dataclass(frozen=True)
class ImageInfo:
    """One analysed image: its name, size, regions and calibration."""

    name: str
    height: int
    width: int
    region: Region
    counting_region: Region
    calibration: Calibration
    counting_description: str
    guard_px: float | None


DISTRIBUTION_COLUMNS = [
    "image",
    "label",
    "weighting",
    "statistic",
    "value",
    "ci_low",
    "ci_high",
    "unit",
    "n",
]
HISTOGRAM_COLUMNS = [
    "label",
    "unit",
    "bin_left",
    "bin_right",
    "count",
    "number_fraction",
    "area_fraction",
    "volume_fraction",
]
RIPLEY_COLUMNS = [
    "image",
    "label",
    "radius_px",
    "k_px2",
    "l_px",
    "l_minus_r_px",
    "points_used",
    "n",
    "radius_nm",
    "l_nm",
]


def summary_frame(rows: list[dict[str, Any]], drop_image: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        columns = ["label", "objects", "counted", "notes"]
        frame = pd.DataFrame(columns=columns if drop_image else ["image", *columns])
    if drop_image and "image" in frame.columns:
        frame = frame.drop(columns="image")
    if "notes" in frame.columns:
        frame = frame[[c for c in frame.columns if c != "notes"] + ["notes"]]
    return frame


def ripley_frame(image: str, label: str, curve: Any, calibration: Calibration) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "image": image,
            "label": label,
            "radius_px": curve.radius_px,
            "k_px2": curve.k_px2,
            "l_px": curve.l_px,
            "l_minus_r_px": curve.l_px - curve.radius_px,
            "points_used": curve.points_used,
            "n": curve.n,
        }
    )
    scale = calibration.nm_per_px
    frame["radius_nm"] = curve.radius_px * scale if scale else math.nan
    frame["l_nm"] = curve.l_px * scale if scale else math.nan
    return frame


def histogram_frame(label: str, group: GroupInput, bins: int | str) -> pd.DataFrame:
    use_nm = group.diameter_nm is not None
    values = group.diameter_nm if use_nm else group.diameter_px
    values = values[group.diameter_px > 0]
    edges = histogram_edges(values, bins)
    bins = weighted_histogram(values, edges)
    return pd.DataFrame(
        {
            "label": label,
            "unit": "nm" if use_nm else "px",
            "bin_left": edges[:-1],
            "bin_right": edges[1:],
            **bins,
        }
    )


class ObjectTable:
    """Per-object columns accumulated while images are processed (internal)."""

    def __init__(
        self, measured: ObjectMeasurements, labels: np.ndarray, image_of_object: np.ndarray
    ) -> None:
        n = labels.size
        self.measured = measured
        self.labels = labels
        self.image_of_object = image_of_object
        self.analysed = np.zeros(n, dtype=bool)
        self.touches_border = np.zeros(n, dtype=bool)
        self.counted = np.zeros(n, dtype=bool)
        self.nm_per_px = np.full(n, np.nan)
        self.nn_px = np.full(n, np.nan)
        self.nn_edge_px = np.full(n, np.nan)
        self.nn_object = np.full(n, -1, dtype=np.int64)
        self.nn_edge_object = np.full(n, -1, dtype=np.int64)
        self.object_number = np.zeros(n, dtype=np.int64)
        for image in np.unique(image_of_object):
            mine = image_of_object == image
            self.object_number[mine] = np.arange(1, int(mine.sum()) + 1)

    @classmethod
    def create(
        cls, measured: ObjectMeasurements, labels: np.ndarray, image_of_object: np.ndarray
    ) -> ObjectTable:
        return cls(measured, labels, image_of_object)

    def set_counting(
        self, members: np.ndarray, outcome: CountingOutcome, calibration: Calibration
    ) -> None:
        self.analysed[members] = outcome.analysed
        self.touches_border[members] = outcome.touches_border
        self.counted[members] = outcome.counted
        if calibration.calibrated:
            self.nm_per_px[members] = calibration.nm_per_px

    def neighbours(self, members: np.ndarray, measured: ObjectMeasurements, outlines: Any) -> None:
        x, y = measured.cx[members], measured.cy[members]
        distance, index = centre_nearest_neighbours(x, y)
        self.nn_px[members] = distance
        self.nn_object[members] = np.where(index >= 0, members[np.maximum(index, 0)], -1)
        if outlines is not None:
            edge, edge_index = edge_nearest_neighbours(
                outlines, members, x, y, measured.extent_px[members]
            )
            self.nn_edge_px[members] = edge
            self.nn_edge_object[members] = np.where(
                edge_index >= 0, members[np.maximum(edge_index, 0)], -1
            )

    def group(
        self,
        image: str,
        label: str,
        members: np.ndarray,
        *,
        images: list[ImageInfo],
        rule: str,
        clark: Any,
    ) -> GroupInput:
        """Inputs of one summary row for the analysed objects ``members`` of one class."""
        counted = members[self.counted[members]]
        m = self.measured
        scale = self.nm_per_px[counted]
        calibrated = all(i.calibration.calibrated for i in images)
        scales = {i.calibration.nm_per_px for i in images}
        shared = next(iter(scales)) if calibrated and len(scales) == 1 else None
        counting_px = sum(i.counting_region.area_px for i in images)
        counting_um2 = (
            sum(i.counting_region.area_px * i.calibration.nm_per_px**2 for i in images)
            / NM2_PER_UM2
            if calibrated
            else None
        )
        diameter = m.diameter_px[counted]
        return GroupInput(
            image=image,
            label=label,
            images=len(images),
            analysed=int(members.size),
            touching_border=int(self.touches_border[members].sum()),
            area_px=m.area_px[counted],
            diameter_px=diameter,
            diameter_nm=diameter * scale if calibrated else None,
            feret_max_px=m.feret_max_px[counted],
            feret_min_px=m.feret_min_px[counted],
            feret_min_nm=m.feret_min_px[counted] * scale if calibrated else None,
            aspect_ratio=m.aspect_ratio[counted],
            circularity=m.circularity[counted],
            nn_px=self.nn_px[counted],
            nn_nm=self.nn_px[counted] * scale if calibrated else None,
            nn_edge_px=self.nn_edge_px[counted],
            nn_edge_nm=self.nn_edge_px[counted] * scale if calibrated else None,
            counting_area_px=counting_px,
            counting_area_um2=counting_um2,
            nm_per_px=shared,
            counting_rule=rule,
            clark_evans=clark,
            spatial_per_image=len(images) == 1,
        )

    def frame(self, names: list[str], any_calibrated: bool) -> pd.DataFrame:
        m = self.measured
        scale = self.nm_per_px
        columns: dict[str, Any] = {
            "label": self.labels.astype(str),
            "area_px": m.area_px,
            "diameter_px": m.diameter_px,
            "cx": m.cx,
            "cy": m.cy,
        }
        if any_calibrated:
            columns.update(
                area_nm2=m.area_px * scale**2,
                diameter_nm=m.diameter_px * scale,
                cx_nm=m.cx * scale,
                cy_nm=m.cy * scale,
            )
        columns.update(
            image=np.asarray(names, dtype=object)[self.image_of_object]
            if names
            else np.zeros(0, dtype=object),
            object_id=self.object_number,
            shapes=m.n_shapes,
            perimeter_px=m.perimeter_px,
            feret_max_px=m.feret_max_px,
            feret_min_px=m.feret_min_px,
            aspect_ratio=m.aspect_ratio,
            circularity=m.circularity,
            analysed=self.analysed,
            touches_border=self.touches_border,
            counted=self.counted,
            nn_distance_px=self.nn_px,
            nn_object_id=object_ids(self.nn_object, self.object_number),
            nn_edge_distance_px=self.nn_edge_px,
            nn_edge_object_id=object_ids(self.nn_edge_object, self.object_number),
        )
        if any_calibrated:
            columns.update(
                feret_max_nm=m.feret_max_px * scale,
                feret_min_nm=m.feret_min_px * scale,
                nn_distance_nm=self.nn_px * scale,
                nn_edge_distance_nm=self.nn_edge_px * scale,
            )
        return pd.DataFrame(columns)


def object_ids(index: np.ndarray, numbers: np.ndarray) -> pd.Series:
    ids = np.where(index >= 0, numbers[np.maximum(index, 0)] if numbers.size else 0, 0)
    return pd.Series(ids, dtype="Int64").mask(index < 0)
