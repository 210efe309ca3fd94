"""Augmentation presets: shapes and ranges kept, seeded, labels untouched by construction."""

from __future__ import annotations

import pytest
import torch

from pipelines.classification.augment import AUGMENTATIONS, random_geometry


def _batch() -> torch.Tensor:
    return torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_presets_keep_shape_and_range_and_are_seeded(name: str) -> None:
    images = _batch()
    first = AUGMENTATIONS[name](images, torch.Generator().manual_seed(7))
    again = AUGMENTATIONS[name](images, torch.Generator().manual_seed(7))
    assert first.shape == images.shape
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    torch.testing.assert_close(first, again)


def test_none_is_the_identity_and_microscopy_changes_pixels() -> None:
    images = _batch()
    assert torch.equal(AUGMENTATIONS["none"](images, torch.Generator()), images)
    changed = AUGMENTATIONS["microscopy"](images, torch.Generator().manual_seed(1))
    assert not torch.allclose(changed, images)


def test_geometry_moves_a_spot_but_keeps_its_size() -> None:
    spot = torch.zeros(1, 1, 33, 33)
    spot[..., 4:9, 20:25] = 1.0
    moved = random_geometry(spot, torch.Generator().manual_seed(3), zoom_range=(1.0, 1.0))
    assert float(moved.sum()) == pytest.approx(25.0, rel=0.15)  # rotation/shift keep the area
    assert not torch.allclose(moved, spot)
