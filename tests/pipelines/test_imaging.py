"""Images with calibration, tested on real files written by PIL, tifffile, h5py and RosettaSciIO
(microscope files by the writers in conftest_imaging.py, read back by RosettaSciIO itself)."""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from pathlib import Path

import h5py
import labelme
import labelme.utils
import numpy as np
import pytest
import rsciio.digitalmicrograph
import rsciio.emd
import rsciio.tia
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipelines.errors import InvalidImage, InvalidInput
from pipelines.imaging import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    Calibration,
    image_size,
    load_image,
    load_image_bytes,
    nm_per_unit,
    to_float01,
    to_rgb8,
    write_tiff,
)
from tests.pipelines.conftest_imaging import (
    dm_text,
    rgba_record,
    write_dm,
    write_ser,
    write_velox_emd,
)

RNG_SEED = 20240611


def _ramp(height: int, width: int, dtype: type = np.uint16, scale: float = 37.0) -> np.ndarray:
    """Deterministic image with distinct rows and columns, so flips and transposes show."""
    rows, cols = np.mgrid[0:height, 0:width]
    return ((rows * width + cols) * scale % 60000).astype(dtype)


def _rgb(height: int = 24, width: int = 32) -> np.ndarray:
    return np.random.default_rng(RNG_SEED).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _error(excinfo: pytest.ExceptionInfo[Exception]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, "user errors are one line"
    return message


def _berkeley_emd(path: Path, data: np.ndarray, scale: float, units: str) -> Path:
    """Berkeley (NCEM) EMD written by RosettaSciIO's own writer."""
    axes = [
        {"name": name, "scale": scale, "offset": 0.0, "units": units, "navigate": False}
        for name in ("y", "x")
    ]
    if data.ndim == 3:
        axes.insert(0, {"name": "t", "scale": 1.0, "offset": 0.0, "units": "", "navigate": True})
    for axis, size in zip(axes, data.shape, strict=True):
        axis["size"] = size
    signal = {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": "HAADF"}, "Signal": {"signal_type": ""}},
        "original_metadata": {},
    }
    rsciio.emd.file_writer(str(path), signal)
    return path


# --- PNG and JPEG -------------------------------------------------------------------------------


def test_png_8bit_greyscale_is_read_exactly(tmp_path: Path) -> None:
    pixels = _ramp(30, 40, np.uint8, 1.0)
    Image.fromarray(pixels).save(tmp_path / "grey.png")
    image = load_image(tmp_path / "grey.png")
    assert image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, pixels)
    assert (image.height, image.width, image.bit_depth) == (30, 40, 8)
    assert (image.frame, image.n_frames, image.file_format) == (0, 1, "png")
    assert image.calibration == Calibration(None, "none")
    assert image.nm_per_px is None
    assert image.path == tmp_path / "grey.png" and image.name == "grey.png"


def test_png_16bit_keeps_uint16(tmp_path: Path) -> None:
    pixels = _ramp(20, 25)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    image = load_image(tmp_path / "deep.png")
    assert image.pixels.dtype == np.uint16 and image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels, pixels)


def test_rgb_png_becomes_luma_and_keeps_colour_on_request(tmp_path: Path) -> None:
    colour = _rgb()
    Image.fromarray(colour).save(tmp_path / "colour.png")
    image = load_image(tmp_path / "colour.png")
    expected = np.asarray(Image.fromarray(colour).convert("L"))
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.rgb is None
    kept = load_image(tmp_path / "colour.png", keep_rgb=True)
    np.testing.assert_array_equal(kept.rgb, colour)
    np.testing.assert_array_equal(to_rgb8(kept.rgb), colour)


def test_jpeg_is_read_as_greyscale(tmp_path: Path) -> None:
    colour = _rgb()
    Image.fromarray(colour).save(tmp_path / "photo.jpg", quality=95)
    image = load_image(tmp_path / "photo.jpg")
    decoded = np.asarray(Image.open(tmp_path / "photo.jpg").convert("L"))
    np.testing.assert_array_equal(image.pixels, decoded)
    assert image.file_format == "jpeg" and image.calibration.source == "none"


@pytest.mark.parametrize("name", ["rotated.jpg", "rotated.png"])
def test_exif_rotation_matches_labelme(tmp_path: Path, name: str) -> None:
    pixels = _ramp(20, 30, np.uint8, 1.0)
    exif = Image.Exif()
    exif[0x0112] = 6  # camera held rotated: display turned 90 degrees
    Image.fromarray(pixels).save(tmp_path / name, exif=exif, quality=100)
    image = load_image(tmp_path / name)
    as_labelme_shows_it = labelme.utils.apply_exif_orientation(Image.open(tmp_path / name))
    np.testing.assert_array_equal(image.pixels, np.asarray(as_labelme_shows_it.convert("L")))
    assert image.pixels.shape == (30, 20)
    assert image_size(tmp_path / name) == (30, 20)


def test_animated_png_frames(tmp_path: Path) -> None:
    frames = [Image.fromarray(_ramp(10, 12, np.uint8, 1.0) + index) for index in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    image = load_image(tmp_path / "anim.png", frame=2)
    assert (image.frame, image.n_frames) == (2, 3)
    np.testing.assert_array_equal(image.pixels, np.asarray(frames[2]))
    with pytest.raises(InvalidInput):
        load_image(tmp_path / "anim.png", frame=3)


def test_png_with_wrong_extension_is_read_by_content(tmp_path: Path) -> None:
    pixels = _ramp(10, 12, np.uint8, 1.0)
    Image.fromarray(pixels).save(tmp_path / "really.png")
    (tmp_path / "mislabelled.tif").write_bytes((tmp_path / "really.png").read_bytes())
    image = load_image(tmp_path / "mislabelled.tif")
    assert image.file_format == "png"
    np.testing.assert_array_equal(image.pixels, pixels)


# --- TIFF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "loaded"),
    [
        (np.uint8, np.uint8),
        (np.uint16, np.uint16),
        (np.float32, np.float32),
        (np.int16, np.float32),
        (np.float64, np.float32),
    ],
)
def test_tiff_dtypes(tmp_path: Path, stored: type, loaded: type) -> None:
    pixels = _ramp(16, 24, stored, 3.0)
    if np.dtype(stored).kind == "f":
        pixels = pixels / 7.0
    tifffile.imwrite(tmp_path / "image.tif", pixels.astype(stored))
    image = load_image(tmp_path / "image.tif")
    assert image.pixels.dtype == loaded
    assert image.bit_depth == np.dtype(loaded).itemsize * 8
    np.testing.assert_allclose(image.pixels, pixels.astype(stored), rtol=1e-6)


@pytest.mark.parametrize("planarconfig", ["contig", "separate"])
def test_rgb_tiff_becomes_luma(tmp_path: Path, planarconfig: str) -> None:
    colour = _rgb()
    data = colour if planarconfig == "contig" else np.moveaxis(colour, -1, 0)
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb", planarconfig=planarconfig)
    image = load_image(tmp_path / "rgb.tif", keep_rgb=True)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    expected = np.rint(colour.astype(np.float32) @ weights).astype(np.uint8)
    assert np.abs(image.pixels.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(image.rgb, colour)


def test_16bit_rgb_tiff_keeps_16_bits(tmp_path: Path) -> None:
    colour = _rgb().astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "rgb16.tif", colour, photometric="rgb")
    image = load_image(tmp_path / "rgb16.tif")
    assert image.pixels.dtype == np.uint16
    grey = np.asarray(Image.fromarray(_rgb()).convert("L")).astype(int) * 257
    assert np.abs(image.pixels.astype(int) - grey).max() <= 257


def test_multipage_tiff_reads_the_chosen_page(tmp_path: Path) -> None:
    pages = np.stack([_ramp(12, 14) + index for index in range(4)])
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")  # page per frame
    first = load_image(tmp_path / "stack.tif")
    third = load_image(tmp_path / "stack.tif", frame=2)
    assert (first.n_frames, third.n_frames, third.frame) == (4, 4, 2)
    np.testing.assert_array_equal(first.pixels, pages[0])
    np.testing.assert_array_equal(third.pixels, pages[2])
    with pytest.raises(InvalidInput) as excinfo:
        load_image(tmp_path / "stack.tif", frame=4)
    assert "4 frame(s)" in _error(excinfo)
    with pytest.raises(InvalidInput):
        load_image(tmp_path / "stack.tif", frame=-1)


def test_write_tiff_round_trips_pixels_and_calibration(tmp_path: Path) -> None:
    pixels = _ramp(18, 22)
    written = write_tiff(tmp_path / "out" / "image.tif", pixels, nm_per_px=0.52)
    assert written == tmp_path / "out" / "image.tif"
    image = load_image(written)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.calibration == Calibration(0.52, "file", "0.52 nm")
    with tifffile.TiffFile(written) as tif:  # ImageJ-style, so Fiji shows the scale bar
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "nm"
    assert [path.name for path in written.parent.iterdir()] == ["image.tif"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_write_tiff_opens_in_labelme(tmp_path: Path, dtype: type) -> None:
    path = write_tiff(tmp_path / "image.tif", _ramp(20, 30, dtype, 1.0), nm_per_px=0.5)
    shown = Image.open(io.BytesIO(labelme.LabelFile.load_image_file(str(path))))
    assert shown.size == (30, 20)  # labelme (PIL) speaks (width, height)


def test_write_tiff_without_calibration_and_rgb(tmp_path: Path) -> None:
    write_tiff(tmp_path / "plain.tif", _ramp(8, 9, np.float32))
    assert load_image(tmp_path / "plain.tif").calibration.source == "none"
    write_tiff(tmp_path / "rgb.tif", _rgb(), nm_per_px=2.0)
    image = load_image(tmp_path / "rgb.tif", keep_rgb=True)
    np.testing.assert_array_equal(image.rgb, _rgb())
    assert image.nm_per_px == 2.0


def test_write_tiff_rejects_bad_input_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8/uint16/float32"):
        write_tiff(tmp_path / "bad.tif", np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(InvalidInput):
        write_tiff(tmp_path / "bad.tif", np.zeros((4, 4), dtype=np.uint8), nm_per_px=-1.0)
    assert list(tmp_path.iterdir()) == []


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    nm_per_px=st.floats(min_value=1e-3, max_value=1e5, allow_nan=False),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32]),
)
def test_write_tiff_calibration_round_trip_property(
    tmp_path: Path, nm_per_px: float, dtype: type
) -> None:
    path = write_tiff(tmp_path / "prop.tif", _ramp(5, 7, dtype, 1.0), nm_per_px=nm_per_px)
    assert math.isclose(load_image(path).nm_per_px, nm_per_px, rel_tol=1e-7)


def test_imagej_micrometre_unit_as_imagej_escapes_it(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "ij.tif",
        _ramp(8, 8),
        imagej=True,
        resolution=(4.0, 4.0),  # pixels per micrometre
        metadata={"unit": "\\u00B5m"},
    )
    calibration = load_image(tmp_path / "ij.tif").calibration
    assert calibration == Calibration(250.0, "file", "0.25 µm")


def test_ome_tiff_physical_size(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "ome.ome.tif",
        _ramp(8, 8),
        metadata={"PhysicalSizeX": 0.75, "PhysicalSizeXUnit": "nm", "axes": "YX"},
    )
    assert load_image(tmp_path / "ome.ome.tif").nm_per_px == 0.75
    tifffile.imwrite(tmp_path / "um.ome.tif", _ramp(8, 8), metadata={"PhysicalSizeX": 0.5})
    assert load_image(tmp_path / "um.ome.tif").nm_per_px == 500.0  # OME's default unit is µm


def test_thermo_fisher_sem_tiff_pixel_width(tmp_path: Path) -> None:
    header = "[User]\nUser=test\n[Scan]\nPixelWidth=1.25e-09\nPixelHeight=1.25e-09\n"
    tifffile.imwrite(tmp_path / "fei.tif", _ramp(8, 8), extratags=[(34682, "s", 0, header, True)])
    calibration = load_image(tmp_path / "fei.tif").calibration
    assert calibration == Calibration(1.25, "file", "1.25e-09 m")


def test_zeiss_sem_tiff_pixel_size(tmp_path: Path) -> None:
    header = "\r\n".join(["", "AP_IMAGE_PIXEL_SIZE", "Image Pixel Size = 2.5 nm", ""])
    tifffile.imwrite(tmp_path / "zeiss.tif", _ramp(8, 8), extratags=[(34118, "s", 0, header, True)])
    assert load_image(tmp_path / "zeiss.tif").calibration == Calibration(2.5, "file", "2.5 nm")


def test_resolution_tags_in_centimetres_count_but_print_dpi_does_not(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "cm.tif", _ramp(8, 8), resolution=(2e6, 2e6), resolutionunit="CENTIMETER"
    )
    assert load_image(tmp_path / "cm.tif").nm_per_px == 5.0  # 2e6 px/cm = 5 nm/px
    Image.fromarray(_ramp(8, 8, np.uint8, 1.0)).save(tmp_path / "dpi.tif", dpi=(300, 300))
    assert load_image(tmp_path / "dpi.tif").calibration.source == "none"


# --- manual calibration -------------------------------------------------------------------------


def test_user_pixel_size_wins_and_file_text_is_kept(tmp_path: Path) -> None:
    write_tiff(tmp_path / "cal.tif", _ramp(6, 6), nm_per_px=0.52)
    image = load_image(tmp_path / "cal.tif", nm_per_px=0.5)
    assert image.calibration == Calibration(0.5, "user", "0.52 nm")
    Image.fromarray(_ramp(6, 6, np.uint8, 1.0)).save(tmp_path / "plain.png")
    assert load_image(tmp_path / "plain.png", nm_per_px=3).calibration == Calibration(3.0, "user")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "abc"])
def test_bad_user_pixel_size_is_refused(tmp_path: Path, bad: object) -> None:
    Image.fromarray(_ramp(6, 6, np.uint8, 1.0)).save(tmp_path / "plain.png")
    with pytest.raises(InvalidInput) as excinfo:
        load_image(tmp_path / "plain.png", nm_per_px=bad)  # type: ignore[arg-type]
    assert "nm_per_px" in _error(excinfo)


def test_calibration_invariants() -> None:
    with pytest.raises(ValueError):
        Calibration(None, "file")
    with pytest.raises(ValueError):
        Calibration(1.0, "none")
    with pytest.raises(ValueError):
        Calibration(1.0, "guess")
    assert not Calibration(None, "none").is_calibrated


@pytest.mark.parametrize(
    ("unit", "nm"),
    [
        ("m", 1e9),
        ("mm", 1e6),
        ("µm", 1e3),  # micro sign U+00B5
        ("μm", 1e3),  # Greek mu U+03BC
        ("um", 1e3),
        ("micron", 1e3),
        ("nm", 1.0),
        ("NM", 1.0),
        ("Å", 0.1),  # Latin capital A with ring U+00C5
        ("Å", 0.1),  # Angstrom sign U+212B
        ("A", 0.1),
        ("pm", 1e-3),
        ("1/nm", None),
        ("inch", None),
        ("px", None),
        ("", None),
    ],
)
def test_nm_per_unit(unit: str, nm: float | None) -> None:
    assert nm_per_unit(unit) == nm


# --- guards -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / "nowhere.tif")
    assert "nowhere.tif" in _error(excinfo) and "no such file" in _error(excinfo)
    with pytest.raises(InvalidImage):
        image_size(tmp_path / "nowhere.tif")


@pytest.mark.parametrize("name", ["empty.png", "empty.tif", "empty.jpg", "empty.dm3", "empty.emd"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / name)
    assert name in _error(excinfo) and "empty" in _error(excinfo)


@pytest.mark.parametrize("name", ["notes.bmp", "notes.txt", "notes", "notes.emi"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("hello")
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / name)
    message = _error(excinfo)
    assert name in message and "not supported" in message and ".tif" in message


@pytest.mark.parametrize(
    "name", ["text.png", "text.jpg", "text.tif", "text.dm3", "text.dm4", "text.emd", "text.ser"]
)
def test_text_renamed_as_image(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("sample,particle\n1,2\n" * 20)
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / name)
    message = _error(excinfo)
    assert name in message and "we can read" in message


@pytest.mark.parametrize("keep_bytes", [20, 200, 600])
def test_truncated_tiff(tmp_path: Path, keep_bytes: int) -> None:
    tifffile.imwrite(tmp_path / "whole.tif", _ramp(32, 32))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:keep_bytes])
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / "cut.tif")
    assert "cut.tif" in _error(excinfo) and "truncated" in _error(excinfo)


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_png_and_jpeg(tmp_path: Path, name: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buffer, format="PNG" if name.endswith("png") else "JPEG")
    (tmp_path / name).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / name)
    assert name in _error(excinfo)


@pytest.mark.parametrize("name", ["big.png", "big.jpg", "big.tif"])
def test_image_over_the_pixel_limit(tmp_path: Path, name: str) -> None:
    Image.fromarray(_ramp(30, 40, np.uint8, 1.0)).save(tmp_path / name)
    for max_pixels in (1000, 100):  # under PIL's own bomb error (2x limit) and over it
        with pytest.raises(InvalidImage) as excinfo:
            load_image(tmp_path / name, max_pixels=max_pixels)
        assert name in _error(excinfo) and "limit" in _error(excinfo)
        with pytest.raises(InvalidImage):
            image_size(tmp_path / name, max_pixels=max_pixels)
    assert load_image(tmp_path / name, max_pixels=1200).pixels.shape == (30, 40)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def test_png_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    # 60000 x 60000 declared, a few hundred bytes on disk: refused before decompression.
    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 60_001 * 4)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
    data += _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidImage) as excinfo:
            load_image(tmp_path / "bomb.png")
    assert "3600 megapixels" in _error(excinfo) and "limit of 400" in _error(excinfo)


def test_tiff_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "bomb.tif", _ramp(4, 4))
    with tifffile.TiffFile(tmp_path / "bomb.tif") as tif:
        offsets = [tif.pages.first.tags[code].valueoffset for code in (256, 257)]
        types = [tif.pages.first.tags[code].dtype for code in (256, 257)]
    data = bytearray((tmp_path / "bomb.tif").read_bytes())
    for offset, tag_type in zip(offsets, types, strict=True):
        fmt = "<H" if tag_type == 3 else "<I"
        struct.pack_into(fmt, data, offset, 60_000)
    (tmp_path / "bomb.tif").write_bytes(bytes(data))
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / "bomb.tif")
    assert "60000 x 60000" in _error(excinfo)


def test_pil_global_limit_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    Image.fromarray(_ramp(30, 40, np.uint8, 1.0)).save(tmp_path / "img.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "img.png").pixels.shape == (30, 40)  # our limit governs
    assert Image.MAX_IMAGE_PIXELS == 500
    assert DEFAULT_MAX_PIXELS == 20_000 * 20_000


def test_supported_extensions() -> None:
    assert set(SUPPORTED_EXTENSIONS) == {
        ".png",
        ".jpg",
        ".jpeg",
        ".tif",
        ".tiff",
        ".dm3",
        ".dm4",
        ".emd",
        ".ser",
    }


# --- DigitalMicrograph ------------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(
    ("scale", "units", "nm_per_px", "unit_text"),
    [
        (0.52, "nm", 0.52, "0.52 nm"),
        (0.0125, "µm", 12.5, "0.0125 µm"),
        (2.5, "Å", 0.25, "2.5 Å"),
        (120.0, "pm", 0.12, "120 pm"),
        (5e-10, "m", 0.5, "5e-10 m"),
    ],
)
def test_dm_calibration_units(
    tmp_path: Path, version: int, scale: float, units: str, nm_per_px: float, unit_text: str
) -> None:
    pixels = _ramp(12, 20)
    path = write_dm(
        tmp_path / f"image.dm{version}", pixels, version=version, scale=scale, units=units
    )
    [signal] = rsciio.digitalmicrograph.file_reader(str(path))  # the thumbnail is skipped
    np.testing.assert_array_equal(signal["data"], pixels)
    image = load_image(path)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.calibration == Calibration(nm_per_px, "file", unit_text)
    assert image.file_format == f"dm{version}" and image.bit_depth == 16


@pytest.mark.parametrize(
    ("stored", "loaded"),
    [
        (np.uint8, np.uint8),
        (np.int16, np.float32),
        (np.float32, np.float32),
        (np.int32, np.float32),
    ],
)
def test_dm_pixel_types(tmp_path: Path, stored: type, loaded: type) -> None:
    pixels = (_ramp(10, 14, np.int32, 1.0) - 50).astype(stored)
    image = load_image(write_dm(tmp_path / "t.dm4", pixels, version=4, scale=1.0, units="nm"))
    assert image.pixels.dtype == loaded
    np.testing.assert_array_equal(image.pixels, pixels.astype(loaded))


@pytest.mark.parametrize("version", [3, 4])
def test_dm_stack_frames(tmp_path: Path, version: int) -> None:
    frames = np.stack([_ramp(10, 12, np.float32) + index for index in range(3)])
    path = write_dm(tmp_path / f"stack.dm{version}", frames, version=version, scale=0.1, units="nm")
    image = load_image(path, frame=2)
    assert (image.n_frames, image.frame, image.nm_per_px) == (3, 2, 0.1)
    np.testing.assert_array_equal(image.pixels, frames[2])
    with pytest.raises(InvalidInput):
        load_image(path, frame=3)


def test_dm_colour_image(tmp_path: Path) -> None:
    colour = _rgb(10, 12)
    path = write_dm(tmp_path / "rgb.dm4", rgba_record(colour), version=4, scale=1.0, units="nm")
    image = load_image(path)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    expected = np.rint(colour.astype(np.float32) @ weights).astype(np.uint8)
    assert image.pixels.dtype == np.uint8
    assert np.abs(image.pixels.astype(int) - expected).max() <= 1


def test_dm_without_usable_calibration(tmp_path: Path) -> None:
    plain = write_dm(tmp_path / "plain.dm3", _ramp(6, 6), version=3)
    assert load_image(plain).calibration == Calibration(None, "none", "")
    diffraction = write_dm(tmp_path / "dp.dm3", _ramp(6, 6), version=3, scale=0.1, units="1/nm")
    assert load_image(diffraction).calibration == Calibration(None, "none", "0.1 1/nm")
    assert load_image(diffraction, nm_per_px=0.2).calibration == Calibration(
        0.2, "user", "0.1 1/nm"
    )


def test_dm_spectrum_is_refused(tmp_path: Path) -> None:
    spectrum = np.arange(256, dtype=np.float32)
    tags = [("Meta Data", [("Format", dm_text("Spectrum")), ("Signal", dm_text("EELS"))])]
    path = write_dm(
        tmp_path / "eels.dm3", spectrum, version=3, scale=0.5, units="eV", image_tags=tags
    )
    with pytest.raises(InvalidImage) as excinfo:
        load_image(path)
    assert "spectrum" in _error(excinfo) and "eels.dm3" in _error(excinfo)


@pytest.mark.parametrize("name", ["cut.dm3", "cut.dm4", "cut.emd", "cut_1.ser"])
def test_truncated_microscope_files(tmp_path: Path, name: str) -> None:
    pixels = _ramp(40, 40)
    if name.endswith(".emd"):
        whole = write_velox_emd(tmp_path / "whole.emd", pixels, pixel_size=1e-9)
    elif name.endswith(".ser"):
        whole = write_ser(tmp_path / "whole_1.ser", pixels)
    else:
        version = int(name[-1])
        whole = write_dm(tmp_path / f"whole.dm{version}", pixels, version=version, units="nm")
    (tmp_path / name).write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / name)
    assert name in _error(excinfo) and "truncated or damaged" in _error(excinfo)


def test_microscope_file_with_a_foreign_signature(tmp_path: Path) -> None:
    dm = write_dm(tmp_path / "image.dm3", _ramp(8, 8), version=3)
    (tmp_path / "renamed.ser").write_bytes(dm.read_bytes())
    with pytest.raises(InvalidImage) as excinfo:
        load_image(tmp_path / "renamed.ser")
    assert "not an image file we can read" in _error(excinfo)
    (tmp_path / "as_dm4.dm4").write_bytes(dm.read_bytes())  # DM3 content, DM4 name: fine
    assert load_image(tmp_path / "as_dm4.dm4").pixels.shape == (8, 8)


def test_dm_over_the_pixel_limit(tmp_path: Path) -> None:
    path = write_dm(tmp_path / "big.dm3", _ramp(30, 40), version=3, scale=1.0, units="nm")
    with pytest.raises(InvalidImage) as excinfo:
        load_image(path, max_pixels=1000)
    assert "limit" in _error(excinfo)
    assert image_size(path) == (30, 40)


# --- EMD and SER --------------------------------------------------------------------------------


def test_velox_emd_image_and_stack(tmp_path: Path) -> None:
    frames = np.stack([_ramp(12, 16) + index for index in range(3)])
    single = write_velox_emd(tmp_path / "haadf.emd", frames[0], pixel_size=1.2e-10)
    image = load_image(single)
    np.testing.assert_array_equal(image.pixels, frames[0])
    assert (image.nm_per_px, image.n_frames, image.file_format) == (0.12, 1, "emd")
    stack = write_velox_emd(tmp_path / "stack.emd", frames, pixel_size=2.5e-9)
    image = load_image(stack, frame=1)
    np.testing.assert_array_equal(image.pixels, frames[1])
    assert (image.nm_per_px, image.n_frames) == (2.5, 3)
    h5py.File(stack, "w").close()  # the reader released the file


@pytest.mark.parametrize(("units", "nm_per_px"), [("nm", 0.25), ("µm", 250.0)])
def test_berkeley_emd_written_by_rosettasciio(tmp_path: Path, units: str, nm_per_px: float) -> None:
    pixels = _ramp(14, 18, np.float32)
    image = load_image(_berkeley_emd(tmp_path / "ncem.emd", pixels, 0.25, units))
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.nm_per_px == nm_per_px and image.calibration.source == "file"


def test_berkeley_emd_stack(tmp_path: Path) -> None:
    frames = np.stack([_ramp(8, 10, np.float32) * (index + 1) for index in range(4)])
    path = _berkeley_emd(tmp_path / "stack.emd", frames, 0.5, "nm")
    image = load_image(path, frame=3)
    np.testing.assert_array_equal(image.pixels, frames[3])
    assert image.n_frames == 4 and image_size(path) == (8, 10)


def test_emd_over_the_pixel_limit(tmp_path: Path) -> None:
    path = write_velox_emd(tmp_path / "big.emd", _ramp(30, 40), pixel_size=1e-9)
    with pytest.raises(InvalidImage) as excinfo:
        load_image(path, max_pixels=1000)
    assert "limit" in _error(excinfo)


def test_ser_image_and_series(tmp_path: Path) -> None:
    pixels = _ramp(12, 20)
    single = write_ser(tmp_path / "image_1.ser", pixels, pixel_size_m=3e-10)
    [signal] = rsciio.tia.file_reader(str(single))
    np.testing.assert_array_equal(signal["data"], pixels)
    image = load_image(single)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.calibration == Calibration(0.3, "file", "0.3 nm")
    frames = np.stack([pixels + index for index in range(3)]).astype(np.float32)
    series = load_image(write_ser(tmp_path / "series_1.ser", frames, pixel_size_m=1e-9), frame=1)
    np.testing.assert_array_equal(series.pixels, frames[1])
    assert (series.n_frames, series.nm_per_px) == (3, 1.0)


def test_ser_spectrum_is_refused(tmp_path: Path) -> None:
    path = write_ser(tmp_path / "spectrum_1.ser", np.arange(512, dtype=np.float32))
    with pytest.raises(InvalidImage) as excinfo:
        load_image(path)
    assert "spectrum" in _error(excinfo)


# --- uploads and sizes --------------------------------------------------------------------------


def test_load_image_bytes_matches_load_image(tmp_path: Path) -> None:
    pixels = _ramp(12, 20)
    files = [
        write_tiff(tmp_path / "a.tif", pixels, nm_per_px=0.7),
        write_dm(tmp_path / "a.dm4", pixels, version=4, scale=0.7, units="nm"),
        write_ser(tmp_path / "a_1.ser", pixels, pixel_size_m=0.7e-9),
        write_velox_emd(tmp_path / "a.emd", pixels, pixel_size=0.7e-9),
    ]
    Image.fromarray(pixels).save(tmp_path / "a.png")
    files.append(tmp_path / "a.png")
    for path in files:
        from_disk = load_image(path)
        uploaded = load_image_bytes(path.read_bytes(), f"upload/{path.name}")
        np.testing.assert_array_equal(uploaded.pixels, from_disk.pixels)
        assert uploaded.calibration == from_disk.calibration
        assert (uploaded.path, uploaded.name) == (None, path.name)
        assert from_disk.pixels.flags.writeable and uploaded.pixels.flags.writeable
    assert (
        load_image_bytes((tmp_path / "a.tif").read_bytes(), "a.tif", nm_per_px=1.5).nm_per_px == 1.5
    )


def test_load_image_bytes_guards() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        load_image_bytes(b"", "upload.png")
    with pytest.raises(InvalidImage, match="not supported"):
        load_image_bytes(b"GIF89a", "upload.gif")
    with pytest.raises(InvalidImage, match="we can read"):
        load_image_bytes(b"not a dm file at all", "upload.dm3")


def test_image_size_for_each_format(tmp_path: Path) -> None:
    pixels = _ramp(12, 20)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    paths = [
        tmp_path / "a.png",
        write_tiff(tmp_path / "a.tif", pixels),
        write_dm(tmp_path / "a.dm3", pixels, version=3),
        write_ser(tmp_path / "a_1.ser", pixels),
        write_velox_emd(tmp_path / "a.emd", pixels, pixel_size=1e-9),
    ]
    for path in paths:
        assert image_size(path) == (12, 20), path.name


# --- display ------------------------------------------------------------------------------------


def test_to_float01_percentile_stretch() -> None:
    pixels = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    low, high = np.percentile(pixels, (1, 99.8))
    out = to_float01(pixels)
    assert out.dtype == np.float32 and out.shape == pixels.shape
    assert out.min() == 0.0 and out.max() == 1.0
    assert math.isclose(out[5, 0], (500 - low) / (high - low), rel_tol=1e-5)
    assert pixels.dtype == np.uint16  # the input is untouched


def test_to_float01_flat_and_non_finite() -> None:
    assert not to_float01(np.full((4, 4), 7, dtype=np.uint16)).any()
    pixels = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    pixels[0, 0], pixels[0, 1] = np.nan, np.inf
    out = to_float01(pixels)
    assert np.isfinite(out).all() and out[0, 0] == 0.0 and out[0, 1] == 1.0


def test_to_float01_large_image_uses_a_subsample() -> None:
    pixels = np.tile(np.arange(3000, dtype=np.uint16), (1500, 1))  # 4.5 MP
    out = to_float01(pixels)
    low, high = np.percentile(pixels, (1, 99.8))
    expected = np.clip((pixels[0, 1500] - low) / (high - low), 0, 1)
    assert abs(out[0, 1500] - expected) < 1 / 255


def test_to_rgb8() -> None:
    grey8 = _ramp(6, 7, np.uint8, 1.0)
    rgb = to_rgb8(grey8)
    assert rgb.shape == (6, 7, 3) and rgb.dtype == np.uint8
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], grey8)  # 8-bit shown as it is
    deep = to_rgb8(np.arange(1000, dtype=np.uint16).reshape(10, 100))
    assert deep[0, 0, 0] == 0 and deep[-1, -1, 0] == 255
    rgba = np.dstack([_rgb(), np.full((24, 32), 128, np.uint8)])
    np.testing.assert_array_equal(to_rgb8(rgba), _rgb())
    with pytest.raises(ValueError):
        to_rgb8(np.zeros((2, 2, 2, 2)))


def test_nan_and_infinite_pixels_become_the_median(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Aligned stacks pad with NaN; one such pixel would blank a whole tile of the network."""
    pixels = np.linspace(1.0, 2.0, 64 * 48, dtype=np.float32).reshape(64, 48)
    pixels[0, :5] = np.nan
    pixels[10, 10] = np.inf
    path = tmp_path / "aligned.tif"
    tifffile.imwrite(path, pixels)
    for loaded in (load_image(path), load_image_bytes(path.read_bytes(), path.name)):
        assert np.isfinite(loaded.pixels).all()
        assert loaded.pixels.dtype == np.float32
        assert loaded.pixels[0, 0] == pytest.approx(
            np.nanmedian(np.where(np.isinf(pixels), np.nan, pixels))
        )
        assert loaded.pixels[20, 20] == pixels[20, 20]
    assert "aligned.tif: 6 NaN or infinite pixels set to the image's median value" in caplog.text
    tifffile.imwrite(path, np.full((8, 8), np.nan, dtype=np.float32))
    with pytest.raises(InvalidImage, match=r"aligned\.tif holds no finite pixel values"):
        load_image(path)
