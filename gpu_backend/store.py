"""Where jobs live: a key/value store of files with two implementations.

Keys are ``/``-separated relative paths (``jobs/<id>/status.json``). Every write is atomic:
the local folder writes a temporary file and renames it (:mod:`pipelines.fileio`), S3 does a
single ``PUT`` (or a multipart upload that becomes visible only when complete), so a reader
never sees a half-written file.

Stores are looked up by name like engines and launchers: ``create_store("local", root=...)``,
``create_store("s3", bucket=..., prefix=..., endpoint_url=...)``, or from a URI with
:func:`open_store` (``file:///data/nocode-ml``, ``s3://bucket/prefix``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from gpu_backend.errors import KeyNotFound, StoreError, StoreUnavailable
from gpu_backend.settings import BackendSettings
from pipelines.errors import InvalidInput
from pipelines.fileio import atomic_path, atomic_write_bytes

log = logging.getLogger(__name__)

STORES: dict[str, type[Store]] = {}
URI_SCHEMES = {"file": "local", "s3": "s3"}


def register_store(name: str) -> Callable[[type[Store]], type[Store]]:
    """Class decorator adding a store implementation to the registry under ``name``."""

    def decorate(cls: type[Store]) -> type[Store]:
        cls.name = name
        STORES[name] = cls
        return cls

    return decorate


def list_stores() -> list[str]:
    """Names accepted by :func:`create_store`."""
    return sorted(STORES)


def create_store(name: str, **options: Any) -> Store:
    """Build a store by registry name with implementation-specific options."""
    if name not in STORES:
        raise InvalidInput(f"unknown store {name!r}; choose one of: {', '.join(list_stores())}")
    return STORES[name](**options)


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``InvalidInput``.

    Hidden components (``.name``) are refused: the local store uses them for temporary files.
    """
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidInput(f"invalid store key {key!r}: keys are relative paths with '/'")
    for part in key.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            raise InvalidInput(
                f"invalid store key {key!r}: empty, '..' or hidden ('.name') parts are not allowed"
            )
    return key


def _prefix_folder(prefix: str) -> str:
    """``'jobs'`` and ``'jobs/'`` both mean the folder ``jobs/``; ``''`` means everything."""
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
        return prefix + "/"
    return ""


class Store(ABC):
    """A folder of files addressed by keys. Implementations must make each write atomic."""

    name: ClassVar[str] = ""

    @property
    @abstractmethod
    def uri(self) -> str:
        """URI that :func:`open_store` turns back into an equal store."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Content of ``key``; raises :class:`KeyNotFound` when it is absent."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Create or replace ``key`` atomically."""

    @abstractmethod
    def create_bytes(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist; ``False`` when it already existed.

        Atomic across processes and machines: two callers never both get ``True``.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abstractmethod
    def modified_time(self, key: str) -> datetime:
        """When ``key`` was last written, by the store's own clock (UTC); raises
        :class:`KeyNotFound` when it is absent."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key inside the folder ``prefix``, sorted."""

    @abstractmethod
    def list_folders(self, prefix: str = "") -> list[str]:
        """Names of the immediate sub-folders of ``prefix``, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    @abstractmethod
    def upload_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Copy a local file to ``key`` atomically."""

    @abstractmethod
    def download_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Copy ``key`` to a local file atomically and return its path."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StoreUnavailable` or :class:`StoreError` unless the store is usable."""

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key in the folder ``prefix``; return how many were removed."""
        keys = self.list_keys(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def upload_folder(self, prefix: str, folder: str | os.PathLike[str]) -> list[str]:
        """Upload every file of a local folder under ``prefix``; return the keys written."""
        root = Path(folder)
        keys = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            if any(part.startswith(".") for part in relative.split("/")):
                continue  # temporary or hidden files are never results
            key = f"{_prefix_folder(prefix)}{relative}"
            self.upload_file(key, path)
            keys.append(key)
        return keys

    def download_folder(self, prefix: str, folder: str | os.PathLike[str]) -> list[Path]:
        """Download every key under ``prefix`` into a local folder, keeping sub-folders."""
        base = _prefix_folder(prefix)
        paths = []
        for key in self.list_keys(prefix):
            paths.append(self.download_file(key, Path(folder) / key[len(base) :]))
        return paths


@register_store("local")
class LocalStore(Store):
    """A folder on this machine (the default: the data folder shown in the app).

    The folder is created by the first write; :meth:`check` says whether it can be.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    @property
    def uri(self) -> str:
        return self.root.as_uri()

    def path(self, key: str) -> Path:
        """Local path of ``key``: the app may read results in place instead of copying."""
        return self.root / check_key(key)

    @contextlib.contextmanager
    def _os_errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError as error:
            raise KeyNotFound(f"{key} does not exist in the store {self.uri}") from error
        except (NotADirectoryError, IsADirectoryError) as error:
            raise StoreError(
                f"cannot {action} {key} in {self.root}: a file is in the way"
            ) from error
        except PermissionError as error:
            raise StoreError(
                f"cannot {action} {key}: permission denied in {self.root}; "
                "choose a data folder you can write to"
            ) from error
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise StoreError(
                    f"cannot {action} {key}: the disk of {self.root} is full"
                ) from error
            raise StoreError(f"cannot {action} {key} in {self.root}: {error}") from error

    def read_bytes(self, key: str) -> bytes:
        with self._os_errors("read", key):
            return self.path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._os_errors("write", key):
            atomic_write_bytes(self.path(key), data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        with self._os_errors("create", key):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
            )
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                # A hard link fails if the target exists, which makes "create if absent" atomic.
                try:
                    os.link(tmp_name, target)
                except FileExistsError:
                    return False
                return True
            finally:
                os.unlink(tmp_name)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def modified_time(self, key: str) -> datetime:
        with self._os_errors("read", key):
            return datetime.fromtimestamp(self.path(key).stat().st_mtime, UTC)

    def list_keys(self, prefix: str = "") -> list[str]:
        base = _prefix_folder(prefix)
        folder = self.root / base if base else self.root
        if not folder.is_dir():
            return []  # a store nobody wrote to yet is empty
        keys = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            relative_dir = Path(dirpath).relative_to(self.root).as_posix()
            for filename in filenames:
                if filename.startswith("."):
                    continue  # temporary files of atomic writes in progress
                key = filename if relative_dir == "." else f"{relative_dir}/{filename}"
                keys.append(key)
        return sorted(keys)

    def list_folders(self, prefix: str = "") -> list[str]:
        base = _prefix_folder(prefix)
        folder = self.root / base if base else self.root
        if not folder.is_dir():
            return []  # a store nobody wrote to yet is empty
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def delete(self, key: str) -> None:
        with self._os_errors("delete", key):
            self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        base = _prefix_folder(prefix)
        if not base:
            raise InvalidInput("refusing to delete the whole store; name a folder")
        folder = self.root / base
        if not folder.is_dir():
            return 0
        count = len(self.list_keys(prefix))
        # Rename first so the folder disappears from listings at once, then remove at leisure.
        trash = folder.with_name(f".deleted-{folder.name}-{uuid.uuid4().hex[:8]}")
        with self._os_errors("delete", base):
            folder.rename(trash)
            shutil.rmtree(trash)
        return count

    def upload_file(self, key: str, path: str | os.PathLike[str]) -> None:
        with self._os_errors("write", key), atomic_path(self.path(key)) as tmp:
            shutil.copyfile(path, tmp)

    def download_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        source = self.path(key)
        with self._os_errors("read", key):
            if not source.is_file():
                raise FileNotFoundError(source)
            with atomic_path(path) as tmp:
                shutil.copyfile(source, tmp)
        return Path(path)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(
                f"cannot create the store folder {self.root} ({error.strerror}); "
                "choose another data folder (NOCODE_ML_DATA_DIR)"
            ) from error
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            raise StoreUnavailable(
                f"the store folder {self.root} is not a writable folder; "
                "choose another data folder (NOCODE_ML_DATA_DIR)"
            )


@register_store("s3")
class S3Store(Store):
    """A bucket and prefix in S3 or any S3-compatible service (MinIO, Ceph...) via boto3.

    Credentials come from the usual boto3 chain (environment, profile, instance role).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str = "",
        region: str = "",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as error:  # pragma: no cover - boto3 is a dependency
            raise StoreError("the S3 store needs boto3: pip install boto3") from error
        if not bucket:
            raise InvalidInput("an S3 store needs a bucket: s3://BUCKET/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.endpoint_url = endpoint_url or ""
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url or None,
            region_name=region or None,
            config=config,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _folder(self, prefix: str) -> str:
        base = _prefix_folder(prefix)
        return f"{self.prefix}/{base}" if self.prefix else base

    @contextlib.contextmanager
    def _errors(self, action: str, key: str = "") -> Iterator[None]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        where = self.uri + (f"/{key}" if key else "")
        endpoint = self.endpoint_url or "AWS S3"
        try:
            yield
        except (NoCredentialsError, PartialCredentialsError) as error:
            raise StoreUnavailable(
                f"no AWS credentials to {action} {where}; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or an AWS profile)"
            ) from error
        except (ConnectionError, HTTPClientError) as error:
            raise StoreUnavailable(
                f"cannot reach the S3 store at {endpoint} to {action} {where} ({error}); "
                "check that the server is running and NOCODE_ML_S3_ENDPOINT_URL"
            ) from error
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            message = error.response.get("Error", {}).get("Message", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyNotFound(f"{key} does not exist in the store {self.uri}") from error
            if code == "NoSuchBucket":
                raise StoreError(
                    f"the bucket {self.bucket!r} does not exist at {endpoint}; create it "
                    "or fix NOCODE_ML_STORE_URI"
                ) from error
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(
                    f"access denied to {where} ({code}); check the AWS credentials and the "
                    "bucket policy"
                ) from error
            raise StoreError(f"S3 refused to {action} {where}: {code} {message}".strip()) from error
        except BotoCoreError as error:
            raise StoreUnavailable(f"S3 error while trying to {action} {where}: {error}") from error
        except Boto3Error as error:  # e.g. S3UploadFailedError wrapping a refused request
            raise StoreError(f"S3 refused to {action} {where}: {error}") from error

    def read_bytes(self, key: str) -> bytes:
        with self._errors("read", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create_bytes(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            with self._errors("create", key):
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
                )
        except StoreError as error:
            cause = error.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "412",
                "ConditionalRequestConflict",
            ):
                return False
            raise
        return True

    def exists(self, key: str) -> bool:
        try:
            with self._errors("check", key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except KeyNotFound:
            return False
        return True

    def modified_time(self, key: str) -> datetime:
        with self._errors("check", key):
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return response["LastModified"].astimezone(UTC)

    def _paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.bucket, **kwargs)

    def list_keys(self, prefix: str = "") -> list[str]:
        folder = self._folder(prefix)
        strip = len(f"{self.prefix}/") if self.prefix else 0
        keys = []
        with self._errors("list", prefix):
            for page in self._paginate(Prefix=folder):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)

    def list_folders(self, prefix: str = "") -> list[str]:
        folder = self._folder(prefix)
        names = []
        with self._errors("list", prefix):
            for page in self._paginate(Prefix=folder, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    names.append(common["Prefix"][len(folder) :].strip("/"))
        return sorted(names)

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        if not _prefix_folder(prefix):
            raise InvalidInput("refusing to delete the whole store; name a folder")
        keys = self.list_keys(prefix)
        failed: list[dict[str, Any]] = []
        with self._errors("delete", prefix):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                failed += answer.get("Errors") or []  # per key: the request itself succeeded
        if failed:
            first = failed[0]
            raise StoreError(
                f"{len(failed)} of {len(keys)} files under {prefix} could not be deleted "
                f"({first.get('Code')}: {first.get('Message')}, e.g. {first.get('Key')}); "
                "check the bucket's permissions and delete again"
            )
        return len(keys)

    def upload_file(self, key: str, path: str | os.PathLike[str]) -> None:
        with self._errors("upload", key):
            # Managed transfer: a multipart upload becomes visible only once complete.
            self.client.upload_file(str(path), self.bucket, self._key(key))

    def download_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        with self._errors("download", key), atomic_path(path) as tmp:
            self.client.download_file(self.bucket, self._key(key), str(tmp))
        return Path(path)

    def check(self) -> None:
        with self._errors("open"):
            self.client.head_bucket(Bucket=self.bucket)


def store_from_uri(uri: str, settings: BackendSettings | None = None) -> Store:
    """Open the store a URI names: ``file:///path`` (or a plain path) or ``s3://bucket/prefix``.

    S3 endpoint, region and timeouts come from ``settings`` (default: :func:`load_settings`).
    """
    from gpu_backend.settings import load_settings

    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        if scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise InvalidInput(f"file URIs must be local (file:///path), got {uri!r}")
            path = url2pathname(unquote(parsed.path))
        else:
            path = uri
        return create_store("local", root=path)
    if scheme == "s3":
        settings = settings or load_settings()
        return create_store(
            "s3",
            bucket=parsed.netloc,
            prefix=unquote(parsed.path),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            connect_timeout_s=settings.s3_connect_timeout_s,
        )
    schemes = ", ".join(f"{s}://" for s in URI_SCHEMES)
    raise InvalidInput(f"unsupported store URI {uri!r}; use one of: {schemes}")


def open_store(settings: BackendSettings | None = None) -> Store:
    """The store the settings point at (the local data folder by default)."""
    from gpu_backend.settings import load_settings

    settings = settings or load_settings()
    return store_from_uri(settings.resolved_store_uri, settings)
