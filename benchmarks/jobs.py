"""Job system overhead: the same training run directly and as a job, as a ratio.

Baselines in the same run, alternating so that a neighbour's load hits both alike:

- ``direct process``: ``python -c "train_model(...)"`` in a fresh process, which is what
  ``nocode-ml train`` costs (interpreter, imports, training, saving);
- ``direct in-process``: ``train_model(...)`` called in this process (imports already paid);
- ``job (local)``: ``JobClient.submit_training`` with the local launcher and folder store, from
  the submit call until ``wait`` sees the final status (upload of inputs, worker start, slot,
  download, training, upload of the model, status polling);
- ``job (s3)`` with ``--s3``: the same against a ``moto_server`` S3 endpoint started here.

The training is the default U-Net on a 512² synthetic sample with a time budget of
``--minutes`` (1 by default), so every variant trains for the same wall-clock time and the
ratio measures what the job machinery adds. Also measured: submit → running latency, and the
cost of one status write (a realistic status with a full metrics history) per store.

Target (issue 6): job / direct ≤ 1.05 on a 1-minute training. Run under the heavy lock::

    flock /tmp/nocode-heavy.lock .venv/bin/python benchmarks/jobs.py --s3

Prints a table and writes JSON to ``benchmarks/results/jobs.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpu_backend.jobs import JobClient  # noqa: E402
from gpu_backend.settings import BackendSettings, load_settings  # noqa: E402
from gpu_backend.spec import (  # noqa: E402
    JobStatus,
    MetricPoint,
    ProgressSnapshot,
    new_job_id,
    parse_time,
    utc_now,
)
from gpu_backend.store import Store, open_store  # noqa: E402
from pipelines.fileio import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "jobs.json"
DIRECT_SCRIPT = """
import sys, time
from pipelines.tasks import train_model
train_model("detect", [sys.argv[1]], sys.argv[2], engine="unet", device="cpu",
            minutes=float(sys.argv[3]))
"""


def make_sample(folder: Path, size_px: int) -> Path:
    from pipelines.synthetic import generate, write_sample

    paths = write_sample(generate("particles", size_px=size_px, seed=0), folder)
    paths["truth"].unlink()
    return paths["labels"]


def run_direct_process(labels: Path, out_dir: Path, minutes: float) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", DIRECT_SCRIPT, str(labels), str(out_dir), str(minutes)],
        check=True,
        env=env,
        cwd=ROOT,
    )
    return time.perf_counter() - started


def run_direct_in_process(labels: Path, out_dir: Path, minutes: float) -> float:
    from pipelines.tasks import train_model

    started = time.perf_counter()
    train_model("detect", [labels], out_dir, engine="unet", device="cpu", minutes=minutes)
    return time.perf_counter() - started


def run_job(settings: BackendSettings, labels: Path, minutes: float) -> dict[str, float]:
    client = JobClient(settings)
    started_wall = time.time()
    started = time.perf_counter()
    status = client.submit_training(
        "detect", [labels], engine="unet", device="cpu", minutes=minutes
    )
    final = client.wait(status.job_id, poll_s=0.2)
    total_s = time.perf_counter() - started
    if final.state != "succeeded":
        raise RuntimeError(f"job {final.job_id} {final.state}: {final.error}")
    running_after_s = parse_time(final.started).timestamp() - started_wall
    compute_s = parse_time(final.finished).timestamp() - parse_time(final.started).timestamp()
    return {"total_s": total_s, "submit_to_running_s": running_after_s, "worker_s": compute_s}


def status_write_ms(store: Store, writes: int = 100) -> float:
    """Mean time of one status write with a full metrics history (what a worker writes)."""
    job_id = new_job_id()
    history = tuple(
        MetricPoint(elapsed_s=float(i), stage="train", done=i, metrics={"loss": 1.0 / (i + 1)})
        for i in range(400)
    )
    status = JobStatus(
        job_id=job_id,
        state="running",
        submitted=utc_now(),
        updated=utc_now(),
        progress=ProgressSnapshot("train", 10, 100, 0.1, 50.0, "", {"loss": 0.5}),
        metrics_history=history,
    )
    data = status.to_json()
    key = f"jobs/{job_id}/status.json"
    store.write_bytes(key, data)
    started = time.perf_counter()
    for _ in range(writes):
        store.write_bytes(key, data)
    elapsed = time.perf_counter() - started
    store.delete_prefix(f"jobs/{job_id}")
    return 1000 * elapsed / writes


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return server, endpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="training budget per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant")
    parser.add_argument("--size-px", type=int, default=512, help="synthetic image size")
    parser.add_argument("--s3", action="store_true", help="also run the job against moto S3")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    labels = make_sample(work / "sample", args.size_px)
    local = load_settings(env={}, data_dir=work / "data")
    variants: dict[str, list[float]] = {"direct process": [], "direct in-process": []}
    jobs: dict[str, list[dict[str, float]]] = {"job (local)": []}
    settings_by_variant = {"job (local)": local}
    server = None
    if args.s3:
        server, endpoint = start_moto()
        settings_by_variant["job (s3)"] = load_settings(
            env={}, data_dir=work / "data-s3", store_uri="s3://bench/lab", s3_endpoint_url=endpoint
        )
        jobs["job (s3)"] = []
    try:
        for repeat in range(args.repeats):
            out = work / f"direct-{repeat}"
            variants["direct process"].append(run_direct_process(labels, out / "p", args.minutes))
            for name, settings in settings_by_variant.items():
                jobs[name].append(run_job(settings, labels, args.minutes))
            variants["direct in-process"].append(
                run_direct_in_process(labels, out / "i", args.minutes)
            )
        write_ms = {
            name: status_write_ms(open_store(settings))
            for name, settings in settings_by_variant.items()
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait()

    baseline_s = statistics.median(variants["direct process"])
    in_process_s = statistics.median(variants["direct in-process"])
    rows: list[dict[str, Any]] = [
        {"variant": "direct process", "wall_s": baseline_s, "ratio": 1.0},
        {
            "variant": "direct in-process",
            "wall_s": in_process_s,
            "ratio": in_process_s / baseline_s,
        },
    ]
    for name, runs in jobs.items():
        total_s = statistics.median(run["total_s"] for run in runs)
        rows.append(
            {
                "variant": name,
                "wall_s": total_s,
                "ratio": total_s / baseline_s,
                "ratio_vs_in_process": total_s / in_process_s,
                "submit_to_running_s": statistics.median(r["submit_to_running_s"] for r in runs),
                "worker_s": statistics.median(r["worker_s"] for r in runs),
                "status_write_ms": write_ms[name],
            }
        )

    print(f"\nJob overhead, {args.minutes:g}-min U-Net training, {args.repeats} run(s) each")
    print(
        f"{'variant':<18} {'wall s':>8} {'÷ direct':>9} {'÷ in-proc':>10} "
        f"{'submit→run s':>13} {'status write ms':>16}"
    )
    for row in rows:
        print(
            f"{row['variant']:<18} {row['wall_s']:>8.1f} {row['ratio']:>9.3f} "
            f"{row.get('ratio_vs_in_process', float('nan')):>10.3f} "
            f"{row.get('submit_to_running_s', float('nan')):>13.2f} "
            f"{row.get('status_write_ms', float('nan')):>16.2f}"
        )
    target = all(row["ratio"] <= 1.05 for row in rows if row["variant"].startswith("job"))
    print(f"target job ÷ direct process ≤ 1.05: {'met' if target else 'NOT met'}")
    atomic_write_json(
        RESULTS,
        {
            "benchmark": "jobs",
            "minutes": args.minutes,
            "repeats": args.repeats,
            "size_px": args.size_px,
            "rows": rows,
            "runs": {**variants, **{k: v for k, v in jobs.items()}},
            "target_ratio": 1.05,
            "target_met": target,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "when": utc_now(),
        },
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
