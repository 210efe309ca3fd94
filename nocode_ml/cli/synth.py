"""``nocode-ml synth``: write a synthetic microscopy image with exact truth and user labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from nocode_ml.cli.options import parse_config_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    from pipelines.synthetic import SCENARIOS

    scenarios = "\n".join(f"  {name}: {config.description}" for name, config in SCENARIOS.items())
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic test image with its exact labels",
        description=(
            "Write OUT_DIR/image.tif (calibrated), OUT_DIR/labels.json (a few crops with every "
            "object in them outlined, as a user would label) and OUT_DIR/truth.json (every "
            "object). Both JSON files open in labelme. The same seed gives the same files; "
            "files of those names already in OUT_DIR are replaced."
        ),
        epilog=f"scenarios:\n{scenarios}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    parser.add_argument("--scenario", default="particles", help="scenario name (listed below)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=2048, metavar="PX", help="image side in px")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario setting, e.g. --set particles_per_mpx=600 (repeatable)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.fileio import check_folder_target
    from pipelines.synthetic import generate, write_sample

    check_folder_target(args.out_dir)
    sample = generate(
        args.scenario, size_px=args.size, seed=args.seed, **parse_config_overrides(args.set)
    )
    write_sample(sample, args.out_dir)
    print(f"{sample.summary()} -> {args.out_dir}")
    return 0
