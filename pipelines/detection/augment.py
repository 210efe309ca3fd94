"""Training patches from labelled crops, with augmentations suited to microscopy.

Each augmentation maps ``(image, target) -> (image, target)`` so masks move with pixels (the
torchvision references' convention): flips, 90° rotations and a small scale jitter act on both;
intensity changes (gamma, contrast, offset, a linear background gradient, noise) on the image
only. The gradient and offset are what let two crops generalise over an uneven support.
Objects of a class with few labelled examples also get a contrast of their own against the
local background, so one bright example stands for dim ones too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.detection.data import TrainingSet, centre_distance, normalise


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentations (``scale`` is a zoom factor range, 1 = none)."""

    flips: bool = True
    rotations: bool = True
    # Zooming out further (0.5) teaches small particles from large ones: on ``sizes`` (4-60 px)
    # recall rose 0.84 -> 0.88 but precision fell 0.97 -> 0.86, since single atoms, unlabelled
    # and as bright as a 5-px particle, then pass for particles; on ``particles`` F1 fell by up
    # to 0.01.
    scale_range: tuple[float, float] = (0.85, 1.18)
    scale_probability: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.4)
    contrast_range: tuple[float, float] = (0.6, 1.5)
    offset_range: tuple[float, float] = (-0.3, 0.3)
    gradient_max: float = 0.3
    noise_sigma_max: float = 0.08
    blur_probability: float = 0.2
    object_centred_fraction: float = 0.5
    # Objects of a class with few labelled examples (``TrainingSet.few_examples``) get their own
    # contrast against the local background, so one bright labelled particle also stands for
    # the dim ones (thinner, lighter, out of focus) that real images hold beside it. On the
    # synthetic ``particles+sites`` (1-2 labelled particles) it was neutral: particle F1 0.916
    # with it and 0.912 without, single sites 0.876 and 0.881, over 8 images each (4 training
    # runs). Applied to the 40 examples of ``particles`` it cost 0.2 % diameter error, so
    # classes with many examples, whose labels already show the brightness range, are left
    # as they are.
    object_contrast_range: tuple[float, float] = (0.5, 1.2)
    object_contrast_probability: float = 0.5


@dataclass(eq=False)
class Patch:
    """One training sample: ``image (P, P) float32``; targets of the same size."""

    image: np.ndarray
    classes: np.ndarray  # int64, 0 = background, k = class k
    centre: np.ndarray  # float32 in [0, 1]
    valid: np.ndarray  # bool: inside a labelled box
    instances: np.ndarray  # int32 instance ids (0 = none), for instance-level engines


@dataclass(eq=False)
class _Prepared:
    image: np.ndarray
    classes: np.ndarray
    centre: np.ndarray
    valid: np.ndarray
    instances: np.ndarray
    boxes: list[tuple[int, int, int, int]]  # (top, left, bottom, right) after padding
    few_examples: np.ndarray  # bool by instance id (0 unused): its class has few examples


class PatchSampler:
    """Random patches centred inside the labelled boxes (context outside them is kept).

    Images are normalised once (with ``invert`` for dark objects) and padded by one patch so a
    window near the border needs no special case; padded pixels are never ``valid``.
    """

    def __init__(
        self,
        data: TrainingSet,
        patch_px: int,
        invert: bool,
        augment: AugmentConfig,
        seed: int = 0,
    ) -> None:
        self.patch_px = patch_px
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.pad = math.ceil(patch_px * max(augment.scale_range)) + 2
        self.items: list[_Prepared] = []
        weights = []
        rare_classes = np.array([False, *data.few_examples()])
        for item in data.images:
            ids = item.instances_in_boxes()
            labels = item.instances.labels
            lookup = np.zeros(item.instances.count + 1, dtype=np.uint8)
            lookup[1:] = item.instances.class_ids
            classes = lookup[labels]
            centre = centre_distance(labels, ids)
            image = normalise(item.pixels, invert)
            valid = item.valid_mask()
            pad = self.pad
            prepared = _Prepared(
                image=np.pad(image, pad, mode="reflect"),
                classes=np.pad(classes, pad),
                centre=np.pad(centre, pad),
                valid=np.pad(valid, pad),
                instances=np.pad(labels, pad),
                boxes=[
                    (b.top + pad, b.left + pad, b.bottom + pad, b.right + pad) for b in item.boxes
                ],
                few_examples=np.concatenate(
                    [[False], rare_classes[np.asarray(item.instances.class_ids, dtype=np.int64)]]
                ),
            )
            self.items.append(prepared)
            for box in item.boxes:
                weights.append(
                    (
                        len(self.items) - 1,
                        box.top + pad,
                        box.left + pad,
                        box.bottom + pad,
                        box.right + pad,
                        box.area_px,
                    )
                )
        areas = np.array([w[-1] for w in weights], dtype=np.float64)
        # Small crops still get sampled: weight by sqrt(area) rather than area.
        self._boxes = weights
        self._box_p = np.sqrt(areas) / np.sqrt(areas).sum()
        # Labelled objects by class, for foreground oversampling: sparse objects (single atoms)
        # and rare classes (one particle) would otherwise hardly appear in a batch.
        self._objects: dict[int, list[tuple[int, int, int]]] = {}
        for item_index, item in enumerate(data.images):
            ids = item.instances_in_boxes()
            if ids.size == 0:
                continue
            centres = ndimage.center_of_mass(
                np.ones(item.instances.labels.shape), item.instances.labels, ids
            )
            for instance, (row, col) in zip(ids, centres, strict=True):
                class_id = int(item.instances.class_ids[instance - 1])
                self._objects.setdefault(class_id, []).append(
                    (item_index, int(row) + self.pad, int(col) + self.pad)
                )

    def _centre(self) -> tuple[int, int, int]:
        """Item index and patch centre: on a labelled object of a random class, or anywhere
        in a labelled box.

        Objects of a class are equally likely. Favouring the small ones (weight ~ 1/D) found few
        more small particles on ``sizes`` but took more atoms for particles (F1 0.90 -> 0.85 on
        an unseen image), and it grew diameters on ``particles`` (4.3 -> 4.6 %).
        """
        rng = self.rng
        if self._objects and rng.random() < self.augment.object_centred_fraction:
            class_id = list(self._objects)[int(rng.integers(len(self._objects)))]
            objects = self._objects[class_id]
            item_index, row, col = objects[int(rng.integers(len(objects)))]
            jitter = self.patch_px // 4
            row += int(rng.integers(-jitter, jitter + 1))
            col += int(rng.integers(-jitter, jitter + 1))
            return item_index, row, col
        index = rng.choice(len(self._boxes), p=self._box_p)
        item_index, top, left, bottom, right, _ = self._boxes[index]
        return item_index, int(rng.integers(top, bottom)), int(rng.integers(left, right))

    def sample(self) -> Patch:
        """One augmented patch."""
        rng, augment, size = self.rng, self.augment, self.patch_px
        item_index, centre_row, centre_col = self._centre()
        item = self.items[item_index]
        zoom = 1.0
        if rng.random() < augment.scale_probability:
            low, high = augment.scale_range
            zoom = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        window = max(8, round(size / zoom))
        row0 = int(np.clip(centre_row - window // 2, 0, item.image.shape[0] - window))
        col0 = int(np.clip(centre_col - window // 2, 0, item.image.shape[1] - window))
        rows, cols = slice(row0, row0 + window), slice(col0, col0 + window)
        image = item.image[rows, cols]
        classes = item.classes[rows, cols]
        centre = item.centre[rows, cols]
        valid = item.valid[rows, cols]
        instances = item.instances[rows, cols]
        if window != size:
            factor = size / window
            image = ndimage.zoom(image, factor, order=1)[:size, :size]
            centre = ndimage.zoom(centre, factor, order=1)[:size, :size]
            classes = ndimage.zoom(classes, factor, order=0)[:size, :size]
            valid = ndimage.zoom(valid.astype(np.uint8), factor, order=0)[:size, :size] > 0
            instances = ndimage.zoom(instances, factor, order=0)[:size, :size]
            image, classes, centre, valid, instances = (
                _fit(a, size) for a in (image, classes, centre, valid, instances)
            )
        patch = Patch(
            image=np.ascontiguousarray(image, dtype=np.float32),
            classes=classes.astype(np.int64),
            centre=np.ascontiguousarray(centre, dtype=np.float32),
            valid=valid.astype(bool),
            instances=instances.astype(np.int32),
        )
        if item.few_examples.any() and rng.random() < augment.object_contrast_probability:
            patch.image = object_contrast(
                patch.image, patch.instances, patch.valid, rng, augment, item.few_examples
            )
        patch = geometric(patch, rng, augment)
        patch.image = intensity(patch.image, rng, augment)
        return patch


def _fit(array: np.ndarray, size: int) -> np.ndarray:
    """Pad (edge) or cut an array to ``size x size`` after a zoom rounded one pixel short."""
    if array.shape == (size, size):
        return array
    pad = ((0, max(0, size - array.shape[0])), (0, max(0, size - array.shape[1])))
    return np.pad(array, pad, mode="edge")[:size, :size]


def geometric(patch: Patch, rng: np.random.Generator, augment: AugmentConfig) -> Patch:
    """Random flips and 90° rotations applied to the image and every target alike."""
    arrays = [patch.image, patch.classes, patch.centre, patch.valid, patch.instances]
    if augment.flips and rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    if augment.rotations:
        turns = int(rng.integers(4))
        arrays = [np.rot90(a, turns) for a in arrays]
    image, classes, centre, valid, instances = (np.ascontiguousarray(a) for a in arrays)
    return Patch(image=image, classes=classes, centre=centre, valid=valid, instances=instances)


# Gaussian widths (px) of the local background estimate and of the gain's soft edge, which
# covers the blurred rim of the object in the image.
BACKGROUND_SIGMA_PX = 8.0
GAIN_EDGE_SIGMA_PX = 1.0
BACKGROUND_PRIOR = 1e-2  # weight of the median background in the local estimate


def object_contrast(
    image: np.ndarray,
    instances: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    augment: AugmentConfig,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Scale each labelled object's contrast against the local background by its own factor.

    ``eligible`` (bool by instance id, index 0 unused; missing ids count as not eligible)
    limits it to some objects. The background is a normalised Gaussian average of the
    labelled background (``valid`` pixels outside objects: outside the crops unlabelled
    objects would pass for background), falling back to its median far from any, so an
    uneven support stays as it was. Pixels more than ~4 px from a changed object keep
    their values.
    """
    count = int(instances.max(initial=0))
    if count == 0:
        return image
    low, high = augment.object_contrast_range
    factors = np.ones(count + 1, dtype=np.float32)
    factors[1:] = rng.uniform(low, high, count)
    if eligible is not None:
        allowed = np.zeros(count + 1, dtype=bool)
        known = min(count + 1, eligible.size)
        allowed[:known] = eligible[:known]
        factors[~allowed] = 1.0
    if np.all(factors == 1.0):
        return image
    gain = ndimage.gaussian_filter(factors[instances], GAIN_EDGE_SIGMA_PX)
    outside = valid & (instances == 0)
    if not outside.any():
        outside = instances == 0
    fallback = float(np.median(image[outside])) if outside.any() else 0.0
    weight = ndimage.gaussian_filter(outside.astype(np.float32), BACKGROUND_SIGMA_PX)
    total = ndimage.gaussian_filter(np.where(outside, image, 0.0), BACKGROUND_SIGMA_PX)
    # Where hardly any background is near (inside a large object), lean on the median.
    background = (total + BACKGROUND_PRIOR * fallback) / (weight + BACKGROUND_PRIOR)
    return (background + (image - background) * gain).astype(np.float32)


def intensity(image: np.ndarray, rng: np.random.Generator, augment: AugmentConfig) -> np.ndarray:
    """Gamma, contrast, offset, a linear gradient, blur and Gaussian noise (image only)."""
    low, high = augment.gamma_range
    gamma = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    out = np.clip(image, 0.0, None) ** gamma
    out = out * rng.uniform(*augment.contrast_range) + rng.uniform(*augment.offset_range)
    if augment.gradient_max > 0:
        angle = rng.uniform(0, 2 * np.pi)
        size = image.shape[0]
        ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
        gradient = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
        out = out + rng.uniform(-augment.gradient_max, augment.gradient_max) * gradient
    if rng.random() < augment.blur_probability:
        out = ndimage.gaussian_filter(out, rng.uniform(0.3, 0.8))
    if augment.noise_sigma_max > 0:
        out = out + rng.normal(0.0, rng.uniform(0, augment.noise_sigma_max), out.shape)
    return out.astype(np.float32)
