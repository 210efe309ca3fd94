"""Results page: what the trained model found, with statistics and downloads."""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Callable, Sequence

import streamlit as st

from pipelines.errors import NoCodeMLError
from pipelines.formats.labelme import METADATA_KEY
from streamlit_app import navigation, services, state
from streamlit_app.views.stats_common import show_statistics
from streamlit_app.views.train import job_monitor, offer_prediction


def render() -> None:
    project = services.current_project(state.get(state.PROJECT_ID))
    if project is None:
        st.info("Open a project on the Start page first.")
        return
    st.title(f"Results — {project.name}")
    state.show_flash()
    predictions = [j for j in project.jobs if j.action == "predict"]
    if not predictions:
        _first_prediction(project)
        return
    chosen = state.get(state.RESULT_JOB_ID)
    ids = [j.job_id for j in predictions]
    if chosen not in ids:
        chosen = ids[-1]
    if len(ids) > 1:
        names = run_names(predictions)
        chosen = st.selectbox("Run", list(reversed(ids)), key="result_run", format_func=names.get)
    state.put(state.RESULT_JOB_ID, chosen)
    status = services.job_status_or_none(chosen)
    if status is None:
        st.warning("This run was deleted. Choose another run, or find the objects again (Train).")
        return
    if not status.is_terminal:
        st.caption("The model is looking at your images; the results appear here when it is done.")
        job_monitor(chosen, reload_when_done=True)
        return
    if status.state != "succeeded":
        job_monitor(chosen)
        st.error("This run did not finish. Start it again from the Train page.")
        return
    link = next(j for j in predictions if j.job_id == chosen)
    if project.task == "classify":
        _classification(chosen, status)
        return
    names = [n for n in link.images if any(r.name == n for r in project.images)]
    if not names:
        st.info("The images of this run were deleted from the project; choose another run.")
        return
    name = st.selectbox("Image", names, key="result_image") if len(names) > 1 else names[0]
    record = project.image(name)
    key = next((k for k in status.results if k.endswith(f"/{name}.json")), None)
    if key is None:
        st.error(f"The run has no result for {name}; run the model again.")
        return
    document_raw = json.loads(services.job_client().read_result(chosen, key))
    # The user's own file name: the downloaded file opens in labelme beside their image.
    labelme_json, labelme_name = services.labelme_for_user(record, document_raw)
    _overlay(project, name, document_raw)
    st.subheader("Sizes and statistics")
    show_statistics(
        labelme_json,
        record.nm_per_px,
        f"results_{name}",
        record.user_stem,
        calibrate_where="on the Label page (section “Pixel size”)",
    )
    model_job_id = services.model_of_prediction(chosen)
    labelme_file = functools.partial(
        services.labelme_file, project.project_id, record, labelme_json
    )
    _downloads(name, record.user_stem, model_job_id, labelme_json, labelme_name, labelme_file)
    _correct(project, name, document_raw)
    _more_images(project, model_job_id)


def _first_prediction(project) -> None:
    """No run yet: offer to let the latest trained model find the objects."""
    statuses = {j.job_id: services.job_status_or_none(j.job_id) for j in project.train_jobs}
    trained = [i for i, status in statuses.items() if status and status.state == "succeeded"]
    if not trained:
        if None in statuses.values():
            st.warning("The model of this project was deleted. Train a new one on the Train page.")
        else:
            st.info("Train a model first; results appear here when it has finished.")
        if st.button("Go to Train"):
            navigation.go("train")
        return
    classify = project.task == "classify"
    st.info(
        "The model is trained. Let it "
        + ("sort your images into classes." if classify else "find the objects in your images.")
    )
    if offer_prediction(project.project_id, trained[-1], classify, "find_objects_results"):
        st.rerun()


def _overlay(project, name: str, document_raw: dict) -> None:
    from PIL import Image

    from pipelines.formats.labelme import parse_labelme
    from streamlit_app.components.overlay import draw_shapes, png_bytes

    document = parse_labelme(document_raw, f"{name}.json", validate=False)
    classes = document.class_names()
    shown = st.pills(
        "Show object types",
        classes,
        selection_mode="multi",
        default=classes,
        key=f"show_{name}",
    )
    preview = services.project_store().preview_png(project.project_id, name)
    picture = Image.open(io.BytesIO(preview))
    shapes = [s for s in document.object_shapes if s.label in (shown or [])]
    overlay = draw_shapes(picture, shapes, project.colour_of, 1.0, 1)
    st.session_state[f"overlay_png_{name}"] = png_bytes(overlay)
    caption = f"{len(shapes)} objects found in {name}"
    ignored = (document_raw.get(METADATA_KEY) or {}).get("ignored_on_scale_bar") or 0
    if ignored:
        caption += f" · {ignored} objects on the scale bar or its text were ignored"
    st.image(png_bytes(overlay), caption=caption, width=720)


def _downloads(
    name: str,
    stem: str,
    train_job: str | None,
    labelme_json: str,
    labelme_name: str,
    labelme_file: Callable[[], bytes],
) -> None:
    """Download buttons; files are named after the image as the user uploaded it (``stem``)."""
    from pipelines.formats.coco import to_coco
    from pipelines.formats.labelme import parse_labelme

    st.subheader("Download the objects and the model")
    cols = st.columns(4)
    cols[0].download_button(
        "LabelMe JSON",
        labelme_file,
        labelme_name,
        "application/json",
        key="download_labelme",
        help="Open it in labelme to check or correct the objects (the picture is inside the "
        "file), then bring it back on the Label page or to the Statistics page.",
    )
    cols[1].download_button(
        "Overlay PNG",
        st.session_state.get(f"overlay_png_{name}", b""),
        f"{stem}_overlay.png",
        "image/png",
        key="download_overlay",
    )
    document = parse_labelme(json.loads(labelme_json), f"{name}.json", validate=False)
    cols[2].download_button(
        "COCO JSON",
        json.dumps(to_coco([document])),
        f"{stem}_coco.json",
        "application/json",
        key="download_coco",
    )
    if train_job and services.job_status_or_none(train_job) is not None:
        cols[3].download_button(
            "Model (zip)",
            functools.partial(services.model_zip, train_job),  # zipped on click
            f"model_{train_job}.zip",
            "application/zip",
            key="download_model",
        )


def _more_images(project, model_job_id: str | None) -> None:
    """New images for the model of the run shown (``model_job_id``: its training job)."""
    with st.expander("Apply this model to more images"):
        if model_job_id is None:
            st.info("This run used a model from outside the app; train one here to use it.")
            return
        files = st.file_uploader(
            f"Images ({services.IMAGE_TYPES_TEXT})",
            accept_multiple_files=True,
            # A new key after a run starts empties the uploader: no image is added twice.
            key=f"apply_images_{state.get(state.UPLOAD_REVISION)}",
            type=services.IMAGE_TYPES,
        )
        if files and st.button("Find objects in these images", key="apply_model"):
            try:
                with st.spinner("Adding the images and sending them to the model…"):
                    job_id = services.predict_new_images(
                        project.project_id,
                        model_job_id,
                        [(upload.name, upload.getvalue()) for upload in files],
                    )
            except NoCodeMLError as error:
                st.error(str(error))
                return
            state.bump(state.UPLOAD_REVISION)
            state.put(state.RESULT_JOB_ID, job_id)
            st.rerun()


def _correct(project, name: str, document_raw: dict) -> None:
    """Human in the loop: the model's objects become labels the user fixes, then retrains."""
    record = project.image(name)
    with st.container(border=True, key="correct_box"):
        st.subheader("Objects missed or wrong? Correct them and train again")
        st.caption(
            "The model's objects in the area you choose become your labels, inside a new crop. "
            "On the Label page you then delete the wrong ones and outline the missed ones; "
            "training again learns from your corrections. A region of a few dozen objects is "
            "quicker to check than the whole image."
        )
        where = st.radio(
            "Area to correct",
            ["A region", "The whole image"],
            horizontal=True,
            key=f"correct_where_{name}",
        )
        box = None
        if where == "A region":
            box = _region_picker(record)
        if st.button(
            "Correct these objects →",
            type="primary",
            key="correct_objects",
            disabled=where == "A region" and box is None,
        ):
            try:
                added, crop_index = services.adopt_predictions(
                    project.project_id, name, document_raw, box
                )
            except NoCodeMLError as error:
                st.error(str(error))
                return
            state.put(state.IMAGE_NAME, name)
            st.session_state[state.CROP_INDEX] = crop_index
            st.session_state[state.LABEL_TAB] = state.OUTLINE_TAB
            state.put(state.CORRECTING, (name, crop_index, added))
            navigation.go("label")


REGION_VIEW_PX = 560
REGION_COLOUR = "#00e5ff"


def _region_picker(record) -> tuple[int, int, int, int] | None:
    """A rectangle the user drags on the result picture; ``(x0, y0, x1, y1)`` in image pixels
    (the pixels ``x0 <= x < x1`` are inside), or ``None`` before one is drawn.

    Only one rectangle is kept: drawing a new one replaces the old (the canvas is redrawn).
    """
    from streamlit_drawable_canvas import st_canvas

    from pipelines.formats.labelme import rectangle
    from streamlit_app.components.canvas_geometry import (
        CanvasFit,
        Region,
        contain_fit,
        fabric_to_shapes,
        same_shapes,
        shapes_to_fabric,
    )

    overlay = st.session_state.get(f"overlay_png_{record.name}")
    if not overlay:
        return None
    picture, pic_w, pic_h = services.png_fit(overlay, REGION_VIEW_PX)
    region = Region(0, 0, record.width_px, record.height_px, pic_w, pic_h)
    fit = contain_fit(pic_w, pic_h, pic_w, pic_h)
    saved_key = f"correct_region_{record.name}"
    revision_key = f"correct_region_revision_{record.name}"
    saved = st.session_state.get(saved_key)
    kept = [rectangle("region", *saved)] if saved else []
    st.caption(
        "Drag a rectangle on the picture around the objects to check (a new rectangle "
        "replaces the old one)."
    )
    result = st_canvas(
        fill_color="rgba(0, 229, 255, 0.08)",
        stroke_width=2,
        stroke_color=REGION_COLOUR,
        background_image=picture,
        background_image_fit="contain",
        width=pic_w,
        height=pic_h,
        drawing_mode="rect",
        initial_drawing=shapes_to_fabric(kept, fit, region, lambda _label: REGION_COLOUR),
        key=f"correct_canvas_{record.name}_{st.session_state.get(revision_key, 0)}",
    )
    objects = (result.json_data or {}).get("objects", [])
    canvas_fit = CanvasFit.from_component(result.background_fit) if result.background_fit else fit
    drawn = fabric_to_shapes(objects, canvas_fit, region, lambda _c: None, "region")
    if len(drawn) > 1:  # keep the newest rectangle only
        st.session_state[saved_key] = tuple(float(v) for v in drawn[-1].bounds())
        st.session_state[revision_key] = st.session_state.get(revision_key, 0) + 1
        st.rerun()
    if not same_shapes(drawn, kept, tolerance_px=0.05):
        saved = tuple(float(v) for v in drawn[0].bounds()) if drawn else None
        st.session_state[saved_key] = saved
    if not saved:
        st.info("Drag a rectangle on the picture first, or choose **The whole image**.")
        return None
    box = region_pixels(saved)
    st.caption(
        f"Region: x {box[0]}–{box[2]} px, y {box[1]}–{box[3]} px "
        f"({box[2] - box[0]} × {box[3] - box[1]} px)."
    )
    return box


def run_names(predictions: list) -> dict[str, str]:
    """Plain names of a project's prediction runs (oldest is run 1): number, time, images."""
    return {
        link.job_id: f"Run {number} · {link.created[:16].replace('T', ' ')} UTC"
        + (f" · {len(link.images)} image(s)" if link.images else " · all images")
        for number, link in enumerate(predictions, start=1)
    }


def region_pixels(bounds: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """LabelMe rectangle bounds (pixel centres at integers, edges at ±0.5) → the pixel box
    ``(x0, y0, x1, y1)`` it covers, ``x0 <= x < x1``."""
    x0, y0, x1, y1 = (round(v + 0.5) for v in bounds)
    return x0, y0, x1, y1


def _classification(job_id: str, status) -> None:
    import pandas as pd
    import plotly.express as px

    client = services.job_client()
    csv_key = next((k for k in status.results if k.endswith("predictions.csv")), None)
    if csv_key is None:
        st.error("This run has no predictions table; run it again.")
        return
    # The job names files by where it read them (a temporary folder of the worker): the user
    # knows them by their path in the dataset (class folder included).
    roots = client.spec(job_id).input_roots
    table = pd.read_csv(io.BytesIO(client.read_result(job_id, csv_key)))
    if "file" in table.columns:
        table["file"] = [dataset_path(path, roots) for path in table["file"]]
    st.dataframe(table, hide_index=True)
    st.download_button(
        "Predictions (CSV)",
        table.to_csv(index=False),
        "predictions.csv",
        "text/csv",
        key="cls_csv",
    )
    json_key = next((k for k in status.results if k.endswith("predictions.json")), None)
    if json_key:
        document = json.loads(client.read_result(job_id, json_key))
        for row in document.get("predictions", []):
            if isinstance(row, dict) and "file" in row:
                row["file"] = dataset_path(row["file"], roots)
        st.download_button(
            "Predictions (JSON)",
            json.dumps(document, indent=2),
            "predictions.json",
            "application/json",
            key="cls_json",
        )
    # images given no class yet are in the table, not in the score
    scored = table.dropna(subset=["true_class"]) if "true_class" in table.columns else table[:0]
    if {"class", "true_class"} <= set(table.columns) and len(scored):
        right = int((scored["class"] == scored["true_class"]).sum())
        st.markdown(
            f"**{right} of {len(scored)}** images sorted into the class you gave them "
            f"({right / len(scored):.0%}). These include the images the model learnt from, so "
            "new images will score lower."
        )
        classes = sorted({str(c) for c in scored["true_class"]} | {str(c) for c in scored["class"]})
        matrix = pd.crosstab(scored["true_class"], scored["class"]).reindex(
            index=classes, columns=classes, fill_value=0
        )  # every class in both directions, also one never predicted
        st.plotly_chart(
            px.imshow(
                matrix,
                text_auto=True,
                labels={"x": "predicted", "y": "true"},
                title="Confusion matrix",
            ),
            key="confusion",
        )
    heatmaps = [k for k in status.results if "/heatmaps/" in k][:12]
    if heatmaps:
        st.subheader("Where the network looked (activation maps)")
        cols = st.columns(4)
        for index, key in enumerate(heatmaps):
            cols[index % 4].image(client.read_result(job_id, key), caption=key.rsplit("/", 1)[-1])


def dataset_path(path: object, input_roots: Sequence[str]) -> str:
    """The path of a file a job read, relative to the input it was given: the worker's scratch
    folder (``/tmp/nocode-job-…/job/inputs/images/``) goes, class folders stay, so
    ``a/img1.png`` and ``b/img1.png`` remain two files. Works on paths written on any OS.

    ``input_roots`` are the job's input roots (``JobSpec.input_roots``, e.g. ``inputs/images``);
    a path under none of them keeps what follows the job's ``inputs/`` folder, or is returned
    as it is when it is not a job path at all.
    """
    text = str(path).replace("\\", "/")
    for root in sorted((r.strip("/") for r in input_roots), key=len, reverse=True):
        marker = f"/{root}/"
        if marker in text:
            return text.split(marker, 1)[1]
        if text.endswith(f"/{root}"):  # a single file given as an input of its own
            return root.rsplit("/", 1)[-1]
    match = _JOB_INPUTS.search(text)
    return text[match.end() :] if match else text


_JOB_INPUTS = re.compile(r"nocode-job-[^/]*/(?:[^/]+/)*?inputs/")
