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
