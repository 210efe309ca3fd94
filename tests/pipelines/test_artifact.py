"""The model folder: atomic save, validated load, clear errors for damaged folders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from pipelines.artifact import (
    MODEL_JSON,
    WEIGHTS_FILE,
    check_model_target,
    load_model,
    read_model_info,
    save_model,
)
from pipelines.errors import InvalidInput, ModelError


@dataclass(frozen=True)
class TinyConfig:
    channels: int = 4
    seed: int = 0


def _save(folder: Path) -> Path:
    state = torch.nn.Conv2d(1, 4, 3).state_dict()
    return save_model(
        folder,
        task="detect",
        engine="tiny",
        config=TinyConfig(),
        classes=["particle", "single_site"],
        state_dict=state,
        metrics={"loss": 0.25},
        extra_files={"training_curve.json": b"[]"},
    )


def test_round_trip(tmp_path: Path) -> None:
    folder = _save(tmp_path / "model")
    info, state = load_model(folder, expected_task="detect")
    assert info.engine == "tiny"
    assert info.config == {"channels": 4, "seed": 0}
    assert info.classes == ["particle", "single_site"]
    assert info.metrics == {"loss": 0.25}
    assert "torch" in info.versions and info.created
    assert set(state) == {"weight", "bias"}
    assert (folder / "training_curve.json").read_bytes() == b"[]"


def test_replacing_a_model_leaves_no_staging_folders(tmp_path: Path) -> None:
    _save(tmp_path / "model")
    _save(tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_wrong_task(tmp_path: Path) -> None:
    folder = _save(tmp_path / "model")
    with pytest.raises(ModelError, match="is a 'detect' model, not a 'classify' model"):
        load_model(folder, expected_task="classify")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / MODEL_JSON).unlink(), "model.json is missing"),
        (lambda f: (f / WEIGHTS_FILE).unlink(), "weights.pt is missing"),
        (lambda f: (f / MODEL_JSON).write_text("{broken"), "is corrupt"),
        (lambda f: (f / MODEL_JSON).write_text(json.dumps({"task": "detect"})), "lacks engine"),
        (lambda f: (f / WEIGHTS_FILE).write_bytes(b"garbage"), "does not match its checksum"),
    ],
)
def test_damaged_folders(tmp_path: Path, damage, message: str) -> None:
    folder = _save(tmp_path / "model")
    damage(folder)
    with pytest.raises(ModelError, match=message):
        load_model(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        read_model_info(tmp_path / "nope")


def test_a_folder_that_is_not_a_model_is_never_replaced(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.tif").write_bytes(b"precious")
    with pytest.raises(InvalidInput, match="not a model folder"):
        _save(images)
    assert (images / "a.tif").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInput, match="is a file"):
        check_model_target(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    check_model_target(empty)  # an empty folder or a model folder may be written to
    assert read_model_info(_save(empty)).engine == "tiny"
    check_model_target(empty)


def test_a_model_folder_holding_other_files_is_not_replaced(tmp_path: Path) -> None:
    model = _save(tmp_path / "m")
    assert json.loads((model / MODEL_JSON).read_text())["files"] == [
        "training_curve.json",
        WEIGHTS_FILE,
    ]
    _save(model)  # a model folder alone is replaced
    (model / "image.json").write_text("{}")  # e.g. corrected predictions written into it
    with pytest.raises(InvalidInput, match=r"holds a model and other files \(image\.json\)"):
        _save(model)
    assert (model / "image.json").read_text() == "{}"


def test_saving_into_the_working_folder_by_a_relative_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    saved = _save(Path("models") / "m")
    assert saved == Path("models") / "m"
    assert read_model_info(tmp_path / "models" / "m").classes == ["particle", "single_site"]
