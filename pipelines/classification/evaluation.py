"""Classification scores as plain data (lists, dicts, floats) for JSON, tables and Plotly.

Conventions: ``true`` and ``predicted`` are class indices into ``class_names``; the confusion
matrix has one row per true class and one column per predicted class. A precision or recall
with nothing to divide by is 0.0 (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def confusion_matrix(
    true: Sequence[int], predicted: Sequence[int], n_classes: int
) -> list[list[int]]:
    """``matrix[t][p]`` = number of samples of true class ``t`` predicted as ``p``."""
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions")
    matrix = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(true, predicted, strict=True):
        matrix[int(t)][int(p)] += 1
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def per_class_scores(matrix: list[list[int]], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of each class, from a confusion matrix."""
    scores = []
    for k, name in enumerate(class_names):
        true_positive = matrix[k][k]
        predicted_k = sum(row[k] for row in matrix)
        support = sum(matrix[k])
        precision = _ratio(true_positive, predicted_k)
        recall = _ratio(true_positive, support)
        scores.append(
            {
                "class": name,
                "precision": precision,
                "recall": recall,
                "f1": _ratio(2 * precision * recall, precision + recall),
                "support": support,
            }
        )
    return scores


def misclassified(
    names: Sequence[str],
    true: Sequence[int],
    predicted: Sequence[int],
    probabilities: Sequence[Sequence[float]],
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """The wrongly classified samples, most confidently wrong first."""
    wrong = [
        {
            "file": name,
            "true": class_names[int(t)],
            "predicted": class_names[int(p)],
            "probability": float(probs[int(p)]),
        }
        for name, t, p, probs in zip(names, true, predicted, probabilities, strict=True)
        if int(t) != int(p)
    ]
    return sorted(wrong, key=lambda row: -row["probability"])


def classification_report(
    true: Sequence[int],
    predicted: Sequence[int],
    class_names: Sequence[str],
    names: Sequence[str] | None = None,
    probabilities: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class precision/recall/F1, macro F1, confusion matrix,
    misclassified list.

    ``names`` and ``probabilities`` (``(N, n_classes)``) are needed for the misclassified list.
    """
    matrix = confusion_matrix(true, predicted, len(class_names))
    per_class = per_class_scores(matrix, class_names)
    correct = sum(matrix[k][k] for k in range(len(class_names)))
    recalls = [s["recall"] for s in per_class if s["support"]]
    report: dict[str, Any] = {
        "n_samples": len(true),
        "accuracy": _ratio(correct, len(true)),
        # mean recall of the classes present: a rare class counts as much as a common one
        "balanced_accuracy": _ratio(sum(recalls), len(recalls)),
        "macro_f1": _ratio(sum(s["f1"] for s in per_class), len(per_class)),
        "per_class": per_class,
        "confusion_matrix": {"classes": list(class_names), "matrix": matrix},
        "misclassified": [],
    }
    if names is not None and probabilities is not None:
        report["misclassified"] = misclassified(names, true, predicted, probabilities, class_names)
    return report


def confusion_heatmap_data(report: dict[str, Any]) -> dict[str, Any]:
    """Arguments for ``plotly.graph_objects.Heatmap``: ``z`` rows = true, ``x`` = predicted.

    ``text`` holds the counts to print in the cells; rows are listed top-down in class order
    (set ``yaxis.autorange="reversed"`` to draw them that way).
    """
    confusion = report["confusion_matrix"]
    matrix = confusion["matrix"]
    return {
        "z": matrix,
        "x": list(confusion["classes"]),
        "y": list(confusion["classes"]),
        "text": [[str(value) for value in row] for row in matrix],
        "x_title": "predicted class",
        "y_title": "true class",
    }


# A model whose held-back score is within this of chance has learnt nothing usable.
CHANCE_MARGIN = 0.1


def chance_advice(metrics: dict[str, Any]) -> str | None:
    """Plain words when a trained classifier does no better than guessing on its held-back
    images (balanced accuracy within :data:`CHANCE_MARGIN` of 1 / classes), saying what to do;
    ``None`` otherwise, or without held-back images. One wording for the Train page and logs."""
    score = metrics.get("val_balanced_accuracy")
    counts = metrics.get("class_counts")
    if not isinstance(score, int | float) or not isinstance(counts, dict) or len(counts) < 2:
        return None
    chance = 1 / len(counts)
    if score > chance + CHANCE_MARGIN:
        return None
    return (
        f"On the images held back to check it, the model is right {score:.0%} of the time per "
        f"class, no better than guessing among {len(counts)} classes ({chance:.0%}). Its "
        "classes are not to be trusted: add images to each class (a few dozen help), or check "
        "that the classes differ visibly, then train again — longer, or with Accurate."
    )
