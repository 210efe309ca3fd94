"""``unet``: the fast default engine — a compact U-Net + marker watershed, trained from scratch.

Why this engine (measured on the shared 2-core CPU; ``benchmarks/detection.py`` and
``shared/notes/ml-engines.md``): a 0.12 M-parameter U-Net (16-32-64 channels, channels-last
memory) predicting per-class probabilities and a centre-ness map trains from two crops in
165 s (under 3 min with the tuning) and beats the calibrated classical pipeline and the
random-forest peer on F1 and on diameter error; Mask R-CNN from scratch on a CPU does not get
close in minutes. Instances come from a watershed of the centre-ness map seeded by its cores;
the foreground and core thresholds are tuned on the labelled crops after training and saved
with the model. The centre-ness loss is weighed up where labelled objects touch, since merged
touching pairs were the largest diameter errors left. Finding objects runs in bfloat16 where
the hardware has it natively (1.8x faster on the benchmark CPU, same objects).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipelines.detection.augment import AugmentConfig, PatchSampler
from pipelines.detection.base import (
    Detections,
    DetectOptions,
    Detector,
    TrainContext,
    report_train_step,
    train_summary,
)
from pipelines.detection.data import TrainingSet, normalise, objects_are_dark
from pipelines.detection.postprocess import (
    MatchCounts,
    WatershedParams,
    instances_from_maps,
    match_instances,
)
from pipelines.detection.registry import EngineSpec, register_engine
from pipelines.detection.tiling import pad_to_multiple, predict_maps_tiled
from pipelines.devices import torch_device
from pipelines.errors import ModelError
from pipelines.progress import StageTimer

log = logging.getLogger(__name__)


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class UNetConfig:
    """Network size, training budget and augmentation of the ``unet`` engine.

    ``train_seconds`` is the wall-clock budget of the training loop (``minutes`` on the CLI
    overrides it); ``max_steps`` caps it in steps (0 = no cap), whichever ends first.
    """

    # Three levels (receptive field ~40 px, wider than the particles) run more steps in the
    # budget than four (1432 in 150 s) and infer a 2048² image in ~2.4 s (float32);
    # F1 0.93 -> 0.96.
    channels: tuple[int, ...] = (16, 32, 64)
    patch_px: int = 128
    batch_size: int = 8
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    train_seconds: float = 165.0
    # The 2-core benchmark CPU runs ~1500 steps in the budget; a GPU would run 6000-9000.
    # Against 1500 steps, 6000 steps (also 2x wider or 4-level nets) changed F1 by +0.009 to
    # +0.013 on particles seed 0 and -0.006 to +0.004 on seed 1, and mean |D error| stayed
    # 3.5-4.3 % (benchmarks/detection_capacity.py on an H200). 3000, between the two, lets
    # a GPU stop after a minute or two instead of 3.
    max_steps: int = 3000
    warmup_steps: int = 20
    seed: int = 0
    overlap_px: int = 48
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tune_postprocessing: bool = True
    threads: int = 2
    # Loss mix. ``boundary_balance``: share of the cross-entropy averaged per class (all classes)
    # instead of per pixel; it pushes object edges outward (+3.6 to +5.6 % diameter bias at 0.5
    # on the benchmark), so 0 by default.
    # ``multiclass_balance`` replaces it when there are two or more object classes: without it
    # the 5-px single atoms beside particles were found at F1 0.22 instead of 0.80.
    # ``rare_class_weight``: extra per-class-averaged cross-entropy on the pixels of the object
    # classes that are not the most frequent one (off by default; not yet measured).
    boundary_balance: float = 0.0
    multiclass_balance: float = 0.5
    rare_class_weight: float = 0.0
    dice_weight: float = 1.0
    # Extra weight of the centre-ness loss on the band where two labelled objects touch: the
    # crops hold few touching pairs, and a merged pair is both a miss and a diameter outlier.
    # 4 against 0 on ``particles`` seeds 0-2 (one training run each): F1 0.970 -> 0.973,
    # unseen 0.959 -> 0.969, mean |D error| 4.1 -> 3.7 %.
    contact_weight: float = 4.0
    # Arithmetic of the convolutions when finding objects (``precision``) and when training:
    # "auto" = bfloat16 where the device runs it natively (CPUs with AVX512-BF16 or AMX, GPUs
    # of compute capability 8 or more), float32 elsewhere; or "fp32" / "bf16". On the 2-core
    # benchmark CPU a bfloat16 pass finds the same objects (F1 within 0.002, mean |D error|
    # within 0.05 %) in 1.5 s instead of 2.8 s on a 2048² image. Training in bfloat16 runs
    # 1.5x the steps in the budget but was not more accurate (particles seeds 1-2), so it
    # stays float32 by default.
    precision: str = "auto"
    train_precision: str = "fp32"

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig(**_tuples(self.augment)))
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise ValueError("channels needs at least two positive widths")
        if self.patch_px % (2 ** (len(self.channels) - 1)):
            raise ValueError("patch_px must be divisible by 2^(number of levels - 1)")
        for name in ("precision", "train_precision"):
            value = getattr(self, name)
            if value not in PRECISIONS:
                raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}, got {value!r}")


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


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


def _autocast(device: Any, enabled: bool) -> Any:
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


def _loss(
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


class UNetDetector(Detector):
    """A trained U-Net with its normalisation polarity and tuned post-processing."""

    engine = "unet"

    def __init__(
        self,
        config: UNetConfig,
        classes: list[str],
        network: Any,
        invert: bool,
        params: WatershedParams,
        min_area_px: list[float],
        device: str = "cpu",
    ) -> None:
        super().__init__(config, classes)
        import torch

        self.network = network.eval().to(device).to(memory_format=torch.channels_last)
        self.invert = invert
        self.params = params
        self.min_area_px = list(min_area_px)
        self.device = device
        self.bfloat16 = use_bfloat16(config.precision, device)

    def forward_tile(self, tile: np.ndarray) -> np.ndarray:
        """``(h, w)`` normalised pixels → ``(K + 1, h, w)``: class probabilities, centre-ness."""
        import torch

        levels = len(self.config.channels) - 1
        padded, (height, width) = pad_to_multiple(tile, 2**levels)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))[None, None]
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            with _autocast(self.device, self.bfloat16):
                logits = self.network(x)[0].float()  # maps stay float32
            n_logits = logits.shape[0] - 1
            probabilities = torch.softmax(logits[:n_logits], dim=0)[1:]
            centre = torch.sigmoid(logits[n_logits:])
            maps = torch.cat([probabilities, centre], dim=0)[:, :height, :width]
            return maps.cpu().numpy()

    def predict_maps(
        self, image: np.ndarray, options: DetectOptions, progress: Any = None
    ) -> np.ndarray:
        """Stitched ``(K + 1, H, W)`` maps of a raw image (normalised here)."""
        normalised = normalise(image, self.invert)
        overlap = options.overlap_px if options.overlap_px is not None else self.config.overlap_px
        return predict_maps_tiled(
            self.forward_tile,
            normalised,
            len(self.classes) + 1,
            options.tile_px,
            overlap,
            progress,
            multiple=self.multiple,
        )

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this (the U-Net halves them once per level)."""
        return 2 ** (len(self.config.channels) - 1)

    def detect(
        self,
        image: np.ndarray,
        options: DetectOptions | None = None,
        progress: Any = None,
    ) -> Detections:
        options = options or DetectOptions()
        started = time.perf_counter()
        maps = self.predict_maps(image, options, progress)
        network_s = time.perf_counter() - started
        min_area = (
            np.array(self.min_area_px)
            if options.min_area_px is None
            else float(options.min_area_px)
        )
        instances, scores = instances_from_maps(
            maps[:-1],
            maps[-1],
            self.classes,
            self.params,
            min_area_px=min_area,
            max_area_px=options.max_area_px,
            score_threshold=options.score_threshold,
        )
        total_s = time.perf_counter() - started
        timings = {"network_s": network_s, "postprocess_s": total_s - network_s}
        return Detections(instances=instances, scores=scores, timings_s=timings)

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu() for k, v in self.network.state_dict().items()}

    def extra(self) -> dict[str, Any]:
        return {
            "invert": self.invert,
            "postprocess": {
                "fg_threshold": self.params.fg_threshold,
                "core_threshold": self.params.core_threshold,
                "marker_h": self.params.marker_h,
                "merge_classes": list(self.params.merge_classes),
            },
            "min_area_px": self.min_area_px,
        }


def train(data: TrainingSet, config: UNetConfig, context: TrainContext) -> UNetDetector:
    """Train from scratch on patches of the labelled crops for the time budget."""
    import torch

    torch.set_num_threads(max(1, min(config.threads, torch.get_num_threads())))
    torch.manual_seed(config.seed)
    device = torch_device(context.device)
    invert = objects_are_dark(data)
    sampler = PatchSampler(data, config.patch_px, invert, config.augment, seed=config.seed)
    network = build_network(config, len(data.class_names)).to(device)
    network = network.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    bfloat16 = use_bfloat16(config.train_precision, device)
    budget_s = min(config.train_seconds, max(1.0, context.seconds_left() - 15.0))
    started = time.monotonic()
    step, losses = 0, []
    network.train()
    while True:
        elapsed = time.monotonic() - started
        if config.max_steps and step >= config.max_steps:
            break
        if elapsed >= budget_s and step > 0:
            break
        fraction = min(1.0, elapsed / budget_s)
        if config.max_steps:
            fraction = max(fraction, step / config.max_steps)
        warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * fraction))
        patches = [sampler.sample() for _ in range(config.batch_size)]
        images = torch.from_numpy(np.stack([p.image for p in patches])[:, None]).to(device)
        images = images.contiguous(memory_format=torch.channels_last)
        classes = torch.from_numpy(np.stack([p.classes for p in patches])).to(device)
        centre = torch.from_numpy(np.stack([p.centre for p in patches])).to(device)
        valid = torch.from_numpy(np.stack([p.valid for p in patches])).to(device)
        instances = torch.from_numpy(np.stack([p.instances for p in patches])).to(device)
        with _autocast(device, bfloat16):
            logits = network(images)
        loss = _loss(logits.float(), classes, centre, valid, config, instances)
        if not torch.isfinite(loss):
            raise ModelError(
                f"training diverged at step {step} (loss {loss.item()}); try a lower "
                "learning_rate or check the labels"
            )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append(float(loss.item()))
        report_train_step(context, step, losses, started, budget_s, config.max_steps, 20)
    context.metrics.update(
        {**train_summary(step, losses, started, 20), "invert": invert, "train_bfloat16": bfloat16}
    )
    detector = UNetDetector(
        config,
        data.class_names,
        network,
        invert,
        WatershedParams(merge_classes=tuple(data.few_examples())),
        data.min_object_area_px(),
        device=str(device),
    )
    # The thresholds are tuned under the arithmetic that finds objects on this machine.
    context.metrics["infer_bfloat16"] = detector.bfloat16
    if config.tune_postprocessing:
        params, crop_metrics = tune_postprocessing(detector, data, context)
        detector.params = params
        context.metrics.update(crop_metrics)
    return detector


FG_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.88, 0.94)
CORE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MARKER_H_GRID = (0.05, 0.1, 0.2)
# Crop scores this close to the best count as a tie (one object in 40 moves F1 by ~0.012).
TIE_TOLERANCE = 0.004


def tune_postprocessing(
    detector: UNetDetector, data: TrainingSet, context: TrainContext
) -> tuple[WatershedParams, dict[str, Any]]:
    """Pick the foreground and core thresholds that best reproduce the labelled crops.

    Objective: per class, F1 at IoU 0.5 over the crops minus half the mean diameter error,
    averaged over the classes (:func:`_score_crops`). The crops are the training data and hold
    few touching pairs, so several core thresholds often tie there while they differ on the
    whole image (0.936 against 0.956 F1 on a benchmark image for the first and the middle of
    three tied values). Ties are therefore broken towards the
    middle of the tied range, which is the choice least likely to sit on the edge of a cliff.
    The maps are computed once per crop (with context around it), so the grid costs seconds.
    """
    crops = _crop_maps(detector, data)
    markers = [(core, 0.0) for core in CORE_GRID] + [(0.5, h) for h in MARKER_H_GRID]
    timer = StageTimer(context.progress, "tune", len(FG_GRID) * len(markers), 0.5)
    scores: dict[tuple[float, tuple[float, float]], tuple[float, MatchCounts]] = {}
    for fg_index, fg_threshold in enumerate(FG_GRID):
        for marker_index, (core_threshold, marker_h) in enumerate(markers):
            timer.update(fg_index * len(markers) + marker_index)
            params = replace(
                detector.params,
                fg_threshold=fg_threshold,
                core_threshold=core_threshold,
                marker_h=marker_h,
            )
            # Sizes matter for the statistics: 10 % diameter error costs as much as 0.05 F1.
            objective, total = _score_crops(crops, detector, params)
            scores[(fg_threshold, (core_threshold, marker_h))] = (objective, total)
    timer.update(len(FG_GRID) * len(markers))
    best_for_marker = {marker: max(scores[(fg, marker)][0] for fg in FG_GRID) for marker in markers}
    cores = [m for m in markers if m[1] == 0.0]
    maxima = [m for m in markers if m[1] > 0.0]
    marker = _middle_of_best(cores, best_for_marker)
    # h-maxima markers are slower; use them only when (the middle of their own tie run)
    # reproduces the crops clearly better.
    h_marker = _middle_of_best(maxima, best_for_marker)
    if best_for_marker[h_marker] > best_for_marker[marker] + TIE_TOLERANCE:
        marker = h_marker
    # The foreground threshold sets the sizes: take the best one, not the middle of a tie.
    fg_threshold = max(FG_GRID, key=lambda fg: scores[(fg, marker)][0])
    params = replace(
        detector.params, fg_threshold=fg_threshold, core_threshold=marker[0], marker_h=marker[1]
    )
    total = scores[(fg_threshold, marker)][1]
    metrics = {
        "crop_f1": round(total.f1, 4),
        "crop_mean_abs_diameter_error_pct": round(100 * total.mean_abs_diameter_error, 2),
        "fg_threshold": params.fg_threshold,
        "core_threshold": params.core_threshold,
        "marker_h": params.marker_h,
    }
    log.info("post-processing tuned on crops: %s", metrics)
    return params, metrics


def _middle_of_best(candidates: list[Any], objective: dict[Any, float]) -> Any:
    """The middle candidate of the contiguous run of near-best ones around the first best.

    ``candidates`` are in grid order; a run is contiguous in that order. For a run of even
    length the upper of the two middle candidates is taken.
    """
    best = max(objective[c] for c in candidates)
    first = next(i for i, c in enumerate(candidates) if objective[c] >= best - 1e-12)
    start = stop = first
    while start > 0 and objective[candidates[start - 1]] >= best - TIE_TOLERANCE:
        start -= 1
    while stop + 1 < len(candidates) and objective[candidates[stop + 1]] >= best - TIE_TOLERANCE:
        stop += 1
    return candidates[(start + stop + 1) // 2]


def _crop_maps(
    detector: UNetDetector, data: TrainingSet
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Network maps of each labelled crop (computed with context around it), its truth labels
    and the class ids of its image's instances (``class_ids[label - 1]``)."""
    crops = []
    margin = detector.config.overlap_px
    for item in data.images:
        # Normalise with the whole image's limits, as at inference.
        normalised = normalise(item.pixels, detector.invert)
        for box in item.boxes:
            top, left = max(0, box.top - margin), max(0, box.left - margin)
            bottom = min(item.pixels.shape[0], box.bottom + margin)
            right = min(item.pixels.shape[1], box.right + margin)
            maps = predict_maps_tiled(
                detector.forward_tile,
                normalised[top:bottom, left:right],
                len(detector.classes) + 1,
                1024,
                margin,
                multiple=detector.multiple,
            )
            rows = slice(box.top - top, box.bottom - top)
            cols = slice(box.left - left, box.right - left)
            truth = item.instances.labels[box.slices()]
            crops.append((maps[:, rows, cols], truth, item.instances.class_ids))
    return crops


def _score_crops(
    crops: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    detector: UNetDetector,
    params: WatershedParams,
) -> tuple[float, MatchCounts]:
    """Class-balanced crop objective and the pooled counts for the metrics.

    Each class scores ``F1 − 0.5 × mean |D error|`` on its own (an object found with the wrong
    class counts against both), and the objective is the mean over the classes present. Pooled
    over objects instead, 32 single atoms outvoted the one labelled particle: the foreground
    threshold went to 0.94 and unseen particles came out 7 % too small and split.
    """
    n_classes = len(detector.classes)
    per_class = np.zeros((n_classes, 3), dtype=np.int64)
    errors: list[list[np.ndarray]] = [[] for _ in range(n_classes)]
    for maps, truth, truth_classes in crops:
        instances, _ = instances_from_maps(
            maps[:-1],
            maps[-1],
            detector.classes,
            params,
            min_area_px=np.array(detector.min_area_px),
            score_threshold=DetectOptions().score_threshold,
        )
        present = np.unique(truth[truth > 0])
        for index in range(n_classes):
            predicted_ids = np.flatnonzero(instances.class_ids == index + 1) + 1
            truth_ids = present[truth_classes[present - 1] == index + 1]
            if predicted_ids.size == 0 and truth_ids.size == 0:
                continue
            counts = match_instances(instances.labels, truth, predicted_ids, truth_ids)
            per_class[index] += (
                counts.true_positives,
                counts.false_positives,
                counts.false_negatives,
            )
            errors[index].append(counts.diameter_errors)
    objectives = []
    for index in range(n_classes):
        if not per_class[index].any():
            continue
        counts = MatchCounts(*map(int, per_class[index]), _joined(errors[index]))
        objectives.append(counts.f1 - 0.5 * counts.mean_abs_diameter_error)
    pooled = MatchCounts(
        *map(int, per_class.sum(axis=0)), _joined([e for group in errors for e in group])
    )
    return (float(np.mean(objectives)) if objectives else 0.0), pooled


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0)


def load(
    config: UNetConfig,
    classes: list[str],
    state: dict[str, Any],
    extra: dict[str, Any],
    device: str = "cpu",
) -> UNetDetector:
    """Rebuild a trained detector from its saved config, weights and extra values."""
    import torch

    network = build_network(config, len(classes))
    try:
        network.load_state_dict(state)
    except (RuntimeError, KeyError) as error:
        raise ModelError(
            f"the weights do not fit the saved U-Net configuration ({error}); train again"
        ) from error
    post = extra.get("postprocess", {})
    params = WatershedParams(
        fg_threshold=float(post.get("fg_threshold", 0.5)),
        core_threshold=float(post.get("core_threshold", 0.5)),
        marker_h=float(post.get("marker_h", 0.0)),
        merge_classes=_merge_classes(post.get("merge_classes")),
    )
    min_area = extra.get("min_area_px") or [1.0] * len(classes)
    torch.set_num_threads(max(1, min(config.threads, torch.get_num_threads())))
    return UNetDetector(
        config,
        classes,
        network,
        bool(extra.get("invert", False)),
        params,
        [float(a) for a in min_area],
        device=str(torch_device(device)),
    )


def _merge_classes(saved: Any) -> tuple[bool, ...]:
    """``merge_classes`` as saved in ``model.json`` (missing in models saved before it)."""
    if saved is None:
        return ()
    if not isinstance(saved, list) or not all(isinstance(flag, bool) for flag in saved):
        raise ModelError(
            f"model.json: postprocess.merge_classes must be a list of true/false, got {saved!r}; "
            "train the model again"
        )
    return tuple(saved)


register_engine(
    EngineSpec(
        name="unet",
        config_type=UNetConfig,
        train=train,
        load=load,
        summary="compact U-Net (classes + centre-ness) + marker watershed; fast on CPU",
    )
)
