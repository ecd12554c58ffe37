"""Export page (placeholder until its issue lands): Export the selection with a recipe that replays it."""

import streamlit as st

from curate_ui import layout

ws = layout.require_workspace("Export", ":material/download:")
st.info("Coming soon: Export the selection with a recipe that replays it.", icon=":material/construction:")
