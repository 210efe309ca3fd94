"""The floor benchmark's cases: label sets and image variants, on a tiny network."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.detection_floor import CLEAN_IMAGE, parse_case, run_case, table

TINY = {"channels": [4, 8], "patch_px": 32, "batch_size": 2, "max_steps": 3, "train_seconds": 30.0}


def test_cases_parse_and_bad_ones_say_the_format() -> None:
    assert parse_case("particles+sites:1:all") == ("particles+sites", 1, "all")
    for bad in ("particles:0", "particles:x:crops", "particles:0:everything"):
        with pytest.raises(argparse.ArgumentTypeError, match="SCENARIO:SEED:VARIANT"):
            parse_case(bad)


def test_all_labels_train_on_every_object_and_clean_changes_the_image(tmp_path) -> None:
    every = run_case("particles", 0, "all", tmp_path / "a", size_px=512, config=TINY)
    crops = run_case("particles", 0, "crops", tmp_path / "c", size_px=512, config=TINY)
    clean = run_case("particles", 0, "clean", tmp_path / "n", size_px=512, config=TINY)
    assert every["labelled_objects"] == every["same"]["particle"]["true"]
    assert crops["labelled_objects"] < every["labelled_objects"]
    assert crops["image_overrides"] == {} and clean["image_overrides"] == CLEAN_IMAGE
    assert every["train_steps"] == 3
    for record in (every, crops, clean):
        assert set(record) >= {"same", "unseen"}
        assert 0.0 <= record["unseen"]["all"]["f1"] <= 1.0
    rows = table([every, crops, clean]).splitlines()
    assert len(rows) == 5 and rows[2].startswith("| particles | 0 | all | ")
