"""LabelMe reader/writer: round trips through the real labelme package and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipelines.errors import InvalidLabels
from pipelines.formats.labelme import (
    Box,
    LabelMeDocument,
    Shape,
    check_image_size,
    crop_rectangle,
    new_document,
    parse_labelme,
    read_labelme,
    rectangle,
    resolve_image_path,
    write_labelme,
)
from pipelines.formats.masks import shape_pixels


def _document() -> LabelMeDocument:
    shapes = [
        crop_rectangle(Box(left=2, top=3, right=40, bottom=30)),
        Shape("particle", [[10, 10], [20, 10], [20, 18], [10, 18]], group_id=None),
        Shape("particle", [[30, 5], [36, 5], [33, 12]], group_id=4, flags={"checked": True}),
        Shape("single_site", [[5, 25]], shape_type="point"),
        Shape("particle", [[50, 40], [54, 40]], shape_type="circle", description="score=0.9"),
    ]
    return new_document(shapes, "image.png", image_height=60, image_width=80)


def _write_image(folder: Path, name: str = "image.png", size: tuple[int, int] = (80, 60)) -> Path:
    path = folder / name
    Image.fromarray(np.zeros(size[::-1], dtype=np.uint8)).save(path)
    return path


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    document = _document()
    document.extra["lab_notes"] = {"operator": "A. N."}
    path = write_labelme(tmp_path / "labels.json", document)
    again = read_labelme(path)
    assert again.to_dict() == document.to_dict()
    assert again.source == path
    assert [s.label for s in again.object_shapes] == [
        "particle",
        "particle",
        "single_site",
        "particle",
    ]
    assert again.class_names() == ["particle", "single_site"]


def test_real_labelme_opens_our_file(tmp_path: Path) -> None:
    from labelme._label_file import LabelFile

    _write_image(tmp_path)
    path = write_labelme(tmp_path / "labels.json", _document())
    label_file = LabelFile(filename=str(path))
    assert label_file.image_path == "image.png"
    assert len(label_file.shapes) == 5
    assert label_file.shapes[2]["group_id"] == 4
    assert label_file.shapes[3]["shape_type"] == "point"
    assert label_file.image_data  # labelme found and read the image through imagePath


def test_file_saved_by_labelme_reads_back(tmp_path: Path) -> None:
    from labelme._label_file import LabelFile

    _write_image(tmp_path)
    shapes = [s.to_dict() for s in _document().shapes]
    LabelFile().save(
        filename=str(tmp_path / "by_labelme.json"),
        shapes=shapes,
        image_path="image.png",
        image_height=60,
        image_width=80,
    )
    document = read_labelme(tmp_path / "by_labelme.json")
    assert len(document.shapes) == 5
    assert document.crop_boxes() == [Box(left=2, top=3, right=40, bottom=30)]


def test_missing_shape_type_means_polygon() -> None:
    data = {
        "shapes": [{"label": "p", "points": [[1, 1], [4, 1], [4, 4]]}],
        "imageHeight": 8,
        "imageWidth": 8,
        "imagePath": "a.png",
    }
    assert parse_labelme(data).shapes[0].shape_type == "polygon"


def test_without_crops_the_whole_image_is_labelled() -> None:
    document = new_document([Shape("p", [[1, 1], [4, 1], [4, 4]])], "a.png", 10, 12)
    assert document.labelled_boxes() == [Box(0, 0, 12, 10)]


def test_crop_rectangle_maps_to_its_box() -> None:
    box = Box(left=5, top=7, right=25, bottom=19)
    document = new_document([crop_rectangle(box)], "a.png", 40, 40)
    assert document.crop_boxes() == [box]
    reversed_corners = rectangle("crop", 24.5, 18.5, 4.5, 6.5)
    assert new_document([reversed_corners], "a.png", 40, 40).crop_boxes() == [box]


def _bad(tmp_path: Path, content: str | dict) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _shape_doc(points: list, shape_type: str = "polygon", **top: object) -> dict:
    return {
        "shapes": [{"label": "particle", "points": points, "shape_type": shape_type}],
        "imagePath": "image.png",
        "imageHeight": 50,
        "imageWidth": 50,
        **top,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON (line 1"),
        ("notes from Tuesday", "is not a LabelMe JSON file (it is not JSON text at all)"),
        ({"images": []}, "is not a LabelMe file"),
        (_shape_doc([[1, 1], [5, 5]]), "polygon has 2 points; a polygon needs at least 3"),
        (_shape_doc([[0, 0], [10, 10], [10, 0], [0, 10]]), "self-intersecting polygon"),
        (_shape_doc([[60, 60], [70, 60], [70, 70]]), "lies outside the 50x50 image"),
        (_shape_doc([[1, 1], [5, "x"], [3, 3]]), "malformed points"),
        (_shape_doc([[1, 1], [5, 1], [3, 3]], shape_type="ellipse"), "shape_type 'ellipse'"),
        ({"shapes": [{"points": [[1, 1]]}], "imageHeight": 5, "imageWidth": 5}, "has no label"),
        ({"shapes": []}, "lacks imageHeight/imageWidth"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, content: str | dict, message: str) -> None:
    with pytest.raises(InvalidLabels) as error:
        read_labelme(_bad(tmp_path, content))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_image_given_as_labels_is_one_clear_line(tmp_path: Path) -> None:
    image = tmp_path / "image.tif"
    tifffile.imwrite(image, np.arange(4096, dtype=np.uint16).reshape(64, 64))
    with pytest.raises(InvalidLabels) as error:
        read_labelme(image)
    assert str(error.value).startswith("image.tif is not a LabelMe JSON file")
    assert "\n" not in str(error.value)


def test_labels_saved_in_another_encoding_say_so(tmp_path: Path) -> None:
    latin = tmp_path / "labels.json"
    latin.write_bytes(json.dumps(_shape_doc([[1, 1], [5, 1], [3, 3]], imagePath="café.tif"),
                                 ensure_ascii=False).encode("latin-1"))  # fmt: skip
    with pytest.raises(InvalidLabels, match=r"labels.json is not UTF-8 text \(byte \d+\)"):
        read_labelme(latin)


def test_error_names_the_shape(tmp_path: Path) -> None:
    data = _shape_doc([[1, 1], [5, 1], [3, 3]])
    data["shapes"].append({"label": "single_site", "points": [[1, 1], [2, 2]]})
    with pytest.raises(InvalidLabels, match=r"shapes\[1\] \('single_site'\)"):
        read_labelme(_bad(tmp_path, data))


def test_empty_shapes_is_valid(tmp_path: Path) -> None:
    document = read_labelme(_bad(tmp_path, {"shapes": [], "imageHeight": 5, "imageWidth": 6}))
    assert document.shapes == []
    assert document.class_names() == []


@pytest.mark.parametrize(
    "image_path", ["../secret.png", "/etc/passwd", "a/../../b.png", "..\\x.png"]
)
def test_image_path_may_not_leave_the_folder(tmp_path: Path, image_path: str) -> None:
    document = new_document([], image_path, 5, 5)
    with pytest.raises(InvalidLabels, match="points outside the JSON file's folder"):
        resolve_image_path(document, tmp_path / "labels.json")


def test_image_path_inside_the_folder(tmp_path: Path) -> None:
    document = new_document([], "images/a.png", 5, 5)
    assert resolve_image_path(document, tmp_path / "labels.json") == tmp_path / "images" / "a.png"


def test_image_size_mismatch() -> None:
    document = new_document([], "a.png", 60, 80)
    check_image_size(document, 60, 80)
    with pytest.raises(InvalidLabels, match="drawn on a 80x60 image but the image is 100x60"):
        check_image_size(document, 60, 100)


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    document = _document()
    document.extra["not_serialisable"] = object()
    target = tmp_path / "out.json"
    with pytest.raises(TypeError):
        write_labelme(target, document)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = write_labelme(tmp_path / "out.json", _document())
    before = target.read_bytes()
    broken = _document()
    broken.extra["bad"] = {1, 2}
    with pytest.raises(TypeError):
        write_labelme(target, broken)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_each_shape_is_one_line_and_reads_back(tmp_path: Path) -> None:
    document = _document()
    document.shapes[1].label = "частица"
    document.shapes[1].description = 'a "quoted"\nnote'
    path = write_labelme(tmp_path / "labels.json", document)
    text = path.read_text(encoding="utf-8")
    shape_lines = [line for line in text.splitlines() if line.startswith('    {"label": ')]
    assert len(shape_lines) == len(document.shapes)
    assert "частица" in text  # written as text, not \u escapes
    assert json.loads(text) == document.to_dict()
    assert read_labelme(path).to_dict() == document.to_dict()


def _crop_doc(crop: dict) -> dict:
    particle = {"label": "particle", "points": [[5, 5], [9, 5], [7, 9]], "shape_type": "polygon"}
    return {"shapes": [particle, crop], "imagePath": "a.png", "imageHeight": 50, "imageWidth": 60}


@pytest.mark.parametrize(
    "crop",
    [
        {"label": "Crop", "points": [[0, 0], [20, 30]], "shape_type": "rectangle"},
        {"label": " crop ", "points": [[0, 0], [20, 0], [20, 30], [0, 30], [0, 0]]},
        # X-AnyLabeling saves rectangles with four corners
        {
            "label": "crop",
            "points": [[20, 0], [20, 30], [0, 30], [0, 0]],
            "shape_type": "rectangle",
        },
    ],
)
def test_a_crop_is_a_crop_however_it_was_drawn(crop: dict) -> None:
    """Never an object class called "crop" that erases the objects it covers."""
    document = parse_labelme(_crop_doc(crop))
    assert document.crop_boxes() == [Box(0, 0, 21, 31)]
    assert [shape.label for shape in document.object_shapes] == ["particle"]


def test_a_crop_clicked_as_a_polygon_is_the_rectangle_inside_its_corners() -> None:
    """labelme's default tool is the polygon; four clicks by hand are a pixel or two off."""
    crop = {"label": "crop", "points": [[1.4, 0.6], [41.2, 1.8], [40.3, 30.9], [0.2, 29.5]]}
    document = parse_labelme(_crop_doc(crop))
    # inside every click: x from 1.4 to 40.3, y from 1.8 to 29.5
    assert document.crop_boxes() == [Box(2, 2, 41, 30)]
    assert [shape.label for shape in document.object_shapes] == ["particle"]


@pytest.mark.parametrize(
    ("points", "shape_type"),
    [
        ([[0, 0], [20, 0], [14, 30], [0, 30]], "polygon"),  # a corner 6 px in
        ([[0, 0], [20, 0], [20, 30], [10, 40], [0, 30]], "polygon"),  # five corners
        ([[10, 10], [20, 10]], "circle"),
    ],
)
def test_a_crop_that_is_not_a_rectangle_is_refused(points: list, shape_type: str) -> None:
    crop = {"label": "crop", "points": points, "shape_type": shape_type}
    with pytest.raises(InvalidLabels, match=r"shapes\[1\] \('crop'\) is a .*Create Rectangle"):
        parse_labelme(_crop_doc(crop))


def test_a_crop_past_the_border_is_clipped_and_one_outside_refused() -> None:
    crop = {"label": "crop", "points": [[-15, 40], [30, 80]], "shape_type": "rectangle"}
    assert parse_labelme(_crop_doc(crop)).crop_boxes() == [Box(0, 40, 31, 50)]
    crop["points"] = [[70, 0], [90, 20]]
    with pytest.raises(InvalidLabels, match=r"is a crop outside the 60x50 image"):
        parse_labelme(_crop_doc(crop))


def test_a_four_corner_rectangle_covers_its_whole_box() -> None:
    shape = Shape("p", [[10, 10], [30, 10], [30, 20], [10, 20]], shape_type="rectangle")
    assert shape.points.tolist() == [[10, 10], [30, 20]]
    rows, _ = shape_pixels(shape, 50, 50)
    assert rows.size == 21 * 11


def test_a_polygon_without_area_is_not_called_self_intersecting(tmp_path: Path) -> None:
    for points in ([[5, 5], [10, 10], [20, 20]], [[5, 5], [9, 5], [9, 5]]):
        with pytest.raises(InvalidLabels, match=r"is a polygon with no area .*redraw"):
            read_labelme(_bad(tmp_path, _shape_doc(points)))
