"""Start page: what the app does, the sample project, new projects, the project list."""

from __future__ import annotations

import streamlit as st

from pipelines.errors import NoCodeMLError
from streamlit_app import navigation, services, state
from streamlit_app.views import deletion

INTRO = (
    "Teach a neural network to **find, count and measure objects** in microscopy images — "
    "no code needed. Outline a few objects in a small part of your image, train, and get every "
    "object in the whole image with its size statistics."
)
STEPS = (
    "1. **Project** — try the sample or upload your image.\n"
    "2. **Label** — draw a few rectangles (*crops*) and outline *every* object inside them.\n"
    "3. **Train** — one click; a progress bar shows how long it takes.\n"
    "4. **Results** — all objects found, sizes, histograms and downloads (LabelMe, CSV, Excel).\n"
    "5. **Correct** — fix what the model got wrong in a region and train again: each round "
    "teaches it your corrections."
)


def render() -> None:
    st.title("No Code ML")
    state.show_flash()
    st.markdown(INTRO)
    left, right = st.columns([3, 2])
    with left:
        st.markdown(STEPS)
    with right, st.container(border=True):
        st.subheader("New here?")
        st.caption(
            "A synthetic electron-microscopy image of nanoparticles, "
            "with a few objects already outlined."
        )
        if st.button("Try the sample", type="primary", key="try_sample", icon=":material/science:"):
            try:
                with st.spinner("Making the sample image and its labels…"):
                    project = services.sample_project()
            except NoCodeMLError as error:
                st.error(str(error))
            else:
                state.select_project(project.project_id)
                state.flash(
                    f"Sample project '{project.name}' is ready: look at the labels, then train."
                )
                navigation.go("label")
        st.caption("Or sort whole images into classes (particle shapes):")
        if st.button(
            "Try the classification sample", key="try_class_sample", icon=":material/category:"
        ):
            try:
                with st.spinner("Making 24 sample images in three classes…"):
                    project = services.classification_sample_project()
            except NoCodeMLError as error:
                st.error(str(error))
            else:
                state.select_project(project.project_id)
                state.flash(
                    f"Sample project '{project.name}' is ready: every image already has its "
                    "class. Look through them, then train."
                )
                navigation.go("label")
    _new_project()
    _project_list()


def _new_project() -> None:
    with st.expander("Start a new project with your own image", expanded=False):
        st.caption(
            f"Images: {services.IMAGE_TYPES_TEXT}. "
            "The pixel size is read from the file when it is stored there. For classification "
            "you can also upload a .zip with one folder per class (fresh/, sintered/, …)."
        )
        with st.form("new_project", clear_on_submit=False, border=False):
            name = st.text_input("Project name", placeholder="e.g. Pd on carbon, batch 3")
            task_label = st.radio(
                "What should the network do?",
                [
                    "Find objects and measure them (detection)",
                    "Sort whole images into classes (classification)",
                ],
                key="new_task",
            )
            classes = st.text_input(
                "Object types or classes, comma separated",
                value="particle",
                help="Detection: one name per kind of object you will outline, e.g. "
                "'particle, single_site'. Classification: at least two classes, e.g. "
                "'fresh, sintered' (not needed with a zip of class folders).",
            )
            upload = st.file_uploader(
                "Images (or a .zip of class folders for classification)",
                type=[*services.IMAGE_TYPES, "zip"],
                accept_multiple_files=True,
                key="new_images",
            )
            submitted = st.form_submit_button("Create project", type="primary")
        if submitted:
            task = "classify" if "classification" in task_label else "detect"
            try:
                with st.spinner("Reading the images and creating the project…"):
                    project = services.create_project(
                        name,
                        task,
                        [c for c in classes.split(",") if c.strip()],
                        [(f.name, f.getvalue()) for f in upload or []],
                    )
            except NoCodeMLError as error:
                st.error(str(error))
                return
            state.select_project(project.project_id)
            state.flash(f"Project '{project.name}' created.")
            navigation.go("label")


def _project_list() -> None:
    st.subheader("Your projects")
    try:
        projects = services.project_store().list_projects()
    except NoCodeMLError as error:
        st.error(f"{error} — check the data folder in the settings, then reload the page.")
        return
    if not projects:
        st.info("No projects yet. Click **Try the sample** above to see how it works.")
        return
    current = state.get(state.PROJECT_ID)
    for project in projects:
        with st.container(border=True, key=f"project_{project.project_id}"):
            cols = st.columns([4, 2, 1, 1])
            marker = " ✅ (open)" if project.project_id == current else ""
            cols[0].markdown(
                f"**{project.name}**{marker}  \n{project.created[:16].replace('T', ' ')}"
            )
            n_models = len(project.train_jobs)
            cols[1].caption(f"{len(project.images)} image(s) · {n_models} training run(s)")
            if cols[2].button("Open", key=f"open_{project.project_id}"):
                state.select_project(project.project_id)
                navigation.go("label")
            asked = ("project", project.project_id)
            if cols[3].button(
                "Delete",
                key=f"delete_{project.project_id}",
                help="Deletes images and labels of this project (asks first)",
            ):
                deletion.ask(asked)
            if deletion.is_asked(asked):
                _confirm_delete(project, current)


def _confirm_delete(project, current: str | None) -> None:
    """The second click a project deletion needs: images and labels cannot be brought back."""

    def delete() -> None:
        services.project_store().delete(project.project_id)
        if project.project_id == current:
            state.select_project(None)
        state.flash(f"Project '{project.name}' deleted.")

    deletion.confirm(
        f"Delete **{project.name}** with its {len(project.images)} image(s) and their labels? "
        "This cannot be undone. Trained models stay on the Models page.",
        f"Yes, delete {project.name} and all its images",
        delete,
        yes_key=f"confirm_delete_{project.project_id}",
        no_key=f"keep_{project.project_id}",
    )
