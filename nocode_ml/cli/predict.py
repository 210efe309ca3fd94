"""``nocode-ml predict``: apply a trained model to images or folders of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from nocode_ml.cli.options import parse_config_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="apply a trained model to images",
        description=(
            "Apply MODEL_DIR to images (files or folders). Detection writes DIR/<stem>.json "
            "(LabelMe), DIR/<stem>_overlay.png and DIR/<stem>_stats.csv per image; "
            "classification writes DIR/predictions.csv and DIR/predictions.json."
        ),
    )
    parser.add_argument(
        "model_dir",
        type=Path,
        metavar="MODEL_DIR",
        help="a model folder, or a model zip downloaded from the app",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--device", default="auto", help="auto (the GPU if there is one), cpu or cuda"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="prediction option, e.g. --set score_threshold=0.6 (repeatable)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from nocode_ml.cli.progress_bar import TerminalProgress
    from pipelines.artifact import opened_model
    from pipelines.tasks import predict

    bar = TerminalProgress()
    try:
        with opened_model(args.model_dir) as model_dir:
            written = predict(
                model_dir,
                args.inputs,
                args.out,
                device=args.device,
                options=parse_config_overrides(args.set),
                progress=bar,
            )
    finally:
        bar.close()
    print(f"wrote {len(written)} files to {args.out}")
    return 0
