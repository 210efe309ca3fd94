"""Pure helpers for the pages (geometry, drawing); no Streamlit imports at module level."""
