"""Fixtures of the job backend tests: a real ``moto_server`` process for S3 and AWS Batch,
stores of both kinds, fast settings and a tiny labelled detection sample.

Workers started by the tests are real subprocesses (``python -m gpu_backend.worker``); they
reach the moto server through the same endpoint URL and the fake AWS credentials set here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_backend.jobs import JobClient
from gpu_backend.settings import BackendSettings, load_settings
from gpu_backend.store import LocalStore, S3Store, Store
from tests.gpu_backend.helpers import FAST, start_moto_server, stop_process

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``moto_server`` on a free port (S3 and Batch APIs), killed at the end of the session."""
    saved = {key: os.environ.get(key) for key in AWS_ENV}
    os.environ.update(AWS_ENV)  # worker subprocesses inherit these
    process, endpoint = start_moto_server()
    yield endpoint
    stop_process(process)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh bucket in the moto server."""
    import boto3

    name = f"nocode-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def fast_settings(tmp_path: Path) -> Callable[..., BackendSettings]:
    """Settings factory: a private data folder, quick heartbeats, plus any overrides."""

    def make(**overrides: Any) -> BackendSettings:
        values = {**FAST, "data_dir": tmp_path / "data", **overrides}
        return load_settings(env={}, **values)

    return make


@pytest.fixture(params=["local", "s3"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], Store]:
    """Factory of the parametrised store: a folder, or a bucket + prefix in moto_server."""
    if store_kind == "local":
        return lambda: LocalStore(tmp_path / "store")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return lambda: S3Store(bucket, "lab/nocode", endpoint_url=endpoint)


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()


@pytest.fixture
def backend_settings(
    store_kind: str, store: Store, fast_settings: Callable[..., BackendSettings]
) -> BackendSettings:
    """Fast settings pointing at the parametrised store."""
    if isinstance(store, S3Store):
        return fast_settings(store_uri=store.uri, s3_endpoint_url=store.endpoint_url)
    return fast_settings(store_uri=store.uri)


@pytest.fixture
def client(backend_settings: BackendSettings) -> JobClient:
    """A client with the local launcher on the parametrised store."""
    return JobClient(backend_settings)


@pytest.fixture(scope="session")
def detection_sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 192 px synthetic image with two labelled crops (``labels.json`` beside ``image.tif``)."""
    from pipelines.synthetic import generate, write_sample

    folder = tmp_path_factory.mktemp("sample")
    paths = write_sample(generate("particles", size_px=192, seed=0), folder)
    paths["truth"].unlink()
    del paths["truth"]
    return paths
