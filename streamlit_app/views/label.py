"""Label page: crops on the overview, then every object outlined inside each crop.

Every change is saved at once into the project's LabelMe file (no Save button to forget).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Sequence

import numpy as np
import streamlit as st

from gpu_backend.projects import (
    Project,
    add_class,
    count_labels,
    labelling_gaps,
    replace_crops,
    replace_shapes_in_box,
)
from pipelines.errors import NoCodeMLError
from pipelines.formats.labelme import CROP_LABEL, LabelMeDocument, Shape
from streamlit_app import navigation, services, state
from streamlit_app.components.canvas_geometry import (
    CanvasFit,
    Region,
    contain_fit,
    fabric_click_points,
    fabric_to_shapes,
    same_shapes,
    shapes_to_fabric,
)
from streamlit_app.views import deletion

OVERVIEW_MAX_PX = 760
ZOOM_PX = 640
CROP_MARGIN = 0.12
HINT = (
    "**How to label:** ① on the overview, drag rectangles (*crops*) around a few typical areas. "
    "② open each crop and **outline every object inside it** — an object you skip is taught as "
    "background. Objects outside crops are ignored, so crops can be small."
)


def render() -> None:
    project = services.current_project(state.get(state.PROJECT_ID))
    if project is None:
        st.info("Open a project on the Start page first.")
        if st.button("Go to Start"):
            navigation.go("start")
        return
    st.title(f"Label — {project.name}")
    state.show_flash()
    if not project.images:
        _upload_images(project, expanded=True)
        return
    name = _pick_image(project)
    store = services.project_store()
    try:
        document = store.labels(project.project_id, name)
    except NoCodeMLError as error:
        st.error(f"{error} — import a corrected LabelMe file below, or delete the image.")
        _import_export(project, name, None)
        _delete_image(project, name, expanded=True)
        return
    if project.task == "classify":
        _classify_image(project, name, document)
        _class_counts(project)
        _upload_images(project, expanded=False)
        _delete_image(project, name, expanded=False)
        return
    project = _classes(project, document)
    correcting = state.get(state.CORRECTING)
    if correcting and (correcting[0] != name or correcting[1] >= len(document.crop_shapes)):
        # Its image or crop was deleted since, or someone edited the URL.
        state.stop_correcting()
        correcting = None
    if correcting:
        _, crop_index, added = correcting
        found = (
            f"{added} object(s) it found are now labels in **crop {crop_index + 1}** (tab ②). "
            "Delete the wrong ones (list under the picture), outline the missed ones"
            if added
            else f"it found no object in **crop {crop_index + 1}** (tab ②) that was not "
            "outlined already. Check the outlines there, outline the missed objects"
        )
        st.warning(
            f"**Correcting the model:** {found}, then click **Next: train** at the bottom.",
            icon=":material/rule:",
        )
    else:
        st.info(HINT, icon=":material/lightbulb:")
    tab_crops, tab_objects, tab_files = st.tabs(
        ["① Crops (overview)", state.OUTLINE_TAB, "Import / export"],
        default=st.session_state.get(state.LABEL_TAB),  # fixed per session: keeps the tab
    )
    with tab_crops:
        _overview(project, name, document)
    with tab_objects:
        _crop_editor(project, name, store.labels(project.project_id, name))
    with tab_files:
        _import_export(project, name, document)
    _calibration(project, name)
    _upload_images(project, expanded=False)
    _delete_image(project, name, expanded=False)
    labels = store.labels(project.project_id, name)
    counts = count_labels(labels)
    for gap in labelling_gaps(labels):
        st.warning(gap, icon=":material/warning:")
    if counts.objects:
        st.success(
            f"{counts.objects} object(s) outlined in {counts.crops} crop(s). Ready to train."
        )
        if st.button("Next: train →", type="primary", key="to_train"):
            navigation.go("train")


def _pick_image(project: Project) -> str:
    names = [record.name for record in project.images]
    current = state.get(state.IMAGE_NAME)
    if current not in names:
        current = names[0]
    if len(names) > 1:
        current = st.selectbox(
            "Image",
            names,
            index=names.index(current),
            key="image_picker",
            on_change=_moved_on,
            args=("image_picker", 0),
        )
    state.put(state.IMAGE_NAME, current)
    return current


def _moved_on(widget_key: str, part: int) -> None:
    """``on_change`` of the image and crop pickers: choosing another image or crop than the one
    being corrected ends the correction (a reload then stops bringing it back)."""
    correcting = state.get(state.CORRECTING)
    if correcting and st.session_state.get(widget_key) != correcting[part]:
        state.stop_correcting()


def _classes(project: Project, document: LabelMeDocument) -> Project:
    counts = count_labels(document)
    with st.container(border=True):
        st.markdown("**Object types** (colour on the image · objects outlined in this image)")
        chips = " &nbsp; ".join(
            f"<span style='color:{c.colour};font-size:1.3em'>■</span> {c.name}: "
            f"**{counts.objects_by_class.get(c.name, 0)}**"
            for c in project.classes
        )
        st.markdown(
            (chips or "No object types yet: add one (e.g. *particle*).")
            + f" &nbsp; · &nbsp; crops: **{counts.crops}**",
            unsafe_allow_html=True,
        )
        with st.form("add_class", border=False, clear_on_submit=True):
            cols = st.columns([3, 1])
            new = cols[0].text_input(
                "Add an object type",
                placeholder="e.g. single_site",
                label_visibility="collapsed",
            )
            if cols[1].form_submit_button("Add type") and new.strip():
                try:
                    project = services.project_store().update(add_class(project, new))
                except NoCodeMLError as error:
                    st.error(str(error))
    return project


def _overview(project: Project, name: str, document: LabelMeDocument) -> None:
    from PIL import Image

    from streamlit_app.components.overlay import draw_shapes, draw_tags, png_bytes

    st.caption(
        "Drag with the mouse to draw a crop rectangle. To move, resize or remove one, press "
        "the pencil (Edit) in the toolbar, click the crop, then drag it, or press × to remove "
        "it; press the pencil again to draw. Crops are saved as you draw."
    )
    store = services.project_store()
    record = project.image(name)
    preview, pic_w, pic_h = services.png_fit(
        store.preview_png(project.project_id, name), OVERVIEW_MAX_PX
    )
    scale = pic_w / record.width_px
    import io

    background = draw_shapes(
        Image.open(io.BytesIO(preview)), document.object_shapes, project.colour_of, scale, 1
    )
    # each crop's number (as in "Delete a crop") at its top-left corner
    corners = [shape.bounds()[:2] for shape in document.crop_shapes]
    background = draw_tags(
        background, [(x, y, str(i + 1)) for i, (x, y) in enumerate(corners)], scale
    )
    region = Region(0, 0, record.width_px, record.height_px, pic_w, pic_h)
    fit = contain_fit(pic_w, pic_h, pic_w, pic_h)
    drawing = shapes_to_fabric(document.crop_shapes, fit, region, project.colour_of)
    from streamlit_drawable_canvas import st_canvas

    key = f"overview_{project.project_id}_{name}_{state.get(state.OVERVIEW_REVISION)}"
    elsewhere = _changed_elsewhere(key, document.crop_shapes)
    result = st_canvas(
        fill_color="rgba(255, 42, 42, 0.05)",
        stroke_width=2,
        stroke_color=project.colour_of(CROP_LABEL),
        background_image=png_bytes(background),
        background_image_fit="contain",
        width=pic_w,
        height=pic_h,
        drawing_mode="rect",
        initial_drawing=drawing,
        key=key,
    )
    objects = (result.json_data or {}).get("objects", [])
    canvas_fit = CanvasFit.from_component(result.background_fit) if result.background_fit else fit
    crops = fabric_to_shapes(
        objects, canvas_fit, region, lambda _c: None, rectangle_label=CROP_LABEL
    )
    if not same_shapes(crops, document.crop_shapes, tolerance_px=0.05):
        if elsewhere:
            _reload_stale_canvas(state.OVERVIEW_REVISION, "crops")
        store.save_labels(project.project_id, name, replace_crops(document, crops))
        _seen(key, crops)
        st.rerun()
    _seen(key, document.crop_shapes)
    if document.crop_shapes:
        cols = st.columns([2, 1])
        choice = cols[0].selectbox(
            "Delete a crop (its outlines stay)",
            [f"Crop {i + 1}" for i in range(len(document.crop_shapes))],
            key="crop_to_delete",
        )
        if cols[1].button("Delete crop", key="delete_crop"):
            index = int(choice.split()[-1]) - 1
            kept = [s for i, s in enumerate(document.crop_shapes) if i != index]
            store.save_labels(project.project_id, name, replace_crops(document, kept))
            state.bump(state.OVERVIEW_REVISION)
            st.rerun()


def _crop_box(
    document: LabelMeDocument, index: int, width: int, height: int
) -> tuple[Region, tuple]:
    """The zoomed region around crop ``index`` (with a margin) and the crop's own bounds."""
    x0, y0, x1, y1 = document.crop_shapes[index].bounds()
    margin = CROP_MARGIN * max(x1 - x0, y1 - y0)
    left = max(0, int(x0 - margin + 0.5))
    top = max(0, int(y0 - margin + 0.5))
    right = min(width, int(x1 + margin + 1.5))
    bottom = min(height, int(y1 + margin + 1.5))
    return Region(left, top, right - left, bottom - top, right - left, bottom - top), (
        x0,
        y0,
        x1,
        y1,
    )


def _crop_editor(project: Project, name: str, document: LabelMeDocument) -> None:
    from streamlit_drawable_canvas import st_canvas

    crops = document.crop_shapes
    if not crops:
        st.info("Draw at least one crop on the overview first (tab ①).")
        return
    if not project.classes:
        st.warning("Add an object type above (e.g. particle) before outlining.")
        return
    store = services.project_store()
    record = project.image(name)
    if st.session_state.get(state.CROP_INDEX, 0) >= len(crops):
        st.session_state[state.CROP_INDEX] = 0  # the crop was deleted since
    cols = st.columns([1, 2])
    index = cols[0].radio(
        "Crop",
        list(range(len(crops))),
        format_func=lambda i: f"Crop {i + 1}",
        key=state.CROP_INDEX,
        horizontal=True,
        on_change=_moved_on,
        args=(state.CROP_INDEX, 1),
    )
    class_names = [c.name for c in project.classes]
    if st.session_state.get(state.ACTIVE_CLASS) not in class_names:
        st.session_state[state.ACTIVE_CLASS] = class_names[0]
    active = cols[1].radio(
        "Outline as",
        class_names,
        key="active_class",
        horizontal=True,
        help="The colour of an outline tells its type.",
    )
    mode = st.radio(
        "Tool",
        ["Outline by hand", "Click an object (computer outlines it)"],
        horizontal=True,
        key="outline_tool",
        help="By hand: click around the object's edge, then click the first point again to close "
        "the outline. Click mode: click once inside an object and accept the proposed outline.",
    )
    region, bounds = _crop_box(document, index, record.width_px, record.height_px)
    factor = ZOOM_PX / max(region.width_px, region.height_px)
    pic_w, pic_h = round(region.width_px * factor), round(region.height_px * factor)
    region = dataclasses.replace(region, picture_width_px=pic_w, picture_height_px=pic_h)
    fit = contain_fit(pic_w, pic_h, pic_w, pic_h)
    preview = store.preview_png(project.project_id, name)
    picture = services.png_crop(
        preview,
        region.left_px,
        region.top_px,
        region.left_px + region.width_px,
        region.top_px + region.height_px,
        max(pic_w, pic_h),
    )
    import io

    from PIL import Image

    from streamlit_app.components.overlay import draw_shapes, draw_tags, png_bytes

    # The crop border is burnt into the picture so it cannot be edited by mistake.
    crop_shape = dataclasses.replace(crops[index])
    crop_shape.points = crop_shape.points - [region.left_px, region.top_px]
    background = draw_shapes(
        Image.open(io.BytesIO(picture)), [crop_shape], project.colour_of, factor, 2
    )
    inside = [s for s in document.object_shapes if _centre_in(s, bounds)]
    untagged = background  # the proposal picture shows the crop without the list's tag
    chosen = _chosen_outline(len(inside))
    if chosen is not None:  # the outline picked under "Delete an outline", tagged in place
        corner = inside[chosen].points.max(axis=0) - [region.left_px, region.top_px]
        background = draw_tags(background, [(*corner, f"#{chosen + 1}")], factor)
    drawing = shapes_to_fabric(inside, fit, region, project.colour_of)
    st.caption(
        f"Crop {index + 1}: **{len(inside)}** object(s) outlined. The red frame is the crop; "
        "outline every object whose centre is inside it. By hand, click around the edge and "
        "click the first point again to close the outline. Remove one: the pencil (Edit) in "
        "the toolbar, click the outline, × — or use the list below."
    )
    by_hand = mode == "Outline by hand"
    key = crop_canvas_key(project.project_id, name, index, bounds, state.get(state.CANVAS_REVISION))
    elsewhere = _changed_elsewhere(key, inside)
    result = st_canvas(
        fill_color=_fill(project.colour_of(active)),
        stroke_width=2,
        stroke_color=project.colour_of(active),
        background_image=png_bytes(background),
        background_image_fit="contain",
        width=pic_w,
        height=pic_h,
        drawing_mode="polygon" if by_hand else "point",
        point_display_radius=4,
        initial_drawing=drawing,
        key=key + ("_hand" if by_hand else "_click"),
    )
    objects = (result.json_data or {}).get("objects", [])
    canvas_fit = CanvasFit.from_component(result.background_fit) if result.background_fit else fit
    drawn = fabric_to_shapes(objects, canvas_fit, region, project.class_of_colour)
    # The view shows a margin around the crop; an outline centred there belongs to no crop.
    outside = [d for d in drawn if not _centre_in(d, bounds)]
    drawn = [d for d in drawn if _centre_in(d, bounds)]
    changed = not same_shapes(drawn, inside, tolerance_px=0.05)
    if changed or outside:
        if elsewhere:
            _reload_stale_canvas(state.CANVAS_REVISION, "outlines")
        if changed:
            store.save_labels(
                project.project_id, name, replace_shapes_in_box(document, drawn, bounds)
            )
            _seen(key, drawn)
        if outside:
            state.bump(state.CANVAS_REVISION)
            state.flash(
                f"An outline whose centre lies outside crop {index + 1}'s red frame was not "
                "kept: outline the objects whose centre is inside the frame, or enlarge the "
                "crop on the overview (tab ①) first.",
                warning=True,
            )
        st.rerun()
    _seen(key, inside)
    if not by_hand:
        clicks = fabric_click_points(objects, canvas_fit, region)

        def show_proposal(proposal: Shape) -> None:
            """The crop's picture with the proposed outline on it, to judge before accepting."""
            moved = dataclasses.replace(
                proposal, points=proposal.points - [region.left_px, region.top_px]
            )
            shown = draw_shapes(untagged, [moved], project.colour_of, factor, 2, fill_alpha=90)
            st.image(shown, caption="The proposed outline (filled) on this crop", width=pic_w)

        _assist(project, name, document, clicks, active, show_proposal)
    if inside:
        cols = st.columns([2, 1])
        labels = [f"#{i + 1} {s.label}" for i, s in enumerate(inside)]
        choice = cols[0].selectbox(
            "Delete an outline",
            labels,
            key="object_to_delete",
            help="The outline picked here carries its number on the picture above.",
        )
        if cols[1].button("Delete outline", key="delete_object"):
            victim = inside[labels.index(choice)]
            document.shapes = [s for s in document.shapes if s is not victim]
            store.save_labels(project.project_id, name, document)
            state.bump(state.CANVAS_REVISION)
            st.rerun()


def crop_canvas_key(project_id: str, name: str, index: int, bounds: tuple, revision: int) -> str:
    """Widget key of crop ``index``'s outline canvas. It holds the crop's place, so moving or
    resizing the crop on the overview starts a fresh canvas: the old one's drawing, read in
    the new place, would shift every outline."""
    place = "_".join(f"{value:.1f}" for value in bounds)
    return f"crop_{project_id}_{name}_{index}_{place}_{revision}"


def _centre_in(shape: Shape, bounds: tuple) -> bool:
    """Whether ``shape``'s centre lies in ``bounds``: which crop an outline belongs to."""
    x0, y0, x1, y1 = bounds
    cx, cy = shape.points.mean(axis=0)
    return bool(x0 <= cx <= x1 and y0 <= cy <= y1)


def _fingerprint(shapes: Sequence[Shape]) -> str:
    text = json.dumps([(s.label, np.round(s.points, 2).tolist()) for s in shapes])
    return hashlib.sha256(text.encode()).hexdigest()


def _changed_elsewhere(key: str, stored: Sequence[Shape]) -> bool:
    """Whether the saved shapes that canvas ``key`` edits changed since it last saw them:
    another tab or window saved this image meanwhile, so the canvas shows an old drawing."""
    seen = st.session_state.setdefault(f"{key}_seen", _fingerprint(stored))
    return seen != _fingerprint(stored)


def _seen(key: str, shapes: Sequence[Shape]) -> None:
    st.session_state[f"{key}_seen"] = _fingerprint(shapes)


def _reload_stale_canvas(revision: str, what: str) -> None:
    """Saving an out-of-date canvas would delete what the other tab saved: show the saved
    drawing instead, and say so."""
    state.bump(revision)
    state.flash(
        f"The {what} of this image were changed in another tab or window, so this page now "
        "shows the saved ones. If you had just drawn something here, draw it again.",
        warning=True,
    )
    st.rerun()


def _chosen_outline(count: int) -> int | None:
    """Index of the outline picked in the "Delete an outline" list (``#k label``), if any."""
    picked = str(st.session_state.get("object_to_delete") or "")
    number = picked[1:].split(" ", 1)[0] if picked.startswith("#") else ""
    return int(number) - 1 if number.isdigit() and 0 < int(number) <= count else None


def _fill(colour: str) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, 0.15)"


def _assist(project, name, document, clicks, active, show_proposal) -> None:
    """Proposed outline for the last click, shown on the crop; Accept adds it, Discard forgets
    it."""
    if not clicks:
        st.caption("Click inside an object on the picture above.")
        return
    x, y = clicks[-1]
    try:
        polygon = services.propose_outline(project.project_id, name, x, y)
    except NoCodeMLError as error:
        st.warning(f"{error} — outline this object by hand instead.")
        return
    if polygon is None:
        st.warning(
            "No object found where you clicked; click nearer its centre or outline it by hand."
        )
        if st.button("Clear clicks", key="discard_proposal"):
            state.bump(state.CANVAS_REVISION)
            st.rerun()
        return
    proposal = Shape(label=active, points=polygon, shape_type="polygon")
    st.info("Proposed outline: check it on the picture below, then accept or discard it.")
    cols = st.columns(2)
    accept = cols[0].button("Accept outline", type="primary", key="accept_proposal")
    discard = cols[1].button("Discard", key="discard_proposal")
    show_proposal(proposal)
    if accept:
        document.shapes.append(proposal)
        services.project_store().save_labels(project.project_id, name, document)
        state.bump(state.CANVAS_REVISION)
        st.rerun()
    if discard:
        state.bump(state.CANVAS_REVISION)
        st.rerun()


def _classify_image(project: Project, name: str, document: LabelMeDocument) -> None:
    store = services.project_store()
    st.info(
        "Choose the class of each image. Train needs at least two images per class.",
        icon=":material/lightbulb:",
    )
    st.image(store.preview_png(project.project_id, name), width=480)
    classes = [c.name for c in project.classes]
    if len(classes) < 2:  # projects made before two classes were required
        st.warning(
            "Sorting needs at least two classes and this project has "
            f"{len(classes)}. Start a new project with two or more (e.g. fresh, sintered)."
        )
        if not classes:
            return
    chosen = next((k for k, v in document.flags.items() if v is True and k in classes), None)
    pick = st.radio(
        "Class of this image",
        classes,
        index=classes.index(chosen) if chosen else None,
        key=f"class_{name}",
        horizontal=True,
    )
    if pick and pick != chosen:
        document.flags = {c: c == pick for c in classes}
        store.save_labels(project.project_id, name, document)
        st.rerun()


def _class_counts(project: Project) -> None:
    store = services.project_store()
    chosen = [store.image_class(project.project_id, r.name) for r in project.images]
    per_class = {c.name: chosen.count(c.name) for c in project.classes}
    missing = chosen.count(None)
    st.markdown(
        "Images per class: "
        + " · ".join(f"**{name}**: {count}" for name, count in per_class.items())
        + (f" · without a class: **{missing}**" if missing else "")
    )
    ready = len(per_class) >= 2 and min(per_class.values()) >= 2
    if ready:
        st.success("Every class has at least two images. Ready to train.")
        if st.button("Next: train →", type="primary", key="to_train"):
            navigation.go("train")
    else:
        st.info("Give at least two images to each class (at least two classes), then train.")


def _import_export(project: Project, name: str, document: LabelMeDocument | None) -> None:
    store = services.project_store()
    if document is not None:
        record = project.image(name)
        text, file_name = services.labelme_for_user(record, document.to_dict())
        st.download_button(
            "Download labels (LabelMe JSON)",
            functools.partial(services.labelme_file, project.project_id, record, text),
            file_name=file_name,
            mime="application/json",
            key="download_labels",
            help="Opens in labelme wherever you save it: the picture is inside the file.",
        )
    upload = st.file_uploader(
        "Import labels from labelme (replaces this image's labels)",
        type=["json"],
        key="import_labels",
    )
    if upload is not None and st.button("Import", key="do_import"):
        try:
            store.import_labels(project.project_id, name, upload.getvalue())
        except NoCodeMLError as error:
            st.error(str(error))
            return
        state.bump(state.CANVAS_REVISION)
        state.bump(state.OVERVIEW_REVISION)
        state.flash("Labels imported.")
        st.rerun()


def _calibration(project: Project, name: str) -> None:
    record = project.image(name)
    with st.expander("Pixel size (for sizes in nm)", expanded=record.nm_per_px is None):
        source = {"file": "read from the image file", "user": "entered by you", "none": "not set"}
        origin = source.get(record.calibration_source, record.calibration_source)
        st.caption(
            f"Currently: {record.nm_per_px or '—'} nm per pixel ({origin}). "
            "Without it, sizes are given in pixels only."
        )
        value = st.number_input(
            "nm per pixel",
            min_value=0.0,
            value=float(record.nm_per_px or 0.0),
            format="%.4f",
            key=f"nm_{name}",
        )
        if st.button("Set pixel size", key="set_nm"):
            services.project_store().set_calibration(project.project_id, name, value or None)
            state.flash("Pixel size saved.")
            st.rerun()


def _upload_images(project: Project, expanded: bool) -> None:
    with st.expander("Add images to this project", expanded=expanded):
        files = st.file_uploader(
            f"Images ({services.IMAGE_TYPES_TEXT})",
            type=services.IMAGE_TYPES,
            accept_multiple_files=True,
            # A new key after "Add" empties the uploader: a second click adds nothing twice.
            key=f"more_images_{state.get(state.UPLOAD_REVISION)}",
        )
        if files and st.button("Add", key="add_images"):
            uploads = [(upload.name, upload.getvalue()) for upload in files]
            try:
                with st.spinner("Reading the images…"):
                    services.add_images(project.project_id, uploads)
            except NoCodeMLError as error:
                st.error(f"{error} — no image was added; remove that file and click Add again.")
                return
            state.bump(state.UPLOAD_REVISION)
            state.flash(f"{len(files)} image(s) added.")
            st.rerun()


def _delete_image(project: Project, name: str, expanded: bool) -> None:
    """Remove the image shown (asks first): its labels go with it."""
    record = project.image(name)
    asked = ("image", name)

    def delete() -> None:
        services.project_store().delete_image(project.project_id, name)
        if (state.get(state.CORRECTING) or (None,))[0] == name:
            state.stop_correcting()
        state.put(state.IMAGE_NAME, None)
        state.bump(state.CANVAS_REVISION)
        state.bump(state.OVERVIEW_REVISION)
        state.flash(f"{record.user_file_name} deleted.")

    with st.expander("Delete this image", expanded=expanded):
        if not deletion.is_asked(asked):
            if st.button(f"Delete {record.user_file_name}…", key="delete_image"):
                deletion.ask(asked)
                st.rerun()
            return
        deletion.confirm(
            f"Delete **{record.user_file_name}** and its labels from this project? "
            "This cannot be undone; trained models are kept.",
            f"Yes, delete {record.user_file_name}",
            delete,
            yes_key="confirm_delete_image",
            no_key="keep_image",
        )
