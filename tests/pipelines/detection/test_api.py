"""Train → save → load → predict, through the api and through pipelines.tasks (tiny models)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import tasks
from pipelines.artifact import MODEL_JSON, WEIGHTS_FILE
from pipelines.detection import api
from pipelines.detection.registry import list_engines
from pipelines.detection.tuning import SHARE_GRID
from pipelines.errors import InvalidInput, ModelError
from pipelines.formats.labelme import Box, read_labelme, resolve_image_path

from .conftest import make_sample, write_labelled


@pytest.fixture
def labelled(tmp_path):
    sample = make_sample(96, seed=0, n_particles=10)
    return sample, write_labelled(
        tmp_path / "data", sample, [Box(0, 0, 48, 48), Box(48, 48, 96, 96)]
    )


@pytest.fixture
def tiny_model(tmp_path, labelled, tiny_unet_config):
    return api.train([labelled[1]], tmp_path / "model", config=tiny_unet_config)


def test_engines_are_listed_default_first():
    assert list_engines()[0] == "unet"
    assert {"unet", "threshold", "maskrcnn"} <= set(list_engines())


def test_artifact_round_trip(tiny_model, labelled):
    info = json.loads((tiny_model / MODEL_JSON).read_text())
    assert info["task"] == "detect" and info["engine"] == "unet"
    assert info["classes"] == ["particle"]
    assert info["config"]["channels"] == [4, 8]
    assert info["metrics"]["train_steps"] == 4
    assert "torch" in info["versions"]
    assert {"fg_threshold", "core_threshold"} <= set(info["extra"]["postprocess"])
    assert info["extra"]["test_time_turn"] is True  # tuned with the turned pass, so kept on
    saved = torch.load(tiny_model / WEIGHTS_FILE, weights_only=True)
    first, second = api.load_detector(tiny_model), api.load_detector(tiny_model)
    for key, value in first.state_dict().items():
        assert torch.equal(value, saved[key])
    image = labelled[0].pixels
    a, b = api.detect(first, image), api.detect(second, image)
    assert np.array_equal(a.instances.labels, b.instances.labels)


def test_predict_writes_json_overlay_and_stats(tiny_model, labelled, tmp_path):
    image = labelled[1].parent / "image.tif"
    written = api.predict(tiny_model, [image], tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["image.json", "image_overlay.png", "image_stats.csv"]
    document = read_labelme(tmp_path / "out" / "image.json")
    # the image is placed beside the JSON, so the output folder is self-contained
    assert document.image_path == "image.tif"
    assert resolve_image_path(document).read_bytes() == image.read_bytes()
    assert (document.image_height, document.image_width) == (96, 96)
    model = document.extra["nocode_ml"]["model"]
    assert model["engine"] == "unet" and isinstance(model["bfloat16"], bool)
    header = (tmp_path / "out" / "image_stats.csv").read_text().splitlines()[0]
    assert header.startswith("label") or "label" in header


def test_train_through_tasks_and_predict_a_folder(labelled, tmp_path, tiny_unet_config):
    model = tasks.train_model("detect", [labelled[1]], tmp_path / "m", config=tiny_unet_config)
    written = tasks.predict(model, [labelled[1].parent], tmp_path / "out")
    assert sorted(p.name for p in written) == ["image.json", "image_overlay.png", "image_stats.csv"]


def test_unknown_setting_and_option_are_clear_errors(labelled, tmp_path):
    with pytest.raises(InvalidInput, match="no setting"):
        api.train([labelled[1]], tmp_path / "m", config={"chanels": [4]})
    with pytest.raises(InvalidInput, match="unknown detection engine"):
        api.train([labelled[1]], tmp_path / "m", engine="nope")
    for bad, message in [
        ({"h_grid_px": [0]}, "h_grid_px needs at least one value, each above 0"),
        ({"smoothing_grid_px": []}, "smoothing_grid_px needs at least one value"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            api.train([labelled[1]], tmp_path / "m", engine="threshold", config=bad)
    with pytest.raises(InvalidInput, match="unknown prediction option"):
        api.detect(None, np.zeros((8, 8)), {"treshold": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="ignore_scale_bar='no' should be true or false"):
        api.detect(None, np.zeros((8, 8)), {"ignore_scale_bar": "no"})  # type: ignore[arg-type]


def test_image_smaller_than_a_tile_and_odd_sizes(tiny_model):
    detector = api.load_detector(tiny_model)
    for shape in [(40, 50), (7, 9), (130, 67)]:
        image = np.random.default_rng(0).integers(0, 1000, shape).astype(np.uint16)
        detections = api.detect(detector, image, {"tile_px": 64})
        assert detections.instances.labels.shape == shape


def test_tiled_maps_equal_whole_image_maps(tiny_model, labelled):
    detector = api.load_detector(tiny_model)
    image = labelled[0].pixels
    from pipelines.detection.base import DetectOptions

    whole = detector.predict_maps(image, DetectOptions(tile_px=1024))
    tiled = detector.predict_maps(image, DetectOptions(tile_px=64, overlap_px=24))
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_missing_or_corrupt_model_files_are_model_errors(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        api.load_detector(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        api.load_detector(broken)
    shutil.copy(tiny_model / WEIGHTS_FILE, broken / WEIGHTS_FILE)
    with open(broken / WEIGHTS_FILE, "r+b") as handle:
        handle.seek(100)
        handle.write(b"garbage!")
    with pytest.raises(ModelError, match="checksum"):
        api.load_detector(broken)
    (broken / MODEL_JSON).write_text("{not json")
    with pytest.raises(ModelError, match="corrupt"):
        api.load_detector(broken)
    mismatched = _edited_copy(tiny_model, tmp_path / "mismatched", "config", "channels", [8, 16])
    with pytest.raises(ModelError, match="do not fit"):
        api.load_detector(mismatched)


def test_a_model_saved_before_the_precision_options_loads_with_their_defaults(tiny_model, tmp_path):
    older = tmp_path / "older"
    shutil.copytree(tiny_model, older)
    info = json.loads((older / MODEL_JSON).read_text())
    del info["config"]["precision"], info["config"]["train_precision"]
    (older / MODEL_JSON).write_text(json.dumps(info))
    detector = api.load_detector(older)
    assert (detector.config.precision, detector.config.train_precision) == ("auto", "fp32")


def test_a_class_with_one_example_trains(tmp_path, tiny_unet_config):
    sample = make_sample(96, seed=6, n_particles=1, n_sites=6, radius_px=(6, 7))
    json_path = write_labelled(tmp_path, sample, None)
    model = api.train([json_path], tmp_path / "m", config=tiny_unet_config)
    detector = api.load_detector(model)
    assert detector.classes == ["particle", "single_site"]
    detections = api.detect(detector, sample.pixels)
    assert set(detections.instances.class_ids.tolist()) <= {1, 2}


def test_predict_checks_every_image_before_writing(tiny_model, labelled, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00not a tiff at all")
    good = labelled[1].parent / "image.tif"
    from pipelines.errors import InvalidImage

    with pytest.raises(InvalidImage):
        api.predict(tiny_model, [good, bad], tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_labelme_opens_the_predicted_json(tiny_model, labelled, tmp_path):
    from labelme import LabelFile

    image = labelled[1].parent / "image.tif"
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(image, alone / "image.tif")
    beside = api.predict(tiny_model, [alone / "image.tif"], alone)[0]
    elsewhere = api.predict(tiny_model, [image], tmp_path / "out")[0]
    for json_path in (beside, elsewhere):
        label_file = LabelFile(filename=str(json_path))
        assert label_file.image_data
        expected = read_labelme(json_path).object_shapes
        assert len(label_file.shapes) == len(expected)
    assert read_labelme(beside).image_path == "image.tif"


def test_predict_on_an_image_without_objects_writes_empty_outputs(tiny_model, tmp_path):
    import tifffile

    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((50, 60), 1000, dtype=np.uint16))
    written = api.predict(tiny_model, [blank], tmp_path / "out", options={"score_threshold": 1.0})
    document = read_labelme(written[0])
    assert document.object_shapes == []
    assert (tmp_path / "out" / "blank_overlay.png").stat().st_size > 0


def test_predicted_json_carries_calibration_and_model_for_statistics(
    tiny_model, labelled, tmp_path
):
    from pipelines.stats import stats_from_labelme

    image = labelled[1].parent / "image.tif"
    json_path = api.predict(tiny_model, [image], tmp_path / "out")[0]
    document = read_labelme(json_path)
    metadata = document.extra["nocode_ml"]
    assert metadata["model"]["engine"] and metadata["model"]["sha256"]
    result = stats_from_labelme(json_path)
    assert result.run_card["models"]["image.tif"]["id"] == tiny_model.name


def test_auto_device_trains_and_a_missing_gpu_is_a_clear_error(
    labelled, tmp_path, tiny_unet_config
):
    model = api.train([labelled[1]], tmp_path / "m", config=tiny_unet_config, device="auto")
    detector = api.load_detector(model, device="auto")
    assert str(detector.device) == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="no GPU is available; use cpu"):
            api.load_detector(model, device="cuda")


def test_merging_trimming_and_turning_are_saved_and_older_models_do_none(
    tmp_path, tiny_unet_config
):
    sample = make_sample(96, seed=6, n_particles=1, n_sites=12, radius_px=(6, 7))
    labels = write_labelled(tmp_path, sample, None)
    model = api.train([labels], tmp_path / "m", config=tiny_unet_config)
    detector = api.load_detector(model)
    assert detector.params.merge_classes == (True, False)  # 1 particle, 12 single sites
    # Only the single sites (5 px) may be trimmed to their cores; the particle never is.
    assert api.load_training_set([labels]).few_pixels() == [False, True]
    particle_share, site_share = detector.params.core_shares
    assert particle_share == 0.0 and site_share in SHARE_GRID
    older = tmp_path / "older"
    shutil.copytree(model, older)
    info = json.loads((older / MODEL_JSON).read_text())
    del info["extra"]["postprocess"]["merge_classes"]
    del info["extra"]["postprocess"]["core_shares"]
    del info["extra"]["test_time_turn"]
    (older / MODEL_JSON).write_text(json.dumps(info))
    assert detector.test_time_turn is True
    assert api.load_detector(older).params.merge_classes == ()
    assert api.load_detector(older).params.core_shares == ()
    assert api.load_detector(older).test_time_turn is False  # tuned without it


@pytest.mark.parametrize(
    ("key", "saved"),
    [
        ("merge_classes", "true"),
        ("merge_classes", [1, 0]),
        ("merge_classes", {"particle": True}),
        ("merge_classes", [True, True]),  # two values for one class
        ("core_shares", "0.5"),
        ("core_shares", [1.0]),
        ("core_shares", [-0.1]),
        ("core_shares", [True]),
        ("core_shares", {"site": 0.5}),
        ("core_shares", [0.0, 0.5]),
    ],
)
def test_a_bad_post_processing_setting_in_model_json_is_a_model_error(
    tiny_model, tmp_path, key, saved
):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    info = json.loads((broken / MODEL_JSON).read_text())
    info["extra"]["postprocess"][key] = saved
    (broken / MODEL_JSON).write_text(json.dumps(info))
    with pytest.raises(ModelError, match=key):
        api.load_detector(broken)
    info["extra"]["postprocess"][key] = None  # as missing: older models
    (broken / MODEL_JSON).write_text(json.dumps(info))
    assert getattr(api.load_detector(broken).params, key) == ()


def test_predict_never_overwrites_labels_or_corrections(tiny_model, labelled, tmp_path):
    json_path = labelled[1]
    image = json_path.parent / "image.tif"
    hand_drawn = json_path.read_bytes()
    with pytest.raises(InvalidInput, match="prediction did not write"):
        api.predict(tiny_model, [image], json_path.parent)
    assert json_path.read_bytes() == hand_drawn
    assert not (json_path.parent / "image_overlay.png").exists()
    out = tmp_path / "out"
    first = api.predict(tiny_model, [image], out, options={"score_threshold": 0.0})[0]
    # Opened and saved in labelme without a change: still the prediction, made again.
    from labelme import LabelFile

    opened = LabelFile(filename=str(first))
    assert opened.other_data["nocode_ml"]["shapes_sha256"]
    opened.save(
        str(first),
        opened.shapes,
        opened.image_path,
        96,
        96,
        other_data=opened.other_data,
        flags=opened.flags,
    )
    inode = first.stat().st_ino
    api.predict(tiny_model, [image], out)
    assert first.stat().st_ino != inode  # written anew (atomically, so a new file)
    # A correction in labelme: an object added (labelme keeps the nocode_ml object).
    raw = json.loads(first.read_text())
    raw["shapes"].append(
        {"label": "particle", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon"}
    )
    first.write_text(json.dumps(raw))
    with pytest.raises(InvalidInput, match="may hold corrections"):
        api.predict(tiny_model, [image], out)
    assert json.loads(first.read_text()) == raw
    # A prediction saved before the fingerprint was kept cannot tell, so it is kept too.
    del raw["nocode_ml"]["shapes_sha256"], raw["shapes"][-1]
    first.write_text(json.dumps(raw))
    with pytest.raises(InvalidInput, match="may hold corrections"):
        api.predict(tiny_model, [image], out)


def test_predict_never_replaces_another_image_of_the_same_name(tiny_model, labelled, tmp_path):
    image = labelled[1].parent / "image.tif"
    out = tmp_path / "out"
    out.mkdir()
    (out / "image.tif").write_bytes(b"another image")
    with pytest.raises(InvalidInput, match="different image of the same name"):
        api.predict(tiny_model, [image], out)
    assert (out / "image.tif").read_bytes() == b"another image"


def test_training_refuses_an_out_folder_that_is_not_a_model(labelled, tmp_path, tiny_unet_config):
    folder = labelled[1].parent
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(InvalidInput, match="not a model folder"):
        api.train([labelled[1]], folder, config=tiny_unet_config)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_an_empty_labelme_file_in_a_run_is_named(labelled, tmp_path, tiny_unet_config):
    from pipelines.errors import InvalidLabels
    from pipelines.formats.labelme import new_document, write_labelme

    other = tmp_path / "other"
    write_labelled(other, make_sample(64, seed=5, n_particles=2), None, name="empty")
    write_labelme(other / "empty.json", new_document([], "empty.tif", 64, 64))
    with pytest.raises(InvalidLabels, match=r"empty\.json has no crop and no outlined object"):
        api.train([labelled[1], other / "empty.json"], tmp_path / "m", config=tiny_unet_config)


def test_classes_are_the_union_over_several_labelme_files(labelled, tmp_path, tiny_unet_config):
    sites = make_sample(64, seed=7, n_particles=0, n_sites=5)
    other = write_labelled(tmp_path / "sites", sites, None, name="sites")
    model = api.train([labelled[1], other], tmp_path / "m", config=tiny_unet_config)
    info = json.loads((model / MODEL_JSON).read_text())
    assert info["classes"] == ["particle", "single_site"]
    counts = info["metrics"]["labelled_objects"]
    assert counts["single_site"] == 5 and counts["particle"] > 0
    assert info["extra"]["trained_on"] == ["image.json", "sites.json"]


@pytest.mark.parametrize(
    ("key", "saved"),
    [("postprocess", "fg=0.5"), ("min_area_px", [1.0, 2.0]), ("min_area_px", "ten")],
)
def test_a_wrong_kind_of_value_in_model_json_is_a_model_error(tiny_model, tmp_path, key, saved):
    broken = _edited_copy(tiny_model, tmp_path / "broken", "extra", key, saved)
    with pytest.raises(ModelError, match="train the model again"):
        api.load_detector(broken)


def test_a_wrong_kind_of_setting_in_model_json_is_a_model_error(tiny_model, tmp_path):
    broken = _edited_copy(tiny_model, tmp_path / "broken", "config", "overlap_px", "wide")
    with pytest.raises(ModelError, match="overlap_px='wide' should be a whole number"):
        api.load_detector(broken)


def _edited_copy(model: Path, copy: Path, section: str, key: str, value: object) -> Path:
    """A copy of ``model`` whose ``model.json`` has ``section[key] = value``."""
    shutil.copytree(model, copy)
    info = json.loads((copy / MODEL_JSON).read_text())
    info[section][key] = value
    (copy / MODEL_JSON).write_text(json.dumps(info))
    return copy


def test_training_and_prediction_report_each_stage(labelled, tmp_path, tiny_unet_config):
    events = []
    model = api.train(
        [labelled[1].parent], tmp_path / "m", config=tiny_unet_config, progress=events.append
    )
    stages = list(dict.fromkeys(event.stage for event in events))
    assert stages == ["load", "train", "tune", "save"]
    train = [event for event in events if event.stage == "train"]
    assert train[-1].done == train[-1].total == 4
    assert all(event.eta_s is not None and "loss" in event.metrics for event in train)
    assert events[-1].stage == "save" and events[-1].done == events[-1].total
    info = json.loads((model / MODEL_JSON).read_text())
    assert info["extra"]["trained_on"] == ["image.json"]  # the file, not the folder
    events.clear()
    image = labelled[1].parent / "image.tif"
    api.predict(model, [image], tmp_path / "out", progress=events.append)
    assert {"predict", "images"} <= {event.stage for event in events}
    assert all(event.message.startswith("image.tif") for event in events if event.stage != "images")
    assert events[-1].stage == "images" and events[-1].done == events[-1].total == 1


def test_a_folder_run_leaves_out_predictions_nobody_corrected(
    tiny_model, labelled, tmp_path, tiny_unet_config
):
    folder = labelled[1].parent
    found = api.predict(tiny_model, [folder / "image.tif"], folder / "found")[0]
    model = api.train([folder], tmp_path / "m1", config=tiny_unet_config)
    assert json.loads((model / MODEL_JSON).read_text())["extra"]["trained_on"] == ["image.json"]
    raw = json.loads(found.read_text())
    raw["shapes"].append(
        {"label": "particle", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon"}
    )
    found.write_text(json.dumps(raw))  # corrected: now the expert's labels
    model = api.train([folder], tmp_path / "m2", config=tiny_unet_config)
    trained_on = json.loads((model / MODEL_JSON).read_text())["extra"]["trained_on"]
    assert trained_on == ["image.json", "image.json"]
    only = tmp_path / "only"
    api.predict(tiny_model, [folder / "image.tif"], only)
    with pytest.raises(InvalidInput, match="only predictions nobody corrected"):
        api.train([only], tmp_path / "m3", config=tiny_unet_config)


def test_cli_predicts_with_the_model_zip_the_app_downloads(tiny_model, labelled, tmp_path, capsys):
    import zipfile

    from nocode_ml.cli import main

    archive = tmp_path / "model_abc.zip"
    with zipfile.ZipFile(archive, "w") as zipped:  # as the Models page writes it
        for path in tiny_model.iterdir():
            zipped.write(path, f"model/{path.name}")
    image = labelled[1].parent / "image.tif"
    assert main(["predict", str(archive), str(image), "--out", str(tmp_path / "out")]) == 0
    document = read_labelme(tmp_path / "out" / "image.json")
    assert document.extra["nocode_ml"]["model"]["id"] == "model_abc"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zipped:
        zipped.writestr("../model.json", "{}")
    capsys.readouterr()
    assert main(["predict", str(bad), str(image), "--out", str(tmp_path / "out2")]) == 2
    assert "holds a file outside its folder" in capsys.readouterr().err


def test_cli_refuses_an_output_folder_that_is_a_file_before_the_network_runs(
    tiny_model, labelled, tmp_path, capsys, monkeypatch
):
    from nocode_ml.cli import main

    monkeypatch.setattr(api, "load_detector", lambda *a, **k: pytest.fail("network loaded"))
    taken = tmp_path / "results"
    taken.write_text("not a folder")
    image = labelled[1].parent / "image.tif"
    assert main(["predict", str(tiny_model), str(image), "--out", str(taken)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {taken} is a file, not a folder; give a folder name"
    )


def test_labelme_opens_the_prediction_of_a_microscope_file(tiny_model, labelled, tmp_path):
    """labelme cannot read dm4 itself: the JSON carries the picture, the dm4 stays the source."""
    from labelme import LabelFile

    from tests.pipelines.conftest_imaging import write_dm

    pixels = labelled[0].pixels
    scan = write_dm(tmp_path / "scan.dm4", pixels.astype(np.float32), version=4, units="nm")
    json_path = api.predict(tiny_model, [scan], tmp_path / "out")[0]
    label_file = LabelFile(filename=str(json_path))
    shown = np.asarray(Image.open(io.BytesIO(label_file.image_data)))
    assert shown.shape == pixels.shape and shown.dtype == np.uint8
    document = read_labelme(json_path)
    assert document.image_path == "scan.dm4"
    assert len(label_file.shapes) == len(document.object_shapes)
    tif = api.predict(tiny_model, [labelled[1].parent / "image.tif"], tmp_path / "tif")[0]
    assert read_labelme(tif).image_data is None  # labelme reads TIFF itself
