"""Synthetic generator and evaluator speed: generation, writing and scoring at 2048² and 4096².

Targets (issue brief): a 2048² ``particles`` sample in ≲ 3 s; 4096² with ≈10 000 objects in
≲ 20 s; scoring 10 000+ instances with COCO AP in seconds. The evaluation rows score a
degraded copy of the truth (dilated by one pixel, 10 % of objects dropped); the baseline in the
same run is the evaluation without AP, which isolates what pycocotools costs.

Run (serialised with other heavy jobs on the shared machine)::

    flock /tmp/nocode-heavy.lock .venv/bin/python benchmarks/synthetic.py
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.evaluation import evaluate_instances  # noqa: E402
from pipelines.fileio import atomic_write_json  # noqa: E402
from pipelines.formats.masks import InstanceMasks  # noqa: E402
from pipelines.synthetic import generate, list_scenarios, write_sample  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "synthetic.json"
CASES = [("particles", 2048), ("particles", 4096), ("dense", 4096)]


def _degraded(truth: InstanceMasks, seed: int = 0) -> InstanceMasks:
    rng = np.random.default_rng(seed)
    grown = ndimage.grey_dilation(truth.labels, size=3)
    grown[truth.labels > 0] = truth.labels[truth.labels > 0]
    dropped = rng.choice(truth.count, truth.count // 10, replace=False) + 1
    grown[np.isin(grown, dropped)] = 0
    return InstanceMasks(grown, truth.class_ids, truth.class_names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-scenarios", action="store_true", help="also time each at 2048²")
    args = parser.parse_args()
    cases = list(CASES)
    if args.all_scenarios:
        cases += [(name, 2048) for name in list_scenarios() if name != "particles"]
    rows: list[dict[str, Any]] = []
    for scenario, size in cases:
        start = time.perf_counter()
        sample = generate(scenario, size_px=size, seed=0)
        generate_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            write_sample(sample, folder)
            write_s = time.perf_counter() - start
        prediction = _degraded(sample.truth)
        start = time.perf_counter()
        quick = evaluate_instances(prediction, sample.truth, compute_ap=False)
        evaluate_s = time.perf_counter() - start
        start = time.perf_counter()
        full = evaluate_instances(prediction, sample.truth)
        evaluate_ap_s = time.perf_counter() - start
        assert quick.overall.f1 == full.overall.f1
        rows.append(
            {
                "scenario": scenario,
                "size_px": size,
                "objects": sample.truth.count,
                "labelled": sample.labelled_count,
                "generate_s": round(generate_s, 2),
                "write_s": round(write_s, 2),
                "evaluate_s": round(evaluate_s, 2),
                "evaluate_with_ap_s": round(evaluate_ap_s, 2),
                "f1_degraded": round(full.overall.f1 or 0.0, 4),
                "ap_degraded": round(full.overall.ap or 0.0, 4),
            }
        )
        row = rows[-1]
        print(
            f"{scenario:<16}{size:>6}{row['objects']:>8}{row['labelled']:>6}"
            f"{generate_s:>10.2f}{write_s:>8.2f}{evaluate_s:>10.2f}{evaluate_ap_s:>10.2f}",
            flush=True,
        )
    atomic_write_json(
        RESULTS,
        {"machine": platform.platform(), "python": platform.python_version(), "rows": rows},
    )
    print(f"written {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    print(
        f"{'scenario':<16}{'size':>6}{'objects':>8}{'lab.':>6}"
        f"{'gen s':>10}{'write s':>8}{'eval s':>10}{'eval+AP s':>10}"
    )
    main()
