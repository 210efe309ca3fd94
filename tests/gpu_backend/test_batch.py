"""The AWS Batch launcher against moto_server's Batch API, with the store in moto's S3.

What moto can do without Docker: create the compute environment, queue and job definition,
accept ``submit_job``/``terminate_job`` and answer ``describe_jobs``. It cannot run the
container: with its default (Docker) backend a submitted job goes to FAILED at once because
no Docker engine is reachable, and with ``use_docker = False`` it is marked SUCCEEDED without
running anything. So these tests (1) check what we send to Batch, (2) run the container's
command themselves, exactly as the image's entrypoint would, and (3) check that both of
moto's outcomes are reconciled into an honest job status.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from gpu_backend.errors import LauncherError
from gpu_backend.jobs import JobClient
from gpu_backend.launchers import BatchLauncher, create_launcher
from gpu_backend.settings import BackendSettings
from gpu_backend.spec import job_uri
from gpu_backend.store import LocalStore
from tests.gpu_backend.helpers import run_worker, tiny_unet, wait_until


@pytest.fixture
def batch_settings(moto_endpoint: str, s3_bucket: str, fast_settings) -> BackendSettings:
    """A GPU-style compute environment, queue and job definition in moto, and an S3 store."""
    suffix = uuid.uuid4().hex[:8]
    iam = boto3.client("iam", endpoint_url=moto_endpoint)
    role = iam.create_role(RoleName=f"batch-{suffix}", AssumeRolePolicyDocument="{}")
    batch = boto3.client("batch", endpoint_url=moto_endpoint)
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"gpu-{suffix}",
        type="UNMANAGED",
        state="ENABLED",
        serviceRole=role["Role"]["Arn"],
    )
    batch.create_job_queue(
        jobQueueName=f"gpu-queue-{suffix}",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )
    batch.register_job_definition(
        jobDefinitionName=f"nocode-worker-{suffix}",
        type="container",
        containerProperties={
            "image": "nocode-ml:latest",
            "resourceRequirements": [
                {"type": "VCPU", "value": "4"},
                {"type": "MEMORY", "value": "16000"},
                {"type": "GPU", "value": "1"},
            ],
        },
    )
    return fast_settings(
        store_uri=f"s3://{s3_bucket}/lab",
        s3_endpoint_url=moto_endpoint,
        launcher="batch",
        batch_job_queue=f"gpu-queue-{suffix}",
        batch_job_definition=f"nocode-worker-{suffix}",
        batch_endpoint_url=moto_endpoint,
        batch_region="us-east-1",
    )


@pytest.fixture
def moto_without_docker(moto_endpoint: str) -> Iterator[None]:
    """Switch moto's Batch to its no-Docker backend (jobs 'succeed' without running)."""

    def configure(use_docker: bool) -> None:
        request = urllib.request.Request(
            f"{moto_endpoint}/moto-api/config",
            data=json.dumps({"batch": {"use_docker": use_docker}}).encode(),
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()

    configure(False)
    yield
    configure(True)


def submit(client: JobClient, sample: dict[str, Path]) -> str:
    status = client.submit_training(
        "detect", [sample["labels"]], engine="unet", config=tiny_unet(), device="cpu"
    )
    return status.job_id


def test_submit_sends_the_job_uri_as_the_container_command(
    batch_settings: BackendSettings, detection_sample: dict[str, Path]
) -> None:
    client = JobClient(batch_settings)
    assert isinstance(client.launcher, BatchLauncher)
    job_id = submit(client, detection_sample)
    info = client.launch_info(job_id)
    described = client.launcher.batch_job(info)
    assert described["jobQueue"].endswith(batch_settings.batch_job_queue)
    assert described["jobName"] == f"nocode-ml-{job_id}"
    container = described["container"]
    assert container["command"] == [job_uri(client.store.uri, job_id)]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment["NOCODE_ML_S3_ENDPOINT_URL"] == batch_settings.s3_endpoint_url
    assert environment["NOCODE_ML_HEARTBEAT_INTERVAL_S"] == "0.3"


def test_container_command_runs_the_job_like_the_image_entrypoint(
    batch_settings: BackendSettings, detection_sample: dict[str, Path]
) -> None:
    client = JobClient(batch_settings)
    job_id = submit(client, detection_sample)
    container = client.launcher.batch_job(client.launch_info(job_id))["container"]
    worker_env = {item["name"]: item["value"] for item in container["environment"]}
    # The Dockerfile's ENTRYPOINT is `python -m gpu_backend.worker`; Batch appends the command.
    result = run_worker_with_env(worker_env, container["command"])
    assert result.returncode == 0, result.stderr
    status = client.status(job_id)  # moto's own (Docker-less) run failed; our status wins
    assert status.state == "succeeded"
    assert "outputs/model/model.json" in status.results


def run_worker_with_env(worker_env: dict[str, str], command: list[str]):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "gpu_backend.worker", *command],
        env={**os.environ, **worker_env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_batch_failure_before_the_worker_reports_is_reconciled(
    batch_settings: BackendSettings, detection_sample: dict[str, Path]
) -> None:
    """moto cannot start the container (no Docker), as when an image cannot be pulled."""
    client = JobClient(batch_settings)
    job_id = submit(client, detection_sample)
    batch_id = client.launch_info(job_id)["batch_job_id"]
    status = wait_until(lambda: (s := client.status(job_id)).is_terminal and s, timeout_s=30)
    assert status.state == "failed"
    assert f"AWS Batch job {batch_id} stopped before the worker reported" in status.error
    assert "marked failed" in client.log(job_id)
    assert client.describe_launch(job_id)["batch_status"] == "FAILED"

    client.retry(job_id)
    assert client.launch_info(job_id)["batch_job_id"] != batch_id  # a new Batch job


def test_batch_success_without_a_report_is_a_failure(
    batch_settings: BackendSettings, detection_sample: dict[str, Path], moto_without_docker: None
) -> None:
    del moto_without_docker
    client = JobClient(batch_settings)
    job_id = submit(client, detection_sample)
    status = wait_until(lambda: (s := client.status(job_id)).is_terminal and s, timeout_s=30)
    assert status.state == "failed"
    assert "ended without the worker reporting a result" in status.error


def test_cancel_terminates_the_batch_job(
    batch_settings: BackendSettings, detection_sample: dict[str, Path]
) -> None:
    client = JobClient(batch_settings)
    job_id = submit(client, detection_sample)
    assert client.cancel(job_id).state == "cancelled"
    batch_id = client.launch_info(job_id)["batch_job_id"]
    batch = boto3.client("batch", endpoint_url=batch_settings.batch_endpoint_url)
    found = batch.describe_jobs(jobs=[batch_id])["jobs"][0]
    assert found["statusReason"] == f"cancelled in No Code ML (job {job_id})"
    # a cancelled job stays cancelled whatever Batch says afterwards
    wait_until(lambda: client.describe_launch(job_id)["batch_status"] == "FAILED", timeout_s=30)
    assert client.status(job_id).state == "cancelled"
    # and should the container start anyway, the worker does not run the job
    result = run_worker(batch_settings, job_uri(client.store.uri, job_id))
    assert result.returncode == 3


def test_batch_launcher_needs_queue_and_definition(fast_settings) -> None:
    with pytest.raises(LauncherError, match="NOCODE_ML_BATCH_JOB_QUEUE"):
        create_launcher("batch", fast_settings())


def test_batch_launcher_without_a_region_says_which_to_set(
    fast_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    settings = fast_settings(batch_job_queue="q", batch_job_definition="d")
    with pytest.raises(LauncherError, match="set NOCODE_ML_BATCH_REGION"):
        create_launcher("batch", settings)


def test_batch_refuses_a_local_store_before_uploading_anything(
    batch_settings: BackendSettings, tmp_path: Path, detection_sample: dict[str, Path]
) -> None:
    launcher = create_launcher("batch", batch_settings)
    with pytest.raises(LauncherError, match="cannot read the local store"):
        launcher.launch(job_uri(tmp_path.as_uri(), "20261125-203000-a1b2c3"), "x")
    local = LocalStore(tmp_path / "store")
    client = JobClient(batch_settings, store=local, launcher=launcher)
    with pytest.raises(LauncherError, match="cannot read the local store"):
        client.submit_training("detect", [detection_sample["labels"]])
    assert local.list_keys() == []  # no failed job holding a copy of the inputs
