"""Microscope formats through RosettaSciIO: DigitalMicrograph .dm3/.dm4, EMD (Velox and Berkeley
NCEM) .emd, and TIA .ser.

Files are opened lazily, so the image shape is checked against the pixel limit before any data
are read, and only the chosen frame of a stack is loaded. A file may hold several signals (a
Velox file with HAADF, BF and DF images); the first one that is an image or an image stack is
used. Spectra, spectrum images and 4-D data are refused with a message saying so.
"""

from __future__ import annotations

import gc
import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import InvalidImage, NoCodeMLError
from pipelines.imaging.calibration import NO_CALIBRATION, Calibration, calibration_from_scale
from pipelines.imaging.pixels import analysis_pixels, check_frame, check_pixel_limit

log = logging.getLogger(__name__)

MICROSCOPE_READERS = {
    ".dm3": "rsciio.digitalmicrograph",
    ".dm4": "rsciio.digitalmicrograph",
    ".emd": "rsciio.emd",
    ".ser": "rsciio.tia",
}
_SPECTRAL_UNITS = {"ev", "kev", "mev"}
_RGBA_BYTES_PER_PX = 4


def read_microscope(
    path: Path, name: str, frame: int, max_pixels: int
) -> tuple[np.ndarray, Calibration, int]:
    """Read frame ``frame`` of the first image signal: ``(pixels, calibration, n_frames)``."""
    with _closing_hdf5_files(path):
        return _read_frame(path, name, frame, max_pixels)


def microscope_size(path: Path, name: str, max_pixels: int) -> tuple[int, int]:
    """``(height_px, width_px)`` of the first image signal, without reading its data."""
    with _closing_hdf5_files(path):
        shape = _first_image(path, name, max_pixels)[0].shape
    check_pixel_limit(name, shape[-2], shape[-1], max_pixels)
    return int(shape[-2]), int(shape[-1])


def _read_frame(
    path: Path, name: str, frame: int, max_pixels: int
) -> tuple[np.ndarray, Calibration, int]:
    data, axes = _first_image(path, name, max_pixels)
    n_frames = data.shape[0] if data.ndim == 3 else 1
    check_frame(name, frame, n_frames)
    check_pixel_limit(name, data.shape[-2], data.shape[-1], max_pixels)
    selected = data[frame] if data.ndim == 3 else data
    try:
        if hasattr(selected, "compute"):  # a lazy dask array: read just this frame
            selected = selected.compute(scheduler="synchronous")
        array = np.asarray(selected)
    except Exception as exc:  # a truncated file fails only here, inside the reader's memmap
        raise _unreadable(name, exc) from exc
    return analysis_pixels(name, array), _axes_calibration(axes), n_frames


@contextmanager
def _closing_hdf5_files(path: Path) -> Iterator[None]:
    """Release the HDF5 file that a lazy EMD read leaves open.

    RosettaSciIO's lazy Velox reader keeps h5py dataset handles alive through a reference cycle
    until the next garbage collection; while they live the user cannot overwrite (or, on
    Windows, move) the file. One collection after the read releases them.
    """
    try:
        yield
    finally:
        if path.suffix.lower() == ".emd":
            gc.collect()


def _first_image(path: Path, name: str, max_pixels: int) -> tuple[Any, list[dict[str, Any]]]:
    signals = _read_signals(path, name, max_pixels)
    reasons = []
    for signal in signals:
        image = _as_image(signal)
        if isinstance(image, str):
            reasons.append(image)
            continue
        return image
    what = reasons[0] if reasons else "no data"
    raise InvalidImage(
        f"{name} holds {what}, not an image; export a 2-D image from the microscope software"
    )


def _read_signals(path: Path, name: str, max_pixels: int) -> list[dict[str, Any]]:
    module_name = MICROSCOPE_READERS[path.suffix.lower()]
    try:
        reader = importlib.import_module(module_name)
    except ImportError as exc:  # .emd needs h5py, an optional part of rosettasciio
        raise NoCodeMLError(
            f"reading {path.suffix} files needs {exc.name or 'rosettasciio'}: "
            f"pip install 'rosettasciio[hdf5]' ({exc})"
        ) from exc
    options: dict[str, Any] = {"lazy": True}
    if module_name == "rsciio.emd":
        options["select_type"] = "images"  # Velox: skip EDS spectrum streams we cannot use
    # RosettaSciIO's parsers raise anything (struct.error, KeyError, IOError, ...) on a malformed
    # file, so every failure here is reported as an unreadable file; the traceback goes to the log.
    try:
        return reader.file_reader(str(path), **options)
    except Exception as exc:
        if not (isinstance(exc, ValueError) and "RGBA" in str(exc)):
            raise _unreadable(name, exc) from exc
    # DigitalMicrograph colour images cannot be opened lazily; bound their size by the file's.
    if path.stat().st_size > max_pixels * _RGBA_BYTES_PER_PX * 2:
        raise InvalidImage(
            f"{name} is a colour image larger than the limit of {max_pixels / 1e6:.0f} "
            "megapixels; crop or bin it first, or raise max_pixels"
        )
    try:
        return reader.file_reader(str(path), lazy=False)
    except Exception as exc:
        raise _unreadable(name, exc) from exc


def _as_image(signal: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]] | str:
    """``(data, axes)`` with size-1 axes dropped, or the reason this signal is not an image."""
    data = signal["data"]
    axes = list(signal.get("axes") or [])
    if len(axes) != data.ndim:
        axes = [{} for _ in range(data.ndim)]
    keep = [index for index, size in enumerate(data.shape) if size != 1]
    data = data[tuple(slice(None) if size != 1 else 0 for size in data.shape)]
    axes = [axes[index] for index in keep]
    units = {str(axis.get("units") or "").strip().lower() for axis in axes}
    if data.ndim < 2 or units & _SPECTRAL_UNITS:
        return "a spectrum or spectrum image"
    if data.ndim > 3:
        return f"{data.ndim}-D data (such as 4D-STEM)"
    if any(axis.get("navigate") is True for axis in axes[-2:]):
        return "a series of spectra"
    return data, axes


def _axes_calibration(axes: list[dict[str, Any]]) -> Calibration:
    x_axis, y_axis = axes[-1], axes[-2]
    if "scale" not in x_axis:
        return NO_CALIBRATION
    calibration = calibration_from_scale(float(x_axis["scale"]), str(x_axis.get("units") or ""))
    y_scale = y_axis.get("scale")
    if (
        calibration.nm_per_px is not None
        and y_scale is not None
        and y_axis.get("units") == x_axis.get("units")
        and abs(float(y_scale) - float(x_axis["scale"])) > 1e-3 * abs(float(x_axis["scale"]))
    ):
        log.warning(
            "pixels are not square (x %s, y %s %s); using the x pixel size",
            x_axis["scale"],
            y_scale,
            y_axis.get("units"),
        )
    return calibration


def _unreadable(name: str, exc: Exception) -> InvalidImage:
    """The file carries its format's signature (checked by the loader) yet fails to parse."""
    log.debug("RosettaSciIO could not read %s", name, exc_info=exc)
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return InvalidImage(
        f"{name} is truncated or damaged ({detail}); copy the file again from its source"
    )
