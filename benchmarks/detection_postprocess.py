"""The steps after the watershed for classes of few labels or few pixels, with and without.

For each case the default ``unet`` engine trains once on a 2048² sample's crops; the trained
model then finds objects on the same image and on an unseen one four times:

- ``default``: as trained, with its fragment merging (``WatershedParams.merge_classes``, for
  classes with few labelled examples) and its core shares (``WatershedParams.core_shares``,
  for classes of objects a few pixels wide);
- ``not_merged``: merging switched off and the thresholds and core shares tuned on the crops
  again without it, as training without merging would have tuned them;
- ``not_trimmed``: the trained thresholds with every core share 0 (shares are tuned after
  the thresholds, so these are the thresholds training without them would pick);
- ``not_turned``: each tile's maps from one pass instead of the mean with its 180° turn
  (``UNetConfig.test_time_turn``), thresholds and core shares tuned on the crops again so.

The network is the same, so each difference is that step alone. Cases are
``particles+sites`` seeds (1–3 labelled particles beside ~30 single atoms) and, with
``--touching``, the same scenario with ~34 particles of which 30 % touch in pairs — where
joining could wrongly merge neighbours. Run under the heavy-job lock (~4 min a case)::

    flock /tmp/nocode-heavy.lock .venv/bin/python benchmarks/detection_postprocess.py --touching

Prints a Markdown table and writes JSON to ``benchmarks/results/detection-postprocess.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.detection import (  # noqa: E402
    RESULTS,
    UNSEEN_SEED_OFFSET,
    fmt,
    machine_info,
    run_recorded,
    score_rows,
    train_steps_of,
)

SCENARIO = "particles+sites"
TOUCHING = {"particles_per_mpx": 8.0, "pair_fraction": 0.3}


def run_case(
    seed: int,
    overrides: dict[str, Any],
    work: Path,
    size_px: int = 2048,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train once; score the same model as trained, without merging and without trimming."""
    from pipelines.detection import api
    from pipelines.detection.api import load_training_set
    from pipelines.detection.base import TrainContext
    from pipelines.detection.tuning import tune_postprocessing
    from pipelines.evaluation import evaluate_instances
    from pipelines.synthetic import generate, write_sample

    sample = generate(SCENARIO, size_px, seed, **overrides)
    paths = write_sample(sample, work / f"sample-{seed}-{len(overrides)}")
    model_dir = work / f"model-{seed}-{len(overrides)}"
    api.train([paths["labels"]], model_dir, config=config)
    detector = api.load_detector(model_dir)
    trained = detector.params
    detector.params = dataclasses.replace(trained, merge_classes=())
    modes = {
        "default": trained,
        "not_merged": tune_postprocessing(
            detector, load_training_set([paths["labels"]]), TrainContext()
        )[0],
        "not_trimmed": dataclasses.replace(trained, core_shares=()),
    }
    detector.params = trained
    as_trained = detector.test_time_turn
    detector.test_time_turn = False
    modes["not_turned"] = tune_postprocessing(
        detector, load_training_set([paths["labels"]]), TrainContext()
    )[0]
    turned = {mode: as_trained and mode != "not_turned" for mode in modes}
    record: dict[str, Any] = {
        "seed": seed,
        "image_overrides": overrides,
        "labelled": {
            name: [shape.label for shape in sample.user_labels.object_shapes].count(name)
            for name in sample.truth.class_names
        },
        "true": {
            name: int((sample.truth.class_ids == index).sum())
            for index, name in enumerate(sample.truth.class_names, start=1)
        },
        "merge_classes": list(trained.merge_classes),
        "core_shares": list(trained.core_shares),
        "thresholds": {
            mode: [params.fg_threshold, params.core_threshold, params.marker_h]
            for mode, params in modes.items()
        },
        "mode_core_shares": {mode: list(params.core_shares) for mode, params in modes.items()},
        "train_steps": train_steps_of(model_dir),
    }
    unseen = generate(SCENARIO, size_px, seed + UNSEEN_SEED_OFFSET, **overrides)
    for name, image_sample in (("same", sample), ("unseen", unseen)):
        for mode, params in modes.items():
            detector.params, detector.test_time_turn = params, turned[mode]
            detections = api.detect(detector, image_sample.image)
            result = evaluate_instances(detections.instances, image_sample.truth, compute_ap=False)
            record[f"{name}_{mode}"] = score_rows(result)
    return record


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table: particle and site F1 and |D error| % in each mode, per image."""
    lines = [
        "| seed | particles | labelled particles | image | F1 particle default | not merged "
        "| not turned | particle \\|D err\\| % default | not turned "
        "| F1 site default | not merged | not trimmed | not turned "
        "| site \\|D err\\| % default | not trimmed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for image in ("same", "unseen"):
            default, plain = r[f"{image}_default"], r[f"{image}_not_merged"]
            whole = r[f"{image}_not_trimmed"]
            once = r.get(f"{image}_not_turned")  # records made before the turn have none
            once_particle = once["particle"] if once else {}
            once_site = once["single_site"] if once else {}
            lines.append(
                f"| {r['seed']} | {r['true']['particle']} | {r['labelled']['particle']} "
                f"| {image} | {fmt(default['particle']['f1'])} | {fmt(plain['particle']['f1'])} "
                f"| {fmt(once_particle.get('f1'))} "
                f"| {fmt(default['particle']['mean_abs_d_error_pct'], 1)} "
                f"| {fmt(once_particle.get('mean_abs_d_error_pct'), 1)} "
                f"| {fmt(default['single_site']['f1'])} | {fmt(plain['single_site']['f1'])} "
                f"| {fmt(whole['single_site']['f1'])} | {fmt(once_site.get('f1'))} "
                f"| {fmt(default['single_site']['mean_abs_d_error_pct'], 1)} "
                f"| {fmt(whole['single_site']['mean_abs_d_error_pct'], 1)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument(
        "--touching", nargs="*", type=int, default=None, help="also these seeds with touching pairs"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--output", default=str(RESULTS / "detection-postprocess.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    cases = [(seed, {}) for seed in args.seeds]
    if args.touching is not None:
        cases += [(seed, TOUCHING) for seed in (args.touching or [0, 1])]
    output: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info("cpu", args.threads),
        "records": [],
    }
    run_recorded(
        cases,
        lambda case, work: run_case(case[0], case[1], work),
        table,
        output,
        args.output,
        "nocode-postprocess-",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
