"""Pictures the Label page draws: outlines, and the numbers that tie them to its lists."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipelines.formats.labelme import Shape
from streamlit_app.components.overlay import draw_shapes, draw_tags


def test_tags_sit_where_the_shape_is_at_the_pictures_scale() -> None:
    picture = Image.new("RGB", (200, 100), (40, 40, 40))
    tagged = np.asarray(draw_tags(picture, [(120.0, 10.0, "#3")], scale=0.5))
    changed = np.argwhere((tagged != 40).any(axis=2))
    top, left = changed.min(axis=0)
    assert abs(left - 60) <= 3 and abs(top - 5) <= 3  # (120, 10) at half scale
    assert tagged[changed[:, 0], changed[:, 1]].max() == 255  # a white box under black text
    assert picture.getpixel((60, 5)) == (40, 40, 40)  # the input is left as it was


def test_outlines_are_drawn_in_their_class_colour() -> None:
    picture = Image.new("RGB", (40, 40), (0, 0, 0))
    square = Shape("particle", [[10, 10], [30, 10], [30, 30], [10, 30]])
    drawn = np.asarray(draw_shapes(picture, [square], lambda _label: "#ff0000", 1.0, 1))
    assert tuple(drawn[10, 20]) == (255, 0, 0)  # the edge
    assert drawn[20, 20, 0] > 0 and drawn[20, 20, 1] == 0  # the light fill
    assert tuple(drawn[2, 2]) == (0, 0, 0)
