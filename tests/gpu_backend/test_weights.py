"""The weights folder check used at the end of the Docker build (no download here: offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpu_backend.weights import PRETRAINED, check, main
from pipelines.errors import InvalidInput

ATTO = "convnext_atto_imagenet.pth"


def test_file_names_are_the_ones_the_engines_read() -> None:
    from pipelines.detection.maskrcnn import COCO_WEIGHTS_FILE, WEIGHTS_ENV

    assert WEIGHTS_ENV == "NOCODE_ML_WEIGHTS_DIR"
    assert [item.file_name for item in PRETRAINED] == [
        COCO_WEIGHTS_FILE,
        "convnext_tiny_imagenet.pth",
        ATTO,
    ]


def test_check_loads_a_real_state_dict_and_rejects_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import timm

    # Same architecture as the ImageNet file, random weights: same tensors to count.
    torch.save(timm.create_model("convnext_atto").state_dict(), tmp_path / ATTO)
    counts = check(tmp_path, [ATTO])
    assert counts[ATTO] >= 100

    (tmp_path / ATTO).write_bytes(b"not a torch file")
    with pytest.raises(InvalidInput, match="cannot be read"):
        check(tmp_path, [ATTO])
    torch.save({"only": torch.zeros(1)}, tmp_path / ATTO)
    with pytest.raises(InvalidInput, match="holds 1 tensors"):
        check(tmp_path, [ATTO])
    assert main(["check", str(tmp_path)]) == 2
    assert "maskrcnn_resnet50_fpn_v2_coco.pth is missing" in capsys.readouterr().err


def test_check_loads_each_file_into_its_engine_as_training_would(tmp_path: Path) -> None:
    """Right tensor count, wrong network: only loading into the engine tells."""
    import timm
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    coco = "maskrcnn_resnet50_fpn_v2_coco.pth"
    torch.save(
        maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), tmp_path / coco
    )
    torch.save(timm.create_model("convnext_atto").state_dict(), tmp_path / ATTO)
    assert set(check(tmp_path, [coco, ATTO], into_engines=True)) == {coco, ATTO}

    resnet = timm.create_model("resnet50").state_dict()
    torch.save({f"stage{i}": value for i, value in enumerate(resnet.values())}, tmp_path / ATTO)
    assert check(tmp_path, [ATTO])[ATTO] >= 100  # enough tensors to pass the count
    with pytest.raises(InvalidInput, match="does not load into its engine"):
        check(tmp_path, [ATTO], into_engines=True)
