"""End to end through :class:`JobClient` with real worker subprocesses: the local launcher and
its queue, the worker service, and the faults the backend must survive."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from gpu_backend.errors import JobStateError, StoreUnavailable
from gpu_backend.jobs import JobClient
from gpu_backend.launchers import LocalLauncher, LocalSlots, pid_alive
from gpu_backend.settings import BackendSettings
from gpu_backend.spec import JobStatus, job_key, parse_time
from gpu_backend.store import LocalStore
from gpu_backend.worker import EXIT_CANCELLED
from pipelines.artifact import read_model_info
from pipelines.errors import InvalidInput
from pipelines.formats.labelme import read_labelme
from tests.gpu_backend.helpers import free_port, tiny_unet, wait_until, worker_command


def submit_tiny(
    client: JobClient, sample: dict[str, Path], train_s: float | None = None, **config: Any
) -> JobStatus:
    """A tiny U-Net training job: 3 steps, or ``train_s`` seconds of training."""
    if train_s is not None:
        config = {"max_steps": 0, "train_seconds": train_s, **config}
    return client.submit_training(
        "detect", [sample["labels"]], engine="unet", config=tiny_unet(**config), device="cpu"
    )


def training_started(client: JobClient, job_id: str) -> bool:
    progress = client.status(job_id, reconcile=False).progress
    return progress is not None and progress.stage == "train"


def inputs_intact(client: JobClient, job_id: str) -> bool:
    """Every input file in the store still has the checksum recorded at submit."""
    spec = client.spec(job_id)
    return all(
        hashlib.sha256(client.store.read_bytes(job_key(job_id, item.key))).hexdigest()
        == item.sha256
        for item in spec.inputs
    )


def test_full_job_from_submit_to_results(
    client: JobClient, detection_sample: dict[str, Path], tmp_path: Path
) -> None:
    train = submit_tiny(client, detection_sample)
    assert train.state == "queued"
    assert client.spec(train.job_id).input_roots == ("inputs/labels.json",)
    assert {item.key for item in client.spec(train.job_id).inputs} == {
        "inputs/labels.json",
        "inputs/image.tif",  # the image the LabelMe file names travels with it
    }
    trained = client.wait(train.job_id, timeout_s=180)
    assert trained.state == "succeeded", trained.error
    assert trained.progress.stage == "finished"

    predict = client.submit_prediction(train.job_id, [detection_sample["image"]])
    predicted = client.wait(predict.job_id, timeout_s=180)
    assert predicted.state == "succeeded", predicted.error
    assert {
        "outputs/predictions/image.json",
        "outputs/predictions/image_overlay.png",
        "outputs/predictions/image_stats.csv",
    } <= set(predicted.results)
    client.download_results(predict.job_id, tmp_path / "pred")
    document = read_labelme(tmp_path / "pred" / "predictions" / "image.json")
    assert document.image_height == 192
    assert client.read_result(predict.job_id, "outputs/predictions/image_overlay.png")[:4] == (
        b"\x89PNG"
    )

    assert [r.spec.job_id for r in client.list_jobs()] == [predict.job_id, train.job_id]
    client.delete(predict.job_id)
    client.delete(train.job_id)
    assert client.list_jobs() == []
    assert client.store.list_keys("jobs") == []


@pytest.mark.slow
def test_classification_job_and_prediction_with_an_uploaded_model_folder(
    fast_settings, tmp_path: Path
) -> None:
    """A tiny ConvNeXt trained from class folders; the model folder is then uploaded again."""
    from pipelines.synthetic_classes import write_synthetic_classification

    dataset = write_synthetic_classification(tmp_path / "classes", n_per_class=4, size_px=48)
    client = JobClient(fast_settings())
    train = client.submit_training(
        "classify",
        [dataset.root],
        config={"input_size_px": 32, "epochs": 1, "batch_size": 4},
        device="cpu",
    )
    assert client.spec(train.job_id).input_roots == ("inputs/classes",)
    trained = client.wait(train.job_id, timeout_s=300)
    assert trained.state == "succeeded", trained.error
    assert trained.result_metrics["engine"] == "convnext"
    client.download_results(train.job_id, tmp_path / "got")
    model_dir = tmp_path / "got" / "model"
    assert read_model_info(model_dir).classes == ["agglomerates", "rods", "spheres"]

    images = [dataset.files["rods"][0], dataset.files["spheres"][1]]
    predict = client.submit_prediction(model_dir, images)
    assert any(item.key == "model/weights.pt" for item in client.spec(predict.job_id).inputs)
    predicted = client.wait(predict.job_id, timeout_s=300)
    assert predicted.state == "succeeded", predicted.error
    csv_path = client.result_path(predict.job_id, "outputs/predictions/predictions.csv")
    assert "rods_000" in csv_path.read_text()


def test_killed_worker_is_caught_by_its_stale_heartbeat_and_retry_succeeds(
    fast_settings, detection_sample: dict[str, Path]
) -> None:
    client = JobClient(fast_settings())
    job_id = submit_tiny(client, detection_sample, train_s=4.0).job_id
    wait_until(lambda: training_started(client, job_id), timeout_s=120)
    pid = client.status(job_id, reconcile=False).worker["pid"]
    os.kill(pid, signal.SIGKILL)

    failed = wait_until(lambda: (s := client.status(job_id)).is_terminal and s, timeout_s=60)
    assert failed.state == "failed"
    assert "no heartbeat" in failed.error
    log_text = client.log(job_id)
    assert "attempt 1 of job" in log_text  # the dead worker's log is kept
    assert "marked failed" in log_text
    assert inputs_intact(client, job_id)

    retried = client.retry(job_id)
    assert (retried.state, retried.attempt) == ("queued", 2)
    final = client.wait(job_id, timeout_s=180)
    assert final.state == "succeeded", final.error
    assert final.attempt == 2
    scratch = list(Path(tempfile.gettempdir()).glob(f"nocode-job-{job_id}-*"))
    assert scratch == []  # the killed attempt's scratch folder was cleaned up
    assert "attempt 2 of job" in client.log(job_id)
    assert inputs_intact(client, job_id)


def test_cancel_while_running_stops_within_seconds(
    fast_settings, detection_sample: dict[str, Path]
) -> None:
    launcher = LocalLauncher(fast_settings())
    client = JobClient(launcher.settings, launcher=launcher)
    job_id = submit_tiny(client, detection_sample, train_s=60.0).job_id
    wait_until(lambda: training_started(client, job_id), timeout_s=120)
    assert client.cancel(job_id).cancel_requested
    stopped = client.wait(job_id, timeout_s=20)  # the job had a minute of training left
    assert stopped.state == "cancelled"
    assert stopped.cancel_requested
    assert stopped.results == ()
    assert launcher.wait(job_id, timeout_s=10) == EXIT_CANCELLED
    assert "stop requested: cancel requested by the user" in client.log(job_id)
    assert client.store.list_keys(job_key(job_id, "outputs")) == []


def test_one_slot_runs_jobs_in_order_and_cancels_a_waiting_one(
    fast_settings, detection_sample: dict[str, Path]
) -> None:
    launcher = LocalLauncher(fast_settings(local_concurrency=1))
    client = JobClient(launcher.settings, launcher=launcher)
    first, second, third = (submit_tiny(client, detection_sample).job_id for _ in range(3))
    assert client.cancel(second).state == "cancelled"  # waiting: cancelled at once
    done_first = client.wait(first, timeout_s=180)
    done_third = client.wait(third, timeout_s=180)
    assert (done_first.state, done_third.state) == ("succeeded", "succeeded")
    assert parse_time(done_first.finished) <= parse_time(done_third.started)  # no overlap
    assert launcher.wait(second, timeout_s=30) == EXIT_CANCELLED
    cancelled = client.status(second)
    assert (cancelled.state, cancelled.started) == ("cancelled", None)
    assert "cancelled before it started" in client.log(second)


def test_a_place_in_the_line_held_by_a_reused_pid_is_given_up(tmp_path: Path) -> None:
    """After a restart the data folder keeps a dead worker's ticket and its pid may now be
    another process's (here: one without the job on its command line)."""
    slots = LocalSlots(tmp_path, concurrency=1)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        slots.enter_line("dead-job", stranger.pid, at_s=time.time() - 60)
        deadline = time.monotonic() + 5.0
        lease = slots.acquire("next", lambda: time.monotonic() > deadline, poll_s=0.05)
        assert lease is not None
        lease.release()
    finally:
        stranger.kill()
        stranger.wait()


def test_the_line_keeps_launch_order_when_a_later_worker_starts_first(tmp_path: Path) -> None:
    """The launcher gives each job its place as it starts the worker: a later worker that gets
    going first (imports take seconds on a busy machine) still waits behind the earlier job."""
    slots = LocalSlots(tmp_path, concurrency=1)
    # A worker's command line holds its job (the job URI): "earlier" stands for it here.
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "earlier"])
    try:
        slots.enter_line("earlier", starting.pid)  # its worker has not reached the line yet
        slots.enter_line("later", os.getpid())
        deadline = time.monotonic() + 1.0
        waited = slots.acquire(
            "later", lambda: time.monotonic() > deadline, poll_s=0.05, stop_check_s=0.1
        )
        assert waited is None  # the slot was free, but the earlier job is ahead in the line
        # A worker keeps the place its launcher gave it, here ahead of a job launched now.
        slots.enter_line("first", os.getpid(), at_s=time.time() - 60)
        deadline = time.monotonic() + 5.0
        lease = slots.acquire("first", lambda: time.monotonic() > deadline, poll_s=0.05)
        assert lease is not None
        lease.release()
        starting.kill()
        starting.wait()
        # A worker that died before its turn gives its place up.
        deadline = time.monotonic() + 5.0
        lease = slots.acquire("later", lambda: time.monotonic() > deadline, poll_s=0.05)
        assert lease is not None
        lease.release()
    finally:
        if starting.poll() is None:
            starting.kill()
            starting.wait()


def test_two_slots_run_two_jobs_at_once_and_both_finish(
    fast_settings, detection_sample: dict[str, Path], tmp_path: Path
) -> None:
    client = JobClient(fast_settings(local_concurrency=2, worker_threads=1))
    one, two = (submit_tiny(client, detection_sample, train_s=4.0).job_id for _ in range(2))
    first, second = client.wait(one, timeout_s=180), client.wait(two, timeout_s=180)
    assert (first.state, second.state) == ("succeeded", "succeeded"), (first.error, second.error)
    assert parse_time(first.started) < parse_time(second.finished)
    assert parse_time(second.started) < parse_time(first.finished)  # they overlapped
    for job_id in (one, two):
        client.download_results(job_id, tmp_path / job_id)
        assert read_model_info(tmp_path / job_id / "model").engine == "unet"


def test_worker_dying_while_queued_is_reported_and_live_jobs_need_force_to_delete(
    fast_settings, detection_sample: dict[str, Path]
) -> None:
    client = JobClient(fast_settings(local_concurrency=1))
    running = submit_tiny(client, detection_sample, train_s=60.0).job_id
    # Only once ``running`` holds the one slot is the next job sure to wait behind it (two
    # workers started together race for the slot, and the 3-step job could win and finish).
    wait_until(lambda: training_started(client, running), timeout_s=120)
    waiting = submit_tiny(client, detection_sample).job_id
    pid = client.launch_info(waiting)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout_s=10)
    failed = client.status(waiting)
    assert failed.state == "failed"
    assert "exited before starting the job" in failed.error

    with pytest.raises(JobStateError, match="cancel it first"):
        client.delete(running)
    client.delete(running, force=True)
    assert running not in {r.spec.job_id for r in client.list_jobs()}

    client.retry(waiting)
    assert client.wait(waiting, timeout_s=180).state == "succeeded"


def test_submit_to_an_unreachable_store_fails_clearly(
    moto_endpoint: str, fast_settings, detection_sample: dict[str, Path]
) -> None:
    del moto_endpoint  # fake credentials only
    dead = f"http://127.0.0.1:{free_port()}"
    client = JobClient(
        fast_settings(store_uri="s3://lab/nocode", s3_endpoint_url=dead, s3_connect_timeout_s=1.0)
    )
    with pytest.raises(StoreUnavailable, match="cannot reach the S3 store"):
        submit_tiny(client, detection_sample)


class FailingStore(LocalStore):
    """A real local store that loses its connection after ``uploads`` file uploads."""

    def __init__(self, root: Path, uploads: int) -> None:
        super().__init__(root)
        self.uploads_left = uploads

    def upload_file(self, key: str, path: str | os.PathLike[str]) -> None:
        if self.uploads_left == 0:
            raise StoreUnavailable("the store went away")
        self.uploads_left -= 1
        super().upload_file(key, path)


def test_store_failing_mid_submit_leaves_no_half_job(
    fast_settings, tmp_path: Path, detection_sample: dict[str, Path]
) -> None:
    store = FailingStore(tmp_path / "store", uploads=1)
    client = JobClient(fast_settings(store_uri=store.uri), store=store, launcher="queue")
    with pytest.raises(StoreUnavailable, match="went away"):
        submit_tiny(client, detection_sample)
    assert store.list_keys() == []
    assert client.list_jobs() == []


def test_bad_submissions_are_refused_before_anything_is_written(
    client: JobClient, detection_sample: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        client.submit_training("detect", [tmp_path / "missing.json"])
    with pytest.raises(InvalidInput, match="unknown task"):
        client.submit_training("segment", [detection_sample["labels"]])
    with pytest.raises(InvalidInput, match="device must be"):
        client.submit_training("detect", [detection_sample["labels"]], device="tpu")
    with pytest.raises(InvalidInput, match="plain JSON values"):
        client.submit_training("detect", [detection_sample["labels"]], config={"x": object()})
    assert client.list_jobs() == []


def test_worker_service_ends_a_claimed_job_whose_worker_died_before_it_started(
    moto_endpoint: str, s3_bucket: str, fast_settings, detection_sample: dict[str, Path]
) -> None:
    """The queue marker is gone once a job is claimed, and the app cannot see the service's
    pids: only the service can say the job will never start. A stray "folder" object in the
    queue (a storage console's "Create folder") is passed over, not a stop for every job."""
    import boto3

    from gpu_backend.serve import claim_queued_jobs, fail_abandoned

    settings: BackendSettings = fast_settings(
        store_uri=f"s3://{s3_bucket}/lab", s3_endpoint_url=moto_endpoint, launcher="queue"
    )
    client = JobClient(settings)
    queued = client.submit_training("detect", [detection_sample["labels"]], device="cpu")
    boto3.client("s3", endpoint_url=moto_endpoint).put_object(
        Bucket=s3_bucket, Key="lab/queue/", Body=b""
    )
    launcher = LocalLauncher(settings)
    assert claim_queued_jobs(client.store, launcher, 1) == [queued.job_id]
    launcher.reap()[queued.job_id].kill()  # out of memory before it reached the store
    wait_until(lambda: queued.job_id not in launcher.reap(), timeout_s=30)
    fail_abandoned(client, launcher, {queued.job_id})
    status = client.status(queued.job_id)
    assert status.state == "failed"
    assert "exited before starting the job (exit code -9)" in status.error
    assert client.retry(queued.job_id).state == "queued"  # and it can be tried again
    assert f"queue/{queued.job_id}" in client.store.list_keys("queue")


def test_worker_service_runs_jobs_queued_in_s3(
    moto_endpoint: str, s3_bucket: str, fast_settings, detection_sample: dict[str, Path]
) -> None:
    """docker-compose's set-up: the app queues, a ``--serve`` worker claims and runs."""
    settings: BackendSettings = fast_settings(
        store_uri=f"s3://{s3_bucket}/lab", s3_endpoint_url=moto_endpoint, launcher="queue"
    )
    client = JobClient(settings)
    train = client.submit_training(
        "detect", [detection_sample["labels"]], engine="threshold", device="cpu"
    )
    assert client.store.list_keys("queue") == [f"queue/{train.job_id}"]
    service = subprocess.Popen(
        worker_command("--serve"),
        env={**os.environ, **settings.to_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        trained = client.wait(train.job_id, timeout_s=180)
        assert trained.state == "succeeded", trained.error
        assert trained.result_metrics["engine"] == "threshold"
        assert client.store.exists(job_key(train.job_id, "claims/attempt-1"))
        assert client.launch_info(train.job_id)["served_by"]
        predict = client.submit_prediction(train.job_id, [detection_sample["image"]])
        predicted = client.wait(predict.job_id, timeout_s=180)
        assert predicted.state == "succeeded", predicted.error
        assert "outputs/predictions/image.json" in predicted.results
        assert client.store.list_keys("queue") == []
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0
