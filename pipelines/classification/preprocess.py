"""Image → network input, identical at training and prediction time.

Every image (or object crop) is resized so its longer side equals the input size, keeping its
aspect ratio (a rod must stay a rod), normalised by its own intensity percentiles (detectors and
bit depths differ), and padded to a square with its median so the padding looks like background.
The greyscale result is replicated to the network's 3 channels and standardised with the
channel mean/std stored in the model config (ImageNet statistics, so ImageNet weights fit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Percentiles are estimated on at most this many pixels: exact enough, fast on 4k images.
PERCENTILE_SAMPLE_PIXELS = 1 << 20


@dataclass(frozen=True)
class ContentBox:
    """Where the resized image sits inside the padded square: rows/cols ``[top, top+height)``."""

    top: int
    left: int
    height: int
    width: int


def percentile_normalise(
    pixels: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.8)
) -> np.ndarray:
    """Map the low/high intensity percentiles to 0/1 and clip: ``(H, W)`` float32 in [0, 1].

    A flat image (low == high) becomes all zeros instead of dividing by zero.
    """
    values = np.nan_to_num(np.asarray(pixels, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    sample = values.ravel()
    if sample.size > PERCENTILE_SAMPLE_PIXELS:
        sample = sample[:: sample.size // PERCENTILE_SAMPLE_PIXELS + 1]
    low, high = np.percentile(sample, percentiles)
    if not high > low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32, copy=False)


def resize_longer_side(pixels: np.ndarray, size_px: int) -> np.ndarray:
    """Resize ``(H, W)`` so the longer side is ``size_px`` (antialiased bilinear), float32."""
    height, width = pixels.shape
    scale = size_px / max(height, width)
    new_height = max(1, round(height * scale))
    new_width = max(1, round(width * scale))
    tensor = torch.from_numpy(
        np.nan_to_num(
            np.ascontiguousarray(pixels, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0
        )
    )[None, None]
    if (new_height, new_width) != (height, width):
        tensor = F.interpolate(
            tensor,
            size=(new_height, new_width),
            mode="bilinear",
            align_corners=False,
            antialias=scale < 1,
        )
    return tensor[0, 0].numpy()


def prepare_image(
    pixels: np.ndarray, size_px: int, percentiles: tuple[float, float]
) -> tuple[np.ndarray, ContentBox]:
    """Network-ready greyscale square and where the image lies in it.

    ``pixels``: ``(H, W)`` of any dtype. Returns ``(size_px, size_px)`` float32 in [0, 1]
    and the :class:`ContentBox` of the (unpadded) image inside it.
    """
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"expected a non-empty (H, W) image, got shape {pixels.shape}")
    resized = percentile_normalise(resize_longer_side(pixels, size_px), percentiles)
    height, width = resized.shape
    square = np.full((size_px, size_px), float(np.median(resized)), dtype=np.float32)
    top, left = (size_px - height) // 2, (size_px - width) // 2
    square[top : top + height, left : left + width] = resized
    return square, ContentBox(top=top, left=left, height=height, width=width)


def to_model_input(
    batch: torch.Tensor,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """``(B, 1, S, S)`` in [0, 1] → ``(B, C, S, S)`` standardised, C = len(mean)."""
    channels = len(mean)
    mean_t = torch.tensor(mean, dtype=batch.dtype, device=batch.device).view(1, channels, 1, 1)
    std_t = torch.tensor(std, dtype=batch.dtype, device=batch.device).view(1, channels, 1, 1)
    return (batch.expand(-1, channels, -1, -1) - mean_t) / std_t
