"""One self-contained HTML report of a statistics run, for a lab notebook.

Tables (summary, per image, distributions), the figures of :mod:`pipelines.stats.plots` and the
run card in one file. plotly.js is embedded once in the page head, so the report opens offline.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import InvalidInput
from pipelines.fileio import atomic_write_text
from pipelines.stats.api import StatsResult
from pipelines.stats.runcard import run_card_rows

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .45rem;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
.note{color:#555;font-size:.85rem}.scroll{overflow-x:auto}
.card td{text-align:left;font-family:ui-monospace,monospace}
"""
_KEY_COLUMNS = (
    "label",
    "counted",
    "objects",
    "touching_border",
    "mean_diameter_{u}",
    "mean_diameter_{u}_ci_low",
    "mean_diameter_{u}_ci_high",
    "std_diameter_{u}",
    "d10_{u}",
    "d50_{u}",
    "d90_{u}",
    "sauter_diameter_{u}",
    "geometric_mean_diameter_{u}",
    "geometric_sd",
    "{density}",
    "coverage_fraction",
    "nn_mean_{u}",
    "nn_edge_mean_{u}",
    "clark_evans_r",
    "clark_evans_p",
    "dispersion",
    "nano_share_feret_min",
)


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    if frame.empty:
        return '<p class="note">no rows</p>'
    body = frame.to_html(
        index=False,
        escape=True,
        formatters={c: _format for c in frame.columns},
        na_rep="–",
        border=0,
    )
    return f'<div class="scroll">{body}</div>'


def _key_table(frame: pd.DataFrame, columns: list[str], name_column: str = "label") -> str:
    """Statistics as rows and classes as columns: a few classes, many numbers."""
    present = [
        c for c in columns if c in frame.columns and c not in (name_column, "label", "image")
    ]
    if frame.empty:
        return '<p class="note">no objects</p>'
    names = [str(v) for v in frame[name_column]]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td>"
        + "".join(f"<td>{html.escape(_format(v))}</td>" for v in frame[c])
        + "</tr>"
        for c in present
    )
    return f'<div class="scroll"><table><tr><th>statistic</th>{head}</tr>{rows}</table></div>'


def _notes(frame: pd.DataFrame, name_columns: tuple[str, ...]) -> str:
    items = [
        f"<li><b>{html.escape(' · '.join(str(r[c]) for c in name_columns))}</b>: "
        f"{html.escape(str(r['notes']))}</li>"
        for r in frame.to_dict("records")
        if r.get("notes")
    ]
    return f"<ul class='note'>{''.join(items)}</ul>" if items else ""


def build_html_report(result: StatsResult, title: str = "Object statistics") -> str:
    """The report as one HTML string (plotly.js inline)."""
    from plotly.offline import get_plotlyjs

    unit = result.size_unit
    density = "density_per_um2" if unit == "nm" else "density_per_mpx"
    key = [c.format(u=unit, density=density) for c in _KEY_COLUMNS]
    card = result.run_card
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>{len(result.objects)} objects in {len(result.images)} image(s); "
        f"sizes in {unit}; counting rule <b>{html.escape(str(card['counting_rule']['rule']))}"
        f"</b>; created {html.escape(card['created'])}.</p>",
    ]
    if unit == "px":
        parts.append(
            "<p class='note'><b>No calibration</b>: sizes are in pixels and densities per "
            "megapixel (10⁶ px²).</p>"
        )
    parts += [
        "<h2>Summary per class</h2>",
        _key_table(result.summary, key),
        _notes(result.summary, ("label",)),
        "<details><summary>all summary columns</summary>",
        _key_table(result.summary, [c for c in result.summary.columns if c != "notes"]),
        "</details>",
    ]
    if len(result.images) > 1:
        per_image = result.per_image.assign(
            name=result.per_image["image"] + " · " + result.per_image["label"]
        )
        parts += [
            "<h2>Per image</h2>",
            _key_table(per_image, key, name_column="name"),
            _notes(result.per_image, ("image", "label")),
        ]
    parts += [
        "<h2>Size distributions with bootstrap intervals</h2>",
        "<details><summary>number-, area- and volume-weighted statistics</summary>",
        _table(result.distributions),
        "</details>",
        "<h2>Figures</h2>",
    ]
    for name, figure in result.figures.report_figures():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=False))
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in run_card_rows(card)
    )
    parts += ["<h2>Run card</h2>", f"<table class='card'>{rows}</table>", "</body></html>"]
    return "\n".join(parts)


def write_html_report(
    result: StatsResult, path: str | os.PathLike[str], title: str = "Object statistics"
) -> Path:
    """Write the self-contained HTML report atomically."""
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        raise InvalidInput(f"the report must be an .html file, got '{target.name}'")
    return atomic_write_text(target, build_html_report(result, title))
