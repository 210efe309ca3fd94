"""Tiled inference: cores partition the image, stitching equals a whole-image pass, seams vanish."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipelines.detection.postprocess import WatershedParams, instances_from_maps
from pipelines.detection.tiling import (
    TileInstances,
    merge_tile_instances,
    predict_maps_tiled,
    tile_grid,
)


@pytest.mark.parametrize("shape", [(100, 130), (64, 64), (257, 31)])
def test_tile_cores_partition_the_image(shape):
    covered = np.zeros(shape, dtype=np.int32)
    for tile in tile_grid(*shape, tile_px=48, overlap_px=8):
        covered[tile.core()] += 1
        assert tile.top <= tile.core_top and tile.bottom >= tile.core_bottom
    assert (covered == 1).all()


def _local_forward(tile: np.ndarray) -> np.ndarray:
    """A fixed 9x9 neighbourhood operator: receptive field 4 px each side."""
    smooth = ndimage.uniform_filter(tile, 9, mode="constant")
    return np.stack([smooth, tile])


def test_stitched_maps_equal_a_whole_image_pass():
    image = np.random.default_rng(0).random((150, 170)).astype(np.float32)
    whole = _local_forward(image)
    tiled = predict_maps_tiled(_local_forward, image, 2, tile_px=40, overlap_px=8)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def _disk(shape, cy, cx, radius):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2


def test_object_straddling_a_seam_is_found_once_and_whole():
    shape = (96, 96)
    disk = _disk(shape, 48, 47.5, 9)  # centred on the seam between two 48-px cores

    def forward(tile: np.ndarray) -> np.ndarray:
        probability = (tile > 0.5).astype(np.float32)
        distance = ndimage.distance_transform_edt(probability)
        return np.stack([probability, distance / max(1.0, distance.max())])

    image = disk.astype(np.float32)
    tiles = tile_grid(*shape, tile_px=48, overlap_px=16)
    assert any(t.core_right == 48 for t in tiles)
    maps = predict_maps_tiled(forward, image, 2, tile_px=48, overlap_px=16)
    instances, _ = instances_from_maps(maps[:1], maps[1], ["particle"], WatershedParams(0.5, 0.5))
    assert instances.count == 1
    assert (instances.labels > 0).sum() == disk.sum()


def test_instance_merging_keeps_one_copy_of_a_seam_object():
    shape = (96, 96)
    disk = _disk(shape, 50, 47, 8)
    tiles = tile_grid(*shape, tile_px=48, overlap_px=20)
    found = []
    for tile in tiles:
        window = disk[tile.read()]
        # Each tile reports the part of the object it sees (whole where the overlap covers it).
        masks = [window] if window.any() else []
        found.append(
            (
                tile,
                TileInstances(
                    masks, np.ones(len(masks), np.int32), np.full(len(masks), 0.9, np.float32)
                ),
            )
        )
    labels, class_ids, scores = merge_tile_instances(*shape, found)
    assert class_ids.tolist() == [1] and scores.size == 1
    assert ((labels == 1) == disk).all()


def test_two_classes_on_one_object_give_one_instance_of_the_likelier_class():
    shape = (40, 40)
    disk = _disk(shape, 20, 20, 6)
    particle = np.where(disk, 0.7, 0.0).astype(np.float32)
    site = np.where(disk, 0.25, 0.0).astype(np.float32)  # a weaker "single site" reading
    centre = ndimage.distance_transform_edt(disk).astype(np.float32)
    centre /= centre.max()
    instances, scores = instances_from_maps(
        np.stack([particle, site]), centre, ["particle", "single_site"], WatershedParams()
    )
    assert instances.count == 1
    assert instances.class_of(1) == "particle"
    assert scores[0] == pytest.approx(0.7)
