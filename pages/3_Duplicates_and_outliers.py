"""Duplicates & outliers: exact groups, SemDeDup eps, kNN outliers, text-quality ranges → the recipe draft."""

import streamlit as st

from curate_core import dupview as core
from curate_ui import dupview, layout

ws = layout.require_workspace("Duplicates & outliers", ":material/content_copy:")
if not layout.stage_gate(ws, ["scores"], "Duplicates & outliers"):
    st.stop()

run_key = core.scores_run(ws.store) or ""
choices = dupview.Choices.from_draft(ws.store.recipe(core.DRAFT))
exact, near, odd, quality = st.tabs(["Exact duplicates", "Near duplicates (SemDeDup)", "Outliers", "Text quality"])
with exact:
    dupview.exact_section(ws, run_key, choices)
with near:
    dupview.semdedup_section(ws, run_key, choices)
with odd:
    dupview.outlier_section(ws, run_key, choices)
with quality:
    dupview.heuristics_section(ws, run_key, choices)
dupview.draft_footer(ws, choices)
