"""``nocode-ml stats``: per-class statistics of LabelMe files, printed and exported.

Examples::

    nocode-ml stats particles.json --nm-per-px 0.21 --out table.csv
    nocode-ml stats a.json b.json --guard-frame --metal Pd --out stats.xlsx --html report.html
    nocode-ml stats a.json --card
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from pipelines.errors import InvalidInput

_TABLE_COLUMNS = (
    ("image", "image", "{}"),
    ("label", "class", "{}"),
    ("counted", "n", "{:d}"),
    ("mean_diameter_{u}", "mean D {u}", "{:.3g}"),
    ("std_diameter_{u}", "sd D {u}", "{:.3g}"),
    ("median_diameter_{u}", "median D {u}", "{:.3g}"),
    ("d10_{u}", "D10 {u}", "{:.3g}"),
    ("d90_{u}", "D90 {u}", "{:.3g}"),
    ("{density}", "{density_title}", "{:.4g}"),
    ("nn_mean_{u}", "mean NN {u}", "{:.3g}"),
    ("nn_median_{u}", "median NN {u}", "{:.3g}"),
    ("clark_evans_r", "Clark-Evans R", "{:.3f}"),
    ("dispersion", "dispersion", "{:.3f}"),
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _region(text: str) -> tuple[float, float, float, float]:
    parts = text.replace(";", ",").split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not four numbers x_min,y_min,x_max,y_max"
        ) from None
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not four numbers x_min,y_min,x_max,y_max")
    return values  # type: ignore[return-value]


def _bins(text: str) -> int | str:
    if text.isdigit():
        return int(text)
    if text in ("auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt"):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is neither a bin count nor a numpy bin rule")


def register(subparsers: Any) -> None:
    """Add the ``stats`` sub-command."""
    parser = subparsers.add_parser(
        "stats",
        help="measure objects in LabelMe files: sizes, counts, densities, neighbours",
        description="Per-class statistics of the objects in one or more LabelMe files. "
        "Sizes are in px, and also in nm when a pixel size is known.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE.json", help="LabelMe file(s)")
    parser.add_argument(
        "--nm-per-px",
        type=_positive_float,
        default=None,
        help="pixel size in nm (overrides a size stored in the files)",
    )
    parser.add_argument("--out", default=None, help="export table: .csv, .xlsx or .json")
    parser.add_argument("--html", default=None, help="write a self-contained HTML report")
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--exclude-border",
        action="store_true",
        help="leave out objects touching the image (or region) border",
    )
    rule.add_argument(
        "--guard-frame",
        action="store_true",
        help="count objects whose centre lies inside a guard frame (unbiased densities)",
    )
    parser.add_argument(
        "--guard-px",
        type=float,
        default=None,
        metavar="PX",
        help="guard frame width in px (default: the largest object radius)",
    )
    parser.add_argument(
        "--region",
        type=_region,
        default=None,
        metavar="X0,Y0,X1,Y1",
        help="analyse only this rectangle (px)",
    )
    parser.add_argument("--metal", default=None, help="estimate dispersion for this metal (Pd…)")
    parser.add_argument("--bins", type=_bins, default="auto", help="histogram bins or rule")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--card", action="store_true", help="print the run card")
    parser.set_defaults(handler=run)


def _format_table(summary: Any, unit: str) -> str:
    density = "density_per_um2" if unit == "nm" else "density_per_mpx"
    density_title = "per um2" if unit == "nm" else "per Mpx"
    header: list[str] = []
    rows: list[list[str]] = []
    columns = []
    for key, title, fmt in _TABLE_COLUMNS:
        key = key.format(u=unit, density=density)
        title = title.format(u=unit, density_title=density_title)
        if key in summary.columns:
            columns.append((key, fmt))
            header.append(title)
    for record in summary.to_dict("records"):
        cells = []
        for key, fmt in columns:
            value = record.get(key)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                cells.append("-")
            else:
                cells.append(fmt.format(int(value) if fmt == "{:d}" else value))
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Compute, print and export statistics."""
    from pipelines.fileio import check_file_target
    from pipelines.stats import StatsOptions, compute_statistics, format_run_card
    from pipelines.stats.export import check_export_path, write_statistics

    if args.out is not None:
        check_export_path(args.out)
    if args.html is not None:
        if not str(args.html).lower().endswith((".html", ".htm")):
            raise InvalidInput(f"the report must be an .html file, got '{args.html}'")
        check_file_target(args.html, example="report.html")
    if args.bootstrap < 0:
        raise InvalidInput("--bootstrap must be 0 or more")
    rule, guard = "all", None
    if args.exclude_border:
        rule = "exclude_border"
    elif args.guard_frame:
        rule, guard = "guard_frame", args.guard_px
    elif args.guard_px is not None:
        raise InvalidInput("--guard-px needs --guard-frame")
    options = StatsOptions(
        counting_rule=rule,
        guard_px=guard,
        region_px=args.region,
        histogram_bins=args.bins,
        bootstrap_resamples=args.bootstrap,
        seed=args.seed,
        metal=args.metal,
    )
    result = compute_statistics(args.files, args.nm_per_px, options)
    total = len(result.objects)
    counted = int(result.objects["counted"].sum()) if total else 0
    unit = result.size_unit
    print(
        f"{total} objects in {len(result.images)} image(s), {counted} counted "
        f"({options.counting_rule}); sizes in {unit}"
    )
    if unit == "px":
        print("no calibration: sizes in px and densities per megapixel; give --nm-per-px for nm")
    if len(result.summary):
        if len(result.images) > 1:
            print("pooled over all images:")
        print(_format_table(result.summary, unit))
        for record in result.summary.to_dict("records"):
            if record.get("notes"):
                print(f"  {record['label']}: {record['notes']}")
    if len(result.images) > 1 and len(result.per_image):
        print("per image:")
        print(_format_table(result.per_image, unit))
    if args.card:
        print("\nrun card")
        print(format_run_card(result.run_card))
    written = []
    if args.out is not None:
        written += write_statistics(result, args.out)
    if args.html is not None:
        from pipelines.stats.report import write_html_report

        written.append(write_html_report(result, args.html))
    for path in written:
        print(f"wrote {path}")
    sys.stdout.flush()
    return 0
