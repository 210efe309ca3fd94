"""Detection entry points: train from LabelMe files, predict on images, detect in memory.

``train``/``predict`` work with files and model folders (the CLI and the job worker call them
through :mod:`pipelines.tasks`); ``load_detector``/``detect`` work in-process on arrays (the app).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.artifact import check_model_target, load_model, read_model_info, save_model
from pipelines.detection.base import Detections, DetectOptions, Detector, TrainContext
from pipelines.detection.data import load_training_set
from pipelines.detection.outputs import check_outputs_free, write_outputs
from pipelines.detection.postprocess import drop_instances_in
from pipelines.detection.registry import create_config, get_engine, list_engines
from pipelines.devices import torch_device
from pipelines.errors import InvalidImage, InvalidInput, ModelError
from pipelines.imaging.marks import burnt_in_marks
from pipelines.progress import Progress, ProgressCallback, StageTimer

log = logging.getLogger(__name__)

TASK = "detect"
# Time kept for post-processing tuning and saving when a training time limit is given.
_TUNE_RESERVE_S = 10.0

__all__ = [
    "DetectOptions",
    "Detections",
    "Detector",
    "detect",
    "list_engines",
    "load_detector",
    "predict",
    "train",
]


def train(
    inputs: list[Path],
    out_dir: Path,
    *,
    engine: str | None = None,
    config: dict[str, Any] | None = None,
    device: str = "cpu",
    minutes: float | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Train a detector on LabelMe files (crops + outlined objects) and save its folder.

    ``inputs``: LabelMe JSON files, each with its image beside it (``imagePath``). ``minutes``
    is the run's time budget: training stops early enough to leave the tuning and saving
    after it (seconds) inside it. ``config`` overrides fields of the engine's config dataclass.
    An ``out_dir`` holding anything but a model is refused before training starts.
    """
    started = time.monotonic()
    spec = get_engine(engine)
    engine_config = create_config(spec.name, config)
    check_model_target(out_dir)
    torch_device(device)  # a wrong or missing device is said before the images are read
    if minutes is not None:
        if minutes <= 0:
            raise InvalidInput(f"--minutes must be positive, got {minutes}")
        if hasattr(engine_config, "train_seconds"):
            seconds = max(1.0, minutes * 60.0 - min(_TUNE_RESERVE_S, 0.1 * minutes * 60.0))
            engine_config = dataclasses.replace(engine_config, train_seconds=seconds)
    loader = StageTimer(progress, "load", len(inputs))
    loader.update(0, message="reading labels and images")
    data = load_training_set([Path(p) for p in inputs])
    loader.update(len(inputs))
    context = TrainContext(
        device=device,
        deadline=None if minutes is None else started + minutes * 60.0,
        progress=progress,
    )
    context.metrics["labelled_objects"] = data.object_count()
    detector = spec.train(data, engine_config, context)
    context.metrics["total_seconds"] = round(time.monotonic() - started, 1)
    saver = StageTimer(progress, "save", 1)
    path = save_model(
        out_dir,
        task=TASK,
        engine=spec.name,
        config=engine_config,
        classes=data.class_names,
        state_dict=detector.state_dict(),
        metrics=context.metrics,
        # The LabelMe files themselves, also where a folder of them was given.
        extra={**detector.extra(), "trained_on": [image.name for image in data.images]},
    )
    saver.update(1)
    log.info("trained %s detector in %.1f s: %s", spec.name, time.monotonic() - started, path)
    return path


def load_detector(model_dir: str | Path, device: str = "cpu") -> Detector:
    """Load a trained detection model folder (weights checked, config validated)."""
    info, state = load_model(model_dir, expected_task=TASK)
    try:
        spec = get_engine(info.engine)
        config = create_config(spec.name, info.config)
    except InvalidInput as error:
        raise ModelError(f"{model_dir}: {error}; train the model again") from error
    try:
        return spec.load(config, list(info.classes), state, dict(info.extra), device=device)
    except (TypeError, ValueError, AttributeError) as error:
        # A hand-edited or damaged model.json: a value of the wrong kind in its extra fields.
        raise ModelError(
            f"{model_dir}: model.json holds a value of the wrong kind ({error}); "
            "train the model again"
        ) from error


def detect(
    detector: Detector,
    image: np.ndarray,
    options: DetectOptions | dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> Detections:
    """Find every object in a ``(H, W)`` image of raw intensities; no files involved."""
    if not isinstance(options, DetectOptions):
        options = DetectOptions.from_dict(options)
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) < 1:
        raise InvalidImage(f"expected a greyscale (H, W) image, got shape {image.shape}")
    detections = detector.detect(image, options, progress)
    if options.ignore_scale_bar and detections.count:
        detections = _without_scale_bar(image, detections)
    return detections


# Above this share of the objects (and at least this many), "on the scale bar" is more likely
# a misreading of the image than a scale bar: keep everything and say so in the log. A marked
# region of at most ``_SMALL_MARKS_SHARE`` of the image (a 2048² image's bar and label take
# 0.2 %) cannot hide more real objects than that share, so what lies on it is always dropped:
# on a sparse image the glyph fragments alone can exceed a fifth of the objects (over 69 of
# 346 detections on a ``particles+sites`` benchmark image).
_MAX_IGNORED_SHARE = 0.2
_MAX_IGNORED_ALWAYS_OK = 10
_SMALL_MARKS_SHARE = 0.01


def _without_scale_bar(image: np.ndarray, detections: Detections) -> Detections:
    """Drop objects lying on a burnt-in scale bar or its text (:mod:`pipelines.imaging.marks`)."""
    started = time.perf_counter()
    marks = burnt_in_marks(image)
    instances, scores, ignored = drop_instances_in(detections.instances, detections.scores, marks)
    too_many = ignored > max(_MAX_IGNORED_ALWAYS_OK, _MAX_IGNORED_SHARE * detections.count)
    if too_many and marks.mean() > _SMALL_MARKS_SHARE:
        log.warning(
            "%d of %d objects lie on what looks like a scale bar or its text; kept them all",
            ignored,
            detections.count,
        )
        return detections
    timings = {**detections.timings_s, "scale_bar_s": time.perf_counter() - started}
    return dataclasses.replace(
        detections,
        instances=instances,
        scores=scores,
        timings_s=timings,
        ignored_on_scale_bar=ignored,
    )


def check_training_settings(engine: str | None, config: dict[str, Any] | None) -> None:
    """What :func:`train` would refuse in its engine and settings, without training."""
    create_config(engine, config)


def check_prediction_settings(inputs: Sequence[Path], options: dict[str, Any] | None) -> None:
    """What :func:`predict` would refuse in its inputs and options, without a model."""
    DetectOptions.from_dict(options)
    collect_images(inputs)


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """Image files named directly or found (non-recursively) in folders, in a stable order."""
    from pipelines.imaging import SUPPORTED_EXTENSIONS, unsupported_pictures

    found: list[Path] = []
    for path in inputs:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            inside = [
                p
                for p in files
                if p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.endswith("_overlay.png")
            ]
            if not inside:
                raise InvalidInput(
                    f"folder {path} holds no supported image{unsupported_pictures(files)}"
                )
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidInput(f"{path}: no such file or folder")
    stems: dict[str, Path] = {}
    for path in found:
        if path.stem in stems and stems[path.stem] != path:
            raise InvalidInput(
                f"{stems[path.stem].name} and {path.name} would both write {path.stem}.json; "
                "rename one or predict them into separate folders"
            )
        stems[path.stem] = path
    return list(stems.values())


def predict(
    model_dir: Path,
    inputs: list[Path],
    out_dir: Path,
    *,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Detect objects in images (files and/or folders); write JSON, overlay and stats per image.

    Every image header is checked before anything is written, so a bad file in the list
    produces no partial output; so is every output name, so no hand-drawn or corrected
    LabelMe file in ``out_dir`` is overwritten (:func:`check_outputs_free`).
    """
    from pipelines.imaging import image_size, load_image

    detect_options = DetectOptions.from_dict(options)
    images = collect_images([Path(p) for p in inputs])
    for path in images:
        image_size(path)
    check_outputs_free(images, Path(out_dir))
    detector = load_detector(model_dir, device=device)
    info = read_model_info(model_dir)
    written: list[Path] = []
    timer = StageTimer(progress, "images", len(images))
    for index, path in enumerate(images):
        loaded = load_image(path)
        stage_callback = _prefixed(progress, path.name)
        detections = detect(detector, loaded.pixels, detect_options, stage_callback)
        provenance = {
            "calibration_source": loaded.calibration.source,
            "model": {
                "id": Path(model_dir).name,
                "sha256": info.extra.get("weights_sha256"),
                "engine": info.engine,
                "thresholds": dataclasses.asdict(detect_options),
                # bfloat16 and float32 maps differ slightly; say which one made these outlines
                "bfloat16": detector.bfloat16,
            },
            "ignored_on_scale_bar": detections.ignored_on_scale_bar,
        }
        written.extend(
            write_outputs(
                path, loaded.pixels, detections, Path(out_dir), loaded.nm_per_px, provenance
            )
        )
        message = f"{path.name}: {detections.count} objects"
        if detections.ignored_on_scale_bar:
            message += f" ({detections.ignored_on_scale_bar} on the scale bar or its text ignored)"
        log.info("%s", message)  # a job's log keeps it too
        timer.update(index + 1, message=message, objects=detections.count)
    return written


def _prefixed(progress: ProgressCallback | None, name: str) -> ProgressCallback | None:
    if progress is None:
        return None

    def callback(event: Progress) -> None:
        progress(dataclasses.replace(event, message=f"{name}: {event.message}".rstrip(": ")))

    return callback
