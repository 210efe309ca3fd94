"""Shared constants and helpers of the job backend tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpu_backend.settings import BackendSettings

# Small enough that a dead worker is noticed in seconds, large enough for a loaded 2-core box.
FAST = {
    "heartbeat_interval_s": 0.3,
    "stale_after_s": 4.0,
    "progress_interval_s": 0.2,
    "cancel_grace_s": 15.0,
    "serve_poll_s": 0.3,
    "s3_connect_timeout_s": 2.0,
    "worker_threads": 1,
}
# A U-Net small enough to train in a few seconds on the tiny sample.
TINY_UNET = {
    "channels": [4, 8],
    "patch_px": 32,
    "batch_size": 2,
    "max_steps": 3,
    "tune_postprocessing": False,
    "threads": 1,
}


def tiny_unet(**changes: Any) -> dict[str, Any]:
    """The tiny U-Net config with some fields changed (e.g. a longer ``max_steps``)."""
    return {**TINY_UNET, **changes}


def wait_until(
    condition: Callable[[], Any], timeout_s: float = 60.0, interval_s: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def worker_command(*args: str) -> list[str]:
    """The worker entrypoint exactly as the Docker image runs it."""
    return [sys.executable, "-m", "gpu_backend.worker", *args]


def run_worker(
    settings: BackendSettings, *args: str, timeout_s: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Run the worker entrypoint in a subprocess with ``settings`` in its environment."""
    env = {**os.environ, **settings.to_env()}
    return subprocess.run(
        worker_command(*args), env=env, capture_output=True, text=True, timeout=timeout_s
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto_server() -> tuple[subprocess.Popen[bytes], str]:
    """A ``moto_server`` process on a free port, once it answers; returns it and its URL."""
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return process, endpoint
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
