"""Dispersion and nanomaterial share against hand calculations."""

from __future__ import annotations

import pytest

from pipelines.errors import InvalidInput
from pipelines.stats import METALS, StatsOptions, compute_statistics
from pipelines.stats.catalysis import dispersion, get_metal

from .builders import circle, document


def test_metal_table_has_the_required_metals_with_consistent_atomic_volumes() -> None:
    assert set(METALS) == {"Pd", "Pt", "Rh", "Ru", "Au", "Ag", "Ni", "Cu", "Co"}
    # v_m = M / (rho N_A): Pd 106.42 g/mol, 12.02 g/cm³ -> 14.70 Å³.
    assert METALS["Pd"].volume_per_atom_a3 == pytest.approx(106.42 / 12.02 / 0.60221, rel=0.01)
    assert get_metal("pt").symbol == "Pt"
    with pytest.raises(InvalidInput, match="Pd, Pt"):
        get_metal("Xx")


def test_dispersion_of_uniform_3_nm_pd_particles_matches_hand_calculation() -> None:
    # Hemispheres of d = 3 nm = 30 Å: D = 6 v_m / (a_m d) = 6 * 14.70 / (7.93 * 30) = 0.3708.
    hand = 6 * 14.70 / (7.93 * 30)
    shapes = [circle("Pd", 30 + 40 * i, 100, 15) for i in range(4)]  # 30 px at 0.1 nm/px
    result = compute_statistics([document(shapes)], 0.1, StatsOptions(metal="Pd"))
    row = result.summary.iloc[0]
    assert row["sauter_diameter_nm"] == pytest.approx(3.0)
    assert row["dispersion"] == pytest.approx(hand, rel=1e-9)
    assert row["dispersion_ci_low"] == pytest.approx(hand) and row["metal"] == "Pd"
    assert "Bergeret" in " ".join(result.run_card["notes"])


def test_dispersion_uses_the_surface_weighted_mean_diameter() -> None:
    # Two sizes 2 nm and 4 nm: d_VS = (8 + 64) / (4 + 16) = 3.6 nm.
    shapes = [circle("Pt", 40, 40, 10), circle("Pt", 120, 120, 20)]
    row = compute_statistics([document(shapes)], 0.1, StatsOptions(metal="Pt")).summary.iloc[0]
    assert row["dispersion"] == pytest.approx(6 * 15.10 / (8.07 * 36.0))


def test_dispersion_below_one_nanometre_is_clipped_and_flagged() -> None:
    value, clipped = dispersion(0.5, METALS["Pd"])
    assert value == 1.0 and clipped
    row = compute_statistics(
        [document([circle("Pd", 20, 20, 2), circle("Pd", 60, 60, 2)])],
        0.1,
        StatsOptions(metal="Pd"),
    ).summary.iloc[0]
    assert row["dispersion"] == 1.0 and "clipped" in row["notes"]


def test_dispersion_without_calibration_is_empty_with_a_reason() -> None:
    row = compute_statistics(
        [document([circle("Pd", 20, 20, 5), circle("Pd", 60, 60, 5)])],
        options=StatsOptions(metal="Pd"),
    ).summary.iloc[0]
    assert row["dispersion"] != row["dispersion"]  # NaN
    assert "need nm per px" in row["notes"]


def test_nanomaterial_share_counts_objects_with_a_dimension_up_to_100_nm() -> None:
    # 1 nm/px: diameters 50, 80, 150 and 300 nm -> 2 of 4 at most 100 nm.
    shapes = [
        circle("p", 100, 100, 25),
        circle("p", 300, 100, 40),
        circle("p", 600, 300, 75),
        circle("p", 400, 600, 150),
    ]
    row = compute_statistics([document(shapes, 1000, 1000)], 1.0).summary.iloc[0]
    assert row["nano_share_feret_min"] == pytest.approx(0.5)
    assert row["nano_share_diameter"] == pytest.approx(0.5)
