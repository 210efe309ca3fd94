"""Job spec and status files: round trips, validation messages, the state machine."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_backend.errors import InvalidJobSpec
from gpu_backend.spec import (
    InputFile,
    JobSpec,
    JobStatus,
    MetricPoint,
    check_job_id,
    job_uri,
    new_job_id,
    split_job_uri,
    thin_history,
    utc_now,
)
from pipelines.errors import InvalidInput


def make_spec(**changes) -> JobSpec:
    values = {
        "job_id": new_job_id(),
        "action": "train",
        "task": "detect",
        "inputs": (InputFile("inputs/a/labels.json", "0" * 64, 10),),
        "input_roots": ("inputs/a/labels.json",),
        "engine": "unet",
        "config": {"max_steps": 3, "channels": [4, 8]},
        "minutes": 1.5,
        **changes,
    }
    return JobSpec(**values)


def test_job_ids_are_sortable_and_checked() -> None:
    first = new_job_id()
    assert check_job_id(first) == first
    with pytest.raises(InvalidInput, match="is not a job id"):
        check_job_id("../../etc")


@pytest.mark.parametrize(
    "store_uri", ["file:///data/nocode-ml", "file:///", "s3://bucket/lab/nocode", "s3://bucket"]
)
def test_job_uri_round_trips(store_uri: str) -> None:
    job_id = new_job_id()
    uri = job_uri(store_uri, job_id)
    assert uri.endswith(f"/jobs/{job_id}")
    assert split_job_uri(uri) == (store_uri, job_id)


@pytest.mark.parametrize("uri", ["s3://bucket/x", "file:///data/jobs/not-an-id", "jobs/x"])
def test_bad_job_uri_is_explained(uri: str) -> None:
    with pytest.raises(InvalidInput, match="is not a job URI"):
        split_job_uri(uri)


def test_spec_round_trips_through_json() -> None:
    spec = make_spec()
    assert JobSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"action": "explode"}, "action must be one of"),
        ({"task": "segment"}, "task must be one of"),
        ({"device": "gpu0"}, "device must be auto, cpu, cuda"),
        ({"minutes": 0}, "minutes must be positive"),
        ({"input_roots": ()}, "the job has no inputs"),
        ({"input_roots": ("../secret",)}, "outside inputs/"),
        ({"action": "predict"}, "a predict job needs a model"),
    ],
)
def test_spec_validation_names_the_field(changes: dict, message: str) -> None:
    with pytest.raises(InvalidJobSpec, match=message):
        make_spec(**changes)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not UTF-8"),
        (b"[1, 2]", "must hold a JSON object"),
        (b'{"job_id": "20261125-203000-a1b2c3"}', "lacks 'inputs'"),
    ],
)
def test_corrupt_spec_gives_one_line_message(data: bytes, message: str) -> None:
    with pytest.raises(InvalidJobSpec, match=message) as caught:
        JobSpec.from_json(data, "job spec jobs/x/job.json")
    assert "\n" not in str(caught.value)
    assert "submit the job again" in str(caught.value)


def test_newer_format_asks_for_an_update() -> None:
    raw = json.loads(make_spec().to_json())
    raw["format_version"] = 99
    with pytest.raises(InvalidJobSpec, match="update nocode-ml on the worker"):
        JobSpec.from_dict(raw)


def test_status_round_trips_and_follows_the_state_machine() -> None:
    now = utc_now()
    status = JobStatus(job_id=new_job_id(), state="queued", submitted=now, updated=now)
    running = status.with_state("running", started=utc_now())
    done = running.with_state("succeeded", results=("outputs/model/model.json",))
    assert JobStatus.from_json(done.to_json()) == done
    assert done.is_terminal
    with pytest.raises(InvalidInput, match="cannot go from succeeded to running"):
        done.with_state("running")
    assert running.with_state("failed").with_state("queued").state == "queued"


def test_unknown_state_is_refused() -> None:
    with pytest.raises(InvalidJobSpec, match="unknown state 'paused'"):
        JobStatus(job_id=new_job_id(), state="paused", submitted="", updated="")


@settings(max_examples=30, deadline=None)
@given(count=st.integers(min_value=0, max_value=1200), limit=st.integers(10, 300))
def test_history_stays_bounded_and_keeps_the_newest(count: int, limit: int) -> None:
    history: tuple[MetricPoint, ...] = ()
    for step in range(count):
        point = MetricPoint(elapsed_s=float(step), stage="train", done=step, metrics={"loss": 1.0})
        history = thin_history((*history, point), limit)
        assert len(history) <= limit
    if count:
        assert history[-1].done == count - 1
        assert history[0].done == 0
        assert [p.done for p in history] == sorted(p.done for p in history)
