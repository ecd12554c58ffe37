"""Review queue: the flagged rows one at a time — whole text, labels with the probe's probabilities, why each
method flagged it, its nearest neighbours — decided with the keyboard (curate_core.review)."""

import streamlit as st

from curate_ui import labelview, layout, reviewview

ws = layout.require_workspace("Review queue", ":material/rate_review:")
if not layout.stage_gate(ws, ["scores"], "The review queue"):
    st.stop()
data = labelview.load(ws)
if data.missing:
    st.info(data.missing + " The review queue needs a label column with at least two classes and two rows per class.",
            icon=":material/info:")
    st.stop()
reviewview.page(ws, data)
