"""Curate — overview page: open/create a workspace, add data, run the pipeline, see what is there.

Run with ``streamlit run app.py [-- --workspace DIR]``. The other pages are the files in pages/ (Streamlit's
pages folder); every page reads the open workspace from curate_ui.state, calls curate_core and draws.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from curate_core import CurateError, Workspace
from curate_ui import cache, charts, layout, runner, state, widgets
from curate_ui.text import plural

ws = layout.page("Overview", ":material/dashboard:")

if ws is None:
    st.markdown(
        "**Curate** helps you look at a labelled text dataset and curate it: a map of clusters, mislabeled and "
        "ambiguous samples, duplicates and outliers, threshold and mixture sliders with live counts, and an "
        "export with a recipe that replays it exactly."
    )
    st.info("Open or create a workspace in the sidebar to begin. The demo workspace (BANKING77 with 10 % "
            "flipped labels) is built by `python -m curate_core demo`.", icon=":material/folder_open:")
    st.stop()

info = cache.info(ws)  # cached until rows, runs, decisions or selections change

# ----------------------------------------------------------------------------------------- add data
widgets.ingest_flash()
with st.expander("Add data", expanded=info["rows"] == 0, icon=":material/upload_file:"):
    widgets.add_data_form(ws)

if info["rows"] == 0:
    st.info("This workspace is empty: add a CSV, TSV, JSONL, Parquet file or a saved Hugging Face dataset above.",
            icon=":material/upload_file:")
    st.stop()

# ----------------------------------------------------------------------------------------- overview
c = st.columns(5)
c[0].metric("Rows", f"{info['rows']:,}")
c[1].metric("Labels", f"{info['labels']:,}", help=f"{info['labelled_rows']:,} rows carry a label")
c[2].metric("Sources", f"{len(info['sources']):,}")
c[3].metric("Tokens", charts.human(info["tokens"]), help="whitespace-separated words")
c[4].metric("Decisions", f"{info['decisions']:,}", help="rows with an exclude / relabel / keep decision in force")
if (long := info.get("long_texts")) and long["long_texts"]:
    window = f" ({long['window_tokens']:,} tokens)" if long.get("window_tokens") else ""
    beyond = (f"; {long['beyond_max']:,} need more than that, and only their first {long['max_windows']} windows count"
              if long["beyond_max"] else "")
    are = "is" if long["long_texts"] == 1 else "are"
    st.caption(f":material/notes: {plural(long['long_texts'], 'text')} {are} longer than the embedding model's window{window}: "
               f"each is embedded as the mean of its windows, up to {long['max_windows']}{beyond}. The probe's word "
               "features (TF-IDF) see every text whole.")

# ----------------------------------------------------------------------------------------- pipeline
st.subheader("Pipeline")
left, right = st.columns([3, 2])
with left:
    st.dataframe(widgets.stage_table(ws, info["stages"]), hide_index=True, width="stretch",
                 column_config=widgets.stage_table_config())
with right:
    run = runner.get_run(ws)
    busy = run is not None and run.running
    todo = [s for s, v in info["stages"].items() if v != "done"]
    label = "Run pipeline" if todo else "Pipeline is up to date"
    if st.button(label, type="primary" if todo else "secondary", disabled=busy or not todo, icon=":material/play_arrow:",
                 help="runs every stage that is not done yet, in a background thread; finished work is reused"):
        runner.start_run(ws)
        st.rerun()
    if todo and not busy:
        st.caption(f"{len(todo)} of {len(info['stages'])} stages to run ({', '.join(todo)}). Progress and the time "
                   "left show here; the pages fill in as stages finish.")
    widgets.engine_panel(disabled=busy)
    layout.run_progress(ws, home=True)
    if not todo and not busy:
        widgets.next_steps()
    st.caption(f"CLI: `python -m curate_core run --workspace {ws.path}`")

# ----------------------------------------------------------------------------------------- data
left, right = st.columns([3, 2])
with left:
    st.subheader("Labels")
    if info["label_counts"]:
        st.plotly_chart(charts.count_bars(info["label_counts"], "label", "rows"), key="labels_chart")
        counts = sorted(info["label_counts"].values())
        st.caption(f"{len(counts):,} labels; rows per label: min {counts[0]:,}, median {counts[len(counts) // 2]:,}, "
                   f"max {counts[-1]:,}.")
    else:
        st.caption("No labels: label-based scores (confident learning, AUM, data maps) will be skipped.")
with right:
    st.subheader("Sources")
    st.dataframe(pd.DataFrame({"source": list(info["source_counts"]), "rows": list(info["source_counts"].values())}),
                 hide_index=True, width="stretch", height=min(400, 35 * (len(info["source_counts"]) + 1) + 3),
                 column_config={"rows": st.column_config.NumberColumn(format="localized")})
