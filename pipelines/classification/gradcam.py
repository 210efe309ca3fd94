"""Grad-CAM: which parts of the image pushed the network towards its answer.

Selvaraju et al. (2017): weight each channel of the last feature map by the mean gradient of the
chosen class score, sum, keep the positive part. The map is coarse (1/32 of the input size for
ConvNeXt), so it is upsampled smoothly; the overlay shows it in colour over the greyscale image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.classification.preprocess import ContentBox, to_model_input

# Piecewise-linear "jet"-like colour map: dark blue (ignored) → red (decisive).
_COLOUR_STOPS = np.array(
    [
        [0.00, 0.0, 0.0, 0.5],
        [0.15, 0.0, 0.0, 1.0],
        [0.40, 0.0, 0.9, 1.0],
        [0.60, 0.9, 1.0, 0.1],
        [0.85, 1.0, 0.3, 0.0],
        [1.00, 0.6, 0.0, 0.0],
    ]
)
OVERLAY_ALPHA = 0.45


def logits_and_cams(
    model: torch.nn.Module,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    target_classes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(B, K)`` and Grad-CAM maps ``(B, S, S)`` in [0, 1] for ``images`` ``(B, 1, S, S)``.

    The map explains ``target_classes`` (default: the predicted class of each image). Samples do
    not interact (no batch norm in eval), so one backward pass serves the whole batch.
    """
    model.eval()
    with torch.enable_grad():
        features = model.forward_features(to_model_input(images, mean, std))
        logits = model.forward_head(features)
        targets = logits.argmax(1) if target_classes is None else target_classes.to(logits.device)
        score = logits.gather(1, targets[:, None]).sum()
        (gradients,) = torch.autograd.grad(score, features)
    channel_weights = gradients.mean(dim=(2, 3), keepdim=True)
    cams = F.relu((channel_weights * features).sum(dim=1, keepdim=True)).detach().float()
    cams = F.interpolate(cams, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cams.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, 1, 1)
    return logits.detach().float(), (cams / peak).clamp(0, 1)


def cam_for_image(cam: np.ndarray, content: ContentBox, shape: tuple[int, int]) -> np.ndarray:
    """Cut the padding off a square map and resize it to ``shape`` ``(H, W)``: float32 [0, 1]."""
    cropped = cam[
        content.top : content.top + content.height, content.left : content.left + content.width
    ]
    tensor = torch.from_numpy(np.ascontiguousarray(cropped, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False)
    return resized[0, 0].clamp(0, 1).numpy()


def colourise(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` in [0, 1] → ``(H, W, 3)`` float32 RGB in [0, 1]."""
    flat = np.clip(values, 0, 1).ravel()
    channels = [np.interp(flat, _COLOUR_STOPS[:, 0], _COLOUR_STOPS[:, c]) for c in (1, 2, 3)]
    return np.stack(channels, axis=-1).reshape(*values.shape, 3).astype(np.float32)


def overlay(grey: np.ndarray, cam: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend the coloured map over a greyscale image: both ``(H, W)`` in [0, 1] → ``(H, W, 3)``
    uint8 RGB."""
    if grey.shape != cam.shape:
        raise ValueError(f"image {grey.shape} and heatmap {cam.shape} differ in shape")
    base = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    blended = (1 - alpha) * base + alpha * colourise(cam)
    return np.round(blended * 255).astype(np.uint8)
