"""Words the Train and Models pages show about a finished training."""

from __future__ import annotations

from pipelines.detection.tuning import weak_class_advice
from streamlit_app.views.models import summary_words
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


def test_the_models_page_names_the_object_types_a_model_finds_poorly() -> None:
    metrics = {"crop_f1": 0.0933, "weak_classes": {"single_site": 0.09}, "total_seconds": 171.2}
    assert summary_words("succeeded", metrics) == [
        "ready",
        "score on your crops (F1, 1 = all objects found exactly): 0.09",
        "training time (s): 171",
        "finds “single_site” poorly (F1 0.09 on its crops)",
    ]
    assert summary_words("failed", {}) == ["failed"]
    assert summary_words("running", {"weak_classes": None}) == ["running"]
