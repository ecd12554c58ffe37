"""Label issues page (placeholder until its issue lands): Mislabeled and ambiguous samples (confident learning, AUM, data maps)."""

import streamlit as st

from curate_ui import layout

ws = layout.require_workspace("Label issues", ":material/label:")
st.info("Coming soon: Mislabeled and ambiguous samples (confident learning, AUM, data maps).", icon=":material/construction:")
