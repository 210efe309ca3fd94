"""The least diameter error any method can reach on a scenario's images: a Cramér–Rao bound.

The synthetic generator states exactly how a particle becomes pixels: a projected-thickness
profile ``sqrt(1 - d²)`` on an ellipse with faceted outline, brightness times a thickness that
grows with size, the carbon film's fine texture, probe blur, shot noise at ``dose_counts`` and
read noise. For a particle of equivalent diameter ``D`` the Fisher information of that model
bounds how closely *any* estimate of ``D`` made from its pixels can come to it, whatever the
engine or the number of labels. An ideal observer that knows the blur, the noise, the texture
statistics and the profile family, and must only find the particle's size, centre, shape
(aspect, angle, facets), brightness and local background, still has this spread. The bound is
taken in its Bayesian (Van Trees) form, which holds for biased estimates too: aspect, facets
and brightness are known to lie in the scenario's ranges (:func:`prior_spreads`, their spreads
standing in for those uniform ranges). For a normally distributed estimate at the bound
the mean |D error| is ``sqrt(2/π) · σ_D / D``.

Why: the ``particles`` target asks for a mean |D error| ≤ 3 % per particle. This script says
how far below that the images allow, and how far the engines are from it per size bin (the
bins of ``benchmarks/detection.py``, read from its JSON). It is a bound for isolated particles:
touching neighbours and an uneven support only add error. Takes about a minute::

    .venv/bin/python benchmarks/detection_bound.py --scenario particles --seeds 0 1 2

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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.detection import RESULTS, SIZE_BINS_PX  # noqa: E402
from pipelines.fileio import atomic_write_json  # noqa: E402
from pipelines.synthetic import generate  # noqa: E402
from pipelines.synthetic.geometry import HARMONICS  # noqa: E402
from pipelines.synthetic.render import THICKNESS_EXPONENT  # noqa: E402
from pipelines.synthetic.scenarios import ScenarioConfig, get_scenario  # noqa: E402

SUPERSAMPLE = 8  # sub-pixel samples per axis: the model must be smooth in its parameters
MARGIN_PX = 6  # window margin around the particle (blur and texture reach)
# Nominal nuisance values the bound is taken at (aspect: mean of the scenarios' 1-1.35 range;
# facet amplitudes small and non-zero so every direction of the outline is free).
ASPECT, ANGLE_RAD, FACET = 1.17, 0.4, 0.01
BOUND_DIAMETERS_PX = (4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0, 30.0, 40.0)
BRIGHTNESS_POINTS = 6  # brightness is uniform in the scenario's range: midpoint rule over it


@dataclass(frozen=True)
class Particle:
    """The parameters of one particle's image, the equivalent radius first (the one we want)."""

    radius_px: float
    aspect: float
    angle_rad: float
    centre_x: float
    centre_y: float
    brightness: float
    background: float
    facets: tuple[float, ...]  # cos and sin coefficient per order of ``HARMONICS``

    def vector(self) -> np.ndarray:
        head = [self.radius_px, self.aspect, self.angle_rad, self.centre_x, self.centre_y]
        return np.array([*head, self.brightness, self.background, *self.facets])


def expected_counts(
    theta: np.ndarray, config: ScenarioConfig, window: int, reference_radius_px: float
) -> np.ndarray:
    """Mean electron counts of a ``window²`` patch, as ``pipelines.synthetic.render`` makes them
    (profile on sub-pixel samples, averaged per pixel, then probe blur)."""
    radius, aspect, angle, cx, cy, brightness, background = theta[:7]
    facets = theta[7:]
    offsets = (np.arange(window * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    dy, dx = offsets[:, None] - cy, offsets[None, :] - cx
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / (radius * math.sqrt(aspect))
    v = (dy * math.cos(angle) - dx * math.sin(angle)) / (radius / math.sqrt(aspect))
    rho, direction = np.hypot(u, v), np.arctan2(v, u)
    modulation = np.ones_like(rho)
    for k, order in enumerate(HARMONICS):
        modulation += facets[2 * k] * np.cos(order * direction)
        modulation += facets[2 * k + 1] * np.sin(order * direction)
    thickness = (radius / reference_radius_px) ** THICKNESS_EXPONENT
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


def nominal_particle(diameter_px: float, brightness: float) -> tuple[np.ndarray, int]:
    """Parameters of a particle at the nominal nuisance values, and a window that holds it."""
    half_extent = diameter_px / 2 * math.sqrt(ASPECT) * (1 + 2 * FACET * len(HARMONICS))
    window = 2 * math.ceil(half_extent + MARGIN_PX) + 1
    centre = window // 2
    particle = Particle(
        radius_px=diameter_px / 2,
        aspect=ASPECT,
        angle_rad=ANGLE_RAD,
        centre_x=centre + 0.3,
        centre_y=centre - 0.2,
        brightness=brightness,
        background=1.0,
        facets=(FACET,) * (2 * len(HARMONICS)),
    )
    return particle.vector(), window


def noise_covariance(config: ScenarioConfig, mean: np.ndarray) -> np.ndarray:
    """Covariance of a patch's counts: shot and read noise per pixel plus the film texture."""
    noise = np.diag(mean.ravel() + config.read_noise_counts**2)
    return noise + texture_covariance(config, mean.shape[0])


def fisher_information(config: ScenarioConfig, theta: np.ndarray, window: int) -> np.ndarray:
    """Fisher information of a patch about ``theta`` (Gaussian noise of that covariance)."""
    reference = config.diameter_median_px / 2
    gradients = []
    for k in range(theta.size):
        step = 1e-4 if k >= 7 else 1e-3
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        change = expected_counts(up, config, window, reference) - expected_counts(
            down, config, window, reference
        )
        gradients.append(change.ravel() / (2 * step))
    jacobian = np.array(gradients)
    mean = expected_counts(theta, config, window, reference)
    return jacobian @ np.linalg.solve(noise_covariance(config, mean), jacobian.T)


def radius_bound_px(config: ScenarioConfig, diameter_px: float, brightness: float) -> float:
    """Least standard deviation of an estimate of the equivalent radius (px)."""
    theta, window = nominal_particle(diameter_px, brightness)
    fisher = fisher_information(config, theta, window)
    fisher += np.diag(1.0 / prior_spreads(config, theta.size) ** 2)
    return float(math.sqrt(np.linalg.inv(fisher)[0, 0]))


def fitted_radius_spread(
    config: ScenarioConfig, diameter_px: float, brightness: float, trials: int, seed: int = 0
) -> tuple[float, float]:
    """Check that the bound can be reached: the spread of a maximum-likelihood fit's radius
    over ``trials`` noisy patches, and the bound for that fit's free parameters.

    The patches are drawn from the model with its facets at zero. The fit holds them there and
    leaves every other parameter free (size, aspect, angle, centre, brightness, background): a
    least-squares fit whitened by the noise covariance. Returns ``(fitted, bound)`` in px.
    """
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import least_squares

    theta, window = nominal_particle(diameter_px, brightness)
    theta[7:] = 0.0
    free = 7
    reference = config.diameter_median_px / 2

    def counts(p: np.ndarray) -> np.ndarray:
        return expected_counts(np.concatenate([p, theta[free:]]), config, window, reference)

    mean = counts(theta[:free])
    lower = cholesky(noise_covariance(config, mean), lower=True)
    fisher = fisher_information(config, theta, window)[:free, :free]
    rng = np.random.default_rng(seed)
    # Shot noise is drawn as Poisson; read noise and texture as the rest of the covariance.
    rest = cholesky(noise_covariance(config, mean) - np.diag(mean.ravel()), lower=True)
    radii = []
    for _ in range(trials):
        image = rng.poisson(mean) + (rest @ rng.standard_normal(mean.size)).reshape(mean.shape)
        # Unbounded, from the truth: range limits (e.g. aspect >= 1) would act as extra
        # knowledge and let the fit beat the bound it is checked against.
        fit = least_squares(
            lambda p, image=image: solve_triangular(lower, (counts(p) - image).ravel(), lower=True),
            theta[:free],
            x_scale="jac",
        )
        radii.append(fit.x[0])
    return float(np.std(radii)), float(math.sqrt(np.linalg.inv(fisher)[0, 0]))


def prior_spreads(config: ScenarioConfig, count: int) -> np.ndarray:
    """Standard deviation of each parameter over the scenario's own random ranges (``inf``:
    nothing known beforehand), for the Bayesian (Van Trees) form of the bound.

    Without them a few-pixel particle's facets and aspect, which its pixels barely show,
    would count as unknown to any extent, and the bound would blow up; every method may
    assume outlines about as round as the scenario makes them.
    """
    uniform = 1.0 / math.sqrt(12.0)  # standard deviation of a unit-width uniform range
    spreads = np.full(count, np.inf)
    spreads[1] = (config.aspect_ratio_max - 1.0) * uniform
    spreads[5] = (config.particle_brightness_max - config.particle_brightness_min) * uniform
    # Amplitude uniform in [0, irregularity] at a uniform phase: each of its cos/sin
    # coefficients has mean square irregularity² / 6.
    spreads[7:] = config.irregularity / math.sqrt(6.0)
    return spreads


def bound_table(config: ScenarioConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean |D error| % at the bound on a grid of diameters, averaged over brightness."""
    low, high = config.particle_brightness_min, config.particle_brightness_max
    brightness = low + (high - low) * (np.arange(BRIGHTNESS_POINTS) + 0.5) / BRIGHTNESS_POINTS
    diameters = np.array(BOUND_DIAMETERS_PX)
    errors = np.array(
        [np.mean([radius_bound_px(config, d, b) / (d / 2) for b in brightness]) for d in diameters]
    )
    return diameters, 100.0 * math.sqrt(2.0 / math.pi) * errors


def true_diameters(scenario: str, seed: int, size_px: int) -> np.ndarray:
    """Equivalent diameters (px) of the particles of one generated image, from its masks."""
    sample = generate(scenario, size_px, seed)
    truth = sample.truth
    areas = np.bincount(truth.labels.ravel(), minlength=truth.count + 1)[1:]
    particle = np.asarray(truth.class_ids) == truth.class_names.index("particle") + 1
    return 2.0 * np.sqrt(areas[particle & (areas > 0)] / math.pi)


def bin_name(low: float, high: float) -> str:
    return f"{low:g}-{high:g}px" if math.isfinite(high) else f">={low:g}px"


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
                engine = totals.setdefault(record["engine"], {})
                for key in (name, "all"):
                    sums = engine.setdefault(key, [0.0, 0.0])
                    sums[0] += row["matched"] * row["mean_abs_d_error_pct"]
                    sums[1] += row["matched"]
    return {
        engine: {name: round(s / n, 2) for name, (s, n) in bins.items() if n}
        for engine, bins in totals.items()
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
        "show the bound is reached (about 1 s a trial)",
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
            bins[bin_name(low, high)] = {
                "particles": int(inside.sum()),
                "bound_mean_abs_d_error_pct": round(float(per_particle[inside].mean()), 2),
            }
    engines = engine_errors(args.engines_json, args.scenario)
    record: dict[str, Any] = {
        "command": "python benchmarks/detection_bound.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "scenario": args.scenario,
        "seeds": args.seeds,
        "particles": int(diameters.size),
        "bound_mean_abs_d_error_pct": round(float(per_particle.mean()), 2),
        "bound_by_diameter": {
            f"{d:g}": round(float(e), 2) for d, e in zip(grid_d, grid_error, strict=True)
        },
        "bound_by_size": bins,
        "engines_json": str(args.engines_json.relative_to(ROOT))
        if args.engines_json.is_relative_to(ROOT)
        else str(args.engines_json),
        "engines_by_size": engines,
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
            value = record["engines_by_size"][engine].get(name)
            cells.append("–" if value is None else f"{value:.2f} ({value / bound:.1f}×)")
        lines.append(f"| {name} | {row['particles']} | {bound:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
