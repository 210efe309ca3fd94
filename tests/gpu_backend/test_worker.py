"""The worker entrypoint ``python -m gpu_backend.worker JOB_URI`` on both stores.

Jobs are created with the ``queue`` launcher (nothing starts them) and the test runs the
worker itself, as the Docker image or AWS Batch would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gpu_backend.errors import JobNotFound, StoreUnavailable
from gpu_backend.jobs import JobClient
from gpu_backend.settings import BackendSettings
from gpu_backend.spec import SPEC_FILE, JobStatus, job_key, job_uri, utc_now
from gpu_backend.store import LocalStore, Store
from gpu_backend.worker import EXIT_BUSY, EXIT_FAILED, JobRunner, json_safe, run_job
from pipelines.artifact import read_model_info
from pipelines.errors import Cancelled
from pipelines.progress import Progress
from tests.gpu_backend.helpers import (
    free_port,
    run_worker,
    start_moto_server,
    stop_process,
    tiny_unet,
    wait_until,
    worker_command,
)


def queued_job(client: JobClient, sample: dict[str, Path], **config) -> str:
    queue_client = JobClient(client.settings, store=client.store, launcher="queue")
    status = queue_client.submit_training(
        "detect", [sample["labels"]], engine="unet", config=tiny_unet(**config), device="cpu"
    )
    return status.job_id


def input_hashes(store: Store, job_id: str) -> dict[str, str]:
    keys = store.list_keys(job_key(job_id, "inputs"))
    return {key: hashlib.sha256(store.read_bytes(key)).hexdigest() for key in keys}


@pytest.mark.parametrize("store_kind", ["s3"])  # the container's case; local runs elsewhere
def test_entrypoint_trains_from_the_job_uri(
    client: JobClient, detection_sample: dict[str, Path], tmp_path: Path
) -> None:
    job_id = queued_job(client, detection_sample)
    before = input_hashes(client.store, job_id)
    result = run_worker(client.settings, job_uri(client.store.uri, job_id))
    assert result.returncode == 0, result.stderr
    status = client.status(job_id)
    assert status.state == "succeeded"
    assert status.attempt == 1
    assert {"outputs/model/model.json", "outputs/model/weights.pt"} <= set(status.results)
    assert status.result_metrics["engine"] == "unet"
    assert status.started <= status.finished
    assert any("loss" in point.metrics for point in status.metrics_history)
    client.download_results(job_id, tmp_path / "got")
    assert read_model_info(tmp_path / "got" / "model").engine == "unet"
    assert input_hashes(client.store, job_id) == before  # inputs never modified
    log_text = client.log(job_id)
    assert "attempt 1 of job" in log_text
    assert "job succeeded" in log_text


def test_corrupt_job_spec_fails_with_a_clear_message(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    job_id = queued_job(client, detection_sample)
    client.store.write_bytes(job_key(job_id, "job.json"), b'{"job_id": "20261125-2030')
    before = input_hashes(client.store, job_id)
    assert run_job(job_uri(client.store.uri, job_id), client.settings) == EXIT_FAILED
    status = client.status(job_id)
    assert status.state == "failed"
    assert "job.json is not valid JSON" in status.error
    assert "submit the job again" in status.error
    assert "\n" not in status.error
    assert "is not valid JSON" in client.log(job_id)
    assert input_hashes(client.store, job_id) == before


def test_spec_with_a_wrong_field_names_it(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    job_id = queued_job(client, detection_sample)
    raw = json.loads(client.store.read_bytes(job_key(job_id, "job.json")))
    raw["task"] = "segment"
    client.store.write_bytes(job_key(job_id, "job.json"), json.dumps(raw).encode())
    assert run_job(job_uri(client.store.uri, job_id), client.settings) == EXIT_FAILED
    assert "task must be one of" in client.status(job_id).error


def with_config(client: JobClient, job_id: str, **config) -> None:
    """Put settings into a queued job's spec that submit would refuse, as a spec written by
    another version of the client could hold."""
    spec = client.spec(job_id)
    edited = dataclasses.replace(spec, config={**spec.config, **config})
    client.store.write_bytes(job_key(job_id, SPEC_FILE), edited.to_json())


def test_engine_error_fails_the_job_and_keeps_the_traceback_in_the_log(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    job_id = queued_job(client, detection_sample)
    with_config(client, job_id, no_such_setting=1)
    assert run_job(job_uri(client.store.uri, job_id), client.settings) == EXIT_FAILED
    status = client.status(job_id)
    assert status.state == "failed"
    assert "has no setting(s) no_such_setting" in status.error
    assert "Traceback (most recent call last)" in client.log(job_id)
    assert status.results == ()


def test_unknown_job_is_an_error_and_writes_nothing(
    store: Store, backend_settings: BackendSettings
) -> None:
    uri = job_uri(store.uri, "20261125-203000-a1b2c3")
    with pytest.raises(JobNotFound, match="no job 20261125-203000-a1b2c3"):
        run_job(uri, backend_settings)
    assert store.list_keys() == []
    result = run_worker(backend_settings, uri)
    assert result.returncode == 2
    assert "no job 20261125-203000-a1b2c3" in result.stderr


def test_unreachable_store_exits_with_a_clear_error(moto_endpoint: str, fast_settings) -> None:
    del moto_endpoint  # fake credentials only
    dead = f"http://127.0.0.1:{free_port()}"
    settings = fast_settings(s3_endpoint_url=dead, s3_connect_timeout_s=1.0)
    result = run_worker(settings, "s3://bucket/lab/jobs/20261125-203000-a1b2c3", timeout_s=60)
    assert result.returncode == 2
    assert "cannot reach the S3 store at http://127.0.0.1" in result.stderr


def test_bad_job_uri_is_a_usage_error(fast_settings) -> None:
    result = run_worker(fast_settings(), "not-a-uri")
    assert result.returncode == 2
    assert "is not a job URI" in result.stderr


def test_rerunning_a_succeeded_job_does_nothing(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    job_id = queued_job(client, detection_sample)
    uri = job_uri(client.store.uri, job_id)
    assert run_job(uri, client.settings) == 0
    first = client.status(job_id)
    assert run_job(uri, client.settings) == 0
    assert client.status(job_id) == first


def test_rerunning_a_failed_job_runs_it_again(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    """A failed attempt (here with a leftover partial result) is replaced by a clean one."""
    job_id = queued_job(client, detection_sample)
    status = client.status(job_id)
    failed = status.with_state("running", started=utc_now()).with_state(
        "failed", error="worker lost", finished=utc_now()
    )
    client.store.write_bytes(job_key(job_id, "status.json"), failed.to_json())
    client.store.write_bytes(job_key(job_id, "outputs/model/partial.bin"), b"half")
    client.store.write_text(job_key(job_id, "log.txt"), "earlier attempt\n")
    assert run_job(job_uri(client.store.uri, job_id), client.settings) == 0
    status = client.status(job_id)
    assert status.state == "succeeded"
    assert status.attempt == 2
    assert status.error == ""
    assert "outputs/model/partial.bin" not in client.store.list_keys(job_key(job_id, "outputs"))
    log_text = client.log(job_id)
    assert log_text.startswith("earlier attempt\n")
    assert "attempt 2 of job" in log_text


def test_job_with_a_live_worker_is_not_taken_over(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    job_id = queued_job(client, detection_sample)
    now = utc_now()
    running = client.status(job_id).with_state(
        "running", started=now, heartbeat=now, worker={"host": "other", "pid": 1}
    )
    client.store.write_bytes(job_key(job_id, "status.json"), running.to_json())
    assert run_job(job_uri(client.store.uri, job_id), client.settings) == EXIT_BUSY
    assert client.status(job_id, reconcile=False) == running


@pytest.mark.parametrize("store_kind", ["local"])  # sets the file's time; S3 in test_store
def test_a_worker_with_a_slow_clock_is_judged_by_the_store_time(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    """A worker whose clock runs ten minutes behind stamps heartbeats that look ten minutes
    old; the store's time of its last status write shows it alive. Once that is old too, the
    job is failed."""
    job_id = queued_job(client, detection_sample)
    behind = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="milliseconds")
    running = client.status(job_id).with_state(
        "running", started=behind, heartbeat=behind, worker={"host": "other", "pid": 1}
    )
    status_path = client.store.path(job_key(job_id, "status.json"))
    client.store.write_bytes(job_key(job_id, "status.json"), running.to_json())
    assert run_job(job_uri(client.store.uri, job_id), client.settings) == EXIT_BUSY
    assert client.status(job_id) == running

    silent_since = time.time() - 300
    os.utime(status_path, (silent_since, silent_since))
    failed = client.status(job_id)
    assert failed.state == "failed"
    assert re.search(r"no heartbeat for 30\d s", failed.error)  # the store's time, not 600 s


def test_sigterm_marks_the_job_failed_and_retryable(
    fast_settings, tmp_path: Path, detection_sample: dict[str, Path]
) -> None:
    """``docker stop`` or a Spot interruption: not a user cancel, so failed (retryable)."""
    client = JobClient(fast_settings(store_uri=(tmp_path / "store").as_uri()))
    job_id = queued_job(client, detection_sample, max_steps=0, train_seconds=120.0)
    env = {**os.environ, **client.settings.to_env()}
    process = subprocess.Popen(
        worker_command(job_uri(client.store.uri, job_id)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _stage(client, job_id) == "train", timeout_s=90)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == EXIT_FAILED
    finally:
        if process.poll() is None:
            process.kill()
    status = client.status(job_id)
    assert status.state == "failed"
    assert "SIGTERM" in status.error
    queue_client = JobClient(client.settings, store=client.store, launcher="queue")
    assert queue_client.retry(job_id).state == "queued"  # retryable (queued, not started here)


def test_store_lost_mid_job_ends_the_worker_with_a_clear_error(
    moto_endpoint: str, fast_settings, detection_sample: dict[str, Path]
) -> None:
    """The S3 server goes away while the job trains: the worker says so and exits (code 2);
    the job is left "running" with a heartbeat that will go stale once the store is back."""
    del moto_endpoint  # fake credentials only
    server, endpoint = start_moto_server()
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lab")
        settings = fast_settings(store_uri="s3://lab/x", s3_endpoint_url=endpoint)
        client = JobClient(settings)
        job_id = queued_job(client, detection_sample, max_steps=0, train_seconds=2.0)
        process = subprocess.Popen(
            worker_command(job_uri(client.store.uri, job_id)),
            env={**os.environ, **settings.to_env()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: _stage(client, job_id) == "train", timeout_s=90)
    finally:
        stop_process(server)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2
    assert "cannot reach the S3 store at http://127.0.0.1" in stderr
    with pytest.raises(StoreUnavailable, match="check that the server is running"):
        client.status(job_id)


def _stage(client: JobClient, job_id: str) -> str | None:
    progress = client.status(job_id, reconcile=False).progress
    return progress.stage if progress else None


class CountingStore(LocalStore):
    """A real local store that counts status writes (to check the throttle)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.status_writes = 0

    def write_bytes(self, key: str, data: bytes) -> None:
        if key.endswith("status.json"):
            self.status_writes += 1
        super().write_bytes(key, data)


class SlowStore(LocalStore):
    """A real local store whose status writes take ``delay_s`` (a slow S3 PUT)."""

    def __init__(self, root: Path, delay_s: float) -> None:
        super().__init__(root)
        self.delay_s = delay_s

    def write_bytes(self, key: str, data: bytes) -> None:
        if key.endswith("status.json"):
            time.sleep(self.delay_s)
        super().write_bytes(key, data)


def test_a_slow_store_does_not_hold_up_training(
    tmp_path: Path, fast_settings, detection_sample: dict[str, Path]
) -> None:
    """Progress reports only touch memory; the status write happens beside them."""
    store = SlowStore(tmp_path / "store", delay_s=2.0)
    settings = fast_settings(store_uri=store.uri)
    job_id = queued_job(JobClient(settings, store=LocalStore(tmp_path / "store")), detection_sample)
    runner = JobRunner(store, job_id, settings)
    runner.log_path.touch()
    runner.status = JobStatus(job_id=job_id, state="running", submitted=utc_now(), updated="")
    writer = threading.Thread(target=runner.write_status, daemon=True)
    writer.start()
    time.sleep(0.2)  # the write is under way
    started = time.monotonic()
    runner.on_progress(Progress("train", 1, 10, metrics={"loss": 1.0}))
    assert time.monotonic() - started < 1.0
    writer.join()
    shutil.rmtree(runner.workdir)


def test_a_worker_taken_for_dead_stops_without_overwriting_the_verdict(
    tmp_path: Path, fast_settings, detection_sample: dict[str, Path]
) -> None:
    """A client marked the running job failed (its clock runs minutes ahead of the worker's,
    so the heartbeat looked stale) and retried it: the old worker must not write "running,
    attempt 1" over that."""
    settings = fast_settings()
    client = JobClient(settings)
    job_id = queued_job(client, detection_sample)
    runner = JobRunner(client.store, job_id, settings)
    runner.log_path.write_text("attempt 1 log\n")
    runner.status = client.status(job_id).with_state("running", heartbeat=utc_now())
    runner.write_status()
    client.end_unchanged(client.status(job_id), "failed", "no heartbeat for 95 s")
    runner.heartbeat()
    assert runner.superseded and runner.cancel_event.is_set()
    assert client.status(job_id).state == "failed"
    assert "marked failed" in client.log(job_id)
    retried = client.retry(job_id)
    runner.set_status(runner.status.replace(heartbeat=utc_now()))
    runner.write_status()
    assert client.status(job_id) == retried
    shutil.rmtree(runner.workdir)


def test_progress_writes_are_throttled_and_cancel_raises(
    tmp_path: Path, fast_settings, detection_sample: dict[str, Path]
) -> None:
    store = CountingStore(tmp_path / "store")
    settings = fast_settings(
        store_uri=store.uri, progress_interval_s=0.5, heartbeat_interval_s=10, stale_after_s=30
    )
    job_id = queued_job(JobClient(settings, store=store), detection_sample)
    runner = JobRunner(store, job_id, settings)
    runner.status = JobStatus(job_id=job_id, state="running", submitted=utc_now(), updated="")
    thread = threading.Thread(target=runner.reporter, daemon=True)
    writes_before = store.status_writes
    thread.start()
    started = time.monotonic()
    step = 0
    while time.monotonic() - started < 1.6:
        step += 1
        runner.on_progress(Progress("train", step, 100_000, metrics={"loss": 1.0 / step}))
    runner.stop(thread)
    writes = store.status_writes - writes_before
    assert step > 1000
    assert 1 <= writes <= 4  # 1.6 s at one write per 0.5 s, not one per event
    assert len(runner.status.metrics_history) <= settings.metrics_history_points
    assert runner.status.metrics_history[-1].done == step
    runner.request_cancel("test")
    with pytest.raises(Cancelled):
        runner.on_progress(Progress("train", step + 1, 100_000))
    shutil.rmtree(runner.workdir)


def test_metrics_are_made_json_safe() -> None:
    import numpy as np

    raw = {"loss": float("nan"), "f1": np.float32(0.5), "sizes": (1, 2), "path": Path("/x")}
    assert json_safe(raw) == {"loss": None, "f1": 0.5, "sizes": [1, 2], "path": "/x"}
    json.dumps(json_safe(raw), allow_nan=False)


def test_a_worker_that_starts_after_its_job_was_cancelled_exits_as_cancelled(
    client: JobClient, detection_sample: dict[str, Path]
) -> None:
    """On a busy machine the user can cancel before the worker's imports finish; the worker
    then ends before opening its log, and must not fail uploading a log it never wrote."""
    from gpu_backend.worker import EXIT_CANCELLED

    job_id = queued_job(client, detection_sample)
    client.store.write_bytes(job_key(job_id, "cancel"), b"{}")  # the request, status untouched
    assert run_job(job_uri(client.store.uri, job_id), client.settings) == EXIT_CANCELLED
    assert client.status(job_id).state == "cancelled"
