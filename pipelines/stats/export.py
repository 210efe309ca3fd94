"""Export a :class:`~pipelines.stats.api.StatsResult` as CSV, XLSX or JSON, atomically.

- ``.csv``: the per-object table; its first line is the header
  ``label,area_px,diameter_px,cx,cy[,area_nm2,diameter_nm,cx_nm,cy_nm],image,object_id,...`` so
  ``pandas.read_csv`` and spreadsheet programs read it as is. The run card goes to a sidecar
  ``<name>.card.json`` beside it (a CSV has no place for it that every reader skips).
- ``.xlsx``: sheets ``objects``, ``summary``, ``per image``, ``distributions``,
  ``histograms``, ``ripley`` and ``run card``.
- ``.json``: ``{"run_card": …, "summary": […], "objects": […], …}``; NaN becomes ``null``.

Each file is written through :mod:`pipelines.fileio`, so a failed export leaves no partial
file; the CSV's sidecar is removed again if the CSV itself cannot be written.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.errors import InvalidInput
from pipelines.fileio import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    check_file_target,
)
from pipelines.stats.api import StatsResult
from pipelines.stats.runcard import run_card_rows

EXPORT_SUFFIXES = (".csv", ".xlsx", ".json")
CARD_SUFFIX = ".card.json"
_SHEETS = (
    ("objects", "objects"),
    ("summary", "summary"),
    ("per image", "per_image"),
    ("distributions", "distributions"),
    ("histograms", "histograms"),
    ("ripley", "ripley"),
)


def check_export_path(path: str | os.PathLike[str]) -> Path:
    """Validate an output path before any work is done (suffix known, folder not a file)."""
    target = Path(path)
    if target.suffix.lower() not in EXPORT_SUFFIXES:
        raise InvalidInput(
            f"cannot write statistics to '{target.name}': choose a file ending in "
            f"{', '.join(EXPORT_SUFFIXES)}"
        )
    return check_file_target(target, example="stats.csv")


def card_path(csv_path: str | os.PathLike[str]) -> Path:
    """Sidecar run card of a CSV export: ``table.csv`` → ``table.card.json``."""
    path = Path(csv_path)
    return path.with_name(path.stem + CARD_SUFFIX)


def write_statistics(result: StatsResult, path: str | os.PathLike[str]) -> list[Path]:
    """Write ``result`` in the format named by ``path``'s suffix; returns the files written."""
    target = check_export_path(path)
    suffix = target.suffix.lower()
    if suffix == ".csv":
        return _write_csv(result, target)
    if suffix == ".xlsx":
        return [_write_xlsx(result, target)]
    return [atomic_write_json(target, result_to_json(result))]


def _write_csv(result: StatsResult, target: Path) -> list[Path]:
    card = card_path(target)
    existed = card.exists()
    atomic_write_json(card, {"table": target.name, "run_card": result.run_card})
    try:
        atomic_write_text(target, result.objects.to_csv(index=False))
    except BaseException:
        if not existed:
            card.unlink(missing_ok=True)
        raise
    return [target, card]


def _sheet_columns(frame: pd.DataFrame) -> list[np.ndarray]:
    """Columns as object arrays of plain Python values; NaN and NA become empty cells."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        values = series.to_numpy(dtype=object, na_value=None)
        if series.dtype.kind == "f":
            values = values.astype(object)
            values[~np.isfinite(series.to_numpy(dtype=np.float64))] = None
        columns.append(values)
    return columns


def _append_frame(sheet: Any, frame: pd.DataFrame) -> None:
    sheet.append([str(c) for c in frame.columns])
    for row in zip(*_sheet_columns(frame), strict=True):
        sheet.append(row)


def _write_xlsx(result: StatsResult, target: Path) -> Path:
    """Write-only workbook: rows stream to disk, several times faster than the default mode."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for sheet, attribute in _SHEETS:
        _append_frame(book.create_sheet(sheet), getattr(result, attribute))
    card = book.create_sheet("run card")
    card.append(["field", "value"])
    for row in run_card_rows(result.run_card):
        card.append(list(row))
    with atomic_path(target) as tmp:
        book.save(tmp)
    return target


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts (NaN → None)."""
    columns = list(frame.columns)
    return [
        {c: _clean(v) for c, v in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def result_to_json(result: StatsResult) -> dict[str, Any]:
    """The whole result as a JSON-ready dict with the run card first."""
    data: dict[str, Any] = {"run_card": result.run_card}
    for _, attribute in _SHEETS:
        data[attribute] = frame_records(getattr(result, attribute))
    json.dumps(data, allow_nan=False)  # fail before writing rather than emit NaN
    return data
