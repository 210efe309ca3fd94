"""Peer baselines trained from scratch on the same few labels as our engines, for benchmarks.

Two peers a microscopist would reach for instead of our product:

- ``rf``: an ilastik-style pixel classifier. ilastik's default filter bank (Gaussian smoothing,
  Laplacian of Gaussian, Gaussian gradient magnitude, difference of Gaussians, structure-tensor
  and Hessian-of-Gaussian eigenvalues at σ ∈ {0.3, 0.7, 1, 1.6, 3.5, 5, 10}) feeds a
  scikit-learn random forest with one pixel class per object class, a background class and a
  thin "boundary" class between touching objects (as ilastik users paint it). Instances come
  from a distance-transform watershed with h-maxima markers, per class. The probability
  threshold, marker depth ``h`` and minimum area are chosen per class on the crops only, from
  leave-one-crop-out probability maps (a forest never sees the crop it is tuned on).
- ``stardist``: StarDist2D (TensorFlow) from scratch, multi-class through ``n_classes`` when the
  labels hold several classes. TensorFlow is kept out of the project's environment: this module
  runs itself as a worker under another interpreter (``PEER_PYTHON``, default
  ``/work/peer-venv/bin/python``) and exchanges ``.npy``/``.json`` files with it.

Supervision is the crops only: inside a crop unlabelled pixels are background, outside the
crops nothing is known and no pixel there is trained on. Both peers return
:class:`~pipelines.formats.masks.InstanceMasks` (``labels (H, W) int32``, 0 = background).

Two ways to call them::

    masks = fit_predict_rf(image, [doc], [image, other_image], seed=0)
    detector = train("rf", labels_json)          # a pipelines Detector: api.detect(detector, img)

Only the worker part (``python benchmarks/peers.py stardist-train|stardist-predict DIR``) may
run without the project's dependencies; every project import therefore stays inside functions.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pipelines.detection.base import Detections, DetectOptions
    from pipelines.formats.labelme import Box, LabelMeDocument
    from pipelines.formats.masks import InstanceMasks
    from pipelines.progress import ProgressCallback

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PEER_NAMES = ("rf", "stardist")
PEER_PYTHON = os.environ.get("PEER_PYTHON", "/work/peer-venv/bin/python")
ILASTIK_SIGMAS = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
BACKGROUND, BOUNDARY = "background", "boundary"
_PREDICT_CHUNK_PX = 1 << 18


# ----------------------------------------------------------------------------------------------
# Shared: training pixels from crops
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class CropLabels:
    """One labelled crop: the box, its instance labels (crop-local) and instance classes.

    ``labels``: ``(h, w) int32`` 0 = background; ``class_ids[k - 1]``: 1-based class index.
    """

    image_index: int
    box: Box
    labels: np.ndarray
    class_ids: np.ndarray


def collect_crops(
    images: Sequence[np.ndarray], docs: Sequence[LabelMeDocument]
) -> tuple[list[CropLabels], list[str]]:
    """Rasterise every document's objects and cut them to its crops (class list shared)."""
    from pipelines.errors import InvalidLabels
    from pipelines.formats.masks import shapes_to_instances

    if len(images) != len(docs):
        raise InvalidLabels(f"got {len(images)} images for {len(docs)} LabelMe documents")
    class_names = sorted({name for doc in docs for name in doc.class_names()})
    if not class_names:
        raise InvalidLabels("the labels hold no outlined object; outline objects inside crops")
    crops: list[CropLabels] = []
    for index, (image, doc) in enumerate(zip(images, docs, strict=True)):
        height, width = image.shape
        instances = shapes_to_instances(doc.object_shapes, height, width, class_names)
        for box in doc.labelled_boxes():
            window = instances.labels[box.slices()]
            ids = np.unique(window)
            ids = ids[ids > 0]
            lookup = np.zeros(instances.count + 1, dtype=np.int32)
            lookup[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
            crops.append(
                CropLabels(
                    image_index=index,
                    box=box,
                    labels=lookup[window],
                    class_ids=np.asarray(instances.class_ids)[ids - 1].astype(np.int32),
                )
            )
    return crops, class_names


def touching_boundary(labels: np.ndarray) -> np.ndarray:
    """``bool`` pixels of an object with a different object among their 8 neighbours."""
    from scipy import ndimage

    big = np.iinfo(np.int32).max
    largest = ndimage.maximum_filter(labels, size=3)
    smallest = ndimage.minimum_filter(np.where(labels > 0, labels, big), size=3)
    return (labels > 0) & ((largest != labels) | ((smallest != labels) & (smallest != big)))


def _image_list(image: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(image, np.ndarray) and image.ndim == 2:
        return [image]
    return [np.asarray(item) for item in image]


# ----------------------------------------------------------------------------------------------
# ilastik-style random forest
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomForestConfig:
    """Settings of the ilastik-style peer (ilastik's defaults where it has one).

    ``samples_per_class``: labelled pixels drawn per pixel class from the crops (all of them
    when fewer). The ``*_grid`` values are searched per object class on the crops.
    """

    sigmas: tuple[float, ...] = ILASTIK_SIGMAS
    trees: int = 100
    tuning_trees: int = 40
    samples_per_class: int = 20000
    boundary_class: bool = True
    threshold_grid: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    h_grid_px: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.5)
    min_area_fraction_grid: tuple[float, ...] = (0.0, 0.25, 0.5)
    n_jobs: int = 2
    seed: int = 0


@dataclass(frozen=True)
class SplitParams:
    """Post-processing of one object class, chosen on the crops."""

    threshold: float = 0.5
    h_px: float = 1.0
    min_area_px: float = 0.0
    crop_f1: float | None = None
    tuned_on: str = "default"


def ilastik_features(image: np.ndarray, sigmas: Sequence[float] = ILASTIK_SIGMAS) -> np.ndarray:
    """ilastik's pixel features of a normalised ``(H, W)`` image: ``(H, W, F) float32``.

    Gaussian smoothing at every σ; at σ ≥ 0.7 (ilastik offers the others from 0.7 on) also the
    Laplacian of Gaussian, gradient magnitude, difference of Gaussians (σ − 0.66σ), the two
    structure-tensor eigenvalues (inner scale σ, outer σ/2, as ilastik) and the two
    Hessian-of-Gaussian eigenvalues, larger first. 49 features with the default scales.
    Derivative kernels are made as vigra (ilastik's filter library) makes them, see
    :func:`gaussian_kernel`.
    """
    image = np.asarray(image, dtype=np.float32)
    features: list[np.ndarray] = []
    for sigma in sigmas:
        smooth = gaussian(image, sigma)
        features.append(smooth)
        if sigma < 0.7:
            continue
        d_row, d_col = gaussian(image, sigma, (1, 0)), gaussian(image, sigma, (0, 1))
        h_rr = gaussian(image, sigma, (2, 0))
        h_cc = gaussian(image, sigma, (0, 2))
        h_rc = gaussian(image, sigma, (1, 1))
        features.append(h_rr + h_cc)  # Laplacian of Gaussian
        features.append(np.hypot(d_row, d_col))
        features.append(smooth - gaussian(image, 0.66 * sigma))
        outer = 0.5 * sigma
        t_rr = gaussian(d_row * d_row, outer)
        t_cc = gaussian(d_col * d_col, outer)
        t_rc = gaussian(d_row * d_col, outer)
        features.extend(_symmetric_eigenvalues(t_rr, t_cc, t_rc))
        features.extend(_symmetric_eigenvalues(h_rr, h_cc, h_rc))
    return np.stack(features, axis=-1)


def gaussian_kernel(sigma: float, order: int) -> np.ndarray:
    """1-D correlation kernel of the ``order``-th Gaussian derivative, vigra style.

    Radius ``(3 + order/2)·σ``; derivative kernels lose their DC part and are scaled so that
    ``Σ k[x]·x^order/order! = 1``, which makes them exact on polynomials of that degree.
    (scipy's sampled kernels are not: at σ = 0.7 its second derivative of ``x²`` has the wrong
    sign.)
    """
    radius = max(1, int((3.0 + 0.5 * order) * sigma + 0.5))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    if order == 0:
        return g / g.sum()
    if order == 1:
        kernel = x / sigma**2 * g  # g'(-x): correlation form
    elif order == 2:
        kernel = (x**2 / sigma**4 - 1.0 / sigma**2) * g
        kernel -= kernel.mean()
    else:
        raise ValueError(f"derivative order {order} is not supported")
    return kernel / np.sum(kernel * x**order / math.factorial(order))


def gaussian(image: np.ndarray, sigma: float, order: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Separable Gaussian (derivative) filter of a ``(H, W)`` image, mirrored borders."""
    from scipy import ndimage

    out = ndimage.correlate1d(image, gaussian_kernel(sigma, order[0]), axis=0, mode="mirror")
    return ndimage.correlate1d(out, gaussian_kernel(sigma, order[1]), axis=1, mode="mirror")


def _symmetric_eigenvalues(a: np.ndarray, c: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    """Eigenvalues of ``[[a, b], [b, c]]`` per pixel, larger first."""
    mean = 0.5 * (a + c)
    radius = np.sqrt(0.25 * (a - c) ** 2 + b * b)
    return [mean + radius, mean - radius]


def _pixel_classes(crop: CropLabels, n_object_classes: int, boundary: bool) -> np.ndarray:
    """Pixel class per crop pixel: 0 background, 1..n object classes, n + 1 boundary."""
    classes = np.zeros(crop.labels.shape, dtype=np.int32)
    inside = crop.labels > 0
    classes[inside] = crop.class_ids[crop.labels[inside] - 1]
    if boundary:
        classes[touching_boundary(crop.labels)] = n_object_classes + 1
    return classes


def _training_samples(
    features: list[np.ndarray],
    crops: Sequence[CropLabels],
    n_object_classes: int,
    config: RandomForestConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``samples_per_class`` crop pixels per pixel class: ``(N, F)`` and ``(N,)``."""
    rows: dict[int, list[np.ndarray]] = {}
    for crop in crops:
        classes = _pixel_classes(crop, n_object_classes, config.boundary_class)
        window = features[crop.image_index][crop.box.slices()]
        for value in np.unique(classes):
            rows.setdefault(int(value), []).append(window[classes == value])
    x_parts, y_parts = [], []
    for value, parts in sorted(rows.items()):
        pixels = np.concatenate(parts)
        if pixels.shape[0] > config.samples_per_class:
            pixels = pixels[rng.choice(pixels.shape[0], config.samples_per_class, replace=False)]
        x_parts.append(pixels)
        y_parts.append(np.full(pixels.shape[0], value, dtype=np.int32))
    return np.concatenate(x_parts), np.concatenate(y_parts)


def _forest(trees: int, config: RandomForestConfig, seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=trees, n_jobs=config.n_jobs, random_state=seed, max_features="sqrt"
    )


def _probabilities(forest: Any, features: np.ndarray, n_pixel_classes: int) -> np.ndarray:
    """``(H, W, n_pixel_classes) float32``; classes the forest never saw get probability 0."""
    height, width, n_features = features.shape
    flat = features.reshape(-1, n_features)
    out = np.zeros((flat.shape[0], n_pixel_classes), dtype=np.float32)
    columns = np.asarray(forest.classes_, dtype=np.intp)
    for start in range(0, flat.shape[0], _PREDICT_CHUNK_PX):
        stop = min(start + _PREDICT_CHUNK_PX, flat.shape[0])
        out[start:stop, columns] = forest.predict_proba(flat[start:stop])
    return out.reshape(height, width, n_pixel_classes)


def split_class(
    probabilities: np.ndarray, class_index: int, n_object_classes: int, params: SplitParams
) -> tuple[np.ndarray, np.ndarray]:
    """Instances of one object class from pixel probabilities: labels and mean probability.

    ``probabilities``: ``(H, W, C)`` with 0 = background, 1..n object classes, n + 1 boundary
    (when present). The core is where this class is the likeliest object class and above the
    threshold; markers are h-maxima of its (slightly smoothed) distance transform; the
    watershed then also floods the boundary pixels this class owns, so touching objects keep
    their full size.
    """
    from scipy import ndimage
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    objects = probabilities[..., 1 : n_object_classes + 1]
    this = probabilities[..., class_index]
    core = (this > params.threshold) & (this >= objects.max(axis=-1))
    if not core.any():
        return np.zeros(this.shape, dtype=np.int32), np.zeros(0, dtype=np.float32)
    region = core
    if probabilities.shape[-1] > n_object_classes + 1:
        boundary = probabilities[..., n_object_classes + 1]
        flooded = (this + boundary > params.threshold) & (boundary > this)
        region = core | (flooded & ndimage.binary_dilation(core, iterations=2))
    distance = ndimage.gaussian_filter(ndimage.distance_transform_edt(core), 0.5)
    markers, _ = ndimage.label(h_maxima(distance, params.h_px) & core)
    labels = watershed(-distance, markers, mask=region).astype(np.int32)
    areas = np.bincount(labels.ravel())
    keep = areas >= max(1.0, params.min_area_px)
    keep[0] = False
    lookup = np.zeros(areas.size, dtype=np.int32)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    labels = lookup[labels]
    count = int(keep.sum())
    sums = np.bincount(labels.ravel(), weights=this.ravel(), minlength=count + 1)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    scores = (sums[1:] / np.maximum(sizes[1:], 1)).astype(np.float32)
    return labels, scores


def merge_classes(
    per_class: Sequence[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str]
) -> tuple[InstanceMasks, np.ndarray]:
    """One :class:`InstanceMasks` from per-class label images (cores never overlap)."""
    from pipelines.formats.masks import InstanceMasks

    shape = per_class[0][0].shape
    labels = np.zeros(shape, dtype=np.int32)
    class_ids: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    offset = 0
    for class_index, (class_labels, class_scores) in enumerate(per_class, start=1):
        count = class_scores.size
        free = (class_labels > 0) & (labels == 0)
        labels[free] = class_labels[free] + offset
        class_ids.append(np.full(count, class_index, dtype=np.int32))
        scores.append(class_scores)
        offset += count
    return (
        InstanceMasks(
            labels=labels,
            class_ids=np.concatenate(class_ids) if class_ids else np.zeros(0, np.int32),
            class_names=list(class_names),
        ),
        np.concatenate(scores) if scores else np.zeros(0, np.float32),
    )


def _crop_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, float]:
    """``(tp, fp, fn, sum of |D error| over matches)`` at IoU 0.5, one class's label images."""
    from pipelines.evaluation import greedy_matches, overlap_table

    overlaps = overlap_table(truth, pred)
    kept = greedy_matches(overlaps.truth_ids, overlaps.pred_ids, overlaps.iou, 0.5)
    n_truth = np.count_nonzero(np.bincount(truth.ravel())[1:])
    n_pred = np.count_nonzero(np.bincount(pred.ravel())[1:])
    ratio = np.sqrt(
        overlaps.pred_area_px[overlaps.pred_ids[kept]]
        / overlaps.truth_area_px[overlaps.truth_ids[kept]]
    )
    return kept.size, n_pred - kept.size, n_truth - kept.size, float(np.abs(ratio - 1).sum())


def _tune_class(
    maps: Sequence[tuple[np.ndarray, CropLabels]],
    class_index: int,
    n_object_classes: int,
    median_area_px: float,
    config: RandomForestConfig,
    tuned_on: str,
) -> SplitParams:
    """Grid-search threshold, h and minimum area for one class on crop probability maps.

    F1 at IoU 0.5 decides (to 0.01); ties go to the smaller mean |D error|, then to values
    near the middle of each grid (threshold 0.5, h 1 px, a quarter of the median area).
    """
    truths = []
    for _, crop in maps:
        same = crop.class_ids[np.maximum(crop.labels, 1) - 1] == class_index
        truths.append(np.where((crop.labels > 0) & same, crop.labels, 0).astype(np.int32))
    best: tuple[tuple[float, ...], SplitParams] | None = None
    for threshold in config.threshold_grid:
        for h_px in config.h_grid_px:
            trial = SplitParams(threshold=threshold, h_px=h_px)
            split = [split_class(probs, class_index, n_object_classes, trial) for probs, _ in maps]
            for fraction in config.min_area_fraction_grid:
                min_area = fraction * median_area_px
                tp = fp = fn = 0
                d_error = 0.0
                for (labels, _), truth in zip(split, truths, strict=True):
                    areas = np.bincount(labels.ravel())
                    lookup = np.where(areas >= max(1.0, min_area), np.arange(areas.size), 0)
                    lookup[0] = 0
                    counts = _crop_counts(lookup[labels].astype(np.int32), truth)
                    tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
                    d_error += counts[3]
                f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
                key = (
                    round(f1, 2),
                    -d_error / max(tp, 1),
                    -abs(threshold - 0.5),
                    -abs(h_px - 1.0),
                    -abs(fraction - 0.25),
                )
                if best is None or key > best[0]:
                    best = (key, SplitParams(threshold, h_px, min_area, round(f1, 4), tuned_on))
    assert best is not None
    return best[1]


@dataclass(eq=False)
class RandomForestPeer:
    """A trained ilastik-style pixel classifier with its per-class post-processing."""

    forest: Any
    class_names: list[str]
    config: RandomForestConfig
    split: dict[str, SplitParams]
    intensity_limits: list[tuple[float, float]]
    has_boundary: bool
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def n_pixel_classes(self) -> int:
        return len(self.class_names) + 1 + int(self.has_boundary)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """``(H, W, C) float32`` pixel class probabilities of a raw ``(H, W)`` image."""
        features = ilastik_features(_normalise(image), self.config.sigmas)
        return _probabilities(self.forest, features, self.n_pixel_classes)

    def predict(self, image: np.ndarray) -> tuple[InstanceMasks, np.ndarray]:
        """Instances in a raw ``(H, W)`` image and one score (mean probability) each."""
        probabilities = self.probabilities(image)
        n = len(self.class_names)
        per_class = [
            split_class(probabilities, index, n, self.split[name])
            for index, name in enumerate(self.class_names, start=1)
        ]
        return merge_classes(per_class, self.class_names)


def _normalise(image: np.ndarray) -> np.ndarray:
    from pipelines.detection.data import normalise

    return normalise(np.asarray(image))


def fit_rf(
    images: np.ndarray | Sequence[np.ndarray],
    docs: Sequence[LabelMeDocument],
    config: RandomForestConfig | None = None,
) -> RandomForestPeer:
    """Train the ilastik-style peer on the crops of ``docs`` (one document per image)."""
    config = config or RandomForestConfig()
    images = _image_list(images)
    started = time.perf_counter()
    crops, class_names = collect_crops(images, docs)
    n = len(class_names)
    features = [ilastik_features(_normalise(image), config.sigmas) for image in images]
    features_s = time.perf_counter() - started
    has_boundary = config.boundary_class and any(touching_boundary(c.labels).any() for c in crops)
    run_config = config if has_boundary else _replace(config, boundary_class=False)
    n_pixel_classes = n + 1 + int(has_boundary)
    rng = np.random.default_rng(config.seed)

    tune_started = time.perf_counter()
    held_out: dict[int, list[tuple[np.ndarray, CropLabels]]] = {i: [] for i in range(1, n + 1)}
    if len(crops) > 1:
        for index, crop in enumerate(crops):
            others = [c for j, c in enumerate(crops) if j != index]
            x, y = _training_samples(features, others, n, run_config, rng)
            forest = _forest(config.tuning_trees, config, config.seed + 1 + index).fit(x, y)
            window = features[crop.image_index][crop.box.slices()]
            probs = _probabilities(forest, window, n_pixel_classes)
            for class_index in range(1, n + 1):
                if class_index in forest.classes_ and class_index in crop.class_ids:
                    held_out[class_index].append((probs, crop))
    tuning_s = time.perf_counter() - tune_started

    fit_started = time.perf_counter()
    x, y = _training_samples(features, crops, n, run_config, rng)
    forest = _forest(config.trees, config, config.seed).fit(x, y)
    fit_s = time.perf_counter() - fit_started

    split: dict[str, SplitParams] = {}
    for class_index, name in enumerate(class_names, start=1):
        areas = np.concatenate(
            [np.bincount(c.labels.ravel())[1:][c.class_ids == class_index] for c in crops]
        )
        median_area = float(np.median(areas)) if areas.size else 1.0
        maps, tuned_on = held_out[class_index], "leave-one-crop-out"
        if not maps:  # the class is in one crop only: tune on the final forest's own crops
            maps = [
                (
                    _probabilities(
                        forest, features[c.image_index][c.box.slices()], n_pixel_classes
                    ),
                    c,
                )
                for c in crops
                if class_index in c.class_ids
            ]
            tuned_on = "training crops (class in one crop only)"
        split[name] = _tune_class(maps, class_index, n, median_area, config, tuned_on)
    tuning_s += time.perf_counter() - fit_started - fit_s
    from pipelines.detection.data import intensity_limits

    return RandomForestPeer(
        forest=forest,
        class_names=class_names,
        config=config,
        split=split,
        intensity_limits=[intensity_limits(image) for image in images],
        has_boundary=has_boundary,
        timings_s={
            "features": round(features_s, 2),
            "tune": round(tuning_s, 2),
            "fit": round(fit_s, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    )


def _replace(config: RandomForestConfig, **changes: Any) -> RandomForestConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


def fit_predict_rf(
    image: np.ndarray | Sequence[np.ndarray],
    train_docs: Sequence[LabelMeDocument],
    predict_images: Sequence[np.ndarray],
    seed: int = 0,
    time_budget_s: float | None = None,
    config: RandomForestConfig | None = None,
) -> list[InstanceMasks]:
    """Train the ilastik-style peer on the crops and segment every image in ``predict_images``.

    ``image``: the training image (or one per document). ``time_budget_s`` is unused: a forest
    has no iterative training and fits in seconds.
    """
    del time_budget_s
    config = _replace(config or RandomForestConfig(), seed=seed)
    peer = fit_rf(image, train_docs, config)
    return [peer.predict(item)[0] for item in predict_images]


# ----------------------------------------------------------------------------------------------
# StarDist (TensorFlow, in a separate interpreter)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StarDistConfig:
    """Settings of the StarDist peer. ``grid`` ``None`` picks (1, 1) for objects under 8 px
    (single atoms) and (2, 2) otherwise; ``patch_px`` is capped by the smallest crop."""

    n_rays: int = 32
    grid: tuple[int, int] | None = None
    patch_px: int = 128
    batch_size: int = 4
    unet_filters: int = 32
    train_seconds: float = 240.0
    steps_per_epoch: int = 25
    learning_rate: float = 3e-4
    threads: int = 2
    seed: int = 0


@dataclass(eq=False)
class StarDistPeer:
    """A trained StarDist model folder, used through the worker interpreter."""

    model_dir: Path
    class_names: list[str]
    config: StarDistConfig
    info: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)

    def predict(self, image: np.ndarray) -> tuple[InstanceMasks, np.ndarray]:
        """Instances in a raw ``(H, W)`` image and StarDist's probability per instance."""
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[np.ndarray]) -> list[tuple[InstanceMasks, np.ndarray]]:
        """Several images in one worker call (TensorFlow starts once)."""
        from pipelines.formats.masks import InstanceMasks

        with tempfile.TemporaryDirectory(prefix="stardist-predict-") as folder:
            work = Path(folder)
            for index, image in enumerate(images):
                np.save(work / f"image{index}.npy", _normalise(image))
            request = {"model_dir": str(self.model_dir), "count": len(images)}
            (work / "request.json").write_text(json.dumps(request))
            _run_worker("stardist-predict", work, self.config.threads)
            reply = json.loads((work / "reply.json").read_text())
            results = []
            for index in range(len(images)):
                labels = np.load(work / f"labels{index}.npy").astype(np.int32)
                item = reply["images"][index]
                class_ids = np.asarray(item["class_ids"], dtype=np.int32)
                scores = np.asarray(item["scores"], dtype=np.float32)
                masks = InstanceMasks(
                    labels=labels, class_ids=class_ids, class_names=self.class_names
                )
                results.append((masks, scores))
            self.timings_s["last_predict_worker"] = reply["seconds"]
            return results


def stardist_available() -> str | None:
    """``None`` when the StarDist interpreter works, else why not (one line)."""
    if not Path(PEER_PYTHON).is_file():
        return f"no StarDist interpreter at {PEER_PYTHON} (set PEER_PYTHON)"
    done = subprocess.run(
        [PEER_PYTHON, "-c", "import stardist, tensorflow"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["import failed"])[-1]
    return None


def _run_worker(mode: str, work: Path, threads: int) -> None:
    from pipelines.errors import ModelError

    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        TF_NUM_INTRAOP_THREADS=str(threads),
        TF_NUM_INTEROP_THREADS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH="",
    )
    done = subprocess.run(
        [PEER_PYTHON, str(Path(__file__).resolve()), mode, str(work)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    (work / "worker.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ModelError(f"StarDist worker '{mode}' failed (exit {done.returncode}):\n{tail}")


def fit_stardist(
    images: np.ndarray | Sequence[np.ndarray],
    docs: Sequence[LabelMeDocument],
    model_dir: Path,
    config: StarDistConfig | None = None,
) -> StarDistPeer:
    """Train StarDist2D from scratch on the crops (each crop is one training image)."""
    config = config or StarDistConfig()
    images = _image_list(images)
    started = time.perf_counter()
    crops, class_names = collect_crops(images, docs)
    normalised = [_normalise(image) for image in images]
    areas = np.concatenate([np.bincount(c.labels.ravel())[1:] for c in crops])
    median_diameter_px = float(2 * np.sqrt(np.median(areas) / np.pi))
    grid = config.grid or ((1, 1) if median_diameter_px < 8 else (2, 2))
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stardist-train-") as folder:
        work = Path(folder)
        for index, crop in enumerate(crops):
            np.save(work / f"x{index}.npy", normalised[crop.image_index][crop.box.slices()])
            np.save(work / f"y{index}.npy", crop.labels)
            np.save(work / f"c{index}.npy", crop.class_ids)
        request = {
            "config": asdict(config),
            "grid": list(grid),
            "crops": len(crops),
            "n_classes": len(class_names) if len(class_names) > 1 else None,
            "model_dir": str(model_dir),
        }
        (work / "request.json").write_text(json.dumps(request))
        _run_worker("stardist-train", work, config.threads)
        info = json.loads((work / "reply.json").read_text())
    info["median_diameter_px"] = round(median_diameter_px, 2)
    return StarDistPeer(
        model_dir=model_dir,
        class_names=class_names,
        config=config,
        info=info,
        timings_s={"total": round(time.perf_counter() - started, 2)},
    )


def fit_predict_stardist(
    image: np.ndarray | Sequence[np.ndarray],
    train_docs: Sequence[LabelMeDocument],
    predict_images: Sequence[np.ndarray],
    seed: int = 0,
    time_budget_s: float | None = None,
    config: StarDistConfig | None = None,
) -> list[InstanceMasks]:
    """Train StarDist on the crops and segment every image (``time_budget_s``: training only)."""
    config = config or StarDistConfig()
    changes: dict[str, Any] = {"seed": seed}
    if time_budget_s is not None:
        changes["train_seconds"] = float(time_budget_s)
    import dataclasses

    config = dataclasses.replace(config, **changes)
    with tempfile.TemporaryDirectory(prefix="stardist-model-") as folder:
        peer = fit_stardist(image, train_docs, Path(folder), config)
        return [masks for masks, _ in peer.predict_many(predict_images)]


# ----------------------------------------------------------------------------------------------
# Detector adapter, so benchmarks/detection.py can treat a peer like one of our engines
# ----------------------------------------------------------------------------------------------


def train(
    engine: str,
    labels: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    seed: int = 0,
    time_budget_s: float | None = None,
    model_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Train peer ``engine`` (``rf`` or ``stardist``) on LabelMe file(s); returns a Detector.

    The result works with ``pipelines.detection.api.detect(detector, image)``.
    """
    from pipelines.detection.base import Detector
    from pipelines.detection.data import read_image
    from pipelines.errors import InvalidInput
    from pipelines.formats.labelme import read_labelme, resolve_image_path

    if engine not in PEER_NAMES:
        raise InvalidInput(f"unknown peer '{engine}'; choose one of: {', '.join(PEER_NAMES)}")
    paths = [Path(labels)] if isinstance(labels, str | os.PathLike) else [Path(p) for p in labels]
    docs = [read_labelme(path) for path in paths]
    images = [
        read_image(resolve_image_path(doc, path)).pixels
        for doc, path in zip(docs, paths, strict=True)
    ]
    if engine == "rf":
        peer: Any = fit_rf(images, docs, RandomForestConfig(seed=seed))
    else:
        config = StarDistConfig(seed=seed)
        if time_budget_s is not None:
            config = StarDistConfig(seed=seed, train_seconds=float(time_budget_s))
        folder = Path(model_dir) if model_dir else Path(tempfile.mkdtemp(prefix="stardist-peer-"))
        peer = fit_stardist(images, docs, folder, config)

    class PeerDetector(Detector):
        """A peer behind the Detector interface (not saved as a pipelines model artifact)."""

        def __init__(self) -> None:
            super().__init__(peer.config, peer.class_names)
            self.engine = engine
            self.peer = peer

        def detect(
            self,
            image: np.ndarray,
            options: DetectOptions | None = None,
            progress: ProgressCallback | None = None,
        ) -> Detections:
            from pipelines.detection.base import Detections

            started = time.perf_counter()
            instances, scores = self.peer.predict(np.asarray(image))
            return Detections(
                instances=instances,
                scores=scores,
                timings_s={"total": time.perf_counter() - started},
            )

    return PeerDetector()


# ----------------------------------------------------------------------------------------------
# Worker (runs under PEER_PYTHON: numpy, TensorFlow, StarDist only; no project imports)
# ----------------------------------------------------------------------------------------------


def _worker_setup(threads: int, seed: int) -> Any:
    import random

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    return tf


def _worker_augmenter(seed: int) -> Any:
    rng = np.random.default_rng(seed)

    def augment(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        turns = int(rng.integers(4))
        x, y = np.rot90(x, turns), np.rot90(y, turns)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        scale, offset = rng.uniform(0.6, 1.5), rng.uniform(-0.3, 0.3)
        rows, cols = np.mgrid[0 : x.shape[0], 0 : x.shape[1]].astype(np.float32)
        slope = rng.uniform(-0.3, 0.3, size=2) / max(x.shape)
        gradient = slope[0] * rows + slope[1] * cols
        noise = rng.normal(0.0, rng.uniform(0.0, 0.05), size=x.shape)
        x = x * scale + offset + gradient + noise
        return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)

    return augment


def _worker_train(work: Path) -> None:
    request = json.loads((work / "request.json").read_text())
    config = request["config"]
    _worker_setup(config["threads"], config["seed"])
    from csbdeep.utils.tf import keras_import
    from stardist.models import Config2D, StarDist2D

    callback_base = keras_import("callbacks", "Callback")

    started = time.perf_counter()
    xs = [np.load(work / f"x{i}.npy").astype(np.float32) for i in range(request["crops"])]
    ys = [np.load(work / f"y{i}.npy").astype(np.int32) for i in range(request["crops"])]
    cls = [np.load(work / f"c{i}.npy") for i in range(request["crops"])]
    factor = 16
    smallest = min(min(x.shape) for x in xs)
    patch = max(factor * 2, min(config["patch_px"], smallest // factor * factor))
    keep = [i for i, x in enumerate(xs) if min(x.shape) >= patch]
    xs, ys, cls = [xs[i] for i in keep], [ys[i] for i in keep], [cls[i] for i in keep]
    n_classes = request["n_classes"]
    classes = [{int(k + 1): int(c) for k, c in enumerate(ids)} for ids in cls]
    conf = Config2D(
        n_rays=config["n_rays"],
        grid=tuple(request["grid"]),
        n_channel_in=1,
        n_classes=n_classes,
        train_patch_size=(patch, patch),
        train_batch_size=config["batch_size"],
        unet_n_filter_base=config["unet_filters"],
        train_learning_rate=config["learning_rate"],
        train_epochs=100000,
        train_steps_per_epoch=config["steps_per_epoch"],
        use_gpu=False,
        train_tensorboard=False,
    )
    model_dir = Path(request["model_dir"])
    model = StarDist2D(conf, name="stardist", basedir=str(model_dir))
    deadline = time.perf_counter() + config["train_seconds"]

    class StopAtDeadline(callback_base):  # type: ignore[misc, valid-type]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if time.perf_counter() > deadline:
                self.model.stop_training = True

    model.prepare_for_training()
    model.callbacks.append(StopAtDeadline())
    extra: dict[str, Any] = {"classes": classes} if n_classes else {}
    fit_started = time.perf_counter()
    history = model.train(
        xs,
        ys,
        validation_data=(xs, ys, classes) if n_classes else (xs, ys),
        augmenter=_worker_augmenter(config["seed"]),
        epochs=100000,
        steps_per_epoch=config["steps_per_epoch"],
        **extra,
    )
    fit_s = time.perf_counter() - fit_started
    epochs = len(history.history.get("loss", []))
    tune_started = time.perf_counter()
    thresholds = model.optimize_thresholds(xs, ys)
    reply = {
        "train_s": round(fit_s, 1),
        "optimize_thresholds_s": round(time.perf_counter() - tune_started, 1),
        "epochs": epochs,
        "steps": epochs * config["steps_per_epoch"],
        "final_loss": float(history.history["loss"][-1]) if epochs else None,
        "patch_px": patch,
        "grid": request["grid"],
        "crops_used": len(xs),
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "worker_s": round(time.perf_counter() - started, 1),
    }
    (work / "reply.json").write_text(json.dumps(reply))


def _worker_predict(work: Path) -> None:
    request = json.loads((work / "request.json").read_text())
    config_path = Path(request["model_dir"]) / "stardist" / "config.json"
    threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "2"))
    _worker_setup(threads, 0)
    from stardist.models import StarDist2D

    started = time.perf_counter()
    model = StarDist2D(None, name="stardist", basedir=str(config_path.parent.parent))
    n_classes = model.config.n_classes
    images = []
    for index in range(request["count"]):
        x = np.load(work / f"image{index}.npy").astype(np.float32)
        image_started = time.perf_counter()
        big = x.size > 2048 * 2048
        if big:
            labels, details = model.predict_instances_big(
                x, axes="YX", block_size=1024, min_overlap=96, context=64, show_progress=False
            )
        else:
            tiles = (math.ceil(x.shape[0] / 1024), math.ceil(x.shape[1] / 1024))
            labels, details = model.predict_instances(x, n_tiles=tiles, show_tile_progress=False)
        count = int(labels.max())
        if n_classes:
            class_ids = [int(c) for c in details["class_id"]]
        else:
            class_ids = [1] * len(details["prob"])
        scores = [float(p) for p in details["prob"]]
        # StarDist numbers instances 1..n in the order of ``details``; drop ids painted over.
        present = np.zeros(len(scores) + 1, dtype=bool)
        present[np.unique(labels)] = True
        lookup = np.zeros(len(scores) + 1, dtype=np.int32)
        kept = np.flatnonzero(present[1:]) + 1
        lookup[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
        np.save(work / f"labels{index}.npy", lookup[labels])
        images.append(
            {
                "class_ids": [class_ids[k - 1] for k in kept],
                "scores": [scores[k - 1] for k in kept],
                "count": count,
                "seconds": round(time.perf_counter() - image_started, 2),
            }
        )
    reply = {"images": images, "seconds": round(time.perf_counter() - started, 2)}
    (work / "reply.json").write_text(json.dumps(reply))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("stardist-train", "stardist-predict"):
        sys.exit("usage: peers.py stardist-train|stardist-predict WORK_DIR")
    logging.basicConfig(level=logging.INFO)
    if sys.argv[1] == "stardist-train":
        _worker_train(Path(sys.argv[2]))
    else:
        _worker_predict(Path(sys.argv[2]))
