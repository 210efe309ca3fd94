"""Does a wider or deeper U-Net, or longer training, lower the diameter error? Side by side.

Each (seed, variant) trains the ``unet`` engine on the crops of a ``particles`` 2048² sample for a
fixed number of steps (not a time budget, so CPU and GPU runs compare) and is scored on the same
image and on an unseen one (F1 at IoU 0.5, mean and median |D error|, bias, and the |D error| on
the training crops). A variant is ``CHANNELS:STEPS``, e.g. ``32-64-128:6000``.

Each run is its own process and several run at once: the patch sampler is single-threaded CPU
work, so on a GPU machine with many cores parallel runs keep the GPU busy. On the 2-core CI
machine use ``--parallel 1`` (a 6000-step run of the default 16-32-64 net then takes about 11
minutes, the wider nets several times longer). On a GPU::

    python benchmarks/detection_capacity.py --device cuda --parallel 8 \\
        --output benchmarks/results/detection-capacity-cuda.json

Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.detection import RESULTS, UNSEEN_SEED_OFFSET, fmt, machine_info  # noqa: E402
from pipelines.fileio import atomic_write_json  # noqa: E402

DEFAULT_VARIANTS = ("16-32-64:1500", "16-32-64:6000", "32-64-128:6000", "32-64-128-256:6000")


def run_variant(seed: int, channels: str, steps: int, device: str) -> dict[str, Any]:
    """Train one variant on ``particles`` seed ``seed`` and score it (runs in a child process)."""
    from pipelines.detection import api
    from pipelines.evaluation import evaluate_instances
    from pipelines.synthetic import generate, write_sample

    sample = generate("particles", 2048, seed)
    unseen = generate("particles", 2048, seed + UNSEEN_SEED_OFFSET)
    record: dict[str, Any] = {"seed": seed, "channels": channels, "steps": steps}
    with tempfile.TemporaryDirectory(prefix="nocode-capacity-") as tmp:
        paths = write_sample(sample, Path(tmp) / "sample")
        model_dir = Path(tmp) / "model"
        config = {
            "channels": [int(width) for width in channels.split("-")],
            "max_steps": steps,
            "train_seconds": 24 * 3600.0,  # the step count ends training, not the clock
        }
        started = time.perf_counter()
        api.train([paths["labels"]], model_dir, engine="unet", config=config, device=device)
        record["train_s"] = round(time.perf_counter() - started, 1)
        metrics = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))["metrics"]
        record["fg_threshold"] = metrics.get("fg_threshold")
        record["crop_d_error_pct"] = metrics.get("crop_mean_abs_diameter_error_pct")
        detector = api.load_detector(model_dir, device=device)
        for name, image_sample in (("same", sample), ("unseen", unseen)):
            detections = api.detect(detector, image_sample.image)
            overall = evaluate_instances(
                detections.instances, image_sample.truth, compute_ap=False
            ).overall
            record[name] = {
                "f1": round(overall.f1, 4),
                "mean_abs_d_error_pct": overall.mean_abs_diameter_error_pct,
                "median_abs_d_error_pct": overall.median_abs_diameter_error_pct,
                "d_bias_pct": overall.mean_diameter_bias_pct,
            }
    return record


def _parse_variant(text: str) -> tuple[str, int]:
    channels, _, steps = text.partition(":")
    if not steps.isdigit() or not all(part.isdigit() for part in channels.split("-")):
        raise argparse.ArgumentTypeError(f"variant {text!r} is not CHANNELS:STEPS (16-32-64:1500)")
    return channels, int(steps)


def run_all(
    seeds: list[int],
    variants: list[tuple[str, int]],
    device: str,
    parallel: int,
    on_record: Callable[[list[dict[str, Any]]], None],
) -> list[dict[str, Any]]:
    """Run every (seed, variant) in child processes, ``parallel`` at a time; ``on_record``
    sees the records so far after each run (for partial results)."""
    jobs = [(seed, channels, steps) for seed in seeds for channels, steps in variants]
    records: list[dict[str, Any]] = []
    running: list[subprocess.Popen] = []
    try:
        while jobs or running:
            while jobs and len(running) < parallel:
                seed, channels, steps = jobs.pop(0)
                command = [sys.executable, __file__, "--child", str(seed), channels, str(steps)]
                command += ["--device", device]
                running.append(
                    subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
                )
            process = running.pop(0)
            stdout, _ = process.communicate()
            if process.returncode:
                raise RuntimeError(f"{' '.join(process.args)} failed ({process.returncode})")
            records.append(json.loads(stdout.strip().splitlines()[-1]))
            print(table([records[-1]]).splitlines()[-1], flush=True)
            on_record(records)
    finally:
        for process in running:  # a failed or interrupted run stops the others
            process.kill()
            process.wait()
    return sorted(records, key=lambda r: (r["seed"], r["channels"], r["steps"]))


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table: one row per (seed, variant)."""
    lines = [
        "| seed | channels | steps | train s | crop \\|D err\\| % | F1 | \\|D err\\| % | median % "
        "| bias % | F1 unseen | \\|D err\\| % unseen |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        same, unseen = r["same"], r["unseen"]
        lines.append(
            f"| {r['seed']} | {r['channels']} | {r['steps']} | {r['train_s']:.0f} "
            f"| {fmt(r['crop_d_error_pct'], 2)} | {same['f1']:.3f} "
            f"| {fmt(same['mean_abs_d_error_pct'], 2)} | {fmt(same['median_abs_d_error_pct'], 2)} "
            f"| {fmt(same['d_bias_pct'], 2)} | {unseen['f1']:.3f} "
            f"| {fmt(unseen['mean_abs_d_error_pct'], 2)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument(
        "--variants",
        nargs="+",
        type=_parse_variant,
        default=[_parse_variant(text) for text in DEFAULT_VARIANTS],
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--output", default=str(RESULTS / "detection-capacity.json"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        seed, channels, steps = args.child
        print(json.dumps(run_variant(int(seed), channels, int(steps), args.device)), flush=True)
        return 0
    import torch

    machine = machine_info(args.device, torch.get_num_threads())
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)

    def write(records: list[dict[str, Any]]) -> None:
        command = " ".join(["python", *sys.argv])
        atomic_write_json(args.output, {"command": command, "machine": machine, "records": records})

    records = run_all(args.seeds, args.variants, args.device, max(1, args.parallel), write)
    write(records)
    print()
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
