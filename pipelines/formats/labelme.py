"""LabelMe JSON: the one reader/writer of the format.

Lenient on read like labelme itself (a missing ``shape_type`` means polygon, unknown keys are
kept and written back), strict where a wrong value would silently corrupt statistics (polygons
with fewer than 3 points, self-intersecting outlines, shapes outside the image, an ``imagePath``
that leaves the file's folder). Errors name the shape: ``shapes[12]``.

Coordinates: LabelMe stores ``[x, y]`` points; we keep them as an ``(N, 2)`` float array of
``(x, y)`` in image pixels, with pixel centres at integer coordinates (the PIL/scikit-image
convention). Conversion to row/column happens only in :mod:`pipelines.formats.masks`.

Convention: rectangles labelled ``crop`` (any case) mark fully-labelled training regions; a file
without a crop counts as labelled everywhere. A crop clicked as four corners with the polygon
tool is read as the rectangle inside them; any other crop shape is refused, so it never turns
into an object class. Rectangles saved with four corners (X-AnyLabeling) become two.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from pipelines.errors import InvalidLabels
from pipelines.fileio import atomic_write_text

log = logging.getLogger(__name__)

LABELME_VERSION = "5.5.0"
CROP_LABEL = "crop"
# Our top-level object in a LabelMe file: pixel size, calibration source, model provenance.
# labelme keeps unknown keys, so it survives corrections.
METADATA_KEY = "nocode_ml"
SHAPE_TYPES = ("polygon", "rectangle", "circle", "point", "line", "linestrip", "points")
AREA_SHAPE_TYPES = ("polygon", "rectangle", "circle")
MIN_POINTS = {
    "polygon": 3,
    "rectangle": 2,
    "circle": 2,
    "point": 1,
    "line": 2,
    "linestrip": 2,
    "points": 1,
}
# How far (px) a vertex may lie outside the image before the shape counts as outside: labelme
# lets a click land on the last pixel's outer edge, and contours of border objects touch it.
OUTSIDE_TOLERANCE_PX = 1.0
# How far a corner of a crop clicked as a polygon may be from its bounding box's corner: the
# larger of 2 px and 5 % of the box's shorter side (a steady hand on a zoomed-out image).
CROP_CORNER_TOLERANCE_PX = 2.0
CROP_CORNER_TOLERANCE_SHARE = 0.05
MAX_JSON_BYTES = 512 * 1024 * 1024
# Image files labelme reads itself (through Pillow). A LabelMe file for any other image (dm3,
# dm4, emd, ser) carries the picture as imageData, or labelme cannot open it.
LABELME_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
_SHAPE_KEYS = ("label", "points", "group_id", "description", "shape_type", "flags")
_TOP_KEYS = ("version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth")


@dataclass(eq=False)
class Shape:
    """One LabelMe shape; ``points`` is ``(N, 2)`` float64 ``(x, y)`` in image pixels."""

    label: str
    points: np.ndarray
    shape_type: str = "polygon"
    group_id: int | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 2)
        if self.shape_type == "rectangle" and len(self.points) > 2:
            self.points = _two_corners(self.points)

    @property
    def is_crop(self) -> bool:
        return is_crop_label(self.label) and self.shape_type == "rectangle"

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)``; a circle's bounds cover the whole disk."""
        if self.shape_type == "circle":
            (cx, cy), (px, py) = self.points[0], self.points[1]
            radius = math.hypot(px - cx, py - cy)
            return cx - radius, cy - radius, cx + radius, cy + radius
        x_min, y_min = self.points.min(axis=0)
        x_max, y_max = self.points.max(axis=0)
        return float(x_min), float(y_min), float(x_max), float(y_max)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "label": self.label,
            "points": np.asarray(self.points, dtype=np.float64).reshape(-1, 2).tolist(),
            "group_id": self.group_id,
            "description": self.description,
            "shape_type": self.shape_type,
            "flags": dict(self.flags),
        }
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class Box:
    """Axis-aligned region in pixel indices: rows ``[top, bottom)``, columns ``[left, right)``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area_px(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices for indexing an ``(H, W)`` array."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


@dataclass(eq=False)
class LabelMeDocument:
    """A LabelMe file in memory. ``source`` is the JSON path it was read from, if any."""

    shapes: list[Shape]
    image_path: str
    image_height: int
    image_width: int
    image_data: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    version: str = LABELME_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def object_shapes(self) -> list[Shape]:
        """Every shape except crop rectangles."""
        return [shape for shape in self.shapes if not shape.is_crop]

    @property
    def crop_shapes(self) -> list[Shape]:
        return [shape for shape in self.shapes if shape.is_crop]

    def crop_boxes(self) -> list[Box]:
        """Crop rectangles as pixel boxes clipped to the image (pixel centres inside the box)."""
        boxes = []
        for shape in self.crop_shapes:
            x_min, y_min, x_max, y_max = shape.bounds()
            box = Box(
                left=max(0, math.ceil(x_min)),
                top=max(0, math.ceil(y_min)),
                right=min(self.image_width, math.floor(x_max) + 1),
                bottom=min(self.image_height, math.floor(y_max) + 1),
            )
            if box.area_px > 0:
                boxes.append(box)
        return boxes

    def labelled_boxes(self) -> list[Box]:
        """Regions whose every object is outlined: the crops, or the whole image without any."""
        boxes = self.crop_boxes()
        if boxes or self.crop_shapes:
            return boxes
        return [Box(0, 0, self.image_width, self.image_height)]

    def class_names(self) -> list[str]:
        """Sorted object labels (crops excluded)."""
        return sorted({shape.label for shape in self.object_shapes})

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "flags": dict(self.flags),
            "shapes": [shape.to_dict() for shape in self.shapes],
            "imagePath": self.image_path,
            "imageData": self.image_data,
            "imageHeight": int(self.image_height),
            "imageWidth": int(self.image_width),
        }
        data.update(self.extra)
        return data


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_crop_label(label: str) -> bool:
    """``crop``, ``Crop`` or `` CROP ``: people type the label by hand in labelme."""
    return label.strip().lower() == CROP_LABEL


def _two_corners(points: np.ndarray) -> np.ndarray:
    """The ``[[x_min, y_min], [x_max, y_max]]`` of a rectangle given by any of its corners."""
    return np.array([points.min(axis=0), points.max(axis=0)])


def _drawn_rectangle(points: np.ndarray) -> np.ndarray | None:
    """A crop clicked as four corners with the polygon tool: the two corners of the largest
    axis-aligned rectangle inside them (all of it is in what the user outlined), or ``None``
    when the polygon is not near enough a rectangle."""
    if len(points) == 5 and np.allclose(points[0], points[-1]):
        points = points[:-1]
    if len(points) != 4:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    tolerance = max(CROP_CORNER_TOLERANCE_PX, CROP_CORNER_TOLERANCE_SHARE * min(high - low))
    if np.any(high - low <= 2 * tolerance):
        return None
    at_high = points > (low + high) / 2  # which side of the centre, per axis
    corners = at_high[:, 0] * 2 + at_high[:, 1]
    off = np.abs(points - np.where(at_high, high, low)).max(axis=1)
    if len(set(corners.tolist())) != 4 or np.any(off > tolerance):
        return None
    inner_low = [points[~at_high[:, axis], axis].max() for axis in (0, 1)]
    inner_high = [points[at_high[:, axis], axis].min() for axis in (0, 1)]
    return np.array([inner_low, inner_high])


def _parse_shape(raw: Any, index: int, where: str) -> Shape:
    name = f"{where}: shapes[{index}]"
    if not isinstance(raw, dict):
        raise InvalidLabels(f"{name} is not an object; each shape needs 'label' and 'points'")
    label = raw.get("label")
    if not isinstance(label, str) or not label.strip():
        raise InvalidLabels(f"{name} has no label; give every shape a class name")
    shape_type = raw.get("shape_type") or "polygon"
    if shape_type not in SHAPE_TYPES:
        raise InvalidLabels(
            f"{name} ('{label}') has shape_type '{shape_type}'; supported: {', '.join(SHAPE_TYPES)}"
        )
    points = raw.get("points")
    if (
        not isinstance(points, list)
        or not all(isinstance(p, list | tuple) and len(p) == 2 for p in points)
        or not all(_number(v) for p in points for v in p)
    ):
        raise InvalidLabels(f"{name} ('{label}') has malformed points; expected [[x, y], ...]")
    needed = MIN_POINTS[shape_type]
    if len(points) < needed:
        raise InvalidLabels(
            f"{name} ('{label}'): {shape_type} has {len(points)} point"
            f"{'s' if len(points) != 1 else ''}; a {shape_type} needs at least {needed}"
        )
    group_id = raw.get("group_id")
    if group_id is not None and not isinstance(group_id, int):
        raise InvalidLabels(f"{name} ('{label}') has a non-integer group_id {group_id!r}")
    flags = raw.get("flags") or {}
    if not isinstance(flags, dict):
        raise InvalidLabels(f"{name} ('{label}') has flags that are not an object")
    extra = {k: v for k, v in raw.items() if k not in _SHAPE_KEYS}
    points = np.asarray(points, dtype=np.float64)
    if is_crop_label(label) and shape_type != "rectangle":
        drawn = _drawn_rectangle(points) if shape_type == "polygon" else None
        if drawn is None:
            raise InvalidLabels(
                f"{name} ('{label}') is a {shape_type}, but a crop must be a rectangle; "
                "redraw it with labelme's Create Rectangle tool"
            )
        shape_type, points = "rectangle", drawn
    return Shape(
        label=label,
        points=points,
        shape_type=shape_type,
        group_id=group_id,
        flags=flags,
        description=raw.get("description") or "",
        extra=extra,
    )


def _image_size_from_data(image_data: str, where: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(base64.b64decode(image_data))) as image:
            return image.height, image.width
    except (ValueError, UnidentifiedImageError, OSError) as error:
        raise InvalidLabels(f"{where}: imageData is not a readable image ({error})") from error


def check_polygons_simple(shapes: Sequence[Shape], where: str = "labels") -> None:
    """Raise if a polygon crosses itself: its area (and so D) would be meaningless."""
    import shapely

    polygons = [(i, s) for i, s in enumerate(shapes) if s.shape_type == "polygon"]
    if not polygons:
        return
    coords = np.concatenate([s.points for _, s in polygons])
    indices = np.repeat(np.arange(len(polygons)), [len(s.points) for _, s in polygons])
    geometries = shapely.polygons(shapely.linearrings(coords, indices=indices))
    valid = shapely.is_valid(geometries)
    if valid.all():
        return
    first = int(np.flatnonzero(~valid)[0])
    index, shape = polygons[first]
    if shapely.area(shapely.convex_hull(geometries[first])) == 0:  # a bow tie has area 0 too
        raise InvalidLabels(
            f"{where}: shapes[{index}] ('{shape.label}') is a polygon with no area (its points "
            "lie on one line or repeat); redraw its outline or delete it"
        )
    raise InvalidLabels(
        f"{where}: shapes[{index}] ('{shape.label}') is a self-intersecting polygon; "
        "redraw its outline so the edges do not cross"
    )


def check_inside_image(
    shapes: Iterable[Shape], height: int, width: int, where: str = "labels"
) -> None:
    """Raise if a shape lies outside the image (beyond a small tolerance).

    A crop only has to overlap the image: :meth:`LabelMeDocument.crop_boxes` clips it, and
    other tools than labelme let a rectangle run past the border.
    """
    tol = OUTSIDE_TOLERANCE_PX
    for index, shape in enumerate(shapes):
        x_min, y_min, x_max, y_max = shape.bounds()
        if shape.is_crop:
            x_min, y_min = max(x_min, -0.5), max(y_min, -0.5)
            x_max, y_max = min(x_max, width - 0.5), min(y_max, height - 0.5)
            if x_max - x_min <= 0 or y_max - y_min <= 0:
                raise InvalidLabels(
                    f"{where}: shapes[{index}] ('{shape.label}') is a crop outside the "
                    f"{width}x{height} image; is this the JSON of another image?"
                )
            continue
        if shape.shape_type == "circle":
            x_min, y_min, x_max, y_max = (*shape.points[0], *shape.points[0])
        if (
            x_min < -0.5 - tol
            or y_min < -0.5 - tol
            or x_max > width - 0.5 + tol
            or (y_max > height - 0.5 + tol)
        ):
            raise InvalidLabels(
                f"{where}: shapes[{index}] ('{shape.label}') lies outside the "
                f"{width}x{height} image; is this the JSON of another image?"
            )


def parse_labelme(data: Any, where: str = "labels", *, validate: bool = True) -> LabelMeDocument:
    """Build a :class:`LabelMeDocument` from decoded JSON, validating every shape."""
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise InvalidLabels(
            f"{where} is not a LabelMe file: it has no 'shapes' list "
            "(save it from labelme, or export it from No Code ML)"
        )
    version = data.get("version") or LABELME_VERSION
    if not isinstance(version, str) or version.split(".")[0] not in {"3", "4", "5", "6", "7"}:
        log.warning("%s: unknown LabelMe version %r; reading it anyway", where, version)
    shapes = [_parse_shape(raw, i, where) for i, raw in enumerate(data["shapes"])]
    image_data = data.get("imageData") or None
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        if image_data is None:
            raise InvalidLabels(
                f"{where} lacks imageHeight/imageWidth; open it in labelme and save it again"
            )
        height, width = _image_size_from_data(image_data, where)
    image_path = data.get("imagePath") or ""
    if not isinstance(image_path, str):
        raise InvalidLabels(f"{where}: imagePath must be a string")
    flags = data.get("flags") or {}
    if not isinstance(flags, dict):
        raise InvalidLabels(f"{where}: flags must be an object")
    document = LabelMeDocument(
        shapes=shapes,
        image_path=image_path,
        image_height=height,
        image_width=width,
        image_data=image_data,
        flags=flags,
        version=str(version),
        extra={k: v for k, v in data.items() if k not in _TOP_KEYS},
    )
    if validate:
        check_inside_image(document.shapes, height, width, where)
        check_polygons_simple(document.shapes, where)
    return document


def read_labelme(path: str | os.PathLike[str], *, validate: bool = True) -> LabelMeDocument:
    """Read and validate a LabelMe JSON file."""
    path = Path(path)
    where = path.name
    try:
        size = path.stat().st_size
    except OSError as error:
        raise InvalidLabels(f"cannot open {path}: {error.strerror or error}") from error
    if size > MAX_JSON_BYTES:
        raise InvalidLabels(
            f"{where} is {size / 2**20:.0f} MiB; LabelMe files over 512 MiB are refused"
        )
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InvalidLabels(f"cannot read {path}: {error.strerror or error}") from error
    document = labelme_from_bytes(raw, where, validate=validate)
    document.source = path
    return document


def labelme_from_bytes(raw: bytes, where: str, *, validate: bool = True) -> LabelMeDocument:
    """Parse a LabelMe file's content (an upload, say); ``where`` names it in messages."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        if error.pos == 0:
            raise InvalidLabels(
                f"{where} is not a LabelMe JSON file (it is not JSON text at all): give the "
                ".json file that labelme saved for the image"
            ) from error
        raise InvalidLabels(
            f"{where} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "give the .json file that labelme saved, or mend it at that place"
        ) from error
    except UnicodeDecodeError as error:
        # NUL bytes early on: binary data (every image header has them), usually an image
        # handed where its labels belong; text in another encoding has none.
        if b"\x00" in raw[:4096]:
            raise InvalidLabels(
                f"{where} is not a LabelMe JSON file (it holds binary data, such as an image): "
                "give the .json file that labelme saved for the image"
            ) from error
        raise InvalidLabels(
            f"{where} is not UTF-8 text (byte {error.start}); save it as UTF-8, as labelme does"
        ) from error
    return parse_labelme(data, where, validate=validate)


_SHAPES_SLOT = "\x00shapes\x00"


def labelme_text(document: LabelMeDocument) -> str:
    """LabelMe JSON text: the document indented as labelme writes it, one shape per line.

    Indenting every coordinate runs Python's slow JSON encoder and puts each number on its own
    line; a compact line per shape (C encoder) writes 10 000 outlines in 0.25-0.45 s instead
    of 0.6 s, and 4 MB instead of 10 MB. labelme reads either.
    """
    data = document.to_dict()
    shapes = data["shapes"]
    data["shapes"] = _SHAPES_SLOT
    text = json.dumps(data, indent=2, ensure_ascii=False)
    lines = ",\n".join("    " + json.dumps(shape, ensure_ascii=False) for shape in shapes)
    block = f"[\n{lines}\n  ]" if shapes else "[]"
    return text.replace(json.dumps(_SHAPES_SLOT), block, 1) + "\n"


def write_labelme(path: str | os.PathLike[str], document: LabelMeDocument) -> Path:
    """Write ``document`` atomically as LabelMe JSON (opens in labelme)."""
    return atomic_write_text(path, labelme_text(document))


def resolve_image_path(
    document: LabelMeDocument, json_path: str | os.PathLike[str] | None = None
) -> Path:
    """The image file a LabelMe file refers to, which must lie in or below the JSON's folder.

    labelme writes ``imagePath`` relative to the JSON file; a path that climbs out of that
    folder (``../``) or is absolute is refused, so a shared file cannot make us read elsewhere.
    """
    json_file = Path(json_path) if json_path is not None else document.source
    where = json_file.name if json_file else "labels"
    raw = document.image_path
    if not raw:
        raise InvalidLabels(f"{where} has an empty imagePath; set it to the image's file name")
    parts = PureWindowsPath(raw).parts if "\\" in raw else PurePosixPath(raw).parts
    if PurePosixPath(raw).is_absolute() or PureWindowsPath(raw).is_absolute() or ".." in parts:
        raise InvalidLabels(
            f"{where}: imagePath '{raw}' points outside the JSON file's folder; "
            "put the image beside the JSON and set imagePath to its file name"
        )
    folder = json_file.parent if json_file else Path(".")
    return folder.joinpath(*parts)


def check_image_size(
    document: LabelMeDocument, height: int, width: int, where: str = "labels"
) -> None:
    """Raise if the JSON was drawn on an image of another size."""
    if (document.image_height, document.image_width) != (height, width):
        raise InvalidLabels(
            f"{where} was drawn on a {document.image_width}x{document.image_height} image but the "
            f"image is {width}x{height}; choose the matching image or re-label it"
        )


def labelme_opens(image_name: str) -> bool:
    """Whether labelme can read the image file ``image_name`` by itself."""
    return PurePosixPath(image_name.replace("\\", "/")).suffix.lower() in LABELME_IMAGE_SUFFIXES


def image_data_of(png: bytes) -> str:
    """``imageData`` (base64 text) holding a PNG, as labelme stores it."""
    return base64.b64encode(png).decode("ascii")


def new_document(
    shapes: Sequence[Shape], image_path: str, image_height: int, image_width: int
) -> LabelMeDocument:
    """A fresh document (``imageData`` left out: labelme loads the image from ``imagePath``)."""
    return LabelMeDocument(
        shapes=list(shapes),
        image_path=image_path,
        image_height=int(image_height),
        image_width=int(image_width),
    )


def rectangle(label: str, left: float, top: float, right: float, bottom: float) -> Shape:
    """A LabelMe rectangle from its corners (e.g. a ``crop``)."""
    return Shape(label=label, points=[[left, top], [right, bottom]], shape_type="rectangle")


def crop_rectangle(box: Box) -> Shape:
    """A ``crop`` rectangle whose pixel box is exactly ``box`` (see ``crop_boxes``)."""
    return rectangle(CROP_LABEL, box.left - 0.5, box.top - 0.5, box.right - 0.5, box.bottom - 0.5)
