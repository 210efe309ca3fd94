"""Outlines drawn onto an 8-bit preview: what the user sees of labels and detections."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from pipelines.formats.labelme import Shape


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def draw_shapes(
    image: Image.Image,
    shapes: Sequence[Shape],
    colour_for_label: Callable[[str], str],
    scale: float = 1.0,
    line_width_px: int = 2,
    fill_alpha: int = 50,
) -> Image.Image:
    """A copy of ``image`` with polygons (filled lightly) and rectangles outlined.

    ``scale`` maps image pixels to ``image`` pixels (a down-scaled preview has ``scale < 1``);
    LabelMe coordinates put pixel centres at integers, hence the half-pixel shift.
    """
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for shape in shapes:
        points = (np.asarray(shape.points, dtype=float) + 0.5) * scale
        red, green, blue = _rgb(colour_for_label(shape.label))
        if shape.shape_type == "rectangle":
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            draw.rectangle([x0, y0, x1, y1], outline=(red, green, blue, 255), width=line_width_px)
        elif shape.shape_type == "polygon" and len(points) >= 3:
            xy = [tuple(p) for p in points]
            draw.polygon(xy, fill=(red, green, blue, fill_alpha))
            draw.line([*xy, xy[0]], fill=(red, green, blue, 255), width=line_width_px)
    return Image.alpha_composite(base, layer).convert("RGB")


def draw_tags(
    image: Image.Image, tags: Sequence[tuple[float, float, str]], scale: float = 1.0
) -> Image.Image:
    """A copy of ``image`` with short texts (``x, y, text`` in image pixels) on white boxes:
    the numbers the page's lists use for crops and outlines, so the list and the picture meet.
    """
    from PIL import ImageFont

    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=14)
    for x, y, text in tags:
        left, top = (x + 0.5) * scale, (y + 0.5) * scale
        box = draw.textbbox((left, top), text, font=font)
        draw.rectangle([box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1], fill=(255, 255, 255))
        draw.text((left, top), text, fill=(0, 0, 0), font=font)
    return out


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
