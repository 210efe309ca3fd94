"""Classification engines, looked up by name like timm's ``create_model``.

An engine owns a frozen dataclass config (saved in the model folder) and knows how to build its
network; the training loop, data handling and Grad-CAM are shared. Adding an engine means one
class here decorated with :func:`register_engine`.

Network contract: ``forward_features(x)`` gives ``(B, C, h, w)`` feature maps (used by
Grad-CAM) and ``forward_head(features)`` gives ``(B, n_classes)`` logits, as timm models do.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pipelines.classification.augment import AUGMENTATIONS
from pipelines.classification.preprocess import IMAGENET_MEAN, IMAGENET_STD
from pipelines.errors import InvalidInput
from pipelines.options import check_option_types

log = logging.getLogger(__name__)

DEFAULT_ENGINE = "convnext"


@dataclass(frozen=True)
class ConvNeXtConfig:
    """Settings of the ConvNeXt engine; every field is saved in ``model.json``.

    The defaults are the CPU preset (``convnext_atto`` at 128 px trains in about a minute on
    2 cores); :data:`GPU_PRESET` swaps in ``convnext_tiny`` at 224 px.

    - ``input_size_px``: side of the square network input; images keep their aspect ratio.
    - ``epochs`` / ``max_minutes`` (None: no cap): whichever ends first stops training, and the
      learning-rate schedule follows it. ``patience_epochs``: stop when validation has not
      improved for that many epochs.
    - ``val_fraction``: share of each class held out for validation (0: none, no early stop).
    - ``pretrained_weights_path``: local ImageNet weights file. Training from it uses
      :data:`FINE_TUNE_LEARNING_RATE` unless a ``learning_rate`` is given.
    - ``augmentation``: preset name in :data:`~pipelines.classification.augment.AUGMENTATIONS`.
    - ``normalize_percentiles``: per-image intensity percentiles mapped to 0 and 1;
      ``channel_mean``/``channel_std`` standardise the replicated grey channels.
    - ``crop_objects``: classify objects outlined in LabelMe files instead of whole images,
      each cropped as a square with ``crop_margin_fraction`` of its size added on every side.
    """

    model_name: str = "convnext_atto"
    input_size_px: int = 128
    epochs: int = 200
    max_minutes: float | None = 10.0
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.1
    balance_classes: bool = True
    seed: int = 0
    val_fraction: float = 0.2
    patience_epochs: int = 50
    pretrained_weights_path: str | None = None
    augmentation: str = "microscopy"
    normalize_percentiles: tuple[float, float] = (1.0, 99.8)
    channel_mean: tuple[float, ...] = IMAGENET_MEAN
    channel_std: tuple[float, ...] = IMAGENET_STD
    crop_objects: bool = False
    crop_margin_fraction: float = 0.25

    def __post_init__(self) -> None:
        problems = []
        if self.input_size_px < 32:
            problems.append(f"input_size_px must be at least 32, got {self.input_size_px}")
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            problems.append(f"max_minutes must be positive, got {self.max_minutes}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.patience_epochs < 1:
            problems.append(f"patience_epochs must be at least 1, got {self.patience_epochs}")
        if self.augmentation not in AUGMENTATIONS:
            problems.append(
                f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {self.augmentation!r}"
            )
        low, high = self.normalize_percentiles
        if not 0 <= low < high <= 100:
            problems.append(
                f"normalize_percentiles must be 0 <= low < high <= 100, got {low, high}"
            )
        if len(self.channel_mean) != len(self.channel_std) or not self.channel_mean:
            problems.append("channel_mean and channel_std must have the same, non-zero length")
        if self.crop_margin_fraction < 0:
            problems.append(f"crop_margin_fraction must be >= 0, got {self.crop_margin_fraction}")
        if problems:
            raise InvalidInput("invalid classification config: " + "; ".join(problems))

    @property
    def in_channels(self) -> int:
        return len(self.channel_mean)


# The default learning rate suits training from scratch; a step that size from ImageNet
# weights would wash out what they learnt (timm's ConvNeXt fine-tuning recipes use 5e-5 to 1e-4
# at batch 512, about 1e-4 to 5e-4 at our batch sizes of 16 to 32).
FINE_TUNE_LEARNING_RATE = 5e-4
GPU_PRESET: dict[str, Any] = {"model_name": "convnext_tiny", "input_size_px": 224, "batch_size": 32}
# A folder of ImageNet weight files named <model_name>.{safetensors,pth,pt,bin}, baked into the
# GPU image: used when a config gives no pretrained_weights_path ("" forces training from scratch).
PRETRAINED_DIR_ENV = "NOCODE_ML_PRETRAINED_DIR"
WEIGHTS_DIR_ENV = "NOCODE_ML_WEIGHTS_DIR"  # the GPU image's weights folder (Dockerfile)


def config_from_dict(config_class: type, values: dict[str, Any] | None, engine: str) -> Any:
    """Build a frozen config from user or JSON values; unknown keys are an error."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InvalidInput(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for engine "
            f"'{engine}'; known settings: {', '.join(fields)}"
        )
    # A wrong type (``--set epochs=2.5``, a string "False") is one line naming the setting,
    # not a crash deep in training, nor a string that reads as true.
    # Lists (JSON has no tuples) come back as tuples from the check.
    values = check_option_types(values, config_class, f"setting of engine '{engine}':")
    try:
        return config_class(**values)
    except TypeError as error:
        raise InvalidInput(f"invalid setting for engine '{engine}': {error}") from error


def check_model_name(name: str) -> None:
    """Raise unless timm knows the ConvNeXt model ``name``."""
    import timm

    known = timm.list_models("convnext*")
    if not name.startswith("convnext") or name not in known:
        listed = ", ".join(m for m in known if "_" in m)
        raise InvalidInput(f"unknown ConvNeXt model '{name}'; choose one of: {listed}")


class ConvNeXtEngine:
    """timm ConvNeXt family (``convnext_atto`` … ``convnext_large``), from scratch or ImageNet."""

    name: ClassVar[str] = "convnext"
    config_class: ClassVar[type] = ConvNeXtConfig

    def __init__(self, config: ConvNeXtConfig) -> None:
        check_model_name(config.model_name)  # a typing mistake, before images are loaded
        self.config = config

    def build(self, num_classes: int, *, load_pretrained: bool = True) -> Any:
        """A fresh network with ``num_classes`` outputs.

        With ``load_pretrained`` and a ``pretrained_weights_path``, ImageNet weights are loaded
        (training); prediction builds without them and loads the trained state dict instead.
        """
        import timm

        name = self.config.model_name
        model = timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=self.config.in_channels
        )
        if load_pretrained and self.config.pretrained_weights_path:
            load_pretrained_weights(model, Path(self.config.pretrained_weights_path))
        return model


def load_pretrained_weights(model: Any, path: Path) -> int:
    """Load ImageNet (or other) weights from a local file, dropping the classifier head.

    Accepts a timm/PyTorch state dict (``.pt``/``.pth``/``.bin``, optionally wrapped in
    ``{"model": ...}`` or ``{"state_dict": ...}``) or a ``.safetensors`` file. Tensors whose
    shape differs from the network's (the head, another class count) are skipped. Returns the
    number of tensors loaded.
    """
    import torch

    if not path.is_file():
        raise InvalidInput(f"pretrained weights file {path} does not exist; check the path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise several types for a bad file
        raise InvalidInput(f"cannot read pretrained weights {path.name} ({error})") from error
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise InvalidInput(f"{path.name} does not hold a state dict of weights")
    try:
        from timm.models.convnext import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, model)  # official FB checkpoints → timm names
    except Exception:  # a timm-format dict passes unchanged; anything odd is matched below
        log.debug("checkpoint_filter_fn did not apply to %s", path)
    own = model.state_dict()
    usable = {
        key: value
        for key, value in state.items()
        if key in own
        and not key.startswith("head.fc.")
        and tuple(value.shape) == tuple(own[key].shape)
    }
    if not usable:
        raise InvalidInput(
            f"{path.name} holds no weights that fit {type(model).__name__} "
            f"'{getattr(model, 'default_cfg', {}).get('architecture', '')}'; use the ImageNet "
            "weights of the same model_name"
        )
    model.load_state_dict(usable, strict=False)
    log.info(
        "loaded %d of %d weight tensors from %s (head left random)", len(usable), len(own), path
    )
    return len(usable)


_ENGINES: dict[str, type] = {}


def register_engine(cls: type) -> type:
    """Class decorator: make an engine available under ``cls.name``."""
    _ENGINES[cls.name] = cls
    return cls


register_engine(ConvNeXtEngine)


def list_engines() -> list[str]:
    """Names accepted by :func:`create_engine`, sorted."""
    return sorted(_ENGINES)


def create_engine(name: str | None = None, **config: Any) -> Any:
    """An engine by name with its config built from keyword overrides of the defaults."""
    name = name or DEFAULT_ENGINE
    if name not in _ENGINES:
        raise InvalidInput(
            f"unknown classification engine '{name}'; choose one of: {', '.join(list_engines())}"
        )
    cls = _ENGINES[name]
    return cls(config_from_dict(cls.config_class, config, name))


def pretrained_weights_from_env(model_name: str) -> str | None:
    """ImageNet weights for ``model_name`` baked into the GPU image, if there are any.

    Looks in ``$NOCODE_ML_PRETRAINED_DIR`` for ``<model_name>.{safetensors,pth,pt,bin}`` and in
    ``$NOCODE_ML_WEIGHTS_DIR`` (the Dockerfile's folder, shared with Mask R-CNN) for
    ``<model_name>_imagenet.pth``.
    """
    candidates: list[Path] = []
    if folder := os.environ.get(PRETRAINED_DIR_ENV):
        candidates += [
            Path(folder) / f"{model_name}{s}" for s in (".safetensors", ".pth", ".pt", ".bin")
        ]
    if folder := os.environ.get(WEIGHTS_DIR_ENV):
        candidates.append(Path(folder) / f"{model_name}_imagenet.pth")
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


def device_preset(engine: str | None, device: str) -> dict[str, Any]:
    """Default overrides for ``device``: the GPU preset on CUDA, nothing on CPU."""
    if (engine or DEFAULT_ENGINE) == "convnext" and str(device).startswith("cuda"):
        return dict(GPU_PRESET)
    return {}
