"""Peer baselines side by side: ilastik-style random forest and StarDist, trained from scratch.

For each (scenario, seed, peer): generate a sample, train on its user labels (the crops only),
segment the same whole image and an unseen image of the same scenario (seed + 1000, as in
``benchmarks/detection.py``, so rows line up with our engines), and score instances at IoU 0.5
with :mod:`pipelines.evaluation`: per-class F1, mean |D error| % and bias. "held-out" scores the
same image outside the training crops. Results accumulate in ``benchmarks/results/peers.json``
(a rerun replaces the rows of the cases it ran). Run under the heavy-job lock::

    flock /tmp/nocode-heavy.lock .venv/bin/python benchmarks/peer_comparison.py \
        --scenarios particles particles+sites agglomerates uneven brightfield \
        --seeds 0 --size 2048 --peers rf stardist --stardist-seconds 180
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import peers  # noqa: E402
from benchmarks.detection import RESULTS, UNSEEN_SEED_OFFSET, fmt  # noqa: E402
from pipelines.evaluation import evaluate_instances, region_mask  # noqa: E402
from pipelines.fileio import atomic_write_json  # noqa: E402
from pipelines.formats.masks import InstanceMasks  # noqa: E402
from pipelines.synthetic import generate  # noqa: E402

log = logging.getLogger("benchmarks.peer_comparison")


def _scores(pred: InstanceMasks, truth: InstanceMasks, scores: np.ndarray) -> dict[str, Any]:
    result = evaluate_instances(pred, truth, pred_scores=scores, compute_ap=False)
    rows = {"all": result.overall, **{row.class_name: row for row in result.per_class}}
    return {
        name: {
            "f1": row.f1,
            "precision": row.precision,
            "recall": row.recall,
            "true": row.true_count,
            "predicted": row.predicted_count,
            "mean_abs_d_error_pct": row.mean_abs_diameter_error_pct,
            "d_bias_pct": row.mean_diameter_bias_pct,
        }
        for name, row in rows.items()
    }


def _outside(masks: InstanceMasks, keep: np.ndarray) -> InstanceMasks:
    return InstanceMasks(np.where(keep, masks.labels, 0), masks.class_ids, masks.class_names)


def run_case(
    scenario: str, seed: int, peer_name: str, size_px: int, stardist_seconds: float, work: Path
) -> dict[str, Any]:
    """Train one peer on one sample's crops; score on the same and on an unseen image."""
    sample = generate(scenario, size_px, seed)
    unseen = generate(scenario, size_px, seed + UNSEEN_SEED_OFFSET)
    started = time.perf_counter()
    if peer_name == "rf":
        peer: Any = peers.fit_rf(
            sample.image, [sample.user_labels], peers.RandomForestConfig(seed=seed)
        )
        details: dict[str, Any] = {
            "timings_s": peer.timings_s,
            "split": {name: vars(params) for name, params in peer.split.items()},
            "boundary_class": peer.has_boundary,
        }
    else:
        config = peers.StarDistConfig(seed=seed, train_seconds=stardist_seconds)
        model_dir = work / f"stardist-{scenario}-{seed}"
        peer = peers.fit_stardist(sample.image, [sample.user_labels], model_dir, config)
        details = {"worker": peer.info}
    train_s = time.perf_counter() - started
    record: dict[str, Any] = {
        "scenario": scenario,
        "seed": seed,
        "engine": peer_name,
        "size_px": size_px,
        "labelled_objects": sample.labelled_count,
        "true_objects": sample.truth.count,
        "train_s": round(train_s, 1),
        "details": details,
    }
    images = [sample.image, unseen.image]
    started = time.perf_counter()
    if peer_name == "stardist":
        predictions = peer.predict_many(images)  # one TensorFlow start for both images
        worker_images = peer.timings_s.get("last_predict_worker")
        infer_each = [round((time.perf_counter() - started) / 2, 2)] * 2
        record["details"]["predict_worker_s"] = worker_images
    else:
        predictions, infer_each = [], []
        for image in images:
            image_started = time.perf_counter()
            predictions.append(peer.predict(image))
            infer_each.append(round(time.perf_counter() - image_started, 2))
    outside = region_mask(size_px, size_px, None, sample.crop_boxes)
    (same, same_scores), (other, other_scores) = predictions
    record["same"] = {"infer_s": infer_each[0], "scores": _scores(same, sample.truth, same_scores)}
    record["held_out"] = {
        "scores": _scores(_outside(same, outside), _outside(sample.truth, outside), same_scores)
    }
    record["unseen"] = {
        "infer_s": infer_each[1],
        "scores": _scores(other, unseen.truth, other_scores),
    }
    return record


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table, one row per (scenario, seed, peer, class)."""
    lines = [
        "| scenario | seed | peer | class | train s | infer s | F1 same | F1 held-out "
        "| F1 unseen | |D err| % | D bias % | |D err| % unseen | D bias % unseen |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        classes = [k for k in r["same"]["scores"] if k != "all"]
        for name in classes:
            same = r["same"]["scores"][name]
            held = r["held_out"]["scores"].get(name, {})
            other = r["unseen"]["scores"].get(name, {})
            lines.append(
                f"| {r['scenario']} | {r['seed']} | {r['engine']} | {name} | {r['train_s']:.0f} "
                f"| {r['same']['infer_s']:.1f} | {fmt(same['f1'])} | {fmt(held.get('f1'))} "
                f"| {fmt(other.get('f1'))} | {fmt(same['mean_abs_d_error_pct'], 1)} "
                f"| {fmt(same['d_bias_pct'], 1)} | {fmt(other.get('mean_abs_d_error_pct'), 1)} "
                f"| {fmt(other.get('d_bias_pct'), 1)} |"
            )
    return "\n".join(lines)


def _merge(path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Earlier rows of other cases kept; rows of the cases just run replaced."""
    import json

    old: list[dict[str, Any]] = []
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8")).get("records", [])
    ran = {(r["scenario"], r["seed"], r["engine"], r["size_px"]) for r in records}
    kept = [r for r in old if (r["scenario"], r["seed"], r["engine"], r["size_px"]) not in ran]
    return kept + records


def _versions() -> dict[str, str | None]:
    import subprocess

    import sklearn

    done = subprocess.run(
        [
            peers.PEER_PYTHON,
            "-c",
            "import stardist,tensorflow;print(stardist.__version__,tensorflow.__version__)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    stardist_tf = done.stdout.split() if done.returncode == 0 else [None, None]
    return {
        "scikit-learn": sklearn.__version__,
        "stardist": stardist_tf[0],
        "tensorflow": stardist_tf[1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["particles", "particles+sites"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--peers", nargs="+", default=list(peers.PEER_NAMES), choices=peers.PEER_NAMES
    )
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--stardist-seconds", type=float, default=180.0)
    parser.add_argument("--output", default=str(RESULTS / "peers.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if "stardist" in args.peers and (problem := peers.stardist_available()):
        log.warning("StarDist is not runnable, skipped: %s", problem)
        args.peers = [p for p in args.peers if p != "stardist"]
    output = Path(args.output)
    versions = _versions()
    import tempfile

    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nocode-peers-") as tmp:
        for scenario in args.scenarios:
            for seed in args.seeds:
                for peer_name in args.peers:
                    log.info("running %s seed %d with %s", scenario, seed, peer_name)
                    record = run_case(
                        scenario, seed, peer_name, args.size, args.stardist_seconds, Path(tmp)
                    )
                    records.append(record)
                    print("\n".join(table([record]).splitlines()[2:]), flush=True)
                    atomic_write_json(
                        output,
                        {
                            "command": " ".join(["python", *sys.argv]),
                            "machine": {"platform": platform.platform(), "cpus": 2},
                            "versions": versions,
                            "records": _merge(output, records),
                        },
                    )
    print()
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
