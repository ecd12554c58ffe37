"""Reusable page pieces: the add-data form with column mapping, the stage status table."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from curate_core import CurateError, Workspace
from curate_core.ingest import FORMATS

from . import state
from .text import md, md_message

NONE = "(none)"
_STATUS = {"done": "done", "partial": "to rerun", "missing": "not run"}


def stage_table(ws: Workspace, stages: dict[str, str]) -> pd.DataFrame:
    """One row per stage: its status ("in this run" while a background run covers it) and what it computes."""
    from curate_core.pipeline import closure, registry

    from . import runner

    reg = registry()
    run = runner.get_run(ws)
    running: set[str] = set()
    if run is not None and run.running:  # the named stages, and what they need that is not done yet
        named = run.stages or ()
        running = {n for n in closure(run.stages or stages) if stages.get(n) != "done" or n in named}
    return pd.DataFrame({
        "stage": list(stages),
        "status": ["in this run" if s in running else _STATUS.get(v, v) for s, v in stages.items()],
        "what": [reg[s].title if s in reg else "" for s in stages],
    })


def stage_table_config() -> dict:
    return {"stage": st.column_config.TextColumn("stage", width="small"),
            "status": st.column_config.TextColumn(
                "status", width="small", help="done · in this run · not run · to rerun (interrupted, failed, or its "
                                              "inputs or settings changed since it ran)"),
            "what": st.column_config.TextColumn("what it computes", width="large")}


#: where to go once the pipeline is done: (page file, short label, icon, what the page is for)
NEXT_STEPS = [
    ("pages/1_Map.py", "Map: the clusters", ":material/scatter_plot:",
     "the data in 2-D, coloured by label, cluster or any score; lasso an odd region to save it as a selection"),
    ("pages/2_Label_issues.py", "Label issues: review the suspects", ":material/label:",
     "rows that several methods think are mislabelled; exclude, relabel or keep them"),
    ("pages/3_Duplicates_and_outliers.py", "Duplicates & outliers", ":material/content_copy:",
     "exact repeats, near duplicates (SemDeDup), isolated rows and text-quality ranges"),
    ("pages/4_Select.py", "Select, then Export", ":material/tune:",
     "thresholds, dedup and a mixture with live counts; the Export page writes the subset and its recipe"),
]


def next_steps() -> None:
    """Links to the pages to open next, in the order a first look usually goes."""
    st.markdown("**Next steps**")
    for page, label, icon, why in NEXT_STEPS:
        st.page_link(page, label=label, icon=icon, help=why)


def _save_upload(ws: Workspace, up) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(up.name).name).lstrip(".") or "upload"
    folder = ws.path / "uploads"
    folder.mkdir(exist_ok=True)
    dest = folder / name
    data = up.getvalue()
    if not dest.exists() or dest.stat().st_size != len(data) or dest.read_bytes() != data:
        dest.write_bytes(data)
    return dest


def ingest_flash() -> None:
    """The summary of the last ingest, shown once (outside the add-data expander, which closes when data exists)."""
    flash = st.session_state.pop("_ingest_flash", None)
    if flash:
        said = [x for x in flash if not x.startswith("warning: ")]
        st.success(md_message("\n".join(said)), icon=":material/check_circle:")
        for w in (x for x in flash if x.startswith("warning: ")):
            st.warning(md_message(w.removeprefix("warning: ")), icon=":material/warning:")


def add_data_form(ws: Workspace) -> None:
    """Choose a file (upload or path), check the auto-detected column mapping, ingest."""
    how = st.radio("From", ["Upload a file", "A path on this machine"], horizontal=True, key="add_how",
                   label_visibility="collapsed")
    src: str | None = None
    if how == "Upload a file":
        up = st.file_uploader("File", type=sorted(f.lstrip(".") for f in FORMATS), key="add_upload",
                              help="CSV, TSV, JSONL/JSON or Parquet")
        if up is not None:
            src = str(_save_upload(ws, up))
    else:
        p = st.text_input("File or saved Hugging Face dataset folder", key="add_path",
                          placeholder="/data/train.csv")
        src = p.strip() or None
    if not src:
        return
    encoding = st.text_input("Encoding (if not UTF-8)", key="add_encoding", placeholder="utf-8",
                             help="e.g. latin-1 or cp1252 for files written by older spreadsheet programs")
    try:
        inp, mapping, preview = ws.preview(src, encoding=encoding.strip() or None)
    except CurateError as e:
        state.show_error(e)
        return
    cols = [c for c, _ in inp.columns]
    st.caption(f"{inp.format.upper()} · columns: {', '.join(md(c, 40) for c in cols)} · first rows:")
    st.dataframe(preview.head(8), hide_index=True, width="stretch")
    if mapping is None:
        st.warning("No column looks like the text (text, sentence, content, …): choose it below.")

    def idx(options: list[str], value: str | None) -> int:
        return options.index(value) if value in options else 0

    with st.form("add_mapping", border=True):
        c = st.columns(4)
        text = c[0].selectbox("Text column", cols, index=idx(cols, mapping.text) if mapping else None,
                              placeholder="choose the text column")
        opt = [NONE, *cols]
        label = c[1].selectbox("Label column", opt, index=idx(opt, mapping.label if mapping else None))
        id_ = c[2].selectbox("Id column", opt, index=idx(opt, mapping.id if mapping else None),
                             help="left at (none), ids are generated as <source>-<row number>")
        source = c[3].selectbox("Source column", opt, index=idx(opt, mapping.source if mapping else None))
        c2 = st.columns([2, 1])
        source_name = c2[0].text_input("Source name (when there is no source column)", value=inp.name)
        strict = c2[1].checkbox("Refuse empty texts", help="by default rows with an empty text are skipped and counted")
        go = st.form_submit_button("Add to workspace", type="primary", icon=":material/add:")
    if go and text is None:
        st.error("Choose which column holds the text.", icon=":material/error:")
    elif go:
        pick = lambda v: None if v == NONE else v  # noqa: E731
        try:
            with st.spinner("Reading and checking the file …"):
                s = ws.ingest(src, text=text, label=pick(label), id=pick(id_), source=pick(source),
                              source_name=source_name.strip() or None, encoding=encoding.strip() or None,
                              strict=strict)
        except CurateError as e:
            state.show_error(e)
            return
        st.session_state["_ingest_flash"] = s.lines()
        st.rerun()


def engine_panel(disabled: bool = False) -> None:
    """Where the app's runs compute: this process or Ray (an in-process Ray, or a cluster's address), and the
    device of the embedding model. Results are the same everywhere; only the time differs."""
    from curate_core.execution import DEVICES, EXECUTORS

    from . import runner

    cur = runner.engine_settings()
    with st.expander(f"Engine: {cur['engine']}" + (f" at {cur['address']}" if cur["engine"] == "ray" else "")
                     + f" · device {cur['device']}", icon=":material/memory:"):
        engines = list(EXECUTORS)
        engine = st.radio("Run on", engines, index=engines.index(cur["engine"]), horizontal=True, disabled=disabled,
                          key="engine_choice", captions=["this process" if e == "local" else "Ray Data: batches and "
                                                         "tasks spread over workers" for e in engines],
                          help="the same results on every engine; Ray helps when there are many CPUs or a cluster")
        address, cpus = cur["address"], cur["num_cpus"]
        if engine == "ray":
            address = st.text_input("Ray address", value=cur["address"], disabled=disabled, key="engine_address",
                                    help="`local`: a Ray inside the app's process; `auto`: the cluster this machine "
                                         "belongs to; or host:port of a Ray head (`ray start --head` prints it)")
            cpus = st.number_input("CPUs (0 = all)", min_value=0, value=int(cpus or 0), step=1, disabled=disabled,
                                   key="engine_cpus", help="the in-process Ray's size, or the most a run uses on a "
                                                           "cluster") or None
        devices = list(DEVICES)
        device = st.radio("Embedding model on", devices, index=devices.index(cur["device"]), horizontal=True,
                          disabled=disabled, key="engine_device",
                          help="auto: a CUDA GPU when there is one; vectors agree across devices (cosine ≥ 0.9999)")
        st.session_state[runner.ENGINE_KEY] = {"engine": engine, "device": device, "address": address.strip(),
                                              "num_cpus": cpus}
        st.caption("CLI: `python -m curate_core run --engine " + engine
                   + (f" --ray-address {address.strip()}" if engine == "ray" else "")
                   + (f" --ray-num-cpus {cpus}" if engine == "ray" and cpus else "") + f" --device {device}`")
