"""Exports: CSV column contract, XLSX sheets, JSON, run card, atomic failure."""

from __future__ import annotations

import json

import openpyxl
import pandas as pd
import pytest

from pipelines.errors import InvalidInput
from pipelines.fileio import sha256_file
from pipelines.formats.labelme import write_labelme
from pipelines.stats import compute_statistics, write_statistics
from pipelines.stats.export import card_path

from .builders import circle, document, square


@pytest.fixture
def labelme_file(tmp_path):
    shapes = [
        circle("particle", 40, 40, 6),
        square("particle", 100, 100, 10),
        circle("atom", 150, 30, 1),
    ]
    return write_labelme(tmp_path / "sample.json", document(shapes))


def test_csv_starts_with_the_contract_columns_and_reads_with_pandas(labelme_file, tmp_path):
    result = compute_statistics([labelme_file], nm_per_px=0.2)
    written = write_statistics(result, tmp_path / "table.csv")
    table = tmp_path / "table.csv"
    assert written == [table, card_path(table)]
    header = table.read_text().splitlines()[0].split(",")
    assert header[:7] == ["label", "area_px", "diameter_px", "cx", "cy", "area_nm2", "diameter_nm"]
    assert "image" in header and "object_id" in header
    frame = pd.read_csv(table)
    assert len(frame) == 3
    assert frame["diameter_nm"].tolist() == pytest.approx((frame["diameter_px"] * 0.2).tolist())
    card = json.loads(card_path(table).read_text())
    assert card["table"] == "table.csv"
    assert card["run_card"]["sources"][0]["labelme_sha256"] == sha256_file(labelme_file)


def test_uncalibrated_csv_has_exactly_the_px_columns_first(labelme_file, tmp_path):
    write_statistics(compute_statistics([labelme_file]), tmp_path / "px.csv")
    header = (tmp_path / "px.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["label", "area_px", "diameter_px", "cx", "cy", "image"]
    assert not any(name.endswith(("_nm", "_nm2")) for name in header)


def test_xlsx_has_objects_summary_and_run_card_sheets(labelme_file, tmp_path):
    result = compute_statistics([labelme_file], nm_per_px=0.2)
    write_statistics(result, tmp_path / "stats.xlsx")
    book = openpyxl.load_workbook(tmp_path / "stats.xlsx", read_only=True)
    assert {"objects", "summary", "per image", "distributions", "run card"} <= set(book.sheetnames)
    objects = pd.read_excel(tmp_path / "stats.xlsx", sheet_name="objects")
    assert list(objects.columns[:7]) == [
        "label",
        "area_px",
        "diameter_px",
        "cx",
        "cy",
        "area_nm2",
        "diameter_nm",
    ]
    card = pd.read_excel(tmp_path / "stats.xlsx", sheet_name="run card")
    fields = dict(zip(card["field"], card["value"], strict=True))
    assert float(fields["calibration.image.png.nm_per_px"]) == 0.2
    assert fields["calibration.image.png.source"] == "user"


def test_json_has_run_card_and_no_nan(labelme_file, tmp_path):
    result = compute_statistics([labelme_file])
    write_statistics(result, tmp_path / "stats.json")
    text = (tmp_path / "stats.json").read_text()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON")

    data = json.loads(text, parse_constant=refuse)
    assert next(iter(data)) == "run_card"
    assert len(data["objects"]) == 3
    atom = next(r for r in data["summary"] if r["label"] == "atom")
    assert atom["nn_mean_px"] is None and "no nearest neighbour" in atom["notes"]


def test_unknown_suffix_is_refused_and_writes_nothing(labelme_file, tmp_path):
    result = compute_statistics([labelme_file])
    with pytest.raises(InvalidInput, match=r"\.csv, \.xlsx, \.json"):
        write_statistics(result, tmp_path / "stats.txt")
    assert list(tmp_path.iterdir()) == [labelme_file]


def test_failed_csv_write_leaves_no_file_and_no_sidecar(labelme_file, tmp_path):
    result = compute_statistics([labelme_file])
    broken = result.objects.copy()
    object.__setattr__(result, "objects", _Unwritable(broken))
    with pytest.raises(RuntimeError):
        write_statistics(result, tmp_path / "table.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.json"]


class _Unwritable(pd.DataFrame):
    """A table whose serialisation fails, as a full disk or a bad value would."""

    def to_csv(self, *args, **kwargs):  # type: ignore[override]
        raise RuntimeError("disk full")
