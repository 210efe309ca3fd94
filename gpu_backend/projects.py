"""Projects: what a user works on in the app, kept in the job backend's store.

A project holds images, their labels (LabelMe, saved on every change), the list of object
classes with their display colours, the pixel size, and links to the jobs (training,
prediction) launched from it. Everything lives under ``projects/<id>/`` in the same store as
the jobs, so a reload of the page, a restart of the app or a second browser sees the same state.

Layout of a project in the store::

    projects/<id>/project.json          the Project record (below)
    projects/<id>/images/<name>.<ext>   the uploaded image, unchanged, under a safe name
    projects/<id>/images/<name>.json    its LabelMe file (imagePath = the stored file name,
                                        so the folder opens as it is in labelme; a dm3/dm4/
                                        emd/ser image, which labelme cannot read, only through
                                        a download, which carries the picture as imageData)
    projects/<id>/previews/<name>.png   an 8-bit RGB view for the browser

The stored name is made safe for every store (``Pd on C (2).TIF`` → ``Pd_on_C_2.tif``); the
record keeps the name the file was uploaded with, so what the user downloads points to their
own file (:attr:`ImageRecord.user_file_name`).

No Streamlit here: the app calls these functions, tests call them directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from gpu_backend.errors import KeyNotFound
from gpu_backend.store import LocalStore, Store
from pipelines.errors import InvalidInput, InvalidLabels
from pipelines.fileio import repair_zip_names
from pipelines.formats.labelme import (
    LabelMeDocument,
    Shape,
    is_crop_label,
    new_document,
    parse_labelme,
)
from pipelines.imaging import SUPPORTED_EXTENSIONS

log = logging.getLogger(__name__)

PROJECTS_FOLDER = "projects"
PROJECT_FILE = "project.json"
FORMAT_VERSION = 1
TASKS = ("detect", "classify")
# Colour-blind-friendly palette (Okabe–Ito), then a few more distinct ones.
PALETTE = (
    "#e69f00",
    "#56b4e9",
    "#009e73",
    "#f0e442",
    "#0072b2",
    "#d55e00",
    "#cc79a7",
    "#ff00ff",
    "#00ffff",
    "#7fff00",
)
CROP_COLOUR = "#ff2a2a"
_PROJECT_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")
_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,39}$")
IMAGE_SUFFIXES = SUPPORTED_EXTENSIONS  # what pipelines.imaging reads, nothing more


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ObjectClass:
    """An object type the user outlines (``particle``), with its colour as ``#rrggbb``."""

    name: str
    colour: str


@dataclass(frozen=True)
class ImageRecord:
    """One image of a project. ``nm_per_px`` is ``None`` when uncalibrated.

    ``file_name`` is the safe name the image is stored under; ``original_name`` the name it was
    uploaded with (empty in records made before it was kept).
    """

    name: str
    file_name: str
    height_px: int
    width_px: int
    nm_per_px: float | None = None
    calibration_source: str = "none"
    original_name: str = ""

    @property
    def user_file_name(self) -> str:
        """The image's file name as the user knows it (``imagePath`` of downloaded labels)."""
        return self.original_name or self.file_name

    @property
    def user_stem(self) -> str:
        """:attr:`user_file_name` without its extension, for the names of downloaded files."""
        return Path(self.user_file_name).stem or self.name


@dataclass(frozen=True)
class JobLink:
    """A job launched from the project (``action`` is ``train`` or ``predict``)."""

    job_id: str
    action: str
    created: str
    preset: str = ""
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Project:
    """The project record stored as ``project.json``."""

    project_id: str
    name: str
    task: str = "detect"
    created: str = ""
    updated: str = ""
    classes: tuple[ObjectClass, ...] = ()
    images: tuple[ImageRecord, ...] = ()
    jobs: tuple[JobLink, ...] = ()
    is_sample: bool = False
    format_version: int = FORMAT_VERSION

    def colour_of(self, class_name: str) -> str:
        """Display colour of a class (crops are red; unknown classes grey)."""
        if is_crop_label(class_name):
            return CROP_COLOUR
        for item in self.classes:
            if item.name == class_name:
                return item.colour
        return "#9e9e9e"

    def class_of_colour(self, colour: str) -> str | None:
        for item in self.classes:
            if item.colour.lower() == colour.lower():
                return item.name
        return None

    def image(self, name: str) -> ImageRecord:
        for record in self.images:
            if record.name == name:
                return record
        raise InvalidInput(f"project {self.name!r} has no image {name!r}; upload it first")

    @property
    def train_jobs(self) -> list[JobLink]:
        return [job for job in self.jobs if job.action == "train"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Project:
        return cls(
            project_id=str(raw["project_id"]),
            name=str(raw.get("name", "")),
            task=str(raw.get("task", "detect")),
            created=str(raw.get("created", "")),
            updated=str(raw.get("updated", "")),
            classes=tuple(ObjectClass(**item) for item in raw.get("classes", [])),
            images=tuple(ImageRecord(**item) for item in raw.get("images", [])),
            jobs=tuple(
                JobLink(**{**item, "images": tuple(item.get("images", ()))})
                for item in raw.get("jobs", [])
            ),
            is_sample=bool(raw.get("is_sample", False)),
            format_version=int(raw.get("format_version", FORMAT_VERSION)),
        )


@dataclass
class LabelCounts:
    """How much is labelled in one image: crops and objects per class."""

    crops: int = 0
    objects_by_class: dict[str, int] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return sum(self.objects_by_class.values())


def count_labels(document: LabelMeDocument) -> LabelCounts:
    counts = LabelCounts(crops=len(document.crop_shapes))
    for shape in document.object_shapes:
        counts.objects_by_class[shape.label] = counts.objects_by_class.get(shape.label, 0) + 1
    return counts


def labelling_gaps(document: LabelMeDocument) -> list[str]:
    """What in one image's labels would teach the network something the user did not mean.

    Inside a crop every pixel not outlined is taught as background, so a crop left empty by
    mistake teaches its objects away; without any crop that holds for the whole image.
    """
    if not document.object_shapes:
        return [
            "Nothing is outlined in this image yet: draw a crop (tab ①), then outline every "
            "object inside it (tab ②). Training learns from the images with outlines; the "
            "others still get results."
        ]
    crops = document.crop_shapes
    if not crops:
        return [
            "There is no crop, so the whole image counts as labelled: every object in it must "
            "be outlined, or the ones left out are learnt as background. Draw crops (tab ①) to "
            "label only parts of the image."
        ]
    centres = np.array([shape.points.mean(axis=0) for shape in document.object_shapes])
    gaps = []
    for index, crop in enumerate(crops):
        x0, y0, x1, y1 = crop.bounds()
        inside = (centres[:, 0] >= x0) & (centres[:, 0] <= x1)
        inside &= (centres[:, 1] >= y0) & (centres[:, 1] <= y1)
        if not inside.any():
            gaps.append(
                f"Crop {index + 1} has no outlines, so it teaches that nothing in it is an "
                "object. If it holds objects, outline them (tab ②); otherwise keep it as an "
                "example of background."
            )
    return gaps


def check_class_name(name: str) -> str:
    """A class name usable as a LabelMe label and a file name; returns it stripped."""
    name = name.strip()
    if is_crop_label(name):
        raise InvalidInput("'crop' is reserved for the labelled regions; choose another class name")
    if not _CLASS_NAME.match(name):
        raise InvalidInput(
            f"class name {name!r} is not usable: use 1–40 letters, digits, spaces, '_', '-', "
            "'.' or '+', starting with a letter or digit (e.g. particle)"
        )
    return name


def _safe_stem(file_name: str) -> str:
    stem = Path(file_name).stem
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "image"
    return stem[:60]


class ProjectStore:
    """Projects kept in a job-backend :class:`~gpu_backend.store.Store`.

    ``cache_dir`` receives local copies of files when the store is not a local folder (S3):
    the imaging and stats pipelines read files from disk.
    """

    def __init__(self, store: Store, cache_dir: str | Path | None = None) -> None:
        self.store = store
        if isinstance(store, LocalStore):
            self.cache_dir = None
        else:
            self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="nocode-ml-cache-"))

    # -- keys -------------------------------------------------------------------------------
    @staticmethod
    def _key(project_id: str, *parts: str) -> str:
        if not _PROJECT_ID.match(project_id):
            raise InvalidInput(f"{project_id!r} is not a project id; pick a project from the list")
        return "/".join((PROJECTS_FOLDER, project_id, *parts))

    def local_path(self, key: str) -> Path:
        """A file of the store on this machine (in place for a local folder, else a cached copy)."""
        if isinstance(self.store, LocalStore):
            path = self.store.path(key)
            if not path.is_file():
                raise KeyNotFound(f"{key} is missing from the data folder; upload it again")
            return path
        assert self.cache_dir is not None
        path = self.cache_dir / key
        if not path.is_file():
            self.store.download_file(key, path)
        return path

    # -- projects ---------------------------------------------------------------------------
    def list_projects(self) -> list[Project]:
        """All projects, newest first; unreadable records are skipped with a log line."""
        projects = []
        for folder in self.store.list_folders(PROJECTS_FOLDER):
            project_id = folder.rstrip("/").rsplit("/", 1)[-1]
            if not _PROJECT_ID.match(project_id):
                continue
            try:
                projects.append(self.get(project_id))
            except (KeyNotFound, InvalidInput, KeyError, TypeError, ValueError) as error:
                log.warning("skipping project %s: %s", project_id, error)
        return sorted(projects, key=lambda p: (p.created, p.project_id), reverse=True)

    def get(self, project_id: str) -> Project:
        try:
            raw = json.loads(self.store.read_bytes(self._key(project_id, PROJECT_FILE)))
        except KeyNotFound as error:
            raise InvalidInput(
                f"project {project_id} does not exist (deleted?); choose one on the start page"
            ) from error
        return Project.from_dict(raw)

    def save(self, project: Project) -> Project:
        project = dataclasses.replace(project, updated=_now())
        data = json.dumps(project.to_dict(), indent=2, ensure_ascii=False) + "\n"
        self.store.write_bytes(self._key(project.project_id, PROJECT_FILE), data.encode("utf-8"))
        return project

    def create(self, name: str, task: str = "detect", classes: Iterable[str] = ()) -> Project:
        name = name.strip()
        if not name:
            raise InvalidInput("give the project a name (e.g. 'Pd on carbon, batch 3')")
        if task not in TASKS:
            raise InvalidInput(f"task must be one of {TASKS}, got {task!r}")
        project_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
        project = Project(project_id=project_id, name=name[:80], task=task, created=_now())
        for class_name in classes:
            project = add_class(project, class_name)
        return self.save(project)

    def delete(self, project_id: str) -> int:
        """Delete a project's files (its jobs and models stay in the job list)."""
        return self.store.delete_prefix(self._key(project_id) + "/")

    def projects_linking(self, job_id: str) -> list[Project]:
        """The projects that link the job ``job_id``."""
        return [p for p in self.list_projects() if any(j.job_id == job_id for j in p.jobs)]

    # -- images -----------------------------------------------------------------------------
    def add_image(
        self,
        project_id: str,
        file_name: str,
        data: bytes,
        nm_per_px: float | None = None,
    ) -> tuple[Project, ImageRecord]:
        """Store an uploaded image (validated by reading it) with an empty LabelMe file."""
        from pipelines.imaging import load_image_bytes, to_rgb8

        suffix = Path(file_name).suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise InvalidInput(
                f"{file_name}: unsupported file type {suffix or '(none)'}; "
                f"upload one of {', '.join(IMAGE_SUFFIXES)}"
            )
        loaded = load_image_bytes(data, file_name, nm_per_px=nm_per_px)
        project = self.get(project_id)
        taken = {record.name for record in project.images}
        name = base = _safe_stem(file_name)
        number = 2
        while name in taken:
            name, number = f"{base}_{number}", number + 1
        height, width = (int(v) for v in loaded.pixels.shape[:2])
        record = ImageRecord(
            name=name,
            file_name=name + suffix,
            height_px=height,
            width_px=width,
            nm_per_px=loaded.calibration.nm_per_px,
            calibration_source=str(loaded.calibration.source),
            original_name=Path(file_name).name,
        )
        self.store.write_bytes(self._key(project_id, "images", record.file_name), data)
        self._write_preview(project_id, name, to_rgb8(loaded.pixels))
        self.save_labels(project_id, name, new_document([], record.file_name, height, width))
        project = self.save(dataclasses.replace(project, images=(*project.images, record)))
        return project, record

    def _image_keys(self, project_id: str, record: ImageRecord) -> tuple[str, ...]:
        """Every file an image has in the store: the image, its labels, its preview."""
        return (
            self._key(project_id, "images", record.file_name),
            self.labels_key(project_id, record.name),
            self._key(project_id, "previews", f"{record.name}.png"),
        )

    def delete_image(self, project_id: str, name: str) -> Project:
        """Remove an image with its labels from the project (jobs made from it keep theirs)."""
        return self.delete_images(project_id, [name])

    def delete_images(self, project_id: str, names: Sequence[str]) -> Project:
        """Remove images with their labels and previews, saving the project once; also how a
        refused upload of several images is undone."""
        project, gone = self.get(project_id), set(names)
        for name in gone:
            for key in self._image_keys(project_id, project.image(name)):
                self.store.delete(key)
                if self.cache_dir is not None:  # a new upload may take the name again
                    (self.cache_dir / key).unlink(missing_ok=True)
        images = tuple(r for r in project.images if r.name not in gone)
        return self.save(dataclasses.replace(project, images=images))

    def _write_preview(self, project_id: str, name: str, rgb8: Any) -> None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(rgb8).save(buffer, format="PNG")
        self.store.write_bytes(self._key(project_id, "previews", f"{name}.png"), buffer.getvalue())

    def image_path(self, project_id: str, name: str) -> Path:
        record = self.get(project_id).image(name)
        return self.local_path(self._key(project_id, "images", record.file_name))

    def preview_png(self, project_id: str, name: str) -> bytes:
        """8-bit RGB PNG of the image for display."""
        return self.store.read_bytes(self._key(project_id, "previews", f"{name}.png"))

    def set_calibration(self, project_id: str, name: str, nm_per_px: float | None) -> Project:
        """Set (or clear with ``None``) an image's pixel size given by the user."""
        if nm_per_px is not None and not nm_per_px > 0:
            raise InvalidInput("the pixel size must be a positive number of nm per pixel")
        project = self.get(project_id)
        images = tuple(
            dataclasses.replace(
                record,
                nm_per_px=nm_per_px,
                calibration_source="user" if nm_per_px is not None else "none",
            )
            if record.name == name
            else record
            for record in project.images
        )
        return self.save(dataclasses.replace(project, images=images))

    # -- labels -----------------------------------------------------------------------------
    def labels_key(self, project_id: str, name: str) -> str:
        return self._key(project_id, "images", f"{name}.json")

    def labels(self, project_id: str, name: str) -> LabelMeDocument:
        """The LabelMe document of an image (validated)."""
        raw = json.loads(self.store.read_bytes(self.labels_key(project_id, name)))
        return parse_labelme(raw, f"{name}.json")

    def save_labels(self, project_id: str, name: str, document: LabelMeDocument) -> None:
        """Autosave: called on every change the user makes; validates before writing."""
        data = document.to_dict()
        parse_labelme(data, f"{name}.json")  # refuse to store what would not read back
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        self.store.write_bytes(self.labels_key(project_id, name), text.encode("utf-8"))

    def import_labels(self, project_id: str, name: str, data: bytes) -> LabelMeDocument:
        """Replace an image's labels by an uploaded LabelMe file drawn on the same image."""
        from pipelines.formats.labelme import check_image_size

        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidLabels(
                f"the uploaded file is not valid JSON ({error}); choose a LabelMe .json"
            ) from error
        document = parse_labelme(raw, "uploaded labels")
        record = self.get(project_id).image(name)
        check_image_size(document, record.height_px, record.width_px, "uploaded labels")
        document.image_path = record.file_name
        document.image_data = None
        self.save_labels(project_id, name, document)
        project = self.get(project_id)
        for label in document.class_names():
            if label not in {item.name for item in project.classes}:
                project = add_class(project, label)
        self.save(project)
        return document

    def object_counts(self, project_id: str) -> dict[str, int | None]:
        """Outlined objects per image name; ``None`` for an image whose labels cannot be read
        (the Label page says what to do about it)."""
        return dict(self._object_counts(project_id))

    def has_objects(self, project_id: str) -> bool:
        """Whether any image of the project has an outlined object (stops at the first: every
        page run asks)."""
        return any(count for _name, count in self._object_counts(project_id))

    def _object_counts(self, project_id: str) -> Iterator[tuple[str, int | None]]:
        for record in self.get(project_id).images:
            try:
                yield record.name, count_labels(self.labels(project_id, record.name)).objects
            except (InvalidInput, InvalidLabels, KeyNotFound) as error:
                log.warning("labels of %s in project %s: %s", record.name, project_id, error)
                yield record.name, None

    def export_folder(
        self, project_id: str, out_dir: Path, names: Iterable[str] | None = None
    ) -> list[Path]:
        """Write images + LabelMe files to ``out_dir`` (what a training job uploads)."""
        project = self.get(project_id)
        wanted = set(names) if names is not None else None
        written = []
        out_dir.mkdir(parents=True, exist_ok=True)
        for record in project.images:
            if wanted is not None and record.name not in wanted:
                continue
            image_target = out_dir / record.file_name
            image_target.write_bytes(
                self.store.read_bytes(self._key(project_id, "images", record.file_name))
            )
            labels_target = out_dir / f"{record.name}.json"
            labels_target.write_bytes(
                self.store.read_bytes(self.labels_key(project_id, record.name))
            )
            written += [image_target, labels_target]
        return written

    def set_image_class(self, project_id: str, name: str, class_name: str | None) -> None:
        """Classification: mark an image as showing ``class_name`` (LabelMe image flags)."""
        project = self.get(project_id)
        classes = [item.name for item in project.classes]
        if class_name is not None and class_name not in classes:
            raise InvalidInput(f"{class_name!r} is not a class of this project; add it first")
        document = self.labels(project_id, name)
        document.flags = {c: c == class_name for c in classes}
        self.save_labels(project_id, name, document)

    def image_class(self, project_id: str, name: str) -> str | None:
        """The class chosen for an image (classification), or ``None``."""
        flags = self.labels(project_id, name).flags
        chosen = [key for key, value in flags.items() if value is True]
        return chosen[0] if len(chosen) == 1 else None

    def add_class_folders_zip(self, project_id: str, data: bytes, zip_name: str) -> Project:
        """Classification: add every image of a zip of class folders (``fresh/a.png`` …),
        each marked with its folder's name as class; nothing is kept if an image is refused."""
        import zipfile

        try:
            archive = repair_zip_names(zipfile.ZipFile(io.BytesIO(data)))
        except zipfile.BadZipFile as error:
            raise InvalidInput(
                f"{zip_name} is not a zip file; zip a folder with one sub-folder per class"
            ) from error
        images = []
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if info.is_dir() or any(p.startswith((".", "__")) for p in parts):
                continue
            if Path(info.filename).suffix.lower() in IMAGE_SUFFIXES:
                images.append((parts, info))
        # As the command line reads such a zip: one wrapping folder ("compress folder") is
        # stepped into, and an image's class is its top folder below that, however deep it is.
        if len({parts[0] for parts, _ in images}) == 1 and all(len(p) >= 3 for p, _ in images):
            images = [(parts[1:], info) for parts, info in images]
        members = [(parts[0], parts[-1], info) for parts, info in images if len(parts) >= 2]
        classes = sorted({class_name for class_name, _, _ in members})
        if len(classes) < 2:
            raise InvalidInput(
                f"{zip_name} has images in {len(classes)} class folder(s); a classification "
                "zip needs one sub-folder per class (at least two), e.g. fresh/ and sintered/"
            )
        project = self.get(project_id)
        for class_name in classes:
            project = add_class(project, class_name)
        project = self.save(project)
        before = {record.name for record in project.images}
        try:
            for class_name, file_name, info in members:
                _, record = self.add_image(project_id, file_name, archive.read(info))
                self.set_image_class(project_id, record.name, class_name)
        except (InvalidInput, InvalidLabels, OSError) as error:
            added = [r.name for r in self.get(project_id).images if r.name not in before]
            self.delete_images(project_id, added)
            self.save(project)  # the classes the zip added go too
            raise InvalidInput(f"{zip_name}: {error}") from error
        return self.get(project_id)

    def export_class_folders(self, project_id: str, out_dir: Path) -> list[Path]:
        """Classification: images into ``out_dir/<class>/`` (unclassified ones in ``out_dir``),
        so a prediction on the folder is scored against the user's classes."""
        project = self.get(project_id)
        written = []
        for record in project.images:
            class_name = self.image_class(project_id, record.name)
            folder = out_dir / class_name if class_name else out_dir
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / record.file_name
            target.write_bytes(
                self.store.read_bytes(self._key(project_id, "images", record.file_name))
            )
            written.append(target)
        return written

    # -- jobs -------------------------------------------------------------------------------
    def link_job(self, project_id: str, link: JobLink) -> Project:
        project = self.get(project_id)
        return self.save(dataclasses.replace(project, jobs=(*project.jobs, link)))

    def unlink_job(self, project_id: str, job_id: str) -> Project:
        project = self.get(project_id)
        jobs = tuple(job for job in project.jobs if job.job_id != job_id)
        return self.save(dataclasses.replace(project, jobs=jobs))

    def update(self, project: Project) -> Project:
        """Save a project changed by the pure helpers below (``add_class``...)."""
        return self.save(project)


# -- pure helpers on Project records (no store) ------------------------------------------------
def add_class(project: Project, name: str, colour: str | None = None) -> Project:
    """The project with one more object class (a free palette colour unless given)."""
    name = check_class_name(name)
    if any(item.name == name for item in project.classes):
        return project
    used = {item.colour for item in project.classes}
    if colour is None:
        colour = next((c for c in PALETTE if c not in used), None)
        if colour is None:
            colour = "#" + hashlib.sha256(name.encode()).hexdigest()[:6]
    return dataclasses.replace(
        project, classes=(*project.classes, ObjectClass(name, colour.lower()))
    )


def remove_class(project: Project, name: str) -> Project:
    return dataclasses.replace(project, classes=tuple(c for c in project.classes if c.name != name))


def replace_shapes_in_box(
    document: LabelMeDocument,
    shapes: list[Shape],
    box: tuple[float, float, float, float],
) -> LabelMeDocument:
    """The document with its objects whose centre lies in ``box`` replaced by ``shapes``.

    ``box`` is ``(x_min, y_min, x_max, y_max)`` in image pixels; crops are kept. This is how a
    zoomed view of one crop writes back what the user drew in it.
    """
    x0, y0, x1, y1 = box
    kept = []
    for shape in document.shapes:
        if shape.is_crop:
            kept.append(shape)
            continue
        cx, cy = shape.points.mean(axis=0)
        if not (x0 <= cx <= x1 and y0 <= cy <= y1):
            kept.append(shape)
    return dataclasses.replace(document, shapes=kept + list(shapes))


def replace_crops(document: LabelMeDocument, crops: list[Shape]) -> LabelMeDocument:
    """The document with its crop rectangles replaced by ``crops`` (objects kept)."""
    return dataclasses.replace(document, shapes=list(crops) + document.object_shapes)


def adopt_predictions(
    labels: LabelMeDocument,
    predicted: LabelMeDocument,
    box: tuple[float, float, float, float] | None = None,
) -> tuple[LabelMeDocument, int, int]:
    """The user's labels with a model's objects inside ``box`` taken over as labels.

    This is the human-in-the-loop step: the user then deletes false objects and outlines
    missed ones in the new crop, and trains again. ``box`` is ``(x_min, y_min, x_max, y_max)``
    in image pixels (``None``: the whole image). A ``crop`` rectangle covering ``box`` is added
    (so the corrected area is trained on); objects the user already outlined are kept, and a
    predicted object whose centre lies inside one of them is skipped.
    Returns ``(document, objects added, index of the new crop among the crops)``.
    """
    from skimage.measure import points_in_poly

    from pipelines.formats.labelme import CROP_LABEL, rectangle

    width, height = labels.image_width, labels.image_height
    if box is None:
        box = (0.0, 0.0, float(width), float(height))
    x0, y0 = max(0.0, float(box[0])), max(0.0, float(box[1]))
    x1, y1 = min(float(width), float(box[2])), min(float(height), float(box[3]))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InvalidInput("the region is empty; choose a region at least a few pixels wide")
    # LabelMe pixel centres sit on integers: a crop over pixels [x0, x1) spans x0-0.5 … x1-0.5.
    crop = rectangle(CROP_LABEL, x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5)
    bx0, by0, bx1, by1 = crop.bounds()
    user_polygons = [
        shape.points for shape in labels.object_shapes if shape.shape_type == "polygon"
    ]
    added = []
    for shape in predicted.object_shapes:
        cx, cy = shape.points.mean(axis=0)
        if not (bx0 <= cx <= bx1 and by0 <= cy <= by1):
            continue
        if any(points_in_poly([[cx, cy]], polygon)[0] for polygon in user_polygons):
            continue
        added.append(
            Shape(
                label=shape.label,
                points=shape.points.copy(),
                shape_type=shape.shape_type,
                group_id=shape.group_id,
            )
        )
    crops = [c for c in labels.crop_shapes if not np.allclose(c.bounds(), crop.bounds())]
    crops.append(crop)
    document = dataclasses.replace(labels, shapes=crops + labels.object_shapes + added)
    return document, len(added), len(crops) - 1


def open_project_store(settings: Any = None) -> ProjectStore:
    """The project store beside the jobs (the settings' store; local data folder by default)."""
    from gpu_backend.settings import load_settings
    from gpu_backend.store import open_store

    settings = settings or load_settings()
    return ProjectStore(open_store(settings), cache_dir=Path(settings.data_dir) / "cache")
