"""Models page: every trained model in the store, with its scores; reuse or delete."""

from __future__ import annotations

import functools

import streamlit as st

from pipelines.errors import NoCodeMLError
from streamlit_app import services
from streamlit_app.views import deletion
from streamlit_app.views.train import metric_words

TASK_WORDS = {"detect": "finds objects", "classify": "sorts images into classes"}
STATE_WORDS = {"succeeded": "ready", "failed": "failed", "cancelled": "cancelled"}


def summary_words(state: str, metrics: dict) -> list[str]:
    """A model's state, its first two numbers and the object types it finds poorly.

    Shorter than :func:`pipelines.detection.tuning.weak_class_advice`: one line in a list of
    models; the Train page gives the advice in full.
    """
    from pipelines.detection.tuning import weak_class_items  # scipy: load when needed

    poor = [
        f"finds “{name}” poorly (F1 {f1:.2f} on its crops)"
        for name, f1 in weak_class_items(metrics.get("weak_classes"))
    ]
    return [STATE_WORDS.get(state, state), *metric_words(metrics)[:2], *poor]


def render() -> None:
    st.title("Models")
    st.caption(
        "Each finished training is a model. Download one to share it or use it from the "
        "command line (`nocode-ml predict`), or delete the ones you no longer need."
    )
    try:
        records = [r for r in services.job_client().list_jobs() if r.spec.action == "train"]
    except NoCodeMLError as error:
        st.error(f"{error} — check the data folder, then reload.")
        return
    if not records:
        st.info("No models yet: train one from a project (Start → Try the sample → Train).")
        return
    for record in sorted(records, key=lambda r: r.spec.created, reverse=True):
        spec, status = record.spec, record.status
        with st.container(border=True, key=f"model_{spec.job_id}"):
            cols = st.columns([4, 2, 1, 1])
            cols[0].markdown(
                f"**{spec.name or spec.job_id}**  \n{TASK_WORDS.get(spec.task, spec.task)} · "
                f"engine {spec.engine or 'default'}"
                f" · {spec.created[:16].replace('T', ' ')}"
            )
            cols[1].caption(" · ".join(summary_words(status.state, status.result_metrics)))
            if status.state == "succeeded":
                cols[2].download_button(
                    "Download",
                    functools.partial(services.model_zip, spec.job_id),  # zipped on click
                    f"model_{spec.job_id}.zip",
                    "application/zip",
                    key=f"dl_{spec.job_id}",
                )
            asked = ("model", spec.job_id)
            if status.is_terminal and cols[3].button(
                "Delete", key=f"del_{spec.job_id}", help="Deletes this model (asks first)"
            ):
                deletion.ask(asked)
            if deletion.is_asked(asked):
                deletion.confirm(
                    f"Delete the model **{spec.name or spec.job_id}** with its results? "
                    "This cannot be undone; your project and its labels stay, so you can "
                    "train again.",
                    "Yes, delete this model",
                    functools.partial(services.delete_model, spec.job_id),
                    yes_key=f"confirm_del_{spec.job_id}",
                    no_key=f"keep_{spec.job_id}",
                )
