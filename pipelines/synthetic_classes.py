"""Seeded synthetic HAADF-STEM-like images for the classification task.

Three classes a microscopist tells apart at a glance, used by the tests, the benchmark and the
app's sample data:

- ``spheres``: isolated, nearly round particles (equivalent diameter ~8 % of the image side);
- ``rods``: elongated particles (aspect ratio 3-5) at random orientations;
- ``agglomerates``: compact clusters of small touching particles.

Each image is drawn from its own seed sequence ``(seed, class index, image index)``, so image
``k`` of a class does not change when more images are asked for. Intensities follow a projected
thickness profile on a support with a gradient and texture, blurred by the probe and given shot
noise; files alternate between 8-bit PNG and 16-bit TIFF so loaders see mixed bit depths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipelines.fileio import atomic_path

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("agglomerates", "rods", "spheres")
TIFF_EVERY = 3  # every third image is a 16-bit TIFF, the others 8-bit PNG


@dataclass(frozen=True)
class SyntheticClassificationSet:
    """What :func:`write_synthetic_classification` wrote: ``files[class]`` lists image paths."""

    root: Path
    classes: tuple[str, ...]
    files: dict[str, list[Path]]

    @property
    def n_images(self) -> int:
        return sum(len(paths) for paths in self.files.values())


def _image_rng(seed: int, class_index: int, image_index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, class_index, image_index]))


def _support(rng: np.random.Generator, size_px: int) -> np.ndarray:
    """Amorphous support: offset, linear gradient, smooth blotches and fine texture."""
    rows, cols = np.mgrid[0:size_px, 0:size_px] / max(1, size_px - 1)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * (cols - 0.5) + np.sin(angle) * (rows - 0.5)) * rng.uniform(0, 0.1)
    blotches = ndimage.gaussian_filter(rng.normal(size=(size_px, size_px)), size_px / 10)
    blotches *= 0.04 / max(1e-9, blotches.std())
    texture = ndimage.gaussian_filter(rng.normal(size=(size_px, size_px)), 0.8) * 0.05
    return rng.uniform(0.08, 0.2) + gradient + blotches + texture


def _add_ellipsoid(
    image: np.ndarray,
    centre_rc: tuple[float, float],
    semi_axes_px: tuple[float, float],
    angle_rad: float,
    brightness: float,
) -> None:
    """Add the projected thickness of an ellipsoid (sqrt(1 - r^2) profile) in place."""
    radius = max(semi_axes_px) + 2
    r0, c0 = centre_rc
    top, left = max(0, int(r0 - radius)), max(0, int(c0 - radius))
    bottom = min(image.shape[0], int(r0 + radius) + 2)
    right = min(image.shape[1], int(c0 + radius) + 2)
    if top >= bottom or left >= right:
        return
    rows, cols = np.mgrid[top:bottom, left:right]
    dr, dc = rows - r0, cols - c0
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    u = (dc * cos + dr * sin) / semi_axes_px[0]
    v = (-dc * sin + dr * cos) / semi_axes_px[1]
    image[top:bottom, left:right] += brightness * np.sqrt(np.clip(1 - u * u - v * v, 0, None))


def _add_rod(
    image: np.ndarray,
    centre_rc: tuple[float, float],
    length_px: float,
    radius_px: float,
    angle_rad: float,
    brightness: float,
) -> None:
    """Add a spherocylinder (capsule) seen from the side, in place."""
    half = length_px / 2 - radius_px
    reach = length_px / 2 + 2
    r0, c0 = centre_rc
    top, left = max(0, int(r0 - reach)), max(0, int(c0 - reach))
    bottom = min(image.shape[0], int(r0 + reach) + 2)
    right = min(image.shape[1], int(c0 + reach) + 2)
    if top >= bottom or left >= right:
        return
    rows, cols = np.mgrid[top:bottom, left:right]
    dr, dc = rows - r0, cols - c0
    along = dc * np.cos(angle_rad) + dr * np.sin(angle_rad)
    across = -dc * np.sin(angle_rad) + dr * np.cos(angle_rad)
    distance = np.hypot(np.clip(np.abs(along) - half, 0, None), across) / radius_px
    image[top:bottom, left:right] += brightness * np.sqrt(np.clip(1 - distance**2, 0, None))


def _free_centres(
    rng: np.random.Generator, size_px: int, count: int, min_distance_px: float, margin_px: float
) -> list[tuple[float, float]]:
    """Up to ``count`` random centres at least ``min_distance_px`` apart (rejection sampling)."""
    centres: list[tuple[float, float]] = []
    for _ in range(count * 60):
        if len(centres) == count:
            break
        candidate = tuple(rng.uniform(margin_px, size_px - margin_px, size=2))
        if all(np.hypot(candidate[0] - r, candidate[1] - c) >= min_distance_px for r, c in centres):
            centres.append((float(candidate[0]), float(candidate[1])))
    return centres


def _draw_spheres(image: np.ndarray, rng: np.random.Generator) -> None:
    size_px = image.shape[0]
    scale = (size_px / 128) ** 2
    count = int(rng.integers(6, 13) * scale) or 1
    for centre in _free_centres(rng, size_px, count, 0.16 * size_px, 0.07 * size_px):
        diameter = float(np.clip(rng.lognormal(np.log(0.085 * size_px), 0.15), 4, None))
        aspect = rng.uniform(1.0, 1.15)
        axes = (diameter / 2 * np.sqrt(aspect), diameter / 2 / np.sqrt(aspect))
        _add_ellipsoid(image, centre, axes, rng.uniform(0, np.pi), rng.uniform(0.6, 1.0))


def _draw_rods(image: np.ndarray, rng: np.random.Generator) -> None:
    size_px = image.shape[0]
    scale = (size_px / 128) ** 2
    count = int(rng.integers(5, 10) * scale) or 1
    for centre in _free_centres(rng, size_px, count, 0.2 * size_px, 0.12 * size_px):
        radius = rng.uniform(0.025, 0.035) * size_px
        length = radius * 2 * rng.uniform(3.0, 5.0)
        _add_rod(image, centre, length, radius, rng.uniform(0, np.pi), rng.uniform(0.6, 1.0))


def _draw_agglomerates(image: np.ndarray, rng: np.random.Generator) -> None:
    size_px = image.shape[0]
    scale = (size_px / 128) ** 2
    clusters = int(rng.integers(2, 4) * scale) or 1
    for seed_centre in _free_centres(rng, size_px, clusters, 0.35 * size_px, 0.2 * size_px):
        members = [seed_centre]
        unit_diameter = rng.uniform(0.045, 0.06) * size_px
        for _ in range(int(rng.integers(7, 15))):
            anchor = members[int(rng.integers(len(members)))]
            angle = rng.uniform(0, 2 * np.pi)
            step = unit_diameter * rng.uniform(0.75, 0.95)
            members.append((anchor[0] + step * np.sin(angle), anchor[1] + step * np.cos(angle)))
        for centre in members:
            diameter = unit_diameter * rng.uniform(0.85, 1.15)
            _add_ellipsoid(image, centre, (diameter / 2, diameter / 2), 0.0, rng.uniform(0.5, 0.9))


_DRAWERS = {"agglomerates": _draw_agglomerates, "rods": _draw_rods, "spheres": _draw_spheres}


def synthetic_class_image(class_name: str, seed: int, index: int, size_px: int = 128) -> np.ndarray:
    """One image of ``class_name``: ``(size_px, size_px)`` float64, roughly in [0, 1].

    ``index`` picks the image within the class; the same arguments give the same pixels.
    """
    if class_name not in _DRAWERS:
        raise ValueError(f"unknown synthetic class {class_name!r}; choose from {CLASS_NAMES}")
    if size_px < 16:
        raise ValueError(f"size_px must be at least 16, got {size_px}")
    rng = _image_rng(seed, CLASS_NAMES.index(class_name), index)
    image = _support(rng, size_px)
    particles = np.zeros((size_px, size_px))
    _DRAWERS[class_name](particles, rng)
    image = image + ndimage.gaussian_filter(particles, 0.8)
    dose_counts = rng.uniform(30, 60)
    image = rng.poisson(np.clip(image, 0, None) * dose_counts) / dose_counts
    return image + rng.normal(0, 0.02, size=image.shape)


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    pixels = np.clip(image / 1.3 * 255, 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


def _write_tiff(path: Path, image: np.ndarray, rng: np.random.Generator) -> None:
    import tifffile

    gain = rng.uniform(8000, 30000)  # detectors differ in their count range
    pixels = np.clip(image * gain + rng.uniform(0, 2000), 0, 65535).astype(np.uint16)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, pixels)


def write_synthetic_classification(
    out_dir: str | os.PathLike[str],
    n_per_class: int = 20,
    seed: int = 0,
    size_px: int = 128,
    classes: Sequence[str] = CLASS_NAMES,
) -> SyntheticClassificationSet:
    """Write a folder-per-class dataset ``out_dir/<class>/<class>_NNN.{png,tif}``.

    Every third image is a 16-bit TIFF with its own gain, the rest 8-bit PNG.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    root = Path(out_dir)
    files: dict[str, list[Path]] = {}
    for class_name in classes:
        paths = []
        for index in range(n_per_class):
            image = synthetic_class_image(class_name, seed, index, size_px)
            if index % TIFF_EVERY == TIFF_EVERY - 1:
                path = root / class_name / f"{class_name}_{index:03d}.tif"
                _write_tiff(path, image, _image_rng(seed + 1, len(files), index))
            else:
                path = root / class_name / f"{class_name}_{index:03d}.png"
                _write_png(path, image)
            paths.append(path)
        files[class_name] = paths
    log.info("wrote %d synthetic images per class to %s", n_per_class, root)
    return SyntheticClassificationSet(root=root, classes=tuple(classes), files=files)
