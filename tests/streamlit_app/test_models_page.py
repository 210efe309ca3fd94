"""Models page under AppTest: deleting a model asks first, then unlinks it from the project
that trained it."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from streamlit_app import services
from streamlit_app.navigation import GOTO
from tests.streamlit_app.finished_jobs import trained_sample


def test_a_deleted_model_leaves_its_project_and_the_pages_working(
    queued_jobs, app: AppTest
) -> None:
    app.button(key="try_sample").click().run()
    project_id, job_id = trained_sample(app)
    app.session_state[GOTO] = "models"
    app.run()
    assert not app.exception and app.title[0].value == "Models"
    app.button(key=f"del_{job_id}").click().run()
    assert services.job_status_or_none(job_id) is not None  # only asked
    assert any("cannot be undone" in w.value for w in app.warning)
    app.button(key=f"keep_{job_id}").click().run()
    assert services.job_status_or_none(job_id) is not None
    app.button(key=f"del_{job_id}").click().run()
    app.button(key=f"confirm_del_{job_id}").click().run()
    assert not app.exception and not app.error
    assert services.job_status_or_none(job_id) is None
    assert services.project_store().get(project_id).jobs == ()
    for page in ("train", "results"):
        app.session_state[GOTO] = page
        app.run()
        assert not app.exception and not app.error, page
    assert app.title[0].value.startswith("Train")  # no job left: no Results page
    assert "No training yet" in app.info[0].value
