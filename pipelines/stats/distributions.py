"""Size distributions: weighted moments and quantiles, bootstrap intervals, log-normal fit.

Weightings: ``number`` (each object counts once), ``area`` (weight ∝ D², the projected area)
and ``volume`` (weight ∝ D³, what dispersion and mass depend on). The area-weighted mean
diameter is the Sauter diameter D[3,2]; the volume-weighted mean is D[4,3].

Quantiles use the midpoint ("Hazen") rule on cumulative weights, which for the number
weighting gives ``numpy.median``'s median.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WEIGHTINGS = ("number", "area", "volume")
_WEIGHT_POWER = {"number": 0, "area": 2, "volume": 3}
STATISTICS = ("mean", "median", "sd", "d10", "d50", "d90")
_QUANTILES = {"median": 0.5, "d10": 0.1, "d50": 0.5, "d90": 0.9}
DEFAULT_BOOTSTRAP_BINS = 2000


def histogram_edges(
    values: np.ndarray, bins: int | str = "auto", min_bins: int = 5, max_bins: int = 60
) -> np.ndarray:
    """Bin edges for a size histogram: numpy's rule (``'auto'``, ``'fd'``…) clipped to
    ``[min_bins, max_bins]`` bins, or exactly ``bins`` bins when an integer is given."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.array([0.0, 1.0])
    low, high = float(values.min()), float(values.max())
    if high <= low:
        half = max(abs(low) * 0.05, 0.5)
        return np.linspace(low - half, high + half, min_bins + 1)
    if isinstance(bins, str):
        count = np.histogram_bin_edges(values, bins=bins).size - 1
        count = int(np.clip(count, min_bins, max_bins))
    else:
        count = max(1, int(bins))
    return np.linspace(low, high, count + 1)


def weighted_histogram(diameters: np.ndarray, edges: np.ndarray) -> dict[str, np.ndarray]:
    """Counts and number/area/volume fractions per bin (area ∝ D², volume ∝ D³)."""
    diameters = np.asarray(diameters, dtype=np.float64)
    counts, _ = np.histogram(diameters, bins=edges)
    result = {"count": counts.astype(np.int64)}
    for weighting in WEIGHTINGS:
        weights = diameters ** _WEIGHT_POWER[weighting]
        summed, _ = np.histogram(diameters, bins=edges, weights=weights)
        total = weights.sum()
        result[f"{weighting}_fraction"] = summed / total if total > 0 else np.zeros_like(summed)
    return result


def weighted_quantile(sorted_values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Quantile ``q`` of sorted values with weights (midpoint rule on the cumulative weights)."""
    if sorted_values.size == 1:
        return float(sorted_values[0])
    cumulative = np.cumsum(weights)
    positions = (cumulative - 0.5 * weights) / cumulative[-1]
    return float(np.interp(q, positions, sorted_values))


def point_statistics(diameters: np.ndarray) -> dict[tuple[str, str], float]:
    """``{(weighting, statistic): value}`` for a sample of diameters (any unit, all > 0)."""
    values = np.sort(np.asarray(diameters, dtype=np.float64))
    result: dict[tuple[str, str], float] = {}
    if values.size == 0:
        return result
    for weighting in WEIGHTINGS:
        weights = values ** _WEIGHT_POWER[weighting]
        total = weights.sum()
        mean = float((weights * values).sum() / total)
        result[(weighting, "mean")] = mean
        if weighting == "number":
            sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
        else:
            sd = float(math.sqrt(max(0.0, (weights * (values - mean) ** 2).sum() / total)))
        result[(weighting, "sd")] = sd
        for name, q in _QUANTILES.items():
            result[(weighting, name)] = weighted_quantile(values, weights, q)
    return result


@dataclass(frozen=True)
class BootstrapIntervals:
    """Percentile bootstrap intervals ``{(weighting, statistic): (low, high)}``.

    ``resamples`` drawn with ``seed``; ``exact`` is False when the sample was larger than the
    number of bins and resampled through equal-count bins (see :func:`bootstrap_intervals`).
    """

    intervals: dict[tuple[str, str], tuple[float, float]]
    resamples: int
    confidence: float
    seed: int
    exact: bool


def bootstrap_intervals(
    diameters: np.ndarray,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_bins: int = DEFAULT_BOOTSTRAP_BINS,
) -> BootstrapIntervals | None:
    """Percentile bootstrap CIs for every (weighting, statistic) of :func:`point_statistics`.

    A bootstrap resample is a multinomial draw of how often each object appears, so we draw
    the ``(resamples, n)`` count matrix at once (``Generator.multinomial``) and compute every
    statistic from it with matrix products — no resampled copies of the data. Beyond
    ``max_bins`` objects, the sorted sample is cut into ``max_bins`` equal-count bins and the
    counts are drawn per bin: bin moments carry each bin's members exactly, and quantiles are
    read from the members inside the bin, so the intervals match the exact bootstrap to well
    within their own Monte-Carlo noise (tested). Returns None for fewer than 2 objects.
    """
    values = np.sort(np.asarray(diameters, dtype=np.float64))
    n = values.size
    if n < 2 or resamples < 1:
        return None
    rng = np.random.default_rng(seed)
    bin_start = _bootstrap_bins(values, max_bins)
    n_bins = bin_start.size - 1
    members = np.diff(bin_start)
    counts = rng.multinomial(n, members / n, size=resamples).astype(np.float64)
    samples: dict[tuple[str, str], np.ndarray] = {}
    first_member = bin_start[:-1]
    for weighting in WEIGHTINGS:
        weights = values ** _WEIGHT_POWER[weighting]
        mean_w = np.add.reduceat(weights, first_member) / members
        mean_wx = np.add.reduceat(weights * values, first_member) / members
        mean_wxx = np.add.reduceat(weights * values * values, first_member) / members
        total = counts @ mean_w
        mean = (counts @ mean_wx) / total
        second = (counts @ mean_wxx) / total
        variance = np.maximum(second - mean * mean, 0.0)
        if weighting == "number":
            variance *= n / (n - 1)
        samples[(weighting, "mean")] = mean
        samples[(weighting, "sd")] = np.sqrt(variance)
        cumulative = np.cumsum(counts * mean_w, axis=1)
        bin_weight = counts * mean_w
        for name, q in _QUANTILES.items():
            target = q * total
            index = np.minimum((cumulative < target[:, None]).sum(axis=1), n_bins - 1)
            rows = np.arange(resamples)
            before = cumulative[rows, index] - bin_weight[rows, index]
            with np.errstate(divide="ignore", invalid="ignore"):
                fraction = np.clip((target - before) / bin_weight[rows, index], 0.0, 1.0)
            fraction = np.nan_to_num(fraction)
            offset = np.minimum((fraction * members[index]).astype(np.int64), members[index] - 1)
            samples[(weighting, name)] = values[first_member[index] + offset]
    alpha = 1.0 - confidence
    intervals = {
        key: (
            float(np.quantile(sample, alpha / 2)),
            float(np.quantile(sample, 1 - alpha / 2)),
        )
        for key, sample in samples.items()
    }
    return BootstrapIntervals(intervals, resamples, confidence, seed, exact=n <= max_bins)


def _bootstrap_bins(sorted_values: np.ndarray, max_bins: int) -> np.ndarray:
    """Bin boundaries (indices into the sorted sample) for the binned bootstrap.

    Half the boundaries split the sample into equal counts, half into equal shares of D³, so
    the few large objects that dominate area- and volume-weighted statistics sit in small
    bins of their own. Every object is its own bin when the sample is small enough.
    """
    n = sorted_values.size
    if n <= max_bins:
        return np.arange(n + 1, dtype=np.int64)
    half = max(1, max_bins // 2)
    by_count = np.linspace(0, n, half + 1).round().astype(np.int64)
    volume = np.cumsum(sorted_values**3)
    by_volume = np.searchsorted(volume, np.linspace(0, volume[-1], half + 1)[1:-1], side="right")
    return np.unique(np.concatenate([by_count, by_volume]).astype(np.int64))


@dataclass(frozen=True)
class LogNormalFit:
    """Maximum-likelihood log-normal fit of diameters.

    ``mu``/``sigma``: mean and sd of ln(D/unit); geometric mean ``exp(mu)`` (in the unit of the
    data) and geometric sd ``exp(sigma)`` (a factor). ``ks_statistic``/``ks_p_value``:
    Kolmogorov–Smirnov test against the fitted curve; the p-value is optimistic because the
    parameters come from the same data (Lilliefors), so read it as a screen, not a proof.
    """

    mu: float
    sigma: float
    geometric_mean: float
    geometric_sd: float
    ks_statistic: float | None
    ks_p_value: float | None
    n: int


def lognormal_fit(diameters: np.ndarray) -> LogNormalFit | None:
    """Fit a log-normal to positive diameters; None below 2 values."""
    values = np.asarray(diameters, dtype=np.float64)
    values = values[values > 0]
    if values.size < 2:
        return None
    logs = np.log(values)
    mu, sigma = float(logs.mean()), float(logs.std())
    ks_statistic = ks_p = None
    if sigma > 0:
        ks_statistic, ks_p = _ks_normal(logs, mu, sigma)
    return LogNormalFit(mu, sigma, math.exp(mu), math.exp(sigma), ks_statistic, ks_p, values.size)


def _ks_normal(values: np.ndarray, mu: float, sigma: float) -> tuple[float, float]:
    """Kolmogorov–Smirnov distance to N(mu, sigma) and its p-value (Stephens' approximation
    of the Kolmogorov distribution, accurate for n ≥ 5; scipy.special keeps imports light)."""
    from scipy.special import kolmogorov, ndtr

    n = values.size
    cdf = ndtr((np.sort(values) - mu) / sigma)
    steps = np.arange(1, n + 1) / n
    distance = float(max((steps - cdf).max(), (cdf - (steps - 1.0 / n)).max()))
    root = math.sqrt(n)
    return distance, float(min(1.0, kolmogorov((root + 0.12 + 0.11 / root) * distance)))


def lognormal_pdf(diameters: np.ndarray, fit: LogNormalFit) -> np.ndarray:
    """Probability density of the fitted log-normal at ``diameters`` (per unit diameter)."""
    d = np.asarray(diameters, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.exp(-((np.log(d) - fit.mu) ** 2) / (2 * fit.sigma**2)) / (
            d * fit.sigma * math.sqrt(2 * math.pi)
        )
    return np.where(d > 0, density, 0.0)
