"""Turning whatever a reader returns into the analysis array, and the guards every reader shares.

Contract of the analysis array: ``(H, W)`` greyscale, ``uint8``, ``uint16`` or ``float32``.
Other integer and float types become ``float32`` (exact for the ``int16`` data DigitalMicrograph
often writes); colour becomes luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, as PIL's ``"L"``).
"""

from __future__ import annotations

import numpy as np

from pipelines.errors import InvalidImage, InvalidInput

DEFAULT_MAX_PIXELS = 20_000 * 20_000
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_LUMA_BLOCK_PX = 1 << 22


def check_pixel_limit(name: str, height_px: int, width_px: int, max_pixels: int) -> None:
    """Refuse an image over ``max_pixels`` before its data are read (decompression bombs)."""
    if height_px * width_px > max_pixels:
        raise InvalidImage(
            f"{name} is {width_px} x {height_px} pixels "
            f"({height_px * width_px / 1e6:.0f} megapixels), over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels; crop or bin it first, or raise max_pixels"
        )


def check_frame(name: str, frame: int, n_frames: int) -> None:
    """Refuse a frame index the file does not have."""
    if not 0 <= frame < n_frames:
        raise InvalidInput(
            f"frame {frame} does not exist: {name} has {n_frames} frame(s), "
            f"numbered 0 to {n_frames - 1}"
        )


def luma(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, >=3)`` colour -> ``(H, W)`` luma; uint8/uint16 stay so, other types give float32.

    Computed in blocks of rows so the float32 temporaries stay small for very large images.
    """
    height, width = rgb.shape[:2]
    integer = rgb.dtype in (np.uint8, np.uint16)
    grey = np.empty((height, width), dtype=rgb.dtype if integer else np.float32)
    rows_per_block = max(1, _LUMA_BLOCK_PX // max(width, 1))
    weights = [np.float32(weight) for weight in LUMA_WEIGHTS]
    for top in range(0, height, rows_per_block):
        block = rgb[top : top + rows_per_block]
        value = block[..., 0] * weights[0]
        value += block[..., 1] * weights[1]
        value += block[..., 2] * weights[2]
        if integer:
            np.rint(value, out=value)
        grey[top : top + rows_per_block] = value
    return grey


def analysis_pixels(name: str, array: np.ndarray) -> np.ndarray:
    """Normalise a reader's 2-D array to the analysis contract (dtype and byte order)."""
    if array.dtype.names is not None:  # DigitalMicrograph RGBA stored as a record per pixel
        array = np.stack([array["R"], array["G"], array["B"]], axis=-1)
        return analysis_pixels(name, luma(array))
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {array.shape}")
    if np.iscomplexobj(array):
        raise InvalidImage(
            f"{name} holds complex (Fourier-space) data, not an image; "
            "export the real-space image from the microscope software"
        )
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype.kind not in "uif":
        raise InvalidImage(f"{name} holds {array.dtype} values, not image intensities")
    if array.dtype in (np.uint8, np.uint16, np.float32):
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array, dtype=np.float32)


def bit_depth(pixels: np.ndarray) -> int:
    """Bits per pixel of the analysis array: 8, 16 or 32."""
    return pixels.dtype.itemsize * 8
