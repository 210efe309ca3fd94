"""``nocode-ml evaluate``: score predicted LabelMe objects against true ones."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predictions against true labels (precision, recall, F1, D error, AP)",
        description=(
            "Match predicted and true objects (IoU >= threshold, one-to-one, per class and "
            "overall) and print precision, recall, F1, mean |D error| % and bias of the "
            "matched pairs, the error of the mean diameter of all objects (what the "
            "statistics show), and COCO mask AP. If TRUTH.json has crop rectangles, only the "
            "crops are scored."
        ),
    )
    parser.add_argument("pred", type=Path, metavar="PRED.json", help="predicted LabelMe file")
    parser.add_argument("truth", type=Path, metavar="TRUTH.json", help="true LabelMe file")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU needed for a match (0.5)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument(
        "--held-out",
        type=Path,
        default=None,
        metavar="LABELS.json",
        help="score only outside the crop rectangles of this file (the training crops)",
    )
    parser.add_argument("--no-ap", action="store_true", help="skip COCO AP (faster)")
    parser.set_defaults(handler=run)


def _number(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_table(result: object) -> str:
    """Plain-text table, one row per class and an ``all`` row (class ignored)."""
    header = (
        f"{'class':<14}{'true':>7}{'pred':>7}{'TP':>7}{'FP':>6}{'FN':>6}"
        f"{'precision':>11}{'recall':>8}{'F1':>7}{'|D err| %':>11}{'D bias %':>10}"
        f"{'mean D err %':>13}{'AP':>7}{'AP50':>7}"
    )
    lines = [header]
    rows = [*result.per_class, result.overall]  # type: ignore[attr-defined]
    for row in rows:
        lines.append(
            f"{row.class_name:<14}{row.true_count:>7}{row.predicted_count:>7}"
            f"{row.true_positives:>7}{row.false_positives:>6}{row.false_negatives:>6}"
            f"{_number(row.precision):>11}{_number(row.recall):>8}{_number(row.f1):>7}"
            f"{_number(row.mean_abs_diameter_error_pct, 2):>11}"
            f"{_number(row.mean_diameter_bias_pct, 2, signed=True):>10}"
            f"{_number(row.mean_size_error_pct, 2, signed=True):>13}"
            f"{_number(row.ap):>7}{_number(row.ap50):>7}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pipelines.errors import InvalidLabels
    from pipelines.evaluation import evaluate_documents
    from pipelines.formats.labelme import read_labelme

    pred = read_labelme(args.pred)
    truth = read_labelme(args.truth)
    exclude = []
    if args.held_out:
        exclude = read_labelme(args.held_out).crop_boxes()
        if not exclude:
            raise InvalidLabels(
                f"{args.held_out.name} has no crop rectangles; --held-out needs the labels file "
                "the model was trained on"
            )
    result = evaluate_documents(
        pred, truth, exclude=exclude, iou_threshold=args.iou, compute_ap=not args.no_ap
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"IoU >= {result.iou_threshold:g}")
        print(format_table(result))
    return 0
