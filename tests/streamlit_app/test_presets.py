"""Which engine each training preset of the Train page runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.detection.maskrcnn import COCO_WEIGHTS_FILE, WEIGHTS_ENV
from streamlit_app import services


def test_accurate_objects_use_mask_rcnn_only_with_its_coco_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accurate, quick = services.preset("accurate"), services.preset("quick")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert services.preset_engine(accurate, "detect", "local") is None  # the default engine
    assert services.preset_engine(accurate, "classify", "local") == "convnext"
    assert services.preset_engine(quick, "detect", "local") is None

    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert services.preset_engine(accurate, "detect", "local") is None  # folder without the file
    (tmp_path / COCO_WEIGHTS_FILE).write_bytes(b"baked into the GPU image")
    assert services.preset_engine(accurate, "detect", "local") == "maskrcnn"
    assert services.preset_engine(quick, "detect", "local") is None


def test_jobs_on_the_gpu_image_keep_mask_rcnn(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS Batch runs the image whose build checks the weights; the app's folder is not theirs."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert services.preset_engine(services.preset("accurate"), "detect", "batch") == "maskrcnn"


def test_the_readable_list_of_image_types_names_every_type_the_uploaders_take() -> None:
    from streamlit_app import services

    aliases = {"tif": "tiff", "jpg": "jpeg"}
    text = services.IMAGE_TYPES_TEXT.lower()
    for suffix in services.IMAGE_TYPES:
        assert aliases.get(suffix, suffix) in text, suffix
