"""``nocode-ml stats`` through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from nocode_ml.cli import main
from pipelines.formats.labelme import Shape, new_document, write_labelme


def _file(tmp_path, name: str = "sample.json", shift: float = 0.0):
    shapes = [
        Shape("particle", [[40 + shift, 40], [46 + shift, 40]], "circle"),
        Shape("particle", [[100, 100], [110, 100], [110, 110], [100, 110]]),
        Shape("particle", [[150, 60], [156, 60]], "circle"),
        Shape("atom", [[20, 150]], "point"),
        Shape("crop", [[0, 0], [199, 199]], "rectangle"),
    ]
    return write_labelme(tmp_path / name, new_document(shapes, "sample.png", 200, 200))


def test_prints_the_per_class_summary(tmp_path, capsys) -> None:
    assert main(["stats", str(_file(tmp_path)), "--nm-per-px", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "4 objects in 1 image(s)" in out
    assert "mean D nm" in out and "per um2" in out
    lines = [line.split() for line in out.splitlines()]
    particle = next(line for line in lines if line and line[0] == "particle")
    assert particle[1] == "3"


def test_uncalibrated_output_says_px(tmp_path, capsys) -> None:
    assert main(["stats", str(_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "sizes in px" in out and "mean D px" in out and "per Mpx" in out


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".json"])
def test_writes_each_export_format(tmp_path, capsys, suffix: str) -> None:
    out = tmp_path / f"table{suffix}"
    assert main(["stats", str(_file(tmp_path)), "--nm-per-px", "0.5", "--out", str(out)]) == 0
    assert out.is_file()
    if suffix == ".csv":
        frame = pd.read_csv(out)
        assert list(frame.columns[:7]) == [
            "label",
            "area_px",
            "diameter_px",
            "cx",
            "cy",
            "area_nm2",
            "diameter_nm",
        ]
        assert (tmp_path / "table.card.json").is_file()
    if suffix == ".json":
        assert "run_card" in json.loads(out.read_text())


def test_exclude_border_and_card(tmp_path, capsys) -> None:
    path = _file(tmp_path, shift=-40.0)  # the first circle now crosses the left edge
    assert main(["stats", str(path), "--exclude-border", "--card"]) == 0
    out = capsys.readouterr().out
    assert "3 counted (exclude_border)" in out
    assert "run card" in out and "labelme_sha256" in out


def test_several_files_are_pooled(tmp_path, capsys) -> None:
    first, second = _file(tmp_path, "a.json"), _file(tmp_path, "b.json", shift=5.0)
    out = tmp_path / "pooled.csv"
    assert main(["stats", str(first), str(second), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pooled over all images:" in printed and "per image:" in printed
    assert "sample.png #2" in printed  # two files naming the same image stay apart
    frame = pd.read_csv(out)
    assert len(frame) == 8
    assert frame["object_id"].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.json"], "cannot open"),
        (["{file}", "--out", "{tmp}/table.txt"], "choose a file ending in"),
        (["{file}", "--guard-px", "5"], "--guard-px needs --guard-frame"),
        (["{file}", "--metal", "Zz"], "no atomic data for metal"),
        (["{file}", "--html", "{tmp}/report.pdf"], "must be an .html file"),
        (["{file}", "--html", "{file}/report.html"], "is a file, not a folder"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path, capsys, arguments: list[str], message: str
) -> None:
    path = _file(tmp_path)
    before = set(tmp_path.iterdir())
    argv = ["stats", *(a.format(file=path, tmp=tmp_path) for a in arguments)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert set(tmp_path.iterdir()) == before


def test_invalid_json_file_gives_exit_2(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"shapes": [')
    assert main(["stats", str(broken), "--out", str(tmp_path / "t.csv")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.card.json").exists()


def test_negative_pixel_size_is_an_argument_error(tmp_path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "nocode_ml", "stats", str(_file(tmp_path)), "--nm-per-px", "-2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    assert "must be a positive number" in process.stderr


def test_html_report_and_guard_frame(tmp_path, capsys) -> None:
    report = tmp_path / "report.html"
    argv = ["stats", str(_file(tmp_path)), "--nm-per-px", "0.5", "--guard-frame", "--metal", "Pd"]
    assert main([*argv, "--html", str(report)]) == 0
    out = capsys.readouterr().out
    assert "(guard_frame)" in out and f"wrote {report}" in out
    text = report.read_text(encoding="utf-8")
    assert "Run card" in text and "guard frame" in text


def test_html_report_onto_a_folder_is_refused_before_any_work(tmp_path, capsys) -> None:
    path = _file(tmp_path)
    (tmp_path / "report.html").mkdir()
    assert main(["stats", str(path), "--html", str(tmp_path / "report.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("report.html is a folder; give a file name such as report.html")
