"""Train a classifier and apply it: the two entry points behind ``pipelines.tasks``.

``train`` reads a labelled dataset (see :mod:`pipelines.classification.datasets`), trains an
engine with a stratified validation split and writes the model folder (:mod:`pipelines.artifact`)
with the validation scores. ``predict`` writes ``predictions.csv`` and ``predictions.json`` (file,
class, probability per class) and a Grad-CAM overlay per image under ``heatmaps/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.artifact import check_model_target, load_model, save_model
from pipelines.classification.datasets import (
    LoadedDataset,
    list_training_samples,
    load_training_set,
    stratified_split,
)
from pipelines.classification.engines import (
    FINE_TUNE_LEARNING_RATE,
    create_engine,
    device_preset,
    pretrained_weights_from_env,
)
from pipelines.classification.evaluation import chance_advice, classification_report
from pipelines.classification.prediction_files import (
    HEATMAP_DIR,
    PREDICTIONS_CSV,
    PREDICTIONS_JSON,
    check_prediction_outputs_free,
    heatmap_name,
    prediction_row,
    predictions_csv,
    replace_folder,
    score_predictions,
    write_overlay,
)
from pipelines.classification.prediction_inputs import list_prediction_samples
from pipelines.classification.preprocess import (
    ContentBox,
    to_model_input,
)
from pipelines.classification.samples import Sample, SkippedFile, prepare_sample, unpacked_inputs
from pipelines.devices import torch_device
from pipelines.errors import InvalidInput, ModelError, NoCodeMLError
from pipelines.fileio import atomic_write_json, atomic_write_text, sha256_text
from pipelines.options import check_option_types, reject_unknown_options
from pipelines.progress import ProgressCallback, StageTimer

log = logging.getLogger(__name__)

TASK = "classify"
TRAINING_CURVE_FILE = "training_curve.json"


def train(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    engine: str | None = None,
    config: dict[str, Any] | None = None,
    device: str = "cpu",
    minutes: float | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Train a classifier on a labelled dataset and write its model folder to ``out_dir``.

    ``inputs``: one folder with a sub-folder per class, a zip of it, LabelMe files with a class
    flag, or (``config={"crop_objects": True}``) LabelMe files whose outlined objects are
    classified by their shape label. ``config`` overrides the engine's defaults (the GPU preset
    applies on CUDA); ``minutes`` caps the training time. Returns ``out_dir``.
    """
    import torch

    run_device = torch_device(device)
    overrides = {**device_preset(engine, run_device.type), **(config or {})}
    if minutes is not None:
        if not minutes > 0:
            raise InvalidInput(f"minutes must be positive, got {minutes}")
        overrides["max_minutes"] = float(minutes)
    classifier = create_engine(engine, **overrides)
    check_model_target(out_dir)
    if classifier.config.pretrained_weights_path is None:
        baked = pretrained_weights_from_env(classifier.config.model_name)
        if baked:
            log.info("using ImageNet weights %s", baked)
            overrides["pretrained_weights_path"] = baked
    if overrides.get("pretrained_weights_path") and "learning_rate" not in overrides:
        overrides["learning_rate"] = FINE_TUNE_LEARNING_RATE
        log.info("fine-tuning at learning rate %g", FINE_TUNE_LEARNING_RATE)
    classifier = create_engine(engine, **overrides)
    settings = classifier.config
    torch.manual_seed(settings.seed)

    with unpacked_inputs([Path(p) for p in inputs]) as resolved:
        listing = list_training_samples(
            resolved,
            crop_objects=settings.crop_objects,
            crop_margin_fraction=settings.crop_margin_fraction,
        )
        dataset = load_training_set(
            listing, settings.input_size_px, settings.normalize_percentiles, progress
        )
    train_idx, val_idx = stratified_split(
        dataset.labels, dataset.classes, settings.val_fraction, settings.seed
    )
    log.info(
        "training %s on %d images (%d for validation) of classes %s",
        settings.model_name, len(dataset.labels), len(val_idx), ", ".join(dataset.classes),
    )  # fmt: skip

    from pipelines.classification.training import fit, predict_logits

    model = classifier.build(len(dataset.classes))
    images = torch.from_numpy(dataset.images)[:, None]
    labels = torch.from_numpy(dataset.labels)
    max_seconds = settings.max_minutes * 60 if settings.max_minutes is not None else None
    result = fit(
        model,
        images[train_idx],
        labels[train_idx],
        images[val_idx],
        labels[val_idx],
        settings,
        device=run_device,
        max_seconds=max_seconds,
        progress=progress,
    )
    model.load_state_dict(result.state_dict)

    timer = StageTimer(progress, "evaluate", total=1)
    report = None
    if len(val_idx):
        logits = predict_logits(model, images[val_idx], settings, run_device)
        probabilities = torch.softmax(logits, dim=1).numpy()
        report = classification_report(
            dataset.labels[val_idx].tolist(),
            probabilities.argmax(1).tolist(),
            dataset.classes,
            names=[dataset.names[i] for i in val_idx],
            probabilities=probabilities.tolist(),
        )
    timer.update(1)
    metrics = _training_metrics(dataset, train_idx, val_idx, result, report)
    if guessing := chance_advice(metrics):
        log.warning("%s", guessing)  # the command line's and a job log's reader see it too
    curve = json.dumps(result.history, indent=2).encode("utf-8")
    return save_model(
        out_dir,
        task=TASK,
        engine=classifier.name,
        config=settings,
        classes=dataset.classes,
        state_dict=result.state_dict,
        metrics=metrics,
        extra={"input": _input_description(settings), "device": run_device.type},
        extra_files={TRAINING_CURVE_FILE: curve},
    )


def _input_description(settings: Any) -> dict[str, Any]:
    """How images become network input, spelled out in ``model.json`` for other tools."""
    return {
        "size_px": settings.input_size_px,
        "channels": settings.in_channels,
        "greyscale_to_channels": "replicate",
        "resize": "longer side to size_px, aspect kept, padded with the median",
        "normalisation": {
            "percentiles": list(settings.normalize_percentiles),
            "channel_mean": list(settings.channel_mean),
            "channel_std": list(settings.channel_std),
        },
        "objects": "LabelMe object crops" if settings.crop_objects else "whole images",
    }


def _training_metrics(
    dataset: LoadedDataset,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    result: Any,
    report: dict[str, Any] | None,
) -> dict[str, Any]:
    counts = dataset.class_counts()
    return {
        "val_accuracy": report["accuracy"] if report else None,
        "val_balanced_accuracy": report["balanced_accuracy"] if report else None,
        "val_macro_f1": report["macro_f1"] if report else None,
        "evaluation": report,
        # the validation images also chose the kept epoch, so these scores lean optimistic
        "evaluation_set": "validation" if report else None,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "class_counts": counts,
        "source": dataset.source,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "steps_run": result.steps_run,
        "stop_reason": result.stop_reason,
        "train_seconds": round(result.train_seconds, 2),
        "skipped_files": [dataclasses.asdict(s) for s in dataset.skipped],
    }


@dataclass(frozen=True)
class PredictOptions:
    """Prediction settings.

    ``heatmaps``: write a Grad-CAM overlay per image; ``heatmap_min_side_px`` /
    ``heatmap_max_side_px`` bound the overlay's longer side (small crops are enlarged so the
    map is visible, large images shrunk).
    """

    heatmaps: bool = True
    batch_size: int = 16
    heatmap_min_side_px: int = 256
    heatmap_max_side_px: int = 1024

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> PredictOptions:
        values = dict(values or {})
        reject_unknown_options(values, cls)
        options = cls(**check_option_types(values, cls, "prediction option"))
        if options.batch_size < 1 or options.heatmap_min_side_px < 1:
            raise InvalidInput("batch_size and heatmap sizes must be at least 1")
        return options


def load_classifier(model_dir: Path, device: Any) -> tuple[Any, Any, list[str]]:
    """The trained network (eval mode, on ``device``), its engine and its classes."""
    info, state = load_model(model_dir, expected_task=TASK)
    classifier = create_engine(info.engine, **info.config)
    model = classifier.build(len(info.classes), load_pretrained=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(
            f"{model_dir}: the weights do not fit a {classifier.config.model_name} with "
            f"{len(info.classes)} classes ({str(error).splitlines()[0]}); train the model again"
        ) from error
    return model.to(device).eval(), classifier, list(info.classes)


def _prepared_batches(
    samples: list[Sample], settings: Any, batch_size: int, skipped: list[SkippedFile]
) -> Iterator[tuple[int, list[tuple[Sample, np.ndarray, np.ndarray, ContentBox]]]]:
    """Yield ``(samples done, [(sample, raw pixels, network square, content box), ...])``;
    unreadable samples are logged and appended to ``skipped``."""
    cache: dict[Path, np.ndarray] = {}
    for start in range(0, len(samples), batch_size):
        prepared = []
        chunk = samples[start : start + batch_size]
        for sample in chunk:
            try:
                pixels, square, content = prepare_sample(
                    sample, settings.input_size_px, settings.normalize_percentiles, cache
                )
            except (NoCodeMLError, OSError, ValueError) as error:
                log.warning("skipping %s: %s", sample.name, error)
                skipped.append(SkippedFile(sample.name, str(error)))
                continue
            prepared.append((sample, pixels, square, content))
        yield start + len(chunk), prepared


def _run_network(
    model: Any, squares: np.ndarray, settings: Any, device: Any, heatmaps: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities ``(B, K)`` and, with ``heatmaps``, Grad-CAM maps ``(B, S, S)``."""
    import torch

    from pipelines.classification.gradcam import logits_and_cams
    from pipelines.classification.training import autocast_context

    batch = torch.from_numpy(squares)[:, None].to(device)
    cams = None
    if heatmaps:
        logits, cam_maps = logits_and_cams(
            model, batch, settings.channel_mean, settings.channel_std
        )
        cams = cam_maps.cpu().numpy()
    else:
        with torch.inference_mode(), autocast_context(device):
            logits = model(to_model_input(batch, settings.channel_mean, settings.channel_std))
    return torch.softmax(logits.float(), dim=1).cpu().numpy(), cams


def check_training_settings(engine: str | None, config: dict[str, Any] | None) -> None:
    """What :func:`train` would refuse in its engine and settings, without loading images."""
    create_engine(engine, **(config or {}))


def check_prediction_settings(inputs: Sequence[Path], options: dict[str, Any] | None) -> None:
    """What :func:`predict` would refuse in its options (its inputs are read as they come)."""
    del inputs
    PredictOptions.from_dict(options)


def _as_given(path: Path, unzipped: list[tuple[Path, Path]]) -> str:
    """``path``, or ``<zip>/<path>`` for an image read from an unpacked zip (the path below
    the zip's wrapping folder, if it has one)."""
    for folder, archive in unzipped:
        if path.is_relative_to(folder):
            return f"{archive}/{path.relative_to(folder).as_posix()}"
    return str(path)


def predict(
    model_dir: Path,
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    device: str = "cpu",
    options: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Classify images (files, folders, zips; LabelMe objects for object models).

    Writes ``out_dir/predictions.csv`` and ``out_dir/predictions.json`` (file, class,
    probability per class; scores when the inputs carry true classes) and, unless
    ``options["heatmaps"]`` is False, one Grad-CAM overlay PNG per sample in
    ``out_dir/heatmaps/``. Unreadable images are skipped with a warning; when none can be
    read, nothing is written. Returns the paths written.
    """
    opts = PredictOptions.from_dict(options)
    out_dir = Path(out_dir)
    check_prediction_outputs_free(out_dir)
    run_device = torch_device(device)
    model, classifier, classes = load_classifier(Path(model_dir), run_device)
    settings = classifier.config

    rows: list[dict[str, Any]] = []
    skipped: list[SkippedFile] = []
    heatmap_paths: list[Path] = []
    inputs = [Path(p) for p in inputs]
    with unpacked_inputs(inputs) as resolved:
        listing = list_prediction_samples(
            resolved,
            classes,
            crop_objects=settings.crop_objects,
            crop_margin_fraction=settings.crop_margin_fraction,
            leave_out=[out_dir / HEATMAP_DIR],  # an earlier run's overlays, when --out is inside
        )
        # Images from a zip are read from a temporary folder, gone after this run: the tables
        # name them inside the zip the user gave.
        unzipped = [(r, p) for r, p in zip(resolved, inputs, strict=True) if r != p]
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".heatmaps-", dir=out_dir))
        try:
            timer = StageTimer(progress, "predict", total=len(listing.samples), min_interval_s=0.5)
            used_names: set[str] = set()
            for done, prepared in _prepared_batches(
                listing.samples, settings, opts.batch_size, skipped
            ):
                if prepared:
                    squares = np.stack([item[2] for item in prepared])
                    probabilities, cams = _run_network(
                        model, squares, settings, run_device, opts.heatmaps
                    )
                    for k, (sample, pixels, _, content) in enumerate(prepared):
                        row = prediction_row(sample, probabilities[k], classes)
                        row["file"] = _as_given(Path(row["file"]), unzipped)
                        if cams is not None:
                            name = heatmap_name(sample, used_names)
                            caption = f"{row['class']} {row['probability']:.0%}"
                            write_overlay(
                                staging / name, pixels, cams[k], content, caption,
                                settings.normalize_percentiles,
                                opts.heatmap_min_side_px, opts.heatmap_max_side_px,
                            )  # fmt: skip
                            row["heatmap"] = f"{HEATMAP_DIR}/{name}"
                            heatmap_paths.append(out_dir / HEATMAP_DIR / name)
                        rows.append(row)
                timer.update(done)
            if not rows:
                raise InvalidInput(
                    f"none of the {len(listing.samples)} image(s) could be read "
                    f"(first problem: {skipped[0].reason}); check the files"
                )
            # Everything is computed before the first write, so a failure leaves the CSV and
            # the JSON of one run side by side.
            csv_text = predictions_csv(rows, classes)
            record = {
                "csv_sha256": sha256_text(csv_text),
                "model": {
                    "dir": str(model_dir),
                    "engine": classifier.name,
                    "model_name": settings.model_name,
                },
                "classes": classes,
                "predictions": rows,
                "skipped": [dataclasses.asdict(s) for s in skipped],
                "unknown_classes": listing.unknown_classes,
                "evaluation": score_predictions(rows, classes),
            }
            check_prediction_outputs_free(out_dir)  # again: files may have changed meanwhile
            if opts.heatmaps:
                replace_folder(staging, out_dir / HEATMAP_DIR)
            else:  # an earlier run's overlays (checked above) would not match this run's rows
                shutil.rmtree(out_dir / HEATMAP_DIR, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise
        shutil.rmtree(staging, ignore_errors=True)
    csv_path = atomic_write_text(out_dir / PREDICTIONS_CSV, csv_text)
    json_path = atomic_write_json(out_dir / PREDICTIONS_JSON, record)
    log.info("classified %d image(s), skipped %d", len(rows), len(skipped))
    return [csv_path, json_path, *heatmap_paths]
