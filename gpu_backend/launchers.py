"""Launchers start a worker for a job URI somewhere, and can cancel and reconcile it.

- ``local`` (default): a ``python -m gpu_backend.worker`` subprocess on this machine. Workers
  wait for one of ``local_concurrency`` slots (file locks in the data folder, released by the
  operating system even if a worker is killed) in the order the launcher started them, so two
  jobs never fight over the CPU or GPU.
- ``batch``: AWS Batch ``submit_job`` with the job URI as the container command (the image's
  entrypoint is the worker); cancel is ``terminate_job``; ``describe_jobs`` reconciles jobs
  whose container died without reporting.
- ``queue``: nothing is started; the job waits in the store until a worker service
  (``python -m gpu_backend.worker --serve``, e.g. in docker-compose) claims it.

Launchers are looked up by name: ``create_launcher("local", settings)``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from gpu_backend.errors import LauncherError
from gpu_backend.settings import BackendSettings, load_settings
from gpu_backend.spec import FAILED, QUEUE_FOLDER, QUEUED, JobStatus, split_job_uri
from pipelines.errors import InvalidInput
from pipelines.fileio import atomic_write_text

log = logging.getLogger(__name__)

LAUNCHERS: dict[str, type[Launcher]] = {}
WORKER_MODULE = "gpu_backend.worker"
# Settings a worker needs wherever it runs; the store URI travels in the job URI itself.
WORKER_SETTINGS = (
    "s3_endpoint_url",
    "s3_region",
    "s3_connect_timeout_s",
    "worker_threads",
    "heartbeat_interval_s",
    "stale_after_s",
    "progress_interval_s",
    "cancel_grace_s",
    "metrics_history_points",
)


def register_launcher(name: str) -> Callable[[type[Launcher]], type[Launcher]]:
    """Class decorator adding a launcher to the registry under ``name``."""

    def decorate(cls: type[Launcher]) -> type[Launcher]:
        cls.name = name
        LAUNCHERS[name] = cls
        return cls

    return decorate


def list_launchers() -> list[str]:
    """Names accepted by :func:`create_launcher`."""
    return sorted(LAUNCHERS)


def create_launcher(name: str, settings: BackendSettings | None = None) -> Launcher:
    """Build a launcher by registry name."""
    if name not in LAUNCHERS:
        raise InvalidInput(
            f"unknown launcher {name!r}; choose one of: {', '.join(list_launchers())}"
        )
    return LAUNCHERS[name](settings or load_settings())


class Launcher(ABC):
    """Starts workers. ``launch`` returns a JSON-ready dict kept in the job's ``launch.json``."""

    name: ClassVar[str] = ""

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings

    @abstractmethod
    def launch(self, job_uri: str, job_id: str) -> dict[str, Any]:
        """Start (or enqueue) a worker for ``job_uri``; raise :class:`LauncherError` if refused."""

    def check_store(self, store_uri: str) -> None:
        """Raise :class:`LauncherError` if this launcher's workers cannot reach ``store_uri``
        (checked before a job's inputs are uploaded)."""
        del store_uri

    def cancel(self, job_id: str, launch_info: dict[str, Any]) -> None:
        """Stop the job's worker by launcher means; the ``cancel`` marker is written anyway."""
        del job_id, launch_info

    def reconcile(self, status: JobStatus, launch_info: dict[str, Any]) -> tuple[str, str] | None:
        """``(state, error)`` when the launcher knows an unfinished job ended, else ``None``."""
        del status, launch_info
        return None

    def describe(self, launch_info: dict[str, Any]) -> dict[str, Any]:
        """Extra facts for display (pid, Batch status...)."""
        return dict(launch_info)

    def worker_env(self) -> dict[str, str]:
        """``NOCODE_ML_*`` variables a worker started by this launcher should see."""
        every = self.settings.to_env()
        names = [f"NOCODE_ML_{name.upper()}" for name in WORKER_SETTINGS]
        return {name: every[name] for name in names}


def pid_alive(pid: int, must_contain: str = "") -> bool:
    """Whether process ``pid`` runs (zombies count as dead); ``must_contain`` guards against a
    recycled pid by checking the command line where ``/proc`` exists."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text()
            if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
                return False
            if must_contain:
                return must_contain in (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
    return True


def _windows_pid_alive(pid: int) -> bool:
    import ctypes

    query_limited_information, still_active = 0x1000, 259
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and (
            code.value == still_active
        )
    finally:
        kernel32.CloseHandle(handle)


class SlotLease:
    """A held local slot; the operating system releases it if the process dies."""

    def __init__(self, fd: int, index: int) -> None:
        self.fd = fd
        self.index = index

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> SlotLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class LocalSlots:
    """``concurrency`` lock files plus a first-come-first-served ticket line in ``folder``."""

    def __init__(self, folder: str | os.PathLike[str], concurrency: int) -> None:
        self.folder = Path(folder)
        self.concurrency = concurrency
        self.tickets = self.folder / "waiting"

    @classmethod
    def of(cls, settings: BackendSettings) -> LocalSlots:
        """The slots of a data folder, as its launcher and its workers share them."""
        return cls(settings.data_dir / "local-queue", settings.local_concurrency)

    def _live_tickets(self) -> list[Path]:
        live = []
        # "[!.]": not the hidden temporary file of a ticket being written (atomic write).
        for ticket in sorted(self.tickets.glob("[!.]*.ticket")):
            try:
                pid = int(ticket.read_text().strip() or 0)
            except (OSError, ValueError):
                continue  # being written or already removed
            # The job id must be on the process's command line: after a restart (the data
            # folder kept, pids counted from 1 again) a dead worker's pid may be another's.
            job_id = ticket.stem.partition("-")[2]
            if pid and (pid == os.getpid() or pid_alive(pid, must_contain=job_id)):
                live.append(ticket)
            else:
                ticket.unlink(missing_ok=True)  # its worker died while waiting
        return live

    def enter_line(self, job_id: str, pid: int, at_s: float | None = None) -> Path:
        """Put ``job_id`` in the line at ``at_s`` (epoch seconds; now by default) for the
        process ``pid`` that will wait in it.

        The launcher does this as it starts each worker: a worker that starts up faster than
        one launched before it (imports take seconds on a busy machine) then still finds the
        earlier job ahead of it, so jobs run in the order they were submitted.
        """
        self.tickets.mkdir(parents=True, exist_ok=True)
        for old in self.tickets.glob(f"*-{job_id}.ticket"):
            old.unlink(missing_ok=True)  # an earlier attempt's place
        order_ns = int((time.time() if at_s is None else at_s) * 1e9)
        ticket = self.tickets / f"{order_ns:020d}-{job_id}.ticket"
        atomic_write_text(ticket, str(pid))
        return ticket

    def _ticket_of(self, job_id: str, pid: int) -> Path | None:
        """The place in the line already given to ``job_id`` for process ``pid``, if any."""
        for ticket in self.tickets.glob(f"*-{job_id}.ticket"):
            try:
                if int(ticket.read_text().strip() or 0) == pid:
                    return ticket
            except (OSError, ValueError):
                continue
        return None

    def try_acquire(self) -> SlotLease | None:
        """Take any free slot now, ignoring the line (used by the head of the line)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for index in range(self.concurrency):
            fd = os.open(self.folder / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            if _try_lock(fd):
                return SlotLease(fd, index)
            os.close(fd)
        return None

    def acquire(
        self,
        job_id: str,
        should_stop: Callable[[], bool],
        queued_at_s: float | None = None,
        poll_s: float = 0.2,
        stop_check_s: float = 1.0,
    ) -> SlotLease | None:
        """Wait for a slot in queue order; ``None`` if ``should_stop()`` became true.

        The place in the line is the one the launcher gave this process (:meth:`enter_line`)
        or, for a worker started by hand, ``queued_at_s`` (epoch seconds the job was queued).
        """
        ticket = self._ticket_of(job_id, os.getpid()) or self.enter_line(
            job_id, os.getpid(), queued_at_s
        )
        next_stop_check = 0.0
        try:
            while True:
                now = time.monotonic()
                if now >= next_stop_check:
                    if should_stop():
                        return None
                    next_stop_check = now + stop_check_s
                live = self._live_tickets()
                if live and live[0] == ticket:
                    lease = self.try_acquire()
                    if lease is not None:
                        return lease
                time.sleep(poll_s)
        finally:
            ticket.unlink(missing_ok=True)


@register_launcher("local")
class LocalLauncher(Launcher):
    """Worker subprocesses on this machine, at most ``local_concurrency`` running at once."""

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._exit_codes: dict[str, int] = {}

    def worker_log_path(self, job_id: str) -> Path:
        """Where the worker's own stdout/stderr go (crashes before it reaches the store)."""
        return self.settings.data_dir / "worker-logs" / f"{job_id}.log"

    def reap(self) -> dict[str, subprocess.Popen[bytes]]:
        """Collect finished children (no zombies in a long-lived app); return the live ones."""
        for job_id, process in list(self._processes.items()):
            if process.poll() is not None:
                self._exit_codes[job_id] = process.returncode
                self._processes.pop(job_id, None)  # list_jobs reconciles from threads
        return dict(self._processes)

    def launch(self, job_uri: str, job_id: str) -> dict[str, Any]:
        self.reap()
        log_path = self.worker_log_path(job_id)
        env = {
            **os.environ,
            **self.settings.to_env(),
            "OMP_NUM_THREADS": str(self.settings.threads_per_job),
            "MKL_NUM_THREADS": str(self.settings.threads_per_job),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", WORKER_MODULE, job_uri, "--wait-for-slot"]
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as output:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # survives the CLI that submitted it
                )
        except OSError as error:
            raise LauncherError(
                f"could not start a local worker for job {job_id}: {error}"
            ) from error
        self._processes[job_id] = process
        LocalSlots.of(self.settings).enter_line(job_id, process.pid)
        return {
            "launcher": self.name,
            "host": socket.gethostname(),
            "pid": process.pid,
            "worker_log": str(log_path),
            "command": command,
        }

    def wait(self, job_id: str, timeout_s: float | None = None) -> int | None:
        """Exit code of a worker this launcher started (``None`` if unknown or still running)."""
        process = self._processes.get(job_id)
        if process is None:
            return self._exit_codes.get(job_id)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def reconcile(self, status: JobStatus, launch_info: dict[str, Any]) -> tuple[str, str] | None:
        # Running jobs are watched through their heartbeat; a queued job has none yet, so a
        # worker that died while waiting (or never reached the store) is found by its pid.
        self.reap()
        pid = launch_info.get("pid")
        if status.state != QUEUED or not pid or launch_info.get("host") != socket.gethostname():
            return None
        if pid_alive(int(pid), must_contain=status.job_id):
            return None
        tail = last_line(Path(str(launch_info.get("worker_log", ""))))
        detail = f": {tail}" if tail else ""
        code = self._exit_codes.get(status.job_id)  # known when this launcher started it
        how = f" (exit code {code})" if code is not None else ""
        return (
            FAILED,
            f"the local worker (pid {pid}) exited before starting the job{how}{detail}; "
            f"see {launch_info.get('worker_log')} and retry the job",
        )

    def describe(self, launch_info: dict[str, Any]) -> dict[str, Any]:
        info = dict(launch_info)
        pid = info.get("pid")
        if pid and info.get("host") == socket.gethostname():
            info["alive"] = pid_alive(int(pid))
        return info


def last_line(path: Path, limit_bytes: int = 4096) -> str:
    """The last line of a worker's own output file (why it exited before reaching the store)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit_bytes))
            lines = handle.read().decode("utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


@register_launcher("queue")
class QueueLauncher(Launcher):
    """Leave the job queued in the store for a worker service (``worker --serve``).

    A marker ``queue/<job id>`` lets the service find queued jobs with one listing instead of
    reading every job's status.
    """

    def launch(self, job_uri: str, job_id: str) -> dict[str, Any]:
        from gpu_backend.store import store_from_uri

        store_uri, _ = split_job_uri(job_uri)
        store_from_uri(store_uri, self.settings).write_bytes(
            f"{QUEUE_FOLDER}/{job_id}", job_uri.encode("utf-8")
        )
        return {"launcher": self.name, "job_uri": job_uri}


BATCH_TERMINAL = {"SUCCEEDED", "FAILED"}


@register_launcher("batch")
class BatchLauncher(Launcher):
    """AWS Batch: one container per job, the job URI as its command.

    The job definition names the image (this repository's Dockerfile), the GPU resource
    requirement and a job role that may read and write the S3 store.
    """

    def __init__(self, settings: BackendSettings) -> None:
        super().__init__(settings)
        if not settings.batch_job_queue or not settings.batch_job_definition:
            raise LauncherError(
                "the AWS Batch launcher needs a job queue and a job definition; set "
                "NOCODE_ML_BATCH_JOB_QUEUE and NOCODE_ML_BATCH_JOB_DEFINITION"
            )
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import NoRegionError
        except ImportError as error:  # pragma: no cover - boto3 is a dependency
            raise LauncherError("the AWS Batch launcher needs boto3: pip install boto3") from error
        try:
            self.client = boto3.session.Session().client(
                "batch",
                region_name=settings.batch_region or settings.s3_region or None,
                endpoint_url=settings.batch_endpoint_url or None,
                config=Config(
                    connect_timeout=settings.s3_connect_timeout_s,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        except NoRegionError as error:
            raise LauncherError(
                "the AWS Batch launcher needs the AWS region of its job queue; set "
                "NOCODE_ML_BATCH_REGION (or AWS_DEFAULT_REGION), e.g. eu-west-1"
            ) from error

    def _call(self, action: str, function: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return function(**kwargs)
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message", str(error))
            raise LauncherError(f"AWS Batch refused to {action}: {message}") from error
        except BotoCoreError as error:
            raise LauncherError(f"cannot reach AWS Batch to {action}: {error}") from error

    def check_store(self, store_uri: str) -> None:
        if not store_uri.startswith("s3://"):
            raise LauncherError(
                f"an AWS Batch container cannot read the local store {store_uri}; use an S3 "
                "store (NOCODE_ML_STORE_URI=s3://bucket/prefix)"
            )

    def launch(self, job_uri: str, job_id: str) -> dict[str, Any]:
        self.check_store(job_uri)
        environment = [{"name": k, "value": v} for k, v in sorted(self.worker_env().items())]
        response = self._call(
            "submit the job",
            self.client.submit_job,
            jobName=f"nocode-ml-{job_id}",
            jobQueue=self.settings.batch_job_queue,
            jobDefinition=self.settings.batch_job_definition,
            containerOverrides={"command": [job_uri], "environment": environment},
            tags={"nocode-ml-job-id": job_id},
        )
        return {
            "launcher": self.name,
            "batch_job_id": response["jobId"],
            "job_queue": self.settings.batch_job_queue,
            "job_definition": self.settings.batch_job_definition,
        }

    def cancel(self, job_id: str, launch_info: dict[str, Any]) -> None:
        batch_id = launch_info.get("batch_job_id")
        if batch_id:
            # Batch sends SIGTERM to a running container; the worker then records "cancelled".
            self._call(
                "cancel the job",
                self.client.terminate_job,
                jobId=batch_id,
                reason=f"cancelled in No Code ML (job {job_id})",
            )

    def batch_job(self, launch_info: dict[str, Any]) -> dict[str, Any] | None:
        """Batch's description of the job (``None`` if Batch no longer knows it)."""
        batch_id = launch_info.get("batch_job_id")
        if not batch_id:
            return None
        jobs = self._call("describe the job", self.client.describe_jobs, jobs=[batch_id])["jobs"]
        return jobs[0] if jobs else None

    def reconcile(self, status: JobStatus, launch_info: dict[str, Any]) -> tuple[str, str] | None:
        job = self.batch_job(launch_info)
        if job is None or job.get("status") not in BATCH_TERMINAL:
            return None
        reason = job.get("statusReason") or "no reason given"
        container = job.get("container") or {}
        exit_code = container.get("exitCode")
        stream = container.get("logStreamName")
        detail = f"; exit code {exit_code}" if exit_code is not None else ""
        detail += f"; CloudWatch log stream {stream}" if stream else ""
        if job["status"] == "FAILED":
            return (
                FAILED,
                f"AWS Batch job {job['jobId']} stopped before the worker reported "
                f"({reason}{detail}); retry the job",
            )
        return (
            FAILED,
            f"AWS Batch job {job['jobId']} ended without the worker reporting a result{detail}; "
            "check that the job definition runs this project's image",
        )

    def describe(self, launch_info: dict[str, Any]) -> dict[str, Any]:
        info = dict(launch_info)
        job = self.batch_job(launch_info)
        if job is not None:
            info["batch_status"] = job.get("status")
            info["status_reason"] = job.get("statusReason", "")
        return info
