"""Where objects go: particle sizes, shapes, touching pairs, chains and clusters, single sites.

All positions are in image pixels with pixel centres at integer coordinates; ``x`` is the
column and ``y`` the row. Objects are described analytically (ellipse with faceted outline) so
the renderer can draw both the intensity and the exact mask from the same numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipelines.formats.labelme import Box
from pipelines.synthetic.scenarios import ScenarioConfig

log = logging.getLogger(__name__)

HARMONICS = np.array([3, 4, 5, 6])  # faceting orders of the outline
SEPARATION_GAP_PX = 1.5  # background between particles that are not meant to touch
SITE_CLEARANCE_PX = 3.0  # an isolated atom keeps this far from any other object
PLACEMENT_TRIES = 40


@dataclass(eq=False)
class ObjectLayout:
    """Analytic description of every object, one row per object (particles first, then sites).

    ``semi_major_px``/``semi_minor_px``: ellipse semi-axes; ``angle_rad``: direction of the major
    axis from the +x axis; ``harmonic_amplitudes``/``harmonic_phases``: ``(n, 4)`` relative
    radius modulation of orders :data:`HARMONICS`; ``brightness``: peak signal (dark-field) or
    absorption (bright-field); ``is_site``: single atom rather than particle.
    """

    centre_x: np.ndarray
    centre_y: np.ndarray
    semi_major_px: np.ndarray
    semi_minor_px: np.ndarray
    angle_rad: np.ndarray
    harmonic_amplitudes: np.ndarray
    harmonic_phases: np.ndarray
    brightness: np.ndarray
    is_site: np.ndarray

    @property
    def count(self) -> int:
        return int(self.centre_x.size)

    def bounding_radius_px(self) -> np.ndarray:
        """Radius of a circle around each centre that contains the whole object."""
        return self.semi_major_px * (1.0 + np.abs(self.harmonic_amplitudes).sum(axis=1))


def directional_radius_px(
    semi_major: float,
    semi_minor: float,
    angle: float,
    amplitudes: np.ndarray,
    phases: np.ndarray,
    direction: float,
) -> float:
    """Distance from the centre to the outline along ``direction`` (radians from +x)."""
    alpha = direction - angle
    cos_term, sin_term = math.cos(alpha) / semi_major, math.sin(alpha) / semi_minor
    normalised_angle = math.atan2(sin_term, cos_term)
    modulation = 1.0 + float(np.sum(amplitudes * np.cos(HARMONICS * normalised_angle + phases)))
    return modulation / math.hypot(cos_term, sin_term)


def object_count(per_mpx: float, minimum: int, height: int, width: int) -> int:
    """Objects for this image size at the scenario's density (never below ``minimum``)."""
    return max(int(minimum), round(per_mpx * height * width / 1e6))


class _Placer:
    """Spatial hash of placed discs so each new object checks only its neighbours."""

    def __init__(self, height: int, width: int, cell_px: float, exclusions: list[Box]) -> None:
        self.height, self.width = height, width
        self.cell_px = max(cell_px, 8.0)
        self.exclusions = exclusions
        self.cells: dict[tuple[int, int], list[int]] = {}
        self.x: list[float] = []
        self.y: list[float] = []
        self.radius: list[float] = []
        self.group: list[int] = []

    def _cell(self, x: float, y: float) -> tuple[int, int]:
        return int(y // self.cell_px), int(x // self.cell_px)

    def inside(self, x: float, y: float, radius: float) -> bool:
        """Centre inside the image and the object clear of the exclusion boxes."""
        if not (0.0 <= x <= self.width - 1 and 0.0 <= y <= self.height - 1):
            return False
        for box in self.exclusions:
            if (
                box.left - radius <= x <= box.right - 1 + radius
                and box.top - radius <= y <= box.bottom - 1 + radius
            ):
                return False
        return True

    def neighbours(self, x: float, y: float) -> list[int]:
        row, col = self._cell(x, y)
        found: list[int] = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                found.extend(self.cells.get((row + dr, col + dc), ()))
        return found

    def clear_of_others(self, x: float, y: float, radius: float, gap: float, group: int) -> bool:
        """No object of another group within ``radius + their radius + gap``."""
        for other in self.neighbours(x, y):
            if self.group[other] == group:
                continue
            reach = radius + self.radius[other] + gap
            if (self.x[other] - x) ** 2 + (self.y[other] - y) ** 2 < reach * reach:
                return False
        return True

    def add(self, x: float, y: float, radius: float, group: int) -> int:
        index = len(self.x)
        self.x.append(x)
        self.y.append(y)
        self.radius.append(radius)
        self.group.append(group)
        self.cells.setdefault(self._cell(x, y), []).append(index)
        return index


def _group_sizes(count: int, config: ScenarioConfig, rng: np.random.Generator) -> list[int]:
    """Split ``count`` particles into clusters, pairs and singles (largest groups first)."""
    sizes: list[int] = []
    in_clusters = round(count * config.cluster_fraction)
    while in_clusters >= 2:
        size = int(rng.integers(config.cluster_size_min, config.cluster_size_max + 1))
        size = min(size, in_clusters)
        sizes.append(size)
        in_clusters -= size
    remaining = count - sum(sizes)
    pairs = min(round(count * config.pair_fraction / 2), remaining // 2)
    sizes += [2] * pairs
    sizes += [1] * (remaining - 2 * pairs)
    return sizes


def _particle_shapes(
    count: int, config: ScenarioConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    diameters = np.exp(
        rng.normal(math.log(config.diameter_median_px), config.diameter_sigma, count)
    )
    diameters = np.clip(diameters, config.diameter_min_px, config.diameter_max_px)
    aspect = rng.uniform(1.0, config.aspect_ratio_max, count)
    amplitudes = config.irregularity * rng.uniform(0.0, 1.0, (count, HARMONICS.size))
    return {
        "semi_major_px": diameters / 2 * np.sqrt(aspect),
        "semi_minor_px": diameters / 2 / np.sqrt(aspect),
        "angle_rad": rng.uniform(0.0, math.pi, count),
        "harmonic_amplitudes": amplitudes,
        "harmonic_phases": rng.uniform(0.0, 2 * math.pi, (count, HARMONICS.size)),
        "brightness": rng.uniform(
            config.particle_brightness_min, config.particle_brightness_max, count
        ),
    }


def place_objects(
    config: ScenarioConfig,
    height: int,
    width: int,
    rng: np.random.Generator,
    exclusions: list[Box] | None = None,
) -> ObjectLayout:
    """Draw and place the scenario's particles (in groups) and single sites.

    Clusters grow by attaching each new particle to a member (the newest one with probability
    ``chain_bias``, giving chains) at the touching distance measured along the joining line, less
    up to ``touch_overlap_max``; particles of different groups keep a background gap. Objects
    that find no room after a few tries are dropped, so crowded settings give fewer objects.
    """
    exclusions = list(exclusions or [])
    n_particles = object_count(config.particles_per_mpx, config.particle_min_count, height, width)
    shapes = _particle_shapes(n_particles, config, rng)
    bound = shapes["semi_major_px"] * (1.0 + shapes["harmonic_amplitudes"].sum(axis=1))
    max_bound = float(bound.max()) if n_particles else 2.0
    placer = _Placer(
        height, width, 2 * max_bound + SEPARATION_GAP_PX + SITE_CLEARANCE_PX, exclusions
    )

    def radius_towards(i: int, direction: float) -> float:
        return directional_radius_px(
            shapes["semi_major_px"][i],
            shapes["semi_minor_px"][i],
            shapes["angle_rad"][i],
            shapes["harmonic_amplitudes"][i],
            shapes["harmonic_phases"][i],
            direction,
        )

    kept: list[int] = []  # particle index of each placed disc, in placement order
    next_particle = 0
    for group, size in enumerate(_group_sizes(n_particles, config, rng)):
        members = list(range(next_particle, next_particle + size))
        next_particle += size
        first = members[0]
        placed: list[int] = []  # placer indices of this group's particles
        for _ in range(PLACEMENT_TRIES):
            x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
            if placer.inside(x, y, bound[first]) and placer.clear_of_others(
                x, y, bound[first], SEPARATION_GAP_PX, group
            ):
                placed.append(placer.add(x, y, bound[first], group))
                kept.append(first)
                break
        if not placed:
            continue
        heading = rng.uniform(0, 2 * math.pi)
        for member in members[1:]:
            for _ in range(PLACEMENT_TRIES // 2):
                if rng.uniform() < config.chain_bias:
                    parent_slot = len(placed) - 1
                    heading += rng.normal(0.0, 0.7)
                    direction = heading
                else:
                    parent_slot = int(rng.integers(len(placed)))
                    direction = rng.uniform(0, 2 * math.pi)
                parent = placed[parent_slot]
                parent_particle = kept[parent]
                touching = radius_towards(parent_particle, direction) + radius_towards(
                    member, direction + math.pi
                )
                distance = touching * (1.0 - rng.uniform(0.0, config.touch_overlap_max))
                x = placer.x[parent] + distance * math.cos(direction)
                y = placer.y[parent] + distance * math.sin(direction)
                if not placer.inside(x, y, bound[member]):
                    continue
                if not placer.clear_of_others(x, y, bound[member], SEPARATION_GAP_PX, group):
                    continue
                if not _clear_of_group(
                    placer, placed, parent, x, y, member, kept, radius_towards, config
                ):
                    continue
                placed.append(placer.add(x, y, bound[member], group))
                kept.append(member)
                break
    if len(kept) < n_particles:
        log.debug("placed %d of %d particles (no room for the rest)", len(kept), n_particles)

    site_rows = _place_sites(config, height, width, rng, placer)
    order = np.asarray(kept, dtype=np.intp)
    n_sites = len(site_rows)
    site_radius = np.asarray([r for _, _, r, _ in site_rows], dtype=np.float64)
    zeros_harmonics = np.zeros((n_sites, HARMONICS.size))
    return ObjectLayout(
        centre_x=np.asarray(placer.x, dtype=np.float64),
        centre_y=np.asarray(placer.y, dtype=np.float64),
        semi_major_px=np.concatenate([shapes["semi_major_px"][order], site_radius]),
        semi_minor_px=np.concatenate([shapes["semi_minor_px"][order], site_radius]),
        angle_rad=np.concatenate([shapes["angle_rad"][order], np.zeros(n_sites)]),
        harmonic_amplitudes=np.concatenate([shapes["harmonic_amplitudes"][order], zeros_harmonics]),
        harmonic_phases=np.concatenate([shapes["harmonic_phases"][order], zeros_harmonics]),
        brightness=np.concatenate(
            [shapes["brightness"][order], np.asarray([b for *_, b in site_rows])]
        ),
        is_site=np.concatenate([np.zeros(order.size, bool), np.ones(n_sites, bool)]),
    )


def _clear_of_group(
    placer: _Placer,
    placed: list[int],
    parent: int,
    x: float,
    y: float,
    member: int,
    kept: list[int],
    radius_towards: Callable[[int, float], float],
    config: ScenarioConfig,
) -> bool:
    """A new cluster member may touch, but not bury, the members other than its parent."""
    for slot in placed:
        if slot == parent:
            continue
        dx, dy = x - placer.x[slot], y - placer.y[slot]
        direction = math.atan2(dy, dx)
        touching = radius_towards(kept[slot], direction) + radius_towards(
            member, direction + math.pi
        )
        if math.hypot(dx, dy) < touching * (1.0 - config.touch_overlap_max):
            return False
    return True


def _place_sites(
    config: ScenarioConfig,
    height: int,
    width: int,
    rng: np.random.Generator,
    placer: _Placer,
) -> list[tuple[float, float, float, float]]:
    """Single atoms ``(x, y, radius_px, brightness)`` away from particles and each other."""
    count = object_count(config.sites_per_mpx, config.site_min_count, height, width)
    radii = rng.uniform(config.site_radius_min_px, config.site_radius_max_px, count)
    brightness = rng.uniform(config.site_brightness_min, config.site_brightness_max, count)
    sites: list[tuple[float, float, float, float]] = []
    group = -1  # every site is its own group; -1 never matches a particle group
    for radius, peak in zip(radii, brightness, strict=True):
        for _ in range(PLACEMENT_TRIES):
            x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
            if placer.inside(x, y, radius) and placer.clear_of_others(
                x, y, radius, SITE_CLEARANCE_PX, group - len(sites)
            ):
                placer.add(x, y, float(radius), group - len(sites))
                sites.append((x, y, float(radius), float(peak)))
                break
    return sites
