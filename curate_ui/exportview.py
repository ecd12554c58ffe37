"""Export page pieces: choosing the recipe, the summary of what it selects, writing / downloading the files."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from curate_core import CurateError, Workspace
from curate_core import export as E
from curate_core import select as S

from . import charts, state
from . import selectview as sv
from .text import md_message, plural

SOURCES = {"draft": "Draft from the Select page", "saved": "A saved recipe", "upload": "A recipe file"}


def choose_recipe(ws: Workspace) -> tuple[dict | None, str]:
    """(recipe, how the CLI refers to it). None when there is nothing usable yet (the reason is shown)."""
    saved = [n for n in ws.store.recipe_names() if n != S.DRAFT]
    src = st.radio("Recipe", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="exp_src")
    try:
        if src == "draft":
            doc = ws.store.recipe(S.DRAFT)
            if doc is None:
                st.info("No draft yet: every row is exported. Shape a selection on the **Select** page first.",
                        icon=":material/tune:")
                doc = {"filters": [], "decisions": True}
            return S.parse_recipe(doc).to_json(), S.DRAFT
        if src == "saved":
            if not saved:
                st.info("No saved recipes yet: save one on the Select page (Recipe tools).", icon=":material/info:")
                return None, ""
            name = st.selectbox("Saved recipe", saved, key="exp_saved")
            return S.parse_recipe(ws.store.recipe(name)).to_json(), name
        up = st.file_uploader("Recipe (.json)", type=["json"], key="exp_upload")
        if up is None:
            return None, ""
        doc = S.parse_recipe(up.getvalue()).to_json()  # the bytes: a BOM is fine, other encodings are refused
        return doc, str(keep_upload(ws, up.name, up.getvalue()))
    except CurateError as e:
        state.show_error(e)
        return None, ""


def summary(ws: Workspace, recipe: dict) -> S.Counts | None:

    c = state.guarded(ws, S.live_counts, ws.store, recipe)
    if c is None:
        return None
    m = st.columns(4)
    rows_est, tokens_est = sv.estimate_marks(c)
    m[0].metric("Rows to export", f"{rows_est}{c.rows_selected:,}", help=f"{rows_est}{c.rows_unique:,} distinct rows")
    m[1].metric("Tokens", tokens_est + charts.human(c.tokens_selected))
    m[2].metric("Of all rows", f"{c.rows_selected / max(c.rows_total, 1):.1%}")
    m[3].metric("Groups", f"{int((c.groups['rows_selected'] > 0).sum()):,}", help=f"by {c.group_by}")
    sv.warnings(c)
    return c


def keep_upload(ws: Workspace, name: str, data: bytes) -> Path:
    """An uploaded recipe kept as a file in the workspace (``uploads/<hash>-<name>``), so the CLI command the
    page shows names a file that exists."""
    import hashlib

    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in Path(name).name) or "recipe.json"
    path = ws.path / "uploads" / f"{hashlib.sha256(data).hexdigest()[:10]}-{safe}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


NAME = "exp_name"  # the sub-folder name widget
_NAME_KEPT = "_exp_name"  # its value, kept while the widget is not drawn (a page that stops early drops widget state)


def folder_name(where: Any) -> str:
    """The sub-folder name box in *where*: a timestamped default, and the person's own name kept when the page
    stopped early in between (e.g. "A recipe file" before a file is chosen), which drops a widget's state."""
    if _NAME_KEPT not in st.session_state:
        st.session_state[_NAME_KEPT] = "export-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    # missing, or emptied by the browser when the box came back: the last name given (an empty one is refused)
    if not str(st.session_state.get(NAME) or "").strip():
        st.session_state[NAME] = st.session_state[_NAME_KEPT]

    def keep() -> None:
        if str(st.session_state.get(NAME) or "").strip():
            st.session_state[_NAME_KEPT] = st.session_state[NAME]

    return where.text_input("Sub-folder name", key=NAME, on_change=keep, help="letters, digits, '.', '_' and '-'")


def write_result(res: E.ExportResult) -> None:
    st.success(f"Wrote {plural(res.manifest['rows'], 'row')} to `{res.out}`",
               icon=":material/check_circle:")
    for w in res.manifest.get("warnings", []):
        st.warning(md_message(w), icon=":material/warning:")
    files = [*res.files, {"name": E.MANIFEST_FILE, "bytes": (res.out / E.MANIFEST_FILE).stat().st_size}]
    st.dataframe(pd.DataFrame({"file": [f["name"] for f in files], "size": [file_size(f["bytes"]) for f in files],
                               "sha256": [f.get("sha256", "") for f in files]}), hide_index=True, width="stretch",
                 column_config={"sha256": st.column_config.TextColumn("sha256", help="checksum, also in manifest.json")})
    with st.expander("manifest.json"):
        st.code(json.dumps(res.manifest, indent=2, default=str), language="json")


def file_size(n: int) -> str:
    """1234567 → "1.2 MB" (decimal units; the download buttons and the written-files table use it)."""
    for div, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:,} B"


EXPORT_DIR_ENV = "CURATE_EXPORT_DIR"


def exports_folder(ws: Workspace) -> Path:
    """Where the app's exports go: ``$CURATE_EXPORT_DIR/<workspace name>`` when the server sets it, else the
    workspace's ``exports/``. Not a box on the page: the browser only names the sub-folder (checked)."""
    root = os.environ.get(EXPORT_DIR_ENV)
    return Path(root).expanduser().resolve() / ws.path.name if root else ws.path / "exports"


def outcome_panel(ws: Workspace, recipe: dict) -> None:
    """Train the same probe on all rows and on the selection; show both scores on held-out data."""
    from curate_core.evaluate import evaluate


    st.subheader("Did curation help? (outcome check)")
    st.caption("Trains the same classifier (softmax regression on the embeddings) on every labelled row and on "
               "this selection, and scores both on held-out data: a labelled eval file you give, or else a "
               "seeded 20 % of the workspace that the selection never trains on (its labels may be noisy too).")
    path = st.text_input("Labelled eval file (optional)", key="exp_eval_file",
                         placeholder="/data/test.csv — leave empty for a held-out split")
    key = (json.dumps(recipe, sort_keys=True), path.strip())
    if st.button("Run the outcome check", icon=":material/science:", key="exp_eval"):
        last = st.session_state.get("exp_outcome")
        took = f" (the last check took {last[1].seconds:.0f} s)" if last is not None else ""
        with st.spinner(f"Training two classifiers (all rows, then the selection) …{took}", show_time=True):
            out = state.guarded(ws, evaluate, ws, recipe, path.strip() or None)
        if out is not None:
            st.session_state["exp_outcome"] = (key, out)
    done = st.session_state.get("exp_outcome")
    if done is None or done[0] != key:
        return
    out = done[1]
    c = st.columns(3)
    c[0].metric("Accuracy, all rows", f"{out.acc_all:.1%}", help=f"trained on {out.n_all:,} rows")
    d_acc, d_f1 = round(out.delta_acc * 100, 1), round((out.f1_selected - out.f1_all) * 100, 1)
    c[1].metric("Accuracy, selection", f"{out.acc_selected:.1%}", f"{d_acc:+.1f} points",
                delta_color="normal" if d_acc else "off", help=f"trained on {out.n_selected:,} rows")
    c[2].metric("Macro-F1, selection", f"{out.f1_selected:.1%}", f"{d_f1:+.1f} points",
                delta_color="normal" if d_f1 else "off", help=f"all rows: {out.f1_all:.1%}")
    st.caption(f"Evaluated on {md_message(out.eval)} ({out.n_eval:,} rows) in {out.seconds:.1f} s.")
