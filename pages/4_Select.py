"""Select page (placeholder until its issue lands): Thresholds, balancing and mixture sliders with live counts."""

import streamlit as st

from curate_ui import layout

ws = layout.require_workspace("Select", ":material/tune:")
st.info("Coming soon: Thresholds, balancing and mixture sliders with live counts.", icon=":material/construction:")
