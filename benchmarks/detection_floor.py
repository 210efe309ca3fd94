"""How far below today's errors can the default engine go on these images? Upper bounds.

For each ``SCENARIO:SEED:VARIANT`` case the default ``unet`` engine trains with its default
budget and is scored on the same 2048² image and on an unseen one (F1 at IoU 0.5 per class,
mean and median |D error|, bias), as in ``benchmarks/detection.py``. Variants:

* ``crops``: the user's few crops, as the product is used (the baseline);
* ``all``: every object of the image outlined and the whole image labelled — ~650 particles
  instead of ~40, an upper bound for what more labels can give;
* ``clean``: the crops of an image made without the carbon support's texture and with 33× the
  electron dose (read noise 0.5 counts) — what is left when the image itself is nearly clean.

Why: if ``all`` stays near ``crops``, the error is not for want of labels; if only ``clean``
moves, it comes from the image (noise and support texture at the particle rim), not the engine.
Run under the heavy-job lock (each case trains for ~3 minutes on the 2-core CPU)::

    flock /tmp/nocode-heavy.lock .venv/bin/python benchmarks/detection_floor.py

Prints a Markdown table and writes JSON to ``benchmarks/results/detection-floor.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.detection import (  # noqa: E402
    RESULTS,
    SCORE_HEADER,
    SCORE_RULE,
    UNSEEN_SEED_OFFSET,
    machine_info,
    run_recorded,
    score_cells,
    score_rows,
    train_steps_of,
)

VARIANTS = ("crops", "all", "clean")
# The image without the support's fine texture and with 33x the dose (particles: 30 counts).
CLEAN_IMAGE = {"texture_amplitude": 0.0, "dose_counts": 1000.0, "read_noise_counts": 0.5}
DEFAULT_CASES = (
    "particles:0:crops",
    "particles:0:all",
    "particles:0:clean",
    "particles+sites:1:crops",
    "particles+sites:1:all",
    "uneven:0:crops",
    "uneven:0:all",
)


def parse_case(text: str) -> tuple[str, int, str]:
    """``SCENARIO:SEED:VARIANT`` -> its parts (the scenario name may not hold a colon)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in VARIANTS:
        raise argparse.ArgumentTypeError(
            f"case {text!r} must be SCENARIO:SEED:VARIANT with VARIANT one of {', '.join(VARIANTS)}"
        )
    return parts[0], int(parts[1]), parts[2]


def run_case(
    scenario: str,
    seed: int,
    variant: str,
    work: Path,
    size_px: int = 2048,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the default engine (``config`` overrides its settings; tests shrink it) on one
    case's labels and score it on two images."""
    from pipelines.detection import api
    from pipelines.evaluation import evaluate_instances
    from pipelines.synthetic import generate, write_sample

    overrides = CLEAN_IMAGE if variant == "clean" else {}
    sample = generate(scenario, size_px, seed, **overrides)
    paths = write_sample(sample, work / f"{scenario}-{seed}-{variant}")
    labels = paths["truth"] if variant == "all" else paths["labels"]
    model_dir = work / f"model-{scenario}-{seed}-{variant}"
    started = time.perf_counter()
    api.train([labels], model_dir, config=config)
    train_s = time.perf_counter() - started
    detector = api.load_detector(model_dir)
    record: dict[str, Any] = {
        "scenario": scenario,
        "seed": seed,
        "variant": variant,
        "image_overrides": overrides,
        "labelled_objects": sample.truth.count if variant == "all" else sample.labelled_count,
        "train_s": round(train_s, 1),
        "train_steps": train_steps_of(model_dir),
    }
    unseen = generate(scenario, size_px, seed + UNSEEN_SEED_OFFSET, **overrides)
    for name, image_sample in (("same", sample), ("unseen", unseen)):
        detections = api.detect(detector, image_sample.image)
        result = evaluate_instances(detections.instances, image_sample.truth, compute_ap=False)
        record[name] = score_rows(result)
    return record


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table: one row per case, the same image then the unseen one."""
    lines = [
        "| scenario | seed | labels / image | labelled | train steps " + SCORE_HEADER,
        "|---|---|---|---|---|" + SCORE_RULE,
    ]
    for r in records:
        lines.append(
            f"| {r['scenario']} | {r['seed']} | {r['variant']} | {r['labelled_objects']} "
            f"| {r['train_steps']} " + score_cells(r["same"], r["unseen"], digits=2)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        type=parse_case,
        default=[parse_case(case) for case in DEFAULT_CASES],
        help="SCENARIO:SEED:VARIANT, VARIANT one of " + ", ".join(VARIANTS),
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--output", default=str(RESULTS / "detection-floor.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    output: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info("cpu", args.threads),
        "clean_image": CLEAN_IMAGE,
        "records": [],
    }
    run_recorded(
        args.cases,
        lambda case, work: run_case(*case, work),
        table,
        output,
        args.output,
        "nocode-floor-",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
