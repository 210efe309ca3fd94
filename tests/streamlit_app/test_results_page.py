"""Results page helpers: the correction region dragged on the result picture, in image pixels."""

from __future__ import annotations

from pipelines.formats.labelme import rectangle
from streamlit_app.components.canvas_geometry import (
    Region,
    contain_fit,
    fabric_to_shapes,
    shapes_to_fabric,
)
from streamlit_app.views.results import region_pixels


def test_a_rectangle_drawn_on_a_shrunk_picture_gives_the_pixel_box_it_covers() -> None:
    # A 2048-px image shown as a 512-px picture: a drawn rectangle comes back in image pixels.
    region = Region(0, 0, 2048, 2048, 512, 512)
    fit = contain_fit(512, 512, 512, 512)
    wanted = (400, 120, 912, 632)  # pixels 400 <= x < 912, 120 <= y < 632
    drawn = rectangle("region", *(v - 0.5 for v in wanted))
    fabric = shapes_to_fabric([drawn], fit, region, lambda _label: "#00e5ff")
    (back,) = fabric_to_shapes(fabric["objects"], fit, region, lambda _c: None, "region")
    assert region_pixels(back.bounds()) == wanted


def test_the_pixel_box_of_labelme_bounds_rounds_to_whole_pixels() -> None:
    assert region_pixels((-0.5, 9.5, 127.5, 40.5)) == (0, 10, 128, 41)
    assert region_pixels((10.2, 10.8, 20.4, 20.6)) == (11, 11, 21, 21)
