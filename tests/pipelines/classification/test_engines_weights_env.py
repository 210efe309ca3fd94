"""The GPU image's weights folder is found by the classification engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.classification.engines import pretrained_weights_from_env


def test_docker_weights_folder_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOCODE_ML_PRETRAINED_DIR", raising=False)
    monkeypatch.setenv("NOCODE_ML_WEIGHTS_DIR", str(tmp_path))
    assert pretrained_weights_from_env("convnext_tiny") is None
    baked = tmp_path / "convnext_tiny_imagenet.pth"
    baked.write_bytes(b"weights")
    assert pretrained_weights_from_env("convnext_tiny") == str(baked)
