"""The diameter-error bound: its image model is the generator's, and it behaves as a bound."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from benchmarks import detection_bound
from benchmarks.detection_bound import (
    engine_errors,
    expected_counts,
    fitted_radius_spread,
    radius_bound_px,
    texture_covariance,
)
from pipelines.synthetic.geometry import HARMONICS, ObjectLayout
from pipelines.synthetic.render import rasterise_objects, support
from pipelines.synthetic.scenarios import get_scenario

PARTICLES = get_scenario("particles")


def one_particle(radius: float, aspect: float, angle: float, x: float, y: float) -> ObjectLayout:
    def row(value: float) -> np.ndarray:
        return np.array([value])

    return ObjectLayout(
        centre_x=row(x),
        centre_y=row(y),
        semi_major_px=row(radius * math.sqrt(aspect)),
        semi_minor_px=row(radius / math.sqrt(aspect)),
        angle_rad=row(angle),
        harmonic_amplitudes=np.zeros((1, HARMONICS.size)),
        harmonic_phases=np.zeros((1, HARMONICS.size)),
        brightness=row(1.5),
        is_site=np.array([False]),
    )


def test_the_model_draws_a_particle_as_the_generator_does() -> None:
    window, radius, aspect, angle = 41, 7.0, 1.2, 0.4
    x, y = 20.3, 19.8
    reference = PARTICLES.diameter_median_px / 2
    layout = one_particle(radius, aspect, angle, x, y)
    signal, _ = rasterise_objects(layout, window, window, reference)
    generator = PARTICLES.dose_counts * (
        1.0 + ndimage.gaussian_filter(signal.astype(np.float64), PARTICLES.probe_blur_px)
    )
    theta = np.array([radius, aspect, angle, x, y, 1.5, 1.0] + [0.0] * (2 * HARMONICS.size))
    model = expected_counts(theta, PARTICLES, window, reference)
    excess_generator = generator - PARTICLES.dose_counts
    excess_model = model - PARTICLES.dose_counts
    # Same integrated signal; pixel by pixel they differ only by where the generator samples
    # the profile (pixel centres, the model averages sub-pixel samples).
    assert excess_model.sum() == pytest.approx(excess_generator.sum(), rel=0.02)
    assert np.abs(excess_model - excess_generator).max() < 0.05 * excess_generator.max()


def test_texture_covariance_is_the_generated_texture_after_blur() -> None:
    _, texture = support(PARTICLES, 512, 512, np.random.default_rng(3))
    blurred = ndimage.gaussian_filter(texture.astype(np.float64), PARTICLES.probe_blur_px)
    counts = blurred[8:-8, 8:-8] * PARTICLES.dose_counts
    covariance = texture_covariance(PARTICLES, 3)
    assert covariance[4, 4] == pytest.approx(counts.var(), rel=0.05)  # the centre pixel
    neighbour = np.mean(counts[:, 1:] * counts[:, :-1]) - counts.mean() ** 2
    assert covariance[4, 5] == pytest.approx(neighbour, rel=0.05)


def test_the_bound_shrinks_with_size_and_with_dose() -> None:
    small = radius_bound_px(PARTICLES, 8.0, 1.5) / 4.0
    large = radius_bound_px(PARTICLES, 16.0, 1.5) / 8.0
    assert 0 < large < small
    brighter = radius_bound_px(PARTICLES, 8.0, 2.2) / 4.0
    assert brighter < small
    more_dose = get_scenario("particles", dose_counts=300.0)
    assert radius_bound_px(more_dose, 8.0, 1.5) / 4.0 < small


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
    records = [record("unet", (10, 10.0), (30, 2.0)), other]
    path.write_text(json.dumps({"records": records}))
    errors = engine_errors(path, "particles")
    assert errors == {"unet": {"0-8px": 10.0, ">=16px": 2.0, "all": 4.0}}
    assert engine_errors(tmp_path / "missing.json", "particles") == {}


def test_main_writes_the_table_and_refuses_bright_field(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(detection_bound, "BOUND_DIAMETERS_PX", (6.0, 12.0, 24.0))
    monkeypatch.setattr(detection_bound, "BRIGHTNESS_POINTS", 1)
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


def test_a_maximum_likelihood_fit_reaches_the_bound() -> None:
    fitted, bound = fitted_radius_spread(PARTICLES, 8.0, 1.5, trials=16)
    assert 0 < bound < 0.5
    # 16 trials pin a spread to about ±20 %; a fit far below the bound would disprove it.
    assert 0.6 < fitted / bound < 1.5
