"""From probability maps to instances: marker watershed, one class per object, filters.

The network predicts, per pixel, the probability of each class (``class_probs``, background
excluded) and a centre-ness map (1 at an object's centre, 0 at its edge). Markers are the
connected "cores" where centre-ness exceeds ``core_threshold``; they are grown by a watershed
on the negated centre-ness inside the foreground. Each instance then takes the class with the
largest summed probability, so a particle is never also reported as a single site. For a class
learned from a handful of labelled objects, whose centre-ness can show several cores in one
large particle, touching pieces of that class are joined again where the centre-ness between
them stays high (:func:`merge_fragments`). Objects of classes a few pixels wide (single atoms)
are trimmed to the pixels near their centre-ness peak (:func:`trim_to_cores`). Holes that
one object encloses are filled (:func:`fill_enclosed_holes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.detection.maxima import sparse_h_maxima
from pipelines.formats.masks import InstanceMasks

# A fragment joins its neighbour when the centre-ness on their shared edge stays at least this
# share of the lower of their two peaks (where two objects touch it falls towards 0).
MERGE_SADDLE_SHARE = 0.7


@dataclass(frozen=True)
class WatershedParams:
    """Post-processing thresholds, tuned on the labelled crops after training."""

    fg_threshold: float = 0.5
    core_threshold: float = 0.5
    # > 0: markers are the h-maxima of the smoothed centre-ness instead of its cores above
    # ``core_threshold`` (splits touching objects of unequal brightness better, slower).
    marker_h: float = 0.0
    # Per class: merge adjacent fragments of one object (see :func:`merge_fragments`). Set for
    # classes with few labelled examples (``TrainingSet.few_examples``), whose centre-ness is
    # learned from a handful of objects and can show several cores in one large particle;
    # empty = no class. The same networks without merging (thresholds re-tuned) and with it,
    # 1-3 labelled particles beside ~30 single atoms: particle F1 0.88 -> 0.96, 0.85 -> 0.92,
    # 0.92 -> 0.94 and 0.93 -> 0.96 over 8 images in four runs; with 30 % of 34 particles
    # touching (4 images) 0.91 -> 0.95, 0.76 -> 0.92, 0.92 -> 0.90 and 0.81 -> 0.90; single
    # atoms unchanged (benchmarks/detection_postprocess.py).
    merge_classes: tuple[bool, ...] = ()
    # Per class: drop the pixels of each object whose centre-ness is below this share of the
    # object's peak (0 = keep every foreground pixel). Tuned on the crops for classes of
    # objects a few pixels wide (see :func:`trim_to_cores`); older models trim none.
    core_shares: tuple[float, ...] = ()


def _relabel(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Keep instances where ``keep[id]`` (index 0 ignored), renumbered 1..n in id order."""
    lookup = np.zeros(keep.size, dtype=np.int32)
    kept = np.flatnonzero(keep)
    kept = kept[kept > 0]
    lookup[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return lookup[labels]


def instances_from_maps(
    class_probs: np.ndarray,
    centre: np.ndarray,
    class_names: list[str],
    params: WatershedParams,
    *,
    min_area_px: np.ndarray | float = 0.0,
    max_area_px: np.ndarray | float | None = None,
    score_threshold: float = 0.0,
) -> tuple[InstanceMasks, np.ndarray]:
    """Instances and scores from ``class_probs (K, H, W)`` and ``centre (H, W)`` in [0, 1].

    ``min_area_px``/``max_area_px`` are scalars or one value per class. The score of an instance
    is the mean probability of its class over its pixels.
    """
    from skimage.segmentation import watershed

    n_classes = class_probs.shape[0]
    foreground = class_probs.sum(axis=0) if n_classes > 1 else class_probs[0]
    mask = foreground > params.fg_threshold
    if params.marker_h > 0:
        smooth = ndimage.gaussian_filter(np.where(mask, centre, 0.0).astype(np.float32), 0.5)
        markers, n_markers = ndimage.label(sparse_h_maxima(smooth, params.marker_h) & mask)
    else:
        markers, n_markers = ndimage.label(mask & (centre > params.core_threshold))
    # A foreground blob with no core above the threshold (a faint or tiny object) still counts.
    blobs, n_blobs = ndimage.label(mask)
    if n_blobs:
        has_core = np.zeros(n_blobs + 1, dtype=bool)
        has_core[blobs[markers > 0]] = True
        orphan = ~has_core[blobs] & mask
        if orphan.any():
            extra, n_extra = ndimage.label(orphan)
            markers[orphan] = extra[orphan] + n_markers
            n_markers += n_extra
    if n_markers == 0:
        empty = InstanceMasks(np.zeros(mask.shape, np.int32), np.zeros(0, np.int32), class_names)
        return empty, np.zeros(0, np.float32)
    labels = watershed(-centre, markers, mask=mask).astype(np.int32, copy=False)
    area, sums, class_index = _class_sums(labels, n_markers, class_probs)
    merge = _per_class(params.merge_classes, n_classes, bool)
    if merge.any():
        labels, n_markers = merge_fragments(labels, n_markers, centre, class_index, merge)
        area, sums, class_index = _class_sums(labels, n_markers, class_probs)
    shares = _per_class(params.core_shares, n_classes, float)
    if shares.any():
        labels = trim_to_cores(labels, n_markers, centre, shares[class_index])
        # Each object keeps the class it was trimmed as.
        area, sums, _ = _class_sums(labels, n_markers, class_probs)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(area > 0, sums[class_index, np.arange(area.size)] / area, 0.0)
    # After the scores: filled pixels were background to the network, and counting them
    # would push a thin ring under the score threshold. The filters see the filled area.
    labels, filled = fill_enclosed_holes(labels)
    if filled:
        area = np.bincount(labels.ravel(), minlength=n_markers + 1).astype(np.float64)
    minimum = np.broadcast_to(np.asarray(min_area_px, dtype=np.float64), (n_classes,))
    keep = (area > 0) & (area >= minimum[class_index]) & (scores >= score_threshold)
    if max_area_px is not None:
        maximum = np.broadcast_to(np.asarray(max_area_px, dtype=np.float64), (n_classes,))
        keep &= area <= maximum[class_index]
    keep[0] = False
    labels = _relabel(labels, keep)
    kept = np.flatnonzero(keep)
    instances = InstanceMasks(
        labels=labels,
        class_ids=(class_index[kept] + 1).astype(np.int32),
        class_names=list(class_names),
    )
    return instances, scores[kept].astype(np.float32)


def _per_class(values: tuple, n_classes: int, dtype: type) -> np.ndarray:
    """A per-class setting as an array of ``n_classes`` (missing classes: zero / False)."""
    out = np.zeros(n_classes, dtype=dtype)
    out[: len(values)] = values[:n_classes]
    return out


def _class_sums(
    labels: np.ndarray, count: int, class_probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area, summed probability per class and the most probable class, by label id."""
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1).astype(np.float64)
    sums = np.stack(
        [np.bincount(flat, weights=p.ravel(), minlength=count + 1) for p in class_probs]
    )
    return area, sums, np.argmax(sums, axis=0)


def merge_fragments(
    labels: np.ndarray,
    count: int,
    centre: np.ndarray,
    class_index: np.ndarray,
    merge: np.ndarray,
    saddle_share: float = MERGE_SADDLE_SHARE,
) -> tuple[np.ndarray, int]:
    """Join touching regions of one class (``merge[class]`` set) that are pieces of one object.

    Two regions are pieces of one object when the centre-ness along their shared edge (the
    highest of the lower values across it) stays at least ``saddle_share`` of the lower of
    their two peaks; between two touching objects it falls towards their edges' 0. Returns
    the labels and the largest id: as given when nothing joins, else renumbered ``1..n``
    without gaps. ``class_index`` is by label id (0 unused).
    """
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for a, b, centre_a, centre_b in (
        (labels[:, :-1], labels[:, 1:], centre[:, :-1], centre[:, 1:]),
        (labels[:-1], labels[1:], centre[:-1], centre[1:]),
    ):
        edge = (a != b) & (a > 0) & (b > 0)
        first, second = a[edge].astype(np.int64), b[edge].astype(np.int64)
        same = (class_index[first] == class_index[second]) & merge[class_index[first]]
        low, high = np.minimum(first, second)[same], np.maximum(first, second)[same]
        pieces.append((low, high, np.minimum(centre_a[edge], centre_b[edge])[same]))
    low, high, across = (np.concatenate(parts) for parts in zip(*pieces, strict=True))
    if low.size == 0:
        return labels, count
    key = low * (count + 1) + high
    order = np.argsort(key, kind="stable")
    pairs, starts = np.unique(key[order], return_index=True)
    saddle = np.maximum.reduceat(across[order], starts)
    first, second = pairs // (count + 1), pairs % (count + 1)
    peaks = np.zeros(count + 1)
    peaks[1:] = ndimage.maximum(centre, labels, np.arange(1, count + 1))
    lower = np.minimum(peaks[first], peaks[second])
    joined = (saddle >= saddle_share * lower) & (lower > 0)
    if not joined.any():
        return labels, count
    root = np.arange(count + 1)

    def find(node: int) -> int:
        while root[node] != node:
            root[node] = root[root[node]]
            node = root[node]
        return node

    for x, y in zip(first[joined], second[joined], strict=True):
        rx, ry = find(int(x)), find(int(y))
        root[max(rx, ry)] = min(rx, ry)
    final = np.array([find(node) for node in range(count + 1)])
    present = np.bincount(labels.ravel(), minlength=count + 1) > 0
    present[0] = True
    kept = np.unique(final[present])  # final[0] == 0 comes first
    lookup = np.zeros(count + 1, dtype=np.int32)
    lookup[kept] = np.arange(kept.size, dtype=np.int32)
    return lookup[final[labels]], int(kept.size - 1)


def trim_to_cores(
    labels: np.ndarray, count: int, centre: np.ndarray, share_by_id: np.ndarray
) -> np.ndarray:
    """Drop each region's pixels whose centre-ness is below ``share_by_id[id]`` × its peak.

    Why: for objects of a few pixels (single atoms) the foreground spreads over the blurred
    halo around them, while the centre-ness, 1 at the centre and falling to the edge, stays
    as tight as the labels.

    ``labels (H, W) int32``: ids ``0..count`` (gaps allowed); ``centre (H, W) float32`` in
    [0, 1]; ``share_by_id (count + 1,)``, index 0 unused. Returns ``(H, W) int32`` with the
    same ids. A trimmed region keeps only the (8-connected) piece holding its peak: a second
    bump above the share would otherwise count in its area and its centre.
    """
    ids = np.flatnonzero(share_by_id[1:] > 0) + 1
    if ids.size == 0:
        return labels
    rows, cols = np.array(ndimage.maximum_position(centre, labels, ids)).T
    peaks = np.zeros(count + 1)
    peaks[ids] = centre[rows, cols]
    cut = (share_by_id * peaks).astype(np.float32)
    cut[0] = 0.0
    trimmed = np.where(centre < cut[labels], 0, labels).astype(np.int32, copy=False)
    is_trimmed = np.zeros(count + 1, dtype=bool)
    is_trimmed[ids] = True
    pieces, _ = ndimage.label(is_trimmed[trimmed], structure=np.ones((3, 3), dtype=bool))
    peak_piece = np.zeros(count + 1, dtype=np.int64)
    peak_piece[ids] = pieces[rows, cols]
    stray = is_trimmed[trimmed] & (pieces != peak_piece[trimmed])
    trimmed[stray] = 0
    return trimmed


def fill_enclosed_holes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Give each background hole enclosed by one object alone to that object.

    Why: a particle whose bright centre the network has not seen (one labelled particle,
    brighter ones in the image) can come out as a ring. Its polygon in the LabelMe file
    is the outer edge anyway, so filling makes the masks, the scores and the file agree
    (six ``particles+sites`` networks, their detections re-scored with and without filling
    by a scratch script: rings on 6 of 12 images, whose particles' mean |D error| went
    5.3 -> 4.7 %; F1 unchanged). Holes bordered by two or more objects (a gap inside an
    agglomerate) stay. Models trained before this fill too (tuned without it; filling only
    adds pixels inside an object's own outline).

    Returns the labels (a new array only when something was filled) and the holes filled.
    """
    foreground = labels > 0
    # Background parts that do not reach the image edge (as binary_fill_holes, 3x faster).
    background, count = ndimage.label(~foreground)
    enclosed = np.ones(count + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        enclosed[edge] = False
    enclosed[0] = False
    if not enclosed.any():
        return labels, 0
    holes = enclosed[background]
    # The labels next to each hole pixel (a hole never reaches the image edge): one object
    # all round when the lowest and highest of them agree. Only hole pixels are visited.
    rows, cols = np.nonzero(holes)
    ids = np.tile(background[rows, cols], 4)
    around = np.concatenate(
        [
            labels[rows + 1, cols],
            labels[rows - 1, cols],
            labels[rows, cols + 1],
            labels[rows, cols - 1],
        ]
    )
    ids, around = ids[around > 0], around[around > 0]
    highest = np.zeros(count + 1, dtype=np.int64)
    lowest = np.full(count + 1, np.iinfo(np.int64).max)
    np.maximum.at(highest, ids, around)
    np.minimum.at(lowest, ids, around)
    owner = np.where(highest == lowest, highest, 0).astype(labels.dtype)
    if not owner.any():
        return labels, 0
    filled = np.where(holes, owner[background], labels).astype(labels.dtype, copy=False)
    return filled, int(np.count_nonzero(owner))


def drop_instances_in(
    instances: InstanceMasks, scores: np.ndarray, region: np.ndarray, share: float = 0.5
) -> tuple[InstanceMasks, np.ndarray, int]:
    """Remove instances with at least ``share`` of their pixels inside ``region`` (bool mask).

    Returns the kept instances, their scores and how many were dropped.
    """
    if instances.count == 0 or not region.any():
        return instances, scores, 0
    flat = instances.labels.ravel()
    area = np.bincount(flat, minlength=instances.count + 1)
    inside = np.bincount(flat, weights=region.ravel(), minlength=instances.count + 1)
    keep = inside < share * np.maximum(area, 1)
    keep[0] = False
    kept = np.flatnonzero(keep)
    result = InstanceMasks(
        labels=_relabel(instances.labels, keep),
        class_ids=instances.class_ids[kept - 1],
        class_names=instances.class_names,
    )
    return result, scores[kept - 1], instances.count - kept.size


@dataclass(frozen=True)
class MatchCounts:
    """Matches at IoU ≥ 0.5 between predicted and true instances (one class or all)."""

    true_positives: int
    false_positives: int
    false_negatives: int
    diameter_errors: np.ndarray

    @property
    def f1(self) -> float:
        denominator = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / denominator if denominator else 1.0

    @property
    def mean_abs_diameter_error(self) -> float:
        """Mean |D_pred − D_true| / D_true over matched pairs (a fraction, not %)."""
        return float(np.mean(np.abs(self.diameter_errors))) if self.diameter_errors.size else 0.0


def match_instances(
    predicted: np.ndarray,
    truth: np.ndarray,
    predicted_ids: np.ndarray | None = None,
    truth_ids: np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> MatchCounts:
    """Count matches between two label images, optionally restricted to some instance ids.

    With IoU > 0.5 a match is unique, so no assignment problem arises: pairs are read off the
    label co-occurrence counts.
    """
    n_pred, n_true = int(predicted.max(initial=0)), int(truth.max(initial=0))
    if predicted_ids is None:
        predicted_ids = np.unique(predicted[predicted > 0])
    if truth_ids is None:
        truth_ids = np.unique(truth[truth > 0])
    pred_area = np.bincount(predicted.ravel(), minlength=n_pred + 1)
    true_area = np.bincount(truth.ravel(), minlength=n_true + 1)
    both = (predicted > 0) & (truth > 0)
    pairs = predicted[both].astype(np.int64) * (n_true + 1) + truth[both]
    unique, overlap = np.unique(pairs, return_counts=True)
    pred_of, true_of = unique // (n_true + 1), unique % (n_true + 1)
    union = pred_area[pred_of] + true_area[true_of] - overlap
    good = overlap / np.maximum(union, 1) >= iou_threshold
    pred_of, true_of = pred_of[good], true_of[good]
    wanted_pred = np.zeros(n_pred + 1, dtype=bool)
    wanted_pred[np.asarray(predicted_ids, dtype=np.int64)] = True
    wanted_true = np.zeros(n_true + 1, dtype=bool)
    wanted_true[np.asarray(truth_ids, dtype=np.int64)] = True
    both_wanted = wanted_pred[pred_of] & wanted_true[true_of]
    pred_of, true_of = pred_of[both_wanted], true_of[both_wanted]
    tp = int(pred_of.size)
    errors = np.sqrt(pred_area[pred_of] / np.maximum(true_area[true_of], 1)) - 1.0
    return MatchCounts(
        true_positives=tp,
        false_positives=int(wanted_pred.sum()) - tp,
        false_negatives=int(wanted_true.sum()) - tp,
        diameter_errors=errors.astype(np.float64),
    )
