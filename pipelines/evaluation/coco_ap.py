"""COCO mask AP (``AP@[.5:.95]`` and ``AP50``) through ``pycocotools``' own COCOeval.

COCOeval compares every detection with every true object of an image in Python, which is
hopeless for one image with 10 000 objects. Instances that do not overlap can never match, so
each connected group of mutually overlapping instances is given to COCOeval as its own small
image (just its bounding box); the matches, and hence AP, are those of the whole image.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from pipelines.evaluation.overlaps import Overlaps, class_index, overlap_table
from pipelines.formats.masks import InstanceMasks


def coco_mask_ap(
    truth: InstanceMasks,
    pred: InstanceMasks,
    pred_scores: np.ndarray,
    class_names: list[str],
    overlaps: Overlaps | None = None,
) -> tuple[dict[str, tuple[float | None, float | None]], tuple[float | None, float | None]]:
    """COCO mask ``(AP@[.5:.95], AP50)`` per class and class-agnostic, via ``pycocotools``.

    Instances are grouped into connected sets of mutual overlap; each set becomes one small
    COCO image holding just its bounding box, so RLE encoding and COCOeval's per-image loops
    stay proportional to the objects rather than to (objects² × image area). Instances
    whose IoU is 0 can never match, so the matches are those of one whole-image evaluation.
    """
    from pycocotools import mask as mask_utils

    overlaps = overlaps or overlap_table(truth.labels, pred.labels)
    n_truth, n_pred = truth.count, pred.count
    if n_truth + n_pred == 0:
        return dict.fromkeys(class_names, (None, None)), (None, None)
    graph = sparse.coo_matrix(
        (
            np.ones(overlaps.truth_ids.size),
            (overlaps.truth_ids - 1, n_truth + overlaps.pred_ids - 1),
        ),
        shape=(n_truth + n_pred,) * 2,
    )
    _, component = csgraph.connected_components(graph, directed=False)
    truth_windows = ndimage.find_objects(truth.labels, max_label=n_truth)
    pred_windows = ndimage.find_objects(pred.labels, max_label=n_pred)
    truth_class = class_index(truth, class_names)
    pred_class = class_index(pred, class_names)

    images, truth_annotations, detections = [], [], []
    order = np.argsort(component, kind="stable")
    boundaries = np.flatnonzero(np.diff(component[order])) + 1
    for image_id, members in enumerate(np.split(order, boundaries), start=1):
        truth_members = members[members < n_truth] + 1
        pred_members = members[members >= n_truth] - n_truth + 1
        windows = [truth_windows[i - 1] for i in truth_members] + [
            pred_windows[i - 1] for i in pred_members
        ]
        top = min(w[0].start for w in windows)
        bottom = max(w[0].stop for w in windows)
        left = min(w[1].start for w in windows)
        right = max(w[1].stop for w in windows)
        images.append({"id": image_id, "height": bottom - top, "width": right - left})
        for source, ids, is_truth in ((truth, truth_members, True), (pred, pred_members, False)):
            if ids.size == 0:
                continue
            window = source.labels[top:bottom, left:right]
            stack = np.asfortranarray((window[:, :, None] == ids[None, None, :]).astype(np.uint8))
            encoded = mask_utils.encode(stack)
            for instance, rle in zip(ids, encoded, strict=True):
                if is_truth:
                    truth_annotations.append(
                        {
                            "id": len(truth_annotations) + 1,
                            "image_id": image_id,
                            "category_id": int(truth_class[instance]) + 1,
                            "segmentation": rle,
                            "area": float(mask_utils.area(rle)),
                            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                            "iscrowd": 0,
                        }
                    )
                else:
                    detections.append(
                        {
                            "image_id": image_id,
                            "category_id": int(pred_class[instance]) + 1,
                            "segmentation": rle,
                            "score": float(pred_scores[instance - 1]),
                        }
                    )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    per_class: dict[str, tuple[float | None, float | None]] = {}
    if not detections:
        for index, name in enumerate(class_names):
            has_truth = bool(np.any(truth_class[1:] == index))
            per_class[name] = (0.0, 0.0) if has_truth else (None, None)
        return per_class, ((0.0, 0.0) if n_truth else (None, None))
    max_per_image = int(np.bincount([d["image_id"] for d in detections]).max())
    by_category = _run_cocoeval(
        images, truth_annotations, detections, categories, max_per_image, True
    )
    for index, name in enumerate(class_names):
        per_class[name] = by_category[index]
    overall = _run_cocoeval(images, truth_annotations, detections, categories, max_per_image, False)
    return per_class, overall[0]


def _run_cocoeval(
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    detections: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    max_per_image: int,
    use_categories: bool,
) -> list[tuple[float | None, float | None]]:
    """``(AP, AP50)`` per category (or one class-agnostic pair) from COCOeval's precision table."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": categories}
        truth.createIndex()
        predicted = truth.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(truth, predicted, iouType="segm")
        evaluator.params.useCats = int(use_categories)
        evaluator.params.maxDets = [1, 10, max(100, max_per_image)]
        evaluator.params.areaRng = [[0.0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]  # [iou threshold, recall, category, area, maxDets]
    results = []
    for category in range(precision.shape[2]):
        table = precision[:, :, category, 0, -1]
        valid = table > -1
        if not valid.any():
            results.append((None, None))
            continue
        first = table[0][table[0] > -1]
        results.append((float(table[valid].mean()), float(first.mean()) if first.size else None))
    return results
