"""Engine registry, config validation and round trip, ImageNet weights from a local file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import timm
import torch

from pipelines.classification.engines import (
    ConvNeXtConfig,
    ConvNeXtEngine,
    config_from_dict,
    create_engine,
    device_preset,
    list_engines,
    load_pretrained_weights,
    register_engine,
)
from pipelines.errors import InvalidInput


def test_registry_creates_the_default_engine_with_overrides() -> None:
    assert "convnext" in list_engines()
    engine = create_engine(None, input_size_px=64, epochs=3)
    assert isinstance(engine, ConvNeXtEngine)
    assert engine.config.model_name == "convnext_atto"
    assert (engine.config.input_size_px, engine.config.epochs) == (64, 3)


def test_registering_an_engine_makes_it_available_by_name() -> None:
    @register_engine
    class SmallConvNeXt(ConvNeXtEngine):
        name = "convnext-test-small"

    try:
        assert "convnext-test-small" in list_engines()
        assert isinstance(create_engine("convnext-test-small"), SmallConvNeXt)
    finally:
        from pipelines.classification import engines

        engines._ENGINES.pop("convnext-test-small")


def test_unknown_engine_setting_and_bad_values_are_clear_errors() -> None:
    with pytest.raises(InvalidInput, match="unknown classification engine 'resnet'"):
        create_engine("resnet")
    with pytest.raises(InvalidInput, match="unknown setting epoch for engine 'convnext'"):
        create_engine("convnext", epoch=3)
    with pytest.raises(InvalidInput, match="val_fraction must be in"):
        create_engine("convnext", val_fraction=1.0)
    with pytest.raises(InvalidInput, match="augmentation must be one of"):
        create_engine("convnext", augmentation="heavy")
    with pytest.raises(InvalidInput, match="unknown ConvNeXt model 'resnet18'"):
        create_engine("convnext", model_name="resnet18").build(2)


def test_config_survives_json_round_trip() -> None:
    config = ConvNeXtConfig(normalize_percentiles=(0.5, 99.5), pretrained_weights_path="w.pth")
    text = json.dumps(dataclasses.asdict(config))
    again = config_from_dict(ConvNeXtConfig, json.loads(text), "convnext")
    assert again == config
    assert isinstance(again.normalize_percentiles, tuple)


def test_gpu_preset_only_on_cuda() -> None:
    assert device_preset(None, "cpu") == {}
    preset = device_preset("convnext", "cuda")
    assert preset["model_name"] == "convnext_tiny" and preset["input_size_px"] == 224


def _imagenet_like_file(
    tmp_path: Path, wrap: str | None = None, suffix: str = ".pth"
) -> tuple[Path, dict]:
    """A random convnext_atto state dict with a 1000-class head, as an ImageNet file would be."""
    torch.manual_seed(1)
    state = timm.create_model("convnext_atto", pretrained=False, num_classes=1000).state_dict()
    path = tmp_path / f"convnext_atto_imagenet{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path, state


@pytest.mark.parametrize(
    ("wrap", "suffix"), [(None, ".pth"), ("model", ".pt"), (None, ".safetensors")]
)
def test_pretrained_weights_load_without_the_head(
    tmp_path: Path, wrap: str | None, suffix: str
) -> None:
    path, imagenet = _imagenet_like_file(tmp_path, wrap, suffix)
    engine = create_engine("convnext", pretrained_weights_path=str(path))
    model = engine.build(num_classes=3)
    state = model.state_dict()
    torch.testing.assert_close(state["stem.0.weight"], imagenet["stem.0.weight"])
    torch.testing.assert_close(
        state["stages.3.blocks.1.mlp.fc2.weight"], imagenet["stages.3.blocks.1.mlp.fc2.weight"]
    )
    assert state["head.fc.weight"].shape == (3, 320)  # new head for our classes
    without = engine.build(num_classes=3, load_pretrained=False).state_dict()
    assert not torch.equal(without["stem.0.weight"], imagenet["stem.0.weight"])


def test_pretrained_weights_of_another_model_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), other)
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=2)
    with pytest.raises(InvalidInput, match="holds no weights that fit"):
        load_pretrained_weights(model, other)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_pretrained_weights(model, tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInput, match=r"cannot read pretrained weights junk\.pth"):
        load_pretrained_weights(model, tmp_path / "junk.pth")


def test_weights_baked_into_an_image_are_found_by_model_name(tmp_path: Path, monkeypatch) -> None:
    from pipelines.classification.engines import PRETRAINED_DIR_ENV, pretrained_weights_from_env

    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    assert pretrained_weights_from_env("convnext_tiny") is None
    (tmp_path / "convnext_tiny.safetensors").write_bytes(b"")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    assert pretrained_weights_from_env("convnext_tiny") == str(
        tmp_path / "convnext_tiny.safetensors"
    )
    assert pretrained_weights_from_env("convnext_atto") is None
