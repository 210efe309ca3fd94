"""Worker service: run jobs that the ``queue`` launcher left in the store.

This is what the ``worker`` container of docker-compose runs (``python -m gpu_backend.worker
--serve``): the app submits jobs with ``launcher = "queue"``, the service on the GPU machine
claims them and runs each in its own worker process, at most ``local_concurrency`` at once.
A claim is an exclusive create of ``jobs/<id>/claims/attempt-<n>``, so several services on
several machines can share one store without running a job twice.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
from types import FrameType

from gpu_backend.errors import InvalidJobSpec, KeyNotFound
from gpu_backend.jobs import JobClient
from gpu_backend.launchers import LocalLauncher
from gpu_backend.settings import BackendSettings
from gpu_backend.spec import (
    CLAIMS_FOLDER,
    LAUNCH_FILE,
    QUEUE_FOLDER,
    QUEUED,
    STATUS_FILE,
    JobStatus,
    check_job_id,
    encode_json,
    job_key,
    job_uri,
    utc_now,
)
from gpu_backend.store import Store, open_store
from pipelines.errors import InvalidInput, NoCodeMLError

log = logging.getLogger(__name__)

QUEUE_LAUNCHER = "queue"
SHUTDOWN_MARGIN_S = 10.0


def claim_queued_jobs(store: Store, launcher: LocalLauncher, capacity: int) -> list[str]:
    """Claim and start up to ``capacity`` queued jobs, oldest first; return their ids."""
    started: list[str] = []
    for key in store.list_keys(QUEUE_FOLDER):
        if len(started) >= capacity:
            break
        job_id = key.rpartition("/")[2]
        try:
            check_job_id(job_id)
        except InvalidInput:
            # Not ours: e.g. the empty "folder" object a storage console's "Create folder"
            # leaves. Skipped, so it cannot stop every job queued after it.
            log.debug("ignoring %s in the queue: not a job", key)
            continue
        try:
            status = JobStatus.from_json(store.read_bytes(job_key(job_id, STATUS_FILE)))
        except (KeyNotFound, InvalidJobSpec):
            store.delete(key)  # deleted job, or one whose status the worker will rebuild
            continue
        if status.state != QUEUED:
            store.delete(key)  # cancelled meanwhile
            continue
        claim = {"host": socket.gethostname(), "pid": os.getpid(), "claimed": utc_now()}
        claim_key = job_key(job_id, f"{CLAIMS_FOLDER}/attempt-{status.attempt}")
        if not store.create_bytes(claim_key, encode_json(claim)):
            continue  # another service took it
        store.delete(key)
        try:
            info = launcher.launch(job_uri(store.uri, job_id), job_id)
        except NoCodeMLError:
            store.delete(claim_key)  # back in the queue for the next poll (or another service)
            store.write_bytes(key, job_uri(store.uri, job_id).encode("utf-8"))
            raise
        info = {**info, "launcher": QUEUE_LAUNCHER, "served_by": claim["host"]}
        store.write_bytes(job_key(job_id, LAUNCH_FILE), encode_json(info))
        log.info("started job %s (attempt %d)", job_id, status.attempt)
        started.append(job_id)
    return started


def serve(settings: BackendSettings, stop: threading.Event | None = None) -> int:
    """Poll the store every ``serve_poll_s`` until ``stop`` is set or SIGTERM/SIGINT arrives."""
    stop = stop or threading.Event()
    store = open_store(settings)
    store.check()
    launcher = LocalLauncher(settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    log.info("serving queued jobs of %s, %d at a time", store.uri, settings.local_concurrency)
    client = JobClient(settings, store=store, launcher=QUEUE_LAUNCHER)
    running: set[str] = set()
    while not stop.is_set():
        try:
            live = launcher.reap()
            fail_abandoned(client, launcher, running - set(live))
            running = set(live)
            free = settings.local_concurrency - len(live)
            if free > 0:
                running |= set(claim_queued_jobs(store, launcher, free))
        except NoCodeMLError as error:  # the store may be briefly unreachable
            log.warning("could not poll the store: %s", error)
        stop.wait(settings.serve_poll_s)
    # The workers' own hard stop comes cancel_grace_s after the signal: wait a little longer,
    # so they record the job as failed (retryable) before they are killed.
    return shutdown(launcher, settings.cancel_grace_s + SHUTDOWN_MARGIN_S)


def fail_abandoned(client: JobClient, launcher: LocalLauncher, exited: set[str]) -> None:
    """Record as failed the jobs whose worker exited while they were still queued (killed,
    out of memory, the store unreachable as it started): no client can see that pid, and no
    queue marker is left, so nothing else would ever end or retry them."""
    for job_id in sorted(exited):
        try:
            status = client.status(job_id)
            verdict = launcher.reconcile(status, client.launch_info(job_id))
        except NoCodeMLError:
            continue  # deleted meanwhile
        if verdict is not None:
            client.end_unchanged(status, *verdict)


def shutdown(launcher: LocalLauncher, grace_s: float) -> int:
    """Ask running workers to stop (they record the job as failed, retryable) and wait."""
    running = launcher.reap()
    for process in running.values():
        process.send_signal(signal.SIGTERM)
    for job_id, process in running.items():
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning("worker of job %s did not stop in %.0f s; killing it", job_id, grace_s)
            process.kill()
            process.wait()
    return 0
