"""Size distributions: weighted statistics, bootstrap coverage, log-normal fit, bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.stats.distributions import (
    bootstrap_intervals,
    histogram_edges,
    lognormal_fit,
    point_statistics,
    weighted_histogram,
)


def test_weighted_means_match_hand_calculation() -> None:
    diameters = np.array([1.0, 1.0, 1.0, 2.0])
    stats = point_statistics(diameters)
    assert stats[("number", "mean")] == pytest.approx(1.25)
    assert stats[("area", "mean")] == pytest.approx((3 + 8) / (3 + 4))  # D[3,2]
    assert stats[("volume", "mean")] == pytest.approx((3 + 16) / (3 + 8))  # D[4,3]
    assert stats[("number", "median")] == pytest.approx(np.median(diameters))
    assert stats[("number", "sd")] == pytest.approx(np.std(diameters, ddof=1))


def test_number_quantiles_follow_the_midpoint_rule() -> None:
    diameters = np.arange(1.0, 11.0)
    stats = point_statistics(diameters)
    assert stats[("number", "d50")] == pytest.approx(5.5)
    assert stats[("number", "d10")] == pytest.approx(1.5)
    assert stats[("number", "d90")] == pytest.approx(9.5)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    mu, sigma, n, repetitions = math.log(5.0), 0.4, 150, 200
    true_mean = math.exp(mu + sigma**2 / 2)
    true_median = math.exp(mu)
    covered_mean = covered_median = 0
    for seed in range(repetitions):
        sample = np.random.default_rng(seed).lognormal(mu, sigma, n)
        intervals = bootstrap_intervals(sample, resamples=1000, seed=seed).intervals
        low, high = intervals[("number", "mean")]
        covered_mean += low <= true_mean <= high
        low, high = intervals[("number", "median")]
        covered_median += low <= true_median <= high
    assert 0.90 <= covered_mean / repetitions <= 0.985
    assert 0.90 <= covered_median / repetitions <= 0.99


def test_binned_bootstrap_agrees_with_the_exact_bootstrap() -> None:
    sample = np.random.default_rng(7).lognormal(1.0, 0.35, 5000)
    exact = bootstrap_intervals(sample, 1000, seed=1, max_bins=5000)
    binned = bootstrap_intervals(sample, 1000, seed=2, max_bins=500)
    assert exact.exact and not binned.exact
    for key, (low, high) in exact.intervals.items():
        width = high - low
        b_low, b_high = binned.intervals[key]
        assert abs(b_low - low) < 0.2 * width, key
        assert abs(b_high - high) < 0.2 * width, key


def test_bootstrap_is_seeded_and_needs_two_values() -> None:
    sample = np.random.default_rng(0).normal(10, 1, 50)
    first = bootstrap_intervals(sample, 200, seed=4)
    assert first.intervals == bootstrap_intervals(sample, 200, seed=4).intervals
    assert bootstrap_intervals(np.array([3.0]), 200) is None


def test_lognormal_fit_recovers_parameters_and_flags_a_bad_fit() -> None:
    rng = np.random.default_rng(11)
    sample = rng.lognormal(math.log(8.0), 0.25, 20000)
    fit = lognormal_fit(sample)
    assert fit.geometric_mean == pytest.approx(8.0, rel=0.01)
    assert fit.geometric_sd == pytest.approx(math.exp(0.25), rel=0.01)
    assert fit.ks_p_value > 0.01
    bimodal = np.concatenate([rng.lognormal(0, 0.05, 500), rng.lognormal(2, 0.05, 500)])
    assert lognormal_fit(bimodal).ks_p_value < 1e-6
    assert lognormal_fit(np.array([2.0])) is None
    same = lognormal_fit(np.array([2.0, 2.0, 2.0]))
    assert same.sigma == 0 and same.ks_p_value is None


def test_histogram_bins_are_clipped_to_5_to_60() -> None:
    rng = np.random.default_rng(1)
    assert histogram_edges(rng.normal(10, 1, 3)).size - 1 == 5
    assert histogram_edges(rng.normal(10, 1, 200_000)).size - 1 == 60
    assert histogram_edges(rng.normal(10, 1, 100), bins=7).size - 1 == 7
    constant = histogram_edges(np.full(10, 4.0))
    assert constant[0] < 4.0 < constant[-1]


def test_weighted_histogram_fractions_sum_to_one() -> None:
    diameters = np.array([1.0, 2.0, 2.0, 3.0])
    bins = weighted_histogram(diameters, np.array([0.5, 1.5, 2.5, 3.5]))
    assert bins["count"].tolist() == [1, 2, 1]
    assert bins["area_fraction"].tolist() == pytest.approx([1 / 18, 8 / 18, 9 / 18])
    for name in ("number_fraction", "area_fraction", "volume_fraction"):
        assert bins[name].sum() == pytest.approx(1.0)
