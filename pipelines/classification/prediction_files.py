"""The files ``predict`` writes: heatmap overlays, ``predictions.csv``, ``predictions.json`` rows.

A prediction row (one per image or object) is a plain dict: ``file``, ``name``, ``class``,
``probability``, ``probabilities`` (class → probability), ``true_class`` (or None), and, where
they apply, ``object`` (label and ``box_px`` ``[left, top, right, bottom]``) and ``heatmap``
(path relative to the output folder).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.classification.evaluation import classification_report
from pipelines.classification.gradcam import cam_for_image, overlay
from pipelines.classification.preprocess import (
    ContentBox,
    percentile_normalise,
    resize_longer_side,
)
from pipelines.classification.samples import Sample, is_hidden
from pipelines.errors import InvalidInput
from pipelines.fileio import atomic_path, sha256_file

PREDICTIONS_CSV = "predictions.csv"
PREDICTIONS_JSON = "predictions.json"
HEATMAP_DIR = "heatmaps"


def heatmap_name(sample: Sample, used: set[str]) -> str:
    """A unique, file-system-safe PNG name for a sample's heatmap (added to ``used``)."""
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", sample.name.replace(".json shapes[", "_shape["))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_.") or "image"
    name, counter = f"{stem}.png", 1
    while name in used:
        counter += 1
        name = f"{stem}_{counter}.png"
    used.add(name)
    return name


def write_overlay(
    path: Path,
    pixels: np.ndarray,
    cam_square: np.ndarray,
    content: ContentBox,
    caption: str,
    percentiles: tuple[float, float],
    min_side_px: int,
    max_side_px: int,
) -> None:
    """Save the Grad-CAM overlay of one image as PNG, captioned with the prediction.

    ``pixels``: the raw ``(H, W)`` image; ``cam_square``: the ``(S, S)`` map of its network
    input, of which ``content`` is the image part. The overlay's longer side is the image's,
    bounded to ``[min_side_px, max_side_px]`` (tiny crops enlarged, huge images shrunk).
    """
    from PIL import Image, ImageDraw, ImageFont

    side = max(pixels.shape)
    target = min(max(side, min_side_px), max_side_px)
    display = percentile_normalise(
        resize_longer_side(pixels, target) if target != side else pixels, percentiles
    )
    cam = cam_for_image(cam_square, content, display.shape)
    image = Image.fromarray(overlay(display, cam))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, image.width // 24))  # readable when projected
    _, _, right, bottom = draw.textbbox((4, 4), caption, font=font)
    draw.rectangle((0, 0, right + 4, bottom + 4), fill=(0, 0, 0))
    draw.text((4, 4), caption, fill=(255, 255, 255), font=font)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def prediction_row(sample: Sample, probabilities: np.ndarray, classes: list[str]) -> dict[str, Any]:
    best = int(np.argmax(probabilities))
    row: dict[str, Any] = {"file": str(sample.image_path), "name": sample.name}
    if sample.box is not None:
        box = sample.box
        row["object"] = {
            "label": sample.object_label,
            "box_px": [box.left, box.top, box.right, box.bottom],
        }
    row.update(
        {
            "class": classes[best],
            "probability": float(probabilities[best]),
            "probabilities": {
                name: float(p) for name, p in zip(classes, probabilities, strict=True)
            },
            "true_class": sample.class_name,
        }
    )
    return row


def score_predictions(rows: list[dict[str, Any]], classes: list[str]) -> dict[str, Any] | None:
    scored = [row for row in rows if row["true_class"]]
    if not scored:
        return None
    index = {name: i for i, name in enumerate(classes)}
    return classification_report(
        [index[row["true_class"]] for row in scored],
        [index[row["class"]] for row in scored],
        classes,
        names=[row["name"] for row in scored],
        probabilities=[[row["probabilities"][c] for c in classes] for row in scored],
    )


def predictions_csv(rows: list[dict[str, Any]], classes: list[str]) -> str:
    with_objects = any("object" in row for row in rows)
    with_truth = any(row["true_class"] for row in rows)
    with_heatmaps = any("heatmap" in row for row in rows)
    header = ["file"] + (["object_box_px"] if with_objects else []) + ["class", "probability"]
    header += [f"probability_{name}" for name in classes]
    header += (["true_class"] if with_truth else []) + (["heatmap"] if with_heatmaps else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        line = [row["file"]]
        if with_objects:
            line.append(
                " ".join(str(v) for v in row["object"]["box_px"]) if "object" in row else ""
            )
        line += [row["class"], f"{row['probability']:.6f}"]
        line += [f"{row['probabilities'][name]:.6f}" for name in classes]
        if with_truth:
            line.append(row["true_class"] or "")
        if with_heatmaps:
            line.append(row.get("heatmap", ""))
        writer.writerow(line)
    return buffer.getvalue()


def replace_folder(new: Path, target: Path) -> None:
    """Put ``new`` at ``target``, replacing an older folder only once ``new`` is complete."""
    backup = target.with_name(f".{target.name}.old")
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        target.rename(backup)
    new.rename(target)
    shutil.rmtree(backup, ignore_errors=True)


def check_prediction_outputs_free(out_dir: Path) -> None:
    """Refuse to predict where a file the user made or changed would be overwritten.

    ``predict`` replaces the ``predictions.csv``, ``predictions.json`` and ``heatmaps/`` of
    its own earlier run, but not files it did not write, nor a CSV changed since (classes
    corrected in a spreadsheet, say): ``predictions.json`` keeps the CSV's fingerprint.
    Records from before the fingerprint cannot tell, so they count as changed.
    """
    csv_path, json_path = out_dir / PREDICTIONS_CSV, out_dir / PREDICTIONS_JSON
    heatmaps = out_dir / HEATMAP_DIR
    present = [p.name for p in (csv_path, json_path, heatmaps) if p.exists()]
    if not present:
        return
    record = _own_record(json_path)
    if record is None:
        raise InvalidInput(
            f"{out_dir} holds {', '.join(present)} that predict did not write; choose another "
            "output folder so they are kept"
        )
    if csv_path.exists() and "csv_sha256" not in record:
        raise InvalidInput(
            f"{csv_path} was written by an older version, which cannot tell whether it was "
            "edited since; move it away or choose another output folder, so it is kept"
        )
    if csv_path.exists() and sha256_file(csv_path) != record["csv_sha256"]:
        raise InvalidInput(
            f"{csv_path} may have been changed since predict wrote it; choose another output "
            "folder, or move the file away, so it is kept"
        )
    if heatmaps.exists():
        listed = {row.get("heatmap") for row in record["predictions"] if isinstance(row, dict)}
        foreign = not heatmaps.is_dir() or any(
            not path.is_file() or f"{HEATMAP_DIR}/{path.name}" not in listed
            for path in heatmaps.iterdir()
            if not is_hidden(path)  # a file browser's .DS_Store or Thumbs.db
        )
        if foreign:
            raise InvalidInput(
                f"{heatmaps} holds files predict did not write; choose another output folder "
                "so they are kept"
            )


def _own_record(json_path: Path) -> dict[str, Any] | None:
    """The ``predictions.json`` that ``predict`` wrote, or None for anything else."""
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("predictions"), list):
        return None
    if not isinstance(record.get("model"), dict) or "classes" not in record:
        return None
    return record
