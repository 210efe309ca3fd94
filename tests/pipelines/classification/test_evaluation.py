"""Scores against hand-computed answers."""

from __future__ import annotations

import pytest

from pipelines.classification.evaluation import (
    chance_advice,
    classification_report,
    confusion_heatmap_data,
    confusion_matrix,
)

CLASSES = ["fresh", "sintered", "drifted"]
TRUE = [0, 0, 0, 1, 1, 2]
PREDICTED = [0, 0, 1, 1, 1, 1]
PROBABILITIES = [
    [0.9, 0.1, 0.0],
    [0.8, 0.2, 0.0],
    [0.4, 0.6, 0.0],
    [0.1, 0.9, 0.0],
    [0.2, 0.8, 0.0],
    [0.05, 0.7, 0.25],
]


def test_confusion_matrix_rows_are_true_columns_predicted() -> None:
    assert confusion_matrix(TRUE, PREDICTED, 3) == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="6 true labels but 2"):
        confusion_matrix(TRUE, [0, 1], 3)


def test_report_against_hand_computed_scores() -> None:
    names = [f"img{i}.png" for i in range(6)]
    report = classification_report(TRUE, PREDICTED, CLASSES, names, PROBABILITIES)
    assert report["accuracy"] == pytest.approx(4 / 6)
    fresh, sintered, drifted = report["per_class"]
    assert (fresh["precision"], fresh["recall"], fresh["support"]) == (1.0, pytest.approx(2 / 3), 3)
    assert fresh["f1"] == pytest.approx(0.8)
    assert sintered["precision"] == pytest.approx(0.5) and sintered["recall"] == 1.0
    assert sintered["f1"] == pytest.approx(2 / 3)
    assert drifted == {"class": "drifted", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.0) / 3)
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert report["misclassified"] == [
        {"file": "img5.png", "true": "drifted", "predicted": "sintered", "probability": 0.7},
        {"file": "img2.png", "true": "fresh", "predicted": "sintered", "probability": 0.6},
    ]


def test_heatmap_data_for_plotly() -> None:
    import plotly.graph_objects as go

    data = confusion_heatmap_data(classification_report(TRUE, PREDICTED, CLASSES))
    assert data["z"] == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert data["x"] == data["y"] == CLASSES
    figure = go.Figure(go.Heatmap(z=data["z"], x=data["x"], y=data["y"], text=data["text"]))
    assert list(figure.data[0].z[0]) == [2, 1, 0]


def test_empty_input_gives_zero_scores() -> None:
    report = classification_report([], [], CLASSES)
    assert report["accuracy"] == 0.0 and report["n_samples"] == 0
    assert report["balanced_accuracy"] == 0.0


def test_balanced_accuracy_leaves_out_classes_without_samples() -> None:
    report = classification_report([0, 0, 0, 1], [0, 0, 1, 1], CLASSES)  # no "drifted"
    assert report["balanced_accuracy"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_a_model_no_better_than_guessing_is_called_so() -> None:
    three = {"rods": 6, "spheres": 6, "agglomerates": 6}
    advice = chance_advice({"val_balanced_accuracy": 0.4, "class_counts": three})
    assert advice is not None
    assert "right 40% of the time per class, no better than guessing among 3 classes" in advice
    assert "add images to each class" in advice
    assert chance_advice({"val_balanced_accuracy": 0.9, "class_counts": three}) is None
    assert chance_advice({"val_balanced_accuracy": None, "class_counts": three}) is None  # no val
    assert chance_advice({}) is None  # models trained before balanced accuracy was recorded
