"""The one owner of ``st.session_state`` keys: what is on screen right now.

Durable things (projects, labels, jobs, models) live in the store; the session only remembers
which of them the user is looking at. The current project is mirrored into the URL
(``?project=<id>``) so a browser reload comes back to the same project.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

PROJECT_ID = "project_id"
IMAGE_NAME = "image_name"
CROP_INDEX = "crop_index"
ACTIVE_CLASS = "active_class"
CANVAS_REVISION = "canvas_revision"
OVERVIEW_REVISION = "overview_revision"
PROPOSAL = "proposal"
RESULT_JOB_ID = "result_job_id"
FLASH = "flash"
LABEL_TAB = "label_tab"
CORRECTING = "correcting"  # (image name, crop index, objects taken over) after "Correct these"
OUTLINE_TAB = "② Outline objects in a crop"

DEFAULTS: dict[str, Any] = {
    PROJECT_ID: None,
    IMAGE_NAME: None,
    CROP_INDEX: 0,
    ACTIVE_CLASS: None,
    CANVAS_REVISION: 0,
    OVERVIEW_REVISION: 0,
    PROPOSAL: None,
    RESULT_JOB_ID: None,
    FLASH: None,
    CORRECTING: None,
}
_URL_KEYS = {PROJECT_ID: "project"}


def init() -> None:
    """Set defaults once per session and restore the project from the URL after a reload."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    for key, param in _URL_KEYS.items():
        if st.session_state[key] is None and param in st.query_params:
            st.session_state[key] = st.query_params[param]
        if st.session_state[key] is not None:
            st.query_params[param] = st.session_state[key]


def get(key: str) -> Any:
    return st.session_state.get(key, DEFAULTS.get(key))


def put(key: str, value: Any) -> None:
    st.session_state[key] = value
    if key in _URL_KEYS:
        if value is None:
            st.query_params.pop(_URL_KEYS[key], None)
        else:
            st.query_params[_URL_KEYS[key]] = value


def select_project(project_id: str | None) -> None:
    """Switch project: forget everything that belonged to the previous one."""
    put(PROJECT_ID, project_id)
    for key in (IMAGE_NAME, CROP_INDEX, ACTIVE_CLASS, PROPOSAL, RESULT_JOB_ID, CORRECTING):
        st.session_state[key] = DEFAULTS[key]


def bump(key: str) -> int:
    """Increase a revision counter (used in widget keys to reset a canvas after an edit)."""
    st.session_state[key] = int(st.session_state.get(key, 0)) + 1
    return st.session_state[key]


def flash(message: str) -> None:
    """A success message shown once on the next run (survives ``st.rerun``)."""
    st.session_state[FLASH] = message


def show_flash() -> None:
    message = st.session_state.get(FLASH)
    if message:
        st.success(message)
        st.session_state[FLASH] = None
