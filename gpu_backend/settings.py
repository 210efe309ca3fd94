"""Backend settings: one frozen dataclass, read from defaults < settings file < environment.

The settings file is TOML, ``$NOCODE_ML_SETTINGS`` or ``<data dir>/settings.toml``, with the
keys of :class:`BackendSettings` in a ``[backend]`` table. Every field can also be set by an
environment variable ``NOCODE_ML_<FIELD NAME IN CAPITALS>`` (``NOCODE_ML_STORE_URI``,
``NOCODE_ML_LOCAL_CONCURRENCY``...), which is how the worker in a container or a subprocess
receives them (:meth:`BackendSettings.to_env`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import InvalidInput

ENV_PREFIX = "NOCODE_ML_"
SETTINGS_FILE_ENV = "NOCODE_ML_SETTINGS"
SETTINGS_TABLE = "backend"
DEFAULT_DATA_DIR = "~/.nocode-ml"


@dataclass(frozen=True)
class BackendSettings:
    """Where jobs live, how they are launched and how often workers report.

    ``store_uri`` empty means the local folder ``data_dir`` (``file://`` URI); ``s3://bucket/prefix``
    selects S3 (``s3_endpoint_url`` points it at MinIO or another S3-compatible service).
    ``stale_after_s`` must comfortably exceed ``heartbeat_interval_s``: a running job whose
    heartbeat is older is declared failed (the worker was killed or its machine vanished).
    """

    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR).expanduser())
    store_uri: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_connect_timeout_s: float = 5.0
    launcher: str = "local"
    local_concurrency: int = 1
    worker_threads: int = 0
    batch_job_queue: str = ""
    batch_job_definition: str = ""
    batch_region: str = ""
    batch_endpoint_url: str = ""
    heartbeat_interval_s: float = 2.0
    stale_after_s: float = 60.0
    progress_interval_s: float = 1.0
    cancel_grace_s: float = 30.0
    metrics_history_points: int = 400
    serve_poll_s: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.local_concurrency < 1:
            raise InvalidInput(
                f"local_concurrency must be at least 1, got {self.local_concurrency}; "
                "set NOCODE_ML_LOCAL_CONCURRENCY to the number of jobs that may run at once"
            )
        if self.worker_threads < 0:
            raise InvalidInput(
                f"worker_threads must be 0 (automatic) or more, got {self.worker_threads}"
            )
        for name in (
            "heartbeat_interval_s",
            "stale_after_s",
            "progress_interval_s",
            "cancel_grace_s",
            "s3_connect_timeout_s",
            "serve_poll_s",
        ):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be a positive number of seconds")
        if self.stale_after_s < 2 * self.heartbeat_interval_s:
            raise InvalidInput(
                f"stale_after_s ({self.stale_after_s}) must be at least twice heartbeat_interval_s "
                f"({self.heartbeat_interval_s}), or live jobs would be declared dead"
            )
        if self.metrics_history_points < 10:
            raise InvalidInput("metrics_history_points must be at least 10")

    @property
    def resolved_store_uri(self) -> str:
        """The store URI, defaulting to the data folder itself."""
        return self.store_uri or self.data_dir.resolve().as_uri()

    @property
    def threads_per_job(self) -> int:
        """CPU threads a local job may use so concurrent jobs do not fight over the cores."""
        if self.worker_threads:
            return self.worker_threads
        return max(1, (os.cpu_count() or 1) // self.local_concurrency)

    def to_env(self) -> dict[str, str]:
        """These settings as ``NOCODE_ML_*`` variables, for a worker subprocess or container."""
        env = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            env[ENV_PREFIX + item.name.upper()] = str(value)
        env[ENV_PREFIX + "STORE_URI"] = self.resolved_store_uri
        return env

    def replace(self, **changes: Any) -> BackendSettings:
        """A copy with some fields changed; ``None`` values are ignored (unset CLI options)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _convert(name: str, kind: Any, raw: Any, origin: str) -> Any:
    """Turn a file or environment value into the field's type, with a message naming its origin."""
    text = str(raw).strip()
    try:
        if kind in (int, "int"):
            if isinstance(raw, bool):
                raise ValueError
            return int(text)
        if kind in (float, "float"):
            return float(text)
        if kind in (Path, "Path"):
            return Path(text).expanduser()
        return text
    except ValueError as error:
        expected = "a whole number" if kind in (int, "int") else "a number"
        raise InvalidInput(f"{origin} must be {expected}, got {raw!r}") from error


def _read_settings_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"settings file {path} is not valid TOML ({error}); fix it") from error
    except OSError as error:
        raise InvalidInput(f"settings file {path} cannot be read ({error})") from error
    table = document.get(SETTINGS_TABLE, {})
    if not isinstance(table, dict):
        raise InvalidInput(f"settings file {path}: [{SETTINGS_TABLE}] must be a table")
    return table


def load_settings(
    env: Mapping[str, str] | None = None,
    settings_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> BackendSettings:
    """Settings from defaults, then the settings file, then ``NOCODE_ML_*`` variables, then
    ``overrides`` (non-``None`` keyword arguments such as CLI options).

    Unknown keys in the file are an error so a typo does not silently fall back to a default.
    """
    env = os.environ if env is None else env
    fields = {item.name: item.type for item in dataclasses.fields(BackendSettings)}
    values: dict[str, Any] = {}

    data_dir_text = overrides.get("data_dir") or env.get(ENV_PREFIX + "DATA_DIR")
    data_dir = Path(data_dir_text or DEFAULT_DATA_DIR).expanduser()
    file_path = settings_file or env.get(SETTINGS_FILE_ENV)
    path = Path(file_path).expanduser() if file_path else data_dir / "settings.toml"
    if file_path and not path.is_file():
        raise InvalidInput(f"settings file {path} does not exist; fix {SETTINGS_FILE_ENV}")
    if path.is_file():
        for key, raw in _read_settings_file(path).items():
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise InvalidInput(
                    f"settings file {path}: unknown key {key!r}; known keys: {known}"
                )
            values[key] = _convert(key, fields[key], raw, f"{key} in {path}")

    for key, kind in fields.items():
        name = ENV_PREFIX + key.upper()
        if name in env and env[name] != "":
            values[key] = _convert(key, kind, env[name], name)

    for key, value in overrides.items():
        if key not in fields:
            raise TypeError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = value
    values.setdefault("data_dir", data_dir)
    return BackendSettings(**values)
