"""Label issues: mislabelled and ambiguous rows from confident learning, AUM with threshold samples, data maps
and their consensus; exclude / relabel / keep them (an undoable decision log)."""

import streamlit as st

from curate_ui import labelview, layout

ws = layout.require_workspace("Label issues", ":material/label:")
data = labelview.require_data(ws, "Label issues", "Label issues need")

labelview.flash()
decisions = ws.decisions()  # the decisions in force, read once for the metrics and the suspects table
labelview.metrics(data, decisions)
left, right = st.columns(2)
with left:
    cutoff = labelview.aum_panel(ws, data)
with right:
    selection = labelview.datamap_panel(ws, data)
labelview.consensus_panel(ws, data)
try:
    st.page_link("pages/2_Review_queue.py", label="Review the flagged rows one at a time, with the keyboard",
                 icon=":material/rate_review:")
except Exception:  # noqa: BLE001 - a page run on its own (AppTest) knows no other pages
    pass
labelview.suspects_panel(ws, data, decisions, cutoff, selection)
