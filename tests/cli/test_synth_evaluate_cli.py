"""``nocode-ml synth`` and ``nocode-ml evaluate`` through the real CLI entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nocode_ml.cli import main
from pipelines.formats.labelme import read_labelme


def _cli_command() -> list[str]:
    script = Path(sys.executable).parent / "nocode-ml"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nocode_ml"]


def test_synth_writes_three_files_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sample"
    code = main(
        ["synth", str(out), "--scenario", "particles+sites", "--seed", "2", "--size", "256"]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["image.tif", "labels.json", "truth.json"]
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert "particles+sites seed 2" in line and "0.25 nm/px" in line and "labelled" in line


def test_synth_override_and_bad_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", str(tmp_path / "a"), "--size", "128", "--set", "scale_bar=false"]) == 0
    capsys.readouterr()
    assert main(["synth", str(tmp_path / "b"), "--scenario", "nope", "--size", "128"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown scenario 'nope'") and "\n" not in err
    assert not (tmp_path / "b").exists()


def test_evaluate_prints_a_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["synth", str(tmp_path), "--size", "256", "--seed", "1"])
    capsys.readouterr()
    truth, labels = str(tmp_path / "truth.json"), str(tmp_path / "labels.json")
    assert main(["evaluate", truth, truth]) == 0
    table = capsys.readouterr().out
    assert "precision" in table and "|D err| %" in table and "mean D err %" in table
    particle_row = next(line for line in table.splitlines() if line.startswith("particle"))
    assert particle_row.count("1.000") >= 5  # precision, recall, F1, AP, AP50

    # user labels cover only the crops (objects cut by a crop border are clipped, so some
    # fall below IoU 0.5 against the whole object): high precision, partial recall
    assert main(["evaluate", labels, truth, "--json", "--iou", "0.5"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["iou_threshold"] == 0.5
    overall = scores["overall"]
    outlines = len(read_labelme(labels).object_shapes)
    assert overall["predicted_count"] == outlines
    assert overall["true_positives"] + overall["false_positives"] == outlines
    assert overall["precision"] >= 0.5 and 0.0 < overall["recall"] < 1.0
    assert [row["class_name"] for row in scores["per_class"]] == ["particle"]

    # held out: outside the crops the user labels predict nothing
    assert main(["evaluate", labels, truth, "--json", "--held-out", labels, "--no-ap"]) == 0
    held_out = json.loads(capsys.readouterr().out)["overall"]
    assert held_out["true_positives"] == 0 and held_out["ap"] is None


def test_evaluate_refuses_a_file_that_is_not_labelme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["synth", str(tmp_path), "--size", "128"])
    capsys.readouterr()
    other = tmp_path / "coco.json"
    other.write_text(json.dumps({"images": [], "annotations": []}))
    assert main(["evaluate", str(other), str(tmp_path / "truth.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: coco.json is not a LabelMe file") and "\n" not in err
    assert (
        main(
            ["evaluate", str(tmp_path / "truth.json"), str(tmp_path / "truth.json"), "--iou", "1.5"]
        )
        == 2
    )
    assert "IoU threshold" in capsys.readouterr().err
    truth = str(tmp_path / "truth.json")
    assert main(["evaluate", truth, truth, "--held-out", truth]) == 2
    assert "has no crop rectangles" in capsys.readouterr().err


def test_installed_console_script_runs_synth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = subprocess.run(
        [*_cli_command(), "synth", str(tmp_path), "--scenario", "brightfield", "--size", "128"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert "brightfield seed 0: 128x128 px at 0.5 nm/px" in made.stdout
    truth = str(tmp_path / "truth.json")
    assert main(["evaluate", truth, truth, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["f1"] == 1.0


def test_synth_into_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    assert main(["synth", str(taken), "--size", "64"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {taken} is a file, not a folder; give a folder name"
    )
    assert main(["synth", str(taken / "sub"), "--size", "64"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_synth_files_carry_their_pixel_size_for_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first statistics command gives nm, as the image is calibrated."""
    assert main(["synth", str(tmp_path / "demo"), "--size", "256"]) == 0
    for name in ("truth.json", "labels.json"):
        capsys.readouterr()
        assert main(["stats", str(tmp_path / "demo" / name)]) == 0
        out = capsys.readouterr().out
        assert "sizes in nm" in out and "no calibration" not in out
        meta = read_labelme(tmp_path / "demo" / name).extra["nocode_ml"]
        assert meta == {"nm_per_px": 0.25, "calibration_source": "synthetic generator"}
