"""``maskrcnn``: torchvision Mask R-CNN configured for small, dense objects (3–60 px).

With COCO weights (a local file: ``weights_path``, or ``$NOCODE_ML_WEIGHTS_DIR/
maskrcnn_resnet50_fpn_v2_coco.pth`` as baked into the GPU image) it fine-tunes the R50-FPN-v2
model; without them it trains a ResNet-18-FPN from scratch, which is the only size that learns
anything in minutes on a CPU (R50 takes ~7 s per step there). Settings that matter (measured,
see ``shared/notes/ml-engines.md``): anchors 4–64 px on P2–P6, no input resizing, BatchNorm
(not frozen) when training from scratch, ≥ 1000 detections per image.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
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
from pipelines.detection.registry import EngineSpec, register_engine
from pipelines.detection.tiling import TileInstances, iterate_tiles, merge_tile_instances
from pipelines.devices import limit_cpu_threads, torch_device
from pipelines.errors import InvalidInput, ModelError
from pipelines.formats.masks import InstanceMasks

log = logging.getLogger(__name__)

WEIGHTS_ENV = "NOCODE_ML_WEIGHTS_DIR"
COCO_WEIGHTS_FILE = "maskrcnn_resnet50_fpn_v2_coco.pth"
FEATURE_LEVELS = 5  # the feature pyramid's maps (4 ResNet stages + pooled): one anchor size each


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Backbone ``auto`` picks R50-FPN-v2 when COCO weights are found, else ResNet-18-FPN."""

    backbone: str = "auto"
    weights_path: str = ""
    anchor_sizes_px: tuple[int, ...] = (4, 8, 16, 32, 64)
    aspect_ratios: tuple[float, ...] = (0.7, 1.0, 1.4)
    patch_px: int = 256
    batch_size: int = 2
    learning_rate: float = 1e-3
    train_seconds: float = 150.0
    max_steps: int = 0
    seed: int = 0
    tile_px: int = 384
    overlap_px: int = 64
    detections_per_tile: int = 600
    # Per-object contrast was measured on the U-Net only; off here until measured.
    augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(object_contrast_probability=0.0)
    )
    threads: int = 0  # CPU threads cap while training; 0: as many as the process has

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.augment.items()}
            values.setdefault("object_contrast_probability", 0.0)
            object.__setattr__(self, "augment", AugmentConfig(**values))
        if self.backbone not in ("auto", "resnet50_fpn_v2", "resnet18_fpn"):
            raise ValueError("backbone must be auto, resnet50_fpn_v2 or resnet18_fpn")
        if len(self.anchor_sizes_px) != FEATURE_LEVELS:
            raise ValueError(
                f"anchor_sizes_px needs {FEATURE_LEVELS} sizes, one per feature level of the "
                f"network, got {len(self.anchor_sizes_px)}"
            )
        if not self.aspect_ratios:
            raise ValueError("aspect_ratios needs at least one ratio")


def coco_weights(config: MaskRCNNConfig) -> Path | None:
    """The local COCO weights file, if one is configured or baked into the environment."""
    if config.weights_path:
        path = Path(config.weights_path)
        if not path.is_file():
            raise InvalidInput(f"weights file {path} does not exist; fix weights_path")
        return path
    folder = os.environ.get(WEIGHTS_ENV)
    if folder and (Path(folder) / COCO_WEIGHTS_FILE).is_file():
        return Path(folder) / COCO_WEIGHTS_FILE
    return None


def build_network(config: MaskRCNNConfig, n_classes: int, backbone: str) -> Any:
    """Mask R-CNN with small anchors, no resizing and room for dense images."""
    from torch import nn
    from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn_v2
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    sizes = tuple((int(s),) for s in config.anchor_sizes_px)
    anchors = AnchorGenerator(sizes, (tuple(config.aspect_ratios),) * len(sizes))
    common = {
        "min_size": config.patch_px,
        "max_size": config.patch_px,
        "rpn_anchor_generator": anchors,
        "box_detections_per_img": config.detections_per_tile,
        "rpn_pre_nms_top_n_train": 2000,
        "rpn_post_nms_top_n_train": 1000,
        "rpn_pre_nms_top_n_test": 3000,
        "rpn_post_nms_top_n_test": 1500,
        "box_score_thresh": 0.05,
        "box_batch_size_per_image": 256,
    }
    if backbone == "resnet50_fpn_v2":
        # torchvision builds v2 with COCO's anchors (32-512 px) and an RPN head sized for
        # them; the COCO weights fit that head, so ours (3-60 px objects) replace only the
        # generator, which needs as many anchors per place as the head predicts.
        del common["rpn_anchor_generator"]
        model = maskrcnn_resnet50_fpn_v2(
            weights=None, weights_backbone=None, num_classes=91, **common
        )
        coco_anchors = model.rpn.anchor_generator.num_anchors_per_location()[0]
        if anchors.num_anchors_per_location()[0] != coco_anchors:
            raise InvalidInput(
                f"the COCO network (backbone resnet50_fpn_v2) needs {coco_anchors} aspect_ratios, "
                f"got {len(config.aspect_ratios)}; give {coco_anchors}, or use "
                "--set backbone=resnet18_fpn"
            )
        model.rpn.anchor_generator = anchors
        return model
    body = resnet_fpn_backbone(
        backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5
    )
    return MaskRCNN(body, num_classes=n_classes + 1, **common)


def _replace_heads(model: Any, n_classes: int) -> None:
    """Swap the COCO box and mask predictors for ones with our classes."""
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    box_in = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(box_in, n_classes + 1)
    mask_in = model.roi_heads.mask_predictor.conv5_mask.in_channels
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask_in, 256, n_classes + 1)


def _targets(patch: Any, device: Any) -> dict[str, Any]:
    import torch

    ids = np.unique(patch.instances[patch.valid])
    ids = ids[ids > 0]
    masks, boxes, labels = [], [], []
    for instance in ids:
        mask = (patch.instances == instance) & patch.valid
        rows, cols = np.nonzero(mask)
        if rows.size < 2:
            continue
        masks.append(mask)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        labels.append(int(patch.classes[rows[0], cols[0]]))
    size = patch.image.shape
    return {
        "boxes": torch.tensor(np.array(boxes, np.float32).reshape(-1, 4), device=device),
        "labels": torch.tensor(np.array(labels, np.int64), device=device),
        "masks": torch.tensor(np.array(masks, np.uint8).reshape(-1, *size), device=device),
    }


def _as_input(image: np.ndarray, device: Any) -> Any:
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(np.clip(image, -1.0, 2.0), dtype=np.float32))
    return tensor[None].expand(3, -1, -1).to(device)


class MaskRCNNDetector(Detector):
    """A trained Mask R-CNN applied in overlapping tiles, merged by instance ownership."""

    engine = "maskrcnn"

    def __init__(
        self,
        config: MaskRCNNConfig,
        classes: list[str],
        network: Any,
        backbone: str,
        invert: bool,
        device: str = "cpu",
    ) -> None:
        super().__init__(config, classes)
        self.network = network.eval().to(device)
        self.backbone = backbone
        self.invert = invert
        self.device = device

    def detect(
        self, image: np.ndarray, options: DetectOptions | None = None, progress: Any = None
    ) -> Detections:
        import torch

        options = options or DetectOptions()
        started = time.perf_counter()
        normalised = normalise(image, self.invert)
        height, width = normalised.shape
        # Never larger than the training tiles: the anchors and the RPN learnt that scale.
        tile_px = min(options.tile_px, self.config.tile_px)
        overlap = options.overlap_px if options.overlap_px is not None else self.config.overlap_px
        window = tile_px + 2 * overlap
        self.network.transform.min_size = (window,)
        self.network.transform.max_size = window
        found = []
        for tile in iterate_tiles(height, width, tile_px, overlap, progress):
            pixels = normalised[tile.read()]
            h, w = pixels.shape
            padded = np.pad(pixels, ((0, window - h), (0, window - w)), mode="constant")
            with torch.inference_mode():
                output = self.network([_as_input(padded, self.device)])[0]
            keep = output["scores"] >= options.score_threshold
            masks = (output["masks"][keep, 0, :h, :w] > 0.5).cpu().numpy()
            found.append(
                (
                    tile,
                    TileInstances(
                        list(masks),
                        output["labels"][keep].cpu().numpy(),
                        output["scores"][keep].cpu().numpy(),
                    ),
                )
            )
        labels, class_ids, scores = merge_tile_instances(height, width, found)
        area = np.bincount(labels.ravel(), minlength=class_ids.size + 1)[1:]
        keep = area >= (options.min_area_px or 1)
        if options.max_area_px is not None:
            keep &= area <= options.max_area_px
        lookup = np.zeros(class_ids.size + 1, dtype=np.int32)
        lookup[1:][keep] = np.arange(1, keep.sum() + 1)
        instances = InstanceMasks(lookup[labels], class_ids[keep].astype(np.int32), self.classes)
        return Detections(
            instances=instances,
            scores=scores[keep],
            timings_s={"network_s": time.perf_counter() - started, "postprocess_s": 0.0},
        )

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().cpu() for k, v in self.network.state_dict().items()}

    def extra(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "invert": self.invert}


def load_coco_weights(network: Any, weights: Path) -> None:
    """Load the COCO state dict at ``weights``; a wrong or damaged file is a one-line error."""
    import pickle

    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except (RuntimeError, pickle.UnpicklingError, EOFError, TypeError, KeyError) as error:
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise ModelError(
            f"{weights} is not a state dict of torchvision's maskrcnn_resnet50_fpn_v2 COCO "
            f"weights ({first_line}); replace the file, or train from scratch with "
            "--set backbone=resnet18_fpn"
        ) from error


def train(data: TrainingSet, config: MaskRCNNConfig, context: TrainContext) -> MaskRCNNDetector:
    """Fine-tune from COCO weights when available, else train ResNet-18-FPN from scratch."""
    import torch

    limit_cpu_threads(config.threads)
    torch.manual_seed(config.seed)
    device = torch_device(context.device)
    weights = coco_weights(config) if config.backbone in ("auto", "resnet50_fpn_v2") else None
    backbone = config.backbone
    if backbone == "auto":
        backbone = "resnet50_fpn_v2" if weights is not None else "resnet18_fpn"
    network = build_network(config, len(data.class_names), backbone)
    if backbone == "resnet50_fpn_v2":
        if weights is not None:
            load_coco_weights(network, weights)
        _replace_heads(network, len(data.class_names))
    network.to(device).train()
    invert = objects_are_dark(data)
    sampler = PatchSampler(data, config.patch_px, invert, config.augment, seed=config.seed)
    parameters = [p for p in network.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=1e-4)
    budget_s = min(config.train_seconds, max(1.0, context.seconds_left() - 5.0))
    started, step, losses = time.monotonic(), 0, []
    while True:
        elapsed = time.monotonic() - started
        if (config.max_steps and step >= config.max_steps) or (elapsed >= budget_s and step):
            break
        fraction = min(1.0, elapsed / budget_s)
        warm = min(1.0, (step + 1) / 20)
        for group in optimiser.param_groups:
            group["lr"] = config.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * fraction))
        images, targets = [], []
        for _ in range(config.batch_size):
            patch = sampler.sample()
            # Outside the crops nothing is known: show the model flat background there.
            if not patch.valid.all():
                background = patch.valid & (patch.classes == 0)
                fill = float(np.median(patch.image[background])) if background.any() else 0.0
                patch.image[~patch.valid] = fill
            images.append(_as_input(patch.image, device))
            targets.append(_targets(patch, device))
        loss_parts = network(images, targets)
        loss = sum(loss_parts.values())
        if not torch.isfinite(loss):
            raise ModelError(f"Mask R-CNN training diverged at step {step}; lower learning_rate")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        losses.append(float(loss.item()))
        report_train_step(context, step, losses, started, budget_s, config.max_steps, 10)
    context.metrics.update(
        {
            **train_summary(step, losses, started, 10),
            "backbone": backbone,
            "coco_weights": weights is not None,
        }
    )
    return MaskRCNNDetector(config, data.class_names, network, backbone, invert, str(device))


def load(
    config: MaskRCNNConfig,
    classes: list[str],
    state: dict[str, Any],
    extra: dict[str, Any],
    device: str = "cpu",
) -> MaskRCNNDetector:
    """Rebuild the network of the saved backbone and load its weights."""
    backbone = str(extra.get("backbone", "resnet18_fpn"))
    if backbone not in ("resnet50_fpn_v2", "resnet18_fpn"):
        raise ModelError(f"unknown Mask R-CNN backbone {backbone!r} in the model; train again")
    network = build_network(config, len(classes), backbone)
    if backbone == "resnet50_fpn_v2":
        _replace_heads(network, len(classes))
    try:
        network.load_state_dict(state)
    except (RuntimeError, KeyError) as error:
        raise ModelError(
            f"the weights do not fit the saved Mask R-CNN ({error}); train again"
        ) from error
    return MaskRCNNDetector(
        config,
        classes,
        network,
        backbone,
        bool(extra.get("invert", False)),
        str(torch_device(device)),
    )


register_engine(
    EngineSpec(
        name="maskrcnn",
        config_type=MaskRCNNConfig,
        train=train,
        load=load,
        summary="torchvision Mask R-CNN for small dense objects; COCO weights from a local file",
    )
)
