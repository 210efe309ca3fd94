"""The ``unet`` engine's network, training loss and arithmetic (float32 or bfloat16).

Kept apart from the engine (:mod:`pipelines.detection.unet`: config, training loop, saving
and loading) so each reads on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.detection.unet import UNetConfig


def build_network(config: UNetConfig, n_classes: int) -> Any:
    """U-Net with ``n_classes + 1`` class logits (0 = background) and one centre-ness logit."""
    import torch
    from torch import nn
    from torch.nn import functional

    def block(channels_in: int, channels_out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = list(config.channels)
            self.encoders = nn.ModuleList()
            previous = 1
            for width in widths:
                self.encoders.append(block(previous, width))
                previous = width
            self.decoders = nn.ModuleList()
            for width in reversed(widths[:-1]):
                self.decoders.append(block(previous + width, width))
                previous = width
            self.head = nn.Conv2d(previous, n_classes + 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for level, encoder in enumerate(self.encoders):
                if level:
                    x = functional.max_pool2d(x, 2)
                x = encoder(x)
                skips.append(x)
            for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
                x = functional.interpolate(x, scale_factor=2.0, mode="nearest")
                x = decoder(torch.cat([x, skip], dim=1))
            return self.head(x)

    return UNet()


def use_bfloat16(precision: str, device: Any) -> bool:
    """Whether to run the convolutions in bfloat16 (autocast) on ``device``.

    "auto" takes it only where the hardware computes it natively: emulated bfloat16 (older
    x86 CPUs with plain AVX-512, GPUs before compute capability 8) is slower than float32.
    """
    import platform

    import torch

    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    target = torch.device(device)
    try:
        if target.type == "cuda":
            index = target.index if target.index is not None else torch.cuda.current_device()
            return torch.cuda.get_device_properties(index).major >= 8
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # a missing private check or no GPU driver: stay on float32
        return False


def autocast(device: Any, enabled: bool) -> Any:
    """bfloat16 autocast on ``device`` when ``enabled`` (a no-op context otherwise)."""
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def contact_band(instances: Any) -> Any:
    """``(B, H, W)`` bool: where two objects touch (8-connected), widened by 1 px inside them.

    Read off the instance ids with 3×3 max-pools (a neighbour with a larger or a smaller
    non-zero id). Objects with a background gap between them are not marked: the background
    already separates them.
    """
    from torch.nn import functional

    ids = instances.float()[:, None]
    inside = ids > 0
    largest = functional.max_pool2d(ids, 3, 1, 1)
    smallest = -functional.max_pool2d(-ids.masked_fill(~inside, float("inf")), 3, 1, 1)
    touching = inside & ((largest > ids) | (smallest < ids))
    band = functional.max_pool2d(touching.float(), 3, 1, 1) > 0
    return (band & inside)[:, 0]


def training_loss(
    logits: Any,
    classes: Any,
    centre: Any,
    valid: Any,
    config: UNetConfig,
    instances: Any = None,
) -> Any:
    """Cross-entropy + soft Dice on the classes, BCE on centre-ness, inside the crops only.

    With one object class, plain per-pixel cross-entropy keeps the edges where the labels put
    them (a class-balanced average over-weights object pixels and grew diameters). With several
    classes, half of the cross-entropy is averaged per class so a few 5-px single atoms weigh as
    much as the background; plain cross-entropy alone did not learn them. Centre-ness pixels weigh
    1 in the background, 3 in objects and ``contact_weight`` more on :func:`contact_band`
    (read from ``instances``, the patch's object ids).
    """
    import torch
    from torch.nn import functional

    n_logits = logits.shape[1] - 1
    class_logits, centre_logit = logits[:, :n_logits], logits[:, n_logits]
    weight = valid.float()
    pixels = weight.sum().clamp_min(1.0)
    cross_entropy = functional.cross_entropy(class_logits, classes, reduction="none") * weight
    one_hot = functional.one_hot(classes, n_logits).permute(0, 3, 1, 2).float() * weight[:, None]
    per_class_pixels = one_hot.sum(dim=(0, 2, 3))
    per_class_loss = (cross_entropy[:, None] * one_hot).sum(dim=(0, 2, 3))
    present = per_class_pixels > 0
    balance = config.boundary_balance if n_logits <= 2 else config.multiclass_balance
    total = (1.0 - balance) * cross_entropy.sum() / pixels
    if balance > 0:
        balanced = (per_class_loss[present] / per_class_pixels[present]).mean()
        total = total + balance * balanced
    if config.rare_class_weight > 0 and n_logits > 2:
        objects = per_class_pixels[1:]
        rare = (objects > 0) & (objects < objects.max())
        if bool(rare.any()):
            rare_loss = (per_class_loss[1:][rare] / objects[rare]).mean()
            total = total + config.rare_class_weight * rare_loss
    if config.dice_weight > 0:
        probabilities = torch.softmax(class_logits, dim=1)[:, 1:]
        target = one_hot[:, 1:]
        intersection = (probabilities * target).sum(dim=(0, 2, 3))
        union = (probabilities * weight[:, None]).sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
        dice = 1.0 - ((2 * intersection + 1.0) / (union + 1.0)).mean()
        total = total + config.dice_weight * dice
    centre_bce = functional.binary_cross_entropy_with_logits(centre_logit, centre, reduction="none")
    # Centre-ness only matters inside objects; weigh it up there so splits are learned.
    centre_weight = weight * (1.0 + 2.0 * (classes > 0).float())
    if config.contact_weight > 0 and instances is not None:
        centre_weight = centre_weight + weight * config.contact_weight * contact_band(instances)
    return total + (centre_bce * centre_weight).sum() / pixels
