"""Thin glue between pages and the library: cached stores, cached computations, job calls.

Pages call these functions and render what they return. Cached functions take plain arguments
(ids, bytes, numbers), never widgets.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from gpu_backend.projects import (
    IMAGE_SUFFIXES,
    ImageRecord,
    Project,
    ProjectStore,
    open_project_store,
)
from pipelines.errors import NoCodeMLError

log = logging.getLogger(__name__)

# What every image uploader offers: the types the project store (pipelines.imaging) reads.
IMAGE_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]
IMAGE_TYPES_TEXT = (
    "TIFF, PNG, JPEG, DigitalMicrograph (.dm3/.dm4), Velox .emd or TIA .ser"  # the same list
)


@st.cache_resource(show_spinner=False)
def _project_store(store_uri: str) -> ProjectStore:
    from gpu_backend.settings import load_settings

    return open_project_store(load_settings())


def settings():
    from gpu_backend.settings import load_settings

    return load_settings()


def project_store() -> ProjectStore:
    """The project store of the configured data folder / bucket (one per server process)."""
    return _project_store(settings().resolved_store_uri)


def data_location() -> str:
    current = settings()
    return current.store_uri or str(current.data_dir)


@dataclass(frozen=True)
class ProjectProgress:
    """How far the current project is: decides which pages the navigation shows."""

    has_project: bool = False
    project_name: str = ""
    has_labels: bool = False
    has_jobs: bool = False


def project_progress(project_id: str | None) -> ProjectProgress:
    if not project_id:
        return ProjectProgress()
    try:
        store = project_store()
        project = store.get(project_id)
        labelled = (project.task == "classify" and bool(project.images)) or store.has_objects(
            project_id
        )
    except NoCodeMLError as error:
        log.warning("project %s unavailable: %s", project_id, error)
        return ProjectProgress()
    return ProjectProgress(
        has_project=True,
        project_name=project.name,
        has_labels=labelled,
        has_jobs=bool(project.jobs),
    )


def current_project(project_id: str | None) -> Project | None:
    if not project_id:
        return None
    try:
        return project_store().get(project_id)
    except NoCodeMLError:
        return None


@st.cache_data(show_spinner=False, max_entries=64)
def png_crop(png: bytes, left: int, top: int, right: int, bottom: int, zoom_px: int) -> bytes:
    """A region of a preview PNG, resized so its longer side is ``zoom_px`` (nearest pixels)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").crop((left, top, right, bottom))
    width, height = image.size
    factor = zoom_px / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resample = Image.Resampling.NEAREST if factor >= 1 else Image.Resampling.LANCZOS
    out = io.BytesIO()
    image.resize(size, resample).save(out, format="PNG")
    return out.getvalue()


@st.cache_data(show_spinner=False, max_entries=16)
def png_fit(png: bytes, max_side_px: int) -> tuple[bytes, int, int]:
    """A preview PNG shrunk so its longer side is at most ``max_side_px``; (png, width, height)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    factor = min(1.0, max_side_px / max(image.size))
    if factor < 1.0:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), image.width, image.height


SAMPLE_SCENARIO = "particles"
SAMPLE_SIZE_PX = 512
SAMPLE_SEED = 7


def existing_sample(task: str, size_px: int) -> Project | None:
    """The newest sample project of ``task`` that still has its images, made at today's size
    (an older, smaller classification sample did not learn): pressing "Try the sample" again
    opens it instead of making a second project of the same name."""
    samples = [
        p
        for p in project_store().list_projects()
        if p.is_sample and p.task == task and p.images and p.images[0].width_px == size_px
    ]
    return max(samples, key=lambda p: p.created, default=None)


def sample_project() -> Project:
    """A new project from a seeded synthetic STEM image with its user labels (crops + outlines)."""
    import tempfile

    from gpu_backend.projects import add_class
    from pipelines import synthetic

    if (found := existing_sample("detect", SAMPLE_SIZE_PX)) is not None:
        return found
    store = project_store()
    sample = synthetic.generate(SAMPLE_SCENARIO, size_px=SAMPLE_SIZE_PX, seed=SAMPLE_SEED)
    project = store.create("Sample: Pd nanoparticles (synthetic)", "detect")
    with tempfile.TemporaryDirectory(prefix="nocode-sample-") as folder:
        files = synthetic.write_sample(sample, Path(folder))
        project, record = store.add_image(
            project.project_id, "sample_particles.tif", files["image"].read_bytes()
        )
        store.import_labels(project.project_id, record.name, files["labels"].read_bytes())
    project = store.get(project.project_id)
    for class_name in sample.truth.class_names:
        project = add_class(project, class_name)
    return store.update(dataclasses.replace(project, is_sample=True))


# 256 px as the classification benchmark: at 96 px the particles were 2-3 of ConvNeXt's 4-px
# patches across and the Quick preset learnt nothing from 8 images per class (held-back
# accuracy at chance, 3 min); at 256 px it reaches 100 % in about 70 s on 2 CPU cores.
CLASS_SAMPLE_IMAGES_PER_CLASS = 8
CLASS_SAMPLE_SIZE_PX = 256


def classification_sample_project() -> Project:
    """A new classification project: synthetic particle images in three shape classes, each
    image already marked with its class."""
    import tempfile

    from pipelines.synthetic_classes import write_synthetic_classification

    if (found := existing_sample("classify", CLASS_SAMPLE_SIZE_PX)) is not None:
        return found
    store = project_store()
    with tempfile.TemporaryDirectory(prefix="nocode-class-sample-") as folder:
        written = write_synthetic_classification(
            Path(folder),
            n_per_class=CLASS_SAMPLE_IMAGES_PER_CLASS,
            seed=SAMPLE_SEED,
            size_px=CLASS_SAMPLE_SIZE_PX,
        )
        project = store.create("Sample: particle shapes (synthetic)", "classify", written.classes)
        for class_name, paths in written.files.items():
            for path in paths:
                _, record = store.add_image(project.project_id, path.name, path.read_bytes())
                store.set_image_class(project.project_id, record.name, class_name)
    return store.update(dataclasses.replace(store.get(project.project_id), is_sample=True))


def create_project(
    name: str, task: str, classes: list[str], images: list[tuple[str, bytes]]
) -> Project:
    """A new project with its images; nothing is kept when an image is refused.

    For classification a ``.zip`` of class folders adds its images with their classes.
    """
    store = project_store()
    if not images:
        raise NoCodeMLError(
            f"add at least one image ({IMAGE_TYPES_TEXT}) with the picker; files it marks "
            "with a red ! are of a type it does not take"
        )
    if task == "classify" and any(n.lower().endswith(".zip") for n, _ in images):
        classes = []  # the zip's folders name the classes
    elif task == "classify" and len({c.strip() for c in classes if c.strip()}) < 2:
        given = ", ".join(c.strip() for c in classes if c.strip()) or "none"
        raise NoCodeMLError(
            f"sorting images needs at least two classes (you gave: {given}); type them comma "
            "separated, e.g. 'fresh, sintered', or upload a .zip with one folder per class"
        )
    project = store.create(name, task, classes)
    try:
        for file_name, data in images:
            if file_name.lower().endswith(".zip"):
                if task != "classify":
                    raise NoCodeMLError(
                        f"{file_name}: zips of class folders are for classification projects; "
                        "for object detection upload the images themselves"
                    )
                project = store.add_class_folders_zip(project.project_id, data, file_name)
            else:
                project, _ = store.add_image(project.project_id, file_name, data)
    except NoCodeMLError:
        store.delete(project.project_id)
        raise
    return project


# -- jobs ---------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def _job_client(store_uri: str, launcher: str):
    from gpu_backend.jobs import JobClient

    return JobClient(settings())


def job_client():
    """The job client of the configured store and launcher (one per server process)."""
    current = settings()
    return _job_client(current.resolved_store_uri, current.launcher)


@dataclass(frozen=True)
class Preset:
    """A training choice in plain words, mapped onto engine, device and time budget."""

    key: str
    title: str
    explanation: str
    engine: dict[str, str | None]
    device: str
    minutes: float


PRESETS = (
    Preset(
        "quick",
        "Quick — small network",
        "A small network that learns fast from a few labels: the right choice for most "
        "images. Trains for 3 minutes on the processor (CPU).",
        {"detect": None, "classify": None},
        "cpu",
        3.0,
    ),
    Preset(
        "accurate",
        "Accurate — larger network",
        "Trains for 20 minutes, on a GPU when there is one. Finding objects: a large network "
        "that starts from one pretrained on everyday photos, where the server has it "
        "(otherwise the quick network, trained longer). Sorting images: a larger network.",
        {"detect": "maskrcnn", "classify": "convnext"},  # ConvNeXt-tiny preset on a GPU
        "auto",
        20.0,
    ),
)


def preset(key: str) -> Preset:
    return next(p for p in PRESETS if p.key == key)


@st.cache_resource(show_spinner=False)
def _local_gpu() -> bool:
    """Whether PyTorch sees a GPU on this computer (once per server: importing torch is slow)."""
    import torch

    return bool(torch.cuda.is_available())


def where_training_runs(chosen: Preset, launcher: str, local_gpu: bool) -> str:
    """One sentence saying which machine and chip a preset trains on.

    Jobs of the ``local`` launcher run on this computer; other launchers hand them to the job
    machines configured for the app (``device="auto"`` uses their GPU when they have one).
    """
    if launcher == "local":
        if chosen.device == "cpu":
            return "Runs on this computer's processor (CPU)."
        if local_gpu:
            return "Runs on this computer's GPU."
        return (
            "Runs on this computer's processor (CPU): no GPU was found here, so it is slower "
            "than on a GPU."
        )
    if chosen.device == "cpu":
        return "Runs on the processor (CPU) of the job machine set up for this app."
    return "Runs on the job machine set up for this app, on its GPU (its CPU if it has none)."


def training_place(chosen: Preset) -> str:
    """:func:`where_training_runs` for this app's launcher and computer."""
    launcher = settings().launcher
    needs_gpu_check = launcher == "local" and chosen.device != "cpu"
    return where_training_runs(chosen, launcher, _local_gpu() if needs_gpu_check else False)


def preset_engine(chosen: Preset, task: str, launcher: str) -> str | None:
    """The engine a preset trains for ``task`` when jobs are started by ``launcher``.

    Mask R-CNN only pays with its COCO weights: from scratch it found particles at F1 0.83
    after a minute on an H200 GPU, the default U-Net at 0.98
    (``benchmarks/results/detection-cuda.json``). Jobs of the local launcher run beside the
    app, so its weights folder is theirs: without the file there, the default engine is used.
    Other launchers run the GPU image, whose build checks that the weights are baked in.
    """
    engine = chosen.engine[task]
    if engine == "maskrcnn" and launcher == "local":
        from pipelines.detection.maskrcnn import MaskRCNNConfig, coco_weights

        if coco_weights(MaskRCNNConfig()) is None:
            return None
    return engine


# Engine settings merged into "quick" trainings, per task, as a JSON object, e.g.
# '{"detect": {"channels": [8, 16, 32], "patch_px": 64}}' (an "engine" key picks another
# engine). For the browser tests and demos on slow machines: the pages and the job path stay
# the same, only the network is smaller.
TRAIN_CONFIG_ENV = "NOCODE_ML_APP_TRAIN_CONFIG"


def extra_train_config(task: str, preset_key: str) -> tuple[str | None, dict | None]:
    """``(engine or None, engine settings or None)`` from :data:`TRAIN_CONFIG_ENV`."""
    import os

    raw = os.environ.get(TRAIN_CONFIG_ENV, "").strip()
    if not raw or preset_key != "quick":
        return None, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise NoCodeMLError(
            f"{TRAIN_CONFIG_ENV} is not JSON ({error}); fix or unset it and restart the app"
        ) from error
    if not isinstance(value, dict) or not isinstance(value.get(task, {}), dict):
        raise NoCodeMLError(
            f'{TRAIN_CONFIG_ENV} must look like {{"{task}": {{...engine settings...}}}}'
        )
    settings = dict(value.get(task) or {})
    engine = settings.pop("engine", None)
    return engine, settings or None


def training_images(project) -> tuple[list[tuple[str, int]], list[str]]:
    """A detection project's images as training sees them: ``(name, objects)`` of those with
    outlines (it learns from these), and the names of those without (they only get results)."""
    counts = project_store().object_counts(project.project_id)
    used, unused = [], []
    for record in project.images:
        objects = counts.get(record.name)
        if objects is None:
            unused.append(f"{record.user_file_name} (labels unreadable: see the Label page)")
        elif objects:
            used.append((record.user_file_name, objects))
        else:
            unused.append(record.user_file_name)
    return used, unused


def training_in_progress(project) -> str | None:
    """The id of the project's training that is waiting or running, if there is one."""
    if not project.train_jobs:
        return None
    job_id = project.train_jobs[-1].job_id
    status = job_status_or_none(job_id)
    return job_id if status is not None and not status.is_terminal else None


def submit_training(project_id: str, preset_key: str, minutes: float | None = None) -> str:
    """Export the project's labelled images and queue a training job; returns the job id.

    ``minutes`` is the time budget the user typed; ``None`` (or 0) trains for the preset's.
    One training per project at a time: a second click would queue a duplicate and push the
    running one out of sight.
    """
    import tempfile

    from gpu_backend.projects import JobLink, count_labels
    from gpu_backend.spec import utc_now

    store = project_store()
    project = store.get(project_id)
    if training_in_progress(project):
        raise NoCodeMLError(
            "this project is already training; wait for it to finish, or cancel it, "
            "before starting another"
        )
    chosen = preset(preset_key)
    if project.task == "detect":
        names = [
            r.name
            for r in project.images
            if count_labels(store.labels(project_id, r.name)).objects > 0
        ]
        if not names:
            raise NoCodeMLError("no outlined objects yet; outline every object in a crop first")
    else:
        names = [r.name for r in project.images]
    engine, config = extra_train_config(project.task, preset_key)
    with tempfile.TemporaryDirectory(prefix="nocode-train-") as folder:
        root = Path(folder) / "labelled"
        store.export_folder(project_id, root, names)
        status = job_client().submit_training(
            project.task,
            [root],
            engine=engine or preset_engine(chosen, project.task, settings().launcher),
            config=config,
            device=chosen.device,
            minutes=minutes or chosen.minutes,
            name=f"{project.name} — {chosen.title}",
        )
    store.link_job(
        project_id,
        JobLink(status.job_id, "train", utc_now(), preset=preset_key, images=tuple(names)),
    )
    return status.job_id


def submit_prediction(project_id: str, model_job_id: str, names: list[str] | None = None) -> str:
    """Queue a prediction with a trained model on project images (all by default)."""
    import tempfile

    from gpu_backend.projects import JobLink
    from gpu_backend.spec import utc_now

    store = project_store()
    project = store.get(project_id)
    names = names or [r.name for r in project.images]
    with tempfile.TemporaryDirectory(prefix="nocode-predict-") as folder:
        root = Path(folder) / "images"
        root.mkdir()
        if project.task == "classify":
            # Class sub-folders: the job scores its predictions against the user's classes.
            store.export_class_folders(project_id, root)
        else:
            for name in names:
                record = project.image(name)
                (root / record.file_name).write_bytes(
                    store.image_path(project_id, name).read_bytes()
                )
        status = job_client().submit_prediction(
            model_job_id, [root], name=f"{project.name} — find objects"
        )
    store.link_job(project_id, JobLink(status.job_id, "predict", utc_now(), images=tuple(names)))
    return status.job_id


def check_model(model_job_id: str) -> None:
    """Refuse (one line, what to do) a model that was deleted or did not finish training."""
    status = job_status_or_none(model_job_id)
    if status is None:
        raise NoCodeMLError("the model of this run was deleted; train a new one on the Train page")
    if status.state != "succeeded":
        raise NoCodeMLError(
            f"the model of this run is not usable (its training {status.state}); train again"
        )


def predict_new_images(project_id: str, model_job_id: str, uploads: list[tuple[str, bytes]]) -> str:
    """Add uploaded images to the project and let the model ``model_job_id`` find their
    objects; returns the prediction job id. The model is checked before any image is added,
    and no image is kept when one is refused or the job cannot be sent."""
    check_model(model_job_id)
    names = add_images(project_id, uploads)
    try:
        return submit_prediction(project_id, model_job_id, names)
    except NoCodeMLError:
        project_store().delete_images(project_id, names)  # a second try must not add them twice
        raise


def add_images(project_id: str, uploads: list[tuple[str, bytes]]) -> list[str]:
    """Add uploaded images to a project, all or none: when one is refused, those added before
    it are removed again, so clicking "Add" once more does not store them twice. Returns the
    names the images got."""
    store = project_store()
    names: list[str] = []
    try:
        for file_name, data in uploads:
            _, record = store.add_image(project_id, file_name, data)
            names.append(record.name)
    except NoCodeMLError:
        store.delete_images(project_id, names)
        raise
    return names


def adopt_predictions(
    project_id: str, name: str, predicted_raw: dict, box: tuple[float, float, float, float] | None
) -> tuple[int, int]:
    """Turn a model's objects in ``box`` (None: whole image) into labels with a crop around
    them; returns (objects added, crop index)."""
    from gpu_backend.projects import adopt_predictions as adopt
    from pipelines.formats.labelme import parse_labelme

    store = project_store()
    predicted = parse_labelme(predicted_raw, f"{name} (model result)", validate=False)
    document, added, crop_index = adopt(store.labels(project_id, name), predicted, box)
    store.save_labels(project_id, name, document)
    return added, crop_index


def model_of_prediction(predict_job_id: str) -> str | None:
    """The training job whose model made a prediction (None when it used an uploaded model)."""
    return job_client().spec(predict_job_id).model_job_id


def job_status(job_id: str):
    return job_client().status(job_id)


def job_status_or_none(job_id: str):
    """The job's status, or ``None`` when the job was deleted (Models page, command line)."""
    from gpu_backend.errors import JobNotFound

    try:
        return job_client().status(job_id)
    except JobNotFound:
        return None


def delete_model(train_job_id: str) -> None:
    """Delete a trained model's job and unlink it from the projects that trained it."""
    from gpu_backend.errors import JobNotFound

    try:
        job_client().delete(train_job_id)
    except JobNotFound:
        log.info("job %s was already deleted; unlinking it", train_job_id)
    store = project_store()
    for project in store.projects_linking(train_job_id):
        store.unlink_job(project.project_id, train_job_id)


def labelme_for_user(record: ImageRecord, labelme_raw: dict) -> tuple[str, str]:
    """``(json text, file name)`` of labels as the user downloads them: ``imagePath`` and the
    file name follow the name the image was uploaded with, so the file opens in labelme beside
    the user's image. No ``imageData`` (see :func:`labelme_file`), so the text stays small
    enough to show statistics from on every rerun."""
    document = {**labelme_raw, "imagePath": record.user_file_name, "imageData": None}
    return json.dumps(document, indent=2, ensure_ascii=False), f"{record.user_stem}.json"


def labelme_file(project_id: str, record: ImageRecord, labelme_json: str) -> bytes:
    """The file a LabelMe download button hands out, made when it is clicked, with the picture
    inside as ``imageData`` (the stored 8-bit view, as prediction's
    :func:`pipelines.imaging.grey8_png` makes it, without reading the original again).

    labelme then opens it wherever it is saved: the sample's user never had its image, a
    microscope file (dm3, dm4, emd, ser) is one labelme cannot read, and a lab's TIFF may stay
    on another computer. ``imagePath`` still names the original, which training reads when it
    lies beside the file."""
    from PIL import Image

    from pipelines.formats.labelme import image_data_of

    preview = Image.open(io.BytesIO(project_store().preview_png(project_id, record.name)))
    grey = io.BytesIO()
    preview.convert("L").save(grey, format="PNG")  # the view's three channels are equal
    document = {**json.loads(labelme_json), "imageData": image_data_of(grey.getvalue())}
    return json.dumps(document, indent=2, ensure_ascii=False).encode("utf-8")


# -- statistics ---------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=32)
def statistics(labelme_json: str, nm_per_px: float | None):
    """Statistics of one LabelMe document (``pipelines.stats``): tables and figure builders.

    ``nm_per_px=None`` uses the pixel size stored in the file, if any (else sizes in px).
    """
    from pipelines.formats.labelme import parse_labelme
    from pipelines.stats import compute_statistics

    document = parse_labelme(json.loads(labelme_json), "labels")
    return compute_statistics([document], nm_per_px=nm_per_px)


@st.cache_data(show_spinner=False, max_entries=16)
def statistics_files(labelme_json: str, nm_per_px: float | None, stem: str) -> dict[str, bytes]:
    """The statistics exports as bytes: ``.csv`` (objects), ``.xlsx``, ``.json``, ``.html``."""
    import tempfile

    from pipelines.stats import write_html_report, write_statistics

    result = statistics(labelme_json, nm_per_px)
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="nocode-stats-") as folder:
        for suffix in (".csv", ".xlsx", ".json"):
            path = Path(folder) / f"{stem}_statistics{suffix}"
            write_statistics(result, path)
            out[suffix] = path.read_bytes()
        report = write_html_report(
            result, Path(folder) / f"{stem}_report.html", title=f"Object statistics — {stem}"
        )
        out[".html"] = report.read_bytes()
    return out


def calibration_of_upload(file_name: str, data: bytes) -> float | None:
    """The pixel size stored in an uploaded image file, or ``None``."""
    from pipelines.imaging import load_image_bytes

    return load_image_bytes(data, file_name).calibration.nm_per_px


def model_zip(train_job_id: str) -> bytes:
    """The trained model folder of a job as a zip (for sharing or the CLI).

    Called by a download button only when the user clicks it; built once per model version
    (job id + the model files' modification time).
    """
    client = job_client()
    status = client.status(train_job_id)
    keys = tuple(sorted(k for k in status.results if "/model/" in f"/{k}"))
    if not keys:
        raise NoCodeMLError(f"job {train_job_id} has no model; train again")
    local = client.result_path(train_job_id, keys[0])
    version = str(local.stat().st_mtime_ns) if local is not None else status.updated
    return _model_zip(train_job_id, keys, version)


@functools.lru_cache(maxsize=4)
def _model_zip(train_job_id: str, keys: tuple[str, ...], version: str) -> bytes:
    # functools, not st.cache_data: this runs on the download thread, outside a script run.
    import zipfile

    client = job_client()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in keys:
            name = key.split("model/", 1)[1]
            archive.writestr(f"model/{name}", client.read_result(train_job_id, key))
    log.info("zipped model of %s (%d files, version %s)", train_job_id, len(keys), version)
    return out.getvalue()


@st.cache_resource(show_spinner=False, max_entries=4)
def _pixels(image_path: str):
    from pipelines.imaging import load_image

    return load_image(image_path).pixels


def propose_outline(project_id: str, name: str, x: float, y: float):
    """Assisted outlining: the polygon around the object clicked at ``(x, y)`` (image px)."""
    from pipelines.detection.assist import propose_outline as library_proposal

    pixels = _pixels(str(project_store().image_path(project_id, name)))
    return library_proposal(pixels, x, y)
