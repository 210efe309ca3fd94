"""TIFF through tifffile: one page read after its size is checked, and pixel size from metadata.

Pixel size is looked up, first match wins, in: ImageJ (``unit=`` in the description and pixels
per unit in XResolution), OME-XML (``PhysicalSizeX`` and its unit, micrometres by default),
Thermo Fisher/FEI SEM (``[Scan] PixelWidth`` in metres), Zeiss SEM (``Image Pixel Size``), and
the plain resolution tags when their unit is centimetre, millimetre or micrometre. Resolution in
inches is ignored: it is print DPI (72, 300) written by every image editor, not a pixel size.
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
import tifffile

from pipelines.errors import InvalidImage
from pipelines.fileio import atomic_path
from pipelines.imaging.calibration import (
    NO_CALIBRATION,
    Calibration,
    calibration_from_scale,
    check_nm_per_px,
)
from pipelines.imaging.pixels import analysis_pixels, check_frame, check_pixel_limit, luma

log = logging.getLogger(__name__)

# Pixels per unit in the resolution tags -> the unit's name (TIFF ResolutionUnit, tifffile's
# MILLIMETER/MICROMETER extensions included).
_RESOLUTION_UNITS = {3: "cm", 4: "mm", 5: "um"}
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_OME_PIXELS = re.compile(r"<(?:\w+:)?Pixels\b[^>]*>", re.DOTALL)


def read_tiff(
    source: Path | IO[bytes], name: str, frame: int, max_pixels: int, keep_rgb: bool
) -> tuple[np.ndarray, Calibration, int, np.ndarray | None]:
    """Read page ``frame``: ``(pixels, calibration, n_frames, rgb or None)``."""
    with _open(source, name) as tif:
        try:
            n_frames = len(tif.pages)
            check_frame(name, frame, n_frames)
            page = tif.pages[frame]
            check_pixel_limit(name, page.imagelength, page.imagewidth, max_pixels)
            _check_complete(tif, page, name)
            array = page.asarray()
            calibration = tiff_calibration(tif, page)
        except (tifffile.TiffFileError, ValueError, OSError, KeyError, IndexError) as exc:
            raise _damaged(name, exc) from exc
        pixels, rgb = _to_grey(page, array, keep_rgb)
    return analysis_pixels(name, pixels), calibration, n_frames, rgb


def tiff_size(source: Path | IO[bytes], name: str, max_pixels: int) -> tuple[int, int]:
    """``(height_px, width_px)`` of the first page, from the header only."""
    with _open(source, name) as tif:
        try:
            page = tif.pages.first
        except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
            raise _damaged(name, exc) from exc
        check_pixel_limit(name, page.imagelength, page.imagewidth, max_pixels)
        return page.imagelength, page.imagewidth


def tiff_calibration(tif: tifffile.TiffFile, page: Any) -> Calibration:
    """Pixel size from the metadata conventions listed in the module docstring."""
    for reader in (_imagej, _ome, _fei, _zeiss_sem, _resolution_tags):
        try:
            calibration = reader(tif, page)
        except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError) as exc:
            log.info("ignoring unreadable TIFF calibration (%s): %s", reader.__name__, exc)
            continue
        if calibration is not None:
            return calibration
    return NO_CALIBRATION


def write_tiff(path: str | Path, pixels: np.ndarray, nm_per_px: float | None = None) -> Path:
    """Write ``(H, W)`` uint8/uint16/float32 (or ``(H, W, 3)`` uint8) pixels as an ImageJ TIFF.

    The pixel size goes in ImageJ's way (``unit=nm`` and pixels per nm in XResolution and
    YResolution), so Fiji shows the scale and :func:`load_image` reads the same ``nm_per_px``
    back. float64 is stored as float32. The write is atomic: no partial file on failure.
    """
    array = np.asarray(pixels)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    is_rgb = array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8
    if not (is_rgb or (array.ndim == 2 and array.dtype in (np.uint8, np.uint16, np.float32))):
        raise ValueError(
            "write_tiff takes (H, W) uint8/uint16/float32 or (H, W, 3) uint8 pixels, "
            f"got {array.shape} {array.dtype}"
        )
    options: dict[str, Any] = {"imagej": True, "photometric": "rgb" if is_rgb else "minisblack"}
    if nm_per_px is not None:
        px_per_nm = 1.0 / check_nm_per_px(nm_per_px)
        options["resolution"] = (px_per_nm, px_per_nm)
        options["metadata"] = {"unit": "nm"}
    target = Path(path)
    with atomic_path(target) as tmp:
        tifffile.imwrite(tmp, array, **options)
    return target


def _open(source: Path | IO[bytes], name: str) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(source)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
        if _has_tiff_header(source):
            raise _damaged(name, exc) from exc
        raise InvalidImage(
            f"{name} is not a TIFF file we can read ({exc}); "
            "check that it is not damaged or a different format renamed to .tif"
        ) from exc


def _has_tiff_header(source: Path | IO[bytes]) -> bool:
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            head = handle.read(4)
    else:
        source.seek(0)
        head = source.read(4)
    return head in TIFF_MAGICS


def _damaged(name: str, exc: Exception) -> InvalidImage:
    log.debug("TIFF read failed for %s", name, exc_info=exc)
    return InvalidImage(
        f"{name} is truncated or damaged ({exc}); copy the file again from its source"
    )


def _check_complete(tif: tifffile.TiffFile, page: Any, name: str) -> None:
    """A copy cut short leaves strip offsets past the end of the file: say so, do not zero-fill."""
    file_size = tif.filehandle.size
    ends = [
        offset + count
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)
        if count
    ]
    if ends and max(ends) > file_size:
        raise InvalidImage(
            f"{name} is truncated: its image data end at byte {max(ends)} but "
            f"the file has {file_size} bytes; copy the file again from its source"
        )


def _to_grey(page: Any, array: np.ndarray, keep_rgb: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Page array in any sample layout -> ``(H, W)`` plus the colour image when asked."""
    axes = page.axes
    if "S" in axes and axes.index("S") < axes.index("Y"):  # planar: samples first
        array = np.moveaxis(array, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    while array.ndim > (3 if axes.endswith("S") else 2):  # a volume page: keep its first slice
        array = array[0]
    photometric = page.photometric
    if photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        array = tifffile.apply_colormap(array, page.colormap)
    elif photometric == tifffile.PHOTOMETRIC.MINISWHITE and array.dtype.kind == "u":
        array = np.iinfo(array.dtype).max - array
    if array.ndim == 2:
        return array, None
    if array.shape[2] >= 3 and photometric in (
        tifffile.PHOTOMETRIC.RGB,
        tifffile.PHOTOMETRIC.PALETTE,
        tifffile.PHOTOMETRIC.YCBCR,  # tifffile decodes YCbCr JPEG tiles to RGB
    ):
        rgb = array[..., :3]
        return luma(rgb), (np.ascontiguousarray(rgb) if keep_rgb else None)
    log.info("TIFF page has %d samples per pixel; using the first", array.shape[2])
    return array[..., 0], None


def _imagej(tif: tifffile.TiffFile, page: Any) -> Calibration | None:
    metadata = tif.imagej_metadata
    if not metadata or not metadata.get("unit"):
        return None
    unit = str(metadata["unit"])
    if "\\u" in unit:  # ImageJ escapes non-ASCII: "\\u00B5m"
        unit = codecs.decode(unit, "unicode_escape")
    x_px_per_unit = page.get_resolution()[0]
    if unit in ("pixel", "pixels", "") or x_px_per_unit <= 0:
        return None
    return calibration_from_scale(1.0 / x_px_per_unit, unit)


def _ome(tif: tifffile.TiffFile, page: Any) -> Calibration | None:
    if not tif.is_ome:
        return None
    match = _OME_PIXELS.search(tif.ome_metadata or "")
    if match is None:
        return None
    size = re.search(r'\bPhysicalSizeX="([^"]+)"', match.group(0))
    if size is None:
        return None
    unit = re.search(r'\bPhysicalSizeXUnit="([^"]+)"', match.group(0))
    return calibration_from_scale(float(size.group(1)), unit.group(1) if unit else "µm")


def _fei(tif: tifffile.TiffFile, page: Any) -> Calibration | None:
    metadata = tif.fei_metadata
    if not metadata:
        return None
    for section in ("Scan", "EScan", "IScan"):
        width_m = metadata.get(section, {}).get("PixelWidth")
        if width_m:
            return calibration_from_scale(float(width_m), "m")
    return None


def _zeiss_sem(tif: tifffile.TiffFile, page: Any) -> Calibration | None:
    metadata = tif.sem_metadata
    if not metadata or "ap_image_pixel_size" not in metadata:
        return None
    _, value, *unit = metadata["ap_image_pixel_size"]
    return calibration_from_scale(float(value), unit[0] if unit else "")


def _resolution_tags(tif: tifffile.TiffFile, page: Any) -> Calibration | None:
    unit = _RESOLUTION_UNITS.get(int(page.resolutionunit))
    x_px_per_unit = page.get_resolution()[0]
    if unit is None or x_px_per_unit <= 0 or 282 not in page.tags:
        return None
    return calibration_from_scale(1.0 / x_px_per_unit, unit)
