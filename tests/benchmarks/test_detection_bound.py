"""The diameter-error bound: its image model is the generator's, and it behaves as a bound."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from benchmarks import detection_bound
from benchmarks.detection_bound import (
    ANGLE,
    ASPECT,
    BRIGHTNESS,
    CENTRE_X,
    CENTRE_Y,
    FIRST_FACET,
    RADIUS,
    at_true_size_mix,
    engine_errors,
    expected_counts,
    fitted_radius_spread,
    radius_bound_px,
    random_particle,
    texture_covariance,
)
from pipelines.synthetic.geometry import ObjectLayout
from pipelines.synthetic.render import rasterise_objects, support
from pipelines.synthetic.scenarios import get_scenario

PARTICLES = get_scenario("particles")


def one_particle(theta: np.ndarray, amplitudes: np.ndarray, phases: np.ndarray) -> ObjectLayout:
    """The generator's description of the particle ``theta`` describes (facets as amplitudes
    and phases)."""

    def row(value: float) -> np.ndarray:
        return np.array([value])

    radius, aspect = theta[RADIUS], theta[ASPECT]
    return ObjectLayout(
        centre_x=row(theta[CENTRE_X]),
        centre_y=row(theta[CENTRE_Y]),
        semi_major_px=row(radius * math.sqrt(aspect)),
        semi_minor_px=row(radius / math.sqrt(aspect)),
        angle_rad=row(theta[ANGLE]),
        harmonic_amplitudes=amplitudes[None],
        harmonic_phases=phases[None],
        brightness=row(theta[BRIGHTNESS]),
        is_site=np.array([False]),
    )


def test_the_model_draws_a_particle_as_the_generator_does(monkeypatch) -> None:
    theta, window = random_particle(PARTICLES, 14.0, 1.7, np.random.default_rng(4))
    coefficients = theta[FIRST_FACET:].reshape(-1, 2)  # (cos, sin) per order
    amplitudes = np.hypot(coefficients[:, 0], coefficients[:, 1])
    phases = np.arctan2(-coefficients[:, 1], coefficients[:, 0])
    assert amplitudes.max() > 0.01  # the facets are really drawn, and checked below
    reference = PARTICLES.diameter_median_px / 2
    layout = one_particle(theta, amplitudes, phases)
    signal, _ = rasterise_objects(layout, window, window, reference)
    generator = PARTICLES.dose_counts * (
        1.0 + ndimage.gaussian_filter(signal.astype(np.float64), PARTICLES.probe_blur_px)
    )
    smooth = expected_counts(theta, PARTICLES, window)
    monkeypatch.setattr(detection_bound, "SUPERSAMPLE", 1)  # at pixel centres, as the generator
    np.testing.assert_allclose(expected_counts(theta, PARTICLES, window), generator, rtol=1e-5)
    # Averaged over each pixel: the same signal in all, spread a little differently at the rim.
    excess, smooth_excess = generator - PARTICLES.dose_counts, smooth - PARTICLES.dose_counts
    assert smooth_excess.sum() == pytest.approx(excess.sum(), rel=0.01)
    assert np.abs(smooth_excess - excess).max() < 0.05 * excess.max()


def test_texture_covariance_is_the_generated_texture_after_blur() -> None:
    _, texture = support(PARTICLES, 512, 512, np.random.default_rng(3))
    blurred = ndimage.gaussian_filter(texture.astype(np.float64), PARTICLES.probe_blur_px)
    counts = blurred[8:-8, 8:-8] * PARTICLES.dose_counts
    covariance = texture_covariance(PARTICLES, 3)
    assert covariance[4, 4] == pytest.approx(counts.var(), rel=0.05)  # the centre pixel
    neighbour = np.mean(counts[:, 1:] * counts[:, :-1]) - counts.mean() ** 2
    assert covariance[4, 5] == pytest.approx(neighbour, rel=0.05)


@pytest.fixture
def coarse(monkeypatch) -> None:
    """Fewer sub-pixel samples and positions: the same model, a few times faster."""
    monkeypatch.setattr(detection_bound, "SUPERSAMPLE", 4)
    monkeypatch.setattr(detection_bound, "POSITIONS", 2)


def test_the_bound_shrinks_with_size_and_with_dose(coarse) -> None:
    def relative(config: object, diameter: float, brightness: float) -> float:
        rng = np.random.default_rng(0)
        return radius_bound_px(config, diameter, brightness, rng) / (diameter / 2)

    small = relative(PARTICLES, 8.0, 1.5)
    assert 0 < relative(PARTICLES, 16.0, 1.5) < small
    assert relative(PARTICLES, 8.0, 2.2) < small
    assert relative(get_scenario("particles", dose_counts=300.0), 8.0, 1.5) < small


def test_engine_errors_weigh_bins_by_matched_particles(tmp_path) -> None:
    def record(engine: str, small: tuple[int, float], large: tuple[int, float]) -> dict:
        bins = {
            "0-8px": {"matched": small[0], "mean_abs_d_error_pct": small[1]},
            ">=16px": {"matched": large[0], "mean_abs_d_error_pct": large[1]},
        }
        return {
            "scenario": "particles",
            "engine": engine,
            "same": {"particle_d_error_by_size": bins},
            "unseen": {"particle_d_error_by_size": bins},
        }

    path = tmp_path / "results.json"
    other = dict(record("unet", (5, 50.0), (5, 50.0)), scenario="uneven")
    nothing_small = record("unet", (0, 0.0), (0, 0.0))  # bins with no match hold no error
    nothing_small["same"]["particle_d_error_by_size"]["0-8px"]["mean_abs_d_error_pct"] = None
    records = [record("unet", (10, 10.0), (30, 2.0)), other, nothing_small]
    path.write_text(json.dumps({"records": records}))
    errors = engine_errors(path, "particles")
    assert errors == {"unet": {"0-8px": 10.0, ">=16px": 2.0, "all": 4.0}}
    # Weighed as 30 true small particles and 10 large ones instead of the matched 10 and 30.
    truth = {"0-8px": {"particles": 30}, ">=16px": {"particles": 10}}
    assert at_true_size_mix(errors, truth) == {"unet": 8.0}
    assert at_true_size_mix(errors, {**truth, "8-16px": {"particles": 5}}) == {}
    assert engine_errors(tmp_path / "missing.json", "particles") == {}


def test_main_writes_the_table_and_refuses_bright_field(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(detection_bound, "BOUND_DIAMETERS_PX", (6.0, 12.0, 24.0))
    monkeypatch.setattr(detection_bound, "BRIGHTNESS_POINTS", 1)
    monkeypatch.setattr(detection_bound, "POSITIONS", 2)
    monkeypatch.setattr(detection_bound, "SUPERSAMPLE", 4)
    out = tmp_path / "bound.json"
    missing = tmp_path / "no-engines.json"
    argv = ["--seeds", "0", "--size", "512", "--engines-json", str(missing), "--output", str(out)]
    assert detection_bound.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["particles"] == sum(b["particles"] for b in record["bound_by_size"].values())
    assert 0 < record["bound_by_diameter"]["24"] < record["bound_by_diameter"]["6"]
    assert "| all |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        detection_bound.main(["--scenario", "brightfield", "--output", str(out)])
    assert "bright-field" in capsys.readouterr().err


def test_a_maximum_likelihood_fit_reaches_the_bound(coarse) -> None:
    fitted, bound = fitted_radius_spread(PARTICLES, 12.0, 1.5, trials=48)
    assert 0 < bound < 0.5
    # The fit's errors have heavy tails: over 8 seeds of 48 trials the ratio spanned 0.73-1.27
    # (about 1.0 over 200). A fit far below the bound would disprove it, one far above would
    # say the bound is not reached.
    assert 0.7 < fitted / bound < 1.35
