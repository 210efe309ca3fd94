"""Images with calibration: the one place that reads image files and their pixel size.

Formats: PNG, JPEG (PIL), TIFF (tifffile: 8/16-bit, float, RGB, multi-page), DigitalMicrograph
.dm3/.dm4, EMD (Velox and Berkeley) and TIA .ser (RosettaSciIO). Every loader returns a
:class:`LoadedImage` whose ``pixels`` are ``(H, W)`` greyscale ``uint8``/``uint16``/``float32``
and whose :class:`Calibration` says how many nanometres one pixel is and where that came from
(``"file"``, ``"user"`` or ``"none"``). Bad files raise one-line
:class:`~pipelines.errors.InvalidImage` errors; images over ``max_pixels`` are refused from the
header, before their data are read.

Example::

    image = load_image("particles.dm4", nm_per_px=None)
    image.pixels.shape, image.calibration.nm_per_px, image.calibration.source
    preview = to_rgb8(image.pixels)  # (H, W, 3) uint8
"""

from pipelines.imaging.calibration import Calibration, calibration_from_scale, nm_per_unit
from pipelines.imaging.display import display_limits, grey8_png, to_float01, to_grey8, to_rgb8
from pipelines.imaging.loading import (
    SUPPORTED_EXTENSIONS,
    LoadedImage,
    image_size,
    load_image,
    load_image_bytes,
    unsupported_pictures,
)
from pipelines.imaging.pixels import DEFAULT_MAX_PIXELS
from pipelines.imaging.tiff import write_tiff

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "Calibration",
    "LoadedImage",
    "calibration_from_scale",
    "display_limits",
    "grey8_png",
    "image_size",
    "load_image",
    "load_image_bytes",
    "nm_per_unit",
    "to_float01",
    "to_grey8",
    "to_rgb8",
    "unsupported_pictures",
    "write_tiff",
]
