"""The synthetic classification set: seeded, mixed formats, classes that differ as designed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import filters, measure

from pipelines.imaging import load_image
from pipelines.synthetic_classes import (
    CLASS_NAMES,
    synthetic_class_image,
    write_synthetic_classification,
)


def test_same_seed_same_pixels_and_index_independent_of_count() -> None:
    first = synthetic_class_image("rods", seed=3, index=1, size_px=64)
    again = synthetic_class_image("rods", seed=3, index=1, size_px=64)
    other_seed = synthetic_class_image("rods", seed=4, index=1, size_px=64)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_seed)


def test_writes_folder_per_class_with_png_and_16_bit_tiff(tmp_path: Path) -> None:
    written = write_synthetic_classification(tmp_path, n_per_class=3, seed=0, size_px=40)
    assert written.classes == CLASS_NAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(CLASS_NAMES)
    assert written.n_images == 9
    for class_name in CLASS_NAMES:
        paths = written.files[class_name]
        assert [p.suffix for p in paths] == [".png", ".png", ".tif"]
        dtypes = [load_image(p).pixels.dtype for p in paths]
        assert dtypes == [np.uint8, np.uint8, np.uint16]
        assert load_image(paths[0]).pixels.shape == (40, 40)


def _particle_shapes(image: np.ndarray) -> dict[str, float]:
    """Median eccentricity, area (px) and solidity of the bright regions (Otsu threshold)."""
    smooth = filters.gaussian(image, 1.0)
    regions = measure.regionprops(measure.label(smooth > filters.threshold_otsu(smooth)))
    regions = [r for r in regions if r.area >= 12]
    return {
        name: float(np.median([getattr(r, name) for r in regions]))
        for name in ("eccentricity", "area", "solidity")
    }


@pytest.mark.parametrize("index", [0, 1, 2])
def test_classes_differ_in_shape_as_an_expert_sees_them(index: int) -> None:
    rods, spheres, agglomerates = (
        _particle_shapes(synthetic_class_image(name, 0, index, size_px=128))
        for name in ("rods", "spheres", "agglomerates")
    )
    assert rods["eccentricity"] > 0.9  # aspect ratio 3-5
    assert spheres["eccentricity"] < 0.75  # aspect ratio <= 1.15, plus noise
    assert agglomerates["area"] > 1.5 * spheres["area"]  # clusters of touching particles
    assert agglomerates["solidity"] < 0.9 < spheres["solidity"]  # with a knobbly outline


def test_rejects_unknown_class_and_tiny_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown synthetic class"):
        synthetic_class_image("cubes", 0, 0)
    with pytest.raises(ValueError, match="size_px"):
        synthetic_class_image("rods", 0, 0, size_px=8)
    with pytest.raises(ValueError, match="n_per_class"):
        write_synthetic_classification(tmp_path, n_per_class=0)
