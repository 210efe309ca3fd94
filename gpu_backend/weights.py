"""Pretrained weights baked into the GPU image, so no job ever downloads at run time.

The Dockerfile runs ``python -m gpu_backend.weights download /opt/nocode-ml/weights`` (the
only step that needs the internet) and sets ``NOCODE_ML_WEIGHTS_DIR`` to that folder; the
engines look there for these file names. Each file is a plain ``torch.save`` state dict, so
it loads with ``torch.load(..., weights_only=True)``.

``python -m gpu_backend.weights check DIR`` verifies the folder (used at the end of the image
build, and by the tests on locally made files).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import InvalidInput
from pipelines.fileio import atomic_path

log = logging.getLogger(__name__)

WEIGHTS_ENV = "NOCODE_ML_WEIGHTS_DIR"


def _maskrcnn_coco() -> dict[str, Any]:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

    return MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.get_state_dict(progress=False)


def _timm(name: str) -> Callable[[], dict[str, Any]]:
    def fetch() -> dict[str, Any]:
        import timm

        return timm.create_model(name, pretrained=True).state_dict()

    return fetch


@dataclass(frozen=True)
class PretrainedFile:
    """One file of the weights folder and where its tensors come from."""

    file_name: str
    source: str
    fetch: Callable[[], dict[str, Any]]
    min_tensors: int


PRETRAINED = (
    PretrainedFile(
        "maskrcnn_resnet50_fpn_v2_coco.pth",
        "torchvision MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
        _maskrcnn_coco,
        300,
    ),
    PretrainedFile(
        "convnext_tiny_imagenet.pth",
        "timm convnext_tiny.fb_in1k",
        _timm("convnext_tiny.fb_in1k"),
        150,
    ),
    PretrainedFile(
        "convnext_atto_imagenet.pth",
        "timm convnext_atto.d2_in1k",
        _timm("convnext_atto.d2_in1k"),
        100,
    ),
)


def weights_dir() -> Path | None:
    """The folder named by ``NOCODE_ML_WEIGHTS_DIR``, if set."""
    value = os.environ.get(WEIGHTS_ENV, "")
    return Path(value) if value else None


def download(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Fetch every pretrained file into ``out_dir`` (needs the internet; image build only)."""
    import torch

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for item in PRETRAINED:
        log.info("fetching %s -> %s", item.source, item.file_name)
        state = item.fetch()
        with atomic_path(folder / item.file_name) as tmp:
            torch.save(state, tmp)
        written.append(folder / item.file_name)
    return written


def check(
    out_dir: str | os.PathLike[str], file_names: Sequence[str] | None = None
) -> dict[str, int]:
    """Load the weight files (all by default); return tensor counts or raise ``InvalidInput``."""
    import torch

    folder = Path(out_dir)
    counts = {}
    for item in PRETRAINED:
        if file_names is not None and item.file_name not in file_names:
            continue
        path = folder / item.file_name
        if not path.is_file():
            raise InvalidInput(f"{path} is missing; rebuild the image (weights download step)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a damaged file
            raise InvalidInput(f"{path} cannot be read ({error}); download it again") from error
        values = state.values() if isinstance(state, dict) else ()
        tensors = sum(1 for value in values if isinstance(value, torch.Tensor))
        if tensors < item.min_tensors:
            raise InvalidInput(
                f"{path} holds {tensors} tensors, expected at least {item.min_tensors} for "
                f"{item.source}; download it again"
            )
        counts[item.file_name] = tensors
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_backend.weights", description=__doc__)
    parser.add_argument("action", choices=("download", "check"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.action == "download":
            download(args.folder)
        for name, tensors in check(args.folder).items():
            print(f"{name}: {tensors} tensors")
    except InvalidInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
