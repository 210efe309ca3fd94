"""Statistics page: measure objects in any LabelMe file (from labelme or from a model)."""

from __future__ import annotations

import streamlit as st

from pipelines.errors import NoCodeMLError
from streamlit_app import services
from streamlit_app.views.stats_common import show_statistics


def render() -> None:
    st.title("Statistics")
    st.caption(
        "Upload a LabelMe file (made with labelme or downloaded from No Code ML) to get the size "
        "of every outlined object, histograms and tables. Add the image to read its pixel size."
    )
    cols = st.columns(2)
    labels = cols[0].file_uploader("LabelMe file (.json)", type=["json"], key="stats_labels")
    image = cols[1].file_uploader(
        "Its image (optional, for the pixel size)",
        type=services.IMAGE_TYPES,
        key="stats_image",
    )
    if labels is None:
        st.info("Choose a LabelMe .json file to start.")
        return
    from pipelines.formats.labelme import labelme_from_bytes, labelme_text

    try:
        document = labelme_from_bytes(labels.getvalue(), labels.name)
    except NoCodeMLError as error:
        st.error(str(error))
        return
    text = labelme_text(document)  # also from a UTF-8 file with a BOM, or UTF-16
    file_nm, source = None, ""
    if image is not None:
        try:
            file_nm = services.calibration_of_upload(image.name, image.getvalue())
            source = image.name
        except NoCodeMLError as error:
            st.error(f"{error} — the statistics below use the pixel size you enter.")
    if not file_nm:
        from pipelines.stats.runcard import calibration_from_document

        file_nm, source = calibration_from_document(document).nm_per_px, labels.name
    # 0 passes None on: pipelines.stats then uses the LabelMe file's own pixel size if it has
    # one, so the field starts from that value and its label says so.
    nm_per_px = st.number_input(
        "Pixel size (nm per pixel; 0 = the one stored in the LabelMe file, else sizes in pixels)",
        min_value=0.0,
        value=float(file_nm or 0.0),
        format="%.4f",
        key=f"stats_nm_{file_nm}",
        help="Filled in from the image or the LabelMe file when they store it; otherwise take "
        "it from the microscope.",
    )
    if file_nm:
        st.caption(f"Pixel size read from {source}: {file_nm:g} nm per pixel.")
    try:
        show_statistics(text, nm_per_px or None, "stats", labels.name.rsplit(".", 1)[0])
    except NoCodeMLError as error:
        st.error(str(error))
