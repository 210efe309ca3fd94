"""The worker: ``python -m gpu_backend.worker JOB_URI`` runs one job (what the container runs).

It fetches the inputs, runs :func:`pipelines.tasks.train_model` or :func:`pipelines.tasks.predict`
with a progress callback that feeds the job status, uploads the results and keeps a heartbeat.
Cancellation is honoured between steps (the callback raises ``Cancelled``); any exception marks
the job failed with a one-line error in the status and the traceback in the job log, and the
inputs are never touched. Running the worker again on a failed job runs it again; on a
succeeded job it does nothing (idempotent).

``python -m gpu_backend.worker --serve`` is the long-running worker service of docker-compose:
it claims jobs queued with the ``queue`` launcher and runs each in its own worker process.

Exit codes: 0 succeeded (or nothing to do), 1 failed, 2 usage error or store unreachable,
3 cancelled, 4 already running elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from gpu_backend.errors import InvalidJobSpec, JobNotFound, KeyNotFound
from gpu_backend.launchers import LocalSlots
from gpu_backend.settings import BackendSettings, load_settings
from gpu_backend.spec import (
    CANCEL_FILE,
    CANCELLED,
    FAILED,
    LOG_FILE,
    MODEL_FOLDER,
    OUTPUTS_FOLDER,
    QUEUED,
    RUNNING,
    SPEC_FILE,
    STATUS_FILE,
    SUCCEEDED,
    JobSpec,
    JobStatus,
    MetricPoint,
    ProgressSnapshot,
    heartbeat_age_s,
    job_key,
    parse_time,
    split_job_uri,
    thin_history,
    utc_now,
)
from gpu_backend.store import Store, store_from_uri
from pipelines.errors import Cancelled, InvalidInput, NoCodeMLError
from pipelines.fileio import sha256_file
from pipelines.progress import Progress

log = logging.getLogger("gpu_backend.worker")  # not "__main__" under python -m

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED, EXIT_BUSY = 0, 1, 2, 3, 4
EXIT_CODES = {SUCCEEDED: EXIT_SUCCEEDED, FAILED: EXIT_FAILED, CANCELLED: EXIT_CANCELLED}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STOPPED_BEFORE_START = "the worker was stopped before the job started; retry the job"
STOPPED_WHILE_RUNNING = (
    "the worker was stopped (SIGTERM: container or machine shutting down) before the job "
    "finished; retry the job"
)


def one_line(error: BaseException) -> str:
    """A user-facing one-line message for any exception."""
    if isinstance(error, NoCodeMLError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error} (internal error; the job log has the traceback)"
    return " ".join(text.split())


def resolve_device(requested: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``; a missing GPU is an error."""
    import torch

    from pipelines.devices import resolve_device as pick_device

    device = pick_device(requested)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(
            f"the job asks for device {requested!r} but this worker has no usable GPU; "
            "resubmit with device 'auto' or 'cpu', or run it on a GPU worker"
        )
    return device


def _is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` and unknown objects as text (JSON has
    no NaN), so engine metrics can never make the final status unwritable."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        number = float(value)  # numpy scalars
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    """JSON has no NaN/inf: keep finite numbers only."""
    clean = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            clean[str(key)] = number
    return clean


class JobRunner:
    """Runs one job of a store; the in-memory status is authoritative while the job runs."""

    def __init__(self, store: Store, job_id: str, settings: BackendSettings) -> None:
        self.store = store
        self.job_id = job_id
        self.settings = settings
        self.lock = threading.RLock()  # guards the in-memory status
        self.write_lock = threading.Lock()  # one store write of the status at a time
        self.superseded = False
        self.status: JobStatus | None = None
        self.dirty = False
        self.cancel_event = threading.Event()
        self.cancel_requested_at: float | None = None
        self.terminated = False
        self.computing = False
        self.stop_reporter = threading.Event()
        self.started_monotonic = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"nocode-job-{job_id}-"))
        self.log_path = self.workdir / LOG_FILE
        self.log_handler: logging.Handler | None = None
        self.previous_root_level = logging.NOTSET
        self.uploaded_log_bytes = -1
        self.last_write = 0.0

    def key(self, name: str) -> str:
        return job_key(self.job_id, name)

    # ------------------------------------------------------------------ status and log I/O
    def write_status(self) -> None:
        """Write the in-memory status (and the log if it grew); store errors propagate.

        The status is copied under ``lock`` and written outside it, so a slow store never
        holds up the training thread's progress reports; ``write_lock`` keeps writes in order.
        Once the job was ended or retried elsewhere (:meth:`check_superseded`) nothing is
        written: this worker's status would overwrite the newer one.
        """
        with self.write_lock:
            if self.superseded:
                return
            with self.lock:
                assert self.status is not None
                status, self.dirty = self.status, False
            try:
                self.store.write_bytes(self.key(STATUS_FILE), status.to_json())
            except BaseException:
                with self.lock:
                    self.dirty = True
                raise
            self.last_write = time.monotonic()
        self.upload_log()

    def check_superseded(self) -> None:
        """Stop when the stored status is no longer this attempt's: a client took the worker
        for dead (its heartbeat looked stale, e.g. a clock off by minutes or a long store
        outage) and marked the job failed, or someone retried it since."""
        stored = self.read_store_status()
        with self.lock:
            mine = self.status
        if stored is None or mine is None or mine.is_terminal:
            return
        if stored.attempt == mine.attempt and not stored.is_terminal:
            return
        self.superseded = True
        log.error(
            "job %s is now %s (attempt %d) in the store; this worker (attempt %d) stops "
            "without writing its status",
            self.job_id,
            stored.state,
            stored.attempt,
            mine.attempt,
        )
        self.request_cancel("the job was ended or retried elsewhere")

    def upload_log(self) -> None:
        if self.superseded:
            return  # the log now carries the newer attempt's lines, or the client's verdict
        if self.log_handler is not None:
            self.log_handler.flush()
        if not self.log_path.exists():
            return  # ended before its log was opened (cancelled while queued): nothing to add
        size = self.log_path.stat().st_size
        if size != self.uploaded_log_bytes:
            self.store.upload_file(self.key(LOG_FILE), self.log_path)
            self.uploaded_log_bytes = size

    def set_status(self, status: JobStatus) -> None:
        with self.lock:
            self.status = status
            self.dirty = True

    def read_store_status(self) -> JobStatus | None:
        """The status in the store, ``None`` if it is missing or unreadable."""
        try:
            return JobStatus.from_json(self.store.read_bytes(self.key(STATUS_FILE)))
        except (KeyNotFound, InvalidJobSpec):
            return None

    def open_log(self, attempt: int) -> None:
        """Continue the job's log: earlier attempts stay, this one is appended."""
        try:
            self.store.download_file(self.key(LOG_FILE), self.log_path)
        except KeyNotFound:
            self.log_path.touch()
        handler = logging.FileHandler(self.log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(logging.INFO)
        root = logging.getLogger()
        root.addHandler(handler)
        self.previous_root_level = root.level
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        self.log_handler = handler
        log.info(
            "==== attempt %d of job %s on host %s (pid %d) ====",
            attempt,
            self.job_id,
            socket.gethostname(),
            os.getpid(),
        )

    def close_log(self) -> None:
        if self.log_handler is not None:
            root = logging.getLogger()
            root.removeHandler(self.log_handler)
            root.setLevel(self.previous_root_level)
            logging.captureWarnings(False)
            self.log_handler.close()
            self.log_handler = None

    # ------------------------------------------------------------------ cancellation
    def request_cancel(self, reason: str) -> None:
        if not self.cancel_event.is_set():
            log.info("stop requested: %s", reason)
            self.cancel_requested_at = time.monotonic()
            self.cancel_event.set()
            with self.lock:
                if self.status is not None and not self.status.is_terminal:
                    self.status = self.status.replace(cancel_requested=True)
                    self.dirty = True

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.terminated = True
        self.request_cancel(f"received signal {signal.Signals(signum).name}")

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("the job was cancelled")

    # ------------------------------------------------------------------ progress and heartbeat
    def on_progress(self, event: Progress) -> None:
        """The pipelines' progress callback: record the event, stop if cancel was requested.

        Store writes happen in the reporter thread (at most one per ``progress_interval_s``),
        so training never waits on the network.
        """
        self.check_cancel()
        metrics = _finite(event.metrics)
        snapshot = ProgressSnapshot(
            stage=event.stage,
            done=int(event.done),
            total=int(event.total),
            fraction=round(event.fraction, 4),
            eta_s=round(event.eta_s, 1) if _is_finite(event.eta_s) else None,
            message=event.message,
            metrics=metrics,
        )
        with self.lock:
            assert self.status is not None
            history = self.status.metrics_history
            if metrics:
                point = MetricPoint(
                    elapsed_s=round(time.monotonic() - self.started_monotonic, 3),
                    stage=event.stage,
                    done=int(event.done),
                    metrics=metrics,
                )
                history = thin_history((*history, point), self.settings.metrics_history_points)
            self.status = self.status.replace(progress=snapshot, metrics_history=history)
            self.dirty = True

    def stage(self, name: str, message: str = "") -> None:
        """The worker's own stages (download, upload) shown like the engines' ones."""
        self.on_progress(Progress(stage=name, done=0, total=0, message=message))

    def heartbeat(self) -> None:
        if self.store.exists(self.key(CANCEL_FILE)):
            self.request_cancel("cancel requested by the user")
        self.check_superseded()
        with self.lock:
            assert self.status is not None
            self.status = self.status.replace(heartbeat=utc_now())
        self.write_status()

    def reporter(self) -> None:
        """Background thread: heartbeat, throttled status writes, hard stop after cancel grace."""
        next_beat = time.monotonic() + self.settings.heartbeat_interval_s
        while not self.stop_reporter.wait(0.1):
            now = time.monotonic()
            try:
                if now >= next_beat:
                    next_beat = now + self.settings.heartbeat_interval_s
                    self.heartbeat()
                elif self.dirty and now - self.last_write >= self.settings.progress_interval_s:
                    self.write_status()
            except Exception as error:  # keep beating: the store may come back
                log.warning("could not update the job status: %s", one_line(error))
            if (
                self.computing
                and self.cancel_requested_at is not None
                and now - self.cancel_requested_at > self.settings.cancel_grace_s
            ):
                self.hard_stop()

    def hard_stop(self) -> None:
        """The pipelines did not reach a cancel point in time: record the end and exit now."""
        log.error(
            "the job did not stop within %.0f s of the stop request; stopping the worker",
            self.settings.cancel_grace_s,
        )
        state = FAILED if self.terminated and not self.user_cancelled() else CANCELLED
        error = "the worker was stopped before the job finished" if state == FAILED else ""
        try:
            self.finish(state, error)
        finally:
            os._exit(EXIT_CODES[state])

    def user_cancelled(self) -> bool:
        try:
            return self.store.exists(self.key(CANCEL_FILE))
        except NoCodeMLError:
            return False

    # ------------------------------------------------------------------ the job itself
    def read_spec(self) -> JobSpec:
        where = f"job spec {self.key(SPEC_FILE)}"
        try:
            data = self.store.read_bytes(self.key(SPEC_FILE))
        except KeyNotFound as error:
            raise InvalidJobSpec(f"{where} is missing; submit the job again") from error
        spec = JobSpec.from_json(data, where)
        if spec.job_id != self.job_id:
            raise InvalidJobSpec(f"{where} belongs to job {spec.job_id}; submit the job again")
        return spec

    def fetch_inputs(self, spec: JobSpec) -> Path:
        """Copy the inputs into the scratch folder and prove they are the ones submitted."""
        job_folder = self.workdir / "job"
        for number, item in enumerate(spec.inputs, start=1):
            self.check_cancel()
            self.on_progress(Progress("download", number - 1, len(spec.inputs), message=item.key))
            target = self.store.download_file(self.key(item.key), job_folder / item.key)
            if target.stat().st_size != item.size_bytes or sha256_file(target) != item.sha256:
                raise InvalidInput(
                    f"input {item.key} differs from the file submitted (checksum mismatch); "
                    "submit the job again"
                )
        if spec.model_job_id:
            prefix = job_key(spec.model_job_id, f"{OUTPUTS_FOLDER}/{MODEL_FOLDER}")
            if not self.store.download_folder(prefix, job_folder / MODEL_FOLDER):
                raise InvalidInput(
                    f"job {spec.model_job_id} has no trained model (was it deleted?); "
                    "choose another model"
                )
        self.on_progress(Progress("download", len(spec.inputs), len(spec.inputs)))
        return job_folder

    def execute(self, spec: JobSpec) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Run the pipelines; return the result keys and the metrics worth showing."""
        from pipelines import tasks
        from pipelines.artifact import read_model_info

        job_folder = self.fetch_inputs(spec)
        roots = [job_folder / root for root in spec.input_roots]
        device = resolve_device(spec.device)
        self.set_threads()
        with self.lock:
            assert self.status is not None
            self.status = self.status.replace(worker={**self.status.worker, "device": device})
        log.info("%s %s on %s with inputs %s", spec.action, spec.task, device, spec.input_roots)
        out_root = self.workdir / "out"
        self.computing = True
        try:
            if spec.action == "train":
                out = out_root / MODEL_FOLDER
                tasks.train_model(
                    spec.task,
                    roots,
                    out,
                    engine=spec.engine,
                    config=spec.config,
                    device=device,
                    minutes=spec.minutes,
                    progress=self.on_progress,
                )
                info = read_model_info(out)
                result_metrics: dict[str, Any] = {"engine": info.engine, **info.metrics}
            else:
                out = out_root / "predictions"
                written = tasks.predict(
                    job_folder / MODEL_FOLDER,
                    roots,
                    out,
                    device=device,
                    options=spec.options,
                    progress=self.on_progress,
                )
                result_metrics = {"files_written": len(written)}
        finally:
            self.computing = False
        self.check_cancel()
        self.stage("upload")
        prefix = job_key(self.job_id, f"{OUTPUTS_FOLDER}/{out.name}")
        keys = self.store.upload_folder(prefix, out)
        folder = job_key(self.job_id) + "/"
        return tuple(key[len(folder) :] for key in keys), json_safe(result_metrics)

    def set_threads(self) -> None:
        import torch

        torch.set_num_threads(self.settings.threads_per_job)

    def finish(self, state: str, error: str = "", **changes: Any) -> None:
        with self.lock:
            assert self.status is not None
            now = utc_now()
            ended = self.status.with_state(
                state, error=error, finished=now, heartbeat=now, **changes
            )
            ended.to_json()  # a value JSON cannot hold fails here, before the state changes
            self.status = ended
        if error:
            log.error("job %s: %s", state, error)
        else:
            log.info("job %s", state)
        # The log first: whoever follows it stops at the final status, and must find the
        # log's last lines already there.
        with contextlib.suppress(NoCodeMLError, OSError):
            self.upload_log()
        self.write_status()

    # ------------------------------------------------------------------ entry point
    def prepare(self) -> JobStatus | int:
        """Read the job and decide whether to run it; an int is the exit code to stop with."""
        status = self.read_store_status()
        if status is None and not self.store.exists(self.key(SPEC_FILE)):
            if self.store.exists(self.key(STATUS_FILE)):
                status = None  # unreadable status: rebuilt below, the spec check fails it
            else:
                raise JobNotFound(f"no job {self.job_id} in the store {self.store.uri}")
        if status is None:
            status = JobStatus(
                job_id=self.job_id, state=QUEUED, submitted=utc_now(), updated=utc_now()
            )
        if status.state == SUCCEEDED:
            log.info("job %s already succeeded; nothing to do", self.job_id)
            return EXIT_SUCCEEDED
        if status.state == CANCELLED:
            log.info("job %s was cancelled; retry it to run it again", self.job_id)
            return EXIT_CANCELLED
        if status.state == RUNNING and status.heartbeat:
            age_s = heartbeat_age_s(status, self.store)
            if age_s < self.settings.stale_after_s:
                log.error(
                    "job %s is already running (worker %s, heartbeat %.0f s ago)",
                    self.job_id,
                    status.worker,
                    age_s,
                )
                return EXIT_BUSY
        return status

    def run(self, wait_for_slot: bool = False) -> int:
        """Run the job to a final state and return the exit code."""
        try:
            return self._run(wait_for_slot)
        finally:
            self.close_log()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self, wait_for_slot: bool) -> int:
        decision = self.prepare()
        if isinstance(decision, int):
            return decision
        initial = decision
        if self.store.exists(self.key(CANCEL_FILE)):
            if initial.state in (QUEUED, RUNNING):
                self.status = initial
                self.finish(CANCELLED, "", cancel_requested=True)
            else:
                log.info("job %s has a cancel request; retry it to run it again", self.job_id)
            return EXIT_CANCELLED
        # A failed (or abandoned running) job run again directly counts as a new attempt.
        attempt = initial.attempt + (1 if initial.state in (FAILED, RUNNING) else 0)
        self.status = initial
        self.open_log(attempt)
        try:
            spec = self.read_spec()
        except InvalidJobSpec as error:
            self.status = initial.replace(attempt=attempt)
            self.finish(FAILED, one_line(error))
            return EXIT_FAILED

        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:  # signals can only be handled there (run_job may be called elsewhere)
            previous_handler = signal.signal(signal.SIGTERM, self.on_sigterm)
        lease = None
        try:
            if wait_for_slot:
                lease = self.wait_for_slot(initial)
                if lease is None:
                    if self.terminated:
                        self.status = initial.replace(attempt=attempt)
                        self.finish(FAILED, STOPPED_BEFORE_START)
                        return EXIT_FAILED
                    return EXIT_CANCELLED
                if self.queued_job_changed(initial):  # cancelled while the slot was taken
                    return EXIT_CANCELLED
            return self.run_attempt(spec, initial, attempt)
        finally:
            if lease is not None:
                lease.release()
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous_handler)

    def wait_for_slot(self, initial: JobStatus) -> Any:
        slots = LocalSlots.of(self.settings)

        def should_stop() -> bool:
            return self.cancel_event.is_set() or self.queued_job_changed(initial)

        log.info("waiting for one of %d local job slots", slots.concurrency)
        queued_at_s = parse_time(initial.updated).timestamp() if initial.updated else None
        return slots.acquire(self.job_id, should_stop, queued_at_s=queued_at_s)

    def queued_job_changed(self, initial: JobStatus) -> bool:
        """Whether the job was cancelled, deleted or taken over while this worker waited."""
        if self.store.exists(self.key(CANCEL_FILE)):
            return True
        current = self.read_store_status()
        if current is None:
            return True
        return (current.state, current.attempt) != (initial.state, initial.attempt)

    def run_attempt(self, spec: JobSpec, initial: JobStatus, attempt: int) -> int:
        now = utc_now()
        self.started_monotonic = time.monotonic()
        self.status = initial.new_attempt(
            RUNNING,
            attempt,
            started=now,
            heartbeat=now,
            worker={"host": socket.gethostname(), "pid": os.getpid()},
        )
        self.write_status()
        self.remove_stale_workdirs()
        thread = threading.Thread(target=self.reporter, name="job-reporter", daemon=True)
        thread.start()
        try:
            self.store.delete_prefix(job_key(self.job_id, OUTPUTS_FOLDER))  # earlier attempts
            results, result_metrics = self.execute(spec)
        except Cancelled:
            self.stop(thread)
            if self.terminated and not self.user_cancelled():
                self.finish(FAILED, STOPPED_WHILE_RUNNING)
                return EXIT_FAILED
            self.finish(CANCELLED, "")
            return EXIT_CANCELLED
        except Exception as error:
            log.exception("job failed")
            self.stop(thread)
            self.finish(FAILED, one_line(error))
            return EXIT_FAILED
        self.stop(thread)
        with self.lock:
            assert self.status is not None
            progress = self.status.progress
            if progress is not None:
                progress = ProgressSnapshot("finished", 1, 1, 1.0, 0.0, "", progress.metrics)
        try:
            self.finish(
                SUCCEEDED, results=results, result_metrics=result_metrics, progress=progress
            )
        except NoCodeMLError:
            raise  # the store is gone: nothing more can be recorded
        except Exception as error:  # never leave a finished job looking "running"
            log.exception("could not record the result")
            self.finish(FAILED, one_line(error))
            return EXIT_FAILED
        return EXIT_SUCCEEDED

    def remove_stale_workdirs(self) -> None:
        """Scratch folders of earlier attempts of this job whose worker was killed.

        Safe only once this worker owns the job (no other live worker runs it).
        """
        for folder in self.workdir.parent.glob(f"nocode-job-{self.job_id}-*"):
            if folder != self.workdir:
                shutil.rmtree(folder, ignore_errors=True)

    def stop(self, thread: threading.Thread) -> None:
        self.stop_reporter.set()
        thread.join()


def run_job(
    job_uri: str, settings: BackendSettings | None = None, wait_for_slot: bool = False
) -> int:
    """Run the job at ``job_uri`` in this process and return the worker's exit code."""
    settings = settings or load_settings()
    store_uri, job_id = split_job_uri(job_uri)
    store = store_from_uri(store_uri, settings)
    return JobRunner(store, job_id, settings).run(wait_for_slot=wait_for_slot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpu_backend.worker",
        description="Run one No Code ML job (JOB_URI), or serve queued jobs (--serve).",
    )
    parser.add_argument("job_uri", nargs="?", help="e.g. s3://bucket/prefix/jobs/<job id>")
    parser.add_argument(
        "--wait-for-slot",
        action="store_true",
        help="wait for a free local slot first (used by the local launcher)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="run jobs queued with the 'queue' launcher until stopped",
    )
    parser.add_argument("--store", help="store URI for --serve (default: the settings)")
    parser.add_argument("--concurrency", type=int, help="jobs run at once by --serve")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        settings = load_settings(store_uri=args.store, local_concurrency=args.concurrency)
        if args.serve:
            from gpu_backend.serve import serve

            return serve(settings)
        if not args.job_uri:
            raise InvalidInput("give a job URI (STORE_URI/jobs/JOB_ID) or --serve")
        return run_job(args.job_uri, settings, wait_for_slot=args.wait_for_slot)
    except NoCodeMLError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
