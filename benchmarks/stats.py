"""Speed of the statistics on 100 000 synthetic objects (seeded random star-shaped polygons).

Prints a table (step, seconds) and writes ``benchmarks/results/stats.json``. Targets:
measurement + per-class summary + nearest neighbours ≤ 0.5 s (issue 3), and full statistics
(bootstrap CIs with 1000 resamples, NN, Clark–Evans, Ripley on 50 radii) ≤ 2 s (issue 8).

    flock /tmp/nocode-heavy.lock .venv/bin/python benchmarks/stats.py [--objects 100000]
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.fileio import atomic_write_json
from pipelines.formats.labelme import Shape, new_document
from pipelines.stats import StatsOptions, compute_statistics, write_html_report, write_statistics
from pipelines.stats.counting import image_region
from pipelines.stats.distributions import (
    bootstrap_intervals,
    histogram_edges,
    point_statistics,
)
from pipelines.stats.measure import feret_diameters, measure_objects, polygon_arrays
from pipelines.stats.spatial import (
    centre_nearest_neighbours,
    clark_evans,
    edge_nearest_neighbours,
    object_outlines,
    ripley,
)

RESULTS = Path(__file__).parent / "results" / "stats.json"


def synthetic_polygons(n_objects: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Random star-shaped particles (8–24 vertices, log-normal size) on a Poisson field.

    Returns concatenated ``(x, y)`` vertices, vertex counts, and the image height and width,
    chosen so the field is about 5 % covered, as in a typical HAADF-STEM image.
    """
    rng = np.random.default_rng(seed)
    radius = np.clip(rng.lognormal(math.log(6.0), 0.3, n_objects), 2.0, 30.0)
    side = int(math.sqrt(n_objects * math.pi * np.mean(radius**2) / 0.05))
    centre = rng.uniform(40, side - 40, size=(n_objects, 2))
    counts = rng.integers(8, 25, n_objects)
    owner = np.repeat(np.arange(n_objects), counts)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(counts.sum()) - start[owner]
    angle = 2 * math.pi * position / counts[owner] + rng.uniform(0, 0.2, owner.size)
    r = radius[owner] * rng.uniform(0.75, 1.0, owner.size)
    vertices = np.column_stack(
        [centre[owner, 0] + r * np.cos(angle), centre[owner, 1] + r * np.sin(angle)]
    )
    return vertices, counts, side, side


def timed(steps: list[dict[str, Any]], name: str, call: Callable[[], Any], repeat: int = 3) -> Any:
    """Best of ``repeat`` runs (the machine is shared; the minimum is the least disturbed)."""
    best, value = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        value = call()
        best = min(best, time.perf_counter() - start)
    steps.append({"step": name, "seconds": round(best, 4)})
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    vertices, counts, height, width = synthetic_polygons(args.objects, args.seed)
    labels = np.full(args.objects, "particle", dtype=object)
    arrays = polygon_arrays(vertices, counts, labels)
    region = image_region(height, width)
    steps: list[dict[str, Any]] = []

    measured = timed(
        steps,
        "measure: area, D, centroid, perimeter, bounds",
        lambda: measure_objects(arrays, shape_descriptors=False),
    )
    diameter = measured.diameter_px
    nn = timed(
        steps,
        "centre nearest neighbours (cKDTree)",
        lambda: centre_nearest_neighbours(measured.cx, measured.cy),
    )[0]
    timed(
        steps,
        "summary: mean/median/std, density, histogram",
        lambda: (
            float(diameter.mean()),
            float(np.median(diameter)),
            float(diameter.std(ddof=1)),
            args.objects / region.area_px,
            np.histogram(diameter, histogram_edges(diameter)),
            float(np.mean(nn)),
            float(np.median(nn)),
        ),
    )
    phase_a = sum(s["seconds"] for s in steps)
    steps.append(
        {
            "step": "= issue 3 core: measure + summary + NN (target ≤ 0.5 s)",
            "seconds": round(phase_a, 4),
        }
    )

    core: list[dict[str, Any]] = []
    timed(core, "weighted statistics (number/area/volume)", lambda: point_statistics(diameter))
    timed(
        core,
        "bootstrap CIs, 1000 resamples, 18 statistics",
        lambda: bootstrap_intervals(diameter, 1000, 0.95, 0),
    )
    timed(core, "Clark-Evans (Donnelly)", lambda: clark_evans(nn, region))
    timed(
        core,
        "Ripley K/L, 50 radii, border correction",
        lambda: ripley(measured.cx, measured.cy, region, 50),
    )
    full = phase_a + sum(s["seconds"] for s in core)
    steps += core
    steps.append(
        {
            "step": "= issue 8 full: + CIs, Clark-Evans, Ripley (target ≤ 2 s)",
            "seconds": round(full, 4),
        }
    )

    extra: list[dict[str, Any]] = []
    timed(extra, "Feret max/min (exact, hull)", lambda: feret_diameters(arrays), repeat=1)
    outlines = timed(
        extra, "outline geometries (shapely)", lambda: object_outlines(arrays), repeat=1
    )
    members = np.arange(args.objects)
    timed(
        extra,
        "edge-to-edge nearest neighbours",
        lambda: edge_nearest_neighbours(
            outlines, members, measured.cx, measured.cy, measured.extent_px
        ),
        repeat=1,
    )
    steps += extra

    shapes = [
        Shape("particle", vertices[s : s + c])
        for s, c in zip(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts, strict=True)
    ]
    document = new_document(shapes, "synthetic.png", height, width)
    calibrated = 0.2
    lean = StatsOptions(
        bootstrap_resamples=0,
        edge_distances=False,
        shape_descriptors=False,
        ripley_radii=1,
        ripley_max_radius_px=1.0,
    )
    timed(
        steps,
        "compute_statistics(document), issue 3 options",
        lambda: compute_statistics([document], calibrated, lean),
        repeat=1,
    )
    result = timed(
        steps,
        "compute_statistics(document), all defaults",
        lambda: compute_statistics([document], calibrated, StatsOptions(metal="Pd")),
        repeat=1,
    )
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.html"
        timed(steps, "HTML report (figures + tables)", lambda: write_html_report(result, report), 1)
        report_mib = report.stat().st_size / 2**20
        table = Path(folder) / "objects.csv"
        timed(steps, "CSV export (+ run card)", lambda: write_statistics(result, table), 1)
        workbook = Path(folder) / "stats.xlsx"
        timed(steps, "XLSX export", lambda: write_statistics(result, workbook), 1)
    summary = result.summary.iloc[0]

    width_step = max(len(s["step"]) for s in steps)
    print(f"{args.objects} objects, {int(counts.sum())} vertices, image {width}x{height} px")
    print(f"{'step'.ljust(width_step)}  seconds")
    for s in steps:
        print(f"{s['step'].ljust(width_step)}  {s['seconds']:.3f}")
    atomic_write_json(
        args.out,
        {
            "benchmark": "stats",
            "objects": args.objects,
            "vertices": int(counts.sum()),
            "image_px": [height, width],
            "seed": args.seed,
            "machine": platform.processor() or platform.machine(),
            "steps": steps,
            "html_report_mib": round(report_mib, 2),
        },
    )
    print(
        f"HTML report {report_mib:.1f} MiB; check: mean D {summary['mean_diameter_nm']:.3f} nm "
        f"[{summary['mean_diameter_nm_ci_low']:.3f}, {summary['mean_diameter_nm_ci_high']:.3f}], "
        f"Clark-Evans R {result.per_image.iloc[0]['clark_evans_r']:.3f}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
