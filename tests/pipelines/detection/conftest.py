"""Small seeded test images: disks (some touching), optional single sites, known truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from pipelines.formats.labelme import Box, crop_rectangle, new_document, write_labelme
from pipelines.formats.masks import InstanceMasks, instances_to_shapes


@dataclass(eq=False)
class Sample:
    pixels: np.ndarray  # (H, W) uint16
    truth: InstanceMasks


def make_sample(
    size_px: int = 128,
    seed: int = 0,
    n_particles: int = 12,
    n_sites: int = 0,
    radius_px: tuple[float, float] = (4.0, 7.0),
    dark: bool = False,
) -> Sample:
    """Bright (or dark) blurred disks on a noisy background; sites are 1-px-radius dots."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size_px, size_px), dtype=np.int32)
    rows, cols = np.mgrid[0:size_px, 0:size_px]
    class_ids: list[int] = []
    placed = 0
    for _ in range(n_particles * 20):
        if placed == n_particles:
            break
        radius = rng.uniform(*radius_px)
        cy, cx = rng.uniform(radius, size_px - radius, size=2)
        disk = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
        if (labels[ndimage.binary_dilation(disk, iterations=2)] > 0).any():
            continue
        placed += 1
        labels[disk] = placed
        class_ids.append(1)
    for _ in range(n_sites * 20):
        if len(class_ids) - placed == n_sites:
            break
        cy, cx = rng.integers(3, size_px - 3, size=2)
        dot = (rows - cy) ** 2 + (cols - cx) ** 2 <= 1.0
        if (labels[ndimage.binary_dilation(dot, iterations=3)] > 0).any():
            continue
        labels[dot] = len(class_ids) + 1
        class_ids.append(2)
    signal = np.zeros(labels.shape, dtype=np.float64)
    signal[labels > 0] = 1.0
    sites = np.isin(labels, np.flatnonzero(np.array(class_ids) == 2) + 1)
    signal[sites] = 0.7
    signal = ndimage.gaussian_filter(signal, 0.7)
    image = 0.2 + signal + rng.normal(0, 0.05, labels.shape)
    if dark:
        image = 1.4 - image
    pixels = np.clip(image * 20000, 0, 65535).astype(np.uint16)
    names = ["particle", "single_site"] if n_sites else ["particle"]
    truth = InstanceMasks(labels=labels, class_ids=np.array(class_ids, np.int32), class_names=names)
    return Sample(pixels=pixels, truth=truth)


def write_labelled(
    folder: Path,
    sample: Sample,
    boxes: list[Box] | None,
    name: str = "image",
) -> Path:
    """Write ``name.tif`` and ``name.json`` with every truth object touching the boxes outlined.

    ``boxes=None`` writes no crop (the file counts as labelled everywhere).
    """
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / f"{name}.tif", sample.pixels)
    labels = sample.truth.labels
    if boxes:
        keep = np.zeros(labels.max() + 1, dtype=bool)
        for box in boxes:
            keep[np.unique(labels[box.slices()])] = True
        keep[0] = False
        labels = np.where(keep[labels], labels, 0)
    shapes = instances_to_shapes(labels, sample.truth.class_ids, sample.truth.class_names)
    shapes += [crop_rectangle(box) for box in boxes or []]
    height, width = labels.shape
    document = new_document(shapes, f"{name}.tif", height, width)
    return write_labelme(folder / f"{name}.json", document)


@pytest.fixture
def tiny_unet_config() -> dict:
    """A network and budget small enough for a unit test (seconds)."""
    return {
        "channels": [4, 8],
        "patch_px": 32,
        "batch_size": 2,
        "max_steps": 4,
        "train_seconds": 30.0,
    }
