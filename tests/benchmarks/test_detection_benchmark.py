"""The detection benchmark's diameter-error breakdown by object size."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detection import d_error_by_size
from pipelines.formats.masks import InstanceMasks


def _disks(disks: list[tuple[int, int, int]], size: int = 96) -> InstanceMasks:
    """Disks ``(row, col, radius)``, all ``particle``."""
    rows, cols = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    for index, (row, col, radius) in enumerate(disks, start=1):
        labels[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = index
    return InstanceMasks(labels, np.ones(len(disks), np.int32), ["particle"])


def test_errors_land_in_the_bin_of_the_true_diameter() -> None:
    truth = _disks([(15, 15, 3), (50, 50, 10)])  # D ~ 6 px and ~ 20 px
    pred = _disks([(15, 15, 3), (50, 50, 11)])  # the small one exact, the big one larger
    bins = d_error_by_size(pred, truth, "particle")
    assert bins["0-8px"] == {"matched": 1, "mean_abs_d_error_pct": 0.0}
    assert bins["8-16px"] == {"matched": 0, "mean_abs_d_error_pct": None}
    big_truth = np.count_nonzero(truth.labels == 2)
    big_pred = np.count_nonzero(pred.labels == 2)
    expected = 100 * (np.sqrt(big_pred / big_truth) - 1)
    assert bins[">=16px"]["matched"] == 1
    assert bins[">=16px"]["mean_abs_d_error_pct"] == pytest.approx(expected, abs=0.01)


def test_an_unknown_class_has_no_matches() -> None:
    truth = _disks([(15, 15, 3)])
    bins = d_error_by_size(truth, truth, "single_site")
    assert all(row["matched"] == 0 for row in bins.values())
