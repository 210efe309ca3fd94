"""The newcomer flows in headless Chromium against a real ``streamlit run`` server.

The detection test follows a newcomer from the start page to a trained U-Net, its results, the
LabelMe download opened by labelme, a correction in a region dragged on the result picture (which
survives a reload) and a second training, and the Models page. The classification test goes from
the classification sample to a trained ConvNeXt, its predictions table, confusion matrix and CSV.
Training goes through the local launcher with the tiny networks of ``configs.APP_TRAIN_CONFIG``
(``NOCODE_ML_APP_TRAIN_CONFIG``): they stop after a fixed number of steps, so the flows do the
same work however busy the machine is. Screenshots go to ``test-artifacts/streamlit/``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
import zipfile
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

pytestmark = pytest.mark.browser

TRAIN_TIMEOUT_MS = 150_000


def _counts(page) -> tuple[int, int]:
    """(objects of 'particle', crops) from the class counter line of the Label page."""
    text = page.get_by_text(re.compile(r"particle: \d+")).first.inner_text()
    objects = int(re.search(r"particle: (\d+)", text).group(1))
    crops = int(re.search(r"crops: (\d+)", text).group(1))
    return objects, crops


def _project_id(page) -> str:
    return parse_qs(urlparse(page.url).query)["project"][0]


def _sample_objects() -> list[np.ndarray]:
    """Outlines (image px) of every object of the sample image the app makes (its truth)."""
    from pipelines import synthetic
    from streamlit_app import services

    sample = synthetic.generate(
        services.SAMPLE_SCENARIO, size_px=services.SAMPLE_SIZE_PX, seed=services.SAMPLE_SEED
    )
    return [shape.points for shape in sample.truth_document.object_shapes]


def _free_window(objects: list[np.ndarray], taken: list[tuple]) -> tuple[int, int, int, int]:
    """A 110 x 90 px window away from the sample's crops holding 2-4 whole objects."""
    best = None
    for top in range(20, 400, 10):
        for left in range(20, 380, 10):
            box = (left, top, left + 110, top + 90)
            if any(
                box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken
            ):
                continue
            inside = [o for o in objects if _centre_in(o, box)]
            cut = [
                o
                for o in inside
                if o[:, 0].min() < box[0] + 2
                or o[:, 0].max() > box[2] - 2
                or o[:, 1].min() < box[1] + 2
                or o[:, 1].max() > box[3] - 2
            ]
            if 2 <= len(inside) <= 4 and not cut and (best is None or len(inside) > best[0]):
                best = (len(inside), box)
    assert best is not None, "no free window with whole objects in the sample image"
    return best[1]


def _centre_in(points: np.ndarray, box) -> bool:
    x, y = points.mean(axis=0)
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _labels_on_disk(server, page):
    from pipelines.formats.labelme import read_labelme

    folder = server["data_dir"] / "projects" / _project_id(page) / "images"
    (path,) = folder.glob("*.json")
    return read_labelme(path)


def _label_the_sample(page, shot, server) -> None:
    """Draw a crop with the mouse and outline every object in it by clicking its edge."""
    from streamlit_app.components.canvas_geometry import contain_fit, image_to_canvas
    from streamlit_app.views.label import ZOOM_PX, _crop_box

    page.get_by_role("button", name="Try the sample").click()
    page.get_by_text(re.compile("Label — Sample")).wait_for(timeout=30000)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=20000)
    time.sleep(1.0)
    shot(page, "02_label_overview")
    objects_before, crops_before = _counts(page)
    document = _labels_on_disk(server, page)
    objects = _sample_objects()
    window = _free_window(objects, [c.bounds() for c in document.crop_shapes])

    # Draw the crop on the overview (shown 1:1, the sample is 512 px).
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + window[0], box["y"] + window[1])
    page.mouse.down()
    page.mouse.move(box["x"] + window[2], box["y"] + window[3], steps=8)
    page.mouse.up()
    page.wait_for_function(
        f"document.body.innerText.includes('crops: {crops_before + 1}')", timeout=20000
    )
    shot(page, "03_crop_drawn")

    # Outline every object whose centre is in the new crop (tab ②, by hand).
    document = _labels_on_disk(server, page)
    crop_index = len(document.crop_shapes) - 1
    region, bounds = _crop_box(document, crop_index, 512, 512)
    factor = ZOOM_PX / max(region.width_px, region.height_px)
    width, height = round(region.width_px * factor), round(region.height_px * factor)
    region = dataclasses.replace(region, picture_width_px=width, picture_height_px=height)
    fit = contain_fit(width, height, width, height)
    wanted = [o for o in objects if _centre_in(o, bounds)]
    page.get_by_role("tab", name=re.compile("Outline objects")).click()
    page.get_by_text(f"Crop {crop_index + 1}", exact=True).click()
    time.sleep(1.5)
    canvas = page.locator("canvas.upper-canvas").nth(1)
    canvas.wait_for(timeout=20000)
    canvas.scroll_into_view_if_needed()
    for number, outline in enumerate(wanted, start=1):
        box = canvas.bounding_box()
        step = max(1, len(outline) // 8)
        vertices = image_to_canvas(outline[::step], fit, region)
        for x, y in vertices:
            page.mouse.click(box["x"] + x, box["y"] + y)
            time.sleep(0.1)
        page.mouse.click(box["x"] + vertices[0][0], box["y"] + vertices[0][1])
        page.wait_for_function(
            f"document.body.innerText.includes('particle: {objects_before + number}')",
            timeout=20000,
        )
        time.sleep(0.8)
    shot(page, "04_objects_outlined")

    # A reload keeps the project and every label.
    page.reload()
    page.get_by_text(re.compile("Label — Sample")).wait_for(timeout=30000)
    assert _counts(page) == (objects_before + len(wanted), crops_before + 1)
    shot(page, "05_after_reload")


def _train(page, shot, name: str) -> None:
    """Start a quick training on the Train page and wait until it has finished.

    The 2-minute budget typed in is far more than the tiny networks' step cap needs, so the
    cap, not the clock, ends the training.
    """
    page.get_by_role("heading", name=re.compile("Train — ")).wait_for(timeout=30000)
    budget = page.get_by_role("spinbutton", name="Time budget (minutes)")
    budget.fill("2")
    budget.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.locator("[data-testid='stProgress']").first.wait_for(timeout=60000)
    # The picture shows the training stage with its step count when the 2-s refresh catches
    # it (the tiny networks train for a few seconds), else the finished job.
    monitor = page.locator(".st-key-job_monitor")
    finished = monitor.get_by_text("Finished")
    training = monitor.get_by_text(re.compile(r"Training \(step \d+ of \d+\)"))
    training.or_(finished).first.wait_for(timeout=TRAIN_TIMEOUT_MS)
    shot(page, f"{name}_progress")
    finished.wait_for(timeout=TRAIN_TIMEOUT_MS)
    shot(page, f"{name}_finished")


REGION_TEXT = re.compile(r"Region: x (\d+)–(\d+) px, y (\d+)–(\d+) px")


def _drag_region(page, canvas, window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Drag ``window`` (image px; the 512-px sample is shown 1:1) on the correction canvas and
    return the region the page then reports, ``(x0, y0, x1, y1)``."""
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + window[0], box["y"] + window[1])
    page.mouse.down()
    page.mouse.move(box["x"] + window[2], box["y"] + window[3], steps=8)
    page.mouse.up()
    page.wait_for_function(
        """([left, top]) => {
            const m = document.body.innerText.match(/Region: x (\\d+)–(\\d+) px, y (\\d+)–/);
            return m !== null && Math.abs(m[1] - left) <= 2 && Math.abs(m[3] - top) <= 2;
        }""",
        arg=[window[0], window[1]],
        timeout=20000,
    )
    time.sleep(1.0)  # let the rerun that redraws the canvas settle
    x0, x1, y0, y1 = map(int, REGION_TEXT.search(page.inner_text("body")).groups())
    return x0, y0, x1, y1


def _busiest_window(
    document: dict, taken: list[tuple], size_px: int = 128
) -> tuple[int, int, int, int]:
    """The ``size_px`` square (image px) clear of the crops ``taken`` (already labelled) that
    holds the most predicted object centres."""
    centres = np.array(
        [np.mean(s["points"], axis=0) for s in document["shapes"] if s["label"] != "crop"]
    )
    best, best_count = None, -1
    for top in range(8, 512 - size_px - 8, 8):
        for left in range(8, 512 - size_px - 8, 8):
            box = (left, top, left + size_px, top + size_px)
            if any(
                box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3] for t in taken
            ):
                continue
            inside = (
                (centres[:, 0] >= left)
                & (centres[:, 0] < left + size_px)
                & (centres[:, 1] >= top)
                & (centres[:, 1] < top + size_px)
            )
            if inside.sum() > best_count:
                best, best_count = box, int(inside.sum())
    assert best_count > 0, "the model found no object to correct"
    return best


def test_newcomer_from_sample_to_results_and_a_correction(server, page, shot, tmp_path) -> None:
    page.set_viewport_size({"width": 1400, "height": 1000})
    started = time.monotonic()
    page.goto(server["url"])
    page.get_by_role("heading", name="No Code ML").wait_for(timeout=15000)
    print(f"first page painted in {time.monotonic() - started:.2f} s after goto")
    shot(page, "01_start")
    _label_the_sample(page, shot, server)

    # Train through the local launcher; the progress bar and the loss curve show.
    page.get_by_role("button", name="Next: train →").click()
    _train(page, shot, "06_train")

    # Let the model find every object; the results page shows the histogram.
    page.get_by_role("button", name="Find objects in all images →").click()
    page.get_by_role("heading", name=re.compile("Results — ")).wait_for(timeout=30000)
    page.get_by_text(re.compile(r"\d+ objects found in")).wait_for(timeout=90000)
    page.locator("[data-testid='stPlotlyChart'] .main-svg").first.wait_for(timeout=30000)
    time.sleep(1.0)
    shot(page, "07_results")
    found = int(page.locator("[data-testid='stMetricValue']").first.inner_text())
    print(f"the model found {found} objects")
    assert found > 0

    # A reload on the results page loses nothing.
    page.reload()
    page.get_by_text(re.compile(r"\d+ objects found in")).wait_for(timeout=30000)

    # The LabelMe download opens in labelme with the image beside it.
    with page.expect_download() as download_info:
        page.get_by_role("button", name="LabelMe JSON").click()
    download = download_info.value
    json_path = tmp_path / download.suggested_filename
    download.save_as(json_path)
    raw = json.loads(json_path.read_text())
    project_id = _project_id(page)
    image = server["data_dir"] / "projects" / project_id / "images" / raw["imagePath"]
    shutil.copy(image, tmp_path / raw["imagePath"])
    from labelme._label_file import LabelFile

    label_file = LabelFile(filename=str(json_path))
    assert len([s for s in label_file.shapes if s["label"] != "crop"]) == found
    assert label_file.image_path == raw["imagePath"]

    # Correct the model in a region dragged on the result picture, and train again.
    crops = [c.bounds() for c in _labels_on_disk(server, page).crop_shapes]
    window = _busiest_window(raw, crops)
    canvas = page.locator(".st-key-correct_box canvas.upper-canvas")
    canvas.wait_for(timeout=20000)
    canvas.scroll_into_view_if_needed()
    time.sleep(0.5)
    # A first rectangle, then the real one: only the newest is kept.
    _drag_region(page, canvas, (20, 20, 60, 60))
    x0, y0, x1, y1 = _drag_region(page, canvas, window)
    assert max(abs(a - b) for a, b in zip((x0, y0, x1, y1), window, strict=True)) <= 2
    time.sleep(0.5)
    shot(page, "08_correct_region_drawn")
    page.get_by_role("button", name="Correct these objects →").click()
    page.get_by_role("heading", name=re.compile("Label — ")).wait_for(timeout=30000)
    banner = page.get_by_text(re.compile("are now labels in")).first
    banner.wait_for(timeout=20000)
    banner_text = banner.inner_text()
    added = int(re.search(r"(\d+) object\(s\) it found", banner_text).group(1))
    assert added > 0, banner_text
    page.locator("canvas.upper-canvas").nth(1).wait_for(timeout=20000)
    time.sleep(1.0)
    shot(page, "08_correct_in_label_page")

    # A reload keeps the correction banner, its crop and the outline tab.
    page.reload()
    page.get_by_role("heading", name=re.compile("Label — ")).wait_for(timeout=30000)
    page.get_by_text(re.compile("are now labels in")).first.wait_for(timeout=20000)
    assert page.get_by_text(re.compile("are now labels in")).first.inner_text() == banner_text
    assert "correcting=" in page.url
    selected = page.get_by_role("tab", selected=True)
    assert "Outline objects" in selected.inner_text()
    page.locator("canvas.upper-canvas").nth(1).wait_for(timeout=20000)
    time.sleep(1.0)
    shot(page, "08_correct_after_reload")
    objects_before, _ = _counts(page)
    page.get_by_role("button", name="Delete outline").click()
    page.wait_for_function(
        f"document.body.innerText.includes('particle: {objects_before - 1}')", timeout=20000
    )
    time.sleep(1.5)  # the canvas is redrawn after the deletion: let that rerun settle
    shot(page, "09_outline_deleted")
    page.get_by_role("button", name="Next: train →").click()
    _train(page, shot, "10_retrain")
    page.get_by_text(re.compile(r"Earlier trainings \(1\)")).wait_for(timeout=10000)
    assert "correcting=" not in page.url  # training again ends the correction

    # The Models page lists the trained model; its zip is built when Download is clicked.
    page.get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="Models").wait_for(timeout=20000)
    time.sleep(1.0)
    shot(page, "11_models")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download").first.click()
    zip_path = tmp_path / "model.zip"
    download_info.value.save_as(zip_path)
    with zipfile.ZipFile(zip_path) as archive:
        assert any(n.startswith("model/") for n in archive.namelist())


def test_bad_upload_shows_an_error_and_the_app_keeps_working(
    server, page, shot, tmp_path, sample_files
) -> None:
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(server["url"] + "/statistics")
    page.get_by_role("heading", name=re.compile("Statistics")).wait_for(timeout=15000)
    bad = tmp_path / "notes.json"
    bad.write_text("this is not json")
    uploader = page.locator("[data-testid='stFileUploader'] input[type='file']").first
    uploader.set_input_files(str(bad))
    page.get_by_text(re.compile("not a LabelMe JSON file")).wait_for(timeout=15000)
    shot(page, "12_bad_upload")
    uploader.set_input_files(str(sample_files["labels"]))
    page.locator("[data-testid='stPlotlyChart'] .main-svg").first.wait_for(timeout=20000)
    time.sleep(1.0)
    shot(page, "13_statistics")


def test_classification_sample_to_predictions_in_the_browser(server, page, shot, tmp_path) -> None:
    import pandas as pd

    from pipelines.synthetic_classes import CLASS_NAMES

    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(server["url"])
    page.get_by_role("heading", name="No Code ML").wait_for(timeout=15000)
    shot(page, "20_cls_start")
    page.get_by_role("button", name="Try the classification sample").click()
    page.get_by_role("heading", name=re.compile("Label — Sample: particle shapes")).wait_for(
        timeout=60000
    )
    page.get_by_text("Every class has at least two images. Ready to train.").wait_for(timeout=20000)
    time.sleep(1.0)
    shot(page, "21_cls_label")

    # Train a tiny ConvNeXt through the local launcher; the progress shows while it runs.
    page.get_by_role("button", name="Next: train →").click()
    _train(page, shot, "22_cls_train")
    page.get_by_text(re.compile("accuracy on held-back images")).wait_for(timeout=20000)

    # The model classifies every image: predictions table, confusion matrix, CSV download.
    page.get_by_role("button", name="Classify all images →").click()
    page.get_by_role("heading", name=re.compile("Results — ")).wait_for(timeout=30000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=120000)
    matrix = page.locator("[data-testid='stPlotlyChart']").filter(has_text="Confusion matrix")
    matrix.locator(".main-svg").first.wait_for(timeout=30000)
    assert matrix.locator(".heatmaplayer, .hm").count() >= 1  # the heatmap itself is drawn
    time.sleep(1.0)
    shot(page, "23_cls_results")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    csv_path = tmp_path / "predictions.csv"
    download_info.value.save_as(csv_path)
    table = pd.read_csv(csv_path)
    assert len(table) == 24
    assert {"class", "true_class"} <= set(table.columns)
    assert set(table["true_class"]) == set(CLASS_NAMES)
    assert set(table["class"]) <= set(table["true_class"])
    assert not table["file"].str.contains("/").any()  # names the user knows, not job paths
