"""Detection benchmark: engines side by side on synthetic scenarios, several seeds.

For each (scenario, seed, engine): generate a 2048² sample, train from its user labels (the few
crops), detect on the same whole image and on an unseen image of the same scenario, and score
instances at IoU 0.5 (per-class F1, mean |D error| %) with :mod:`pipelines.evaluation`.
``--scale`` adds the throughput checks: 4096² ``dense`` image (~10 000 objects) time and peak
RSS in a fresh process, and the tiling overhead against a bare forward pass on the same tiles.

The machine has 2 shared CPU cores: timings are noisy (other jobs run alongside), accuracy is
not. Run under the heavy-job lock::

    flock /tmp/nocode-heavy.lock .venv/bin/python benchmarks/detection.py \
        --scenarios particles particles+sites uneven --seeds 0 1 2 --engines unet threshold

Prints a Markdown table and writes JSON to ``benchmarks/results/detection.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.detection import api  # noqa: E402
from pipelines.evaluation import evaluate_instances  # noqa: E402
from pipelines.fileio import atomic_write_json  # noqa: E402
from pipelines.synthetic import generate, write_sample  # noqa: E402

log = logging.getLogger("benchmarks.detection")
RESULTS = ROOT / "benchmarks" / "results"
UNSEEN_SEED_OFFSET = 1000
PEERS = ("rf", "stardist")  # engines implemented in benchmarks/peers.py, not in the product
SIZE_BINS_PX = (0.0, 8.0, 16.0, float("inf"))  # true diameters for the |D error| breakdown


def score_rows(result: Any) -> dict[str, Any]:
    rows = {"all": result.overall.to_dict()}
    rows.update({row.class_name: row.to_dict() for row in result.per_class})
    return {
        name: {
            "f1": row["f1"],
            "precision": row["precision"],
            "recall": row["recall"],
            "true": row["true_count"],
            "predicted": row["predicted_count"],
            "mean_abs_d_error_pct": row["mean_abs_diameter_error_pct"],
            "d_bias_pct": row["mean_diameter_bias_pct"],
            "median_abs_d_error_pct": row["median_abs_diameter_error_pct"],
            # The error of the image's mean and median diameter (every object counted).
            "mean_d_of_image_error_pct": row["mean_size_error_pct"],
            "median_d_of_image_error_pct": row["median_size_error_pct"],
        }
        for name, row in rows.items()
    }


def size_bin_name(low: float, high: float) -> str:
    """Name of a :data:`SIZE_BINS_PX` bin as the JSON records use it, e.g. ``8-16px``."""
    return f"{low:.0f}-{high:.0f}px" if np.isfinite(high) else f">={low:.0f}px"


def d_error_by_size(pred: Any, truth: Any, class_name: str) -> dict[str, Any]:
    """Mean |D error| % of one class's matches (as in the evaluation), binned by true diameter.

    Why: the mean over all objects mixes 6-px particles, whose outline is a handful of noisy
    pixels, with 20-px ones; the bins show where the error comes from.
    """
    from pipelines.evaluation.scores import matched_diameters

    diameter, ratio = matched_diameters(pred, truth, class_name)
    bins = {}
    for low, high in itertools.pairwise(SIZE_BINS_PX):
        inside = (diameter >= low) & (diameter < high)
        name = size_bin_name(low, high)
        errors = 100.0 * np.abs(ratio[inside] - 1.0)
        bins[name] = {
            "matched": int(inside.sum()),
            "mean_abs_d_error_pct": round(float(errors.mean()), 2) if errors.size else None,
        }
    return bins


def _train(engine: str, labels: Path, model_dir: Path, minutes: float | None, device: str) -> Any:
    if engine in PEERS:
        from benchmarks import peers

        # With --minutes every engine gets that budget; without it each keeps its own default
        # (StarDist 240 s, more than the U-Net's 165 s; the forest trains in seconds).
        return peers.train(engine, labels, time_budget_s=60 * minutes if minutes else None)
    api.train([labels], model_dir, engine=engine, minutes=minutes, device=device)
    return api.load_detector(model_dir, device=device)


def train_steps_of(model_dir: Path) -> int | None:
    """Steps the product engines trained (from ``model.json``; peers save no folder)."""
    path = model_dir / "model.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["metrics"].get("train_steps")


def run_case(
    scenario: str,
    seed: int,
    engine: str,
    size_px: int,
    minutes: float | None,
    work: Path,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train on one sample's crops; score on the whole image and on an unseen image."""
    sample = generate(scenario, size_px, seed)
    folder = work / f"{scenario}-{seed}"
    paths = write_sample(sample, folder)
    started = time.perf_counter()
    model_dir = work / f"model-{engine}-{scenario}-{seed}"
    detector = _train(engine, paths["labels"], model_dir, minutes, device)
    train_s = time.perf_counter() - started
    record: dict[str, Any] = {
        "scenario": scenario,
        "seed": seed,
        "engine": engine,
        "device": device,
        "size_px": size_px,
        "labelled_objects": sample.labelled_count,
        "true_objects": sample.truth.count,
        "train_s": round(train_s, 1),
        "train_steps": train_steps_of(model_dir),
    }
    for name, image_sample in (
        ("same", sample),
        ("unseen", generate(scenario, size_px, seed + UNSEEN_SEED_OFFSET)),
    ):
        started = time.perf_counter()
        detections = api.detect(detector, image_sample.image)
        infer_s = time.perf_counter() - started
        result = evaluate_instances(
            detections.instances,
            image_sample.truth,
            pred_scores=detections.scores,
            compute_ap=False,
        )
        record[name] = {
            "infer_s": round(infer_s, 2),
            "timings_s": {k: round(v, 2) for k, v in detections.timings_s.items()},
            "ignored_on_scale_bar": detections.ignored_on_scale_bar,
            "scores": score_rows(result),
            "particle_d_error_by_size": d_error_by_size(
                detections.instances, image_sample.truth, "particle"
            ),
        }
    return record


def scale_check(
    work: Path, minutes: float | None, device: str = "cpu", reuse: bool = True
) -> dict[str, Any]:
    """4096² dense image in a fresh process (time, peak RSS) and tiling overhead on 2048².

    The model is the one this run trained on ``particles`` seed 0 at 2048² (``reuse``: the
    same labels), else it is trained here.
    """
    sample = generate("particles", 2048, 0)
    model_dir = work / "model-unet-particles-0"
    reused = reuse and (model_dir / "model.json").is_file()
    if not reused:
        paths = write_sample(sample, work / "scale-train")
        model_dir = work / "scale-model"
        api.train([paths["labels"]], model_dir, engine="unet", minutes=minutes, device=device)
    dense = generate("dense", 4096, 0)
    dense_paths = write_sample(dense, work / "dense")
    np.save(work / "dense-truth.npy", dense.truth.labels)
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child-predict",
            str(model_dir),
            str(dense_paths["image"]),
            str(work / "dense-truth.npy"),
            device,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    big = json.loads(child.stdout.strip().splitlines()[-1])
    big["true_objects"] = dense.truth.count
    return {
        "model": "the particles seed-0 model of this run" if reused else "trained for this check",
        "dense_4096": big,
        "tiling_2048": tiling_overhead(model_dir, sample.image, device),
    }


def tiling_overhead(model_dir: Path, image: np.ndarray, device: str = "cpu") -> dict[str, float]:
    """Bare forward on the tiles vs tiled maps (stitching) vs the whole detection."""
    from pipelines.detection.base import DetectOptions
    from pipelines.detection.data import normalise
    from pipelines.detection.tiling import predict_maps_tiled, tile_grid

    detector = api.load_detector(model_dir, device=device)
    options = DetectOptions()
    normalised = normalise(image, detector.invert)
    tiles = tile_grid(*image.shape, options.tile_px, detector.config.overlap_px)
    detector.forward_tile(normalised[:256, :256])  # warm-up
    started = time.perf_counter()
    for tile in tiles:
        detector.forward_tile(normalised[tile.read()])
    bare_s = time.perf_counter() - started
    started = time.perf_counter()
    predict_maps_tiled(
        detector.forward_tile,
        normalised,
        len(detector.classes) + 1,
        options.tile_px,
        detector.config.overlap_px,
    )
    stitched_s = time.perf_counter() - started
    started = time.perf_counter()
    detections = api.detect(detector, image)
    detect_s = time.perf_counter() - started
    return {
        "tiles": len(tiles),
        "bare_forward_s": round(bare_s, 2),
        "tiled_maps_s": round(stitched_s, 2),
        "detect_s": round(detect_s, 2),
        "stitch_ratio": round(stitched_s / bare_s, 3),
        "detect_ratio": round(detect_s / bare_s, 3),
        "objects": detections.count,
    }


def child_predict(model_dir: str, image_path: str, truth_path: str, device: str) -> None:
    """Run in a fresh process: load, detect, report time and peak RSS as one JSON line."""
    import resource

    from pipelines.formats.masks import InstanceMasks
    from pipelines.imaging import load_image

    pixels = load_image(image_path).pixels
    detector = api.load_detector(model_dir, device=device)
    started = time.perf_counter()
    detections = api.detect(detector, pixels)
    detect_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        api.predict(Path(model_dir), [Path(image_path)], Path(out), device=device)
        predict_s = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    outputs_s = output_stage_seconds(detections, pixels)
    truth_labels = np.load(truth_path)
    truth = InstanceMasks(truth_labels, np.ones(int(truth_labels.max()), np.int32), ["particle"])
    result = evaluate_instances(detections.instances, truth, compute_ap=False)
    print(
        json.dumps(
            {
                "detect_s": round(detect_s, 2),
                "predict_with_outputs_s": round(predict_s, 2),
                "timings_s": {k: round(v, 2) for k, v in detections.timings_s.items()},
                "outputs_s": outputs_s,
                "ignored_on_scale_bar": detections.ignored_on_scale_bar,
                "objects": detections.count,
                "peak_rss_gb": round(peak_gb, 2),
                "f1": result.overall.f1,
                "mean_abs_d_error_pct": result.overall.mean_abs_diameter_error_pct,
            }
        )
    )


def output_stage_seconds(detections: Any, pixels: np.ndarray) -> dict[str, float]:
    """Seconds of each output that ``predict`` writes: outlines, LabelMe JSON, overlay, CSV."""
    from pipelines.detection import outputs
    from pipelines.formats.labelme import write_labelme

    seconds = {}
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        document = outputs.to_document(detections, "image.tif")
        seconds["outlines"] = time.perf_counter() - started
        started = time.perf_counter()
        write_labelme(Path(out) / "image.json", document)
        seconds["labelme_json"] = time.perf_counter() - started
        started = time.perf_counter()
        outputs.write_overlay(Path(out) / "overlay.png", pixels, detections)
        seconds["overlay_png"] = time.perf_counter() - started
        started = time.perf_counter()
        outputs.stats_csv(document, None)
        seconds["stats_csv"] = time.perf_counter() - started
    return {name: round(value, 2) for name, value in seconds.items()}


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# Score columns shared by the benchmark tables: the same image, then the unseen one.
SCORE_HEADER = (
    "| F1 particle | \\|D err\\| % | median \\|D err\\| % | bias % | F1 site "
    "| F1 unseen particle | \\|D err\\| % unseen | F1 unseen site |"
)
SCORE_RULE = "---|---|---|---|---|---|---|---|"


def score_cells(same: dict[str, Any], unseen: dict[str, Any], digits: int = 1) -> str:
    """The :data:`SCORE_HEADER` cells of one record's per-class scores (see :func:`score_rows`)."""
    particle, site = same.get("particle", {}), same.get("single_site", {})
    u_particle, u_site = unseen.get("particle", {}), unseen.get("single_site", {})
    return (
        f"| {fmt(particle.get('f1'))} | {fmt(particle.get('mean_abs_d_error_pct'), digits)} "
        f"| {fmt(particle.get('median_abs_d_error_pct'), digits)} "
        f"| {fmt(particle.get('d_bias_pct'), digits)} | {fmt(site.get('f1'))} "
        f"| {fmt(u_particle.get('f1'))} "
        f"| {fmt(u_particle.get('mean_abs_d_error_pct'), digits)} | {fmt(u_site.get('f1'))} |"
    )


def table(records: list[dict[str, Any]]) -> str:
    """Markdown table: one row per (scenario, seed, engine)."""
    lines = [
        "| scenario | seed | engine | train s | infer s " + SCORE_HEADER,
        "|---|---|---|---|---|" + SCORE_RULE,
    ]
    for r in records:
        lines.append(
            f"| {r['scenario']} | {r['seed']} | {r['engine']} | {r['train_s']:.0f} "
            f"| {r['same']['infer_s']:.1f} "
            + score_cells(r["same"]["scores"], r["unseen"]["scores"])
        )
    return "\n".join(lines)


def summary(records: list[dict[str, Any]]) -> str:
    """Mean over seeds per (scenario, engine)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["engine"]), []).append(r)
    lines = [
        "| scenario | engine | seeds | train s | infer s | F1 particle | \\|D err\\| % "
        "| \\|mean D err\\| % | F1 site | F1 unseen particle | F1 unseen site |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mean(rows: list[dict[str, Any]], *keys: str, absolute: bool = False) -> float | None:
        values = []
        for row in rows:
            value: Any = row
            for key in keys:
                value = value.get(key, {}) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                values.append(abs(float(value)) if absolute else float(value))
        return float(np.mean(values)) if values else None

    for (scenario, engine), rows in groups.items():
        # Signed errors of opposite sign would cancel in a plain mean.
        image_d = mean(
            rows, "same", "scores", "particle", "mean_d_of_image_error_pct", absolute=True
        )
        lines.append(
            f"| {scenario} | {engine} | {len(rows)} | {fmt(mean(rows, 'train_s'), 0)} "
            f"| {fmt(mean(rows, 'same', 'infer_s'), 1)} "
            f"| {fmt(mean(rows, 'same', 'scores', 'particle', 'f1'))} "
            f"| {fmt(mean(rows, 'same', 'scores', 'particle', 'mean_abs_d_error_pct'), 1)} "
            f"| {fmt(image_d, 1)} "
            f"| {fmt(mean(rows, 'same', 'scores', 'single_site', 'f1'))} "
            f"| {fmt(mean(rows, 'unseen', 'scores', 'particle', 'f1'))} "
            f"| {fmt(mean(rows, 'unseen', 'scores', 'single_site', 'f1'))} |"
        )
    return "\n".join(lines)


def machine_info(device: str, threads: int) -> dict[str, Any]:
    """Where a benchmark ran: platform, torch, the GPU's name or a note on the CPU."""
    import torch

    machine: dict[str, Any] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
    }
    if device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return machine


def run_recorded(
    cases: Sequence[Any],
    run: Callable[[Any, Path], dict[str, Any]],
    table: Callable[[list[dict[str, Any]]], str],
    output: dict[str, Any],
    path: str,
    prefix: str,
) -> None:
    """Run each case in one scratch folder, print its table rows as it ends and write
    ``output`` (whose ``records`` grow) after each case, so a long run leaves usable partial
    results; then print the whole table."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for case in cases:
            log.info("running %s", case)
            output["records"].append(run(case, Path(tmp)))
            print("\n".join(table(output["records"][-1:]).splitlines()[2:]), flush=True)
            atomic_write_json(path, output)
    print()
    print(table(output["records"]))


def _write(
    path: str,
    records: list[dict[str, Any]],
    scale: dict[str, Any] | None,
    machine: dict[str, Any],
) -> None:
    """Write the JSON after every case so a long run leaves usable partial results."""
    output = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine,
        "records": records,
        "scale": scale,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=["particles", "particles+sites"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--engines", nargs="+", default=["unet", "threshold"])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training time cap per run (default: each engine's own budget)",
    )
    parser.add_argument("--scale", action="store_true", help="add the 4096² and tiling checks")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training and inference)")
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads for torch (the CI machine has 2)"
    )
    parser.add_argument("--output", default=str(RESULTS / "detection.json"))
    parser.add_argument("--child-predict", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_predict:
        child_predict(*args.child_predict)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    machine = machine_info(args.device, args.threads)
    records = []
    with tempfile.TemporaryDirectory(prefix="nocode-bench-") as tmp:
        work = Path(tmp)
        for scenario in args.scenarios:
            for seed in args.seeds:
                for engine in args.engines:
                    log.info("running %s seed %d with %s", scenario, seed, engine)
                    record = run_case(
                        scenario, seed, engine, args.size, args.minutes, work, args.device
                    )
                    records.append(record)
                    print(table([record]).splitlines()[-1], flush=True)
                    _write(args.output, records, None, machine)
        scale = None
        if args.scale:
            scale = scale_check(work, args.minutes, args.device, reuse=args.size == 2048)
    _write(args.output, records, scale, machine)
    print()
    print(table(records))
    print()
    print(summary(records))
    if scale:
        print()
        print(json.dumps(scale, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
