"""Pixel size: what a file says, what the user says, and the units in between.

Every reader turns its own metadata (TIFF tags, DigitalMicrograph axes, EMD dimensions) into a
scale and a unit text; this module converts that to nanometres per pixel. A unit we do not know
(``1/nm`` for a diffraction pattern, ``inch`` print resolution, ``px``) gives no calibration, never
a guessed one: missing calibration means empty nm columns downstream.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from pipelines.errors import InvalidInput

log = logging.getLogger(__name__)

CALIBRATION_SOURCES = ("file", "user", "none")

# Lower-case unit spellings found in microscope files -> nanometres per unit. The micro sign
# (U+00B5), the Greek mu (U+03BC) and the Angstrom sign (U+212B) are folded before lookup.
_NM_PER_UNIT = {
    "m": 1e9,
    "meter": 1e9,
    "meters": 1e9,
    "metre": 1e9,
    "metres": 1e9,
    "cm": 1e7,
    "centimeter": 1e7,
    "centimeters": 1e7,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimeters": 1e6,
    "um": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometers": 1e3,
    "micrometre": 1e3,
    "micrometres": 1e3,
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "nanometres": 1.0,
    "a": 0.1,
    "å": 0.1,
    "ang": 0.1,
    "angstrom": 0.1,
    "angstroms": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
    "picometers": 1e-3,
}


@dataclass(frozen=True)
class Calibration:
    """Nanometres per pixel and where the number came from.

    ``source`` is ``"file"`` (read from the image's metadata), ``"user"`` (typed by the user; it
    wins over the file) or ``"none"``. ``unit_text`` keeps what the file said (``"0.52 nm"``),
    also when the user overrode it or when the unit was not a length we could use.
    """

    nm_per_px: float | None
    source: str
    unit_text: str = ""

    def __post_init__(self) -> None:
        if self.source not in CALIBRATION_SOURCES:
            raise ValueError(f"calibration source must be one of {CALIBRATION_SOURCES}")
        if (self.nm_per_px is None) != (self.source == "none"):
            raise ValueError("nm_per_px is None exactly when source is 'none'")

    @property
    def is_calibrated(self) -> bool:
        return self.nm_per_px is not None


NO_CALIBRATION = Calibration(None, "none")


def nm_per_unit(unit: str) -> float | None:
    """Nanometres in one ``unit`` (``"µm"`` -> 1000.0); None when it is not a length unit."""
    key = unit.strip().replace("\u00b5", "u").replace("\u03bc", "u").replace("\u212b", "å")
    if key == "A":  # capital A is the usual ASCII spelling of Angstrom
        return 0.1
    return _NM_PER_UNIT.get(key.lower())


def tidy_number(value: float) -> float:
    """Drop binary noise: a float32 scale (0.519999980926) reads back as the 0.52 it was typed as.

    Values exactly representable as float32 most likely came from a float32 field (DM, Velox),
    so their shortest float32 spelling is the intended number; everything is then rounded to 12
    significant digits so a unit conversion (0.52 * 1000) does not leave 520.0000000000001.
    """
    if np.float32(value) == value:
        value = float(str(np.float32(value)))
    return float(f"{value:.12g}")


def calibration_from_scale(scale: float, unit: str) -> Calibration:
    """Calibration from a file's pixel ``scale`` in ``unit``; ``"none"`` if it cannot be used.

    A scale without a unit (DigitalMicrograph writes 1 for uncalibrated images) says nothing.
    """
    if not unit.strip():
        return NO_CALIBRATION
    scale_text = f"{tidy_number(scale):g}" if math.isfinite(scale) else str(scale)
    unit_text = f"{scale_text} {unit}".strip()
    factor = nm_per_unit(unit)
    if factor is None or not math.isfinite(scale) or scale <= 0:
        log.info("pixel size %r is not a usable length; image left uncalibrated", unit_text)
        return Calibration(None, "none", unit_text)
    return Calibration(tidy_number(tidy_number(scale) * factor), "file", unit_text)


def check_nm_per_px(nm_per_px: float) -> float:
    """Validate a user-given pixel size; raises InvalidInput for zero, negative or NaN values."""
    try:
        value = float(nm_per_px)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"nm_per_px must be a number of nanometres per pixel, got {nm_per_px!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(
            f"nm_per_px must be a positive number of nanometres per pixel, got {nm_per_px!r}"
        )
    return value


def resolve_calibration(from_file: Calibration, nm_per_px: float | None) -> Calibration:
    """Apply the manual override: a user value wins, the file's text is kept for reference."""
    if nm_per_px is None:
        return from_file
    return Calibration(check_nm_per_px(nm_per_px), "user", from_file.unit_text)
