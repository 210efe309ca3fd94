"""Train page: pick a preset, launch a job, watch it learn (the job runs on without the page)."""

from __future__ import annotations

import streamlit as st

from pipelines.errors import NoCodeMLError
from streamlit_app import navigation, services, state

POLL_S = 2.0
STAGE_WORDS = {
    "download": "Fetching your images",
    "load": "Reading images and labels",
    "load images": "Reading images",
    "train": "Training",
    "tune": "Tuning the detection threshold",
    "calibrate": "Calibrating on your crops",
    "evaluate": "Checking the model on held-back images",
    "save": "Saving the model",
    "predict": "Looking at the images",
    "images": "Finding objects",
    "statistics": "Measuring the objects",
    "upload": "Saving the results",
}


def render() -> None:
    project = services.current_project(state.get(state.PROJECT_ID))
    if project is None:
        st.info("Open a project on the Start page first.")
        return
    st.title(f"Train — {project.name}")
    state.show_flash()
    what = "find and outline objects" if project.task == "detect" else "sort images into classes"
    st.caption(f"The network learns to {what} from your labels.")
    if project.task == "detect":
        used, unused = services.training_images(project)
        words = ", ".join(f"{name} ({objects} objects)" for name, objects in used)
        st.markdown(f"Learns from: {words or 'no image yet: outline objects on the Label page'}.")
        if unused:
            st.caption(
                f"Not used for training (nothing outlined): {', '.join(unused)}. They still get "
                "results."
            )
    if correcting := state.get(state.CORRECTING):
        # the model below is the one before the corrections: training again is the next step
        st.info(
            f"You corrected the model's objects in **{correcting[0]}**. They are learnt only "
            "once you train again: click **Start training**.",
            icon=":material/rule:",
        )
    labels = {p.key: p.title for p in services.PRESETS}
    busy = services.training_in_progress(project)
    with st.form("train_form", border=True):
        key = st.radio(
            "How to train",
            list(labels),
            format_func=labels.get,
            key="preset",
            captions=[f"{p.explanation} {services.training_place(p)}" for p in services.PRESETS],
        )
        # Empty by default: a value filled in here would be sent even after the user picks
        # another preset (a form does not rerun on a change), overriding that preset's time.
        minutes = st.number_input(
            "Time budget (minutes)",
            min_value=0.1,
            max_value=240.0,
            value=None,
            step=0.5,
            placeholder="empty = the preset's time ("
            + ", ".join(f"{p.key.capitalize()}: {p.minutes:g} min" for p in services.PRESETS)
            + ")",
            help="Training stops after this time and keeps the best model so far. Leave it "
            "empty to train for the time of the preset you chose.",
            key="minutes",
        )
        start = st.form_submit_button("Start training", type="primary", disabled=bool(busy))
        if busy:
            st.caption(
                "A training of this project is under way (below): wait for it to finish, or "
                "cancel it, to start another."
            )
    if start:
        try:
            with st.spinner("Sending the images to the training job…"):
                services.submit_training(project.project_id, key, minutes)
        except NoCodeMLError as error:
            st.error(str(error))
        else:
            state.put(state.CORRECTING, None)
            state.flash("Training started. You can leave this page; the job keeps running.")
            st.rerun()
    jobs = project.train_jobs
    if not jobs:
        st.info("No training yet. Choose a preset and click **Start training**.")
        return
    st.subheader("Latest training")
    if services.job_status_or_none(jobs[-1].job_id) is None:
        st.warning("The latest model was deleted. Click **Start training** to train a new one.")
    else:
        # a running job reloads the page when it ends, so the Start button comes back
        job_monitor(jobs[-1].job_id, follow_up=True, reload_when_done=bool(busy))
    if len(jobs) > 1:
        with st.expander(f"Earlier trainings ({len(jobs) - 1})"):
            for link in reversed(jobs[:-1]):
                status = services.job_status_or_none(link.job_id)
                st.write(f"`{link.job_id}` — {status.state if status else 'deleted'}")


# Numbers a training reports, in plain words (others stay in the log and model.json).
METRIC_WORDS = {
    "crop_f1": ("score on your crops (F1, 1 = all objects found exactly)", ".2f"),
    "crop_mean_abs_diameter_error_pct": ("size error on your crops (%)", ".1f"),
    "val_accuracy": ("accuracy on held-back images", ".0%"),
    "val_balanced_accuracy": ("the same, each class counted equally", ".0%"),
    "labelled_objects": ("objects learnt from", "d"),
    "total_seconds": ("training time (s)", ".0f"),
}


def metric_words(metrics: dict) -> list[str]:
    """The known numbers of a training, each as ``words: value``."""
    return [
        f"{words}: {metrics[key]:{fmt}}"
        for key, (words, fmt) in METRIC_WORDS.items()
        if isinstance(metrics.get(key), int | float)
    ]


@st.fragment(run_every=POLL_S)
def job_monitor(job_id: str, follow_up: bool = False, reload_when_done: bool = False) -> None:
    """Live status of one job; refreshes itself every few seconds while the job runs.

    ``reload_when_done`` reruns the whole page once the job has ended (the Results page then
    shows what the job made instead of its progress).
    """
    try:
        status = services.job_status(job_id)
    except NoCodeMLError as error:
        st.error(f"{error} — the job may have been deleted; start a new one.")
        return
    if reload_when_done and status.is_terminal:
        st.rerun(scope="app")
    with st.container(border=True, key="job_monitor"):
        _status_body(job_id, status)
    if status.state == "succeeded" and follow_up:
        project_id = state.get(state.PROJECT_ID)
        project = services.current_project(project_id)
        classify = project is not None and project.task == "classify"
        st.success(
            "Training finished. Next: let the model "
            + ("classify your images." if classify else "find all objects in your images.")
        )
        if offer_prediction(project_id, job_id, classify, "find_objects", " →"):
            navigation.go("results")


def offer_prediction(
    project_id: str, model_job_id: str, classify: bool, key: str, arrow: str = ""
) -> bool:
    """The button that lets a trained model classify the images or find their objects; on a
    click the run is submitted and becomes the one the Results page shows (True)."""
    label = "Classify all images" if classify else "Find objects in all images"
    if not st.button(label + arrow, type="primary", key=key):
        return False
    try:
        with st.spinner("Sending the images to the model…"):
            predict_id = services.submit_prediction(project_id, model_job_id)
    except NoCodeMLError as error:
        st.error(str(error))
        return False
    state.put(state.RESULT_JOB_ID, predict_id)
    return True


def _status_body(job_id: str, status) -> None:
    import plotly.graph_objects as go

    words = {
        "queued": ":material/hourglass_top: Waiting to start",
        "running": ":material/directions_run: Running",
        "succeeded": ":green[:material/check_circle:] Finished",
        "failed": ":red[:material/error:] Failed",
        "cancelled": ":material/stop_circle: Cancelled",
    }
    st.markdown(f"**{words.get(status.state, status.state)}** · job `{job_id}`")
    progress = status.progress
    if progress is not None and not status.is_terminal:
        stage = STAGE_WORDS.get(progress.stage, progress.stage)
        eta = f" · about {_duration(progress.eta_s)} left" if progress.eta_s else ""
        step = f" (step {progress.done} of {progress.total})" if progress.total else ""
        st.progress(progress.fraction, text=f"{stage}{step}{eta}")
        if progress.message:
            st.caption(progress.message)
    elif status.state == "queued":
        st.progress(0.0, text="Waiting for a free worker…")
    if status.error:
        st.error(f"{status.error}")
    history = [p for p in status.metrics_history if "loss" in p.metrics]
    if len(history) >= 2:  # one point draws no line, only empty axes
        figure = go.Figure(
            go.Scatter(
                x=[p.elapsed_s / 60 for p in history],
                y=[p.metrics["loss"] for p in history],
                mode="lines",
                name="loss",
            )
        )
        figure.update_layout(
            title="Training loss (lower is better)",
            xaxis_title="minutes",
            yaxis_title="loss",
            height=260,
            margin={"l": 40, "r": 10, "t": 40, "b": 40},
        )
        st.plotly_chart(figure, key=f"loss_{job_id}")
    if status.state == "succeeded" and status.result_metrics:
        shown = metric_words(status.result_metrics)
        if shown:
            st.caption(" · ".join(shown))
        from pipelines.detection.tuning import weak_class_advice  # scipy: load when needed

        for warning in weak_class_advice(status.result_metrics.get("weak_classes")):
            st.warning(warning)
        from pipelines.classification.evaluation import chance_advice

        if guessing := chance_advice(status.result_metrics):
            st.warning(guessing)
    cols = st.columns([1, 3])
    if not status.is_terminal and cols[0].button("Cancel", key=f"cancel_{job_id}"):
        try:
            services.job_client().cancel(job_id)
        except NoCodeMLError as error:
            st.error(str(error))
    with cols[1].expander("Log"):
        try:
            st.code(services.job_client().log(job_id)[-4000:] or "(empty)", language=None)
        except NoCodeMLError as error:
            st.caption(str(error))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
