"""Spatial statistics against simulated truth: Clark–Evans, Ripley, edge distances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from scipy.spatial import cKDTree

from pipelines.formats.labelme import Shape
from pipelines.stats import StatsOptions, compute_statistics
from pipelines.stats.counting import Region
from pipelines.stats.measure import measure_objects, object_groups, pack_objects
from pipelines.stats.spatial import (
    _border_bucket_counts,
    _border_pair_counts,
    centre_nearest_neighbours,
    clark_evans,
    edge_nearest_neighbours,
    object_outlines,
    ripley,
)

from .builders import circle, document, square

WINDOW = Region(0.0, 0.0, 1000.0, 1000.0)


def poisson(seed: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)


def clustered(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Thomas process: 60 parents, 25 children each with a 12 px Gaussian spread (torus)."""
    rng = np.random.default_rng(seed)
    parents = rng.uniform(0, 1000, (60, 2))
    children = np.repeat(parents, 25, axis=0) + rng.normal(0, 12, (1500, 2))
    children %= 1000
    return children[:, 0], children[:, 1]


def lattice(spacing: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(spacing / 2, 1000, spacing)
    x, y = np.meshgrid(grid, grid)
    return x.ravel(), y.ravel()


def clark(x: np.ndarray, y: np.ndarray):
    return clark_evans(centre_nearest_neighbours(x, y)[0], WINDOW)


def test_clark_evans_is_one_for_poisson_above_for_lattice_below_for_clusters() -> None:
    random_r = [clark(*poisson(seed)).index for seed in range(20)]
    assert np.mean(random_r) == pytest.approx(1.0, abs=0.015)
    p_values = [clark(*poisson(seed)).p_value for seed in range(20)]
    assert np.mean(np.array(p_values) < 0.05) <= 0.2  # a test at 5 % rarely rejects
    regular = clark(*lattice())
    assert regular.index > 1.9 and regular.p_value < 1e-10
    for seed in range(3):
        aggregated = clark(*clustered(seed))
        assert aggregated.index < 0.6 and aggregated.p_value < 1e-10


def test_clark_evans_needs_two_points() -> None:
    assert clark(np.array([5.0]), np.array([5.0])) is None


def test_ripley_l_is_r_for_poisson_with_border_correction() -> None:
    curves = [ripley(*poisson(seed), WINDOW, radii=20, max_radius_px=120.0) for seed in range(15)]
    radius = curves[0].radius_px
    mean_l = np.mean([c.l_px for c in curves], axis=0)
    assert np.all(np.abs(mean_l - radius) < 0.03 * radius + 0.5)
    assert curves[0].points_used[0] > curves[0].points_used[-1]


def test_ripley_l_is_above_r_for_clusters_and_below_for_a_lattice() -> None:
    cluster = ripley(*clustered(0), WINDOW, radii=10, max_radius_px=60.0)
    assert np.all(cluster.l_px > cluster.radius_px * 1.3)
    regular = ripley(*lattice(25.0), WINDOW, radii=10, max_radius_px=20.0)
    assert np.all(regular.k_px2 == 0)  # no neighbour closer than the spacing


def test_ripley_pair_list_and_bucket_counting_agree() -> None:
    x, y = poisson(3, 3000)
    centres = np.column_stack([x, y])
    tree = cKDTree(centres)
    brute = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(brute, np.inf)
    for radius in (np.linspace(100 / 30, 100, 30), np.linspace(5, 100, 30)):
        usable = np.searchsorted(radius, WINDOW.border_distance_px(x, y), side="right")
        listed = _border_pair_counts(tree, centres, usable, radius)
        bucketed = _border_bucket_counts(tree, centres, usable, radius)
        assert np.array_equal(listed, bucketed)
        expected = [((brute <= r) & (usable[:, None] > k)).sum() for k, r in enumerate(radius)]
        assert listed.tolist() == expected


def _outline_distances(shapes: list[Shape]):
    arrays = pack_objects(object_groups(shapes))
    m = measure_objects(arrays)
    outlines = object_outlines(arrays)
    members = np.arange(arrays.n_objects)
    return edge_nearest_neighbours(outlines, members, m.cx, m.cy, m.extent_px)


def test_edge_distance_of_two_circles_is_centre_distance_minus_radii() -> None:
    distance, neighbour = _outline_distances([circle("p", 10, 20, 3), circle("p", 40, 60, 7)])
    assert distance.tolist() == pytest.approx([50 - 3 - 7] * 2, abs=1e-12)
    assert neighbour.tolist() == [1, 0]


def test_edge_distance_of_circle_to_square_and_of_overlapping_objects() -> None:
    distance, _ = _outline_distances([circle("p", 0, 0, 2), square("p", 10, -5, 10)])
    assert distance.tolist() == pytest.approx([8.0, 8.0])
    overlapping, _ = _outline_distances([circle("p", 0, 0, 5), circle("p", 6, 0, 5)])
    assert overlapping.tolist() == [0.0, 0.0]


def test_edge_nearest_neighbour_is_exact_against_brute_force() -> None:
    rng = np.random.default_rng(5)
    shapes = []
    for _ in range(150):
        cx, cy = rng.uniform(0, 500, 2)
        # Elongated, randomly oriented rectangles make centre and outline neighbours differ.
        length, width, angle = rng.uniform(5, 60), rng.uniform(2, 6), rng.uniform(0, math.pi)
        u = np.array([math.cos(angle), math.sin(angle)])
        v = np.array([-u[1], u[0]])
        corners = [
            (cx, cy) + a * length / 2 * u + b * width / 2 * v
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        shapes.append(Shape("p", np.array(corners)))
    shapes.append(circle("p", 250, 250, 9))
    distance, neighbour = _outline_distances(shapes)
    geometries = [shapely.Polygon(s.points) for s in shapes[:-1]]
    geometries.append(shapely.Point(250, 250).buffer(9, quad_segs=256))
    brute = shapely.distance(np.array(geometries)[:, None], np.array(geometries)[None, :]).astype(
        float
    )
    np.fill_diagonal(brute, np.inf)
    assert distance == pytest.approx(brute.min(axis=1), abs=1e-3)
    chosen = brute[np.arange(len(shapes)), neighbour]
    assert chosen == pytest.approx(brute.min(axis=1), abs=1e-3)


def test_guard_frame_density_is_unbiased_on_a_simulated_field() -> None:
    """Disks of a Poisson field larger than the image, cut by the image edge as in a real
    micrograph: the guard frame recovers the true density; the other rules do not."""
    true_density, size = 4e-3, 300  # objects per px², image side
    estimates: dict[str, list[float]] = {"guard_frame": [], "all": [], "exclude_border": []}
    image = shapely.box(-0.5, -0.5, size - 0.5, size - 0.5)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        margin = 20
        count = rng.poisson(true_density * (size + 2 * margin) ** 2)
        centres = rng.uniform(-margin, size + margin, (count, 2))
        radii = rng.uniform(3, 8, count)
        shapes = []
        for (x, y), r in zip(centres, radii, strict=True):
            visible = shapely.Point(x, y).buffer(r, quad_segs=16).intersection(image)
            if visible.area > 0.5 and visible.geom_type == "Polygon":
                shapes.append(Shape("p", np.asarray(visible.exterior.coords)[:-1]))
        doc = document(shapes, size, size)
        for rule in estimates:
            result = compute_statistics([doc], options=StatsOptions(counting_rule=rule))
            estimates[rule].append(result.summary.iloc[0]["density_per_mpx"] / 1e6)
    guard = np.mean(estimates["guard_frame"])
    assert guard == pytest.approx(true_density, rel=0.04)
    assert np.mean(estimates["all"]) > true_density * 1.05
    assert np.mean(estimates["exclude_border"]) < true_density * 0.95


def test_objects_sharing_a_centre_are_each_others_neighbours() -> None:
    shapes = [circle("p", 50, 50, 4), square("p", 46, 46, 8), circle("p", 150, 150, 3)]
    distance, neighbour = _outline_distances(shapes)
    assert distance.tolist()[:2] == [0.0, 0.0]
    assert neighbour.tolist()[:2] == [1, 0]
    centre_distance, _ = centre_nearest_neighbours(np.array([5.0, 5.0, 9.0]), np.zeros(3))
    assert centre_distance.tolist() == [0.0, 0.0, 4.0]
