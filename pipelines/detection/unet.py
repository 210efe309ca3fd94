"""``unet``: the fast default engine — a compact U-Net + marker watershed, trained from scratch.

Why this engine (measured on the shared 2-core CPU; ``benchmarks/detection.py`` and
``shared/notes/ml-engines.md``): a 0.12 M-parameter U-Net (16-32-64 channels, channels-last
memory) predicting per-class probabilities and a centre-ness map trains from two crops in
165 s (under 3 min with the tuning) and beats the calibrated classical pipeline and the
random-forest peer on F1 and on diameter error; Mask R-CNN from scratch on a CPU does not get
close in minutes. Instances come from a watershed of the centre-ness map seeded by its cores;
the foreground and core thresholds (and the core shares of few-pixel classes) are tuned on the
labelled crops after training (:mod:`pipelines.detection.tuning`) and saved with the model.
The network and its loss are in :mod:`pipelines.detection.unet_network`. The centre-ness loss
is weighed up where labelled objects touch, since merged touching pairs were the largest
diameter errors left. Finding objects runs in bfloat16 where the hardware has it natively
(1.8x faster on the benchmark CPU, same objects).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
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
    WatershedParams,
    instances_from_maps,
)
from pipelines.detection.registry import EngineSpec, register_engine
from pipelines.detection.tiling import pad_to_multiple, predict_maps_tiled
from pipelines.detection.tuning import tune_postprocessing
from pipelines.detection.unet_network import (
    autocast,
    build_network,
    training_loss,
    use_bfloat16,
)
from pipelines.devices import limit_cpu_threads, torch_device
from pipelines.errors import ModelError

log = logging.getLogger(__name__)


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class UNetConfig:
    """Network size, training budget and augmentation of the ``unet`` engine.

    ``train_seconds`` is the wall-clock budget of the training loop (``minutes`` on the CLI
    overrides it); ``max_steps`` caps it in steps (0 = no cap), whichever ends first.
    """

    # Three levels (receptive field ~40 px, wider than the particles) run more steps in the
    # budget than four (1432 in 150 s) and infer a 2048² image in ~2.4 s (float32, one view);
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
    threads: int = 0  # CPU threads cap while training; 0: as many as the process has
    # Loss mix. ``boundary_balance``: share of the cross-entropy averaged per class (all classes)
    # instead of per pixel; it pushes object edges outward (+3.6 to +5.6 % diameter bias at 0.5
    # on the benchmark), so 0 by default.
    # ``multiclass_balance`` replaces it when there are two or more object classes: without it
    # the 5-px single atoms beside particles were found at F1 0.22 instead of 0.80.
    # Tried and not kept: 3x cross-entropy on a 1-px band each side of every edge, for the
    # diameters. On ``particles`` seed 0 it gave |D err| 4.05 / 4.29 % (same / unseen image)
    # against 4.00 / 4.16 %; on seed 1, 3.62 / 3.95 % against 3.83 / 3.94 % (one training each).
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
    # within 0.05 %) in 1.5 s instead of 2.8 s on a 2048² image (one view, before the turn).
    # Training in bfloat16 runs 1.5x the steps in the budget but was not more accurate
    # (particles seeds 1-2), so it stays float32 by default.
    precision: str = "auto"
    train_precision: str = "fp32"
    # Average each tile's maps with those of the tile turned by 180° (one batch of two; a pass
    # costs twice as long). benchmarks/detection_postprocess.py, 12 particles+sites images, the
    # thresholds tuned on the crops with and without it: single-site F1 0.882 -> 0.890 (8 rose,
    # 4 fell; lowest 0.853 -> 0.860), particle F1 0.929 -> 0.915, particle |D error| 4.6 ->
    # 5.2 %. Eight earlier networks retuned the same way: site F1 0.884 -> 0.890, particles
    # alone |D error| 4.13 -> 3.95 % (4 images, all lower). A flip instead of the turn gave site
    # F1 0.893 but a lower minimum and a larger D error on one network. More views did not
    # pay: the four flips, or eight with the transposes, left particle |D error| at 4.00/4.06/
    # 3.75/3.80 and 4.00/4.08/3.71/4.00 % against the turn's 4.00/4.16/3.83/3.94 % (2 networks,
    # same and unseen image) for 2.3x and 7x the network time.
    test_time_turn: bool = True

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
        test_time_turn: bool = False,
    ) -> None:
        super().__init__(config, classes)
        import torch

        self.network = network.eval().to(device).to(memory_format=torch.channels_last)
        self.invert = invert
        self.params = params
        self.min_area_px = list(min_area_px)
        self.device = device
        self.bfloat16 = use_bfloat16(config.precision, device)
        # Per model, not per config: the thresholds were tuned with or without it.
        self.test_time_turn = test_time_turn

    def forward_tile(self, tile: np.ndarray) -> np.ndarray:
        """``(h, w)`` normalised pixels → ``(K + 1, h, w)``: class probabilities, centre-ness.

        With ``test_time_turn`` the maps are the mean over the tile and the tile turned by
        180°, so they do not depend on which way up the tile is (exactly so when the tile
        needs no padding: it is padded once, before turning, so the padding sits at the
        bottom right of one view and the top left of the other).
        """
        import torch

        levels = len(self.config.channels) - 1
        padded, (height, width) = pad_to_multiple(tile, 2**levels)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))[None, None]
            if self.test_time_turn:
                x = torch.cat([x, x.flip(-2, -1)])
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.bfloat16):
                logits = self.network(x).float()  # maps stay float32
            n_logits = logits.shape[1] - 1
            probabilities = torch.softmax(logits[:, :n_logits], dim=1)[:, 1:]
            centre = torch.sigmoid(logits[:, n_logits:])
            maps = torch.cat([probabilities, centre], dim=1)
            if self.test_time_turn:
                maps = (maps[:1] + maps[1:].flip(-2, -1)) / 2
            return maps[0, :, :height, :width].cpu().numpy()

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
                "core_shares": list(self.params.core_shares),
            },
            "min_area_px": self.min_area_px,
            "test_time_turn": self.test_time_turn,
        }


def train(data: TrainingSet, config: UNetConfig, context: TrainContext) -> UNetDetector:
    """Train from scratch on patches of the labelled crops for the time budget."""
    import torch

    limit_cpu_threads(config.threads)
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
        with autocast(device, bfloat16):
            logits = network(images)
        loss = training_loss(logits.float(), classes, centre, valid, config, instances)
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
        test_time_turn=config.test_time_turn,
    )
    # The thresholds are tuned under the arithmetic that finds objects on this machine.
    context.metrics["infer_bfloat16"] = detector.bfloat16
    if config.tune_postprocessing:
        params, crop_metrics = tune_postprocessing(detector, data, context)
        detector.params = params
        context.metrics.update(crop_metrics)
    return detector


def load(
    config: UNetConfig,
    classes: list[str],
    state: dict[str, Any],
    extra: dict[str, Any],
    device: str = "cpu",
) -> UNetDetector:
    """Rebuild a trained detector from its saved config, weights and extra values."""

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
        merge_classes=_merge_classes(post.get("merge_classes"), len(classes)),
        core_shares=_core_shares(post.get("core_shares"), len(classes)),
    )
    min_area = extra.get("min_area_px") or [1.0] * len(classes)
    if not isinstance(min_area, list) or len(min_area) != len(classes):
        raise ModelError(
            f"model.json: min_area_px must be a list of one number per class, got {min_area!r}; "
            "train the model again"
        )
    return UNetDetector(
        config,
        classes,
        network,
        bool(extra.get("invert", False)),
        params,
        [float(a) for a in min_area],
        device=str(torch_device(device)),
        # Models saved before the turn existed were tuned without it. Their config then shows
        # the field's default; what runs is the detector's flag.
        test_time_turn=bool(extra.get("test_time_turn", False)),
    )


def _merge_classes(saved: Any, n_classes: int) -> tuple[bool, ...]:
    """``merge_classes`` as saved in ``model.json`` (missing in models saved before it)."""
    if saved is None:
        return ()
    if not _per_class_list(saved, n_classes) or not all(isinstance(f, bool) for f in saved):
        raise ModelError(
            f"model.json: postprocess.merge_classes must be a list of true/false, one per class, "
            f"got {saved!r}; train the model again"
        )
    return tuple(saved)


def _core_shares(saved: Any, n_classes: int) -> tuple[float, ...]:
    """``core_shares`` as saved in ``model.json`` (missing in models saved before it)."""
    if saved is None:
        return ()
    if not _per_class_list(saved, n_classes) or not all(
        isinstance(share, int | float) and not isinstance(share, bool) and 0 <= share < 1
        for share in saved
    ):
        raise ModelError(
            f"model.json: postprocess.core_shares must be a list of numbers from 0 to below 1, "
            f"one per class, got {saved!r}; train the model again"
        )
    return tuple(float(share) for share in saved)


def _per_class_list(saved: Any, n_classes: int) -> bool:
    """A list of one value per class, or empty (none set: training without tuning)."""
    return isinstance(saved, list) and len(saved) in (0, n_classes)


register_engine(
    EngineSpec(
        name="unet",
        config_type=UNetConfig,
        train=train,
        load=load,
        summary="compact U-Net (classes + centre-ness) + marker watershed; fast on CPU",
    )
)
