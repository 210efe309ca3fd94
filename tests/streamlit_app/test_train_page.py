"""Train page: presets and their time budget, where training runs, and the words shown about
a finished (or deleted) training."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from pipelines.detection.tuning import weak_class_advice
from pipelines.errors import NoCodeMLError
from streamlit_app import services
from streamlit_app.navigation import GOTO
from streamlit_app.views.models import summary_words
from streamlit_app.views.train import metric_words
from tests.streamlit_app.finished_jobs import finish_training


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


def _train_page(app: AppTest) -> tuple[AppTest, str]:
    """The sample project on the Train page: (app, project id)."""
    app.button(key="try_sample").click().run()
    app.session_state[GOTO] = "train"
    app.run()
    assert not app.exception and app.title[0].value.startswith("Train")
    return app, app.session_state["project_id"]


def _start(app: AppTest) -> AppTest:
    return next(b for b in app.button if b.label == "Start training").click().run()


def test_the_chosen_presets_time_applies_unless_the_user_types_one(
    queued_jobs, app: AppTest
) -> None:
    """The empty time field means "the preset's time": Accurate trains 20 min, not Quick's 3."""
    app, project_id = _train_page(app)
    app.radio(key="preset").set_value("accurate")
    app = _start(app)
    assert not app.exception and not app.error
    (link,) = services.project_store().get(project_id).train_jobs
    spec = services.job_client().spec(link.job_id)
    assert (spec.minutes, spec.device) == (services.preset("accurate").minutes, "auto")
    services.job_client().cancel(link.job_id)  # one training per project at a time
    app.run()

    app.radio(key="preset").set_value("quick")
    app.number_input(key="minutes").set_value(1.5)
    app = _start(app)
    assert not app.exception and not app.error
    latest = services.project_store().get(project_id).train_jobs[-1]
    assert services.job_client().spec(latest.job_id).minutes == 1.5


def test_a_second_training_waits_until_the_first_has_ended(queued_jobs, app: AppTest) -> None:
    """A second click on Start would queue a duplicate and hide the running training."""
    app, project_id = _train_page(app)
    app = _start(app)
    (link,) = services.project_store().get(project_id).train_jobs
    start = next(b for b in app.button if b.label == "Start training")
    assert start.disabled
    assert any("under way" in c.value for c in app.caption)
    with pytest.raises(NoCodeMLError, match="already training"):
        services.submit_training(project_id, "quick")
    services.job_client().cancel(link.job_id)
    app.run()
    assert not next(b for b in app.button if b.label == "Start training").disabled
    app = _start(app)
    assert not app.exception and not app.error
    assert len(services.project_store().get(project_id).train_jobs) == 2


def test_without_a_gpu_the_accurate_preset_says_it_trains_on_this_computers_cpu(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_local_gpu", lambda: False)
    app, _ = _train_page(app)
    quick, accurate = app.radio(key="preset").proto.captions
    assert "Runs on this computer's processor (CPU): no GPU was found here" in accurate
    assert "GPU backend" not in accurate
    assert quick.endswith("Runs on this computer's processor (CPU).")


def test_the_machine_a_preset_trains_on_is_said_plainly() -> None:
    quick, accurate = services.preset("quick"), services.preset("accurate")
    assert "CPU" in services.where_training_runs(accurate, "local", local_gpu=False)
    assert services.where_training_runs(accurate, "local", local_gpu=True) == (
        "Runs on this computer's GPU."
    )
    assert "CPU" in services.where_training_runs(quick, "local", local_gpu=True)
    assert "job machine" in services.where_training_runs(accurate, "batch", local_gpu=False)


def test_a_deleted_model_leaves_a_one_line_message_not_a_traceback(
    queued_jobs, app: AppTest
) -> None:
    """A model deleted outside the Models page (command line) while its project links it."""
    app, project_id = _train_page(app)
    job_id = services.submit_training(project_id, "quick")
    finish_training(job_id)
    latest = services.submit_training(project_id, "quick")
    services.job_client().delete(job_id)  # as `nocode-ml jobs delete` does
    app.run()
    assert not app.exception
    earlier = [m.value for m in app.markdown if job_id in m.value]
    assert earlier == [f"`{job_id}` — deleted"]
    services.job_client().delete(latest, force=True)
    app.run()
    assert not app.exception and not app.error
    assert app.warning[0].value.startswith("The latest model was deleted.")


def test_a_classifier_no_better_than_guessing_gets_a_warning_that_says_what_to_do(
    queued_jobs, app: AppTest
) -> None:
    from gpu_backend.spec import STATUS_FILE, job_key

    app.button(key="try_class_sample").click().run()
    project_id = app.session_state["project_id"]
    job_id = services.submit_training(project_id, "quick")
    finish_training(job_id, task="classify")
    client = services.job_client()
    guessed = {"val_balanced_accuracy": 0.33, "class_counts": {"a": 6, "b": 6, "c": 6}}
    status = client.status(job_id, reconcile=False).replace(result_metrics=guessed)
    client.store.write_bytes(job_key(job_id, STATUS_FILE), status.to_json())
    app.session_state[GOTO] = "train"
    app.run()
    assert not app.exception
    assert any("no better than guessing among 3 classes" in w.value for w in app.warning)


def test_the_train_page_says_which_images_training_learns_from(app: AppTest) -> None:
    app, project_id = _train_page(app)
    store = services.project_store()
    name = store.get(project_id).images[0].name
    store.add_image(project_id, "camera16.png", store.preview_png(project_id, name))
    app.run()
    assert not app.exception
    assert any(m.value.startswith("Learns from: sample_particles.tif (") for m in app.markdown)
    assert any(
        "Not used for training (nothing outlined): camera16.png" in c.value for c in app.caption
    )
    camera = next(r.name for r in store.get(project_id).images if r.name != name)
    store.store.write_bytes(store.labels_key(project_id, camera), b'{"shapes": 3}')
    app.run()  # one image's labels cannot be read: the page still says what it can
    assert not app.exception
    assert any(
        "camera16.png (labels unreadable: see the Label page)" in c.value for c in app.caption
    )


def test_after_a_correction_the_train_page_says_it_is_not_learnt_yet(
    queued_jobs, app: AppTest
) -> None:
    from streamlit_app import state

    app, project_id = _train_page(app)
    name = services.project_store().get(project_id).images[0].name
    app.session_state[state.CORRECTING] = (name, 0, 3)
    app.run()
    assert any("They are learnt only once you train again" in i.value for i in app.info)
    app = _start(app)
    assert not app.exception and app.session_state[state.CORRECTING] is None
    assert not any("learnt only once you train again" in i.value for i in app.info)
