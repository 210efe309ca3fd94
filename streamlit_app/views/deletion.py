"""The second click every deletion needs: what goes, that it cannot be undone, yes or no.

One page's Delete button records what it asks about in ``state.DELETE_ASKED``; the question
below it then stays until the user answers, so a stray click never loses a project, an image
or a trained model.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import streamlit as st

from pipelines.errors import NoCodeMLError
from streamlit_app import state


def ask(asked: Hashable) -> None:
    """Remember that the user asked to delete ``asked`` (shown until answered)."""
    state.put(state.DELETE_ASKED, asked)


def is_asked(asked: Hashable) -> bool:
    """Whether the question about ``asked`` is open."""
    return state.get(state.DELETE_ASKED) == asked


def confirm(
    question: str,
    yes_label: str,
    delete: Callable[[], None],
    *,
    yes_key: str,
    no_key: str,
) -> None:
    """Warn with ``question``, then run ``delete`` on yes (its one-line error shown if it
    fails) or forget the question on no; either answer closes the question."""
    st.warning(question)
    cols = st.columns(2)
    if cols[0].button(yes_label, type="primary", key=yes_key):
        state.put(state.DELETE_ASKED, None)
        try:
            delete()
        except NoCodeMLError as error:
            st.error(str(error))
            return
        st.rerun()
    if cols[1].button("No, keep it", key=no_key):
        state.put(state.DELETE_ASKED, None)
        st.rerun()
