"""Run card: what a statistics table was computed from, so a reader can reproduce it.

Every export carries one: XLSX a ``run card`` sheet, JSON a ``run_card`` key, CSV a sidecar
``<table>.card.json`` (the CSV itself stays a plain table that ``pandas.read_csv`` reads).

Calibration and model provenance are read from a LabelMe file's top-level ``nocode_ml`` object
(extra keys are kept by the LabelMe reader and written back)::

    "nocode_ml": {"nm_per_px": 0.25, "calibration_source": "image metadata (Pd.dm4)",
                  "model": {"id": "...", "sha256": "...", "engine": "unet",
                            "thresholds": {"score": 0.5}}}

A bare top-level ``"nm_per_px"`` number is also accepted.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.errors import InvalidInput
from pipelines.fileio import sha256_file, sha256_text
from pipelines.formats.labelme import METADATA_KEY, LabelMeDocument, resolve_image_path

_VERSIONED_PACKAGES = ("nocode-ml", "numpy", "scipy", "pandas", "shapely", "plotly", "openpyxl")


@dataclass(frozen=True)
class Calibration:
    """Pixel size and where it came from (``user``, ``file metadata …`` or ``none``)."""

    nm_per_px: float | None
    source: str = "user"

    def __post_init__(self) -> None:
        value = self.nm_per_px
        if value is not None and not (
            isinstance(value, int | float) and math.isfinite(value) and value > 0
        ):
            raise InvalidInput(f"pixel size must be a positive number of nm per px, got {value!r}")

    @property
    def calibrated(self) -> bool:
        return self.nm_per_px is not None


UNCALIBRATED = Calibration(None, "none")


def document_metadata(document: LabelMeDocument) -> dict[str, Any]:
    """The ``nocode_ml`` object of a LabelMe file (empty when absent or malformed)."""
    value = document.extra.get(METADATA_KEY)
    return value if isinstance(value, dict) else {}


def calibration_from_document(document: LabelMeDocument) -> Calibration:
    """Pixel size stored in the LabelMe file, or :data:`UNCALIBRATED`."""
    meta = document_metadata(document)
    for holder, key, where in (
        (meta, "nm_per_px", f"{METADATA_KEY}.nm_per_px"),
        (document.extra, "nm_per_px", "nm_per_px"),
    ):
        value = holder.get(key)
        usable = isinstance(value, int | float) and not isinstance(value, bool)
        if usable and math.isfinite(value) and value > 0:
            origin = meta.get("calibration_source")
            detail = f" ({origin})" if isinstance(origin, str) and origin else ""
            return Calibration(float(value), f"file metadata: {where}{detail}")
    return UNCALIBRATED


def model_from_document(document: LabelMeDocument) -> dict[str, Any] | None:
    """Model provenance (id, hash, thresholds) of predicted objects, if the file records it."""
    model = document_metadata(document).get("model")
    return dict(model) if isinstance(model, dict) else None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def source_record(
    document: LabelMeDocument, image_name: str, content_sha256: str | None = None
) -> dict[str, Any]:
    """Source files of one image with their SHA-256 (the LabelMe JSON and, if found, the image).

    A document built in memory has no file: ``content_sha256`` (a hash of its measured shapes)
    is recorded instead, or, when not given, the hash of its JSON serialisation.
    """
    record: dict[str, Any] = {"image": image_name}
    if document.source is not None and Path(document.source).is_file():
        record["labelme_file"] = str(document.source)
        record["labelme_sha256"] = sha256_file(document.source)
        try:
            image_path = resolve_image_path(document)
        except InvalidInput:
            image_path = None
        if image_path is not None and image_path.is_file():
            record["image_file"] = str(image_path)
            record["image_sha256"] = sha256_file(image_path)
    elif content_sha256 is not None:
        record["labelme_file"] = None
        record["shapes_sha256"] = content_sha256
        record["note"] = "in-memory LabelMe document: SHA-256 of its packed shapes"
    else:
        text = json.dumps(document.to_dict(), sort_keys=True, ensure_ascii=False)
        record["labelme_file"] = None
        record["labelme_sha256"] = sha256_text(text)
        record["note"] = "in-memory LabelMe document: SHA-256 of its JSON serialisation"
    return record


def build_run_card(
    *,
    sources: list[dict[str, Any]],
    calibrations: dict[str, Calibration],
    counting: dict[str, Any],
    options: dict[str, Any],
    models: dict[str, dict[str, Any]],
    notes: list[str],
) -> dict[str, Any]:
    """Assemble the run card as a JSON-ready dict."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": "nocode-ml stats",
        "versions": package_versions(),
        "sources": sources,
        "calibration": {
            name: {"nm_per_px": c.nm_per_px, "source": c.source} for name, c in calibrations.items()
        },
        "counting_rule": counting,
        "models": models or None,
        "options": options,
        "notes": notes,
    }


def run_card_rows(card: dict[str, Any]) -> list[tuple[str, str]]:
    """The run card flattened to ``(key, value)`` text rows for a sheet or an HTML table."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            if not value:
                rows.append((prefix, ""))
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            if not value:
                rows.append((prefix, ""))
            for index, inner in enumerate(value):
                walk(f"{prefix}[{index}]", inner)
        else:
            rows.append((prefix, "" if value is None else str(value)))

    walk("", card)
    return rows


def format_run_card(card: dict[str, Any]) -> str:
    """Plain-text run card for the terminal."""
    rows = run_card_rows(card)
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)
