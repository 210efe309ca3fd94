"""Label page under AppTest: assisted outlining ("click an object") on the sample project.

The canvas is a JavaScript component, so the test injects what it returns after a click (a
Fabric circle at the click); the outline itself comes from ``pipelines.detection.assist``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from streamlit_app import state

APP = Path(__file__).resolve().parents[2] / "streamlit_app" / "app.py"


def _canvas_click(app: AppTest, project_id: str, name: str, x: float, y: float) -> None:
    """Inject the crop canvas's value after a click at image pixel ``(x, y)``: the outlines it
    was given (as the browser component returns them) plus the click marker."""
    import dataclasses

    from streamlit_app import services
    from streamlit_app.components.canvas_geometry import contain_fit, shapes_to_fabric
    from streamlit_app.views.label import ZOOM_PX, _crop_box, crop_canvas_key

    project = services.project_store().get(project_id)
    record = project.image(name)
    document = services.project_store().labels(project_id, name)
    region, (x0, y0, x1, y1) = _crop_box(document, 0, record.width_px, record.height_px)
    factor = ZOOM_PX / max(region.width_px, region.height_px)
    width, height = round(region.width_px * factor), round(region.height_px * factor)
    region = dataclasses.replace(region, picture_width_px=width, picture_height_px=height)
    inside = [
        s
        for s in document.object_shapes
        if x0 <= s.points[:, 0].mean() <= x1 and y0 <= s.points[:, 1].mean() <= y1
    ]
    drawing = shapes_to_fabric(
        inside, contain_fit(width, height, width, height), region, project.colour_of
    )
    cx, cy = (x - region.left_px + 0.5) * factor, (y - region.top_px + 0.5) * factor
    radius, stroke = 4, 2
    circle = {
        "type": "Circle",
        "left": cx - radius - stroke / 2,
        "top": cy,
        "radius": radius,
        "originX": "left",
        "originY": "center",
        "strokeWidth": stroke,
    }
    revision = app.session_state[state.CANVAS_REVISION]
    key = crop_canvas_key(project_id, name, 0, (x0, y0, x1, y1), revision) + "_click"
    app.session_state[key] = {
        "drawing": {"raw": {"objects": [*drawing["objects"], circle]}, "data": None},
        "backgroundFit": None,
    }


def _area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def test_click_an_object_proposes_its_outline(app: AppTest) -> None:
    from streamlit_app import services

    app.button(key="try_sample").click().run()
    assert not app.exception
    project_id = app.session_state[state.PROJECT_ID]
    store = services.project_store()
    name = store.get(project_id).images[0].name
    document = store.labels(project_id, name)
    x0, y0, x1, y1 = document.crop_shapes[0].bounds()
    inside = [
        s
        for s in document.object_shapes
        if x0 <= s.points[:, 0].mean() <= x1 and y0 <= s.points[:, 1].mean() <= y1
    ]
    # Remove the largest outline of crop 1 with the page's delete button…
    victim_index = int(np.argmax([_area(s.points) for s in inside]))
    victim = inside[victim_index]
    app.selectbox(key="object_to_delete").set_value(f"#{victim_index + 1} {victim.label}").run()
    app.button(key="delete_object").click().run()
    assert not app.exception
    before = len(store.labels(project_id, name).object_shapes)
    assert before == len(document.object_shapes) - 1

    # …then get it back by clicking its centre in "click an object" mode.
    app.radio(key="outline_tool").set_value("Click an object (computer outlines it)").run()
    cx, cy = victim.points.mean(axis=0)
    _canvas_click(app, project_id, name, cx, cy)
    app.run()
    assert not app.exception
    assert any("Proposed outline" in info.value for info in app.info), [
        w.value for w in app.warning
    ]
    # the proposal is drawn on the crop before the user accepts it
    assert any("proposed outline" in str(image.proto) for image in app.get("image"))
    app.button(key="accept_proposal").click().run()
    assert not app.exception
    after = store.labels(project_id, name).object_shapes
    assert len(after) == before + 1
    proposed = after[-1]
    assert proposed.label == victim.label
    # The proposal covers the deleted object: same size within 40 %, centre within 3 px.
    assert abs(_area(proposed.points) / _area(victim.points) - 1) < 0.4
    assert np.hypot(*(proposed.points.mean(axis=0) - victim.points.mean(axis=0))) < 3


def test_a_correction_in_progress_comes_back_from_the_url(data_dir) -> None:
    """After "Correct these objects" the URL holds the correction; a reload (a new session
    with that URL) shows the banner again on the same image, crop and tab, and starting a new
    project ends it."""
    from streamlit_app import services
    from streamlit_app.navigation import GOTO

    first = AppTest.from_file(str(APP), default_timeout=60).run()
    first.button(key="try_sample").click().run()
    project_id = first.session_state[state.PROJECT_ID]
    name = services.project_store().get(project_id).images[0].name
    first.session_state[state.CORRECTING] = (name, 1, 5)
    first.run()
    assert first.query_params["correcting"] == f"1:5:{name}"

    reloaded = AppTest.from_file(str(APP), default_timeout=60)
    reloaded.query_params.update(first.query_params)
    reloaded.run()
    reloaded.session_state[GOTO] = "label"
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.title[0].value.startswith("Label")
    assert reloaded.session_state[state.CORRECTING] == (name, 1, 5)
    assert reloaded.session_state[state.IMAGE_NAME] == name
    assert reloaded.session_state[state.CROP_INDEX] == 1
    assert reloaded.session_state[state.LABEL_TAB] == state.OUTLINE_TAB
    (banner,) = [w.value for w in reloaded.warning if "Correcting the model" in w.value]
    assert "5 object(s)" in banner and "crop 2" in banner

    # A mistyped value is dropped; opening another project forgets the correction.
    typo = AppTest.from_file(str(APP), default_timeout=60)
    typo.query_params.update({"project": project_id, "correcting": "two:5"})
    typo.run()
    assert not typo.exception and typo.session_state[state.CORRECTING] is None
    assert "correcting" not in typo.query_params
    reloaded.session_state[GOTO] = "start"
    reloaded.run()
    reloaded.button(key="try_sample").click().run()
    assert reloaded.session_state[state.CORRECTING] is None
    assert "correcting" not in reloaded.query_params
    assert not any("Correcting the model" in w.value for w in reloaded.warning)


def test_a_correction_in_the_url_needs_whole_numbers_and_a_name() -> None:
    assert state.from_url(state.CORRECTING, "1:5:img:1") == ("img:1", 1, 5)
    assert state.to_url(state.CORRECTING, ("img:1", 1, 5)) == "1:5:img:1"
    for typo in ("-1:-3:x", "1:-3:x", "+1:3:x", "1.0:3:x", " 1:3:x", "1:3:", "1:3", "", "a:b:c"):
        assert state.from_url(state.CORRECTING, typo) is None, typo


def _correcting_on_label_page(data_dir) -> tuple[AppTest, str, str]:
    """The sample project with a second image, on the Label page, correcting crop 2 of the
    first image: (app, project id, first image name)."""
    from streamlit_app import services
    from streamlit_app.navigation import GOTO

    app = AppTest.from_file(str(APP), default_timeout=60).run()
    app.button(key="try_sample").click().run()
    project_id = app.session_state[state.PROJECT_ID]
    store = services.project_store()
    name = store.get(project_id).images[0].name
    png = store.preview_png(project_id, name)
    store.add_image(project_id, "second.png", png)
    app.session_state[state.CORRECTING] = (name, 1, 5)
    app.session_state[state.IMAGE_NAME] = name
    app.session_state[state.CROP_INDEX] = 1
    app.session_state[GOTO] = "label"
    app.run()
    assert not app.exception
    assert app.query_params["correcting"] == f"1:5:{name}"
    assert any("Correcting the model" in w.value for w in app.warning)
    return app, project_id, name


def test_choosing_another_crop_or_image_ends_the_correction(data_dir) -> None:
    """Once the user moves on, a reload must not force the corrected image, crop and tab
    back: the correction leaves the session and the URL."""
    app, _, name = _correcting_on_label_page(data_dir)
    app.radio(key=state.CROP_INDEX).set_value(1).run()  # the same crop: still correcting
    assert app.query_params["correcting"] == f"1:5:{name}"
    app.radio(key=state.CROP_INDEX).set_value(0).run()
    assert not app.exception
    assert app.session_state[state.CORRECTING] is None
    assert "correcting" not in app.query_params
    assert not any("Correcting the model" in w.value for w in app.warning)

    app, _, name = _correcting_on_label_page(data_dir)
    other = next(o for o in app.selectbox(key="image_picker").options if o != name)
    app.selectbox(key="image_picker").set_value(other).run()
    assert not app.exception
    assert app.session_state[state.CORRECTING] is None
    assert "correcting" not in app.query_params
    # Coming back to the image does not bring the finished correction back either.
    app.selectbox(key="image_picker").set_value(name).run()
    assert app.session_state[state.CORRECTING] is None


def test_a_correction_naming_a_crop_the_image_lacks_is_dropped(data_dir) -> None:
    from streamlit_app import services
    from streamlit_app.navigation import GOTO

    first = AppTest.from_file(str(APP), default_timeout=60).run()
    first.button(key="try_sample").click().run()
    project_id = first.session_state[state.PROJECT_ID]
    name = services.project_store().get(project_id).images[0].name
    reloaded = AppTest.from_file(str(APP), default_timeout=60)
    reloaded.query_params.update({"project": project_id, "correcting": f"40:5:{name}"})
    reloaded.run()
    reloaded.session_state[GOTO] = "label"
    reloaded.run()
    assert not reloaded.exception
    assert reloaded.session_state[state.CORRECTING] is None
    assert "correcting" not in reloaded.query_params
    assert not any("Correcting the model" in w.value for w in reloaded.warning)


def _sample_on_label_page(app: AppTest) -> tuple[str, str]:
    """The sample project open on the Label page: (project id, its image's name)."""
    from streamlit_app import services

    app.button(key="try_sample").click().run()
    assert not app.exception and app.title[0].value.startswith("Label")
    project_id = app.session_state[state.PROJECT_ID]
    return project_id, services.project_store().get(project_id).images[0].name


def test_an_added_image_keeps_its_name_in_downloaded_labels_and_is_added_once(
    app: AppTest, downloads: dict[str, bytes]
) -> None:
    """``Pd on C (2).TIF`` is stored as Pd_on_C_2.tif, but its labels download as
    ``Pd on C (2).json`` pointing to ``Pd on C (2).TIF``, the file the user has."""
    import json

    from streamlit_app import services

    project_id, name = _sample_on_label_page(app)
    store = services.project_store()
    uploader = app.file_uploader(key="more_images_0")
    assert ".ser" in uploader.proto.type and ".bmp" not in uploader.proto.type
    png = store.preview_png(project_id, name)
    uploader.set_value(("Pd on C (2).TIF", png, "image/tiff")).run()
    app.button(key="add_images").click().run()
    assert not app.exception and not app.error
    assert len(store.get(project_id).images) == 2
    # The uploader is a new, empty one: no "Add" to click a second time.
    assert app.file_uploader(key="more_images_1").value == []
    assert not [b for b in app.button if b.key == "add_images"]

    app.selectbox(key="image_picker").set_value("Pd_on_C_2").run()
    assert not app.exception
    downloaded = json.loads(downloads["Pd on C (2).json"])
    assert downloaded["imagePath"] == "Pd on C (2).TIF"
    assert downloaded["imageData"]  # opens in labelme wherever it is saved


def test_an_image_is_deleted_after_a_second_click(app: AppTest) -> None:
    from streamlit_app import services

    project_id, name = _sample_on_label_page(app)
    store = services.project_store()
    store.add_image(project_id, "second.png", store.preview_png(project_id, name))
    app.run()
    app.button(key="delete_image").click().run()
    assert len(store.get(project_id).images) == 2  # only asked
    assert any("cannot be undone" in w.value for w in app.warning)
    app.button(key="keep_image").click().run()
    assert len(store.get(project_id).images) == 2
    app.button(key="delete_image").click().run()
    app.button(key="confirm_delete_image").click().run()
    assert not app.exception
    assert [r.name for r in store.get(project_id).images] == ["second"]
    assert app.success[0].value == "sample_particles.tif deleted."
    assert app.title[0].value.startswith("Label")


def test_unreadable_labels_offer_the_image_deletion_they_advise(app: AppTest) -> None:
    from streamlit_app import services

    project_id, name = _sample_on_label_page(app)
    store = services.project_store()
    store.store.write_bytes(store.labels_key(project_id, name), b'{"shapes": 3}')
    app.run()
    assert not app.exception
    assert "or delete the image" in app.error[0].value
    app.button(key="delete_image").click().run()
    app.button(key="confirm_delete_image").click().run()
    assert not app.exception
    assert store.get(project_id).images == ()
    assert app.file_uploader(key="more_images_0")  # an empty project asks for images


def test_labels_of_a_microscope_file_download_with_the_picture_inside(
    app: AppTest, downloads: dict[str, bytes], tmp_path
) -> None:
    """labelme cannot read a dm4: the downloaded labels carry the image's 8-bit view (as
    every download does), at the image's own size."""
    import base64
    import io
    import json

    import numpy as np
    from PIL import Image

    from streamlit_app import services
    from tests.pipelines.conftest_imaging import write_dm

    project_id, _ = _sample_on_label_page(app)
    pixels = np.arange(60 * 80, dtype=np.float32).reshape(60, 80)
    scan = write_dm(tmp_path / "scan.dm4", pixels, version=4, scale=0.2, units="nm")
    services.project_store().add_image(project_id, "scan.dm4", scan.read_bytes())
    app.run()
    app.selectbox(key="image_picker").set_value("scan").run()
    assert not app.exception
    downloaded = json.loads(downloads["scan.json"])
    assert downloaded["imagePath"] == "scan.dm4"
    shown = Image.open(io.BytesIO(base64.b64decode(downloaded["imageData"])))
    assert shown.size == (80, 60)


def test_adding_images_is_all_or_none_when_one_is_refused(app: AppTest) -> None:
    """A damaged file among good ones: nothing is stored, so a second "Add" cannot store the
    good ones twice."""
    from streamlit_app import services

    project_id, name = _sample_on_label_page(app)
    store = services.project_store()
    png = store.preview_png(project_id, name)
    uploader = app.file_uploader(key="more_images_0")
    uploader.set_value([("good.png", png, "image/png"), ("bad.png", b"not an image", "image/png")])
    uploader.run()
    app.button(key="add_images").click().run()
    assert not app.exception
    assert any("no image was added" in e.value for e in app.error)
    assert [r.name for r in store.get(project_id).images] == [name]  # good.png not kept


def _overview_drawing(app: AppTest, project_id: str, name: str, crops: list) -> None:
    """Inject the overview canvas's value as the browser returns it after a drawing."""
    from streamlit_app import services
    from streamlit_app.components.canvas_geometry import Region, contain_fit, shapes_to_fabric
    from streamlit_app.views.label import OVERVIEW_MAX_PX

    store = services.project_store()
    project = store.get(project_id)
    record = project.image(name)
    _, width, height = services.png_fit(store.preview_png(project_id, name), OVERVIEW_MAX_PX)
    region = Region(0, 0, record.width_px, record.height_px, width, height)
    fit = contain_fit(width, height, width, height)
    drawing = shapes_to_fabric(crops, fit, region, project.colour_of)
    key = f"overview_{project_id}_{name}_{app.session_state[state.OVERVIEW_REVISION]}"
    app.session_state[key] = {"drawing": {"raw": drawing, "data": None}, "backgroundFit": None}


def _centres(document) -> list:
    return sorted(np.round(s.points.mean(axis=0), 1).tolist() for s in document.object_shapes)


def test_moving_a_crop_leaves_its_outlines_where_they_are(app: AppTest) -> None:
    """The crop's outline canvas had reported its drawing; read in the crop's new place it
    would have shifted (or collapsed) every outline."""
    import dataclasses

    from streamlit_app import services

    project_id, name = _sample_on_label_page(app)
    store = services.project_store()
    before = store.labels(project_id, name)
    app.radio(key="outline_tool").set_value("Click an object (computer outlines it)").run()
    x0, y0, x1, y1 = before.crop_shapes[0].bounds()
    _canvas_click(app, project_id, name, (x0 + x1) / 2, (y0 + y1) / 2)
    app.run()
    crops = list(before.crop_shapes)
    crops[0] = dataclasses.replace(crops[0], points=crops[0].points + np.array([-20, 20]))
    _overview_drawing(app, project_id, name, crops)
    app.run()
    assert not app.exception
    after = store.labels(project_id, name)
    assert after.crop_shapes[0].bounds() == (x0 - 20, y0 + 20, x1 - 20, y1 + 20)
    assert _centres(after) == _centres(before)
    assert not app.warning  # a fresh canvas for the crop's new place, not a stale one


def test_a_drawing_made_on_an_out_of_date_page_does_not_delete_another_tabs_crop(
    app: AppTest,
) -> None:
    import dataclasses

    from pipelines.formats.labelme import rectangle
    from streamlit_app import services

    project_id, name = _sample_on_label_page(app)
    store = services.project_store()
    document = store.labels(project_id, name)
    theirs = rectangle("crop", 10, 300, 60, 350)
    store.save_labels(
        project_id, name, dataclasses.replace(document, shapes=[*document.shapes, theirs])
    )  # another tab saved a crop; this page still shows the old drawing
    mine = rectangle("crop", 300, 300, 350, 350)
    _overview_drawing(app, project_id, name, [*document.crop_shapes, mine])
    app.run()
    assert not app.exception
    saved = store.labels(project_id, name).crop_shapes
    assert [c.bounds() for c in saved] == [
        *(c.bounds() for c in document.crop_shapes),
        theirs.bounds(),
    ]
    assert any("changed in another tab" in w.value for w in app.warning)


def test_an_outline_centred_in_the_margin_around_a_crop_is_refused_in_plain_words(
    app: AppTest,
) -> None:
    """The zoomed view shows a margin around the crop; an outline centred there belongs to no
    crop. It used to be saved and then taken for another tab's change (or loop)."""
    import dataclasses

    from pipelines.formats.labelme import Shape
    from streamlit_app import services
    from streamlit_app.components.canvas_geometry import contain_fit, shapes_to_fabric
    from streamlit_app.views.label import ZOOM_PX, _crop_box, crop_canvas_key

    project_id, name = _sample_on_label_page(app)
    store = services.project_store()
    document = store.labels(project_id, name)
    project = store.get(project_id)
    record = project.image(name)
    region, bounds = _crop_box(document, 0, record.width_px, record.height_px)
    factor = ZOOM_PX / max(region.width_px, region.height_px)
    width, height = round(region.width_px * factor), round(region.height_px * factor)
    region = dataclasses.replace(region, picture_width_px=width, picture_height_px=height)
    x0, y0, x1, y1 = bounds
    inside = [
        s
        for s in document.object_shapes
        if x0 <= s.points[:, 0].mean() <= x1 and y0 <= s.points[:, 1].mean() <= y1
    ]
    # a small square centred in the margin, left of the crop's frame
    cx, cy = max(region.left_px + 3.0, x0 - 4.0), (y0 + y1) / 2
    stray = Shape(
        "particle", [[cx - 2, cy - 2], [cx + 2, cy - 2], [cx + 2, cy + 2], [cx - 2, cy + 2]]
    )
    assert not x0 <= cx <= x1  # really outside the frame, inside the view
    drawing = shapes_to_fabric(
        [*inside, stray], contain_fit(width, height, width, height), region, project.colour_of
    )
    revision = app.session_state[state.CANVAS_REVISION]
    key = crop_canvas_key(project_id, name, 0, bounds, revision) + "_hand"
    app.session_state[key] = {"drawing": {"raw": drawing, "data": None}, "backgroundFit": None}
    app.run()
    assert not app.exception
    assert len(store.labels(project_id, name).object_shapes) == len(document.object_shapes)
    warnings = [w.value for w in app.warning]
    assert any("whose centre lies outside crop 1's red frame was not kept" in w for w in warnings)
    assert not any("another tab" in w for w in warnings)
