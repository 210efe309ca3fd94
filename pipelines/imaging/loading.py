"""One entry point for every image a user brings: checks first, then the reader for its format.

Order of checks: the file exists, its extension is supported, it is not empty, its header
matches an image format, its size is within the pixel limit (read from the header, before any
pixel data), the requested frame exists. Each failure is one InvalidImage line that names the
file and says what to do. PNG and JPEG are read with PIL (EXIF orientation applied, as labelme
does, so annotations line up), TIFF with tifffile, microscope formats with RosettaSciIO.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.errors import InvalidImage
from pipelines.imaging.calibration import NO_CALIBRATION, Calibration, resolve_calibration
from pipelines.imaging.microscope import MICROSCOPE_READERS, microscope_size, read_microscope
from pipelines.imaging.pixels import (
    DEFAULT_MAX_PIXELS,
    analysis_pixels,
    bit_depth,
    check_frame,
    check_pixel_limit,
)
from pipelines.imaging.tiff import TIFF_MAGICS, read_tiff, tiff_size

log = logging.getLogger(__name__)

_FORMAT_BY_EXTENSION = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dm3": "dm3",
    ".dm4": "dm4",
    ".emd": "emd",
    ".ser": "ser",
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_FORMAT_BY_EXTENSION)
MICROSCOPE_FORMATS = tuple(_FORMAT_BY_EXTENSION[extension] for extension in MICROSCOPE_READERS)
_MAGICS = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg"} | dict.fromkeys(
    TIFF_MAGICS, "tiff"
)
_DM_MAGICS = (b"\x00\x00\x00\x03", b"\x00\x00\x00\x04")  # big-endian version 3 or 4
_SER_MAGIC = b"II\x97\x01"  # little-endian byte order mark, TIA series id 0x0197
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_MAGIC_OFFSETS = (0, 512, 1024, 2048)  # after a user block, if any
_HEAD_BYTES = 2048 + len(_HDF5_MAGIC)
# PIL's decompression-bomb limit is a process-wide setting; we set it to our own limit for the
# duration of one open, under a lock, and do the exact check ourselves from the header.
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass(eq=False)
class LoadedImage:
    """An image ready for analysis.

    ``pixels``: ``(H, W)`` greyscale, ``uint8``, ``uint16`` or ``float32`` (colour files become
    luma). ``rgb``: ``(H, W, 3)`` original colours, only for colour files loaded with
    ``keep_rgb=True``. ``frame`` is the index read out of ``n_frames`` (TIFF pages, stack
    frames). ``path`` is None for uploads; ``name`` is the file name used in messages.
    """

    pixels: np.ndarray
    calibration: Calibration
    path: Path | None
    name: str
    file_format: str
    bit_depth: int
    frame: int = 0
    n_frames: int = 1
    rgb: np.ndarray | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def nm_per_px(self) -> float | None:
        return self.calibration.nm_per_px


# Picture formats people have that we do not read: named in "no images" messages, so the user
# learns to convert them instead of wondering why the folder looks empty to us.
OTHER_PICTURE_SUFFIXES = frozenset(
    {".bmp", ".gif", ".webp", ".heic", ".jp2", ".j2k", ".ppm", ".pgm", ".tga", ".svg"}
)


def unsupported_pictures(files: Sequence[Path]) -> str:
    """`` (3 .bmp files there are not a type we read: save them as TIFF or PNG)`` or ``""``."""
    others = [p for p in files if p.suffix.lower() in OTHER_PICTURE_SUFFIXES]
    if not others:
        return ""
    kinds = "/".join(sorted({p.suffix.lower() for p in others}))
    return (
        f" ({len(others)} {kinds} file{'s' if len(others) > 1 else ''} there "
        f"{'are' if len(others) > 1 else 'is'} not a type we read: save them as TIFF or PNG)"
    )


def load_image(
    path: str | Path,
    *,
    frame: int = 0,
    nm_per_px: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_rgb: bool = False,
) -> LoadedImage:
    """Read an image file (see ``SUPPORTED_EXTENSIONS``) and its pixel size.

    ``nm_per_px`` overrides the file's calibration (source ``"user"``). ``frame`` picks the page
    of a multi-page TIFF or the frame of a microscope image stack. Raises InvalidImage for
    missing, empty, unsupported, damaged or oversized files, InvalidInput for a bad frame index
    or pixel size.
    """
    file_path, name = Path(path), str(path)
    file_format = _sniff(
        name, _read_head(file_path, name), _format_from_name(name, file_path.suffix)
    )
    if file_format in MICROSCOPE_FORMATS:
        pixels, calibration, n_frames = read_microscope(file_path, name, frame, max_pixels)
        rgb = None
    elif file_format == "tiff":
        pixels, calibration, n_frames, rgb = read_tiff(file_path, name, frame, max_pixels, keep_rgb)
    else:
        pixels, n_frames, rgb = _read_pil(file_path, name, frame, max_pixels, keep_rgb)
        calibration = NO_CALIBRATION
    return LoadedImage(
        pixels=finite_pixels(pixels, name),
        calibration=resolve_calibration(calibration, nm_per_px),
        path=file_path,
        name=file_path.name,
        file_format=file_format,
        bit_depth=bit_depth(pixels),
        frame=frame,
        n_frames=n_frames,
        rgb=rgb,
    )


def load_image_bytes(
    data: bytes,
    filename: str,
    *,
    frame: int = 0,
    nm_per_px: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_rgb: bool = False,
) -> LoadedImage:
    """:func:`load_image` for an upload: ``filename`` gives the format and the name in messages.

    Microscope formats are read by RosettaSciIO from a temporary copy, which is removed after.
    """
    name = Path(filename).name
    file_format = _format_from_name(name, Path(name).suffix)
    file_format = _sniff(name, data[:_HEAD_BYTES], file_format)
    rgb = None
    if file_format == "tiff":
        pixels, calibration, n_frames, rgb = read_tiff(
            io.BytesIO(data), name, frame, max_pixels, keep_rgb
        )
    elif file_format in ("png", "jpeg"):
        pixels, n_frames, rgb = _read_pil(io.BytesIO(data), name, frame, max_pixels, keep_rgb)
        calibration = NO_CALIBRATION
    else:
        with tempfile.TemporaryDirectory(prefix="nocode-upload-") as folder:
            copy = Path(folder) / f"upload{Path(name).suffix.lower()}"
            copy.write_bytes(data)
            pixels, calibration, n_frames = read_microscope(copy, name, frame, max_pixels)
    return LoadedImage(
        pixels=finite_pixels(pixels, name),
        calibration=resolve_calibration(calibration, nm_per_px),
        path=None,
        name=name,
        file_format=file_format,
        bit_depth=bit_depth(pixels),
        frame=frame,
        n_frames=n_frames,
        rgb=rgb,
    )


def finite_pixels(pixels: np.ndarray, name: str) -> np.ndarray:
    """Float pixels with NaN or infinity replaced by the median of the others.

    Aligned or drift-corrected stacks pad with NaN; left in, one such pixel turns a whole tile
    of the network's maps into NaN and its objects vanish. The median reads as plain support.
    """
    if pixels.dtype.kind != "f":
        return pixels
    finite = np.isfinite(pixels)
    if finite.all():
        return pixels
    if not finite.any():
        raise InvalidImage(f"{name} holds no finite pixel values (all NaN or infinite)")
    filled = np.where(finite, pixels, np.median(pixels[finite])).astype(pixels.dtype)
    log.warning(
        "%s: %d NaN or infinite pixels set to the image's median value",
        name,
        int(finite.size - np.count_nonzero(finite)),
    )
    return filled


def image_size(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(height_px, width_px)`` of the first frame, read from the header where the format allows.

    Same checks as :func:`load_image` (an image over ``max_pixels`` raises InvalidImage).
    """
    file_path, name = Path(path), str(path)
    file_format = _sniff(
        name, _read_head(file_path, name), _format_from_name(name, file_path.suffix)
    )
    if file_format == "tiff":
        return tiff_size(file_path, name, max_pixels)
    if file_format in MICROSCOPE_FORMATS:
        return microscope_size(file_path, name, max_pixels)
    with _pil_open(file_path, name, max_pixels) as image:
        return _oriented_size(image)


def _read_head(file_path: Path, name: str) -> bytes:
    """The first bytes of the file, for :func:`_sniff`; missing or unreadable files stop here."""
    if not file_path.is_file():
        raise InvalidImage(f"{name}: no such file; check the path and the file name")
    try:
        with open(file_path, "rb") as handle:
            return handle.read(_HEAD_BYTES)
    except OSError as exc:
        raise InvalidImage(
            f"{name} cannot be read ({exc.strerror}); check its permissions"
        ) from exc


def _format_from_name(name: str, suffix: str) -> str:
    file_format = _FORMAT_BY_EXTENSION.get(suffix.lower())
    if file_format is None:
        shown = f"'{suffix}' files are" if suffix else "files without an extension are"
        raise InvalidImage(
            f"{name}: {shown} not supported; save the image as one of "
            f"{', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return file_format


def _sniff(name: str, head: bytes, file_format: str) -> str:
    """Check the first bytes: catches empty files and text renamed to .png before any parser.

    PNG, JPEG and TIFF are told apart by content (a PNG saved as .tif is read as PNG); a
    microscope file must carry its own format's signature.
    """
    if not head:
        raise InvalidImage(f"{name} is empty (0 bytes); copy or export the image again")
    if file_format in ("dm3", "dm4"):
        matches = head[:4] in _DM_MAGICS
    elif file_format == "ser":
        matches = head.startswith(_SER_MAGIC)
    elif file_format == "emd":
        matches = any(
            head[offset : offset + len(_HDF5_MAGIC)] == _HDF5_MAGIC
            for offset in _HDF5_MAGIC_OFFSETS
        )
    else:
        matches = False
        for magic, actual in _MAGICS.items():
            if head.startswith(magic):
                if actual != file_format:
                    log.info("%s is a %s file despite its extension; reading it so", name, actual)
                return actual
    if matches:
        return file_format
    raise InvalidImage(
        f"{name} is not an image file we can read (supported: {', '.join(SUPPORTED_EXTENSIONS)}); "
        "check that it is not damaged or a different kind of file renamed"
    )


def _pil_open(source: Path | IO[bytes], name: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) with PIL's bomb check at our limit, then check it exactly."""
    try:
        with _PIL_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                image = Image.open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except Image.DecompressionBombError as exc:  # over twice our limit: PIL refused it
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" ({int(found.group(1)) / 1e6:.0f} megapixels)" if found else ""
        raise InvalidImage(
            f"{name} is too large{size}, over the limit of {max_pixels / 1e6:.0f} megapixels; "
            "crop or bin it first, or raise max_pixels"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidImage(
            f"{name} is not an image file we can read (supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)}); check that it is not damaged or renamed"
        ) from exc
    try:
        check_pixel_limit(name, image.height, image.width, max_pixels)
    except InvalidImage:
        image.close()
        raise
    return image


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """``(height, width)`` after the EXIF rotation that loading applies."""
    if image.format == "PNG" and "exif" not in image.info:
        # PIL would decode the whole PNG to look for an eXIf chunk after the pixel data.
        return image.height, image.width
    orientation = image.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):  # 90 or 270 degree rotations swap the sides
        return image.width, image.height
    return image.height, image.width


def _read_pil(
    source: Path | IO[bytes], name: str, frame: int, max_pixels: int, keep_rgb: bool
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """PNG/JPEG -> ``(pixels, n_frames, rgb or None)``."""
    with _pil_open(source, name, max_pixels) as image:
        n_frames = int(getattr(image, "n_frames", 1))
        check_frame(name, frame, n_frames)
        try:
            if frame:
                image.seek(frame)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
        except (OSError, ValueError, EOFError, SyntaxError) as exc:
            raise InvalidImage(
                f"{name} is truncated or damaged ({exc}); copy the file again from its source"
            ) from exc
        grey, rgb = _pil_to_arrays(image, keep_rgb)
    return analysis_pixels(name, grey), n_frames, rgb


def _pil_to_arrays(image: Image.Image, keep_rgb: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """PIL image -> (grey, rgb or None); ``np.array`` because PIL's own buffer is read-only."""
    mode = image.mode
    if mode in ("L", "F") or mode.startswith("I;16"):
        return np.array(image), None
    if mode == "I":  # PIL's 32-bit integer mode, also used for some 16-bit files
        values = np.array(image)
        if values.size and values.min() >= 0 and values.max() <= np.iinfo(np.uint16).max:
            return values.astype(np.uint16), None
        return values, None  # becomes float32 downstream
    if mode in ("1", "LA", "La"):
        return np.array(image.convert("L")), None
    if mode == "P" and image.palette is not None and image.palette.mode == "L":
        return np.array(image.convert("L")), None
    grey = np.array(image.convert("L"))
    rgb = np.array(image.convert("RGB")) if keep_rgb else None
    return grey, rgb
