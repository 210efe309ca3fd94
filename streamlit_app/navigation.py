"""Page registry: one place names the pages, so any page can link to another by name."""

from __future__ import annotations

import importlib

import streamlit as st

from streamlit_app import state

# name -> (title, icon); the module streamlit_app.views.<name> has render().
PAGES = {
    "start": ("Start", ":material/home:"),
    "label": ("Label", ":material/edit:"),
    "train": ("Train", ":material/model_training:"),
    "results": ("Results", ":material/bar_chart:"),
    "statistics": ("Statistics", ":material/straighten:"),
    "models": ("Models", ":material/inventory_2:"),
}


def page(name: str, default: bool = False) -> st.Page:
    title, icon = PAGES[name]
    module = importlib.import_module(f"streamlit_app.views.{name}")
    return st.Page(module.render, title=title, icon=icon, url_path=name, default=default)


GOTO = "goto_page"


def go(name: str) -> None:
    """Switch to a page on the next run, once the navigation knows it (it may be new)."""
    st.session_state[GOTO] = name
    st.rerun()


def follow(available: list[str]) -> None:
    """Called by app.py after ``st.navigation``: perform a pending :func:`go`."""
    name = st.session_state.pop(GOTO, None)
    if name in available:
        st.switch_page(page(name, default=name == "start"), query_params=state.url_params() or None)
