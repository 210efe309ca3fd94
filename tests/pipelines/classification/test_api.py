"""train/predict end to end with tiny models: artifact round trip, outputs, bad inputs."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import tasks
from pipelines.artifact import load_model, save_model
from pipelines.classification import api
from pipelines.errors import InvalidInput, ModelError
from pipelines.synthetic_classes import SyntheticClassificationSet
from tests.pipelines.classification.conftest import object_document, save_png


def test_model_folder_holds_config_classes_metrics_and_input_handling(trained_model) -> None:
    model_dir, _ = trained_model
    info, state = load_model(model_dir, expected_task="classify")  # weights_only=True inside
    assert (info.task, info.engine) == ("classify", "convnext")
    assert info.classes == ["agglomerates", "rods", "spheres"]
    assert info.config["model_name"] == "convnext_atto" and info.config["input_size_px"] == 32
    assert info.extra["input"]["normalisation"]["channel_mean"] == [0.485, 0.456, 0.406]
    assert info.extra["input"]["greyscale_to_channels"] == "replicate"
    assert {"torch", "timm"} <= set(info.versions)
    metrics = info.metrics
    assert (metrics["n_train"], metrics["n_val"]) == (6, 3)
    assert metrics["class_counts"] == {"agglomerates": 3, "rods": 3, "spheres": 3}
    evaluation = metrics["evaluation"]
    assert evaluation["confusion_matrix"]["classes"] == info.classes
    assert sum(map(sum, evaluation["confusion_matrix"]["matrix"])) == 3
    assert {"precision", "recall", "f1"} <= set(evaluation["per_class"][0])
    assert metrics["skipped_files"] == []
    curve = json.loads((model_dir / api.TRAINING_CURVE_FILE).read_text())
    assert [row["epoch"] for row in curve] == [1.0, 2.0]
    assert state["head.fc.weight"].shape == (3, 320)


def test_round_trip_gives_the_same_network(trained_model) -> None:
    model_dir, _ = trained_model
    model, classifier, classes = api.load_classifier(model_dir, torch.device("cpu"))
    _, state = load_model(model_dir)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    assert classifier.config.input_size_px == 32 and classes == ["agglomerates", "rods", "spheres"]


def test_predict_writes_csv_json_and_one_heatmap_per_image(trained_model, tmp_path: Path) -> None:
    model_dir, dataset = trained_model
    written = api.predict(model_dir, [dataset.root], tmp_path / "out")
    assert written[:2] == [
        tmp_path / "out" / "predictions.csv",
        tmp_path / "out" / "predictions.json",
    ]
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert len(rows) == 9
    assert list(rows[0]) == [
        "file", "class", "probability", "probability_agglomerates", "probability_rods",
        "probability_spheres", "true_class", "heatmap",
    ]  # fmt: skip
    for row in rows:
        probabilities = [
            float(row[f"probability_{c}"]) for c in ("agglomerates", "rods", "spheres")
        ]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert float(row["probability"]) == pytest.approx(max(probabilities), abs=1e-6)
    result = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert result["classes"] == ["agglomerates", "rods", "spheres"]
    assert result["evaluation"]["n_samples"] == 9  # class sub-folders give the truth
    heatmaps = sorted((tmp_path / "out" / "heatmaps").iterdir())
    assert len(heatmaps) == 9 and set(written[2:]) == set(heatmaps)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_heatmap_has_the_image_shape(trained_model, tmp_path: Path) -> None:
    model_dir, _ = trained_model
    rng = np.random.default_rng(0)
    image = save_png(tmp_path / "wide.png", rng.random((40, 70)))
    api.predict(model_dir, [image], tmp_path / "out", options={"heatmap_min_side_px": 1})
    overlay = np.asarray(Image.open(tmp_path / "out" / "heatmaps" / "wide.png"))
    assert overlay.shape == (40, 70, 3) and overlay.dtype == np.uint8
    api.predict(model_dir, [image], tmp_path / "big")  # small images are enlarged for viewing
    assert np.asarray(Image.open(tmp_path / "big" / "heatmaps" / "wide.png")).shape == (146, 256, 3)


def test_predict_is_deterministic_and_heatmaps_can_be_off(trained_model, tmp_path: Path) -> None:
    model_dir, dataset = trained_model
    images = [dataset.files["rods"][0], dataset.files["spheres"][2]]
    api.predict(model_dir, images, tmp_path / "a", options={"heatmaps": False})
    api.predict(model_dir, images, tmp_path / "b")
    first = json.loads((tmp_path / "a" / "predictions.json").read_text())["predictions"]
    second = json.loads((tmp_path / "b" / "predictions.json").read_text())["predictions"]
    for one, two in zip(first, second, strict=True):
        assert one["class"] == two["class"]
        assert one["probability"] == pytest.approx(two["probability"], abs=1e-5)
    assert not (tmp_path / "a" / "heatmaps").exists()
    assert first[0]["file"] == str(images[0]) and first[0]["true_class"] is None


def test_predict_replaces_its_own_outputs_but_keeps_the_users(
    trained_model, tmp_path: Path
) -> None:
    model_dir, dataset = trained_model
    images = [dataset.files["rods"][0], dataset.files["spheres"][0]]
    out = tmp_path / "out"
    api.predict(model_dir, images, out)
    api.predict(model_dir, images[:1], out)  # its own run: replaced, overlays too
    assert [p.name for p in (out / "heatmaps").iterdir()] == [images[0].name]
    api.predict(model_dir, images, out, options={"heatmaps": False})
    assert not (out / "heatmaps").exists()  # the old overlays would not match the rows

    csv_path = out / "predictions.csv"
    lines = csv_path.read_text().splitlines()
    column, cells = lines[0].split(",").index("class"), lines[1].split(",")
    cells[column] = "rods" if cells[column] == "spheres" else "spheres"
    corrected = "\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n"
    csv_path.write_text(corrected)  # a class corrected in a spreadsheet
    with pytest.raises(InvalidInput, match="may have been changed since predict wrote it"):
        api.predict(model_dir, images, out)
    assert csv_path.read_text() == corrected

    mine = tmp_path / "mine"
    (mine / "heatmaps").mkdir(parents=True)
    (mine / "heatmaps" / "notes.txt").write_text("my notes")
    with pytest.raises(InvalidInput, match="heatmaps that predict did not write"):
        api.predict(model_dir, images, mine)
    api.predict(model_dir, images, tmp_path / "again")
    (tmp_path / "again" / "heatmaps" / ".DS_Store").write_bytes(b"\x00")  # a file browser's
    api.predict(model_dir, images, tmp_path / "again")
    (tmp_path / "again" / "heatmaps" / "notes.txt").write_text("my notes")
    with pytest.raises(InvalidInput, match="holds files predict did not write"):
        api.predict(model_dir, images, tmp_path / "again")
    assert (tmp_path / "again" / "heatmaps" / "notes.txt").read_text() == "my notes"

    older = tmp_path / "older"  # written before predictions.json kept the CSV's fingerprint
    api.predict(model_dir, images, older, options={"heatmaps": False})
    record = json.loads((older / "predictions.json").read_text())
    del record["csv_sha256"]
    (older / "predictions.json").write_text(json.dumps(record))
    with pytest.raises(InvalidInput, match="written by an older version"):
        api.predict(model_dir, images, older)


def test_unknown_class_at_predict_time_is_reported_not_scored(
    trained_model, tmp_path: Path, caplog
) -> None:
    model_dir, dataset = trained_model
    for folder, source in (("rods", dataset.files["rods"][0]), ("cubes", dataset.files["rods"][1])):
        (tmp_path / "new" / folder).mkdir(parents=True)
        shutil.copy(source, tmp_path / "new" / folder)
    caplog.set_level(logging.WARNING)
    api.predict(model_dir, [tmp_path / "new"], tmp_path / "out")
    result = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert result["unknown_classes"] == ["cubes"]
    assert "cubes" in caplog.text
    assert len(result["predictions"]) == 2  # the image is still classified...
    assert result["evaluation"]["n_samples"] == 1  # ...but not scored


def test_corrupt_image_at_predict_time_is_skipped(trained_model, tmp_path: Path, caplog) -> None:
    model_dir, dataset = trained_model
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 damaged")
    caplog.set_level(logging.WARNING)
    api.predict(model_dir, [broken, dataset.files["rods"][0]], tmp_path / "out")
    result = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [s["name"] for s in result["skipped"]] == ["broken.tif"]
    assert len(result["predictions"]) == 1 and "broken.tif" in caplog.text


def test_nothing_readable_is_an_error_without_output_files(trained_model, tmp_path: Path) -> None:
    model_dir, _ = trained_model
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(InvalidInput, match="none of the 1 image"):
        api.predict(model_dir, [broken], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # no partial output
    with pytest.raises(InvalidInput, match="unknown prediction option"):
        api.predict(model_dir, [broken], tmp_path / "out", options={"heatmap": True})


def test_predict_refuses_a_detection_model(tmp_path: Path, trained_model) -> None:
    _, dataset = trained_model
    detect = save_model(
        tmp_path / "detector", task="detect", engine="unet", config={}, classes=["particle"],
        state_dict={"w": torch.zeros(1)},
    )  # fmt: skip
    with pytest.raises(ModelError, match="'detect' model, not a 'classify' model"):
        api.predict(detect, [dataset.root], tmp_path / "out")


def test_train_and_predict_through_tasks_with_zip_and_progress(
    class_folder: SyntheticClassificationSet, tiny_config, tmp_path: Path
) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(class_folder.root.rglob("*.*")):
            handle.write(path, path.relative_to(class_folder.root).as_posix())
    (class_folder.root / "rods" / "corrupt.png").write_bytes(b"\x89PNG broken")
    events = []
    model_dir = tasks.train_model(
        "classify", [class_folder.root], tmp_path / "model", engine="convnext",
        config={**tiny_config, "epochs": 1}, minutes=5, progress=events.append,
    )  # fmt: skip
    info, _ = load_model(model_dir)
    assert info.config["max_minutes"] == 5.0 and info.config["epochs"] == 1
    assert info.metrics["skipped_files"][0]["name"] == "rods/corrupt.png"
    assert {e.stage for e in events} == {"load images", "train", "evaluate"}
    zipped = tasks.train_model(
        "classify", [archive], tmp_path / "zipped", config={**tiny_config, "epochs": 1}
    )
    assert load_model(zipped)[0].metrics["source"] == "folders"
    written = tasks.predict(zipped, [archive], tmp_path / "pred")
    assert json.loads(written[1].read_text())["evaluation"]["n_samples"] == 9


def test_object_level_classification_from_labelme(tmp_path: Path, tiny_config) -> None:
    json_path = object_document(tmp_path / "labels")
    model_dir = api.train(
        [json_path], tmp_path / "model", config={**tiny_config, "crop_objects": True}
    )
    info, _ = load_model(model_dir)
    assert info.classes == ["long", "round"] and info.metrics["source"] == "labelme-objects"
    api.predict(model_dir, [json_path], tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert len(rows) == 6 and rows[0]["object_box_px"] == "7 7 26 26"
    assert len(list((tmp_path / "out" / "heatmaps").iterdir())) == 6


def test_labelme_flags_training(
    labelme_flag_files: list[Path], tiny_config, tmp_path: Path
) -> None:
    model_dir = api.train(labelme_flag_files, tmp_path / "model", config=tiny_config)
    info, _ = load_model(model_dir)
    assert info.classes == ["rods", "spheres"] and info.metrics["source"] == "labelme-flags"
    assert [s["name"] for s in info.metrics["skipped_files"]] == ["unsorted.json"]


def test_training_errors_leave_no_model_folder(
    class_folder: SyntheticClassificationSet, tiny_config, tmp_path: Path
) -> None:
    shutil.rmtree(class_folder.root / "rods")
    shutil.rmtree(class_folder.root / "spheres")
    with pytest.raises(InvalidInput, match="only one class"):
        api.train([class_folder.root], tmp_path / "model", config=tiny_config)
    with pytest.raises(InvalidInput, match="unknown setting"):
        api.train([class_folder.root], tmp_path / "model", config={"epochz": 1})
    with pytest.raises(InvalidInput, match=r"device 'cuda:99' (was asked for|does not exist)"):
        api.train([class_folder.root], tmp_path / "model", device="cuda:99")
    with pytest.raises(InvalidInput, match="unknown device 'tpu'"):
        api.train([class_folder.root], tmp_path / "model", device="tpu")
    assert not (tmp_path / "model").exists()


def test_training_starts_from_baked_imagenet_weights(
    class_folder: SyntheticClassificationSet, tiny_config, tmp_path: Path, monkeypatch
) -> None:
    import timm

    from pipelines.classification.engines import (
        FINE_TUNE_LEARNING_RATE,
        PRETRAINED_DIR_ENV,
        ConvNeXtConfig,
    )

    weights = tmp_path / "weights" / "convnext_atto.pth"
    weights.parent.mkdir()
    torch.save(timm.create_model("convnext_atto", pretrained=False).state_dict(), weights)
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(weights.parent))
    model_dir = api.train([class_folder.root], tmp_path / "model", config=tiny_config)
    fine_tuned = load_model(model_dir)[0].config
    assert fine_tuned["pretrained_weights_path"] == str(weights)
    assert fine_tuned["learning_rate"] == FINE_TUNE_LEARNING_RATE  # not the from-scratch rate
    chosen = api.train(
        [class_folder.root], tmp_path / "chosen", config={**tiny_config, "learning_rate": 1e-3}
    )
    assert load_model(chosen)[0].config["learning_rate"] == 1e-3  # the user's choice stands
    scratch = api.train(
        [class_folder.root],
        tmp_path / "scratch",
        config={**tiny_config, "pretrained_weights_path": ""},
    )
    from_scratch = load_model(scratch)[0].config
    assert from_scratch["pretrained_weights_path"] == ""
    assert from_scratch["learning_rate"] == ConvNeXtConfig().learning_rate


def test_predicting_a_zip_names_the_images_inside_it(trained_model, tmp_path: Path) -> None:
    """The zip is unpacked to a temporary folder that is gone after the run: the tables say
    where each image is in the zip the user gave."""
    model_dir, dataset = trained_model
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in dataset.files[dataset.classes[0]]:
            zipped.write(path, f"My Data/{path.name}")
    api.predict(model_dir, [archive], tmp_path / "out", options={"heatmaps": False})
    with (tmp_path / "out" / "predictions.csv").open() as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    assert files and all(f.startswith(f"{archive}/") for f in files), files


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(
    trained_model, tmp_path: Path
) -> None:
    model_dir, dataset = trained_model
    folder = tmp_path / "images"
    shutil.copytree(dataset.root / dataset.classes[0], folder)
    for _ in range(2):  # the second run would otherwise classify the first run's overlays
        api.predict(model_dir, [folder], folder)
    rows = json.loads((folder / "predictions.json").read_text())["predictions"]
    given = sorted(p.name for p in (dataset.root / dataset.classes[0]).iterdir())
    assert sorted(row["name"] for row in rows) == given


def test_a_folder_of_unsupported_pictures_says_so(trained_model, tmp_path: Path) -> None:
    model_dir, _ = trained_model
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("a.bmp", "b.bmp"):
        Image.new("L", (16, 16)).save(folder / name)
    with pytest.raises(InvalidInput, match=r"2 \.bmp files there are not a type we read"):
        api.predict(model_dir, [folder], tmp_path / "out")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("epochs=2.5", "epochs=2.5 should be a whole number"),
        ("normalize_percentiles=[1,99,3]", "normalize_percentiles takes 2 values"),
        ("model_name=convnext_tinny", "unknown ConvNeXt model 'convnext_tinny'"),
    ],
)
def test_a_mistyped_setting_is_refused_before_any_image_is_read(setting: str, message: str) -> None:
    from nocode_ml.cli.options import parse_config_overrides

    with pytest.raises(InvalidInput, match=message):
        tasks.check_training_settings("classify", None, parse_config_overrides([setting]))


def test_false_written_the_python_way_is_false(class_folder, tmp_path: Path, tiny_config) -> None:
    from nocode_ml.cli.options import parse_config_overrides

    config = {**tiny_config, **parse_config_overrides(["balance_classes=False"])}
    model_dir = api.train([class_folder.root], tmp_path / "model", config=config)
    assert load_model(model_dir)[0].config["balance_classes"] is False
