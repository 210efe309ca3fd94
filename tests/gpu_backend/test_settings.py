"""Settings: defaults < settings file < NOCODE_ML_* variables < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_backend.settings import BackendSettings, load_settings
from pipelines.errors import InvalidInput


def test_defaults_use_home_data_folder_and_local_launcher() -> None:
    settings = load_settings(env={})
    assert settings.data_dir == Path("~/.nocode-ml").expanduser()
    assert settings.launcher == "local"
    assert settings.local_concurrency == 1
    assert settings.resolved_store_uri == settings.data_dir.resolve().as_uri()


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text(
        '[backend]\nlauncher = "batch"\nlocal_concurrency = 3\nbatch_job_queue = "gpu"\n'
        "heartbeat_interval_s = 5\n"
    )
    env = {
        "NOCODE_ML_DATA_DIR": str(tmp_path),
        "NOCODE_ML_LOCAL_CONCURRENCY": "2",
        "NOCODE_ML_STORE_URI": "s3://bucket/lab",
    }
    settings = load_settings(env=env, launcher="queue")
    assert settings.data_dir == tmp_path
    assert settings.launcher == "queue"  # override beats the file
    assert settings.local_concurrency == 2  # environment beats the file
    assert settings.batch_job_queue == "gpu"  # file beats the default
    assert settings.heartbeat_interval_s == 5.0
    assert settings.resolved_store_uri == "s3://bucket/lab"


def test_settings_file_named_by_environment(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('[backend]\ns3_endpoint_url = "http://minio:9000"\n')
    settings = load_settings(env={"NOCODE_ML_SETTINGS": str(path)})
    assert settings.s3_endpoint_url == "http://minio:9000"
    with pytest.raises(InvalidInput, match="does not exist"):
        load_settings(env={"NOCODE_ML_SETTINGS": str(tmp_path / "missing.toml")})


def test_to_env_round_trips(tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=tmp_path, local_concurrency=2, s3_endpoint_url="http://x:9000"
    )
    assert load_settings(env=settings.to_env()) == settings.replace(
        store_uri=settings.resolved_store_uri
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOCODE_ML_LOCAL_CONCURRENCY": "two"}, "NOCODE_ML_LOCAL_CONCURRENCY must be a whole"),
        ({"NOCODE_ML_LOCAL_CONCURRENCY": "0"}, "local_concurrency must be at least 1"),
        ({"NOCODE_ML_HEARTBEAT_INTERVAL_S": "-1"}, "must be a positive number"),
        (
            {"NOCODE_ML_HEARTBEAT_INTERVAL_S": "10", "NOCODE_ML_STALE_AFTER_S": "15"},
            "at least twice heartbeat_interval_s",
        ),
    ],
)
def test_bad_values_say_which_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_settings(env=env)


def test_bad_settings_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("[backend]\nlaunchr = 'local'\n")
    with pytest.raises(InvalidInput, match="unknown key 'launchr'"):
        load_settings(env={"NOCODE_ML_DATA_DIR": str(tmp_path)})
    (tmp_path / "settings.toml").write_text("[backend\n")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_settings(env={"NOCODE_ML_DATA_DIR": str(tmp_path)})


def test_threads_share_the_cores_between_concurrent_jobs() -> None:
    assert BackendSettings(local_concurrency=1, worker_threads=3).threads_per_job == 3
    assert BackendSettings(local_concurrency=64).threads_per_job == 1
