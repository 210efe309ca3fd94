"""Statistics display shared by the Statistics and Results pages (numbers from pipelines.stats)."""

from __future__ import annotations

import math

import streamlit as st

from streamlit_app import services

ALL_TYPES = "all object types"


def _number(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def show_statistics(
    labelme_json: str,
    nm_per_px: float | None,
    key: str,
    stem: str,
    calibrate_where: str = "in the field above",
) -> None:
    """Summary cards, size and neighbour histograms, centre map, tables and downloads.

    ``calibrate_where`` says where on this page's way the pixel size is entered."""
    result = services.statistics(labelme_json, nm_per_px)
    summary = result.summary
    if result.objects.empty or summary.empty:
        st.warning(
            "No objects here. Labels: outline objects first. A model's result: train longer "
            "(raise the time budget) or outline more objects in more crops, then train again."
        )
        return
    unit = result.size_unit
    total = int(summary["counted"].sum())
    cols = st.columns(4)
    cols[0].metric("Objects", total, help="Objects counted in the image, all types together")
    biggest = summary.sort_values("counted", ascending=False).iloc[0]
    name = biggest["label"]
    cols[1].metric(
        f"Mean diameter D of {name} ({unit})",
        _number(biggest[f"mean_diameter_{unit}"])
        + (
            f" ± {_number(biggest[f'std_diameter_{unit}'])}"
            if math.isfinite(biggest[f"std_diameter_{unit}"])
            else ""
        ),
        help="D = 2·√(area/π), the diameter of a disk with the same area; ± one standard deviation",
    )
    if unit == "nm":
        density = _number(biggest["density_per_um2"], 1)
        cols[2].metric(f"Density of {name} (per µm²)", density, help="Objects per µm² of image")
    else:
        density = _number(biggest["density_per_mpx"], 1)
        cols[2].metric(
            f"Density of {name} (per 10⁶ px²)",
            density,
            help="Objects per million pixels; enter the pixel size to get objects per µm²",
        )
    cols[3].metric(
        f"Nearest neighbour ({unit})",
        _number(biggest.get(f"nn_mean_{unit}")),
        help="Mean distance from each object's centre to the closest other centre",
    )
    if unit == "px":
        st.caption(
            f"Sizes are in pixels: enter the pixel size (nm per pixel) {calibrate_where} to get "
            "nanometres."
        )
    _per_class_table(summary, unit)
    classes = [str(label) for label in summary["label"]]
    left, right = st.columns([1, 2])
    shown = left.selectbox(
        "Object type", [ALL_TYPES, *classes] if len(classes) > 1 else classes, key=f"{key}_type"
    )
    label = None if shown == ALL_TYPES else shown
    bins = right.select_slider(
        "Histogram bins",
        ["auto", 5, 10, 15, 20, 30, 40, 60],
        value="auto",
        key=f"{key}_bins",
        help="'auto' picks the number of bins from the number of objects",
    )
    figures = result.figures
    st.plotly_chart(figures.histogram(label, bins=bins), key=f"{key}_histogram")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(figures.centres_map(label=label), key=f"{key}_centres")
    with right:
        st.plotly_chart(figures.nn_histogram(label), key=f"{key}_nn")
    with st.expander(f"All {len(result.objects)} objects (table)"):
        st.dataframe(result.objects, hide_index=True)
    _downloads(labelme_json, nm_per_px, key, stem)


def _per_class_table(summary, unit: str) -> None:
    columns = {
        "label": "type",
        "counted": "objects",
        f"mean_diameter_{unit}": f"mean D ({unit})",
        f"std_diameter_{unit}": f"sd of D ({unit})",
        f"d10_{unit}": f"D10 ({unit})",
        f"d50_{unit}": f"D50 ({unit})",
        f"d90_{unit}": f"D90 ({unit})",
        "density_per_um2" if unit == "nm" else "density_per_mpx": (
            "per µm²" if unit == "nm" else "per 10⁶ px²"
        ),
        f"nn_mean_{unit}": f"mean nearest neighbour ({unit})",
        "notes": "notes",
    }
    present = [c for c in columns if c in summary.columns]
    with st.expander("Per object type (summary table)", expanded=len(summary) > 1):
        st.dataframe(
            summary[present].rename(columns=columns).round(3),
            hide_index=True,
        )


def _downloads(labelme_json: str, nm_per_px: float | None, key: str, stem: str) -> None:
    files = services.statistics_files(labelme_json, nm_per_px, stem)
    st.caption(
        "Downloads: the table has one row per object; the Excel file adds the summary, "
        "distributions and a run card (how the numbers were made); the report opens in a browser."
    )
    cols = st.columns(4)
    cols[0].download_button(
        "Objects table (CSV)",
        files[".csv"],
        f"{stem}_objects.csv",
        "text/csv",
        key=f"{key}_csv",
    )
    cols[1].download_button(
        "Statistics (Excel)",
        files[".xlsx"],
        f"{stem}_statistics.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        key=f"{key}_xlsx",
    )
    cols[2].download_button(
        "Statistics (JSON)",
        files[".json"],
        f"{stem}_statistics.json",
        "application/json",
        key=f"{key}_json",
    )
    cols[3].download_button(
        "Report (HTML)",
        files[".html"],
        f"{stem}_report.html",
        "text/html",
        key=f"{key}_html",
    )
