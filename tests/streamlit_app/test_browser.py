"""The newcomer flow in headless Chromium against a real ``streamlit run`` server.

One long test follows a newcomer from the start page to a trained model, its results, the
LabelMe download opened by labelme, a correction and a second training, and the
Models page. Training goes through the local launcher with the engine the server fixture names
in ``NOCODE_ML_APP_TRAIN_CONFIG`` and a 0.5-minute budget typed into the Train page.
Screenshots go to ``test-artifacts/streamlit/``.
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
    """Start a quick 0.5-minute training on the Train page and wait until it has finished."""
    page.get_by_role("heading", name=re.compile("Train — ")).wait_for(timeout=30000)
    budget = page.get_by_role("spinbutton", name="Time budget (minutes)")
    budget.fill("0.5")
    budget.press("Tab")
    page.get_by_role("button", name="Start training").click()
    page.locator("[data-testid='stProgress']").first.wait_for(timeout=60000)
    shot(page, f"{name}_progress")
    page.locator(".st-key-job_monitor").get_by_text("Finished").wait_for(timeout=TRAIN_TIMEOUT_MS)
    shot(page, f"{name}_finished")


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

    # Correct the model in a region and train again from the corrected labels.
    page.get_by_role("button", name="Correct these objects →").click()
    page.get_by_role("heading", name=re.compile("Label — ")).wait_for(timeout=30000)
    page.get_by_text(re.compile("are now labels in")).wait_for(timeout=20000)
    page.locator("canvas.upper-canvas").nth(1).wait_for(timeout=20000)
    time.sleep(1.0)
    shot(page, "08_correct_in_label_page")
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
