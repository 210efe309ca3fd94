"""The merging benchmark scores one trained model with and without fragment merging."""

from __future__ import annotations

from benchmarks.detection_merge import TOUCHING, run_case, table

TINY = {"channels": [4, 8], "patch_px": 32, "batch_size": 2, "max_steps": 3, "train_seconds": 30.0}


def test_one_model_is_scored_merged_and_not_merged(tmp_path) -> None:
    record = run_case(0, TOUCHING, tmp_path, size_px=512, config=TINY)
    assert record["merge_classes"] == [True, False]  # few labelled particles, many sites
    assert record["labelled"]["particle"] < 10 <= record["labelled"]["single_site"]
    for image in ("same", "unseen"):
        for mode in ("merged", "not_merged"):
            scores = record[f"{image}_{mode}"]
            assert scores["particle"]["true"] == record["true"]["particle"] or image == "unseen"
            assert 0.0 <= scores["single_site"]["f1"] <= 1.0
    rows = table([record]).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| 0 | ")
