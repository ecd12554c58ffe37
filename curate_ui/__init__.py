"""Everything that imports streamlit besides pages: the open workspace, background runs, widgets, charts."""
