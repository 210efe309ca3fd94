"""Words the Train page shows about a finished training."""

from __future__ import annotations

from pipelines.detection.tuning import weak_class_advice
from streamlit_app.views.train import metric_words


def test_a_class_found_poorly_on_its_own_crops_gets_a_warning_that_says_what_to_do() -> None:
    metrics = {"crop_f1": 0.0933, "weak_classes": {"single_site": 0.09}, "total_seconds": 171.2}
    (warning,) = weak_class_advice(metrics["weak_classes"])
    assert "“single_site” is found at F1 0.09 on your own crops" in warning
    assert "Draw another crop around some “single_site” objects" in warning
    shown = metric_words(metrics)
    assert shown[0] == "score on your crops (F1, 1 = all objects found exactly): 0.09"


def test_no_warning_when_every_class_is_found_or_the_metrics_predate_it() -> None:
    assert weak_class_advice({}) == []
    assert weak_class_advice(None) == []  # models trained before the check
    assert weak_class_advice({"particle": None}) == []
