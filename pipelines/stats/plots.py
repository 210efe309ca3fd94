"""Plots as data: functions that return Plotly figures, shared by the app, the CLI and reports.

Each builder takes plain arrays (so the app can plot any selection) and :class:`Figures` wraps
them for a :class:`~pipelines.stats.api.StatsResult`: ``result.figures.histogram("particle")``.
Sizes are shown in nm when every image is calibrated, else in px, and axis titles say which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from pipelines.stats.distributions import (
    WEIGHTINGS,
    histogram_edges,
    lognormal_fit,
    lognormal_pdf,
    point_statistics,
)

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.stats.api import StatsResult

_WEIGHT_POWER = {"number": 0, "area": 2, "volume": 3}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


def _check_weighting(weighting: str) -> int:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return _WEIGHT_POWER[weighting]


def size_histogram_figure(
    diameters: np.ndarray,
    unit: str,
    *,
    bins: int | str = "auto",
    weighting: str = "number",
    fit: bool = True,
    title: str = "Size distribution",
) -> go.Figure:
    """Histogram of equivalent diameters with the fitted log-normal drawn over it.

    ``weighting``: ``number`` shows counts; ``area``/``volume`` show the share of projected
    area/volume per bin, with the log-normal transformed accordingly (Hatch–Choate: a D^k
    weighting shifts ln-mean by k·σ²).
    """
    power = _check_weighting(weighting)
    values = np.asarray(diameters, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    edges = histogram_edges(values, bins)
    weights = values**power
    heights, _ = np.histogram(values, bins=edges, weights=None if power == 0 else weights)
    if power:
        total = weights.sum()
        heights = heights / total if total > 0 else heights
    centres = 0.5 * (edges[:-1] + edges[1:])
    figure = go.Figure(
        go.Bar(
            x=centres,
            y=heights,
            width=np.diff(edges),
            name=f"{weighting}-weighted" if power else "objects",
            marker={"color": "#4c78a8", "line": {"width": 0.5, "color": "white"}},
            hovertemplate=f"D %{{x:.3g}} {unit}<br>%{{y:.3g}}<extra></extra>",
        )
    )
    parameters = lognormal_fit(values) if fit else None
    if parameters is not None and parameters.sigma > 0:
        shifted = parameters.__class__(
            parameters.mu + power * parameters.sigma**2,
            parameters.sigma,
            math.exp(parameters.mu + power * parameters.sigma**2),
            parameters.geometric_sd,
            parameters.ks_statistic,
            parameters.ks_p_value,
            parameters.n,
        )
        grid = np.linspace(max(edges[0], 1e-9), edges[-1], 300)
        scale = (values.size if power == 0 else 1.0) * float(np.mean(np.diff(edges)))
        figure.add_trace(
            go.Scatter(
                x=grid,
                y=lognormal_pdf(grid, shifted) * scale,
                mode="lines",
                name=f"log-normal fit (GM {parameters.geometric_mean:.3g} {unit}, "
                f"GSD {parameters.geometric_sd:.3g})",
                line={"color": "#e45756", "width": 2},
            )
        )
    figure.update_layout(
        title=title,
        xaxis_title=f"equivalent diameter D ({unit})",
        yaxis_title="objects" if power == 0 else f"share of {weighting}",
        bargap=0,
        **_LAYOUT,
    )
    return figure


def cumulative_figure(
    diameters: np.ndarray, unit: str, *, weighting: str = "number", title: str = "Cumulative"
) -> go.Figure:
    """Cumulative distribution of D with D10, D50 and D90 marked."""
    power = _check_weighting(weighting)
    values = np.sort(np.asarray(diameters, dtype=np.float64))
    values = values[np.isfinite(values) & (values > 0)]
    figure = go.Figure()
    if values.size:
        weights = values**power
        share = np.cumsum(weights) / weights.sum()
        figure.add_trace(
            go.Scatter(
                x=values,
                y=share,
                mode="lines",
                line={"shape": "hv", "color": "#4c78a8"},
                name=f"{weighting}-weighted",
            )
        )
        stats = point_statistics(values)
        for name, q in (("D10", "d10"), ("D50", "d50"), ("D90", "d90")):
            value = stats[(weighting, q)]
            figure.add_vline(
                x=value,
                line={"dash": "dash", "color": "#e45756"},
                annotation_text=f"{name} = {value:.3g} {unit}",
                annotation_position="top left" if name == "D90" else "top right",
            )
    figure.update_layout(
        title=title,
        xaxis_title=f"equivalent diameter D ({unit})",
        yaxis_title=f"cumulative share ({weighting})",
        yaxis_range=[0, 1.02],
        **_LAYOUT,
    )
    return figure


def lognormal_qq_figure(
    diameters: np.ndarray, unit: str, *, title: str = "Log-normal Q–Q"
) -> go.Figure:
    """Goodness of fit: sorted ln D against the fitted normal's quantiles (a line if log-normal)."""
    from scipy.special import ndtri

    values = np.sort(np.asarray(diameters, dtype=np.float64))
    values = values[np.isfinite(values) & (values > 0)]
    figure = go.Figure()
    fit = lognormal_fit(values)
    if fit is not None and fit.sigma > 0:
        n = values.size
        theoretical = np.exp(fit.mu + fit.sigma * ndtri((np.arange(1, n + 1) - 0.5) / n))
        step = max(1, n // 5000)  # a Q–Q line needs no more than a few thousand points
        figure.add_trace(
            go.Scattergl(
                x=theoretical[::step],
                y=values[::step],
                mode="markers",
                marker={"size": 4, "color": "#4c78a8"},
                name="objects",
            )
        )
        span = [float(min(theoretical[0], values[0])), float(max(theoretical[-1], values[-1]))]
        figure.add_trace(
            go.Scatter(x=span, y=span, mode="lines", line={"color": "#e45756"}, name="y = x")
        )
        ks = f", KS p = {fit.ks_p_value:.3g}" if fit.ks_p_value is not None else ""
        title = f"{title} (σ = {fit.sigma:.3g}{ks})"
    figure.update_layout(
        title=title,
        xaxis_title=f"log-normal quantile ({unit})",
        yaxis_title=f"observed D ({unit})",
        xaxis_type="log",
        yaxis_type="log",
        **_LAYOUT,
    )
    return figure


def nn_histogram_figure(
    distances: np.ndarray,
    unit: str,
    *,
    bins: int | str = "auto",
    title: str = "Nearest-neighbour distances",
    kind: str = "centre to centre",
) -> go.Figure:
    """Histogram of nearest-neighbour distances."""
    values = np.asarray(distances, dtype=np.float64)
    values = values[np.isfinite(values)]
    edges = histogram_edges(values, bins)
    counts, _ = np.histogram(values, bins=edges)
    figure = go.Figure(
        go.Bar(
            x=0.5 * (edges[:-1] + edges[1:]),
            y=counts,
            width=np.diff(edges),
            marker={"color": "#72b7b2", "line": {"width": 0.5, "color": "white"}},
            name=kind,
        )
    )
    figure.update_layout(
        title=title,
        xaxis_title=f"nearest-neighbour distance, {kind} ({unit})",
        yaxis_title="objects",
        bargap=0,
        **_LAYOUT,
    )
    return figure


def ripley_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], unit: str) -> go.Figure:
    """Besag's L(r) per ``(name, radius, L)`` curve against the random-pattern line L = r."""
    figure = go.Figure()
    top = 0.0
    for name, radius, l_value in curves:
        figure.add_trace(
            go.Scatter(x=radius, y=l_value, mode="lines+markers", name=name, marker={"size": 4})
        )
        if radius.size:
            top = max(top, float(np.nanmax(radius)))
    figure.add_trace(
        go.Scatter(
            x=[0, top],
            y=[0, top],
            mode="lines",
            name="random (L = r)",
            line={"dash": "dash", "color": "grey"},
        )
    )
    figure.update_layout(
        title="Ripley's L function (border-corrected): above the line = clustered",
        xaxis_title=f"r ({unit})",
        yaxis_title=f"L(r) ({unit})",
        **_LAYOUT,
    )
    return figure


def centres_map_figure(
    objects: pd.DataFrame,
    height: int,
    width: int,
    *,
    regions: Sequence[tuple[str, tuple[float, float, float, float]]] = (),
    title: str = "Object centres",
) -> go.Figure:
    """Object centres in image pixels (y down, as in the image), counted vs not counted.

    Hover shows the object number (as on the overlay), class and D.
    """
    figure = go.Figure()
    diameter = "diameter_nm" if "diameter_nm" in objects.columns else "diameter_px"
    unit = diameter.rsplit("_", 1)[1]
    for label in sorted(objects["label"].unique()):
        for counted in (True, False):
            rows = objects[(objects["label"] == label) & (objects["counted"] == counted)]
            if rows.empty:
                continue
            figure.add_trace(
                go.Scattergl(
                    x=rows["cx"],
                    y=rows["cy"],
                    mode="markers",
                    name=label if counted else f"{label} (not counted)",
                    marker={"size": 5, "symbol": "circle" if counted else "x", "opacity": 0.8},
                    customdata=np.column_stack([rows["object_id"], rows[diameter]]),
                    hovertemplate=f"#%{{customdata[0]}} {label}<br>D %{{customdata[1]:.3g}} "
                    f"{unit}<br>(%{{x:.1f}}, %{{y:.1f}}) px<extra></extra>",
                )
            )
    for name, (x0, y0, x1, y1) in regions:
        figure.add_shape(
            type="rect",
            x0=x0,
            y0=y0,
            x1=x1,
            y1=y1,
            name=name,
            line={"dash": "dot", "color": "#e45756" if "guard" in name else "grey"},
        )
    figure.update_xaxes(range=[-0.5, width - 0.5], title="x (px)", constrain="domain")
    figure.update_yaxes(range=[height - 0.5, -0.5], title="y (px)", scaleanchor="x")
    figure.update_layout(title=title, **_LAYOUT)
    return figure


class Figures:
    """Figures of one :class:`StatsResult`; ``image=None`` pools all images."""

    def __init__(self, result: StatsResult) -> None:
        self.result = result
        self.unit = result.size_unit

    def _rows(self, label: str | None, image: str | None) -> pd.DataFrame:
        objects = self.result.objects
        rows = objects[objects["counted"].astype(bool)]
        if label is not None:
            rows = rows[rows["label"] == label]
        if image is not None:
            rows = rows[rows["image"] == image]
        return rows

    def _diameters(self, label: str | None, image: str | None) -> np.ndarray:
        rows = self._rows(label, image)
        return rows[f"diameter_{self.unit}"].to_numpy(dtype=np.float64)

    def _title(self, what: str, label: str | None, image: str | None) -> str:
        parts = [what, label or "all classes"]
        if image is not None:
            parts.append(image)
        return " · ".join(parts)

    def histogram(
        self,
        label: str | None = None,
        image: str | None = None,
        *,
        bins: int | str | None = None,
        weighting: str = "number",
        fit: bool = True,
    ) -> go.Figure:
        return size_histogram_figure(
            self._diameters(label, image),
            self.unit,
            bins=bins if bins is not None else self.result.options.histogram_bins,
            weighting=weighting,
            fit=fit,
            title=self._title("Size distribution", label, image),
        )

    def cumulative(
        self, label: str | None = None, image: str | None = None, *, weighting: str = "number"
    ) -> go.Figure:
        return cumulative_figure(
            self._diameters(label, image),
            self.unit,
            weighting=weighting,
            title=self._title("Cumulative distribution", label, image),
        )

    def lognormal_qq(self, label: str | None = None, image: str | None = None) -> go.Figure:
        return lognormal_qq_figure(
            self._diameters(label, image),
            self.unit,
            title=self._title("Log-normal Q–Q", label, image),
        )

    def nn_histogram(
        self,
        label: str | None = None,
        image: str | None = None,
        *,
        edge: bool = False,
        bins: int | str = "auto",
    ) -> go.Figure:
        column = f"nn_edge_distance_{self.unit}" if edge else f"nn_distance_{self.unit}"
        rows = self._rows(label, image)
        return nn_histogram_figure(
            rows[column].to_numpy(dtype=np.float64) if column in rows else np.zeros(0),
            self.unit,
            bins=bins,
            kind="edge to edge" if edge else "centre to centre",
            title=self._title("Nearest-neighbour distances", label, image),
        )

    def ripley(self, label: str | None = None, image: str | None = None) -> go.Figure:
        curves = self.result.ripley
        if label is not None:
            curves = curves[curves["label"] == label]
        if image is not None:
            curves = curves[curves["image"] == image]
        radius, value = ("radius_nm", "l_nm") if self.unit == "nm" else ("radius_px", "l_px")
        series = [
            (f"{lab} · {img}", group[radius].to_numpy(), group[value].to_numpy())
            for (img, lab), group in curves.groupby(["image", "label"], sort=True)
        ]
        return ripley_figure(series, self.unit)

    def centres_map(self, image: str | None = None, label: str | None = None) -> go.Figure:
        info = next((i for i in self.result.images if image in (None, i.name)), None)
        if info is None:
            raise ValueError(f"no image named {image!r}")
        objects = self.result.objects
        rows = objects[(objects["image"] == info.name) & objects["analysed"].astype(bool)]
        if label is not None:
            rows = rows[rows["label"] == label]
        regions = [("analysed region", info.region.as_tuple())]
        if info.guard_px is not None:
            regions.append(("guard frame", info.counting_region.as_tuple()))
        return centres_map_figure(
            rows,
            info.height,
            info.width,
            regions=regions,
            title=f"Object centres · {info.name}",
        )

    def report_figures(self) -> list[tuple[str, go.Figure]]:
        """Every figure of the HTML report, titled, in reading order."""
        figures: list[tuple[str, go.Figure]] = []
        for label in self.result.summary["label"] if len(self.result.summary) else []:
            if not (self._diameters(label, None) > 0).any():
                continue
            figures.append((f"{label}: size histogram", self.histogram(label)))
            figures.append(
                (f"{label}: area-weighted histogram", self.histogram(label, weighting="area"))
            )
            figures.append((f"{label}: cumulative distribution", self.cumulative(label)))
            figures.append((f"{label}: log-normal goodness of fit", self.lognormal_qq(label)))
            figures.append((f"{label}: nearest-neighbour distances", self.nn_histogram(label)))
        if len(self.result.ripley):
            figures.append(("Ripley's L", self.ripley()))
        for info in self.result.images:
            figures.append((f"centres: {info.name}", self.centres_map(info.name)))
        return figures


def figure_dict(figure: Any) -> dict[str, Any]:
    """A figure as a JSON-ready dict (for job results or caching)."""
    return figure.to_plotly_json()
