"""Image → network input: aspect kept, percentile normalisation, padding, channel handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipelines.classification.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    percentile_normalise,
    prepare_image,
    to_model_input,
)


def test_percentile_normalise_maps_percentiles_to_0_and_1() -> None:
    ramp = np.arange(101, dtype=np.uint16).reshape(1, 101) * 100  # 0 .. 10000
    out = percentile_normalise(ramp, (10.0, 90.0))
    assert out.dtype == np.float32
    assert out[0, 10] == pytest.approx(0.0) and out[0, 90] == pytest.approx(1.0)
    assert out[0, 50] == pytest.approx(0.5)
    assert out[0, 0] == 0.0 and out[0, 100] == 1.0  # clipped outside


def test_percentile_normalise_of_flat_and_nan_images() -> None:
    assert percentile_normalise(np.full((4, 4), 3.0)).max() == 0.0
    with_nan = np.array([[np.nan, 1.0], [2.0, 3.0]])
    assert np.isfinite(percentile_normalise(with_nan)).all()


def test_prepare_image_keeps_aspect_and_pads_with_the_median() -> None:
    wide = np.zeros((40, 80), dtype=np.uint8)
    wide[:, 40:] = 255
    square, content = prepare_image(wide, 64, (1.0, 99.0))
    assert square.shape == (64, 64)
    assert (content.top, content.left, content.height, content.width) == (16, 0, 32, 64)
    inside = square[16:48]
    assert inside[:, :30].max() == 0.0 and inside[:, 34:].min() == pytest.approx(1.0)
    assert np.all(square[:16] == np.median(inside))  # padding looks like the image


def test_prepare_image_enlarges_small_crops() -> None:
    tiny = np.arange(12, dtype=np.float32).reshape(3, 4)
    square, content = prepare_image(tiny, 32, (0.0, 100.0))
    assert square.shape == (32, 32) and (content.height, content.width) == (24, 32)


def test_to_model_input_replicates_grey_to_standardised_channels() -> None:
    grey = torch.full((2, 1, 4, 4), 0.5)
    out = to_model_input(grey, IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == (2, 3, 4, 4)
    for channel in range(3):
        expected = (0.5 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert out[:, channel].flatten().tolist() == pytest.approx([expected] * 32)
