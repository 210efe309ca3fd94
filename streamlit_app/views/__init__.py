"""One module per page; each exposes ``render()`` for ``st.Page``.

Not ``pages/``: Streamlit treats a ``pages/`` folder beside the entry script as legacy
multipage pages, which breaks ``st.navigation`` reruns (measured under AppTest).
"""
