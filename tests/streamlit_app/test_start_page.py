"""Start page under AppTest: new projects from uploads, refused uploads leaving nothing, and
deleting a project only after a second click."""

from __future__ import annotations

import io
import zipfile

from streamlit.testing.v1 import AppTest

from pipelines.synthetic_classes import write_synthetic_classification
from streamlit_app import services
from streamlit_app.navigation import GOTO


def _class_zip(tmp_path, classes=("rods", "spheres")) -> bytes:
    written = write_synthetic_classification(
        tmp_path / "data", n_per_class=2, seed=0, size_px=48, classes=classes
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for paths in written.files.values():
            for path in paths:
                archive.write(path, f"my_images/{path.relative_to(written.root)}")
        archive.writestr("__MACOSX/._junk.png", b"junk")
    return out.getvalue()


def _create(app: AppTest, name: str, task: str, files: list[tuple[str, bytes, str]]) -> AppTest:
    app.text_input[0].set_value(name)
    app.radio(key="new_task").set_value(
        "Sort whole images into classes (classification)"
        if task == "classify"
        else "Find objects and measure them (detection)"
    )
    app.file_uploader(key="new_images").set_value(files)
    submit = next(b for b in app.button if b.label == "Create project")
    return submit.click().run()


def test_a_zip_of_class_folders_makes_a_classification_project(app: AppTest, tmp_path) -> None:
    data = _class_zip(tmp_path)
    app = _create(app, "Shapes", "classify", [("shapes.zip", data, "application/zip")])
    assert not app.exception and not app.error
    assert app.title[0].value == "Label — Shapes"
    (project,) = services.project_store().list_projects()
    assert [c.name for c in project.classes] == ["rods", "spheres"]
    store = services.project_store()
    classes = sorted(store.image_class(project.project_id, r.name) for r in project.images)
    assert classes == ["rods", "rods", "spheres", "spheres"]
    assert any("Ready to train" in s.value for s in app.success)


def test_refused_uploads_say_what_to_do_and_keep_nothing(app: AppTest, tmp_path) -> None:
    one_class = _class_zip(tmp_path, classes=("rods",))
    app = _create(app, "One class", "classify", [("one.zip", one_class, "application/zip")])
    assert not app.exception
    assert "needs one sub-folder per class" in app.error[0].value
    app = _create(app, "Broken", "detect", [("image.png", b"not a png", "image/png")])
    assert not app.exception
    assert "image.png" in app.error[0].value
    app = _create(app, "Nothing", "detect", [])  # the picker refused the file, or none given
    assert not app.exception
    assert app.error[0].value.startswith("add at least one image (")
    assert services.project_store().list_projects() == []
    # The page still works: the sample opens.
    app.button(key="try_sample").click().run()
    assert not app.exception and app.title[0].value.startswith("Label")


def _png() -> bytes:
    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((32, 32), 128, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_a_classification_project_needs_two_classes(app: AppTest) -> None:
    """The pre-filled 'particle' alone would make a project that can never train."""
    image = [("a.png", _png(), "image/png")]
    app = _create(app, "One class", "classify", image)
    assert not app.exception
    assert "needs at least two classes (you gave: particle)" in app.error[0].value
    assert services.project_store().list_projects() == []
    app.text_input[1].set_value("fresh, sintered")
    app = _create(app, "Two classes", "classify", image)
    assert not app.exception and not app.error
    (project,) = services.project_store().list_projects()
    assert [c.name for c in project.classes] == ["fresh", "sintered"]


def test_the_uploader_offers_the_image_types_the_project_accepts(app: AppTest) -> None:
    from pipelines.imaging import SUPPORTED_EXTENSIONS

    offered = list(app.file_uploader(key="new_images").proto.type)
    assert offered == [*SUPPORTED_EXTENSIONS, ".zip"]  # .ser included, .bmp (refused) not


def test_deleting_a_project_asks_first(app: AppTest) -> None:
    app.button(key="try_sample").click().run()
    (project,) = services.project_store().list_projects()
    app.session_state[GOTO] = "start"
    app.run()
    delete = f"delete_{project.project_id}"
    app.button(key=delete).click().run()
    assert services.project_store().list_projects() == [project]  # only asked
    confirm = app.button(key=f"confirm_delete_{project.project_id}")
    assert confirm.label == f"Yes, delete {project.name} and all its images"
    app.button(key=f"keep_{project.project_id}").click().run()
    assert services.project_store().list_projects() == [project]
    assert not [b for b in app.button if b.key == confirm.key]
    app.button(key=delete).click().run()
    app.button(key=confirm.key).click().run()
    assert not app.exception
    assert services.project_store().list_projects() == []
    assert app.session_state["project_id"] is None  # it was the open project
    assert app.success[0].value == f"Project '{project.name}' deleted."


def test_trying_the_sample_again_opens_the_same_project(app: AppTest) -> None:
    app.button(key="try_sample").click().run()
    (first,) = services.project_store().list_projects()
    app.session_state[GOTO] = "start"
    app.run()
    app.button(key="try_sample").click().run()
    assert not app.exception
    assert services.project_store().list_projects() == [first]
    assert app.session_state["project_id"] == first.project_id


def test_a_message_outlives_the_runs_that_follow_a_change_at_once(
    app: AppTest, monkeypatch
) -> None:
    """The canvas reports in as it mounts, rerunning the page within a second: the message
    "… is ready" must still be there; a few seconds later it is gone."""
    import time as clock

    from streamlit_app import state as app_state

    app.button(key="try_sample").click().run()
    app.run()  # the run a mounting canvas causes
    app.run()
    assert "is ready" in app.success[0].value
    later = clock.monotonic() + app_state.FLASH_SECONDS + 1
    monkeypatch.setattr(app_state.time, "monotonic", lambda: later)
    app.run()
    assert not [m for m in app.success if "is ready" in m.value]
