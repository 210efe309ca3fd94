"""Grad-CAM maps: shapes, range, agreement with plain inference, and the overlay image."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from pipelines.classification.gradcam import cam_for_image, colourise, logits_and_cams, overlay
from pipelines.classification.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    prepare_image,
    to_model_input,
)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, num_classes=3).eval()


def test_cams_have_the_input_shape_and_logits_match_inference(model: torch.nn.Module) -> None:
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    logits, cams = logits_and_cams(model, images, IMAGENET_MEAN, IMAGENET_STD)
    assert logits.shape == (2, 3) and cams.shape == (2, 64, 64)
    assert float(cams.min()) >= 0.0 and float(cams.max()) <= 1.0
    with torch.inference_mode():
        expected = model(to_model_input(images, IMAGENET_MEAN, IMAGENET_STD))
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert not any(p.grad is not None for p in model.parameters())  # no gradient left behind


def test_cam_can_explain_a_chosen_class(model: torch.nn.Module) -> None:
    images = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    _, cam0 = logits_and_cams(model, images, IMAGENET_MEAN, IMAGENET_STD, torch.tensor([0]))
    _, cam2 = logits_and_cams(model, images, IMAGENET_MEAN, IMAGENET_STD, torch.tensor([2]))
    assert not torch.allclose(cam0, cam2)


def test_cam_is_cut_to_the_image_and_resized() -> None:
    pixels = np.zeros((30, 90))
    _, content = prepare_image(pixels, 64, (1.0, 99.0))
    cam = np.zeros((64, 64), dtype=np.float32)
    cam[content.top : content.top + content.height, :] = 1.0  # only where the image is
    resized = cam_for_image(cam, content, (30, 90))
    assert resized.shape == (30, 90)
    assert resized.min() == pytest.approx(1.0)  # the padding was cut off


def test_overlay_is_rgb_uint8_of_the_image_size() -> None:
    grey = np.linspace(0, 1, 40 * 60).reshape(40, 60)
    cam = np.zeros((40, 60))
    cam[:, 30:] = 1.0
    rgb = overlay(grey, cam)
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    hot, cold = colourise(np.array([1.0]))[0], colourise(np.array([0.0]))[0]
    assert hot[0] > hot[2] and cold[2] > cold[0]  # red where the network looks, blue elsewhere
    assert rgb[20, 59, 0] > rgb[20, 59, 2]
    with pytest.raises(ValueError, match="differ in shape"):
        overlay(grey, cam[:, :10])
