"""Pretrained weights baked into the GPU image, so no job ever downloads at run time.

The Dockerfile runs ``python -m gpu_backend.weights download /opt/nocode-ml/weights`` (the
only step that needs the internet) and sets ``NOCODE_ML_WEIGHTS_DIR`` to that folder; the
engines look there for these file names. Each file is a plain ``torch.save`` state dict, so
it loads with ``torch.load(..., weights_only=True)``.

``python -m gpu_backend.weights check DIR`` verifies the folder and loads each file into its
engine's network as a training would (used at the end of the image build, and by the tests on
locally made files).
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

from pipelines.errors import InvalidInput, NoCodeMLError
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


def _into_maskrcnn(path: Path) -> None:
    from pipelines.detection.maskrcnn import MaskRCNNConfig, build_network, load_coco_weights

    load_coco_weights(build_network(MaskRCNNConfig(), 1, "resnet50_fpn_v2"), path)


def _into_convnext(model_name: str) -> Callable[[Path], None]:
    def load(path: Path) -> None:
        from pipelines.classification.engines import create_engine, load_pretrained_weights

        network = create_engine("convnext", model_name=model_name).build(2, load_pretrained=False)
        loaded = load_pretrained_weights(network, path)
        expected = len(network.state_dict()) - 2  # all but the new class layer's two tensors
        if loaded < expected:
            raise InvalidInput(f"only {loaded} of the {expected} tensors fit {model_name}")

    return load


@dataclass(frozen=True)
class PretrainedFile:
    """One file of the weights folder, where its tensors come from, and how the engine that
    uses it loads it (``load_into``, the same calls a training makes)."""

    file_name: str
    source: str
    fetch: Callable[[], dict[str, Any]]
    min_tensors: int
    load_into: Callable[[Path], None]


PRETRAINED = (
    PretrainedFile(
        "maskrcnn_resnet50_fpn_v2_coco.pth",
        "torchvision MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
        _maskrcnn_coco,
        300,
        _into_maskrcnn,
    ),
    PretrainedFile(
        "convnext_tiny_imagenet.pth",
        "timm convnext_tiny.fb_in1k",
        _timm("convnext_tiny.fb_in1k"),
        150,
        _into_convnext("convnext_tiny"),
    ),
    PretrainedFile(
        "convnext_atto_imagenet.pth",
        "timm convnext_atto.d2_in1k",
        _timm("convnext_atto.d2_in1k"),
        100,
        _into_convnext("convnext_atto"),
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
    out_dir: str | os.PathLike[str],
    file_names: Sequence[str] | None = None,
    *,
    into_engines: bool = False,
) -> dict[str, int]:
    """Load the weight files (all by default); return tensor counts or raise ``InvalidInput``.

    With ``into_engines`` each file is also loaded into its engine's network as a training
    would (the image build's last check, once the project is installed): a file can hold the
    right tensors and still not fit the network the engine builds.
    """
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
        if into_engines:
            try:
                item.load_into(path)
            except NoCodeMLError as error:
                raise InvalidInput(f"{path} does not load into its engine: {error}") from error
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
            download(args.folder)  # the engines are not in the image yet at this step
        into_engines = args.action == "check"
        for name, tensors in check(args.folder, into_engines=into_engines).items():
            print(f"{name}: {tensors} tensors")
    except InvalidInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
