"""Duplicates & outliers page (placeholder until its issue lands): Exact and near duplicates, outliers and text-quality filters."""

import streamlit as st

from curate_ui import layout

ws = layout.require_workspace("Duplicates & outliers", ":material/content_copy:")
st.info("Coming soon: Exact and near duplicates, outliers and text-quality filters.", icon=":material/construction:")
