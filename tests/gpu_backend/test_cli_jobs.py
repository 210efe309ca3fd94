"""``nocode-ml jobs ...``: the CLI over the job backend, with real worker subprocesses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nocode_ml.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_submit_wait_then_list_status_logs_results_delete(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, detection_sample: dict[str, Path]
) -> None:
    backend = ["--data-dir", str(tmp_path / "data")]
    code, out, err = run_cli(
        capsys,
        "jobs",
        "submit",
        str(detection_sample["labels"]),
        "--engine",
        "unet",
        "--device",
        "cpu",
        "--set",
        "channels=[4, 8]",
        "--set",
        "patch_px=32",
        "--set",
        "batch_size=2",
        "--set",
        "max_steps=0",
        "--set",
        "train_seconds=3",
        "--set",
        "tune_postprocessing=false",
        "--name",
        "first try",
        "--wait",
        *backend,
    )
    assert code == 0, err
    job_id = out.splitlines()[0]
    assert f"job {job_id} succeeded" in out
    assert "outputs/model/model.json" in out
    assert f"job {job_id} running on" in err
    assert "train" in err and "[" in err  # the progress bar

    code, out, _ = run_cli(capsys, "jobs", "list", *backend)
    assert code == 0
    assert job_id in out and "succeeded" in out and "first try" in out

    code, out, _ = run_cli(capsys, "jobs", "status", job_id, "--json", *backend)
    payload = json.loads(out)
    assert payload["status"]["state"] == "succeeded"
    assert payload["spec"]["config"]["channels"] == [4, 8]
    assert payload["launch"]["launcher"] == "local"

    code, out, _ = run_cli(capsys, "jobs", "status", job_id, *backend)
    assert "state:" in out and "result:" in out

    code, out, _ = run_cli(capsys, "jobs", "logs", job_id, *backend)
    assert "job succeeded" in out

    out_dir = str(tmp_path / "r")
    code, out, _ = run_cli(capsys, "jobs", "results", job_id, "--out", out_dir, *backend)
    assert code == 0
    assert (tmp_path / "r" / "model" / "model.json").is_file()

    assert run_cli(capsys, "jobs", "delete", job_id, *backend)[0] == 0
    code, _, err = run_cli(capsys, "jobs", "status", job_id, *backend)
    assert code == 2
    assert f"no job {job_id}" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engine", "bogus"], "unknown detection engine 'bogus'"),
        (["--set", "bogus=1"], "engine 'unet' has no setting(s) bogus"),
        (["--model", "MODEL", "--option", "bogus=1"], "unknown prediction option(s) bogus"),
        (["--model", "MODEL", "EMPTY"], "holds no supported image"),
    ],
)
def test_submit_refuses_what_the_job_would_fail_on(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    detection_sample: dict[str, Path],
    args: list[str],
    message: str,
) -> None:
    """A typing mistake is one line at once, not a failed job minutes later."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(
        json.dumps({"task": "detect", "engine": "unet", "config": {}, "classes": ["particle"]})
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    names = {"MODEL": str(model), "EMPTY": str(empty)}
    args = [names.get(a, a) for a in args]
    inputs = [a for a in args if a == str(empty)] or [str(detection_sample["labels"])]
    options = [a for a in args if a != str(empty)]
    data = tmp_path / "data"
    code, out, err = run_cli(capsys, "jobs", "submit", *inputs, *options, "--data-dir", str(data))
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not list(data.glob("**/job.json"))


def test_failed_job_exits_1_and_retry_can_follow_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, detection_sample: dict[str, Path]
) -> None:
    backend = ["--data-dir", str(tmp_path / "data")]
    labels = tmp_path / "broken" / detection_sample["labels"].name
    labels.parent.mkdir()
    shutil.copy(detection_sample["labels"], labels)
    image = labels.parent / detection_sample["image"].name
    image.write_bytes(detection_sample["image"].read_bytes()[:200])  # cut off: fails on load
    code, out, err = run_cli(capsys, "jobs", "submit", str(labels), "--wait", *backend)
    job_id = out.splitlines()[0]
    assert code == 1
    assert f"job {job_id} failed:" in err
    assert "copy the file again from its source" in err
    code, _, err = run_cli(capsys, "jobs", "retry", job_id, "--wait", *backend)
    assert code == 1
    assert "queued again (attempt 2)" in err


def test_cancel_a_queued_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, detection_sample: dict[str, Path]
) -> None:
    backend = ["--data-dir", str(tmp_path / "data"), "--launcher", "queue"]
    code, out, _ = run_cli(capsys, "jobs", "submit", str(detection_sample["labels"]), *backend)
    job_id = out.splitlines()[0]
    code, out, _ = run_cli(capsys, "jobs", "cancel", job_id, *backend)
    assert code == 0
    assert f"job {job_id} is cancelled" in out
    code, out, _ = run_cli(capsys, "jobs", "cancel", job_id, "--wait", *backend)
    assert code == 3  # --wait: the exit code of the end state, as for submit
    assert f"job {job_id} is cancelled" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "nope"], "'nope' is not a job id"),
        (["submit", "/no/such/labels.json"], "does not exist"),
        (["list", "--launcher", "teleport"], "unknown launcher 'teleport'"),
        (["list", "--store", "ftp://x"], "unsupported store URI"),
    ],
)
def test_user_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = run_cli(capsys, "jobs", *args, "--data-dir", str(tmp_path))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_finished_training_warns_about_a_class_found_poorly_on_its_crops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gpu_backend.spec import JobStatus
    from nocode_ml.cli.jobs import report_end

    status = JobStatus(
        job_id="j1",
        state="succeeded",
        submitted="2026-11-26T00:00:00Z",
        updated="2026-11-26T00:03:00Z",
        results=("outputs/model/model.json",),
        result_metrics={"crop_f1": 0.09, "weak_classes": {"single_site": 0.01}},
    )
    assert report_end(status) == 0
    captured = capsys.readouterr()
    assert "metrics: crop_f1=0.09" in captured.out  # the dict is not a number to print
    assert captured.err.startswith("warning: “single_site” is found at F1 0.01 on your own crops")


def test_submit_takes_the_model_zip_the_app_downloads(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, detection_sample: dict[str, Path]
) -> None:
    import zipfile

    from gpu_backend.jobs import JobClient
    from gpu_backend.settings import BackendSettings

    archive = tmp_path / "model_abc.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(
            "model.json",
            json.dumps({"task": "detect", "engine": "unet", "config": {}, "classes": ["p"]}),
        )
        zipped.writestr("weights.pt", b"weights")
    data = tmp_path / "data"
    backend = ["--data-dir", str(data), "--launcher", "queue"]
    image = detection_sample["image"]
    code, out, _ = run_cli(capsys, "jobs", "submit", "--model", str(archive), str(image), *backend)
    assert code == 0
    client = JobClient(BackendSettings(data_dir=data), launcher="queue")
    keys = {item.key for item in client.spec(out.splitlines()[0]).inputs}
    assert {"model/model.json", "model/weights.pt"} <= keys
