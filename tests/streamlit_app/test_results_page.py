"""Results page helpers: the correction region in image pixels, classified files by their path."""

from __future__ import annotations

from pipelines.formats.labelme import rectangle
from streamlit_app.components.canvas_geometry import (
    Region,
    contain_fit,
    fabric_to_shapes,
    shapes_to_fabric,
)
from streamlit_app.views.results import dataset_path, region_pixels


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


def test_classification_files_keep_their_path_in_the_dataset() -> None:
    """Two images with one name in two class folders stay two rows; the worker's scratch folder
    (any OS) is stripped, class folders are kept."""
    roots = ("inputs/images",)
    scratch = "/tmp/nocode-job-20261125-ab12-x7q/job/inputs/images"
    assert dataset_path(f"{scratch}/fresh/img1.png", roots) == "fresh/img1.png"
    assert dataset_path(f"{scratch}/sintered/img1.png", roots) == "sintered/img1.png"
    windows = r"C:\Users\me\AppData\Local\Temp\nocode-job-7-q\job\inputs\images\a\b\img1.tif"
    assert dataset_path(windows, roots) == "a/b/img1.tif"
    # A LabelMe file given on its own (its root is the file), a job path under no known root,
    # and a path that is not a job's stay readable.
    assert dataset_path(f"{scratch}/x.json", ("inputs/images/x.json",)) == "x.json"
    assert dataset_path("/tmp/nocode-job-1-a/job/inputs/set/a/img1.png", ()) == "set/a/img1.png"
    assert dataset_path("fresh/img1.png", roots) == "fresh/img1.png"
