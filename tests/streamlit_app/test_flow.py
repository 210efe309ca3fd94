"""Classification newcomer flow under AppTest: sample → train (local launcher) → results.

The detection flow runs in the browser (test_browser.py); this one checks the second task end
to end through the real job backend with a tiny ConvNeXt (``NOCODE_ML_APP_TRAIN_CONFIG``).
"""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from streamlit.testing.v1 import AppTest

from streamlit_app import services
from streamlit_app.navigation import GOTO
from tests.streamlit_app.configs import TINY_CONVNEXT


def _wait_for(job_id: str, timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = services.job_client().status(job_id)
        if status.is_terminal:
            return status.state
        time.sleep(1.0)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")


@pytest.mark.slow
def test_classification_sample_train_results(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(services.TRAIN_CONFIG_ENV, json.dumps({"classify": TINY_CONVNEXT}))
    app.button(key="try_class_sample").click().run()
    assert not app.exception and not app.error
    assert app.title[0].value.startswith("Label")
    assert any("agglomerates**: 8" in m.value for m in app.markdown)
    project_id = app.session_state["project_id"]
    app.button(key="to_train").click().run()
    assert app.title[0].value.startswith("Train")
    app.number_input(key="minutes").set_value(1.0)
    app.button[0].click().run()  # the form's "Start training"
    assert not app.exception and not app.error
    (link,) = services.project_store().get(project_id).train_jobs
    assert _wait_for(link.job_id) == "succeeded", services.job_client().log(link.job_id)
    spec = services.job_client().spec(link.job_id)
    assert spec.engine is None and spec.config == TINY_CONVNEXT
    app.run()
    assert app.button(key="find_objects").label == "Classify all images →"
    app.button(key="find_objects").click().run()
    assert not app.exception
    assert app.title[0].value.startswith("Results")
    predict = next(
        j for j in services.project_store().get(project_id).jobs if j.action == "predict"
    )
    assert _wait_for(predict.job_id) == "succeeded", services.job_client().log(predict.job_id)
    app.run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert len(table) == 24 and {"class", "true_class"} <= set(table.columns)
    assert any(
        " of 24** images sorted into the class you gave them" in m.value for m in app.markdown
    )
    confusion = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert confusion["data"][0]["type"] == "heatmap"
    classes = ["agglomerates", "rods", "spheres"]
    assert confusion["data"][0]["x"] == confusion["data"][0]["y"] == classes  # all, always
    downloads = [d.proto.label for d in app.get("download_button")]
    assert "Predictions (CSV)" in downloads

    # The Models page lists the model without zipping it; the zip is made on the first click.
    services._model_zip.cache_clear()
    app.session_state[GOTO] = "models"
    app.run()
    assert not app.exception and app.title[0].value == "Models"
    assert any(d.proto.label == "Download" for d in app.get("download_button"))
    assert services._model_zip.cache_info().currsize == 0
    names = zipfile.ZipFile(io.BytesIO(services.model_zip(link.job_id))).namelist()
    assert "model/model.json" in names
    services.model_zip(link.job_id)
    assert services._model_zip.cache_info().hits == 1
