"""One synthetic sample: image, exact truth, simulated user labels, and writing them to disk.

Simulated user labels follow the prototype that worked (see ``shared/notes/ml-engines.md``):
a few ``crop`` rectangles, and inside each crop every object outlined; objects cut by a crop
border are outlined clipped to the crop, as a user outlines the visible part. Crops are
chosen to hold about ``crop_objects_target`` objects and stay clear of the scale bar.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipelines.errors import InvalidInput
from pipelines.formats.labelme import (
    METADATA_KEY,
    Box,
    LabelMeDocument,
    Shape,
    crop_rectangle,
    new_document,
    write_labelme,
)
from pipelines.formats.masks import (
    InstanceMasks,
    instances_to_shapes,
    mask_to_polygon,
    shapes_to_instances,
)
from pipelines.synthetic.geometry import place_objects
from pipelines.synthetic.render import (
    burn_scale_bar,
    detector_counts,
    expected_signal,
    rasterise_objects,
    scale_bar_layout,
    support,
)
from pipelines.synthetic.scenarios import PARTICLE, SINGLE_SITE, ScenarioConfig, get_scenario

log = logging.getLogger(__name__)

IMAGE_NAME = "image.tif"
LABELS_NAME = "labels.json"
TRUTH_NAME = "truth.json"
MIN_SIZE_PX, MAX_SIZE_PX = 64, 16384
CROP_CANDIDATES = 400
CROP_MIN_PX = 48


@dataclass(eq=False)
class SyntheticSample:
    """A generated image with its answers.

    ``image``: ``(H, W) uint16``; ``truth``: every object (:class:`InstanceMasks` contract);
    ``truth_document``: the same objects as LabelMe polygons (rasterising it gives ``truth``
    exactly); ``user_labels``: crops and the objects in them, as a user would draw them;
    ``artefact_boxes``: burnt-in overlays (scale bar) that are not objects.
    """

    image: np.ndarray
    truth: InstanceMasks
    nm_per_px: float
    truth_document: LabelMeDocument
    user_labels: LabelMeDocument
    scenario: str
    seed: int
    config: ScenarioConfig
    crop_boxes: list[Box]
    artefact_boxes: list[Box]

    @property
    def labelled_count(self) -> int:
        """Objects outlined in the user labels (crops excluded)."""
        return len(self.user_labels.object_shapes)

    def summary(self) -> str:
        """One line for the CLI and logs."""
        height, width = self.image.shape
        per_class = ", ".join(
            f"{name} {int(np.count_nonzero(self.truth.class_ids == index))}"
            for index, name in enumerate(self.truth.class_names, start=1)
        )
        return (
            f"{self.scenario} seed {self.seed}: {width}x{height} px at {self.nm_per_px:g} nm/px, "
            f"{self.truth.count} objects ({per_class}), {self.labelled_count} labelled in "
            f"{len(self.crop_boxes)} crops"
        )


def generate(
    scenario: str = "particles", size_px: int = 2048, seed: int = 0, **overrides: object
) -> SyntheticSample:
    """Generate a ``size_px`` × ``size_px`` sample of ``scenario``; same arguments, same bytes.

    ``overrides`` replace :class:`ScenarioConfig` fields (e.g. ``particles_per_mpx=600``).
    Independent random streams drive layout, support, noise, crops and overlays, so changing
    the dose does not move the particles, and scenarios that share geometry settings
    (``particles`` and ``uneven``) place the same particles for the same seed.
    """
    config = get_scenario(scenario, **overrides)
    if not isinstance(size_px, int) or not MIN_SIZE_PX <= size_px <= MAX_SIZE_PX:
        raise InvalidInput(
            f"image size {size_px!r} px is not supported; choose {MIN_SIZE_PX}-{MAX_SIZE_PX}"
        )
    if not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed {seed!r} is not a non-negative integer")
    height = width = size_px
    layout_rng, support_rng, noise_rng, crop_rng, overlay_rng = (
        np.random.default_rng(stream) for stream in np.random.SeedSequence(seed).spawn(5)
    )
    artefacts: list[Box] = []
    scale_bar = None
    if config.scale_bar:
        scale_bar = scale_bar_layout(height, width, config.nm_per_px, overlay_rng)
        artefacts.append(scale_bar.box)

    layout = place_objects(config, height, width, layout_rng, exclusions=artefacts)
    object_signal, owner = rasterise_objects(
        layout, height, width, reference_radius_px=config.diameter_median_px / 2
    )
    illumination, texture = support(config, height, width, support_rng)
    signal = expected_signal(config, object_signal, illumination, texture)
    image = detector_counts(config, signal, noise_rng)
    if scale_bar is not None:
        # Exported images draw the bar at full scale, i.e. the data's own extreme value.
        burn_scale_bar(image, scale_bar, int(image.min() if config.bright_field else image.max()))

    truth, truth_shapes = _truth(owner, layout.is_site, config)
    truth_document = new_document(truth_shapes, IMAGE_NAME, height, width)
    truth_document.extra["synthetic"] = {
        "scenario": config.name,
        "seed": seed,
        "size_px": size_px,
        "nm_per_px": config.nm_per_px,
        "artefact_boxes": [[b.left, b.top, b.right, b.bottom] for b in artefacts],
        "config": config.to_dict(),
    }
    crops = choose_crops(truth, config, crop_rng, avoid=artefacts)
    user_labels = new_document(_crop_labels(truth, crops), IMAGE_NAME, height, width)
    # Where statistics look for the pixel size, so both files give sizes in nm on their own.
    for document in (truth_document, user_labels):
        document.extra[METADATA_KEY] = {
            "nm_per_px": config.nm_per_px,
            "calibration_source": "synthetic generator",
        }
    return SyntheticSample(
        image=image,
        truth=truth,
        nm_per_px=config.nm_per_px,
        truth_document=truth_document,
        user_labels=user_labels,
        scenario=config.name,
        seed=seed,
        config=config,
        crop_boxes=crops,
        artefact_boxes=artefacts,
    )


def _truth(
    owner: np.ndarray, is_site: np.ndarray, config: ScenarioConfig
) -> tuple[InstanceMasks, list[Shape]]:
    """Labelled objects as exact instance masks plus the polygons that rasterise to them."""
    names = [PARTICLE, SINGLE_SITE] if config.sites_labelled else [PARTICLE]
    labelled = ~is_site | config.sites_labelled
    present = np.bincount(owner.ravel(), minlength=is_site.size + 1)[1:] > 0
    kept = np.flatnonzero(labelled & present)
    lookup = np.zeros(is_site.size + 1, dtype=np.int32)
    lookup[kept + 1] = np.arange(1, kept.size + 1, dtype=np.int32)
    labels = lookup[owner]
    class_ids = np.where(is_site[kept], 2, 1).astype(np.int32)
    return exact_polygons(InstanceMasks(labels, class_ids, names))


def exact_polygons(instances: InstanceMasks) -> tuple[InstanceMasks, list[Shape]]:
    """Polygons (via ``instances_to_shapes``) whose rasterisation is exactly the returned masks.

    Simplified outlines reproduce almost every mask; the rare object they do not is outlined
    again without simplification, and the masks are then taken from the polygons, so a reader
    of the LabelMe file gets the same pixels as the in-memory truth.
    """
    labels, names = instances.labels, instances.class_names
    height, width = labels.shape
    shapes = instances_to_shapes(labels, instances.class_ids, names)
    if len(shapes) != instances.count:
        raise RuntimeError("every truth instance must be one non-empty, connected region")
    raster = shapes_to_instances(shapes, height, width, class_names=names).labels
    differ = raster != labels
    if differ.any():
        wrong = np.unique(np.concatenate([labels[differ], raster[differ]]))
        slices = ndimage.find_objects(labels)
        for instance in wrong[wrong > 0]:
            window = slices[instance - 1]
            polygon = mask_to_polygon(labels[window] == instance, tolerance_px=0.0)
            polygon[:, 0] += window[1].start
            polygon[:, 1] += window[0].start
            shapes[instance - 1].points = polygon
        log.debug("outlined %d truth objects without simplification", int((wrong > 0).sum()))
        raster = shapes_to_instances(shapes, height, width, class_names=names).labels
    return InstanceMasks(raster, instances.class_ids.copy(), list(names)), shapes


def _object_boxes(truth: InstanceMasks) -> np.ndarray:
    """``(n, 4)`` pixel boxes ``(left, top, right, bottom)`` of every instance."""
    boxes = np.zeros((truth.count, 4), dtype=np.int64)
    for index, window in enumerate(ndimage.find_objects(truth.labels, max_label=truth.count)):
        if window is not None:
            boxes[index] = (window[1].start, window[0].start, window[1].stop, window[0].stop)
    return boxes


def _overlaps(a: Box, b: Box) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom


def choose_crops(
    truth: InstanceMasks,
    config: ScenarioConfig,
    rng: np.random.Generator,
    avoid: list[Box] | None = None,
) -> list[Box]:
    """Non-overlapping square crops, each holding about ``crop_objects_target`` objects.

    The side follows from the object density. The first crop of a scenario with a rare class
    (``crop_anchor_class``) is placed around one of its objects so that class gets labelled.
    Crops that cannot be placed (small images) are left out; there is always at least one.
    """
    height, width = truth.labels.shape
    avoid = list(avoid or [])
    density_per_px2 = max(truth.count, 1) / (height * width)
    side = round(math.sqrt(config.crop_objects_target / density_per_px2))
    side = int(min(max(side, CROP_MIN_PX), height // 2, width // 2))
    boxes = _object_boxes(truth)
    is_anchor = np.zeros(truth.count, dtype=bool)
    if config.crop_anchor_class in truth.class_names:
        is_anchor = truth.class_ids == truth.class_names.index(config.crop_anchor_class) + 1
    # Crops this large only fit together in the corners, so only corners are tried.
    snap = config.crop_count > 1 and side > 0.3 * min(height, width)
    crops: list[Box] = []
    for crop_number in range(config.crop_count):
        anchored = crop_number == 0 and bool(is_anchor.any())
        if anchored:
            chosen = boxes[rng.choice(np.flatnonzero(is_anchor), CROP_CANDIDATES)]
            offsets = rng.uniform(0.2, 0.8, (2, CROP_CANDIDATES)) * side
            lefts = np.clip((chosen[:, 0] + chosen[:, 2]) / 2 - offsets[0], 0, width - side)
            tops = np.clip((chosen[:, 1] + chosen[:, 3]) / 2 - offsets[1], 0, height - side)
            lefts, tops = lefts.astype(np.int64), tops.astype(np.int64)
        else:
            lefts = rng.integers(0, width - side + 1, CROP_CANDIDATES)
            tops = rng.integers(0, height - side + 1, CROP_CANDIDATES)
        if snap:
            lefts = np.where(lefts < (width - side) / 2, 0, width - side)
            tops = np.where(tops < (height - side) / 2, 0, height - side)
        hits = (
            (boxes[None, :, 0] < lefts[:, None] + side)
            & (boxes[None, :, 2] > lefts[:, None])
            & (boxes[None, :, 1] < tops[:, None] + side)
            & (boxes[None, :, 3] > tops[:, None])
        )
        counts = hits.sum(axis=1)
        anchor_counts = hits[:, is_anchor].sum(axis=1)
        best: tuple[int, Box] | None = None
        for index in range(CROP_CANDIDATES):
            left, top = int(lefts[index]), int(tops[index])
            box = Box(left, top, left + side, top + side)
            if any(_overlaps(box, other) for other in (*crops, *avoid)):
                continue
            if anchored and anchor_counts[index] == 0:
                continue
            score = abs(int(counts[index]) - config.crop_objects_target)
            if best is None or score < best[0]:
                best = (score, box)
        if best is None:
            log.debug("no room for crop %d of %d", crop_number + 1, config.crop_count)
            continue
        crops.append(best[1])
    if not crops:  # everything collided with the overlays: take the top-left corner
        crops.append(Box(0, 0, side, side))
    return crops


def _crop_labels(truth: InstanceMasks, crops: list[Box]) -> list[Shape]:
    """A ``crop`` rectangle per crop followed by the outline of every object inside it."""
    shapes: list[Shape] = []
    for box in crops:
        shapes.append(crop_rectangle(box))
        inside = instances_to_shapes(truth.labels[box.slices()], truth.class_ids, truth.class_names)
        for shape in inside:
            shape.points = shape.points + np.array([box.left, box.top], dtype=np.float64)
        shapes.extend(inside)
    return shapes


def write_sample(sample: SyntheticSample, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``image.tif`` (calibrated), ``labels.json`` (user crops) and ``truth.json``.

    Both JSON files are LabelMe documents with ``imagePath`` ``image.tif``, so labelme opens
    them beside the image. Each file is written atomically.
    """
    from pipelines.imaging import write_tiff

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "image": write_tiff(folder / IMAGE_NAME, sample.image, sample.nm_per_px),
        "labels": write_labelme(folder / LABELS_NAME, sample.user_labels),
        "truth": write_labelme(folder / TRUTH_NAME, sample.truth_document),
    }
