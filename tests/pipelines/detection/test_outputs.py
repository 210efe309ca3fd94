"""Output drawing helpers checked against the scikit-image functions they replace."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

from pipelines.detection.outputs import inner_edges


def test_inner_edges_are_find_boundaries_inner() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(64, 48)).astype(np.int32)
    labels[10:30, 10:30] = 7  # a block with an interior
    labels[0, :] = 5  # on the border
    expected = find_boundaries(labels, mode="inner", background=0)
    assert np.array_equal(inner_edges(labels), expected)
    assert not inner_edges(np.zeros((8, 8), dtype=np.int32)).any()


def test_two_classes_are_written_with_their_labels_and_colours(tmp_path) -> None:
    import tifffile
    from PIL import Image

    from pipelines.detection.base import Detections
    from pipelines.detection.outputs import CLASS_COLOURS, write_outputs
    from pipelines.formats.labelme import read_labelme
    from pipelines.formats.masks import InstanceMasks

    labels = np.zeros((40, 60), dtype=np.int32)
    labels[5:17, 5:17] = 1  # a particle
    labels[25:28, 40:43] = 2  # a single site
    labels[20:32, 8:20] = 3  # another particle
    instances = InstanceMasks(labels, np.array([1, 2, 1], np.int32), ["particle", "single_site"])
    detections = Detections(instances, np.array([0.9, 0.8, 0.7], np.float32))
    pixels = np.full(labels.shape, 1000, np.uint16)
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, pixels)
    json_path, overlay, stats = write_outputs(image, pixels, detections, tmp_path / "out", 0.5)
    document = read_labelme(json_path)
    assert sorted(s.label for s in document.object_shapes) == [
        "particle",
        "particle",
        "single_site",
    ]
    rgb = np.asarray(Image.open(overlay))
    assert tuple(rgb[5, 10]) == CLASS_COLOURS[0]  # a particle's top edge
    assert tuple(rgb[25, 41]) == CLASS_COLOURS[1]  # the site's top edge
    rows = stats.read_text().splitlines()
    assert len(rows) == 4 and sum("single_site" in row for row in rows) == 1


def test_labels_with_only_a_pixel_size_are_never_taken_for_a_prediction(tmp_path) -> None:
    """The generator and the app store a pixel size in labels; that does not make them a
    prediction that ``predict`` may replace."""
    import pytest

    from pipelines.detection.outputs import check_outputs_free
    from pipelines.errors import InvalidInput
    from pipelines.formats.labelme import METADATA_KEY, new_document, write_labelme

    labels = new_document([], "image.tif", 10, 10)
    labels.extra[METADATA_KEY] = {"nm_per_px": 0.25, "calibration_source": "synthetic generator"}
    write_labelme(tmp_path / "image.json", labels)
    with pytest.raises(InvalidInput, match="holds labels that prediction did not write"):
        check_outputs_free([tmp_path / "elsewhere" / "image.tif"], tmp_path)
