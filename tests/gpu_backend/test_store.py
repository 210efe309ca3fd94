"""One contract suite for every store: the local folder and S3 (boto3 against moto_server)."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_backend.errors import KeyNotFound, StoreError, StoreUnavailable
from gpu_backend.store import (
    LocalStore,
    S3Store,
    Store,
    check_key,
    create_store,
    list_stores,
    store_from_uri,
)
from pipelines.errors import InvalidInput
from tests.gpu_backend.helpers import free_port


def test_registry_names_both_stores() -> None:
    assert list_stores() == ["local", "s3"]
    with pytest.raises(InvalidInput, match="unknown store 'ftp'"):
        create_store("ftp")


# ---------------------------------------------------------------- contract (both stores)
def test_write_then_read_round_trips_bytes(store: Store) -> None:
    store.write_bytes("jobs/a/status.json", b'{"state": "queued"}')
    assert store.read_bytes("jobs/a/status.json") == b'{"state": "queued"}'
    store.write_text("jobs/a/log.txt", "caf\u00e9\n")
    assert store.read_text("jobs/a/log.txt") == "caf\u00e9\n"


def test_overwrite_replaces_whole_content(store: Store) -> None:
    store.write_bytes("k/file", b"x" * 1000)
    store.write_bytes("k/file", b"short")
    assert store.read_bytes("k/file") == b"short"


def test_missing_key_raises_key_not_found(store: Store) -> None:
    with pytest.raises(KeyNotFound, match="nothing/here does not exist"):
        store.read_bytes("nothing/here")
    assert not store.exists("nothing/here")


def test_modified_time_is_the_stores_time_of_the_last_write(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)  # S3 keeps whole seconds
    store.write_bytes("jobs/a/status.json", b"{}")
    written = store.modified_time("jobs/a/status.json")
    assert before <= written <= datetime.now(UTC) + timedelta(seconds=2)
    assert written.utcoffset() == timedelta(0)
    with pytest.raises(KeyNotFound, match="nothing/here does not exist"):
        store.modified_time("nothing/here")


def test_exists_sees_files_not_folders(store: Store) -> None:
    store.write_bytes("jobs/a/inputs/x.png", b"png")
    assert store.exists("jobs/a/inputs/x.png")
    assert not store.exists("jobs/a/inputs")


def test_list_keys_is_recursive_sorted_and_scoped(store: Store) -> None:
    for key in ("jobs/b/z.txt", "jobs/a/2.txt", "jobs/a/sub/1.txt", "jobsX/other", "top"):
        store.write_bytes(key, b".")
    assert store.list_keys("jobs") == ["jobs/a/2.txt", "jobs/a/sub/1.txt", "jobs/b/z.txt"]
    assert store.list_keys("jobs/a/") == ["jobs/a/2.txt", "jobs/a/sub/1.txt"]
    assert store.list_keys("empty") == []
    assert "top" in store.list_keys()


def test_list_folders_gives_immediate_children(store: Store) -> None:
    for key in ("jobs/b/z.txt", "jobs/a/2.txt", "jobs/a/sub/1.txt", "jobs/file.txt"):
        store.write_bytes(key, b".")
    assert store.list_folders("jobs") == ["a", "b"]
    assert store.list_folders("nothing") == []


def test_delete_and_delete_prefix(store: Store) -> None:
    for key in ("jobs/a/1", "jobs/a/sub/2", "jobs/ab/3"):
        store.write_bytes(key, b".")
    store.delete("jobs/ab/3")
    store.delete("jobs/ab/3")  # missing is fine
    assert store.delete_prefix("jobs/a") == 2
    assert store.list_keys("jobs") == []
    assert store.delete_prefix("jobs/a") == 0
    with pytest.raises(InvalidInput, match="whole store"):
        store.delete_prefix("")


def test_upload_and_download_files_and_folders(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.bin").write_bytes(os.urandom(300_000))
    (source / "sub" / "b.txt").write_text("b")
    (source / ".hidden").write_text("skipped")
    keys = store.upload_folder("jobs/x/outputs", source)
    assert keys == ["jobs/x/outputs/a.bin", "jobs/x/outputs/sub/b.txt"]
    paths = store.download_folder("jobs/x/outputs", tmp_path / "dst")
    names = sorted(p.relative_to(tmp_path / "dst").as_posix() for p in paths)
    assert names == ["a.bin", "sub/b.txt"]
    assert (tmp_path / "dst" / "a.bin").read_bytes() == (source / "a.bin").read_bytes()
    with pytest.raises(KeyNotFound):
        store.download_file("jobs/x/none", tmp_path / "none")
    assert not (tmp_path / "none").exists()  # nothing half-written


def test_create_bytes_is_exclusive_under_contention(store: Store) -> None:
    winners: list[int] = []
    barrier = threading.Barrier(6)

    def contend(number: int) -> None:
        barrier.wait()
        if store.create_bytes("jobs/a/claims/attempt-1", str(number).encode()):
            winners.append(number)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.read_bytes("jobs/a/claims/attempt-1") == str(winners[0]).encode()
    assert store.list_keys("jobs/a") == ["jobs/a/claims/attempt-1"]  # no temporary left


def test_readers_never_see_partial_writes(store: Store) -> None:
    """A reader polling while a writer alternates two large values sees only whole values."""
    values = [b"a" * 400_000, b"b" * 200_000]
    store.write_bytes("jobs/a/status.json", values[0])
    stop = threading.Event()

    def writer() -> None:
        index = 0
        while not stop.is_set():
            index = 1 - index
            store.write_bytes("jobs/a/status.json", values[index])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert store.read_bytes("jobs/a/status.json") in values
    finally:
        stop.set()
        thread.join()


def test_uri_reopens_the_same_store(store: Store, backend_settings) -> None:
    store.write_bytes("jobs/a/x", b"1")
    again = store_from_uri(store.uri, backend_settings)
    assert type(again) is type(store)
    assert again.read_bytes("jobs/a/x") == b"1"


def test_check_passes_on_a_usable_store(store: Store) -> None:
    store.check()


@pytest.mark.parametrize(
    "key", ["", "/abs", "a/../b", "a//b", "a/./b", ".hidden", "a/.tmp", "a\\b"]
)
def test_unsafe_keys_are_refused(store: Store, key: str) -> None:
    with pytest.raises(InvalidInput, match="invalid store key"):
        store.write_bytes(key, b".")


# ---------------------------------------------------------------- property: safe keys round-trip
_part = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_ é"),
    min_size=1,
    max_size=12,
).filter(lambda part: not part.startswith(".") and part.strip() == part)


@settings(max_examples=40, deadline=None)
@given(parts=st.lists(_part, min_size=1, max_size=4), data=st.binary(max_size=2000))
def test_local_store_round_trips_any_safe_key(tmp_path_factory, parts, data) -> None:
    store = LocalStore(tmp_path_factory.mktemp("prop"))
    key = check_key("/".join(parts))
    store.write_bytes(key, data)
    assert store.read_bytes(key) == data
    assert store.list_keys() == [key]


# ---------------------------------------------------------------- failures
def test_local_store_without_folder_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = LocalStore(blocker / "store")
    with pytest.raises(StoreUnavailable, match="cannot create the store folder"):
        store.check()
    with pytest.raises(StoreError, match="a file is in the way"):
        store.write_bytes("jobs/a/status.json", b"{}")


def test_local_store_with_a_file_in_the_way_refuses_writes(tmp_path: Path) -> None:
    (tmp_path / "jobs").write_text("in the way")
    with pytest.raises(StoreError, match="a file is in the way"):
        LocalStore(tmp_path).write_bytes("jobs/a/status.json", b"{}")
    assert (tmp_path / "jobs").read_text() == "in the way"


def test_unreachable_s3_endpoint_is_a_clear_error(moto_endpoint: str) -> None:
    del moto_endpoint  # only for the fake credentials
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = S3Store("bucket", "p", endpoint_url=endpoint, connect_timeout_s=1.0, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"cannot reach the S3 store at http://127\.0\.0\.1"):
        store.write_bytes("jobs/a/status.json", b"{}")
    with pytest.raises(StoreUnavailable, match="NOCODE_ML_S3_ENDPOINT_URL"):
        store.check()
    assert time.monotonic() - started < 30  # fails fast instead of hanging


def test_missing_bucket_is_a_clear_error(moto_endpoint: str) -> None:
    store = S3Store("no-such-bucket-here", endpoint_url=moto_endpoint)
    with pytest.raises(StoreError, match="bucket 'no-such-bucket-here' does not exist"):
        store.write_bytes("x", b"1")


def test_s3_prefix_isolates_stores(moto_endpoint: str, s3_bucket: str) -> None:
    one = S3Store(s3_bucket, "one", endpoint_url=moto_endpoint)
    two = S3Store(s3_bucket, "two", endpoint_url=moto_endpoint)
    one.write_bytes("jobs/a/x", b"1")
    assert two.list_keys() == []
    raw = boto3.client("s3", endpoint_url=moto_endpoint).list_objects_v2(Bucket=s3_bucket)
    assert [item["Key"] for item in raw["Contents"]] == ["one/jobs/a/x"]
    assert one.uri == f"s3://{s3_bucket}/one"


def test_file_uri_and_plain_path_open_local_store(tmp_path: Path) -> None:
    assert isinstance(store_from_uri(tmp_path.as_uri()), LocalStore)
    assert store_from_uri(str(tmp_path)).root == tmp_path.resolve()
    with pytest.raises(InvalidInput, match="unsupported store URI"):
        store_from_uri("gs://bucket/x")
