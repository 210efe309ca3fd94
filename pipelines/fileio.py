"""Atomic writes and hashing: every file we produce goes through here.

A write either leaves the complete new file or no change at all, so an interrupted job or a
failing export never leaves a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from pipelines.errors import InvalidInput

_FILE_MODE = 0o644


def check_folder_target(path: str | os.PathLike[str]) -> Path:
    """Raise before any work if ``path`` cannot become a folder (it, or a parent, is a file)."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{target} is a file, not a folder; give a folder name")
    _check_parents(target)
    return target


def check_file_target(path: str | os.PathLike[str], example: str = "results.csv") -> Path:
    """Raise before any work if ``path`` cannot be written as a file (a folder is in its way)."""
    target = Path(path)
    if target.is_dir():
        raise InvalidInput(f"{target} is a folder; give a file name such as {example}")
    _check_parents(target)
    return target


def _check_parents(target: Path) -> None:
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInput(f"cannot create {target}: {parent} is a file, not a folder")
            return


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Use it for writers that want a file name (``tifffile.imwrite``, ``DataFrame.to_excel``).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file, then rename it onto ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any, indent: int | None = 2) -> Path:
    """Serialise ``data`` first, then write it atomically (a serialisation error writes nothing)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def sha256_text(text: str) -> str:
    """Hex SHA-256 of ``text`` as ``atomic_write_text`` writes it (UTF-8), so it matches
    ``sha256_file`` of the written file."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so large images do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Place ``source`` at ``target`` as a hard link (free) or, across file systems, a copy.

    Used to make an output folder self-contained (a LabelMe JSON beside its image) without
    doubling the disk use of large micrographs. An existing ``target`` that already is
    ``source`` is left alone; anything else there is replaced atomically.
    """
    import shutil

    source, target = Path(source), Path(target)
    if target.exists() and os.path.samefile(source, target):
        return target
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return target


_ZIP_UTF8_FLAG = 0x800


def repair_zip_names(archive: zipfile.ZipFile) -> zipfile.ZipFile:
    """Give the members of ``archive`` the names their makers meant (in place).

    macOS's "Compress" and some Windows tools write UTF-8 names without setting the zip's
    UTF-8 flag, so Python reads them as cp437: "Sphères" becomes "Sph├¿res", and a class
    named after the folder is garbled everywhere. Such names are decoded again as UTF-8 where
    that works, and every name is put in NFC form (macOS writes accents decomposed).
    """
    for info in archive.infolist():
        name = info.filename
        if not info.flag_bits & _ZIP_UTF8_FLAG and not name.isascii():
            with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                name = name.encode("cp437").decode("utf-8")
        info.filename = unicodedata.normalize("NFC", name)
    archive.NameToInfo = {info.filename: info for info in archive.infolist()}
    return archive


def extract_zip(path: Path, target: Path, max_bytes: int, what: str = "a zip file") -> Path:
    """Unpack the zip ``path`` into the new folder ``target`` and return ``target``.

    Names are repaired (:func:`repair_zip_names`); a member that would land outside
    ``target`` (an absolute path, ``..``) or more than ``max_bytes`` unpacked (a zip bomb) is
    refused with one line, as is a damaged zip or a full disk. ``what`` names the expected
    content in messages ("a model zip").
    """
    target.mkdir(parents=True)
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in repair_zip_names(archive).infolist() if not m.is_dir()]
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise InvalidInput(
                    f"{path.name} unpacks to {total / 1024**3:.1f} GiB; the limit is "
                    f"{max_bytes / 1024**3:.0f} GiB for {what}"
                )
            for member in members:
                if (
                    PurePosixPath(member.filename).is_absolute()
                    or ".." in Path(member.filename).parts
                ):
                    raise InvalidInput(f"{path.name} holds a file outside its folder; refused")
            archive.extractall(target)
    except (zipfile.BadZipFile, EOFError) as error:
        raise InvalidInput(f"{path.name} is not a readable zip file ({error})") from error
    except OSError as error:  # disk full, no permission in the temporary folder
        raise InvalidInput(
            f"cannot unpack {path.name} ({error.strerror or error}); free some disk space or "
            "unzip it yourself"
        ) from error
    return target
