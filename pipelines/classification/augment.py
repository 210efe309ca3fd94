"""Training augmentations for microscopy, chosen by preset name.

Micrographs have no "up": any rotation or mirror of a sample is an equally valid image, and
detectors differ in gain, offset and noise. Sizes, however, carry meaning (a class may be
"large particles"), so zoom stays mild. Presets work on a batch ``(B, 1, S, S)`` in [0, 1]
with an explicit ``torch.Generator`` so a seeded run sees the same augmented images; the label
never changes, so an augmentation here maps ``images -> images``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(generator: torch.Generator, count: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(count, generator=generator) * (high - low) + low


def random_geometry(
    images: torch.Tensor,
    generator: torch.Generator,
    zoom_range: tuple[float, float] = (0.9, 1.1),
    shift_fraction: float = 0.08,
) -> torch.Tensor:
    """Random rotation (any angle), mirror, mild zoom and shift; borders are reflected."""
    count = images.shape[0]
    angle = _uniform(generator, count, 0.0, 2 * math.pi)
    zoom = _uniform(generator, count, *zoom_range)
    mirror = torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0)
    shift = _uniform(generator, 2 * count, -shift_fraction, shift_fraction).view(count, 2) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * mirror, -sin, shift[:, 0]], dim=1),
            torch.stack([sin * mirror, cos, shift[:, 1]], dim=1),
        ],
        dim=1,
    ).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )


def random_intensity(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random contrast, brightness, gamma, and Gaussian noise; result clipped to [0, 1]."""
    count = images.shape[0]

    def per_image(low: float, high: float) -> torch.Tensor:
        return (
            _uniform(generator, count, low, high).to(images.device, images.dtype).view(-1, 1, 1, 1)
        )

    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    out = (images - mean) * per_image(0.75, 1.3) + mean + per_image(-0.1, 0.1)
    out = out.clamp(0.0, 1.0) ** per_image(0.75, 1.35)
    noise = torch.randn(images.shape, generator=generator).to(images.device, images.dtype)
    return (out + noise * per_image(0.0, 0.05)).clamp(0.0, 1.0)


def microscopy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Geometry then intensity: the default preset."""
    return random_intensity(random_geometry(images, generator), generator)


def flips_only(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirrors and quarter turns only: pixel values untouched."""
    out = images
    if torch.rand(1, generator=generator).item() < 0.5:
        out = out.flip(-1)
    turns = int(torch.randint(0, 4, (1,), generator=generator).item())
    return torch.rot90(out, turns, dims=(-2, -1))


def no_augmentation(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images unchanged (``augmentation="none"``)."""
    return images


AUGMENTATIONS: dict[str, Augmentation] = {
    "microscopy": microscopy,
    "flips": flips_only,
    "none": no_augmentation,
}
