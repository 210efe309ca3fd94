"""Peer baselines: ilastik features against analytic answers, crop supervision, a tiny run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import peers
from pipelines.detection import api
from pipelines.evaluation import evaluate_instances
from pipelines.formats.labelme import Box, Shape, crop_rectangle, new_document
from pipelines.synthetic import generate, write_sample

SMALL = peers.RandomForestConfig(trees=15, tuning_trees=8, samples_per_class=3000)


def test_ilastik_features_has_the_default_set_and_exact_derivatives() -> None:
    rows = np.arange(64, dtype=np.float64)[:, None] * np.ones((1, 64))
    features = peers.ilastik_features(0.01 * rows**2)
    # 7 smoothings + 6 scales x (LoG, gradient, DoG, 2 structure tensor, 2 Hessian)
    assert features.shape == (64, 64, 49)
    assert features.dtype == np.float32
    start = 1 + 8 + 1  # 0.3 smoothing; 0.7 block of 8; sigma 1.0 smoothing
    log, hessian = features[32, 32, start], features[32, 32, start + 5 : start + 7]
    assert log == pytest.approx(0.02, abs=1e-5)  # d²(0.01 r²)/dr² = 0.02
    assert hessian == pytest.approx([0.02, 0.0], abs=1e-5)
    # at σ 0.7 too, where sampled (non vigra-normalised) kernels get even the sign wrong
    assert features[32, 32, 2] == pytest.approx(0.02, abs=1e-4)


def test_structure_tensor_of_a_ramp_is_gradient_squared() -> None:
    ramp = np.ones((48, 1)) * np.arange(48, dtype=np.float64)[None, :] * 0.5
    features = peers.ilastik_features(ramp, sigmas=(1.6,))
    # features for one sigma: smoothing, LoG, gradient, DoG, structure tensor x2, Hessian x2
    gradient, tensor = features[24, 24, 2], features[24, 24, 4:6]
    assert gradient == pytest.approx(0.5, abs=1e-3)
    assert tensor == pytest.approx([0.25, 0.0], abs=1e-3)


def test_touching_boundary_marks_only_the_interface() -> None:
    labels = np.zeros((8, 10), dtype=np.int32)
    labels[2:6, 1:5] = 1
    labels[2:6, 5:9] = 2
    boundary = peers.touching_boundary(labels)
    assert set(np.flatnonzero(boundary.any(axis=0))) == {4, 5}
    assert not boundary[:, :4].any() and not boundary[:, 6:].any()


def _document(height: int, width: int) -> tuple[np.ndarray, object]:
    """Two bright squares inside a crop, one bright square outside it (unknown there)."""
    image = np.full((height, width), 10.0)
    image[4:10, 4:10] = 100.0
    image[4:8, 20:24] = 100.0
    image[40:46, 40:46] = 100.0
    shapes = [
        crop_rectangle(Box(0, 0, 32, 16)),
        Shape("particle", np.array([[4, 4], [9, 4], [9, 9], [4, 9]], dtype=float)),
        Shape("single_site", np.array([[20, 4], [23, 4], [23, 7], [20, 7]], dtype=float)),
    ]
    return image, new_document(shapes, "image.tif", height, width)


def test_crops_carry_local_labels_and_classes_only() -> None:
    image, document = _document(64, 64)
    crops, class_names = peers.collect_crops([image], [document])
    assert class_names == ["particle", "single_site"]
    assert len(crops) == 1 and crops[0].labels.shape == (16, 32)
    assert crops[0].labels.max() == 2
    assert sorted(crops[0].class_ids.tolist()) == [1, 2]
    assert np.count_nonzero(crops[0].labels) == 36 + 16


def test_merge_classes_keeps_class_per_instance() -> None:
    a = np.zeros((6, 6), dtype=np.int32)
    b = np.zeros((6, 6), dtype=np.int32)
    a[0:2, 0:2], b[4:6, 4:6], b[0:1, 5:6] = 1, 1, 2
    masks, scores = peers.merge_classes(
        [(a, np.array([0.9], np.float32)), (b, np.array([0.8, 0.7], np.float32))], ["p", "s"]
    )
    assert masks.count == 3 and masks.class_ids.tolist() == [1, 2, 2]
    assert [masks.class_of(k) for k in (1, 2, 3)] == ["p", "s", "s"]
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_random_forest_learns_particles_from_the_crops() -> None:
    sample = generate("particles", 384, 3)
    peer = peers.fit_rf(sample.image, [sample.user_labels], SMALL)
    assert peer.class_names == ["particle"]
    assert set(peer.split) == {"particle"}
    masks, scores = peer.predict(sample.image)
    assert scores.shape == (masks.count,) and np.all((scores >= 0) & (scores <= 1))
    result = evaluate_instances(masks, sample.truth, compute_ap=False)
    assert result.overall.f1 is not None and result.overall.f1 > 0.7


def test_rf_peer_works_as_a_detector_from_a_labelme_file(tmp_path: Path) -> None:
    sample = generate("particles", 256, 5)
    paths = write_sample(sample, tmp_path)
    detector = peers.train("rf", paths["labels"], seed=1)
    detections = api.detect(detector, sample.image)
    assert detections.instances.labels.shape == sample.image.shape
    assert detections.instances.class_names == ["particle"]
    assert detections.scores.shape == (detections.count,)


def test_stardist_reports_a_missing_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "PEER_PYTHON", "/nonexistent/python")
    assert "no StarDist interpreter" in (peers.stardist_available() or "")
