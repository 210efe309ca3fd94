"""Several images, run card provenance, Plotly figures and the self-contained HTML report."""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from pipelines.fileio import sha256_file
from pipelines.formats.labelme import write_labelme
from pipelines.stats import StatsOptions, compute_statistics, format_run_card, write_html_report
from pipelines.stats.report import build_html_report

from .builders import circle, document


def _field(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    shapes = [circle("particle", *rng.uniform(20, 180, 2), rng.uniform(2, 6)) for _ in range(n)]
    shapes += [circle("cluster", *rng.uniform(20, 180, 2), 1.0) for _ in range(5)]
    return document(shapes)


@pytest.fixture
def two_files(tmp_path):
    paths = []
    for seed, name in ((1, "a"), (2, "b")):
        doc = _field(seed)
        doc.image_path = f"{name}.png"
        Image.new("L", (200, 200)).save(tmp_path / f"{name}.png")
        if name == "b":
            doc.extra["nocode_ml"] = {
                "nm_per_px": 0.5,
                "model": {"id": "unet-7", "sha256": "ab" * 32, "thresholds": {"score": 0.5}},
            }
        paths.append(write_labelme(tmp_path / f"{name}.json", doc))
    return paths


def test_pooled_table_names_image_and_object_in_every_row(two_files) -> None:
    result = compute_statistics(two_files, nm_per_px=[0.5, None])
    objects = result.objects
    assert objects["image"].tolist() == ["a.png"] * 45 + ["b.png"] * 45
    assert objects.groupby("image")["object_id"].apply(list).tolist() == [list(range(1, 46))] * 2
    assert set(result.per_image["image"]) == {"a.png", "b.png"}
    pooled = result.summary.set_index("label").loc["particle"]
    assert pooled["counted"] == 80 and pooled["images"] == 2
    assert "per image" in pooled["notes"]
    per_image = result.per_image.set_index(["image", "label"])
    assert np.isfinite(per_image.loc[("a.png", "particle"), "clark_evans_r"])
    distributions = result.distributions
    assert {"a.png", "b.png", "all images"} == set(distributions["image"])


def test_run_card_records_hashes_calibration_sources_and_model(two_files) -> None:
    result = compute_statistics(two_files, nm_per_px=[0.5, None])
    card = result.run_card
    a, _ = card["sources"]
    assert a["labelme_sha256"] == sha256_file(two_files[0])
    assert a["image_sha256"] == sha256_file(two_files[0].parent / "a.png")
    assert card["calibration"]["a.png"]["source"] == "user"
    assert card["calibration"]["b.png"]["source"].startswith("file metadata")
    assert card["models"] == {
        "b.png": {"id": "unet-7", "sha256": "ab" * 32, "thresholds": {"score": 0.5}}
    }
    assert card["counting_rule"]["rule"] == "all"
    assert {"numpy", "scipy", "pandas"} <= set(card["versions"])
    text = format_run_card(card)
    assert "models.b.png.thresholds.score" in text


def test_mixed_calibration_pools_nm_only_where_every_image_is_calibrated(two_files) -> None:
    result = compute_statistics(two_files)  # only b.png carries a pixel size
    pooled = result.summary.set_index("label").loc["particle"]
    assert np.isnan(pooled["density_per_um2"])
    assert "mean_diameter_nm" not in result.summary.columns  # never a guessed nm value
    assert "no calibration" in pooled["notes"]
    per_image = result.per_image.set_index(["image", "label"])
    assert np.isfinite(per_image.loc[("b.png", "particle"), "mean_diameter_nm"])
    assert result.size_unit == "px"


def test_figures_are_plotly_figures_with_units(two_files) -> None:
    result = compute_statistics(two_files, nm_per_px=0.5)
    figures = result.figures
    histogram = figures.histogram("particle", bins=12)
    assert isinstance(histogram, go.Figure)
    assert len(histogram.data[0].x) == 12
    assert "(nm)" in histogram.layout.xaxis.title.text
    assert histogram.data[1].name.startswith("log-normal fit")
    cumulative = figures.cumulative("particle")
    assert [a.text.split(" =")[0] for a in cumulative.layout.annotations] == ["D10", "D50", "D90"]
    assert figures.nn_histogram("particle", edge=True).data[0].name == "edge to edge"
    ripley = figures.ripley("particle")
    assert {"particle · a.png", "particle · b.png", "random (L = r)"} == {
        t.name for t in ripley.data
    }
    centres = figures.centres_map("b.png")
    assert centres.layout.yaxis.range[0] > centres.layout.yaxis.range[1]  # y points down
    assert figures.lognormal_qq("particle").layout.xaxis.type == "log"


def test_html_report_is_self_contained(two_files, tmp_path) -> None:
    result = compute_statistics(two_files, nm_per_px=0.5, options=StatsOptions(metal="Pd"))
    path = write_html_report(result, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", text)  # nothing fetched from the network
    assert text.count("plotly.js v") >= 1 and text.count("Plotly.newPlot") >= 10
    for heading in ("Summary per class", "Per image", "Run card", "Figures"):
        assert heading in text
    assert sha256_file(two_files[0]) in text
    assert "dispersion" in text


def test_html_report_for_no_objects_still_builds() -> None:
    text = build_html_report(compute_statistics([document([])]))
    assert "no objects" in text and "Run card" in text


def test_report_of_several_images_with_no_objects() -> None:
    """A batch prediction that found nothing still gets its report."""
    empty = [document([]), document([])]
    empty[1].image_path = "other.png"
    page = build_html_report(compute_statistics(empty))
    assert "<html" in page
