"""Evaluation: matching, P/R/F1, diameter error and COCO AP on hand-built cases."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import pytest

from pipelines.errors import InvalidInput
from pipelines.evaluation import (
    coco_mask_ap,
    evaluate_documents,
    evaluate_instances,
    overlap_table,
    shape_scores,
)
from pipelines.formats.labelme import Box, LabelMeDocument, Shape, crop_rectangle, new_document
from pipelines.formats.masks import InstanceMasks, instances_to_shapes

SIZE = 64


def _squares(
    squares: list[tuple[int, int, int]], classes: list[str] | None = None
) -> InstanceMasks:
    """Instances from ``(top, left, side)`` squares; classes default to ``particle``."""
    labels = np.zeros((SIZE, SIZE), dtype=np.int32)
    for index, (top, left, side) in enumerate(squares, start=1):
        labels[top : top + side, left : left + side] = index
    classes = classes or ["particle"] * len(squares)
    names = sorted(set(classes)) or ["particle"]
    class_ids = np.asarray([names.index(c) + 1 for c in classes], dtype=np.int32)
    return InstanceMasks(labels, class_ids, names)


TRUTH = [(2, 2, 10), (2, 20, 10), (20, 2, 10), (20, 20, 10)]


def test_perfect_prediction() -> None:
    result = evaluate_instances(_squares(TRUTH), _squares(TRUTH))
    row = result.overall
    assert (row.true_positives, row.false_positives, row.false_negatives) == (4, 0, 0)
    assert row.precision == row.recall == row.f1 == 1.0
    assert row.mean_abs_diameter_error_pct == 0.0 and row.mean_diameter_bias_pct == 0.0
    assert row.ap == pytest.approx(1.0) and row.ap50 == pytest.approx(1.0)
    assert result.row("particle").f1 == 1.0


def test_one_missed_and_one_false_positive() -> None:
    missed = evaluate_instances(_squares(TRUTH[:3]), _squares(TRUTH)).overall
    assert (missed.true_positives, missed.false_negatives, missed.false_positives) == (3, 1, 0)
    assert missed.recall == pytest.approx(0.75) and missed.precision == 1.0
    assert missed.f1 == pytest.approx(2 * 3 / (2 * 3 + 1))
    extra = evaluate_instances(_squares([*TRUTH, (45, 45, 8)]), _squares(TRUTH)).overall
    assert (extra.true_positives, extra.false_positives, extra.false_negatives) == (4, 1, 0)
    assert extra.precision == pytest.approx(0.8) and extra.recall == 1.0


def test_shift_below_iou_half_is_a_miss_and_a_false_positive() -> None:
    # 10x10 square shifted by 4 px: intersection 60, union 140, IoU 0.43
    pred = _squares([(2, 6, 10), *TRUTH[1:]])
    row = evaluate_instances(pred, _squares(TRUTH)).overall
    assert (row.true_positives, row.false_positives, row.false_negatives) == (3, 1, 1)
    # shifted by 2 px: IoU 80/120 = 0.67, still a match
    row = evaluate_instances(_squares([(2, 4, 10), *TRUTH[1:]]), _squares(TRUTH)).overall
    assert row.true_positives == 4
    assert row.mean_iou == pytest.approx((3 + 80 / 120) / 4)


def test_diameter_error_of_a_known_scale_up() -> None:
    truth = _squares([(10, 10, 10)])
    pred = _squares([(9, 9, 12)])  # area 144 vs 100: D ratio 1.2, IoU 0.69
    row = evaluate_instances(pred, truth).overall
    assert row.true_positives == 1
    assert row.mean_abs_diameter_error_pct == pytest.approx(20.0)
    assert row.mean_diameter_bias_pct == pytest.approx(20.0)
    shrunk = evaluate_instances(_squares([(11, 11, 8)]), truth).overall  # D ratio 0.8
    assert shrunk.mean_diameter_bias_pct == pytest.approx(-20.0)
    assert shrunk.mean_abs_diameter_error_pct == pytest.approx(20.0)


def test_median_diameter_error_ignores_one_merged_outlier() -> None:
    truth = _squares([(10, 10, 10), (30, 10, 10), (50, 10, 10)])
    # two exact, one 12x12 (D +20 %): mean 6.7 %, median 0 %
    pred = _squares([(10, 10, 10), (30, 10, 10), (49, 9, 12)])
    row = evaluate_instances(pred, truth).overall
    assert row.mean_abs_diameter_error_pct == pytest.approx(20.0 / 3)
    assert row.median_abs_diameter_error_pct == pytest.approx(0.0)


def test_size_statistics_errors_count_every_object() -> None:
    truth = _squares([(10, 10, 10), (30, 10, 10), (50, 10, 10)])
    # One 10x10 found exactly, one 12x12 (D +20 %), one missed, one extra 5x5 (never matched).
    pred = _squares([(10, 10, 10), (29, 9, 12), (40, 40, 5)], ["particle"] * 3)
    row = evaluate_instances(pred, truth).row("particle")
    d = 2 * np.sqrt(np.array([100.0, 144.0, 25.0]) / np.pi)
    true_d = 2 * np.sqrt(100.0 / np.pi)
    assert row.mean_size_error_pct == pytest.approx((d.mean() / true_d - 1) * 100)
    assert row.median_size_error_pct == pytest.approx(0.0)
    assert row.mean_abs_diameter_error_pct == pytest.approx(10.0)  # the two matched pairs
    empty = evaluate_instances(_squares([]), truth).overall
    assert empty.mean_size_error_pct is None and empty.median_size_error_pct is None


def test_two_classes_are_matched_per_class_and_overall() -> None:
    truth = _squares(TRUTH, ["particle", "particle", "single_site", "single_site"])
    pred = _squares(TRUTH, ["particle", "single_site", "single_site", "single_site"])
    result = evaluate_instances(pred, truth)
    assert result.overall.true_positives == 4  # class ignored
    particle, site = result.row("particle"), result.row("single_site")
    assert (particle.true_positives, particle.false_negatives, particle.false_positives) == (
        1,
        1,
        0,
    )
    assert (site.true_positives, site.false_positives, site.false_negatives) == (2, 1, 0)
    assert particle.recall == 0.5 and site.precision == pytest.approx(2 / 3)
    assert [row.class_name for row in result.per_class] == ["particle", "single_site"]
    assert result.overall.ap == pytest.approx(1.0)
    assert particle.ap is not None and particle.ap < 1.0


def test_class_only_in_prediction_has_no_recall() -> None:
    truth = _squares(TRUTH[:2])
    pred = _squares(TRUTH[:3], ["particle", "particle", "dust"])
    dust = evaluate_instances(pred, truth).row("dust")
    assert dust.true_count == 0 and dust.false_positives == 1
    assert dust.recall is None and dust.precision == 0.0 and dust.f1 == 0.0 and dust.ap is None


def test_matching_is_one_to_one() -> None:
    truth = _squares([(10, 10, 10)])
    labels = np.zeros((SIZE, SIZE), dtype=np.int32)
    labels[10:20, 10:15] = 1  # two halves of one object: each IoU 0.5
    labels[10:20, 15:20] = 2
    pred = InstanceMasks(labels, np.array([1, 1], np.int32), ["particle"])
    row = evaluate_instances(pred, truth).overall
    assert (row.true_positives, row.false_positives, row.false_negatives) == (1, 1, 0)
    lenient = evaluate_instances(pred, truth, iou_threshold=0.3).overall
    assert lenient.true_positives == 1


def test_empty_cases() -> None:
    empty = _squares([])
    result = evaluate_instances(empty, _squares(TRUTH))
    assert result.overall.recall == 0.0 and result.overall.precision is None
    assert result.overall.f1 == 0.0 and result.overall.ap == 0.0
    nothing = evaluate_instances(empty, empty).overall
    assert nothing.f1 is None and nothing.ap is None


def test_ap_follows_the_scores() -> None:
    truth = _squares([(10, 10, 10)])
    pred = _squares([(10, 10, 10), (40, 40, 10)])  # a match and a false positive
    confident_miss = evaluate_instances(pred, truth, pred_scores=[0.4, 0.9]).overall
    confident_hit = evaluate_instances(pred, truth, pred_scores=[0.9, 0.4]).overall
    assert confident_hit.ap50 == pytest.approx(1.0)
    assert confident_miss.ap50 == pytest.approx(0.5, abs=0.01)
    assert confident_hit.f1 == confident_miss.f1
    with pytest.raises(InvalidInput, match="scores"):
        evaluate_instances(pred, truth, pred_scores=[1.0])


def test_grouped_coco_ap_equals_one_whole_image_cocoeval() -> None:
    """Splitting into overlap groups must not change COCO's answer (no tied scores here)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    truth_squares = [
        (int(r), int(c), int(s))
        for r, c, s in zip(
            rng.integers(0, 50, 12), rng.integers(0, 50, 12), rng.integers(4, 12, 12), strict=True
        )
    ]
    truth = _squares(truth_squares)
    pred_squares = [(min(r + int(rng.integers(-3, 4)), 55), c, s) for r, c, s in truth_squares[2:]]
    pred_squares.append((50, 50, 6))
    pred = _squares(pred_squares)
    scores = rng.uniform(size=pred.count)
    ours, _ = coco_mask_ap(_dense(truth), _dense(pred), scores, ["particle"])

    def encode(instances: InstanceMasks) -> list[dict]:
        stack = np.stack([instances.labels == i for i in range(1, instances.labels.max() + 1)], -1)
        return mask_utils.encode(np.asfortranarray(stack.astype(np.uint8)))

    truth_dense, pred_dense = _dense(truth), _dense(pred)
    annotations = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "segmentation": rle,
            "iscrowd": 0,
            "area": float(mask_utils.area(rle)),
            "bbox": list(mask_utils.toBbox(rle)),
        }
        for i, rle in enumerate(encode(truth_dense))
    ]
    detections = [
        {"image_id": 1, "category_id": 1, "segmentation": rle, "score": float(scores[i])}
        for i, rle in enumerate(encode(pred_dense))
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": [{"id": 1, "height": SIZE, "width": SIZE}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "particle"}],
        }
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(detections), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert ours["particle"][0] == pytest.approx(evaluator.stats[0])
    assert ours["particle"][1] == pytest.approx(evaluator.stats[1])


def _dense(instances: InstanceMasks) -> InstanceMasks:
    """Drop instances hidden by later ones and renumber, as the evaluator does."""
    present = [i for i in range(1, instances.count + 1) if (instances.labels == i).any()]
    labels = np.zeros_like(instances.labels)
    for new, old in enumerate(present, start=1):
        labels[instances.labels == old] = new
    return InstanceMasks(labels, instances.class_ids[np.array(present) - 1], instances.class_names)


def test_overlap_table_counts_intersections() -> None:
    table = overlap_table(_squares([(0, 0, 10)]).labels, _squares([(5, 5, 10)]).labels)
    assert table.intersection_px.tolist() == [25]
    assert table.iou.tolist() == pytest.approx([25 / 175])
    with pytest.raises(InvalidInput, match="same image"):
        overlap_table(np.zeros((4, 4), np.int32), np.zeros((4, 5), np.int32))


def _document(
    instances: InstanceMasks, crops: Sequence[Box] = (), scores: list[float] | None = None
) -> LabelMeDocument:
    shapes = instances_to_shapes(
        instances.labels, instances.class_ids, instances.class_names, scores=scores
    )
    return new_document([*map(crop_rectangle, crops), *shapes], "image.tif", SIZE, SIZE)


def test_evaluate_documents_regions_crops_and_scores() -> None:
    truth = _document(_squares(TRUTH))
    pred = _document(_squares(TRUTH[:3]), scores=[0.9, 0.8, 0.7])
    assert evaluate_documents(pred, truth).overall.false_negatives == 1
    # the missing object (rows 20-29, cols 20-29) lies outside the left half
    left_half = evaluate_documents(pred, truth, region=Box(0, 0, 16, SIZE)).overall
    assert (left_half.true_positives, left_half.false_negatives) == (2, 0)
    held_out = evaluate_documents(pred, truth, exclude=[Box(18, 18, SIZE, SIZE)]).overall
    assert held_out.false_negatives == 0 and held_out.true_positives == 3
    cropped_truth = _document(_squares(TRUTH), crops=[Box(0, 0, SIZE, 16)])
    top = evaluate_documents(pred, cropped_truth).overall
    assert (top.true_count, top.true_positives) == (2, 2)
    everywhere = evaluate_documents(pred, cropped_truth, restrict_to_crops=False).overall
    assert everywhere.true_count == 4


def test_shape_scores_read_descriptions() -> None:
    square = [[0, 0], [4, 0], [4, 4]]
    shapes = [
        Shape("particle", square, description="score=0.250"),
        Shape("particle", square),
        crop_rectangle(Box(0, 0, 8, 8)),
        Shape("particle", square, description="found by U-Net, score: 7e-1"),
    ]
    assert shape_scores(shapes).tolist() == [0.25, 1.0, 0.7]
    assert shape_scores(shapes[1:2]) is None
