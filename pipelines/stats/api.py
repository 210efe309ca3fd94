"""Entry point of the statistics: LabelMe files or documents in, tables and figures out.

``compute_statistics(inputs, nm_per_px=None, options=StatsOptions())`` measures every object
of every image, applies the counting rule, and returns a :class:`StatsResult` of DataFrames:

- ``objects``: one row per object; first columns ``label, area_px, diameter_px, cx, cy`` and,
  when calibrated, ``area_nm2, diameter_nm, cx_nm, cy_nm``; then ``image``, ``object_id`` (the
  overlay's number) and the rest.
- ``summary``: one row per class, pooled over all images.
- ``per_image``: one row per (image, class).
- ``distributions``: long format, every weighting × statistic with its bootstrap interval.
- ``histograms``, ``ripley``: curve data for plots.

Undefined values are NaN and each summary row's ``notes`` explains them.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.errors import InvalidInput, InvalidLabels
from pipelines.formats.labelme import LabelMeDocument, check_inside_image, read_labelme
from pipelines.progress import ProgressCallback, StageTimer
from pipelines.stats.catalysis import METAL_TABLE_SOURCE, get_metal
from pipelines.stats.counting import (
    CountingRule,
    apply_counting_rule,
    image_region,
    region_from_tuple,
)
from pipelines.stats.measure import (
    KIND_POLYGON,
    ShapeArrays,
    measure_objects,
    object_groups,
    pack_objects,
)
from pipelines.stats.runcard import (
    Calibration,
    build_run_card,
    calibration_from_document,
    model_from_document,
    source_record,
)
from pipelines.stats.spatial import (
    clark_evans,
    object_outlines,
    ripley,
)
from pipelines.stats.summary import (
    POOLED_IMAGE,
    summary_row,
)
from pipelines.stats.tables import (
    DISTRIBUTION_COLUMNS,
    HISTOGRAM_COLUMNS,
    RIPLEY_COLUMNS,
    ImageInfo,
    ObjectTable,
    histogram_frame,
    ripley_frame,
    summary_frame,
)

if TYPE_CHECKING:
    from pipelines.stats.plots import Figures

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
StatsInput = PathLike | LabelMeDocument
CalibrationInput = float | Calibration | None
OBJECT_COLUMNS = ("label", "area_px", "diameter_px", "cx", "cy")
BIN_RULES = ("auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt")
CALIBRATED_COLUMNS = ("area_nm2", "diameter_nm")


@dataclass(frozen=True)
class StatsOptions:
    """How statistics are computed (serialised into every run card).

    ``counting_rule``: ``all`` | ``exclude_border`` | ``guard_frame`` (see
    :mod:`pipelines.stats.counting`); ``region_px``: ``(x_min, y_min, x_max, y_max)`` analysed
    region in px (None: the whole image). ``histogram_bins``: a numpy rule or a bin count
    (rules are clipped to 5–60 bins). ``metal``: symbol for the dispersion estimate.
    ``ripley_max_radius_px``: None picks a quarter of the short side capped at 10 random NN
    distances.
    """

    counting_rule: str = "all"
    guard_px: float | None = None
    border_tolerance_px: float = 1.0
    region_px: tuple[float, float, float, float] | None = None
    histogram_bins: int | str = "auto"
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    metal: str | None = None
    ripley_radii: int = 50
    ripley_max_radius_px: float | None = None
    edge_distances: bool = True
    shape_descriptors: bool = True
    nano_threshold_nm: float = 100.0

    def __post_init__(self) -> None:
        self.counting  # noqa: B018  (validates the rule)
        if not 0 < self.confidence < 1:
            raise InvalidInput(f"confidence must lie between 0 and 1, got {self.confidence}")
        if self.bootstrap_resamples < 0:
            raise InvalidInput("the number of bootstrap resamples cannot be negative")
        if self.ripley_radii < 1:
            raise InvalidInput("Ripley needs at least one radius")
        if self.ripley_max_radius_px is not None and not self.ripley_max_radius_px > 0:
            raise InvalidInput("the largest Ripley radius must be > 0 px")
        if isinstance(self.histogram_bins, int) and self.histogram_bins < 1:
            raise InvalidInput("a histogram needs at least one bin")
        if isinstance(self.histogram_bins, str) and self.histogram_bins not in BIN_RULES:
            raise InvalidInput(
                f"unknown histogram bin rule {self.histogram_bins!r}; give a bin count or one "
                f"of: {', '.join(BIN_RULES)}"
            )
        if self.metal is not None:
            get_metal(self.metal)
        if self.region_px is not None and len(self.region_px) != 4:
            raise InvalidInput("a region is four numbers: x_min, y_min, x_max, y_max (px)")

    @property
    def counting(self) -> CountingRule:
        return CountingRule(self.counting_rule, self.guard_px, self.border_tolerance_px)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class StatsResult:
    """Tables of a statistics run (see the module docstring) and its run card."""

    objects: pd.DataFrame
    summary: pd.DataFrame
    per_image: pd.DataFrame
    distributions: pd.DataFrame
    histograms: pd.DataFrame
    ripley: pd.DataFrame
    run_card: dict[str, Any]
    options: StatsOptions
    images: list[ImageInfo] = field(default_factory=list)

    @property
    def calibrated(self) -> bool:
        """True when every image has a pixel size (nm columns are then complete)."""
        return bool(self.images) and all(i.calibration.calibrated for i in self.images)

    @property
    def size_unit(self) -> str:
        """``nm`` when every image is calibrated, else ``px``."""
        return "nm" if self.calibrated else "px"

    @property
    def figures(self) -> Figures:
        """Plotly figure helpers shared by the app, the CLI and the HTML report."""
        from pipelines.stats.plots import Figures

        return Figures(self)


def _image_name(document: LabelMeDocument, index: int) -> str:
    if document.image_path:
        return Path(document.image_path.replace("\\", "/")).name
    if document.source is not None:
        return Path(document.source).stem
    return f"image {index + 1}"


def _load(item: StatsInput) -> tuple[LabelMeDocument, bool]:
    if isinstance(item, LabelMeDocument):
        return item, False
    document = read_labelme(item, validate=False)
    check_inside_image(
        document.shapes, document.image_height, document.image_width, Path(item).name
    )
    return document, True


def _check_outlines(
    arrays: ShapeArrays, checked: np.ndarray, image_of_object: np.ndarray, names: list[str]
) -> None:
    """Refuse self-crossing polygons (their area is meaningless); allow degenerate ones.

    A polygon whose vertices are all collinear has zero area: it is kept, counted, and left out
    of size statistics with a note instead of failing the whole file.
    """
    import shapely

    counts = np.diff(arrays.vertex_start)
    polygon = (arrays.kind == KIND_POLYGON) & (counts >= 3) & checked[arrays.object_index]
    if not polygon.any():
        return
    shape_of_vertex = np.repeat(np.arange(arrays.n_shapes), counts)
    chosen = polygon[shape_of_vertex]
    indices = np.searchsorted(np.flatnonzero(polygon), shape_of_vertex[chosen])
    rings = shapely.polygons(shapely.linearrings(arrays.vertices_px[chosen], indices=indices))
    invalid = ~shapely.is_valid(rings)
    if not invalid.any():
        return
    crossing = invalid & (shapely.area(shapely.convex_hull(rings)) > 0)
    if crossing.any():
        shape_index = int(np.flatnonzero(polygon)[np.flatnonzero(crossing)[0]])
        owner = int(arrays.object_index[shape_index])
        image = int(image_of_object[owner])
        number = owner - int(np.searchsorted(image_of_object, image)) + 1
        raise InvalidLabels(
            f"{names[image]}: object {number} ('{arrays.labels[owner]}') is a "
            "self-intersecting polygon; redraw its outline so the edges do not cross"
        )


def _calibrations(documents: list[LabelMeDocument], nm_per_px: Any) -> list[Calibration]:
    if nm_per_px is None or isinstance(nm_per_px, numbers.Real | Calibration):
        values: list[Any] = [nm_per_px] * len(documents)
    elif isinstance(nm_per_px, Mapping):
        raise InvalidInput("give nm_per_px as one value or a list with one value per image")
    else:
        values = list(nm_per_px)
        if len(values) != len(documents):
            raise InvalidInput(
                f"{len(values)} pixel sizes for {len(documents)} images; give one per image"
            )
    result = []
    for document, value in zip(documents, values, strict=True):
        if isinstance(value, Calibration):
            result.append(value if value.calibrated else calibration_from_document(document))
        elif value is None:
            result.append(calibration_from_document(document))
        else:
            result.append(Calibration(float(value), "user"))
    return result


def compute_statistics(
    inputs: Sequence[StatsInput] | StatsInput,
    nm_per_px: CalibrationInput | Sequence[CalibrationInput] = None,
    options: StatsOptions | None = None,
    *,
    model: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> StatsResult:
    """Statistics of the objects in LabelMe files or documents.

    ``nm_per_px``: one pixel size for all images, one per image, or None (then each file's
    ``nocode_ml.nm_per_px`` metadata if present, else uncalibrated: sizes stay in px).
    ``model``: provenance of predicted objects for the run card (else read from the files).
    """
    options = options or StatsOptions()
    if isinstance(inputs, str | os.PathLike | LabelMeDocument):
        inputs = [inputs]
    if not inputs:
        raise InvalidInput("no LabelMe files given; choose at least one")
    loaded = [_load(item) for item in inputs]
    documents = [document for document, _ in loaded]
    calibrations = _calibrations(documents, nm_per_px)
    names: list[str] = []
    for index, document in enumerate(documents):
        name = _image_name(document, index)
        while name in names:
            name = f"{name} #{index + 1}"
        names.append(name)
    timer = StageTimer(progress, "statistics", total=len(documents) + 2)
    # Measure every object of every image in one vectorised pass.
    groups_per_image = [object_groups(d.shapes) for d in documents]
    image_of_object = np.repeat(
        np.arange(len(documents)), [len(g) for g in groups_per_image]
    ).astype(np.int64)
    all_groups = [group for groups in groups_per_image for group in groups]
    arrays = pack_objects(all_groups)
    from_file = np.array([f for _, f in loaded], dtype=bool)
    _check_outlines(arrays, from_file[image_of_object], image_of_object, names)
    measured = measure_objects(arrays, shape_descriptors=options.shape_descriptors)
    outlines = object_outlines(arrays) if options.edge_distances else None
    timer.update(1, "measured")
    table = ObjectTable.create(measured, arrays.labels, image_of_object)
    images: list[ImageInfo] = []
    per_image_rows: list[dict[str, Any]] = []
    distribution_rows: list[dict[str, Any]] = []
    ripley_frames: list[pd.DataFrame] = []
    metal = get_metal(options.metal) if options.metal else None
    rule = options.counting
    for index, document in enumerate(documents):
        mine = np.flatnonzero(image_of_object == index)
        region = (
            region_from_tuple(options.region_px, document.image_height, document.image_width)
            if options.region_px is not None
            else image_region(document.image_height, document.image_width)
        )
        outcome = apply_counting_rule(
            rule,
            region,
            measured.cx[mine],
            measured.cy[mine],
            (
                measured.x_min[mine],
                measured.y_min[mine],
                measured.x_max[mine],
                measured.y_max[mine],
            ),
            measured.extent_px[mine],
            where=names[index],
        )
        calibration = calibrations[index]
        images.append(
            ImageInfo(
                names[index],
                document.image_height,
                document.image_width,
                region,
                outcome.counting_region,
                calibration,
                outcome.description,
                outcome.guard_px,
            )
        )
        table.set_counting(mine, outcome, calibration)
        for label in sorted(set(arrays.labels[mine].tolist())):
            members = mine[(arrays.labels[mine] == label) & outcome.analysed]
            table.neighbours(members, measured, outlines)
            group = table.group(
                names[index],
                label,
                members,
                images=[images[-1]],
                rule=rule.rule,
                clark=clark_evans(table.nn_px[members], region),
            )
            row, distributions = summary_row(group, **_row_options(options, metal))
            per_image_rows.append(row)
            distribution_rows.extend(distributions)
            if members.size >= 2:
                curve = ripley(
                    measured.cx[members],
                    measured.cy[members],
                    region,
                    options.ripley_radii,
                    options.ripley_max_radius_px,
                )
                ripley_frames.append(ripley_frame(names[index], label, curve, calibration))
        timer.update(index + 2, names[index])
    summary_rows: list[dict[str, Any]] = []
    histogram_frames: list[pd.DataFrame] = []
    pooled_distributions: list[dict[str, Any]] = []
    for label in sorted(set(arrays.labels.tolist())):
        members = np.flatnonzero((arrays.labels == label) & table.analysed)
        group = table.group(
            POOLED_IMAGE if len(documents) > 1 else names[0],
            label,
            members,
            images=images,
            rule=rule.rule,
            clark=None,
        )
        if len(documents) == 1:
            row = next(r for r in per_image_rows if r["label"] == label)
            distributions = [d for d in distribution_rows if d["label"] == label]
        else:
            row, distributions = summary_row(group, **_row_options(options, metal))
        summary_rows.append(row)
        pooled_distributions.extend(distributions)
        histogram_frames.append(histogram_frame(label, group, options.histogram_bins))
    timer.update(len(documents) + 2, "summarised")
    objects = table.frame(names, any(c.calibrated for c in calibrations))
    summary = summary_frame(summary_rows, drop_image=True)
    per_image = summary_frame(per_image_rows)
    if len(documents) > 1:
        distribution_rows = distribution_rows + pooled_distributions
    run_card = build_run_card(
        sources=[
            source_record(
                d, n, None if from_file[i] else _shapes_digest(arrays, image_of_object, i)
            )
            for i, (d, n) in enumerate(zip(documents, names, strict=True))
        ],
        calibrations=dict(zip(names, calibrations, strict=True)),
        counting={
            "rule": rule.rule,
            "border_tolerance_px": rule.border_tolerance_px,
            "region_px": list(options.region_px) if options.region_px else "whole image",
            "per_image": {i.name: i.counting_description for i in images},
            "guard_px": {i.name: i.guard_px for i in images if i.guard_px is not None} or None,
        },
        options=options.to_dict(),
        models=_models(documents, names, model),
        notes=_run_notes(options, metal is not None),
    )
    return StatsResult(
        objects=objects,
        summary=summary,
        per_image=per_image,
        distributions=pd.DataFrame(distribution_rows, columns=DISTRIBUTION_COLUMNS),
        histograms=pd.concat(histogram_frames, ignore_index=True)
        if histogram_frames
        else pd.DataFrame(columns=HISTOGRAM_COLUMNS),
        ripley=pd.concat(ripley_frames, ignore_index=True)
        if ripley_frames
        else pd.DataFrame(columns=RIPLEY_COLUMNS),
        run_card=run_card,
        options=options,
        images=images,
    )


def stats_from_labelme(
    path: PathLike | LabelMeDocument,
    nm_per_px: CalibrationInput = None,
    options: StatsOptions | None = None,
) -> StatsResult:
    """Statistics of one LabelMe file (or document)."""
    return compute_statistics([path], nm_per_px, options)


def _row_options(options: StatsOptions, metal: Any) -> dict[str, Any]:
    return {
        "resamples": options.bootstrap_resamples,
        "confidence": options.confidence,
        "seed": options.seed,
        "metal": metal,
        "nano_threshold_nm": options.nano_threshold_nm,
    }


def _models(
    documents: list[LabelMeDocument], names: list[str], model: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    if model is not None:
        return {name: dict(model) for name in names}
    found = {}
    for document, name in zip(documents, names, strict=True):
        info = model_from_document(document)
        if info is not None:
            found[name] = info
    return found


def _run_notes(options: StatsOptions, with_metal: bool) -> list[str]:
    notes = [
        "D = 2·sqrt(S/π), S = polygon (shoelace), circle (πr²) or rectangle (w·h) area; "
        "centres are area centroids; objects are shapes sharing (label, group_id)",
        (
            f"intervals: percentile bootstrap, {options.bootstrap_resamples} resamples, "
            f"seed {options.seed}, {options.confidence:.0%} confidence"
            if options.bootstrap_resamples
            else "no confidence intervals: the bootstrap was switched off (0 resamples)"
        ),
        "nearest neighbours: same class, same image, all analysed objects as neighbours; "
        "edge distances are outline to outline (0 when touching)",
        "Clark–Evans with Donnelly's edge correction; Ripley K/L with border correction",
        "log-normal fit by maximum likelihood; its Kolmogorov–Smirnov p-value is optimistic "
        "(parameters estimated from the same data)",
        "coverage = summed object area / counting area (overlaps count twice)",
        "NaN/empty cells are undefined values; each summary row's notes says why",
    ]
    if with_metal:
        notes.append(f"dispersion: {METAL_TABLE_SOURCE}")
    return notes


def _shapes_digest(arrays: ShapeArrays, image_of_object: np.ndarray, image: int) -> str:
    """SHA-256 of one image's packed shapes: vertices, kinds, radii, grouping and labels.

    Images are packed one after another, so an image's shapes and vertices are contiguous.
    """
    import hashlib

    shapes = np.flatnonzero(image_of_object[arrays.object_index] == image)
    digest = hashlib.sha256()
    if shapes.size:
        first, last = int(shapes[0]), int(shapes[-1])
        rows = slice(arrays.vertex_start[first], arrays.vertex_start[last + 1])
        digest.update(np.ascontiguousarray(arrays.vertices_px[rows]).tobytes())
        digest.update(np.diff(arrays.vertex_start[first : last + 2]).tobytes())
    digest.update(arrays.kind[shapes].tobytes())
    digest.update(arrays.radius_px[shapes].tobytes())
    digest.update(arrays.object_index[shapes].tobytes())
    objects = np.flatnonzero(image_of_object == image)
    digest.update("\x1f".join(arrays.labels[objects].tolist()).encode("utf-8"))
    return digest.hexdigest()
