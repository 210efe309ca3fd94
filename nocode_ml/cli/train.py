"""``nocode-ml train``: train a detection or classification model from labelled data."""

from __future__ import annotations

import argparse
from pathlib import Path

from nocode_ml.cli.options import parse_config_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from LabelMe files (detect) or a labelled image folder (classify)",
        description=(
            "Train a model. detect: LABELS are LabelMe JSON files whose crops (rectangles "
            "labelled 'crop') have every object outlined. classify: a folder with one "
            "sub-folder per class, a zip of such a folder, or LabelMe files with image flags."
        ),
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="LABELS")
    parser.add_argument("--task", choices=("detect", "classify"), default="detect")
    parser.add_argument("--engine", default=None, help="engine name (default: the task's default)")
    parser.add_argument("--out", type=Path, required=True, metavar="MODEL_DIR")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training time budget (the detector also stops after 3000 steps; "
        "--set max_steps=0 lifts that)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (the GPU if there is one), cpu or cuda"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an engine config field, e.g. --set seed=3 (repeatable)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nocode_ml.cli.progress_bar import TerminalProgress
    from pipelines.artifact import read_model_info
    from pipelines.tasks import train_model

    bar = TerminalProgress()
    try:
        model_dir = train_model(
            args.task,
            args.inputs,
            args.out,
            engine=args.engine,
            config=parse_config_overrides(args.set),
            device=args.device,
            minutes=args.minutes,
            progress=bar,
        )
    finally:
        bar.close()
    info = read_model_info(model_dir)
    metrics = ", ".join(
        f"{key}={value:.4g}"
        for key, value in info.metrics.items()
        if isinstance(value, int | float)
    )
    print(f"model saved to {model_dir} ({info.engine}, classes: {', '.join(info.classes)})")
    if metrics:
        print(f"training metrics: {metrics}")
    return 0
