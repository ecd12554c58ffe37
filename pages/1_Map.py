"""Map page (placeholder until its issue lands): The map of the dataset (2-D projection of the embeddings, clusters, lasso selection)."""

import streamlit as st

from curate_ui import layout

ws = layout.require_workspace("Map", ":material/map:")
st.info("Coming soon: The map of the dataset (2-D projection of the embeddings, clusters, lasso selection).", icon=":material/construction:")
