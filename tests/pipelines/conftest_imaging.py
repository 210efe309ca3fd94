"""Writers for small, real microscope files that RosettaSciIO reads: DM3/DM4, TIA .ser, Velox EMD.

RosettaSciIO writes none of these (only Berkeley EMD, which the tests write with it directly),
and the repository holds no binaries, so the tests build them from the published layouts:

- DigitalMicrograph 3/4: big-endian tag tree (groups of named tags, each data tag ``%%%%`` +
  type info + little-endian payload); ``ImageList`` holds a thumbnail and the image, whose
  ``ImageData`` has ``Data``, ``DataType``, ``Dimensions`` (X first) and
  ``Calibrations/Dimension`` (Origin, Scale, Units per axis). DM4 widens counts to 8 bytes and
  adds an 8-byte size before each tag's content.
- TIA .ser (series version 0x210): header, dimension array, offset arrays, then per element a
  2-D calibrated array stored bottom row first, followed by its time tag.
- Velox EMD: HDF5 with ``Version`` JSON, ``Data/Image/<id>/Data`` as ``(y, x, frame)`` and a
  ``Metadata`` JSON byte column per frame (pixel size in ``BinaryResult``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# DigitalMicrograph tag encodings of simple types (numpy dtype -> DM code).
_DM_ENCODING = {
    np.dtype(np.int16): 2,
    np.dtype(np.int32): 3,
    np.dtype(np.uint16): 4,
    np.dtype(np.uint32): 5,
    np.dtype(np.float32): 6,
    np.dtype(np.float64): 7,
    np.dtype(np.bool_): 8,
    np.dtype(np.int8): 9,
    np.dtype(np.uint8): 10,
    np.dtype(np.int64): 11,
    np.dtype(np.uint64): 12,
}
# DigitalMicrograph image DataType (pixel type of ImageData/Data).
_DM_IMAGE_TYPE = {
    np.dtype(np.int16): 1,
    np.dtype(np.float32): 2,
    np.dtype(np.uint8): 6,
    np.dtype(np.int32): 7,
    np.dtype(np.int8): 9,
    np.dtype(np.uint16): 10,
    np.dtype(np.uint32): 11,
    np.dtype(np.float64): 12,
}
DM_RGBA_TYPE = 23


@dataclass(frozen=True)
class _Value:
    """A DM data tag: ``values`` of one ``dtype``; ``array`` stores it as an array tag."""

    values: Any
    dtype: np.dtype
    array: bool = False


def _scalar(value: float | int, dtype: Any) -> _Value:
    return _Value(value, np.dtype(dtype))


def dm_text(text: str) -> _Value:
    """DM stores strings as arrays of UTF-16 code units (uint16)."""
    return _Value(
        np.array([ord(char) for char in text], dtype=np.uint16), np.dtype(np.uint16), True
    )


class _DMEncoder:
    def __init__(self, version: int) -> None:
        self.version = version
        self.count_format = ">q" if version == 4 else ">l"

    def count(self, value: int) -> bytes:
        return struct.pack(self.count_format, value)

    def group_content(self, entries: list[tuple[str, Any]]) -> bytes:
        body = b"\x00\x01" + self.count(len(entries))  # not sorted, open, tag count
        return body + b"".join(self.tag(name, value) for name, value in entries)

    def tag(self, name: str, value: Any) -> bytes:
        encoded_name = name.encode("latin-1")
        if isinstance(value, list):
            tag_id, content = 20, self.group_content(value)
        else:
            tag_id, content = 21, self.data_content(value)
        header = struct.pack(">bh", tag_id, len(encoded_name)) + encoded_name
        if self.version == 4:
            header += struct.pack(">q", len(content))
        return header + content

    def data_content(self, value: _Value) -> bytes:
        if value.array:
            values = np.ascontiguousarray(value.values)
            if values.dtype.names is not None:  # RGBA pixels travel as uint32 elements
                info, payload = [20, 5, values.size], values.tobytes()
            else:
                little = values.astype(values.dtype.newbyteorder("<"))
                info = [20, _DM_ENCODING[value.dtype], values.size]
                payload = little.tobytes()
        else:
            info = [_DM_ENCODING[value.dtype]]
            payload = np.array([value.values], dtype=value.dtype.newbyteorder("<")).tobytes()
        encoded_info = b"".join(self.count(item) for item in info)
        return b"%%%%" + self.count(len(info)) + encoded_info + payload


def _image_group(
    data: np.ndarray, scales: list[float], units: list[str], image_tags: list[tuple[str, Any]]
) -> list[tuple[str, Any]]:
    """One ImageList entry; ``scales``/``units`` are per DM dimension, X first."""
    if data.dtype.names is not None:
        data_type, pixel_depth = DM_RGBA_TYPE, 4
    else:
        data_type, pixel_depth = _DM_IMAGE_TYPE[data.dtype], data.dtype.itemsize
    dimensions = [("", _scalar(size, np.int32)) for size in data.shape[::-1]]
    calibrations = [
        (
            "",
            [
                ("Origin", _scalar(0.0, np.float32)),
                ("Scale", _scalar(scale, np.float32)),
                ("Units", dm_text(unit)),
            ],
        )
        for scale, unit in zip(scales, units, strict=True)
    ]
    return [
        (
            "ImageData",
            [
                (
                    "Calibrations",
                    [
                        (
                            "Brightness",
                            [
                                ("Origin", _scalar(0.0, np.float32)),
                                ("Scale", _scalar(1.0, np.float32)),
                                ("Units", dm_text("Counts")),
                            ],
                        ),
                        ("Dimension", calibrations),
                        ("DisplayCalibratedUnits", _scalar(True, np.bool_)),
                    ],
                ),
                ("Data", _Value(data.reshape(-1), data.dtype, array=True)),
                ("DataType", _scalar(data_type, np.int32)),
                ("Dimensions", dimensions),
                ("PixelDepth", _scalar(pixel_depth, np.int32)),
            ],
        ),
        ("ImageTags", image_tags),
        ("Name", dm_text("test image")),
    ]


def write_dm(
    path: Path,
    data: np.ndarray,
    *,
    version: int,
    scale: float = 1.0,
    units: str = "",
    image_tags: list[tuple[str, Any]] | None = None,
) -> Path:
    """Write a DigitalMicrograph ``version`` 3 or 4 file holding a thumbnail and ``data``.

    ``data``: ``(H, W)`` image, ``(N, H, W)`` stack or ``(L,)`` spectrum, any DM pixel type, or
    a structured ``B, G, R, A`` uint8 record array for a colour image. ``scale`` in ``units``
    applies to the X and Y axes (stack frames get scale 1 and no unit).
    """
    encoder = _DMEncoder(version)
    n_axes = data.ndim
    scales = [scale] * min(n_axes, 2) + [1.0] * max(0, n_axes - 2)
    unit_list = [units] * min(n_axes, 2) + [""] * max(0, n_axes - 2)
    thumbnail = np.zeros((8, 8), dtype=np.uint8)
    root = [
        (
            "ImageList",
            [
                ("", _image_group(thumbnail, [1.0, 1.0], ["", ""], [])),
                ("", _image_group(data, scales, unit_list, image_tags or [])),
            ],
        ),
        ("Thumbnails", [("", [("ImageIndex", _scalar(0, np.int32))])]),
    ]
    tags = encoder.group_content(root)
    size_format = ">q" if version == 4 else ">l"
    header = struct.pack(">l", version) + struct.pack(size_format, len(tags) + 8)
    header += struct.pack(">l", 1)  # 1: payloads are little-endian
    path.write_bytes(header + tags + b"\x00" * 8)  # DM files end with 8 zero bytes
    return path


def rgba_record(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> DigitalMicrograph's ``(B, G, R, A)`` record per pixel."""
    record = np.zeros(rgb.shape[:2], dtype=[("B", "u1"), ("G", "u1"), ("R", "u1"), ("A", "u1")])
    record["R"], record["G"], record["B"] = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    record["A"] = 255
    return record


_SER_TYPE = {
    np.dtype(np.uint8): 1,
    np.dtype(np.uint16): 2,
    np.dtype(np.uint32): 3,
    np.dtype(np.int8): 4,
    np.dtype(np.int16): 5,
    np.dtype(np.int32): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.float64): 8,
}
_SER_IMAGE, _SER_SPECTRUM, _SER_TIME_TAG = 0x4122, 0x4120, 0x4152


def write_ser(path: Path, data: np.ndarray, *, pixel_size_m: float = 1e-9) -> Path:
    """Write a TIA .ser series: ``(H, W)`` image, ``(N, H, W)`` frames or ``(L,)`` spectrum."""
    spectrum = data.ndim == 1
    elements = [data] if data.ndim in (1, 2) else list(data)
    n_elements = len(elements)
    dimension = struct.pack("<IddII", n_elements, 0.0, 1.0, 0, 0) + struct.pack("<I", 0)
    header_size = 30 + len(dimension)
    offsets_at = header_size
    first_element_at = offsets_at + 8 * n_elements
    payloads = []
    for element in elements:
        type_id = _SER_TYPE[element.dtype]
        if spectrum:
            head = struct.pack("<ddIHI", 0.0, 1.0, 0, type_id, element.size)
            raw = element.astype(element.dtype.newbyteorder("<")).tobytes()
        else:
            height, width = element.shape
            head = struct.pack(
                "<ddIddIHII", 0.0, pixel_size_m, 0, 0.0, pixel_size_m, 0, type_id, width, height
            )
            # TIA stores the bottom row first.
            raw = element[::-1].astype(element.dtype.newbyteorder("<")).tobytes()
        payloads.append(head + raw + struct.pack("<HHI", _SER_TIME_TAG, 0, 0))
    data_offsets, tag_offsets, position = [], [], first_element_at
    for payload in payloads:
        data_offsets.append(position)
        tag_offsets.append(position + len(payload) - 8)
        position += len(payload)
    header = struct.pack(
        "<HHHIIIIII",
        0x4949,
        0x0197,
        0x0210,
        _SER_SPECTRUM if spectrum else _SER_IMAGE,
        _SER_TIME_TAG,
        n_elements,
        n_elements,
        offsets_at,
        1,
    )
    offsets = struct.pack(f"<{2 * n_elements}I", *data_offsets, *tag_offsets)
    path.write_bytes(header + dimension + offsets + b"".join(payloads))
    return path


def write_velox_emd(
    path: Path, data: np.ndarray, *, pixel_size: float, unit: str = "m", detector: str = "HAADF"
) -> Path:
    """Write a Velox-style EMD: ``(H, W)`` image or ``(N, H, W)`` frames, square pixels."""
    import h5py

    frames = data[np.newaxis] if data.ndim == 2 else data
    n_frames, height, width = frames.shape
    metadata = {
        "BinaryResult": {
            "PixelSize": {"width": f"{pixel_size!r}", "height": f"{pixel_size!r}"},
            "PixelUnitX": unit,
            "PixelUnitY": unit,
            "Offset": {"x": "0", "y": "0"},
            "DetectorIndex": "0",
        },
        "Detectors": {"Detector-0": {"DetectorName": detector}},
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1700000000"}},
        "Scan": {"FrameTime": "1.5"},
    }
    encoded = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    with h5py.File(path, "w") as handle:
        version = json.dumps({"format": "Velox", "version": "11"}).encode("utf-8")
        handle.create_dataset("Version", data=np.array([version]))
        group = handle.create_group("Data/Image/6fdbde41eecc4bc8a8d6cb7a1d1fbb6c")
        group.create_dataset("Data", data=np.moveaxis(frames, 0, -1), chunks=(height, width, 1))
        group.create_dataset("Metadata", data=np.repeat(encoded[:, np.newaxis], n_frames, 1))
    return path
