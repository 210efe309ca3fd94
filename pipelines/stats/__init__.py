"""Statistics of labelled objects: sizes, counts, spatial patterns, run cards and reports.

Entry point: :func:`compute_statistics` (LabelMe files or documents → :class:`StatsResult`);
:func:`write_statistics` exports a result as CSV (+ ``.card.json``), XLSX or JSON;
``result.figures`` builds Plotly figures; :func:`write_html_report` writes a self-contained
HTML report.
"""

from pipelines.stats.api import (
    ImageInfo,
    StatsOptions,
    StatsResult,
    compute_statistics,
    stats_from_labelme,
)
from pipelines.stats.catalysis import METALS
from pipelines.stats.counting import COUNTING_RULES, Region
from pipelines.stats.export import EXPORT_SUFFIXES, write_statistics
from pipelines.stats.report import write_html_report
from pipelines.stats.runcard import Calibration, format_run_card

__all__ = [
    "COUNTING_RULES",
    "EXPORT_SUFFIXES",
    "METALS",
    "Calibration",
    "ImageInfo",
    "Region",
    "StatsOptions",
    "StatsResult",
    "compute_statistics",
    "format_run_card",
    "stats_from_labelme",
    "write_html_report",
    "write_statistics",
]
