"""Select: thresholds, decisions, dedup, saved selections and a mixture — with live counts — into a recipe.

Every change is written to the workspace's draft recipe, which the Export page (and `export --recipe __draft__`)
uses. Thin page: the editor and charts are in curate_ui/selectview.py, the logic in curate_core/select.py.
"""

import streamlit as st

from curate_ui import layout, selectview as sv

ws = layout.require_workspace("Select", ":material/tune:")
st.caption("Turn what you saw into a subset: every slider move recounts the selection. The recipe is saved as "
           "the workspace's draft; export it on the **Export** page.")

draft = sv.load_draft(ws)
top = st.container()

with st.expander("Filters", expanded=True, icon=":material/filter_alt:"):
    filters, slots = sv.filter_editor(ws, draft)
with st.expander("Decisions, duplicates, saved selections", expanded=True, icon=":material/rule:"):
    steps = sv.steps_editor(ws, draft)
with st.expander("Mixture", expanded=draft["mixture"] is not None, icon=":material/pie_chart:"):
    mixture = sv.mixture_editor(ws, draft)
    suggest_box = st.container()

recipe = {**draft, "filters": filters, **steps, "mixture": mixture,
          "seed": int(st.session_state.get(sv.W + "seed", draft["seed"]))}
sv.save_draft(ws, recipe)
with suggest_box:
    sv.suggest_weights(ws, recipe)

with top:
    counts = sv.counts(ws, recipe)
    if counts is not None:
        sv.metrics(counts)
        sv.warnings(counts)
        table = counts.steps or mixture is not None
        left, right = st.columns([3, 2]) if table else (st.container(), st.container())
        if not counts.steps and mixture is None:
            st.caption("No filters or other steps yet: every row is selected. Add some below, or on the Label "
                       "issues and Duplicates & outliers pages.")
        if counts.group_by:
            left.plotly_chart(sv.composition_chart(counts), key="sel_composition")
        if table:
            right.caption("Rows each step removes, alone and only by it")
            right.dataframe(sv.steps_table(counts, recipe), hide_index=True, width="stretch",
                            column_config=sv.steps_table_config())
        sv.fill_step_captions(counts, slots)
        sv.dsir_fit(ws, recipe)

if counts is not None:
    sv.group_expander(counts)

with st.expander("Recipe tools: save, load, diff, JSON", icon=":material/description:"):
    sv.recipe_tools(ws, recipe)
