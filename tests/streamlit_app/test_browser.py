"""The newcomer flows in headless Chromium against a real ``streamlit run`` server.

The detection test follows a newcomer from the start page to a trained U-Net, its results, the
LabelMe download opened by labelme, a correction in a region dragged on the result picture (which
survives a reload) and a second training, and the Models page. The classification test goes from
the classification sample to a trained ConvNeXt, its predictions table, confusion matrix and CSV.
Training goes through the local launcher with the tiny networks of ``configs.APP_TRAIN_CONFIG``
(``NOCODE_ML_APP_TRAIN_CONFIG``): they stop after a fixed number of steps, so the flows do the
same work however busy the machine is. The steps wait for concrete elements (keyed canvases,
texts, the job the monitor shows) and for Streamlit's script run to end, never for a fixed
time. Screenshots go to ``test-artifacts/streamlit/``.
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
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TRAIN_TIMEOUT_MS = 150_000
SAMPLE_PX = 512  # services.SAMPLE_SIZE_PX: the detection sample is a 512 x 512 image


def _settled(page, quiet_ms: int = 500, timeout_ms: int = 30_000) -> None:
    """Wait until no Streamlit script run has been going on for ``quiet_ms`` (its running icon
    stayed away), so the page shows what the last run drew. A quiet spell, not a single look:
    a component that mounts sends its value a moment later, and that starts another run."""
    page.evaluate("() => { window.__quietSince = null; }")
    page.wait_for_function(
        """(quietMs) => {
            const now = performance.now();
            if (document.querySelector("[data-testid='stStatusWidgetRunningIcon']")) {
                window.__quietSince = null;
                return false;
            }
            if (window.__quietSince == null) window.__quietSince = now;
            return now - window.__quietSince >= quietMs;
        }""",
        arg=quiet_ms,
        polling=100,
        timeout=timeout_ms,
    )


def _one_visible(page, locator, timeout_ms: int = 20_000) -> None:
    """Wait until ``locator`` matches exactly one visible element. A rerun briefly keeps the
    stale canvas beside the new one, and a strict check that looks at that moment fails at
    once (a two-match error, not a retried mismatch), so each look tolerates it."""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        try:
            if locator.count() == 1 and locator.is_visible():
                return
        except PlaywrightError:  # two matches between the count and the look
            pass
        page.wait_for_timeout(100)
    raise AssertionError(f"no single visible {locator} within {timeout_ms} ms")


def _canvas_still(page, canvas, quiet_ms: int = 500, timeout_ms: int = 20_000) -> None:
    """Wait until the drawing canvas has stopped repainting for ``quiet_ms``: after a script
    run the component redraws its background and shapes (or mounts anew), and a click during
    that redraw is lost. ``canvas`` is the component's ``canvas.upper-canvas`` locator (it takes
    the mouse); the picture is painted on its sibling ``canvas.lower-canvas``. The locator is
    looked up again at each look, so a canvas mounted anew meanwhile is followed."""
    deadline = time.monotonic() + timeout_ms / 1000
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            picture = canvas.evaluate(CANVAS_PICTURE, timeout=2000)
        except PlaywrightError:  # none or two matches while the page is being rerun
            picture = None
        now = time.monotonic()
        if picture is None or picture != seen:
            seen, since = picture, now
        elif now - since >= quiet_ms / 1000:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the canvas kept repainting for {timeout_ms} ms")


# A short fingerprint of what the lower canvas shows (null while it is not in the page).
CANVAS_PICTURE = """upper => {
    const lower = upper.parentElement && upper.parentElement.querySelector('canvas.lower-canvas');
    if (!lower) return null;
    const data = lower.toDataURL();
    let hash = 0;
    for (let i = 0; i < data.length; i += 7) hash = (hash * 31 + data.charCodeAt(i)) | 0;
    return `${data.length}:${hash}`;
}"""


def _keyed(key_prefix: str) -> str:
    """CSS selector of the element(s) whose widget key starts with ``key_prefix`` (Streamlit
    puts ``st-key-<key>`` on them, with characters outside ``[a-zA-Z0-9_-]`` as ``-``)."""
    return f"[class*='st-key-{re.sub(r'[^a-zA-Z0-9_-]', '-', key_prefix)}']"


def _to_screen(canvas, points, width_px: float, height_px: float) -> list[tuple[float, float]]:
    """Screen coordinates of ``points`` given in the units of a ``width_px`` x ``height_px``
    picture drawn on ``canvas`` (scaled to fit, centred), whatever size the page gives it."""
    box = canvas.bounding_box()
    scale = min(box["width"] / width_px, box["height"] / height_px)
    left = box["x"] + (box["width"] - width_px * scale) / 2
    top = box["y"] + (box["height"] - height_px * scale) / 2
    return [(left + x * scale, top + y * scale) for x, y in points]


def _drag(page, canvas, window, width_px: float = SAMPLE_PX, height_px: float = SAMPLE_PX):
    """Drag a rectangle with the mouse over ``window`` ``(x0, y0, x1, y1)`` (image px of a
    ``width_px`` x ``height_px`` image shown on ``canvas``)."""
    canvas.scroll_into_view_if_needed()
    _canvas_still(page, canvas)
    (x0, y0), (x1, y1) = _to_screen(canvas, [window[:2], window[2:]], width_px, height_px)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()


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


def _labels_path(server, page):
    folder = server["data_dir"] / "projects" / _project_id(page) / "images"
    (path,) = folder.glob("*.json")
    return path


def _labels_on_disk(server, page):
    from pipelines.formats.labelme import read_labelme

    return read_labelme(_labels_path(server, page))


def _crop_canvas(page, server, crop_index: int):
    """The canvas of the Label page's crop editor showing crop ``crop_index`` (0-based)."""
    name = _labels_path(server, page).stem
    key = f"crop_{_project_id(page)}_{name}_{crop_index}_"
    return page.locator(f"{_keyed(key)} canvas.upper-canvas")


def _label_the_sample(page, shot, server) -> None:
    """Draw a crop with the mouse and outline every object in it by clicking its edge."""
    from streamlit_app.components.canvas_geometry import contain_fit, image_to_canvas
    from streamlit_app.views.label import ZOOM_PX, _crop_box

    page.get_by_role("button", name="Try the sample").click()
    page.get_by_text(re.compile("Label — Sample")).wait_for(timeout=30000)
    canvas = page.locator(f"{_keyed('overview_')} canvas.upper-canvas")
    # While a rerun bumps the overview's revision, the stale canvas stays until it ends, and
    # the first runs after opening the sample follow each other: let them finish first.
    _settled(page)
    _one_visible(page, canvas)
    _canvas_still(page, canvas)
    _settled(page)
    shot(page, "02_label_overview")
    objects_before, crops_before = _counts(page)
    document = _labels_on_disk(server, page)
    objects = _sample_objects()
    window = _free_window(objects, [c.bounds() for c in document.crop_shapes])

    # Draw the crop on the overview.
    _drag(page, canvas, window)
    page.wait_for_function(
        f"document.body.innerText.includes('crops: {crops_before + 1}')", timeout=20000
    )
    _settled(page)
    shot(page, "03_crop_drawn")

    # Outline every object whose centre is in the new crop (tab ②, by hand).
    document = _labels_on_disk(server, page)
    crop_index = len(document.crop_shapes) - 1
    region, bounds = _crop_box(document, crop_index, SAMPLE_PX, SAMPLE_PX)
    factor = ZOOM_PX / max(region.width_px, region.height_px)
    width, height = round(region.width_px * factor), round(region.height_px * factor)
    region = dataclasses.replace(region, picture_width_px=width, picture_height_px=height)
    fit = contain_fit(width, height, width, height)
    wanted = [o for o in objects if _centre_in(o, bounds)]
    page.get_by_role("tab", name=re.compile("Outline objects")).click()
    page.get_by_text(f"Crop {crop_index + 1}", exact=True).click()
    canvas = _crop_canvas(page, server, crop_index)
    _one_visible(page, canvas)
    _settled(page)
    canvas.scroll_into_view_if_needed()
    for number, outline in enumerate(wanted, start=1):
        _canvas_still(page, canvas)
        step = max(1, len(outline) // 8)
        vertices = _to_screen(canvas, image_to_canvas(outline[::step], fit, region), width, height)
        for x, y in vertices:
            page.mouse.click(x, y)
            time.sleep(0.1)  # input pacing: two quick clicks would be one double-click
        page.mouse.click(*vertices[0])
        page.wait_for_function(
            f"document.body.innerText.includes('particle: {objects_before + number}')",
            timeout=20000,
        )
        _settled(page)  # the save reruns the page: draw the next outline once it has ended
    shot(page, "04_objects_outlined")

    # A reload keeps the project and every label.
    page.reload()
    page.get_by_text(re.compile("Label — Sample")).wait_for(timeout=30000)
    assert _counts(page) == (objects_before + len(wanted), crops_before + 1)
    shot(page, "05_after_reload")


MONITOR_JOB = re.compile(r"· job (\S+)")


def _shown_job(page) -> str | None:
    """The id of the job the Train page's monitor shows (``None`` when it shows none)."""
    monitor = page.locator(".st-key-job_monitor")
    if monitor.count() == 0:
        return None
    found = MONITOR_JOB.search(monitor.first.inner_text())
    return found.group(1) if found else None


def _train(page, shot, name: str) -> None:
    """Start a quick training on the Train page and wait until it has finished.

    The 2-minute budget typed in is far more than the tiny networks' step cap needs, so the
    cap, not the clock, ends the training.
    """
    page.get_by_role("heading", name=re.compile("Train — ")).wait_for(timeout=30000)
    _settled(page)
    previous = _shown_job(page)
    budget = page.get_by_role("spinbutton", name="Time budget (minutes)")
    budget.fill("2")
    budget.press("Tab")
    page.get_by_role("button", name="Start training").click()
    # Until the run that submits the job repaints the page, the monitor still shows the
    # previous training ("Finished" on a retrain): wait for it to show another job first.
    page.wait_for_function(
        """(previous) => {
            const monitor = document.querySelector('.st-key-job_monitor');
            const found = monitor && monitor.innerText.match(/· job (\\S+)/);
            return Boolean(found) && found[1] !== previous;
        }""",
        arg=previous,
        timeout=60000,
    )
    job_id = _shown_job(page)
    assert job_id and job_id != previous, (job_id, previous)
    # The picture shows the training stage with its step count when the 2-s refresh catches
    # it (the tiny networks train for a few seconds), else the finished job.
    monitor = page.locator(".st-key-job_monitor").filter(has_text=job_id)
    finished = monitor.get_by_text("Finished")
    training = monitor.get_by_text(re.compile(r"Training \(step \d+ of \d+\)"))
    training.or_(finished).first.wait_for(timeout=TRAIN_TIMEOUT_MS)
    shot(page, f"{name}_progress")
    finished.wait_for(timeout=TRAIN_TIMEOUT_MS)
    shot(page, f"{name}_finished")


REGION_TEXT = re.compile(r"Region: x (\d+)–(\d+) px, y (\d+)–(\d+) px")


def _correction_canvas(page, image_name: str, revision: int):
    """The canvas of the Results page's region picker; it gets a new key (``revision``) each
    time a new rectangle replaces the old one."""
    return page.locator(f"{_keyed(f'correct_canvas_{image_name}_{revision}')} canvas.upper-canvas")


def _drag_region(
    page, image_name: str, revision: int, window: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """Drag ``window`` (image px) on the correction canvas of key ``revision``; return the
    region the page then reports, ``(x0, y0, x1, y1)``."""
    _drag(page, _correction_canvas(page, image_name, revision), window)
    page.wait_for_function(
        """([left, top]) => {
            const m = document.body.innerText.match(/Region: x (\\d+)–(\\d+) px, y (\\d+)–/);
            return m !== null && Math.abs(m[1] - left) <= 2 && Math.abs(m[3] - top) <= 2;
        }""",
        arg=[window[0], window[1]],
        timeout=20000,
    )
    _settled(page)
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
    width, height = document["imageWidth"], document["imageHeight"]
    best, best_count = None, -1
    for top in range(8, height - size_px - 8, 8):
        for left in range(8, width - size_px - 8, 8):
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
    expect(page.locator("[data-testid='stPlotlyChart'] .main-svg").first).to_be_visible(
        timeout=30000
    )
    _settled(page)
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
    # Objects on the burnt-in scale bar were left out, and the picture's caption says how many.
    ignored = raw["nocode_ml"].get("ignored_on_scale_bar", 0)
    print(f"{ignored} objects on the scale bar ignored")
    ignored_text = page.get_by_text(re.compile(r"\d+ objects on the scale bar or its text were"))
    if ignored:
        expect(ignored_text).to_contain_text(f"{found} objects found in")
        expect(ignored_text).to_contain_text(f"{ignored} objects on the scale bar")
    else:
        expect(ignored_text).to_have_count(0)

    # Correct the model in a region dragged on the result picture, and train again.
    crops = [c.bounds() for c in _labels_on_disk(server, page).crop_shapes]
    window = _busiest_window(raw, crops)
    image_name = _labels_path(server, page).stem
    expect(_correction_canvas(page, image_name, 0)).to_be_visible(timeout=20000)
    _settled(page)
    # A first rectangle, then the real one: only the newest is kept, on a canvas re-keyed
    # (revision 1) that shows it alone.
    _drag_region(page, image_name, 0, (20, 20, 60, 60))
    x0, y0, x1, y1 = _drag_region(page, image_name, 0, window)
    assert max(abs(a - b) for a, b in zip((x0, y0, x1, y1), window, strict=True)) <= 2
    expect(_correction_canvas(page, image_name, 1)).to_be_visible(timeout=20000)
    expect(_correction_canvas(page, image_name, 0)).to_have_count(0)
    _canvas_still(page, _correction_canvas(page, image_name, 1))
    _settled(page)
    shot(page, "08_correct_region_drawn")
    page.get_by_role("button", name="Correct these objects →").click()
    page.get_by_role("heading", name=re.compile("Label — ")).wait_for(timeout=30000)
    banner = page.get_by_text(re.compile("are now labels in")).first
    banner.wait_for(timeout=20000)
    banner_text = banner.inner_text()
    added = int(re.search(r"(\d+) object\(s\) it found", banner_text).group(1))
    assert added > 0, banner_text
    crop_index = int(re.search(r"crop (\d+)", banner_text).group(1)) - 1
    _one_visible(page, _crop_canvas(page, server, crop_index))
    _canvas_still(page, _crop_canvas(page, server, crop_index))
    _settled(page)
    shot(page, "08_correct_in_label_page")

    # A reload keeps the correction banner, its crop and the outline tab.
    page.reload()
    page.get_by_role("heading", name=re.compile("Label — ")).wait_for(timeout=30000)
    page.get_by_text(re.compile("are now labels in")).first.wait_for(timeout=20000)
    assert page.get_by_text(re.compile("are now labels in")).first.inner_text() == banner_text
    assert "correcting=" in page.url
    selected = page.get_by_role("tab", selected=True)
    assert "Outline objects" in selected.inner_text()
    _one_visible(page, _crop_canvas(page, server, crop_index))
    _canvas_still(page, _crop_canvas(page, server, crop_index))
    _settled(page)
    shot(page, "08_correct_after_reload")
    objects_before, _ = _counts(page)
    page.get_by_role("button", name="Delete outline").click()
    page.wait_for_function(
        f"document.body.innerText.includes('particle: {objects_before - 1}')", timeout=20000
    )
    _settled(page)  # the deletion re-keys the crop canvas: the picture shows the new one
    expect(_crop_canvas(page, server, crop_index)).to_have_count(1)
    _canvas_still(page, _crop_canvas(page, server, crop_index))
    _settled(page)
    shot(page, "09_outline_deleted")
    page.get_by_role("button", name="Next: train →").click()
    _train(page, shot, "10_retrain")
    page.get_by_text(re.compile(r"Earlier trainings \(1\)")).wait_for(timeout=10000)
    assert "correcting=" not in page.url  # training again ends the correction

    # The Models page lists the trained model; its zip is built when Download is clicked.
    page.get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="Models").wait_for(timeout=20000)
    expect(page.get_by_role("button", name="Download").first).to_be_visible(timeout=20000)
    _settled(page)
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
    expect(page.locator("[data-testid='stPlotlyChart'] .main-svg").first).to_be_visible(
        timeout=20000
    )
    _settled(page)
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
    _settled(page)
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
    # The heatmap trace itself is drawn (one ``g.hm`` in plotly's heatmap layer), not only axes.
    expect(matrix.locator(".heatmaplayer .hm")).to_have_count(1, timeout=30000)
    expect(matrix.locator(".heatmaplayer .hm").first).to_be_visible()
    _settled(page)
    shot(page, "23_cls_results")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Predictions (CSV)").click()
    csv_path = tmp_path / "predictions.csv"
    download_info.value.save_as(csv_path)
    table = pd.read_csv(csv_path)
    assert len(table) == 24
    assert {"class", "true_class"} <= set(table.columns)
    assert set(table["true_class"]) == set(CLASS_NAMES)
    assert set(table["class"]) <= set(table["true_class"])
    # Files by their path in the dataset the user knows (class folder / name), not job paths.
    folders = table["file"].str.split("/").str[0]
    assert table["file"].str.count("/").eq(1).all(), table["file"].head().tolist()
    assert (folders == table["true_class"]).all()
    assert table["file"].is_unique
