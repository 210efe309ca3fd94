"""compute_statistics end to end on analytic cases (issue 3 foundation)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import InvalidInput, InvalidLabels
from pipelines.formats.labelme import Shape, write_labelme
from pipelines.stats import Calibration, StatsOptions, compute_statistics, stats_from_labelme

from .builders import circle, document, lattice_document, regular_polygon, square


def test_circle_and_fine_polygon_give_d_equal_2r(tmp_path) -> None:
    doc = document([circle("a", 50, 50, 10), regular_polygon("b", 120, 120, 10, n=2000)])
    path = write_labelme(tmp_path / "two.json", doc)
    result = stats_from_labelme(path)
    objects = result.objects.set_index("label")
    assert objects.loc["a", "area_px"] == pytest.approx(math.pi * 100)
    assert objects.loc["a", "diameter_px"] == pytest.approx(20.0)
    assert objects.loc["b", "diameter_px"] == pytest.approx(20.0, rel=1e-5)
    assert objects.loc["b", "cx"] == pytest.approx(120.0)


def test_square_lattice_gives_known_density_and_nearest_neighbour_distance() -> None:
    spacing, rows, cols = 20.0, 10, 12
    result = compute_statistics([lattice_document(spacing, rows, cols)], nm_per_px=0.5)
    row = result.summary.iloc[0]
    assert row["counted"] == rows * cols
    assert row["density_per_mpx"] == pytest.approx(1e6 / spacing**2)
    # 1 px = 0.5 nm, so one lattice cell is (10 nm)² = 1e-4 µm².
    assert row["density_per_um2"] == pytest.approx(1.0 / (spacing * 0.5 / 1000) ** 2)
    assert row["nn_mean_px"] == pytest.approx(spacing)
    assert row["nn_median_nm"] == pytest.approx(spacing * 0.5)
    assert row["nn_edge_mean_px"] == pytest.approx(spacing - 4.0)
    assert row["clark_evans_r"] > 1.5


def test_calibration_converts_every_nm_column() -> None:
    doc = document([square("p", 10, 10, 8), circle("p", 100, 100, 5)])
    plain = compute_statistics([doc])
    scaled = compute_statistics([doc], nm_per_px=0.25)
    assert "diameter_nm" not in plain.objects.columns
    assert "area_nm2" not in plain.objects.columns
    obj = scaled.objects
    assert np.allclose(obj["diameter_nm"], obj["diameter_px"] * 0.25)
    assert np.allclose(obj["area_nm2"], obj["area_px"] * 0.0625)
    assert np.allclose(obj["cx_nm"], obj["cx"] * 0.25)
    summary = scaled.summary.iloc[0]
    assert summary["mean_diameter_nm"] == pytest.approx(summary["mean_diameter_px"] * 0.25)
    assert summary["density_per_um2"] == pytest.approx(2 / (200 * 200 * 0.0625 / 1e6))
    assert scaled.run_card["calibration"]["image.png"] == {"nm_per_px": 0.25, "source": "user"}


def test_uncalibrated_results_say_px_and_never_guess_nm() -> None:
    result = compute_statistics([document([square("p", 10, 10, 8), square("p", 50, 50, 8)])])
    row = result.summary.iloc[0]
    assert result.size_unit == "px"
    assert math.isnan(row["density_per_um2"])
    assert "no calibration" in row["notes"]
    assert not any(c.endswith("_nm") for c in result.objects.columns)
    assert result.run_card["calibration"]["image.png"]["source"] == "none"


def test_calibration_is_read_from_file_metadata(tmp_path) -> None:
    doc = document([square("p", 10, 10, 8)])
    doc.extra["nocode_ml"] = {"nm_per_px": 0.4, "calibration_source": "image metadata (a.dm4)"}
    path = write_labelme(tmp_path / "meta.json", doc)
    result = compute_statistics([path])
    assert result.objects["diameter_nm"].iloc[0] == pytest.approx(
        result.objects["diameter_px"].iloc[0] * 0.4
    )
    source = result.run_card["calibration"]["image.png"]["source"]
    assert source.startswith("file metadata") and "a.dm4" in source
    user = compute_statistics([path], nm_per_px=Calibration(0.5, "user"))
    assert user.run_card["calibration"]["image.png"]["nm_per_px"] == 0.5


def test_border_exclusion_leaves_out_objects_touching_the_edge() -> None:
    shapes = [square("p", -0.5, 40, 6), square("p", 80, 80, 6), square("p", 190, 100, 9.5)]
    doc = document(shapes)
    flagged = compute_statistics([doc])
    assert flagged.objects["touches_border"].tolist() == [True, False, True]
    assert flagged.summary.iloc[0]["counted"] == 3
    excluded = compute_statistics([doc], options=StatsOptions(counting_rule="exclude_border"))
    row = excluded.summary.iloc[0]
    assert row["counted"] == 1
    assert row["touching_border"] == 2
    assert excluded.objects["counted"].tolist() == [False, True, False]
    assert "exclude" in excluded.run_card["counting_rule"]["rule"]


def test_all_objects_on_the_border_give_a_clear_note() -> None:
    doc = document([square("p", -0.5, 40, 6), square("p", 190, 100, 9.5)])
    result = compute_statistics([doc], options=StatsOptions(counting_rule="exclude_border"))
    row = result.summary.iloc[0]
    assert row["counted"] == 0
    assert "all 2 objects touch the border" in row["notes"]


def test_empty_document_gives_zero_objects_not_a_crash(tmp_path) -> None:
    result = compute_statistics([document([])])
    assert len(result.objects) == 0
    assert len(result.summary) == 0
    assert list(result.objects.columns[:5]) == ["label", "area_px", "diameter_px", "cx", "cy"]
    only_crop = document([Shape("crop", [[0, 0], [50, 50]], "rectangle")])
    assert len(compute_statistics([only_crop]).objects) == 0


def test_single_object_reports_no_neighbour_with_a_note() -> None:
    result = compute_statistics([document([circle("p", 50, 50, 5)])], nm_per_px=1.0)
    row = result.summary.iloc[0]
    assert row["counted"] == 1
    assert math.isnan(row["nn_mean_px"])
    assert math.isnan(row["std_diameter_px"])
    assert "no nearest neighbour" in row["notes"]
    assert "one sized object" in row["notes"]
    assert row["mean_diameter_nm"] == pytest.approx(10.0)


def test_grouped_shapes_are_one_object_and_classes_are_separate() -> None:
    shapes = [
        square("p", 10, 10, 4, group_id=7),
        square("p", 30, 10, 4, group_id=7),
        square("p", 100, 100, 4),
        Shape("atom", [[150, 150]], "point"),
    ]
    result = compute_statistics([document(shapes)])
    assert result.summary["label"].tolist() == ["atom", "p"]
    p = result.summary.set_index("label").loc["p"]
    assert p["counted"] == 2
    assert p["mean_area_px"] == pytest.approx((32 + 16) / 2)
    atom = result.summary.set_index("label").loc["atom"]
    assert atom["counted"] == 1 and atom["without_area"] == 1
    assert result.objects["object_id"].tolist() == [1, 2, 3]


def test_zero_area_polygon_is_counted_and_left_out_of_sizes(tmp_path) -> None:
    doc = document([Shape("p", [[0, 0], [5, 5], [10, 10]]), square("p", 50, 50, 10)])
    path = write_labelme(tmp_path / "degenerate.json", doc)
    row = compute_statistics([path]).summary.iloc[0]
    assert row["counted"] == 2 and row["without_area"] == 1
    assert row["mean_diameter_px"] == pytest.approx(2 * math.sqrt(100 / math.pi))
    assert "without area" in row["notes"]


def test_self_intersecting_polygon_is_refused_with_its_number(tmp_path) -> None:
    bow_tie = Shape("p", [[0, 0], [10, 10], [10, 0], [0, 10]])
    path = write_labelme(tmp_path / "bow.json", document([square("p", 50, 50, 5), bow_tie]))
    with pytest.raises(InvalidLabels, match=r"object 2 .*self-intersecting"):
        compute_statistics([path])


def test_bad_inputs_raise_user_errors(tmp_path) -> None:
    with pytest.raises(InvalidInput, match="no LabelMe files"):
        compute_statistics([])
    with pytest.raises(InvalidLabels, match="cannot open"):
        compute_statistics([tmp_path / "missing.json"])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidLabels, match="not valid JSON"):
        compute_statistics([tmp_path / "bad.json"])
    with pytest.raises(InvalidInput, match="positive"):
        compute_statistics([document([])], nm_per_px=-1.0)
    with pytest.raises(InvalidInput, match="counting rule"):
        StatsOptions(counting_rule="some")


def test_region_restricts_analysis_and_area() -> None:
    doc = lattice_document(20.0, 10, 10)
    result = compute_statistics([doc], options=StatsOptions(region_px=(-0.5, -0.5, 99.5, 99.5)))
    row = result.summary.iloc[0]
    assert row["counted"] == 25
    assert row["analysed_area_px"] == pytest.approx(100 * 100)
    assert int(result.objects["analysed"].sum()) == 25


def test_results_are_deterministic_and_json_safe() -> None:
    rng = np.random.default_rng(3)
    shapes = [circle("p", *rng.uniform(10, 190, 2), rng.uniform(1, 4)) for _ in range(60)]
    doc = document(shapes)
    first = compute_statistics([doc], nm_per_px=0.3)
    second = compute_statistics([doc], nm_per_px=0.3)
    pd.testing.assert_frame_equal(first.summary, second.summary)
    from pipelines.stats.export import result_to_json

    json.dumps(result_to_json(first), allow_nan=False)


@pytest.mark.parametrize("scale", [np.float32(0.25), np.int64(2)])
def test_numpy_pixel_size_is_one_value_for_all_images(scale: float) -> None:
    """What a script computes a pixel size with: numpy scalars, not Python floats."""
    result = compute_statistics([document([circle("p", 50, 50, 5)])], nm_per_px=scale)
    assert result.run_card["calibration"]["image.png"]["nm_per_px"] == pytest.approx(scale)


def test_mean_area_leaves_out_objects_without_area_like_every_size() -> None:
    shapes = [square("p", 10, 10, 4), square("p", 30, 10, 4)]
    shapes += [Shape("p", [[50, 50]], "point"), Shape("p", [[70, 70]], "point")]
    row = compute_statistics([document(shapes)], nm_per_px=2.0).summary.iloc[0]
    assert row["without_area"] == 2
    assert row["mean_area_px"] == pytest.approx(16.0)
    assert row["mean_area_nm2"] == pytest.approx(64.0)
    assert row["mean_diameter_px"] == pytest.approx(2 * math.sqrt(16.0 / math.pi))
