"""Results page: the correction region in image pixels, classified files by their path, and
(under AppTest, with jobs finished by ``finished_jobs``) downloads, more images for the model
of the run shown, and deleted models."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from pipelines.formats.labelme import rectangle
from pipelines.imaging import SUPPORTED_EXTENSIONS
from streamlit_app import services, state
from streamlit_app.components.canvas_geometry import (
    Region,
    contain_fit,
    fabric_to_shapes,
    shapes_to_fabric,
)
from streamlit_app.navigation import GOTO
from streamlit_app.views.results import dataset_path, region_pixels
from tests.streamlit_app.finished_jobs import finish_prediction, succeed, trained_sample


def test_a_rectangle_drawn_on_a_shrunk_picture_gives_the_pixel_box_it_covers() -> None:
    # A 2048-px image shown as a 512-px picture: a drawn rectangle comes back in image pixels.
    region = Region(0, 0, 2048, 2048, 512, 512)
    fit = contain_fit(512, 512, 512, 512)
    wanted = (400, 120, 912, 632)  # pixels 400 <= x < 912, 120 <= y < 632
    drawn = rectangle("region", *(v - 0.5 for v in wanted))
    fabric = shapes_to_fabric([drawn], fit, region, lambda _label: "#00e5ff")
    (back,) = fabric_to_shapes(fabric["objects"], fit, region, lambda _c: None, "region")
    assert region_pixels(back.bounds()) == wanted


def test_the_pixel_box_of_labelme_bounds_rounds_to_whole_pixels() -> None:
    assert region_pixels((-0.5, 9.5, 127.5, 40.5)) == (0, 10, 128, 41)
    assert region_pixels((10.2, 10.8, 20.4, 20.6)) == (11, 11, 21, 21)


def test_classification_files_keep_their_path_in_the_dataset() -> None:
    """Two images with one name in two class folders stay two rows; the worker's scratch folder
    (any OS) is stripped, class folders are kept."""
    roots = ("inputs/images",)
    scratch = "/tmp/nocode-job-20261125-ab12-x7q/job/inputs/images"
    assert dataset_path(f"{scratch}/fresh/img1.png", roots) == "fresh/img1.png"
    assert dataset_path(f"{scratch}/sintered/img1.png", roots) == "sintered/img1.png"
    windows = r"C:\Users\me\AppData\Local\Temp\nocode-job-7-q\job\inputs\images\a\b\img1.tif"
    assert dataset_path(windows, roots) == "a/b/img1.tif"
    # A LabelMe file given on its own (its root is the file), a job path under no known root,
    # and a path that is not a job's stay readable.
    assert dataset_path(f"{scratch}/x.json", ("inputs/images/x.json",)) == "x.json"
    assert dataset_path("/tmp/nocode-job-1-a/job/inputs/set/a/img1.png", ()) == "set/a/img1.png"
    assert dataset_path("fresh/img1.png", roots) == "fresh/img1.png"


def _results_of_first_model(app: AppTest) -> tuple[str, str, str]:
    """The sample with an extra image ``Pd on C (2).TIF``, two trained models and the run of
    the first one on every image, open on the Results page: (project id, first, second)."""
    app.button(key="try_sample").click().run()
    project_id = app.session_state[state.PROJECT_ID]
    store = services.project_store()
    name = store.get(project_id).images[0].name
    store.add_image(project_id, "Pd on C (2).TIF", store.preview_png(project_id, name))
    _, first = trained_sample(app)
    run = services.submit_prediction(project_id, first)
    finish_prediction(project_id, run)
    _, second = trained_sample(app)
    app.session_state[GOTO] = "results"
    app.run()
    assert not app.exception and not app.error
    assert app.title[0].value.startswith("Results")
    return project_id, first, second


def test_downloads_are_named_after_the_file_the_user_uploaded(
    queued_jobs, app: AppTest, downloads: dict[str, bytes]
) -> None:
    _results_of_first_model(app)
    app.selectbox(key="result_image").set_value("Pd_on_C_2").run()
    assert not app.exception and not app.error
    labelme = json.loads(downloads["Pd on C (2).json"])
    assert labelme["imagePath"] == "Pd on C (2).TIF" and labelme["imageData"]
    coco = json.loads(downloads["Pd on C (2)_coco.json"])
    assert [image["file_name"] for image in coco["images"]] == ["Pd on C (2).TIF"]
    assert "Pd on C (2)_overlay.png" in downloads
    assert any(b.proto.label == "Model (zip)" for b in app.get("download_button"))


def test_more_images_go_to_the_model_of_the_run_shown(queued_jobs, app: AppTest) -> None:
    """Not the latest training: the run shown was made by the first model."""
    project_id, first, second = _results_of_first_model(app)
    store = services.project_store()
    png = store.preview_png(project_id, store.get(project_id).images[0].name)
    uploader = app.file_uploader(key="apply_images_0")
    assert list(uploader.proto.type) == list(SUPPORTED_EXTENSIONS)
    uploader.set_value(("new.png", png, "image/png")).run()
    app.button(key="apply_model").click().run()
    assert not app.exception and not app.error
    project = store.get(project_id)
    assert [r.name for r in project.images][-1] == "new"
    latest = project.jobs[-1]
    assert (latest.action, latest.images) == ("predict", ("new",))
    assert services.job_client().spec(latest.job_id).model_job_id == first != second
    assert app.session_state[state.RESULT_JOB_ID] == latest.job_id
    assert app.session_state[state.UPLOAD_REVISION] == 1  # the uploader starts empty again


def test_a_deleted_model_is_refused_before_any_image_is_added(queued_jobs, app: AppTest) -> None:
    project_id, first, _ = _results_of_first_model(app)
    services.delete_model(first)
    store = services.project_store()
    images = store.get(project_id).images
    app.run()
    assert not app.exception
    assert not [b for b in app.get("download_button") if b.proto.label == "Model (zip)"]
    png = store.preview_png(project_id, images[0].name)
    app.file_uploader(key="apply_images_0").set_value(("new.png", png, "image/png")).run()
    app.button(key="apply_model").click().run()
    assert not app.exception
    assert "the model of this run was deleted" in app.error[0].value
    assert store.get(project_id).images == images


def test_a_model_that_cannot_predict_gives_a_message_not_a_traceback(
    queued_jobs, app: AppTest
) -> None:
    app.button(key="try_sample").click().run()
    project_id = app.session_state[state.PROJECT_ID]
    job_id = services.submit_training(project_id, "quick")
    succeed(job_id, {})  # finished, but its model files are missing
    app.session_state[GOTO] = "results"
    app.run()
    app.button(key="find_objects_results").click().run()
    assert not app.exception
    assert "has no usable model" in app.error[0].value


def test_a_model_deleted_from_the_command_line_leaves_a_one_line_message(
    queued_jobs, app: AppTest
) -> None:
    app.button(key="try_sample").click().run()
    _, job_id = trained_sample(app)
    services.job_client().delete(job_id)  # the project still links it
    app.session_state[GOTO] = "results"
    app.run()
    assert not app.exception and not app.error
    assert app.title[0].value.startswith("Results")
    assert app.warning[0].value.startswith("The model of this project was deleted.")


def test_runs_are_named_by_number_time_and_images() -> None:
    from gpu_backend.projects import JobLink
    from streamlit_app.views.results import run_names

    first = JobLink("20261127-031000-aaaaaa", "predict", "2026-11-27T03:10:05.000+00:00")
    second = JobLink(
        "20261127-031500-bbbbbb", "predict", "2026-11-27T03:15:07.000+00:00", images=("new",)
    )
    assert run_names([first, second]) == {
        first.job_id: "Run 1 · 2026-11-27 03:10 UTC · all images",
        second.job_id: "Run 2 · 2026-11-27 03:15 UTC · 1 image(s)",
    }
