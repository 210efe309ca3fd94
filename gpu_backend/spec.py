"""The job folder format: job spec, job status and the keys of a job, with validation.

A job lives in the store under ``jobs/<job id>/``::

    job.json        JobSpec: what to run (written once at submit, never changed)
    status.json     JobStatus: what the app polls (queued → running → succeeded|failed|cancelled)
    launch.json     how the current attempt was launched (local pid, AWS Batch job id)
    cancel          present once the user asked to cancel
    log.txt         the worker's log, every attempt appended
    inputs/...      the uploaded images and LabelMe files (never modified)
    model/...       predict jobs: the uploaded model folder
    outputs/...     results: outputs/model/ for training, outputs/predictions/ for prediction
    claims/...      serve mode: which worker took which attempt

A job URI is the store URI plus ``/jobs/<id>`` (``file:///data/jobs/<id>``,
``s3://bucket/prefix/jobs/<id>``): it is all a worker needs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gpu_backend.errors import InvalidJobSpec, KeyNotFound
from pipelines.artifact import TASKS
from pipelines.errors import InvalidInput

if TYPE_CHECKING:
    from gpu_backend.store import Store

FORMAT_VERSION = 1
JOBS_FOLDER = "jobs"
SPEC_FILE = "job.json"
STATUS_FILE = "status.json"
LAUNCH_FILE = "launch.json"
CANCEL_FILE = "cancel"
LOG_FILE = "log.txt"
INPUTS_FOLDER = "inputs"
MODEL_FOLDER = "model"
OUTPUTS_FOLDER = "outputs"
CLAIMS_FOLDER = "claims"
QUEUE_FOLDER = "queue"  # store-level: markers of jobs waiting for a worker service

ACTIONS = ("train", "predict")
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
# Allowed transitions; failed/cancelled go back to queued on retry.
TRANSITIONS = {
    QUEUED: {RUNNING, FAILED, CANCELLED},
    RUNNING: {SUCCEEDED, FAILED, CANCELLED},
    SUCCEEDED: set(),
    FAILED: {QUEUED, RUNNING},
    CANCELLED: {QUEUED},
}
DEVICES = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")
JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


def utc_now() -> str:
    """Current time, ISO 8601 UTC with milliseconds (``2026-11-25T20:30:00.123+00:00``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`utc_now`."""
    return datetime.fromisoformat(text)


def seconds_since(text: str, now: datetime | None = None) -> float:
    """Seconds elapsed since an ISO time stamp."""
    return ((now or datetime.now(UTC)) - parse_time(text)).total_seconds()


def new_job_id() -> str:
    """Sortable, readable, unique: ``20261125-203000-a1b2c3`` (UTC time + random hex)."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it has the job id shape, else raise ``InvalidInput``."""
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise InvalidInput(
            f"{job_id!r} is not a job id (they look like 20261125-203000-a1b2c3); "
            "list jobs with `nocode-ml jobs list`"
        )
    return job_id


def job_key(job_id: str, name: str = "") -> str:
    """Store key of a file of a job, or the job folder itself when ``name`` is empty."""
    folder = f"{JOBS_FOLDER}/{check_job_id(job_id)}"
    return f"{folder}/{name}" if name else folder


def job_uri(store_uri: str, job_id: str) -> str:
    """URI of a job for the worker: the store URI plus ``/jobs/<id>``."""
    base = store_uri if store_uri.endswith("/") else store_uri + "/"
    return base + job_key(job_id)


def split_job_uri(uri: str) -> tuple[str, str]:
    """``(store URI, job id)`` from a job URI; raises ``InvalidInput`` for anything else."""
    head, _, job_id = uri.rstrip("/").rpartition("/")
    store_uri, _, folder = head.rpartition("/")
    if folder != JOBS_FOLDER or not JOB_ID.match(job_id) or not store_uri:
        raise InvalidInput(
            f"{uri!r} is not a job URI; expected STORE_URI/jobs/JOB_ID, e.g. "
            "file:///data/nocode-ml/jobs/20261125-203000-a1b2c3"
        )
    if store_uri.endswith("://"):  # the root folder: "file:///jobs/<id>"
        store_uri += "/"
    return store_uri, job_id


def _require(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise InvalidJobSpec(f"{where} lacks {key!r}; submit the job again")
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = "/".join(k.__name__ for k in _as_tuple(kind))
        raise InvalidJobSpec(
            f"{where}: {key!r} must be {names}, got {value!r}; submit the job again"
        )
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _optional(
    raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any
) -> Any:
    if raw.get(key) is None:
        return default
    return _require(raw, key, kind, where)


def decode_json(data: bytes, where: str) -> dict[str, Any]:
    """A JSON object from bytes, or ``InvalidJobSpec`` naming the file and the problem."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InvalidJobSpec(
            f"{where} is not UTF-8 text ({error}); submit the job again"
        ) from error
    except json.JSONDecodeError as error:
        raise InvalidJobSpec(
            f"{where} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
            "submit the job again"
        ) from error
    if not isinstance(raw, dict):
        raise InvalidJobSpec(f"{where} must hold a JSON object; submit the job again")
    return raw


def encode_json(data: dict[str, Any]) -> bytes:
    """Serialise a record; fails before anything is written if a value is not JSON-ready."""
    return (json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


@dataclass(frozen=True)
class InputFile:
    """One uploaded file: ``key`` relative to the job folder (``inputs/crops/a.png``)."""

    key: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class JobSpec:
    """What a job runs; written once at submit.

    ``input_roots`` are the paths (relative to the job folder) handed to the pipelines, one per
    file or folder the user chose; ``inputs`` lists every uploaded file with its checksum so
    the worker can prove the inputs are intact. A predict job takes its model either from
    ``model/`` in its own folder or, with ``model_job_id``, from another job's ``outputs/model/``.
    """

    job_id: str
    action: str
    task: str
    inputs: tuple[InputFile, ...]
    input_roots: tuple[str, ...]
    engine: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    minutes: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    model_job_id: str | None = None
    name: str = ""
    created: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "job spec") -> None:
        """Raise ``InvalidJobSpec`` with a message naming the bad field."""
        if not JOB_ID.match(self.job_id):
            raise InvalidJobSpec(f"{where}: job_id {self.job_id!r} is not a job id")
        if self.action not in ACTIONS:
            raise InvalidJobSpec(f"{where}: action must be one of {ACTIONS}, got {self.action!r}")
        if self.task not in TASKS:
            raise InvalidJobSpec(f"{where}: task must be one of {TASKS}, got {self.task!r}")
        if not DEVICES.match(self.device):
            raise InvalidJobSpec(
                f"{where}: device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if self.minutes is not None and not self.minutes > 0:
            raise InvalidJobSpec(f"{where}: minutes must be positive, got {self.minutes!r}")
        if not self.input_roots:
            raise InvalidJobSpec(f"{where}: the job has no inputs; choose images to work on")
        allowed = (f"{INPUTS_FOLDER}/", f"{MODEL_FOLDER}/")
        for item in self.inputs:
            if not item.key.startswith(allowed) or ".." in item.key.split("/"):
                raise InvalidJobSpec(f"{where}: input key {item.key!r} is outside inputs/")
        for root in self.input_roots:
            if not root.startswith(f"{INPUTS_FOLDER}/") or ".." in root.split("/"):
                raise InvalidJobSpec(f"{where}: input root {root!r} is outside inputs/")
        if self.model_job_id is not None and not JOB_ID.match(self.model_job_id):
            raise InvalidJobSpec(f"{where}: model_job_id {self.model_job_id!r} is not a job id")
        has_model = any(item.key.startswith(f"{MODEL_FOLDER}/") for item in self.inputs)
        if self.action == "predict" and self.model_job_id is None and not has_model:
            raise InvalidJobSpec(f"{where}: a predict job needs a model (model/ or model_job_id)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return encode_json(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "job spec") -> JobSpec:
        """Validate a decoded ``job.json``; unknown keys are ignored (newer writers)."""
        version = _optional(raw, "format_version", int, where, FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise InvalidJobSpec(
                f"{where} has format version {version}, newer than this backend "
                f"({FORMAT_VERSION}); update nocode-ml on the worker"
            )
        inputs = []
        for index, item in enumerate(_require(raw, "inputs", list, where)):
            item_where = f"{where} inputs[{index}]"
            if not isinstance(item, dict):
                raise InvalidJobSpec(f"{item_where} must be an object; submit the job again")
            inputs.append(
                InputFile(
                    key=_require(item, "key", str, item_where),
                    sha256=_require(item, "sha256", str, item_where),
                    size_bytes=_require(item, "size_bytes", int, item_where),
                )
            )
        roots = _require(raw, "input_roots", list, where)
        if not all(isinstance(root, str) for root in roots):
            raise InvalidJobSpec(f"{where}: input_roots must be a list of keys")
        minutes = _optional(raw, "minutes", (int, float), where, None)
        return cls(
            job_id=_require(raw, "job_id", str, where),
            action=_require(raw, "action", str, where),
            task=_require(raw, "task", str, where),
            inputs=tuple(inputs),
            input_roots=tuple(roots),
            engine=_optional(raw, "engine", str, where, None),
            config=dict(_optional(raw, "config", dict, where, {})),
            device=_optional(raw, "device", str, where, "auto"),
            minutes=float(minutes) if minutes is not None else None,
            options=dict(_optional(raw, "options", dict, where, {})),
            model_job_id=_optional(raw, "model_job_id", str, where, None),
            name=_optional(raw, "name", str, where, ""),
            created=_optional(raw, "created", str, where, ""),
            format_version=version,
        )

    @classmethod
    def from_json(cls, data: bytes, where: str = "job spec") -> JobSpec:
        return cls.from_dict(decode_json(data, where), where)


@dataclass(frozen=True)
class ProgressSnapshot:
    """The latest :class:`pipelines.progress.Progress` event of a running job."""

    stage: str
    done: int
    total: int
    fraction: float
    eta_s: float | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricPoint:
    """One point of a metric curve (e.g. the loss) for the app's chart."""

    elapsed_s: float
    stage: str
    done: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class JobStatus:
    """What the app polls. Times are ISO 8601 UTC strings; ``error`` is one line.

    ``attempt`` counts how many times the job was queued (1 at submit, +1 per retry).
    ``metrics_history`` is bounded (older points are thinned) so the file stays small.
    ``results`` lists keys relative to the job folder (``outputs/model/model.json``...).
    """

    job_id: str
    state: str
    submitted: str
    updated: str
    launcher: str = ""
    attempt: int = 1
    started: str | None = None
    finished: str | None = None
    heartbeat: str | None = None
    progress: ProgressSnapshot | None = None
    metrics_history: tuple[MetricPoint, ...] = ()
    error: str = ""
    results: tuple[str, ...] = ()
    result_metrics: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    worker: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise InvalidJobSpec(
                f"job status: unknown state {self.state!r}; expected one of {STATES}"
            )

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return encode_json(self.to_dict())

    def with_state(self, state: str, **changes: Any) -> JobStatus:
        """A copy in ``state``; refuses transitions the state machine does not allow."""
        if state != self.state and state not in TRANSITIONS[self.state]:
            raise InvalidInput(f"job {self.job_id}: cannot go from {self.state} to {state}")
        return dataclasses.replace(self, state=state, updated=utc_now(), **changes)

    def replace(self, **changes: Any) -> JobStatus:
        return dataclasses.replace(self, updated=utc_now(), **changes)

    def new_attempt(self, state: str, attempt: int, **changes: Any) -> JobStatus:
        """A copy in ``state`` for attempt ``attempt``, with every per-attempt field cleared.

        Retrying (``QUEUED``) and starting to run (``RUNNING``) both begin an attempt; one
        place lists what an attempt owns, so a field added later is reset by both.
        """
        cleared: dict[str, Any] = {
            "started": None,
            "finished": None,
            "heartbeat": None,
            "progress": None,
            "metrics_history": (),
            "error": "",
            "results": (),
            "result_metrics": {},
            "cancel_requested": False,
            "worker": {},
        }
        return self.with_state(state, attempt=attempt, **{**cleared, **changes})

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "job status") -> JobStatus:
        progress = raw.get("progress")
        snapshot = None
        if isinstance(progress, dict):
            snapshot = ProgressSnapshot(
                stage=str(progress.get("stage", "")),
                done=int(progress.get("done", 0)),
                total=int(progress.get("total", 0)),
                fraction=float(progress.get("fraction", 0.0)),
                eta_s=progress.get("eta_s"),
                message=str(progress.get("message", "")),
                metrics=dict(progress.get("metrics") or {}),
            )
        history = tuple(
            MetricPoint(
                elapsed_s=float(point.get("elapsed_s", 0.0)),
                stage=str(point.get("stage", "")),
                done=int(point.get("done", 0)),
                metrics=dict(point.get("metrics") or {}),
            )
            for point in raw.get("metrics_history") or ()
            if isinstance(point, dict)
        )
        return cls(
            job_id=_require(raw, "job_id", str, where),
            state=_require(raw, "state", str, where),
            submitted=_require(raw, "submitted", str, where),
            updated=_optional(raw, "updated", str, where, ""),
            launcher=_optional(raw, "launcher", str, where, ""),
            attempt=_optional(raw, "attempt", int, where, 1),
            started=_optional(raw, "started", str, where, None),
            finished=_optional(raw, "finished", str, where, None),
            heartbeat=_optional(raw, "heartbeat", str, where, None),
            progress=snapshot,
            metrics_history=history,
            error=_optional(raw, "error", str, where, ""),
            results=tuple(_optional(raw, "results", list, where, [])),
            result_metrics=dict(_optional(raw, "result_metrics", dict, where, {})),
            cancel_requested=_optional(raw, "cancel_requested", bool, where, False),
            worker=dict(_optional(raw, "worker", dict, where, {})),
            format_version=_optional(raw, "format_version", int, where, FORMAT_VERSION),
        )

    @classmethod
    def from_json(cls, data: bytes, where: str = "job status") -> JobStatus:
        return cls.from_dict(decode_json(data, where), where)


def thin_history(points: tuple[MetricPoint, ...], limit: int) -> tuple[MetricPoint, ...]:
    """Keep at most ``limit`` points: drop every other old point, always keep the newest."""
    if len(points) <= limit:
        return points
    older, newest = points[:-1], points[-1]
    thinned = older[::2]
    while len(thinned) + 1 > limit:
        thinned = thinned[::2]
    return (*thinned, newest)


def heartbeat_age_s(status: JobStatus, store: Store) -> float:
    """Seconds since a running job's last heartbeat, read from the store's own time of the
    status write; the worker's stamp serves only where the store keeps no time.

    Every worker's status lands in the same store, so the worker's own clock drops out: one
    running minutes behind (a laptop, a container without time sync) would otherwise look dead
    and be stopped, and one running ahead would hide its death. What remains is the reader's
    clock against the store's (the same machine for a local folder; for S3, time-synced
    clients stay well inside ``stale_after_s``).
    """
    try:
        written = store.modified_time(job_key(status.job_id, STATUS_FILE))
    except KeyNotFound:
        return seconds_since(status.heartbeat or status.updated)
    return (datetime.now(UTC) - written).total_seconds()
