"""The one owner of ``st.session_state`` keys: what is on screen right now.

Durable things (projects, labels, jobs, models) live in the store; the session only remembers
which of them the user is looking at. The current project and a correction in progress are
mirrored into the URL (``?project=<id>&correcting=<crop>:<objects>:<image>``) so a browser reload
comes back to the same project, image, crop and "correcting the model" banner. The correction
leaves the URL once the user moves on (another image or crop, another project, a new training).
"""

from __future__ import annotations

import re
import time
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
UPLOAD_REVISION = "upload_revision"  # in uploader keys: a new key empties them after "Add"
DELETE_ASKED = "delete_asked"  # what a Delete button asks to confirm: ("project", id)...
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
    UPLOAD_REVISION: 0,
    DELETE_ASKED: None,
}
_URL_KEYS = {PROJECT_ID: "project", CORRECTING: "correcting"}
_CORRECTING_TEXT = re.compile(r"([0-9]+):([0-9]+):(.+)")


def to_url(key: str, value: Any) -> str:
    """The text a session value has in the URL (``CORRECTING``: ``crop:objects:image``)."""
    if key == CORRECTING:
        name, crop_index, added = value
        return f"{int(crop_index)}:{int(added)}:{name}"
    return str(value)


def from_url(key: str, text: str) -> Any:
    """Inverse of :func:`to_url`; ``None`` for a value someone mistyped in the URL (``CORRECTING``
    needs two whole numbers >= 0 and an image name: ``-1:-3:x`` or ``1:2:`` are rejected)."""
    if key == CORRECTING:
        match = _CORRECTING_TEXT.fullmatch(text)
        if match is None:
            return None
        crop_index, added, name = match.groups()
        return (name, int(crop_index), int(added))
    return text


def url_params() -> dict[str, str]:
    """The query parameters that bring this session's view back after a reload."""
    return {
        param: to_url(key, st.session_state[key])
        for key, param in _URL_KEYS.items()
        if st.session_state.get(key) is not None
    }


def init() -> None:
    """Set defaults once per session and restore the project (and a correction in progress,
    with its image, crop and tab) from the URL after a reload."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    for key, param in _URL_KEYS.items():
        if st.session_state[key] is None and param in st.query_params:
            st.session_state[key] = from_url(key, st.query_params[param])
            if key == CORRECTING and st.session_state[key] is not None:
                name, crop_index, _ = st.session_state[key]
                st.session_state[IMAGE_NAME] = name
                st.session_state[CROP_INDEX] = crop_index
                st.session_state[LABEL_TAB] = OUTLINE_TAB
        if st.session_state[key] is not None:
            st.query_params[param] = to_url(key, st.session_state[key])
        else:
            st.query_params.pop(param, None)


def get(key: str) -> Any:
    return st.session_state.get(key, DEFAULTS.get(key))


def put(key: str, value: Any) -> None:
    st.session_state[key] = value
    if key in _URL_KEYS:
        if value is None:
            st.query_params.pop(_URL_KEYS[key], None)
        else:
            st.query_params[_URL_KEYS[key]] = to_url(key, value)


def select_project(project_id: str | None) -> None:
    """Switch project: forget everything that belonged to the previous one."""
    put(PROJECT_ID, project_id)
    put(CORRECTING, None)
    for key in (IMAGE_NAME, CROP_INDEX, ACTIVE_CLASS, PROPOSAL, RESULT_JOB_ID, DELETE_ASKED):
        st.session_state[key] = DEFAULTS[key]


def stop_correcting() -> None:
    """End a correction in progress (the user moved on to another image or crop), so a reload
    no longer brings its image, crop and tab back."""
    put(CORRECTING, None)


def bump(key: str) -> int:
    """Increase a revision counter (used in widget keys to reset a canvas after an edit)."""
    st.session_state[key] = int(st.session_state.get(key, 0)) + 1
    return st.session_state[key]


# A page's first run after a change is followed at once by more (a drawing canvas reports in
# as it mounts): a message shown only once was gone within a second.
FLASH_SECONDS = 4.0


def flash(message: str, warning: bool = False) -> None:
    """A message for the next runs of the next few seconds (survives ``st.rerun``): a success,
    or with ``warning`` something the user must know (e.g. a drawing that was not saved)."""
    st.session_state[FLASH] = (message, warning, time.monotonic() + FLASH_SECONDS)


def show_flash() -> None:
    value = st.session_state.get(FLASH)
    if not value:
        return
    message, warning, until = value
    if time.monotonic() > until:
        st.session_state[FLASH] = None
    elif warning:
        st.warning(message, icon=":material/warning:")
    else:
        st.success(message)
