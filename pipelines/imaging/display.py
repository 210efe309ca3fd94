"""Display scaling: 16-bit and float microscope data mapped to [0, 1] or to an 8-bit RGB preview.

Percentile limits (1, 99.8) rather than min/max because a few hot pixels or a dead row would
otherwise squeeze the whole image into a handful of grey levels. For large images the
percentiles come from a regular subsample (at most ~4 million pixels): the limits change by a
grey level or less and the cost stays flat.
"""

from __future__ import annotations

import io

import numpy as np

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
_PERCENTILE_SAMPLE_PX = 4_000_000


def display_limits(
    pixels: np.ndarray,
    low_percentile: float = LOW_PERCENTILE,
    high_percentile: float = HIGH_PERCENTILE,
) -> tuple[float, float]:
    """The intensities that map to black and white; falls back to min/max on flat histograms."""
    sample = pixels
    if pixels.size > _PERCENTILE_SAMPLE_PX:
        step = int(np.ceil(np.sqrt(pixels.size / _PERCENTILE_SAMPLE_PX)))
        sample = pixels[::step, ::step]
    sample = sample.reshape(-1)
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, (low_percentile, high_percentile))
    if high <= low:
        low, high = sample.min(), sample.max()
    return float(low), float(high)


def to_float01(
    pixels: np.ndarray,
    low_percentile: float = LOW_PERCENTILE,
    high_percentile: float = HIGH_PERCENTILE,
) -> np.ndarray:
    """``(H, W)`` (or ``(H, W, C)``) intensities -> float32 in [0, 1] by percentile stretch.

    One float32 copy of the input; NaN and infinite values become 0. A flat image gives zeros.
    """
    low, high = display_limits(pixels, low_percentile, high_percentile)
    out = pixels.astype(np.float32, copy=True)
    if high > low:
        out -= np.float32(low)
        out *= np.float32(1.0 / (high - low))
    else:
        out[...] = 0.0
    np.nan_to_num(out, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 preview for overlays and the app.

    8-bit data are shown as they are (what the user sees in any viewer, and what labelme shows);
    16-bit and float data are percentile-stretched. Accepts ``(H, W)`` greyscale or
    ``(H, W, 3|4)`` colour (alpha is dropped).
    """
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        colour = pixels[..., :3]
        if colour.dtype == np.uint8:
            return np.ascontiguousarray(colour)
        return _to_uint8(to_float01(colour))
    if pixels.ndim != 2:
        raise ValueError(f"expected (H, W) or (H, W, 3|4) pixels, got shape {pixels.shape}")
    return np.repeat(to_grey8(pixels)[:, :, np.newaxis], 3, axis=2)


def to_grey8(pixels: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 view of greyscale pixels, by the rule of :func:`to_rgb8`."""
    return pixels if pixels.dtype == np.uint8 else _to_uint8(to_float01(pixels))


def grey8_png(pixels: np.ndarray) -> bytes:
    """:func:`to_grey8` as PNG: the picture a LabelMe file carries for an image labelme cannot
    read itself (dm3, dm4, emd, ser), the same whoever writes the file."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(to_grey8(pixels))).save(buffer, format="PNG")
    return buffer.getvalue()


def _to_uint8(unit_interval: np.ndarray) -> np.ndarray:
    unit_interval *= 255.0
    unit_interval += 0.5
    return unit_interval.astype(np.uint8)
