"""``nocode-ml jobs``: submit training/prediction jobs to the job backend and follow them.

``submit`` uploads the inputs to the store and starts a worker with the launcher (``local``
subprocess by default, ``batch`` for AWS Batch, ``queue`` for a worker service); ``--wait``
follows the job with a live progress bar. Every action takes ``--store`` and ``--launcher``
to override the settings (``NOCODE_ML_STORE_URI``, ``NOCODE_ML_LAUNCHER``, settings file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nocode_ml.cli.options import parse_config_overrides

if TYPE_CHECKING:
    from gpu_backend.jobs import JobClient
    from gpu_backend.spec import JobStatus

EXIT_BY_STATE = {"succeeded": 0, "failed": 1, "cancelled": 3}


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backend")
    group.add_argument("--store", metavar="URI", help="file:///path or s3://bucket/prefix")
    group.add_argument("--launcher", help="local (default), batch or queue")
    group.add_argument("--s3-endpoint-url", metavar="URL", help="MinIO or other S3-compatible URL")
    group.add_argument("--data-dir", type=Path, help="data folder (default ~/.nocode-ml)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "jobs",
        help="run training and prediction as background jobs (local, Docker or AWS Batch)",
        description="Submit jobs to the job backend, follow, cancel and delete them.",
    )
    actions = parser.add_subparsers(dest="jobs_action", metavar="ACTION", required=True)

    submit = actions.add_parser(
        "submit",
        help="submit a training job (or a prediction job with --model)",
        description=(
            "Train a model in the background, or with --model apply one to images. Inputs "
            "are uploaded to the store, keeping their folder layout."
        ),
    )
    submit.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    submit.add_argument("--task", choices=("detect", "classify"), default="detect")
    submit.add_argument("--engine", default=None, help="engine name (default: the task's default)")
    submit.add_argument("--minutes", type=float, default=None, help="training time budget")
    submit.add_argument("--device", default="auto", help="auto (GPU if any), cpu or cuda")
    submit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an engine config field (repeatable)",
    )
    submit.add_argument(
        "--model",
        metavar="MODEL_DIR|JOB_ID",
        help="predict with this model folder, a model zip from the app, or the model of a "
        "succeeded training job",
    )
    submit.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="prediction option (repeatable), with --model",
    )
    submit.add_argument("--name", default="", help="a label shown in job lists")
    submit.add_argument("--wait", action="store_true", help="follow the job with a progress bar")
    _common(submit)
    submit.set_defaults(handler=run_submit)

    listing = actions.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--json", action="store_true", help="print JSON")
    _common(listing)
    listing.set_defaults(handler=run_list)

    status = actions.add_parser("status", help="show a job's state, progress and results")
    status.add_argument("job_id", metavar="JOB_ID")
    status.add_argument("--json", action="store_true", help="print JSON")
    _common(status)
    status.set_defaults(handler=run_status)

    cancel = actions.add_parser("cancel", help="stop a queued or running job")
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    _common(cancel)
    cancel.set_defaults(handler=run_cancel)

    logs = actions.add_parser("logs", help="print a job's log")
    logs.add_argument("job_id", metavar="JOB_ID")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until it ends")
    _common(logs)
    logs.set_defaults(handler=run_logs)

    delete = actions.add_parser("delete", help="delete a finished job with its inputs and results")
    delete.add_argument("job_id", metavar="JOB_ID")
    delete.add_argument("--force", action="store_true", help="cancel a live job first")
    _common(delete)
    delete.set_defaults(handler=run_delete)

    retry = actions.add_parser("retry", help="run a failed or cancelled job again")
    retry.add_argument("job_id", metavar="JOB_ID")
    retry.add_argument("--wait", action="store_true", help="follow the job with a progress bar")
    _common(retry)
    retry.set_defaults(handler=run_retry)

    results = actions.add_parser("results", help="list a job's result files or download them")
    results.add_argument("job_id", metavar="JOB_ID")
    results.add_argument("--out", type=Path, metavar="DIR", help="download the results here")
    _common(results)
    results.set_defaults(handler=run_results)


def make_client(args: argparse.Namespace) -> JobClient:
    """A client for the settings with the command-line overrides applied."""
    from gpu_backend.jobs import JobClient
    from gpu_backend.settings import load_settings

    settings = load_settings(
        data_dir=args.data_dir,
        store_uri=args.store,
        launcher=args.launcher,
        s3_endpoint_url=args.s3_endpoint_url,
    )
    return JobClient(settings)


def follow(client: JobClient, job_id: str, stream: Any = None) -> JobStatus:
    """Draw the job's progress until it ends; return the final status."""
    from nocode_ml.cli.progress_bar import TerminalProgress
    from pipelines.progress import Progress

    stream = stream or sys.stderr
    bar = TerminalProgress(stream)
    seen: dict[str, Any] = {"state": None, "progress": None}

    def show(status: JobStatus) -> None:
        if status.state != seen["state"]:
            seen["state"] = status.state
            if status.state == "queued":
                stream.write(f"job {job_id} queued\n")
            elif status.state == "running":
                where = status.worker.get("host", "?")
                stream.write(f"job {job_id} running on {where}\n")
            stream.flush()
        progress = status.progress
        if status.state == "running" and progress is not None and progress != seen["progress"]:
            seen["progress"] = progress
            bar(
                Progress(
                    stage=progress.stage,
                    done=progress.done,
                    total=progress.total,
                    metrics=dict(progress.metrics),
                    eta_s=progress.eta_s,
                    message=progress.message,
                )
            )

    try:
        return client.wait(job_id, poll_s=0.5, on_status=show)
    finally:
        bar.close()


def report_end(status: JobStatus) -> int:
    """Print how a job ended and return the exit code for it."""
    from pipelines.detection.tuning import weak_class_advice

    if status.state == "succeeded":
        print(f"job {status.job_id} succeeded; results:")
        for key in status.results:
            print(f"  {key}")
        numbers = {k: v for k, v in status.result_metrics.items() if isinstance(v, int | float)}
        if numbers:
            print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in numbers.items()))
        for advice in weak_class_advice(status.result_metrics.get("weak_classes")):
            print(f"warning: {advice}", file=sys.stderr)
    elif status.state == "failed":
        print(f"job {status.job_id} failed: {status.error}", file=sys.stderr)
        print(f"see `nocode-ml jobs logs {status.job_id}`", file=sys.stderr)
    else:
        print(f"job {status.job_id} {status.state}", file=sys.stderr)
    return EXIT_BY_STATE.get(status.state, 1)


def _follow_and_report(client: JobClient, job_id: str) -> int:
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running "
            f"(cancel it with `nocode-ml jobs cancel {job_id}`)",
            file=sys.stderr,
        )
        return 130
    return report_end(status)


def run_submit(args: argparse.Namespace) -> int:
    client = make_client(args)
    if args.model:
        from pipelines.artifact import opened_model

        if args.set:
            print("note: --set is ignored for prediction jobs; use --option", file=sys.stderr)
        with opened_model(args.model) as model:  # a zip is unpacked until it is uploaded
            status = client.submit_prediction(
                model,
                args.inputs,
                device=args.device,
                options=parse_config_overrides(args.option),
                name=args.name,
            )
    else:
        status = client.submit_training(
            args.task,
            args.inputs,
            engine=args.engine,
            config=parse_config_overrides(args.set),
            device=args.device,
            minutes=args.minutes,
            name=args.name,
        )
    print(status.job_id)
    print(
        f"submitted job {status.job_id} to {client.store.uri} ({client.launcher.name} launcher)",
        file=sys.stderr,
    )
    if not args.wait:
        return 0
    return _follow_and_report(client, status.job_id)


def _progress_text(status: JobStatus) -> str:
    progress = status.progress
    if status.state != "running" or progress is None:
        return ""
    count = f"{progress.done}/{progress.total}" if progress.total else str(progress.done)
    return f"{progress.stage} {count}"


def run_list(args: argparse.Namespace) -> int:
    client = make_client(args)
    records = client.list_jobs()
    if args.json:
        payload = [{"spec": r.spec.to_dict(), "status": r.status.to_dict()} for r in records]
        print(json.dumps(payload, indent=2))
        return 0
    if not records:
        print(f"no jobs in {client.store.uri}")
        return 0
    rows = [("JOB ID", "STATE", "ACTION", "TASK", "ENGINE", "PROGRESS", "SUBMITTED", "NAME")]
    for record in records:
        spec, status = record.spec, record.status
        rows.append(
            (
                spec.job_id,
                status.state,
                spec.action,
                spec.task,
                spec.engine or "default",
                _progress_text(status),
                status.submitted[:19].replace("T", " "),
                spec.name,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def run_status(args: argparse.Namespace) -> int:
    client = make_client(args)
    status = client.status(args.job_id)
    if args.json:
        payload = {
            "spec": client.spec(args.job_id).to_dict(),
            "status": status.to_dict(),
            "launch": client.describe_launch(args.job_id),
        }
        print(json.dumps(payload, indent=2))
        return 0
    spec = client.spec(args.job_id)
    lines = [
        ("job", status.job_id),
        ("state", status.state + (" (cancel requested)" if status.cancel_requested else "")),
        ("action", f"{spec.action} {spec.task} ({spec.engine or 'default engine'})"),
        ("name", spec.name),
        ("attempt", str(status.attempt)),
        ("submitted", status.submitted),
        ("started", status.started or ""),
        ("finished", status.finished or ""),
        ("heartbeat", status.heartbeat or ""),
        ("worker", ", ".join(f"{k}={v}" for k, v in status.worker.items())),
    ]
    if status.progress is not None:
        progress = status.progress
        eta = f", ETA {progress.eta_s:.0f} s" if progress.eta_s is not None else ""
        lines.append(("progress", f"{_progress_text(status) or progress.stage}{eta}"))
        if progress.metrics:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in progress.metrics.items())
            lines.append(("metrics", metrics))
    if status.error:
        lines.append(("error", status.error))
    for key in status.results:
        lines.append(("result", key))
    for label, value in lines:
        if value:
            print(f"{label + ':':<11}{value}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    client = make_client(args)
    status = client.cancel(args.job_id)
    if not status.is_terminal:
        print(f"cancel requested for job {args.job_id}; it stops at its next step")
        if not args.wait:
            return 0
        status = client.wait(args.job_id)
    print(f"job {args.job_id} is {status.state}")
    # with --wait, the exit code tells the end, as for submit: it may have finished first
    return EXIT_BY_STATE.get(status.state, 1) if args.wait else 0


def run_logs(args: argparse.Namespace) -> int:
    client = make_client(args)
    printed = 0
    while True:
        text = client.log(args.job_id)
        if text[printed:]:
            sys.stdout.write(text[printed:])
            sys.stdout.flush()
            printed = len(text)
        if not args.follow or client.status(args.job_id).is_terminal:
            if args.follow:  # the final lines arrive with the final status
                sys.stdout.write(client.log(args.job_id)[printed:])
            return 0
        time.sleep(1.0)


def run_delete(args: argparse.Namespace) -> int:
    client = make_client(args)
    client.delete(args.job_id, force=args.force)
    print(f"deleted job {args.job_id}")
    return 0


def run_retry(args: argparse.Namespace) -> int:
    client = make_client(args)
    status = client.retry(args.job_id)
    print(f"job {status.job_id} queued again (attempt {status.attempt})", file=sys.stderr)
    if not args.wait:
        return 0
    return _follow_and_report(client, status.job_id)


def run_results(args: argparse.Namespace) -> int:
    client = make_client(args)
    if args.out is None:
        for key in client.results(args.job_id):
            print(key)
        return 0
    paths = client.download_results(args.job_id, args.out)
    print(f"downloaded {len(paths)} file(s) to {args.out}")
    return 0
