"""The post-processing benchmark scores one trained model as trained, unmerged, untrimmed and
without the turned pass."""

from __future__ import annotations

from benchmarks.detection_postprocess import TOUCHING, run_case, table

TINY = {"channels": [4, 8], "patch_px": 32, "batch_size": 2, "max_steps": 3, "train_seconds": 30.0}


def test_one_model_is_scored_in_each_mode(tmp_path) -> None:
    record = run_case(0, TOUCHING, tmp_path, size_px=512, config=TINY)
    assert record["merge_classes"] == [True, False]  # few labelled particles, many sites
    assert len(record["core_shares"]) == 2 and record["core_shares"][0] == 0.0  # particles
    assert record["labelled"]["particle"] < 10 <= record["labelled"]["single_site"]
    for image in ("same", "unseen"):
        for mode in ("default", "not_merged", "not_trimmed", "not_turned"):
            scores = record[f"{image}_{mode}"]
            assert scores["particle"]["true"] == record["true"]["particle"] or image == "unseen"
            assert 0.0 <= scores["single_site"]["f1"] <= 1.0
    rows = table([record]).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| 0 | ")
    columns = [row.replace("\\|", "").count("|") for row in rows]  # escaped pipes are text
    assert columns == [16] * 4
    # Older records, made before the turn, still print (with dashes).
    older = {k: v for k, v in record.items() if not k.endswith("not_turned")}
    for row, turn_cells in ((rows[2], "number"), (table([older]).splitlines()[2], "–")):
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        not_turned_f1 = [cells[6], cells[12]]  # particle and site F1 without the turn
        assert all((c == "–") == (turn_cells == "–") for c in not_turned_f1)
