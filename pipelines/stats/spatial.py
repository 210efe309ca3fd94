"""Spatial statistics of object centres and outlines: nearest neighbours, Clark–Evans, Ripley.

All functions take pixel coordinates and return pixels; callers convert to nm. KD-trees
(``scipy.spatial.cKDTree``) do every neighbour search, so 100 000 objects take well under a
second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import ndtr

from pipelines.stats.counting import Region
from pipelines.stats.measure import KIND_CIRCLE, KIND_POLYGON, ShapeArrays

_INITIAL_EDGE_CANDIDATES = 3


def centre_nearest_neighbours(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (px) from each centre to the nearest other centre, and that neighbour's index.

    Returns NaN and -1 when there is no other point.
    """
    n = x.size
    if n < 2:
        return np.full(n, np.nan), np.full(n, -1, dtype=np.int64)
    distance, index = cKDTree(np.column_stack([x, y])).query(np.column_stack([x, y]), k=2)
    own = index[:, 0] == np.arange(n)
    # With duplicate centres the tree may list the twin first; take whichever is not us.
    neighbour = np.where(own, index[:, 1], index[:, 0])
    nearest = np.where(own, distance[:, 1], distance[:, 0])
    return nearest, neighbour.astype(np.int64)


@dataclass(frozen=True)
class ObjectOutlines:
    """Shapely geometry per object for outline distances.

    ``cores``: ``(n,)`` geometries where a lone circle is its centre point; ``core_radius_px``
    is that circle's radius (0 otherwise), so a distance is ``distance(cores) − r_i − r_j``.
    """

    cores: np.ndarray
    core_radius_px: np.ndarray


def object_outlines(arrays: ShapeArrays, circle_quad_segments: int = 16) -> ObjectOutlines:
    """Build one geometry per object: polygons, points, lone circles as centre + radius.

    Objects made of several shapes become geometry collections; circles inside them are
    approximated by polygons with ``4·circle_quad_segments`` vertices.
    """
    import shapely

    n_shapes, n_objects = arrays.n_shapes, arrays.n_objects
    counts = np.diff(arrays.vertex_start)
    shape_of_vertex = np.repeat(np.arange(n_shapes), counts)
    geometries = np.empty(n_shapes, dtype=object)
    polygon = (arrays.kind == KIND_POLYGON) & (counts >= 3)
    if polygon.any():
        geometries[polygon] = _ragged(shapely.linearrings, arrays, polygon, shape_of_vertex)
        geometries[polygon] = shapely.polygons(geometries[polygon])
    line = (arrays.kind == KIND_POLYGON) & (counts == 2)
    if line.any():
        geometries[line] = _ragged(shapely.linestrings, arrays, line, shape_of_vertex)
    single = ~polygon & ~line
    if single.any():
        geometries[single] = shapely.points(arrays.vertices_px[arrays.vertex_start[:-1][single]])
    n_parts = np.bincount(arrays.object_index, minlength=n_objects)
    lone = n_parts[arrays.object_index] == 1
    cores = np.empty(n_objects, dtype=object)
    cores[arrays.object_index[lone]] = geometries[lone]
    core_radius = np.zeros(n_objects)
    lone_circle = lone & (arrays.kind == KIND_CIRCLE)
    core_radius[arrays.object_index[lone_circle]] = arrays.radius_px[lone_circle]
    if (~lone).any():
        parts = geometries.copy()
        grouped_circle = ~lone & (arrays.kind == KIND_CIRCLE)
        parts[grouped_circle] = shapely.buffer(
            parts[grouped_circle],
            arrays.radius_px[grouped_circle],
            quad_segs=circle_quad_segments,
        )
        members = np.flatnonzero(~lone)
        members = members[np.argsort(arrays.object_index[members], kind="stable")]
        owners = arrays.object_index[members]
        multi_objects = np.unique(owners)
        cores[multi_objects] = shapely.geometrycollections(
            parts[members], indices=np.searchsorted(multi_objects, owners)
        )
    return ObjectOutlines(cores=cores, core_radius_px=core_radius)


def _ragged(constructor, arrays: ShapeArrays, wanted: np.ndarray, shape_of_vertex: np.ndarray):
    selected = wanted[shape_of_vertex]
    owners = shape_of_vertex[selected]
    return constructor(
        arrays.vertices_px[selected], indices=np.searchsorted(np.flatnonzero(wanted), owners)
    )


def edge_nearest_neighbours(
    outlines: ObjectOutlines,
    members: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    extent_px: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Outline-to-outline distance (px) from each object to the nearest other object.

    ``members`` indexes ``outlines`` for the objects at centres ``(x, y)`` with largest
    centre-to-outline distances ``extent_px``. Overlapping or touching objects are 0 apart.
    Exact: candidates come from the centre KD-tree, and an object ``j`` is skipped only when
    ``|c_i − c_j| − extent_i − extent_j`` already exceeds the best distance found.
    Returns ``(distance, neighbour index)`` with NaN/-1 when there is no other object.
    """
    import shapely

    n = x.size
    best = np.full(n, np.inf)
    neighbour = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return np.full(n, np.nan), neighbour
    cores = outlines.cores[members]
    radius = outlines.core_radius_px[members]
    centres = np.column_stack([x, y])
    tree = cKDTree(centres)
    k = min(n, _INITIAL_EDGE_CANDIDATES + 1)
    centre_distance, candidates = tree.query(centres, k=k)
    max_extent = float(extent_px.max())
    done = np.zeros(0, dtype=np.int64)

    def evaluate(i: np.ndarray, j: np.ndarray) -> None:
        nonlocal done
        keep = i != j
        lower, upper = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
        codes, first = np.unique(lower * n + upper, return_index=True)
        fresh = ~np.isin(codes, done, assume_unique=True)
        if not fresh.any():
            return
        lower, upper = lower[first[fresh]], upper[first[fresh]]
        done = np.union1d(done, codes[fresh])
        distance = shapely.distance(cores[lower], cores[upper]) - radius[lower] - radius[upper]
        distance = np.maximum(distance, 0.0)
        for a, b in ((lower, upper), (upper, lower)):
            order = np.lexsort((distance, a))
            a_sorted, first_of = np.unique(a[order], return_index=True)
            closest = order[first_of]
            better = distance[closest] < best[a_sorted]
            best[a_sorted[better]] = distance[closest][better]
            neighbour[a_sorted[better]] = b[closest][better]

    rows = np.arange(n)
    # Column 0 is normally the object itself (dropped in evaluate), but with duplicate centres
    # the tree may list the twin first, so both leading columns are checked.
    evaluate(np.repeat(rows, 2), candidates[:, :2].ravel())
    for column in range(2, k):
        j = candidates[:, column]
        promising = centre_distance[:, column] - extent_px - extent_px[j] < best
        evaluate(rows[promising], j[promising])
    if k < n:
        # Objects not yet checked lie at least the k-th centre distance away.
        unresolved = best > centre_distance[:, -1] - extent_px - max_extent
        pending = np.flatnonzero(unresolved)
        if pending.size:
            balls = tree.query_ball_point(
                centres[pending], best[pending] + extent_px[pending] + max_extent
            )
            lengths = np.fromiter((len(b) for b in balls), np.int64, pending.size)
            i = np.repeat(pending, lengths)
            j = np.fromiter((v for b in balls for v in b), np.int64, int(lengths.sum()))
            gap = np.hypot(x[i] - x[j], y[i] - y[j]) - extent_px[i] - extent_px[j]
            keep = gap < best[i]
            evaluate(i[keep], j[keep])
    return np.where(np.isfinite(best), best, np.nan), neighbour


@dataclass(frozen=True)
class ClarkEvans:
    """Clark–Evans aggregation index ``R = mean NN / expected NN`` under complete randomness.

    R ≈ 1 random, R > 1 regular (lattice-like), R < 1 clustered. ``z`` and the two-sided
    ``p_value`` test R = 1. Donnelly's (1978) edge correction for a rectangular window is used.
    """

    index: float
    z: float
    p_value: float
    expected_nn_px: float
    observed_nn_px: float
    n: int


def clark_evans(nn_distance_px: np.ndarray, region: Region) -> ClarkEvans | None:
    """Clark–Evans test from every analysed object's centre NN distance; None below 2 points.

    Donnelly (1978): ``E[r̄] = 0.5·sqrt(A/n) + (0.0514 + 0.041/sqrt(n))·P/n`` and
    ``Var[r̄] = 0.0703·A/n² + 0.037·P·sqrt(A/n⁵)`` for area ``A`` and perimeter ``P``.
    """
    n = int(nn_distance_px.size)
    if n < 2 or region.area_px <= 0:
        return None
    area, perimeter = region.area_px, region.perimeter_px
    observed = float(np.mean(nn_distance_px))
    expected = 0.5 * math.sqrt(area / n) + (0.0514 + 0.041 / math.sqrt(n)) * perimeter / n
    variance = 0.0703 * area / n**2 + 0.037 * perimeter * math.sqrt(area / n**5)
    z = (observed - expected) / math.sqrt(variance)
    p_value = float(2.0 * ndtr(-abs(z)))
    return ClarkEvans(observed / expected, z, p_value, expected, observed, n)


def default_ripley_max_radius_px(region: Region, n: int) -> float:
    """A quarter of the region's short side, capped at 10 mean NN distances of a random pattern.

    The cap (``5/sqrt(λ)``) keeps ~80 neighbours per point, so 100 000 points stay fast while
    still covering the scales where clustering of particles shows.
    """
    quarter = 0.25 * min(region.width_px, region.height_px)
    if n < 1:
        return quarter
    return min(quarter, 5.0 / math.sqrt(n / region.area_px))


_MAX_LISTED_PAIRS = 10_000_000  # above this, count per bucket instead of listing pairs (memory)


def _border_pair_counts(
    tree: cKDTree, centres: np.ndarray, usable: np.ndarray, radius: np.ndarray
) -> np.ndarray:
    """Σ_i 1(b_i ≥ r) #{j ≠ i: d_ij ≤ r} from the list of pairs within the largest radius.

    Radii evenly spaced from their step (``radius[k] = (k + 1)·radius[0]``, as
    :func:`ripley` makes them) are binned by arithmetic, others by a search.

    A pair at distance d adds 1 for each end i at every radius index from the first r ≥ d up
    to (not including) ``usable[i]``: a difference array, summed once.
    """
    m = radius.size
    listed = tree.query_pairs(radius[-1], output_type="ndarray")
    if listed.size == 0:
        return np.zeros(m)
    i, j = listed[:, 0], listed[:, 1]
    distance = np.hypot(centres[i, 0] - centres[j, 0], centres[i, 1] - centres[j, 1])
    # Index of the first radius ≥ d; radii are evenly spaced, so arithmetic replaces a search
    # and one comparison repairs rounding at the bin edges.
    step = radius[0]
    if np.allclose(radius, step * np.arange(1, m + 1), rtol=1e-12, atol=0):
        first = np.clip(np.ceil(distance / step).astype(np.int64) - 1, 0, m - 1)
        first += distance > radius[first]
        first -= (first > 0) & (distance <= radius[np.maximum(first - 1, 0)])
    else:
        first = np.searchsorted(radius, distance, side="left")
    delta = np.zeros(m + 1)
    for end in (i, j):
        stop = usable[end]
        keep = first < stop
        delta += np.bincount(first[keep], minlength=m + 1)
        delta -= np.bincount(stop[keep], minlength=m + 1)
    return np.cumsum(delta)[:m]


def _border_bucket_counts(
    tree: cKDTree, centres: np.ndarray, usable: np.ndarray, radius: np.ndarray
) -> np.ndarray:
    """The same sums by dual-tree counting per bucket of ``usable`` (no pair list in memory)."""
    pairs = np.zeros(radius.size)
    for bucket in np.unique(usable):
        if bucket == 0:
            continue
        chosen = usable == bucket
        counts = cKDTree(centres[chosen]).count_neighbors(tree, radius[:bucket])
        pairs[:bucket] += np.asarray(counts, dtype=np.float64) - chosen.sum()
    return pairs


@dataclass(frozen=True)
class RipleyCurve:
    """Ripley's K and Besag's L with border correction.

    ``radius_px``, ``k_px2``, ``l_px``: ``(m,) float64``; ``points_used``: ``(m,) int64``, the
    points at least ``r`` from the border that served as centres (NaN K where none).
    """

    radius_px: np.ndarray
    k_px2: np.ndarray
    l_px: np.ndarray
    points_used: np.ndarray
    n: int


def ripley(
    x: np.ndarray,
    y: np.ndarray,
    region: Region,
    radii: int = 50,
    max_radius_px: float | None = None,
) -> RipleyCurve:
    """Border-corrected ("reduced sample") Ripley K and L = sqrt(K/π) at ``radii`` radii.

    ``K(r) = Σ_i 1(b_i ≥ r) #{j ≠ i: d_ij ≤ r} / (λ · #{i: b_i ≥ r})`` with ``b_i`` the distance
    from point ``i`` to the region border and ``λ = n/A``. Pairs within the largest radius come
    from one ``cKDTree.query_pairs`` and are binned with a difference array; when they would
    be too many to list, points are bucketed by how many radii their border distance allows
    and each bucket is counted with ``cKDTree.count_neighbors``. For a random pattern
    L(r) ≈ r.
    """
    n = int(x.size)
    if max_radius_px is None:
        max_radius_px = default_ripley_max_radius_px(region, n)
    radius = np.linspace(max_radius_px / radii, max_radius_px, radii)
    pairs = np.zeros(radii)
    points_used = np.zeros(radii, dtype=np.int64)
    if n >= 2:
        centres = np.column_stack([x, y])
        tree = cKDTree(centres)
        # Number of radii each point may serve as a centre for (its border distance allows).
        usable = np.searchsorted(radius, region.border_distance_px(x, y), side="right")
        expected_pairs = n * n * math.pi * max_radius_px**2 / (2 * region.area_px)
        if expected_pairs <= _MAX_LISTED_PAIRS:
            pairs = _border_pair_counts(tree, centres, usable, radius)
        else:
            pairs = _border_bucket_counts(tree, centres, usable, radius)
        points_used = np.cumsum(np.bincount(usable, minlength=radii + 1)[::-1])[::-1][1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(points_used > 0, region.area_px * pairs / (n * points_used), np.nan)
    return RipleyCurve(radius, k, np.sqrt(k / math.pi), points_used.astype(np.int64), n)
