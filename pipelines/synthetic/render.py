"""Pixels from an :class:`ObjectLayout`: object profiles, exact masks, support, optics, noise.

Every object is evaluated only on a small window around it, and windows of the same size are
evaluated together as one array, so tens of thousands of objects render in a few seconds. The
mask and the intensity come from the same normalised radius ``d`` (``d < 1`` inside), so the
truth outlines are exactly where the image shows the edge, before blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import measure

from pipelines.formats.labelme import Box
from pipelines.synthetic.geometry import HARMONICS, ObjectLayout
from pipelines.synthetic.scenarios import ScenarioConfig

THICKNESS_EXPONENT = 0.5  # bigger particles are thicker, hence brighter, but sub-linearly
SITE_SIGMA_OF_RADIUS = 0.6  # a single atom's Gaussian width relative to its mask radius
GAIN_PER_COUNT = 16.0  # detector units per electron count
DARK_LEVEL = 1000.0  # detector offset so read noise never clips at 0
WINDOW_ELEMENTS = 2_000_000  # objects evaluated together per chunk (memory bound)
UINT16_MAX = np.iinfo(np.uint16).max


def _window_half_size(layout: ObjectLayout) -> np.ndarray:
    site_reach = np.maximum(3 * SITE_SIGMA_OF_RADIUS * layout.semi_major_px, layout.semi_major_px)
    reach = np.where(layout.is_site, site_reach, layout.bounding_radius_px())
    return np.ceil(reach).astype(np.int64) + 1


def rasterise_objects(
    layout: ObjectLayout, height: int, width: int, reference_radius_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Object signal and owner map.

    Returns ``signal``: ``(H, W) float32`` sum of every object's profile (a particle's projected
    thickness ``sqrt(1 - d²)`` times its brightness, a site's Gaussian), and ``owner``:
    ``(H, W) int32``, 0 = background, ``k`` = object ``k - 1`` of the layout. Where objects
    overlap a pixel goes to the object whose normalised radius there is smallest, so each
    pixel has one owner and neighbours split their contact zone fairly.
    """
    half_sizes = _window_half_size(layout)
    empty_index, empty_value = np.zeros(0, np.int64), np.zeros(0, np.float64)
    signal_index, signal_value = [empty_index], [empty_value]
    owner_index, owner_radius, owner_id = [empty_index], [empty_value], [empty_index]
    for half in np.unique(half_sizes):
        offsets = np.arange(-half, half + 1)
        offset_y = np.repeat(offsets, offsets.size)
        offset_x = np.tile(offsets, offsets.size)
        members = np.flatnonzero(half_sizes == half)
        chunk = max(1, WINDOW_ELEMENTS // offset_x.size)
        for start in range(0, members.size, chunk):
            ids = members[start : start + chunk]
            rows = np.round(layout.centre_y[ids]).astype(np.int64)[:, None] + offset_y
            cols = np.round(layout.centre_x[ids]).astype(np.int64)[:, None] + offset_x
            dy = rows - layout.centre_y[ids, None]
            dx = cols - layout.centre_x[ids, None]
            radius, value = _profiles(layout, ids, dx, dy, reference_radius_px)
            inside_image = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
            flat = rows * width + cols
            keep = inside_image & (value > 1e-6)
            signal_index.append(flat[keep])
            signal_value.append(value[keep])
            inside = inside_image & (radius < 1.0)
            owner_index.append(flat[inside])
            owner_radius.append(radius[inside])
            owner_id.append(np.broadcast_to(ids[:, None] + 1, flat.shape)[inside])
    size = height * width
    signal = np.bincount(
        np.concatenate(signal_index), np.concatenate(signal_value), minlength=size
    ).astype(np.float32)
    owner = np.zeros(size, dtype=np.int32)
    flat = np.concatenate(owner_index)
    if flat.size:
        radius = np.concatenate(owner_radius)
        ids = np.concatenate(owner_id)
        order = np.lexsort((radius, flat))
        flat, ids = flat[order], ids[order]
        first = np.ones(flat.size, dtype=bool)
        first[1:] = flat[1:] != flat[:-1]
        owner[flat[first]] = ids[first]
    return signal.reshape(height, width), keep_largest_parts(owner.reshape(height, width))


def _profiles(
    layout: ObjectLayout,
    ids: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    reference_radius_px: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius ``d`` and intensity profile on ``(n, window)`` offsets."""
    cos_a, sin_a = np.cos(layout.angle_rad[ids])[:, None], np.sin(layout.angle_rad[ids])[:, None]
    u = (dx * cos_a + dy * sin_a) / layout.semi_major_px[ids, None]
    v = (dy * cos_a - dx * sin_a) / layout.semi_minor_px[ids, None]
    rho = np.hypot(u, v)
    amplitudes = layout.harmonic_amplitudes[ids]
    if np.any(amplitudes):
        theta = np.arctan2(v, u)
        modulation = np.ones_like(rho)
        phases = layout.harmonic_phases[ids]
        for k, order in enumerate(HARMONICS):
            modulation += amplitudes[:, k, None] * np.cos(order * theta + phases[:, k, None])
        rho = rho / modulation
    sites = layout.is_site[ids, None]
    equivalent_radius = np.sqrt(layout.semi_major_px[ids] * layout.semi_minor_px[ids])
    thickness = (equivalent_radius / reference_radius_px) ** THICKNESS_EXPONENT
    particle = np.sqrt(np.clip(1.0 - rho * rho, 0.0, None)) * thickness[:, None]
    sigma_in_radii = SITE_SIGMA_OF_RADIUS
    site = np.exp(-0.5 * (rho / sigma_in_radii) ** 2)
    value = np.where(sites, site, particle) * layout.brightness[ids, None]
    return rho, value


def keep_largest_parts(owner: np.ndarray) -> np.ndarray:
    """Drop all but the largest 4-connected part of each object (squeezed slivers of contact).

    Polygons describe one connected region; a few pixels cut off by a neighbour would otherwise
    make the truth polygon and the truth mask disagree.
    """
    parts, count = measure.label(owner, background=0, connectivity=1, return_num=True)
    present = int(np.count_nonzero(np.bincount(owner.ravel())[1:]))
    if count <= present:
        return owner
    part_sizes = np.bincount(parts.ravel(), minlength=count + 1)[1:]
    part_owner = np.zeros(count + 1, dtype=np.int64)
    part_owner[parts.ravel()] = owner.ravel()
    part_owner = part_owner[1:]
    order = np.lexsort((part_sizes, part_owner))  # by owner, largest part last
    last = np.ones(count, dtype=bool)
    last[:-1] = part_owner[order][1:] != part_owner[order][:-1]
    keep = np.zeros(count + 1, dtype=bool)
    keep[order[last] + 1] = True
    cleaned = owner.copy()
    cleaned[~keep[parts] & (owner > 0)] = 0
    return cleaned


def smooth_field(height: int, width: int, scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """``(H, W) float32`` smooth random field, zero mean, unit std, features ~``scale_px``.

    A coarse grid of Gaussian values spread by Gaussian kernels along rows and columns (two
    small matrix products), far cheaper than filtering a full-size noise image.
    """
    spacing = max(scale_px / 2.0, 2.0)

    def spread(length: int) -> np.ndarray:
        nodes = np.arange(-2, math.ceil(length / spacing) + 3) * spacing
        return np.exp(-0.5 * ((np.arange(length)[:, None] - nodes[None, :]) / spacing) ** 2)

    rows, cols = spread(height), spread(width)
    coarse = rng.standard_normal((rows.shape[1], cols.shape[1]))
    field = (rows @ coarse @ cols.T).astype(np.float32)
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def support(
    config: ScenarioConfig, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uneven illumination (gradient × blotches) and fine film texture, both ``(H, W) float32``."""
    angle = rng.uniform(0, 2 * math.pi)
    along_x = (np.arange(width, dtype=np.float32) - width / 2) * math.cos(angle)
    along_y = (np.arange(height, dtype=np.float32) - height / 2) * math.sin(angle)
    reach = abs(width / 2 * math.cos(angle)) + abs(height / 2 * math.sin(angle))
    gradient = (along_y[:, None] + along_x[None, :]) / max(reach, 1.0)
    blotches = smooth_field(height, width, config.blotch_scale_px, rng)
    illumination = (1.0 + config.gradient_amplitude * gradient) * (
        1.0 + config.blotch_amplitude * blotches
    )
    texture = rng.standard_normal((height, width), dtype=np.float32)
    texture = ndimage.gaussian_filter(texture, config.texture_sigma_px)
    texture *= config.texture_amplitude / max(float(texture.std()), 1e-6)
    return np.clip(illumination, 0.05, None).astype(np.float32), texture


def expected_signal(
    config: ScenarioConfig,
    objects: np.ndarray,
    illumination: np.ndarray,
    texture: np.ndarray,
) -> np.ndarray:
    """Noise-free image in support units, after probe blur.

    Dark-field (HAADF): signal adds (``support + objects``). Bright-field: the beam is absorbed,
    ``illumination · exp(-(objects + film))``, with a Fresnel halo at particle edges.
    """
    if config.bright_field:
        signal = illumination * np.exp(-(objects + texture))
        if config.fresnel_fringe:
            halo = ndimage.gaussian_filter(objects, 1.5) - objects
            signal *= 1.0 + config.fresnel_fringe * halo
    else:
        signal = np.clip(illumination + texture, 0.05, None) + objects
    if config.probe_blur_px > 0:
        signal = ndimage.gaussian_filter(signal, config.probe_blur_px)
    return np.clip(signal, 0.0, None).astype(np.float32)


def detector_counts(
    config: ScenarioConfig, signal: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``(H, W) uint16`` detector image: Poisson shot noise + Gaussian read noise + offset."""
    counts = rng.poisson(signal.astype(np.float64) * config.dose_counts).astype(np.float32)
    counts += config.read_noise_counts * rng.standard_normal(signal.shape, dtype=np.float32)
    values = np.rint(DARK_LEVEL + GAIN_PER_COUNT * counts)
    return np.clip(values, 0, UINT16_MAX).astype(np.uint16)


@dataclass(frozen=True)
class ScaleBar:
    """A burnt-in scale bar: the bar, a text-like block of glyphs, and the box around both."""

    length_nm: float
    bar: Box
    glyphs: tuple[tuple[Box, tuple[tuple[bool, ...], ...]], ...]
    box: Box


GLYPH_ROWS, GLYPH_COLS = 7, 5


def _nice_length_nm(target_nm: float) -> float:
    exponent = math.floor(math.log10(target_nm))
    for mantissa in (5, 2, 1):
        if mantissa * 10**exponent <= target_nm:
            return float(mantissa * 10**exponent)
    return float(10**exponent)


def scale_bar_layout(
    height: int, width: int, nm_per_px: float, rng: np.random.Generator
) -> ScaleBar:
    """Where the scale bar and its label go: a bottom corner, ~15 % of the width long."""
    length_nm = _nice_length_nm(0.15 * width * nm_per_px)
    length_px = max(8, round(length_nm / nm_per_px))
    margin = max(4, round(0.02 * min(height, width)))
    thickness = max(3, round(0.008 * height))
    scale = max(1, round(0.018 * height / GLYPH_ROWS))
    left = margin if rng.uniform() < 0.5 else width - margin - length_px
    bar = Box(left, height - margin - thickness, left + length_px, height - margin)
    text = f"{length_nm:g} nm"
    text_width = len(text) * (GLYPH_COLS + 1) * scale - scale
    text_left = max(0, min(width - text_width, left + (length_px - text_width) // 2))
    text_top = bar.top - 2 * scale - GLYPH_ROWS * scale
    glyphs = []
    for index, character in enumerate(text):
        if character == " ":
            continue
        pattern = rng.uniform(size=(GLYPH_ROWS, GLYPH_COLS)) < 0.55
        glyph_left = text_left + index * (GLYPH_COLS + 1) * scale
        box = Box(
            glyph_left, text_top, glyph_left + GLYPH_COLS * scale, text_top + GLYPH_ROWS * scale
        )
        glyphs.append((box, tuple(tuple(bool(v) for v in row) for row in pattern)))
    outer = Box(
        max(0, min(bar.left, text_left) - 2),
        max(0, text_top - 2),
        min(width, max(bar.right, text_left + text_width) + 2),
        min(height, bar.bottom + 2),
    )
    return ScaleBar(length_nm=length_nm, bar=bar, glyphs=tuple(glyphs), box=outer)


def burn_scale_bar(image: np.ndarray, scale_bar: ScaleBar, value: int) -> None:
    """Paint the scale bar into ``image`` in place, as microscope software does on export."""
    image[scale_bar.bar.slices()] = value
    for box, pattern in scale_bar.glyphs:
        cell = np.kron(np.asarray(pattern), np.ones((box.height // GLYPH_ROWS,) * 2, dtype=bool))
        window = image[box.slices()]
        window[cell[: window.shape[0], : window.shape[1]]] = value
