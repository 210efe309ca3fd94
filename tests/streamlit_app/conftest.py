"""Fixtures for the app tests: a fresh data folder, the app under AppTest, a live server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.streamlit_app.configs import APP_TRAIN_CONFIG

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "streamlit_app" / "app.py"
ARTIFACTS = REPO / "test-artifacts" / "streamlit"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private NOCODE_ML_DATA_DIR so tests never see the user's projects."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("NOCODE_ML_DATA_DIR", str(folder))
    monkeypatch.delenv("NOCODE_ML_STORE_URI", raising=False)
    monkeypatch.delenv("NOCODE_ML_SETTINGS", raising=False)
    return folder


@pytest.fixture
def app(data_dir: Path):
    """The real entry script under Streamlit's AppTest, already run once."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(APP), default_timeout=60).run()


@pytest.fixture
def queued_jobs(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs the app submits wait in the store (queue launcher, no worker service): tests finish
    them with ``tests.streamlit_app.finished_jobs`` instead of training."""
    monkeypatch.setenv("NOCODE_ML_LAUNCHER", "queue")


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """``{file name: content}`` of every file the app offers for download while a test runs
    (what ``st.download_button`` hands to Streamlit's media storage, or makes on a click)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    offered: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename is not None:
            data = path_or_data.encode() if isinstance(path_or_data, str) else path_or_data
            offered[filename] = data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)

    # Files made only when the button is clicked (``data`` a callable): made here, as a click
    # would, so a test reads what the user would get.
    from streamlit.runtime.media_file_manager import MediaFileManager

    original_deferred = MediaFileManager.add_deferred

    def record_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        if file_name is not None:
            data = data_callable()
            offered[file_name] = data.encode() if isinstance(data, str) else data
        return original_deferred(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)
    return offered


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The seeded synthetic sample on disk: image.tif (calibrated), labels.json, truth.json."""
    from pipelines import synthetic

    folder = tmp_path_factory.mktemp("sample")
    return synthetic.write_sample(synthetic.generate("particles", size_px=256, seed=3), folder)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A real ``streamlit run`` with the command line users get from ``nocode-ml serve``."""
    from nocode_ml.cli.serve import streamlit_command

    data = tmp_path_factory.mktemp("server-data")
    port = _free_port()
    env = {
        **os.environ,
        "NOCODE_ML_DATA_DIR": str(data),
        "PYTHONPATH": str(REPO),
        "NOCODE_ML_APP_TRAIN_CONFIG": json.dumps(APP_TRAIN_CONFIG),
    }
    env.pop("NOCODE_ML_STORE_URI", None)
    env.pop("NOCODE_ML_SETTINGS", None)
    log_path = data / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*streamlit_command(port, "127.0.0.1", True), "--server.fileWatcherType", "none"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    break
        except OSError:
            time.sleep(0.3)
    else:
        process.terminate()
        raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
    healthy_at = time.monotonic()
    yield {"url": url, "data_dir": data, "healthy_at": healthy_at, "log": log_path}
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's chromium (no Playwright browser download)."""
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": CHROMIUM_ARGS,
        "headless": True,
    }


@pytest.fixture
def shot(request: pytest.FixtureRequest):
    """``shot(page, name)`` saves a full-page screenshot under test-artifacts/streamlit/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        # Streamlit scrolls inside its main container, so a "full page" screenshot would stop
        # at the window: grow the window to the content's height for the picture.
        path = ARTIFACTS / f"{name}.png"
        viewport = page.viewport_size
        height = page.evaluate(
            "() => Math.max(document.body.scrollHeight, ...Array.from("
            "document.querySelectorAll('[data-testid=stMain], [data-testid=stAppViewContainer]'))"
            ".map(e => e.scrollHeight))"
        )
        page.set_viewport_size({"width": viewport["width"], "height": min(int(height), 5000)})
        page.wait_for_timeout(400)
        page.screenshot(path=str(path), full_page=True)
        page.set_viewport_size(viewport)
        return path

    return take


def pytest_configure() -> None:
    sys.path.insert(0, str(REPO))
