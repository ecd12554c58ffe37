"""Curate — entry point: ``streamlit run app.py [-- --workspace DIR]``.

Declares the pages (one file each in pages/); every page reads the open workspace from curate_ui.state,
calls curate_core and draws. Nothing else happens here, so the app starts fast.
"""

import streamlit as st

PAGES = [
    st.Page("pages/0_Overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("pages/1_Map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("pages/2_Label_issues.py", title="Label issues", icon=":material/label_off:"),
    st.Page("pages/3_Duplicates_outliers.py", title="Duplicates & outliers", icon=":material/content_copy:"),
    st.Page("pages/4_Select.py", title="Select", icon=":material/tune:"),
    st.Page("pages/5_Export.py", title="Export", icon=":material/download:"),
]

st.navigation(PAGES).run()
