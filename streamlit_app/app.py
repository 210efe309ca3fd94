"""No Code ML web app: the entry script that ``nocode-ml serve`` runs.

Pages appear in the navigation once their inputs exist: Label needs a project, Train needs a
labelled crop, Results needs a training job. Statistics and Models are always reachable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run streamlit_app/app.py` puts streamlit_app/ (not the repository) on sys.path.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from streamlit_app import (  # noqa: E402
    navigation,
    services,
    state,
)


def main() -> None:
    st.set_page_config(page_title="No Code ML", page_icon=":material/biotech:", layout="wide")
    state.init()
    progress = services.project_progress(state.get(state.PROJECT_ID))
    names = ["start"]
    if progress.has_project:
        names.append("label")
    if progress.has_labels:
        names.append("train")
    if progress.has_jobs:
        names.append("results")
    names += ["statistics", "models"]
    page = st.navigation([navigation.page(name, default=name == "start") for name in names])
    navigation.follow(names)
    with st.sidebar:
        if progress.project_name:
            st.caption(f"Project: **{progress.project_name}**")
        if progress.has_project and not progress.has_labels:
            st.caption("**Train** appears here once an object is outlined on the Label page.")
        st.caption(f"Data folder: `{services.data_location()}`")
    page.run()


main()
