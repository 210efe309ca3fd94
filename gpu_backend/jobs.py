"""The job API the app and the CLI use: submit, list, poll, cancel, retry, read logs and results.

>>> client = JobClient()                      # settings from env / settings file
>>> status = client.submit_training("detect", ["crops/"], engine="unet", minutes=4)
>>> client.status(status.job_id).progress      # what the app polls
>>> client.wait(status.job_id).results         # keys under outputs/

The client writes a job in this order: inputs, ``job.json``, ``status.json`` (queued). A job
exists once its status exists, so a submit interrupted by an unreachable store leaves no job
behind (and what was uploaded is removed when the store allows it).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_backend.errors import (
    InvalidJobSpec,
    JobNotFound,
    JobStateError,
    KeyNotFound,
)
from gpu_backend.launchers import Launcher, create_launcher
from gpu_backend.settings import BackendSettings, load_settings
from gpu_backend.spec import (
    CANCEL_FILE,
    CANCELLED,
    FAILED,
    INPUTS_FOLDER,
    JOBS_FOLDER,
    LAUNCH_FILE,
    LOG_FILE,
    MODEL_FOLDER,
    OUTPUTS_FOLDER,
    QUEUE_FOLDER,
    QUEUED,
    RUNNING,
    SPEC_FILE,
    STATUS_FILE,
    InputFile,
    JobSpec,
    JobStatus,
    check_job_id,
    decode_json,
    encode_json,
    heartbeat_age_s,
    job_key,
    job_uri,
    new_job_id,
    utc_now,
)
from gpu_backend.store import LocalStore, Store, check_key, open_store
from pipelines.artifact import MODEL_JSON, TASKS, read_model_info
from pipelines.errors import InvalidInput, NoCodeMLError
from pipelines.fileio import sha256_file
from pipelines.tasks import check_prediction_settings, check_training_settings

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class JobRecord:
    """A job as listed: what it runs and where it is."""

    spec: JobSpec
    status: JobStatus


def collect_inputs(paths: Sequence[PathLike]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Map the chosen files and folders to job keys, keeping their layout.

    Paths keep their position relative to their common parent, so relative references between
    them (a LabelMe file's ``imagePath``, class sub-folders) still hold on the worker. Hidden files
    inside chosen folders (``.DS_Store``) are skipped. Returns ``(local file, key)`` pairs and
    the keys of the chosen paths themselves (what the pipelines receive). The image a chosen
    LabelMe file refers to is uploaded with it.
    """
    if not paths:
        raise InvalidInput("choose at least one image, LabelMe file or folder")
    resolved = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise InvalidInput(f"input {path} does not exist; check the path")
        resolved.append(path.resolve())
    try:
        common = Path(os.path.commonpath([p.parent for p in resolved]))
    except ValueError as error:  # Windows: files on different drives
        raise InvalidInput("choose inputs on one drive (or copy them into one folder)") from error
    files: dict[str, Path] = {}
    roots: list[str] = []

    def key_for(path: Path) -> str:
        key = f"{INPUTS_FOLDER}/{path.relative_to(common).as_posix()}"
        try:
            return check_key(key)
        except InvalidInput as error:
            raise InvalidInput(
                f"input {path} has a name the job store cannot hold (hidden or '..' parts); "
                "rename it"
            ) from error

    for path in resolved:
        root = key_for(path)
        if path.is_dir():
            inside = [p for p in sorted(path.rglob("*")) if p.is_file() and not _hidden(p, path)]
            if not inside:
                raise InvalidInput(f"folder {path} has no files; choose a folder with images")
            for item in inside:
                files[key_for(item)] = item
        elif path.is_file():
            files[root] = path
            image = _labelme_image(path)
            if image is not None:
                files[key_for(image)] = image
        else:
            raise InvalidInput(f"input {path} is neither a file nor a folder")
        if root not in roots:
            roots.append(root)
    return sorted(((p, k) for k, p in files.items()), key=lambda pair: pair[1]), roots


def _labelme_image(path: Path) -> Path | None:
    """The image a LabelMe file names (it travels with the file), if ``path`` is one."""
    if path.suffix.lower() != ".json":
        return None
    from pipelines.formats.labelme import read_labelme, resolve_image_path

    try:
        image = resolve_image_path(read_labelme(path, validate=False), path)
    except NoCodeMLError:
        return None  # not LabelMe, or broken: the engine reports it with its own message
    return image.resolve() if image.is_file() else None


def _hidden(path: Path, folder: Path) -> bool:
    """Whether a file inside ``folder`` is hidden or inside a hidden folder (``.git``...)."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _describe_files(pairs: list[tuple[Path, str]]) -> tuple[InputFile, ...]:
    return tuple(
        InputFile(key=key, sha256=sha256_file(path), size_bytes=path.stat().st_size)
        for path, key in pairs
    )


class JobClient:
    """Submit and follow jobs in one store, launching them with one launcher.

    ``settings`` default to :func:`gpu_backend.settings.load_settings`; ``store`` and
    ``launcher`` (an instance or a registry name) override what the settings name.
    """

    def __init__(
        self,
        settings: BackendSettings | None = None,
        *,
        store: Store | None = None,
        launcher: Launcher | str | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.store = store or open_store(self.settings)
        if isinstance(launcher, Launcher):
            self.launcher = launcher
        else:
            self.launcher = create_launcher(launcher or self.settings.launcher, self.settings)
        self._launchers: dict[str, Launcher | None] = {self.launcher.name: self.launcher}

    def __repr__(self) -> str:
        return f"JobClient(store={self.store.uri!r}, launcher={self.launcher.name!r})"

    # ------------------------------------------------------------------ submit
    def submit_training(
        self,
        task: str,
        inputs: Sequence[PathLike],
        *,
        engine: str | None = None,
        config: dict[str, Any] | None = None,
        device: str = "auto",
        minutes: float | None = None,
        name: str = "",
    ) -> JobStatus:
        """Queue a training job on images + LabelMe files (or class folders); return its status."""
        if task not in TASKS:
            raise InvalidInput(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        pairs, roots = collect_inputs(inputs)
        spec = self._make_spec(
            action="train",
            task=task,
            pairs=pairs,
            roots=roots,
            engine=engine,
            config=dict(config or {}),
            device=device,
            minutes=minutes,
            name=name,
        )
        check_training_settings(task, engine, config)
        return self._create(spec, pairs)

    def submit_prediction(
        self,
        model: PathLike,
        inputs: Sequence[PathLike],
        *,
        device: str = "auto",
        options: dict[str, Any] | None = None,
        name: str = "",
    ) -> JobStatus:
        """Queue a prediction job. ``model`` is a model folder or the id of a succeeded
        training job in this store (its model is used in place, not copied)."""
        pairs, roots = collect_inputs(inputs)
        model_job_id = None
        text = os.fspath(model)
        if not Path(text).expanduser().exists() and _looks_like_job_id(text):
            model_job_id = text
            training = self.status(model_job_id)
            if training.state != "succeeded":
                raise InvalidInput(
                    f"job {model_job_id} is {training.state}; predict with a job that succeeded"
                )
            model_json = job_key(model_job_id, f"{OUTPUTS_FOLDER}/{MODEL_FOLDER}/{MODEL_JSON}")
            try:
                trained = decode_json(self.store.read_bytes(model_json), model_json)
                task, engine = str(trained["task"]), str(trained["engine"])
            except (KeyNotFound, KeyError) as error:
                raise InvalidInput(
                    f"job {model_job_id} has no usable model; choose another model"
                ) from error
        else:
            info = read_model_info(model)
            task, engine = info.task, info.engine
            model_dir = Path(model).expanduser().resolve()
            pairs += [
                (path, f"{MODEL_FOLDER}/{path.relative_to(model_dir).as_posix()}")
                for path in sorted(model_dir.rglob("*"))
                if path.is_file() and not _hidden(path, model_dir)
            ]
        spec = self._make_spec(
            action="predict",
            task=task,
            pairs=pairs,
            roots=roots,
            engine=engine,
            device=device,
            options=dict(options or {}),
            model_job_id=model_job_id,
            name=name,
        )
        check_prediction_settings(task, inputs, options)
        return self._create(spec, pairs)

    def _make_spec(
        self, *, pairs: list[tuple[Path, str]], roots: list[str], **fields: Any
    ) -> JobSpec:
        try:
            spec = JobSpec(
                job_id=new_job_id(),
                inputs=_describe_files(pairs),
                input_roots=tuple(roots),
                created=utc_now(),
                **fields,
            )
            spec.to_json()
        except InvalidJobSpec as error:
            raise InvalidInput(str(error).replace("; submit the job again", "")) from error
        except (TypeError, ValueError) as error:
            raise InvalidInput(
                f"job settings must be plain JSON values (numbers, text, lists): {error}"
            ) from error
        return spec

    def _create(self, spec: JobSpec, pairs: list[tuple[Path, str]]) -> JobStatus:
        self.launcher.check_store(self.store.uri)  # before any upload: nothing left behind
        self.store.check()
        now = utc_now()
        status = JobStatus(
            job_id=spec.job_id,
            state=QUEUED,
            submitted=now,
            updated=now,
            launcher=self.launcher.name,
        )
        try:
            for path, key in pairs:
                self.store.upload_file(job_key(spec.job_id, key), path)
            self.store.write_bytes(job_key(spec.job_id, SPEC_FILE), spec.to_json())
            self.store.write_bytes(job_key(spec.job_id, STATUS_FILE), status.to_json())
        except BaseException:
            self._remove_quietly(spec.job_id)
            raise
        log.info("job %s submitted to %s", spec.job_id, self.store.uri)
        return self._launch(status)

    def _remove_quietly(self, job_id: str) -> None:
        try:
            self.store.delete_prefix(job_key(job_id))
        except NoCodeMLError as error:
            log.warning("could not remove the partial job %s: %s", job_id, error)

    def _launch(self, status: JobStatus) -> JobStatus:
        try:
            info = self.launcher.launch(job_uri(self.store.uri, status.job_id), status.job_id)
        except NoCodeMLError as error:  # LauncherError, or a store error of the queue
            failed = status.with_state(
                FAILED, error=f"could not start the job: {error}", finished=utc_now()
            )
            self.store.write_bytes(job_key(status.job_id, STATUS_FILE), failed.to_json())
            raise
        self.store.write_bytes(job_key(status.job_id, LAUNCH_FILE), encode_json(info))
        return status

    # ------------------------------------------------------------------ read
    def _read_status(self, job_id: str) -> JobStatus:
        try:
            data = self.store.read_bytes(job_key(check_job_id(job_id), STATUS_FILE))
        except KeyNotFound as error:
            raise JobNotFound(
                f"no job {job_id} in {self.store.uri}; list jobs with `nocode-ml jobs list`"
            ) from error
        return JobStatus.from_json(data, f"status of job {job_id}")

    def spec(self, job_id: str) -> JobSpec:
        """What the job runs."""
        try:
            data = self.store.read_bytes(job_key(check_job_id(job_id), SPEC_FILE))
        except KeyNotFound as error:
            raise JobNotFound(f"no job {job_id} in {self.store.uri}") from error
        return JobSpec.from_json(data, f"job spec of {job_id}")

    def launch_info(self, job_id: str) -> dict[str, Any]:
        """How the current attempt was launched (``{}`` before launch)."""
        try:
            return decode_json(self.store.read_bytes(job_key(job_id, LAUNCH_FILE)), "launch.json")
        except (KeyNotFound, InvalidJobSpec):
            return {}

    def describe_launch(self, job_id: str) -> dict[str, Any]:
        """Launch facts plus live ones from the launcher (pid alive, AWS Batch status)."""
        info = self.launch_info(job_id)
        launcher = self._launcher_for(str(info.get("launcher", "")))
        if launcher is None or not info:
            return info
        try:
            return launcher.describe(info)
        except NoCodeMLError as error:
            return {**info, "describe_error": str(error)}

    def status(self, job_id: str, reconcile: bool = True) -> JobStatus:
        """The job's status; with ``reconcile``, a dead worker (stale heartbeat, or a launcher
        that knows the job ended) is recorded as failed first."""
        status = self._read_status(job_id)
        if reconcile and not status.is_terminal:
            status = self._reconcile(status)
        pending = not status.is_terminal and not status.cancel_requested
        if pending and self.store.exists(job_key(job_id, CANCEL_FILE)):  # worker not there yet
            status = dataclasses.replace(status, cancel_requested=True)
        return status

    def list_jobs(self, reconcile: bool = True) -> list[JobRecord]:
        """Every job, newest first; folders of half-submitted or damaged jobs are skipped."""
        job_ids = sorted(self.store.list_folders(JOBS_FOLDER), reverse=True)

        def load(job_id: str) -> JobRecord | None:
            try:
                return JobRecord(self.spec(job_id), self.status(job_id, reconcile=reconcile))
            except (JobNotFound, InvalidJobSpec, InvalidInput):
                return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            records = list(pool.map(load, job_ids))
        return [record for record in records if record is not None]

    def log(self, job_id: str) -> str:
        """The job's log (every attempt); empty before the worker starts."""
        self._read_status(job_id)
        try:
            return self.store.read_text(job_key(job_id, LOG_FILE))
        except KeyNotFound:
            return ""

    def results(self, job_id: str) -> tuple[str, ...]:
        """Keys of the result files (relative to the job folder) once the job succeeded."""
        return self._read_status(job_id).results

    def read_result(self, job_id: str, key: str) -> bytes:
        """Content of one result file (``outputs/...``)."""
        if not key.startswith(f"{OUTPUTS_FOLDER}/"):
            raise InvalidInput(f"{key!r} is not a result; results are under {OUTPUTS_FOLDER}/")
        try:
            return self.store.read_bytes(job_key(job_id, key))
        except KeyNotFound as error:
            raise JobNotFound(f"job {job_id} has no result {key}") from error

    def result_path(self, job_id: str, key: str) -> Path | None:
        """Local path of a result when the store is a local folder (no copy), else ``None``."""
        if isinstance(self.store, LocalStore) and key.startswith(f"{OUTPUTS_FOLDER}/"):
            return self.store.path(job_key(job_id, key))
        return None

    def download_results(self, job_id: str, dest_dir: PathLike) -> list[Path]:
        """Copy the results into ``dest_dir`` (``outputs/model/...`` → ``dest_dir/model/...``)."""
        status = self._read_status(job_id)
        if status.state != "succeeded":
            raise JobStateError(f"job {job_id} is {status.state}; results exist once it succeeded")
        paths = []
        for key in status.results:
            relative = key[len(OUTPUTS_FOLDER) + 1 :]
            paths.append(self.store.download_file(job_key(job_id, key), Path(dest_dir) / relative))
        return paths

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_status: Callable[[JobStatus], None] | None = None,
    ) -> JobStatus:
        """Poll until the job ends (or ``timeout_s`` passes); ``on_status`` sees every poll."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.status(job_id)
            if on_status is not None:
                on_status(status)
            if status.is_terminal or (deadline is not None and time.monotonic() >= deadline):
                return status
            time.sleep(poll_s)

    # ------------------------------------------------------------------ change
    def cancel(self, job_id: str) -> JobStatus:
        """Ask the job to stop. A queued job is cancelled at once; a running one within a few
        seconds (at the worker's next heartbeat). Cancelling a finished job changes nothing.

        No reconciliation first: if the launcher already knows the job ended, the cancel
        request wins, as it would when reconciling later."""
        status = self._read_status(job_id)
        if status.is_terminal:
            return status
        self.store.write_text(job_key(job_id, CANCEL_FILE), utc_now())
        launcher = self._launcher_for(status.launcher)
        if launcher is not None:
            try:
                launcher.cancel(job_id, self.launch_info(job_id))
            except NoCodeMLError as error:  # the marker still stops the worker
                log.warning("launcher could not cancel job %s: %s", job_id, error)
        if status.state == QUEUED:
            current = self._read_status(job_id)
            if current.state == QUEUED:
                status = current.with_state(CANCELLED, cancel_requested=True, finished=utc_now())
                self._write_status(status)
                self._append_log(job_id, "cancelled before it started")
                return status
            status = current
        return status.replace(cancel_requested=True) if not status.is_terminal else status

    def retry(self, job_id: str) -> JobStatus:
        """Queue a failed or cancelled job again; inputs, log and earlier attempts are kept."""
        status = self.status(job_id)
        if status.state not in (FAILED, CANCELLED):
            raise JobStateError(
                f"job {job_id} is {status.state}; only failed or cancelled jobs can be retried"
            )
        self.store.delete(job_key(job_id, CANCEL_FILE))
        queued = status.new_attempt(QUEUED, status.attempt + 1, launcher=self.launcher.name)
        self._write_status(queued)
        return self._launch(queued)

    def delete(self, job_id: str, force: bool = False) -> None:
        """Remove a finished job and everything in it. ``force`` cancels a live job first."""
        status = self.status(job_id)
        if not status.is_terminal:
            if not force:
                raise JobStateError(
                    f"job {job_id} is {status.state}; cancel it first "
                    f"(nocode-ml jobs cancel {job_id}) or delete with --force"
                )
            self.cancel(job_id)
            # Long enough for a worker to stop at its grace, or for a dead one (killed, no
            # heartbeat any more) to be recognised as dead.
            limit_s = (
                max(
                    self.settings.cancel_grace_s + 3 * self.settings.heartbeat_interval_s,
                    self.settings.stale_after_s + self.settings.heartbeat_interval_s,
                )
                + 5
            )
            status = self.wait(job_id, timeout_s=limit_s)
            if not status.is_terminal:
                raise JobStateError(
                    f"job {job_id} did not stop in {limit_s:.0f} s; try again later"
                )
        self.store.delete(job_key(job_id, STATUS_FILE))  # gone from listings at once
        self.store.delete(f"{QUEUE_FOLDER}/{job_id}")
        self.store.delete_prefix(job_key(job_id))
        log.info("job %s deleted", job_id)

    # ------------------------------------------------------------------ reconciliation
    def _write_status(self, status: JobStatus) -> None:
        self.store.write_bytes(job_key(status.job_id, STATUS_FILE), status.to_json())

    def _append_log(self, job_id: str, message: str) -> None:
        key = job_key(job_id, LOG_FILE)
        try:
            text = self.store.read_text(key)
        except KeyNotFound:
            text = ""
        host = socket.gethostname()
        line = f"{utc_now()} INFO gpu_backend.jobs: {message} (recorded by {host})\n"
        self.store.write_text(key, text + line)

    def _launcher_for(self, name: str) -> Launcher | None:
        if not name:
            return None
        if name not in self._launchers:
            try:
                self._launchers[name] = create_launcher(name, self.settings)
            except NoCodeMLError as error:
                log.info("cannot reconcile %s jobs here: %s", name, error)
                self._launchers[name] = None
        return self._launchers[name]

    def _reconcile(self, status: JobStatus) -> JobStatus:
        verdict: tuple[str, str] | None = None
        if status.state == RUNNING and status.heartbeat:
            age_s = heartbeat_age_s(status, self.store)
            if age_s > self.settings.stale_after_s:
                verdict = (
                    FAILED,
                    f"the worker stopped responding (no heartbeat for {age_s:.0f} s: killed, out "
                    "of memory, or its machine stopped); the log is kept, retry the job",
                )
        if verdict is None:
            launcher = self._launcher_for(status.launcher)
            info = self.launch_info(status.job_id)
            if launcher is not None and info:
                try:
                    verdict = launcher.reconcile(status, info)
                except NoCodeMLError as error:
                    log.warning("could not reconcile job %s: %s", status.job_id, error)
        if verdict is None:
            return status
        return self.end_unchanged(status, *verdict)

    def end_unchanged(self, status: JobStatus, state: str, error: str) -> JobStatus:
        """Record that a job ended (a dead worker, a stopped container) unless its status
        changed since ``status`` was read: then its worker is alive after all. A cancel
        request turns the end into "cancelled"."""
        if self.store.exists(job_key(status.job_id, CANCEL_FILE)):
            state, error = CANCELLED, ""
        current = self._read_status(status.job_id)
        if current.updated != status.updated or current.is_terminal:
            return current
        ended = current.with_state(state, error=error, finished=utc_now())
        self._write_status(ended)
        self._append_log(status.job_id, f"marked {state}: {error}" if error else f"marked {state}")
        log.info("job %s reconciled to %s", status.job_id, state)
        return ended


def _looks_like_job_id(text: str) -> bool:
    try:
        check_job_id(text)
    except InvalidInput:
        return False
    return True
