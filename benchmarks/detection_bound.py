"""The least diameter error an unbiased method can reach on a scenario's images (Cramér–Rao).

The synthetic generator states exactly how a particle becomes pixels: a projected-thickness
profile ``sqrt(1 - d²)`` on an ellipse with faceted outline, brightness times a thickness that
grows with size, the carbon film's fine texture, probe blur, shot noise at ``dose_counts`` and
read noise. For a particle of equivalent diameter ``D`` the Fisher information of that model
bounds the spread of any unbiased estimate of ``D`` made from its pixels, whatever the engine
or the number of labels: an ideal observer that knows the blur, the noise, the texture
statistics and the profile family, and must find the particle's size, centre, aspect, angle,
facets, brightness and local background, still has that spread. Aspect, facets and brightness
are known to lie in the scenario's ranges (a hybrid bound: :func:`prior_spreads`). The bound
is averaged over the generator's own random sub-pixel positions, outlines and brightness,
with the profile averaged over each pixel (see :data:`SUPERSAMPLE`); for errors spread
normally at the bound the mean |D error| is ``sqrt(2/π) · σ_D / D``.

Why: the ``particles`` target asks for a mean |D error| ≤ 3 % per particle. This script says
how far below that an unbiased method can go on these images, and how far the engines are from
it per size bin (the bins of ``benchmarks/detection.py``, read from its JSON). Its limits: it
covers isolated particles, though touching ones share their rim; a method that shrinks sizes
towards the typical one is biased and may go below it, most for the smallest particles; and the
engines are scored on the particles they found, which leaves out some of the smallest. About three
minutes on 2 cores, plus half a second a trial with ``--check-trials``::

    .venv/bin/python benchmarks/detection_bound.py --scenario particles --seeds 0 1 2 \
        --check-trials 200

Prints a Markdown table and writes JSON to ``benchmarks/results/detection-bound.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.detection import RESULTS, SIZE_BINS_PX, size_bin_name  # noqa: E402
from pipelines.fileio import atomic_write_json, sha256_text  # noqa: E402
from pipelines.synthetic import generate  # noqa: E402
from pipelines.synthetic.geometry import HARMONICS  # noqa: E402
from pipelines.synthetic.render import THICKNESS_EXPONENT  # noqa: E402
from pipelines.synthetic.scenarios import ScenarioConfig, get_scenario  # noqa: E402

# The parameters of one particle's patch, in the order of a parameter vector; after them come
# the cos and sin coefficient of each facet order in ``HARMONICS``.
PARAMETERS = ("radius", "aspect", "angle", "centre_x", "centre_y", "brightness", "background")
RADIUS, ASPECT, ANGLE, CENTRE_X, CENTRE_Y, BRIGHTNESS, BACKGROUND = range(len(PARAMETERS))
FIRST_FACET = len(PARAMETERS)
PARAMETER_COUNT = FIRST_FACET + 2 * len(HARMONICS)

# The generator takes each pixel's profile at its centre. Its image then has a kink where the
# rim crosses a pixel centre, the Fisher information there depends on the step it is measured
# with, and a fit beat that bound by 12 % in a check. Averaged over 8 x 8 points per pixel the
# model is smooth, the bound well defined, and fits reach it; at pixel centres (steps of
# 0.001 px) the particles' mean bound was 2.73 % instead of 2.62 %.
SUPERSAMPLE = 8
MARGIN_PX = 6  # window margin around the particle (blur and texture reach)
BOUND_DIAMETERS_PX = (4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 30.0, 40.0)
BRIGHTNESS_POINTS = 4  # brightness is uniform in the scenario's range: midpoint rule over it
POSITIONS = 8  # random sub-pixel centres and outlines averaged per diameter and brightness
SEED = 0


def expected_counts(theta: np.ndarray, config: ScenarioConfig, window: int) -> np.ndarray:
    """Mean electron counts of a ``window²`` patch, made as ``pipelines.synthetic.render`` makes
    a dark-field particle (profile, probe blur, support level ``background``), except that the
    profile is averaged over :data:`SUPERSAMPLE`² points of each pixel instead of taken at its
    centre (``SUPERSAMPLE = 1`` is the generator's own sampling)."""
    radius, aspect, angle, cx, cy, brightness, background = theta[:FIRST_FACET]
    facets = theta[FIRST_FACET:]
    offsets = (np.arange(window * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    dy, dx = offsets[:, None] - cy, offsets[None, :] - cx
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / (radius * math.sqrt(aspect))
    v = (dy * math.cos(angle) - dx * math.sin(angle)) / (radius / math.sqrt(aspect))
    rho, direction = np.hypot(u, v), np.arctan2(v, u)
    modulation = np.ones_like(rho)
    for k, order in enumerate(HARMONICS):
        modulation += facets[2 * k] * np.cos(order * direction)
        modulation += facets[2 * k + 1] * np.sin(order * direction)
    # The generator's thickness is relative to the scenario's median particle.
    thickness = (radius / (config.diameter_median_px / 2)) ** THICKNESS_EXPONENT
    profile = np.sqrt(np.clip(1.0 - (rho / modulation) ** 2, 0.0, None)) * brightness * thickness
    pixels = profile.reshape(window, SUPERSAMPLE, window, SUPERSAMPLE).mean(axis=(1, 3))
    if config.probe_blur_px > 0:
        pixels = ndimage.gaussian_filter(pixels, config.probe_blur_px, mode="constant")
    return config.dose_counts * (background + pixels)


@lru_cache(maxsize=16)
def texture_covariance(config: ScenarioConfig, window: int) -> np.ndarray:
    """``(window², window²)`` covariance of the film texture in counts², after probe blur.

    The texture is white noise smoothed by ``texture_sigma_px`` and scaled to
    ``texture_amplitude``; the probe blur smooths it again. Its covariance at a pixel offset is
    the autocorrelation of the combined kernel.
    """
    reach = math.ceil(4 * (config.texture_sigma_px + config.probe_blur_px)) + 1
    size = 2 * reach + 1
    impulse = np.zeros((size, size))
    impulse[reach, reach] = 1.0
    texture_kernel = ndimage.gaussian_filter(impulse, config.texture_sigma_px, mode="constant")
    scale = config.texture_amplitude / math.sqrt(float((texture_kernel**2).sum()))
    kernel = texture_kernel * scale
    if config.probe_blur_px > 0:
        kernel = ndimage.gaussian_filter(kernel, config.probe_blur_px, mode="constant")
    autocorrelation = ndimage.correlate(np.pad(kernel, size), kernel, mode="constant")
    centre = autocorrelation.shape[0] // 2
    rows, cols = np.divmod(np.arange(window * window), window)
    d_row = np.clip(rows[:, None] - rows[None, :] + centre, 0, autocorrelation.shape[0] - 1)
    d_col = np.clip(cols[:, None] - cols[None, :] + centre, 0, autocorrelation.shape[1] - 1)
    far = (np.abs(rows[:, None] - rows[None, :]) > centre) | (
        np.abs(cols[:, None] - cols[None, :]) > centre
    )
    covariance = autocorrelation[d_row, d_col]
    covariance[far] = 0.0
    return covariance * config.dose_counts**2


def random_particle(
    config: ScenarioConfig, diameter_px: float, brightness: float, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """A particle's parameters drawn as ``pipelines.synthetic.geometry`` draws them (sub-pixel
    centre, aspect, angle, facet amplitudes and phases), and a window that holds it."""
    aspect = rng.uniform(1.0, config.aspect_ratio_max)
    amplitudes = config.irregularity * rng.uniform(0.0, 1.0, len(HARMONICS))
    phases = rng.uniform(0.0, 2 * math.pi, len(HARMONICS))
    # a·cos(n·t + φ) = a·cos φ·cos(n·t) - a·sin φ·sin(n·t)
    facets = np.ravel(np.column_stack([amplitudes * np.cos(phases), -amplitudes * np.sin(phases)]))
    half_extent = diameter_px / 2 * math.sqrt(aspect) * (1 + amplitudes.sum())
    window = 2 * math.ceil(half_extent + MARGIN_PX) + 1
    theta = np.zeros(PARAMETER_COUNT)
    theta[RADIUS], theta[ASPECT] = diameter_px / 2, aspect
    theta[ANGLE] = rng.uniform(0.0, math.pi)
    theta[[CENTRE_X, CENTRE_Y]] = window // 2 + rng.uniform(-0.5, 0.5, 2)
    theta[BRIGHTNESS], theta[BACKGROUND] = brightness, 1.0
    theta[FIRST_FACET:] = facets
    return theta, window


def noise_covariance(config: ScenarioConfig, mean: np.ndarray) -> np.ndarray:
    """Covariance of a patch's counts: shot and read noise per pixel plus the film texture."""
    noise = np.diag(mean.ravel() + config.read_noise_counts**2)
    return noise + texture_covariance(config, mean.shape[0])


def fisher_information(config: ScenarioConfig, theta: np.ndarray, window: int) -> np.ndarray:
    """Fisher information of a patch about ``theta`` (Gaussian noise of that covariance)."""
    gradients = []
    for k in range(theta.size):
        step = 1e-4 if k >= FIRST_FACET else 1e-3
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        change = expected_counts(up, config, window) - expected_counts(down, config, window)
        gradients.append(change.ravel() / (2 * step))
    jacobian = np.array(gradients)
    mean = expected_counts(theta, config, window)
    return jacobian @ np.linalg.solve(noise_covariance(config, mean), jacobian.T)


def radius_bound_px(
    config: ScenarioConfig, diameter_px: float, brightness: float, rng: np.random.Generator
) -> float:
    """Least standard deviation of an unbiased estimate of the equivalent radius (px), averaged
    over :data:`POSITIONS` random particles of that size and brightness."""
    spreads = []
    for _ in range(POSITIONS):
        theta, window = random_particle(config, diameter_px, brightness, rng)
        fisher = fisher_information(config, theta, window)
        fisher += np.diag(1.0 / prior_spreads(config) ** 2)
        spreads.append(math.sqrt(np.linalg.inv(fisher)[RADIUS, RADIUS]))
    return float(np.mean(spreads))


def fitted_radius_spread(
    config: ScenarioConfig, diameter_px: float, brightness: float, trials: int, seed: int = SEED
) -> tuple[float, float]:
    """Check that the bound can be reached: the spread of a maximum-likelihood fit's radius
    over ``trials`` noisy patches of one particle, and the bound for that fit's parameters.

    The patches are the model's mean plus Poisson shot noise, read noise and texture. The fit
    holds the particle's facets and leaves every other parameter free: a least-squares fit
    whitened by the noise covariance. Returns ``(fitted, bound)`` in px.
    """
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import least_squares

    rng = np.random.default_rng(seed)
    theta, window = random_particle(config, diameter_px, brightness, rng)

    def counts(free: np.ndarray) -> np.ndarray:
        return expected_counts(np.concatenate([free, theta[FIRST_FACET:]]), config, window)

    mean = counts(theta[:FIRST_FACET])
    covariance = noise_covariance(config, mean)
    lower = cholesky(covariance, lower=True)
    fisher = fisher_information(config, theta, window)[:FIRST_FACET, :FIRST_FACET]
    # Shot noise is drawn as Poisson; read noise and texture as the rest of the covariance.
    rest = cholesky(covariance - np.diag(mean.ravel()), lower=True)
    radii = []
    for _ in range(trials):
        image = rng.poisson(mean) + (rest @ rng.standard_normal(mean.size)).reshape(mean.shape)
        # Unbounded, from the truth: range limits (e.g. aspect >= 1) would act as extra
        # knowledge and let the fit beat the bound it is checked against.
        fit = least_squares(
            lambda free, image=image: solve_triangular(
                lower, (counts(free) - image).ravel(), lower=True
            ),
            theta[:FIRST_FACET],
            x_scale="jac",
        )
        radii.append(fit.x[RADIUS])
    return float(np.std(radii)), float(math.sqrt(np.linalg.inv(fisher)[RADIUS, RADIUS]))


def prior_spreads(config: ScenarioConfig) -> np.ndarray:
    """Standard deviation of each parameter over the scenario's random ranges, for those
    known beforehand (aspect, facets and brightness; ``inf`` for size, place and background).

    Every method may assume what the scenario's ranges say: outlines about as round as it
    makes them, brightness within its range. A few-pixel particle barely shows its aspect,
    facets and brightness, and without these priors its bound would count them as unknown to
    any extent (at 5 px the bound would rise by about a third). The normal spread stands in
    for a uniform range; with aspect and facets known exactly the bound is the same within
    0.1 %.
    """
    uniform = 1.0 / math.sqrt(12.0)  # standard deviation of a unit-width uniform range
    spreads = np.full(PARAMETER_COUNT, np.inf)
    spreads[ASPECT] = (config.aspect_ratio_max - 1.0) * uniform
    spreads[BRIGHTNESS] = (
        config.particle_brightness_max - config.particle_brightness_min
    ) * uniform
    # Amplitude uniform in [0, irregularity] at a uniform phase: each of its cos/sin
    # coefficients has mean square irregularity² / 6.
    spreads[FIRST_FACET:] = config.irregularity / math.sqrt(6.0)
    return spreads


def bound_table(config: ScenarioConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean |D error| % at the bound on a grid of diameters, averaged over brightness."""
    rng = np.random.default_rng(SEED)
    low, high = config.particle_brightness_min, config.particle_brightness_max
    brightness = low + (high - low) * (np.arange(BRIGHTNESS_POINTS) + 0.5) / BRIGHTNESS_POINTS
    diameters = np.array(BOUND_DIAMETERS_PX)
    errors = np.array(
        [
            np.mean([radius_bound_px(config, d, b, rng) / (d / 2) for b in brightness])
            for d in diameters
        ]
    )
    return diameters, 100.0 * math.sqrt(2.0 / math.pi) * errors


def true_diameters(scenario: str, seed: int, size_px: int) -> np.ndarray:
    """Equivalent diameters (px) of the particles of one generated image, from its masks."""
    sample = generate(scenario, size_px, seed)
    truth = sample.truth
    areas = np.bincount(truth.labels.ravel(), minlength=truth.count + 1)[1:]
    particle = np.asarray(truth.class_ids) == truth.class_names.index("particle") + 1
    return 2.0 * np.sqrt(areas[particle & (areas > 0)] / math.pi)


def engine_errors(results: Path, scenario: str) -> dict[str, dict[str, float]]:
    """Mean |D error| % per engine per size bin and over ``all`` bins (same and unseen images,
    all seeds, weighted by matched particles), from a ``benchmarks/detection.py`` JSON."""
    if not results.is_file():
        return {}
    records = json.loads(results.read_text())["records"]
    totals: dict[str, dict[str, list[float]]] = {}
    for record in records:
        if record.get("scenario") != scenario:
            continue
        for image in ("same", "unseen"):
            for name, row in record[image].get("particle_d_error_by_size", {}).items():
                if not row["matched"]:
                    continue  # nothing matched in that bin: no error to count
                engine = totals.setdefault(record["engine"], {})
                for key in (name, "all"):
                    sums = engine.setdefault(key, [0.0, 0.0])
                    sums[0] += row["matched"] * row["mean_abs_d_error_pct"]
                    sums[1] += row["matched"]
    return {
        engine: {name: round(s / n, 2) for name, (s, n) in bins.items() if n}
        for engine, bins in totals.items()
    }


def at_true_size_mix(
    engines: dict[str, dict[str, float]], bins: dict[str, dict[str, Any]]
) -> dict[str, float]:
    """Each engine's mean |D error| % with its size bins weighed by the true particles' counts
    (engines missing a bin are left out)."""
    total = sum(row["particles"] for row in bins.values())
    return {
        engine: round(sum(errors[name] * row["particles"] for name, row in bins.items()) / total, 2)
        for engine, errors in engines.items()
        if all(name in errors for name in bins)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="particles")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument(
        "--engines-json",
        type=Path,
        default=RESULTS / "detection-particles.json",
        help="benchmarks/detection.py results to set beside the bound",
    )
    parser.add_argument(
        "--check-trials",
        type=int,
        default=0,
        help="also fit this many noisy patches of a median particle by maximum likelihood, to "
        "show the bound is reached (about 0.5 s a trial)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "detection-bound.json")
    args = parser.parse_args(argv)

    config = get_scenario(args.scenario)
    if config.bright_field:
        parser.error(
            f"scenario {args.scenario} is bright-field; the bound models dark-field images"
        )
    grid_d, grid_error = bound_table(config)
    diameters = np.concatenate([true_diameters(args.scenario, s, args.size) for s in args.seeds])
    # The error falls about as a power of D: interpolate on log-log axes.
    per_particle = np.exp(np.interp(np.log(diameters), np.log(grid_d), np.log(grid_error)))
    bins = {}
    for low, high in itertools.pairwise(SIZE_BINS_PX):
        inside = (diameters >= low) & (diameters < high)
        if inside.any():
            bins[size_bin_name(low, high)] = {
                "particles": int(inside.sum()),
                "bound_mean_abs_d_error_pct": round(float(per_particle[inside].mean()), 2),
            }
    engines = engine_errors(args.engines_json, args.scenario)
    record: dict[str, Any] = {
        "command": "python benchmarks/detection_bound.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "scenario": args.scenario,
        "seeds": args.seeds,
        "size_px": args.size,
        "particles": int(diameters.size),
        "bound_mean_abs_d_error_pct": round(float(per_particle.mean()), 2),
        "bound_by_diameter": {
            f"{d:g}": round(float(e), 2) for d, e in zip(grid_d, grid_error, strict=True)
        },
        "bound_by_size": bins,
        "engines_json": str(args.engines_json.relative_to(ROOT))
        if args.engines_json.is_relative_to(ROOT)
        else str(args.engines_json),
        "engines_json_sha256": sha256_text(args.engines_json.read_text())
        if args.engines_json.is_file()
        else None,
        "engines_by_size": engines,
        # Engines are scored on the particles they matched, which holds fewer small ones than
        # the truth; this weighs their bins as the true particles are spread instead.
        "engines_at_true_size_mix": at_true_size_mix(engines, bins),
        "model": {
            "supersample": SUPERSAMPLE,
            "positions_per_point": POSITIONS,
            "brightness_points": BRIGHTNESS_POINTS,
            "seed": SEED,
            "priors": "aspect, facets, brightness (scenario ranges); none on size, place",
        },
    }
    if args.check_trials > 0:
        diameter = config.diameter_median_px
        brightness = (config.particle_brightness_min + config.particle_brightness_max) / 2
        fitted, bound = fitted_radius_spread(config, diameter, brightness, args.check_trials)
        record["reachability"] = {
            "diameter_px": diameter,
            "brightness": brightness,
            "trials": args.check_trials,
            "fitted_radius_std_px": round(fitted, 4),
            "bound_radius_std_px": round(bound, 4),
        }
        print(
            f"maximum-likelihood fit of a {diameter:g}-px particle, {args.check_trials} trials: "
            f"radius spread {fitted:.3f} px against the bound's {bound:.3f} px"
        )
    atomic_write_json(args.output, record)
    print(table(record))
    print(f"\nwrote {args.output}")
    return 0


def table(record: dict[str, Any]) -> str:
    """Markdown: per size bin, particles, the bound and each engine's measured error."""
    engines = sorted(record["engines_by_size"])
    lines = [
        "| true D | particles | bound mean \\|D err\\| % | "
        + " | ".join(f"{e} % (× bound)" for e in engines)
        + " |",
        "|---|---|---|" + "---|" * len(engines),
    ]
    rows = dict(record["bound_by_size"])
    rows["all"] = {
        "particles": record["particles"],
        "bound_mean_abs_d_error_pct": record["bound_mean_abs_d_error_pct"],
    }
    for name, row in rows.items():
        bound = row["bound_mean_abs_d_error_pct"]
        cells = []
        for engine in engines:
            if name == "all":
                value = record["engines_at_true_size_mix"].get(engine)
            else:
                value = record["engines_by_size"][engine].get(name)
            cells.append("–" if value is None else f"{value:.2f} ({value / bound:.1f}×)")
        lines.append(f"| {name} | {row['particles']} | {bound:.2f} | " + " | ".join(cells) + " |")
    if engines:
        own = ", ".join(f"{e} {record['engines_by_size'][e]['all']:.2f} %" for e in engines)
        lines.append(
            f"\nEngines: mean over the particles each found and matched (fewer of the smallest "
            f"than the truth holds). `all`: their bins weighed as the true particles are spread "
            f"(over their own matches: {own})."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
