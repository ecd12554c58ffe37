"""Export: write the selection of a recipe (data file + recipe.json + manifest.json) or download it as a zip.

Thin page: logic in curate_core/export.py, pieces in curate_ui/exportview.py.
"""

import json

import streamlit as st

from curate_core import CurateError
from curate_core import export as E
from curate_ui import exportview as ev
from curate_ui import layout, state
from curate_ui.text import md_message
from curate_ui import selectview as sv

ws = layout.require_workspace("Export", ":material/download:")
st.caption("Write the rows a recipe selects with the recipe and a manifest, so the same files can be made again "
           "from the command line or on another machine.")

recipe, ref = ev.choose_recipe(ws)
if recipe is None:
    st.stop()
counts = ev.summary(ws, recipe)
if counts is None:
    st.stop()
sv.group_expander(counts)

c1, c2, c3 = st.columns(3)
fmt = c1.radio("Format", list(E.FORMATS), horizontal=True, key="exp_fmt")
with_scores = c2.checkbox("Add score columns", key="exp_scores", help="every score / stage-output column")
with_weights = c3.checkbox("Add the soft weight column", key="exp_weights",
                           help="the group's target share / its achieved share, for reweighting instead of dropping")
csv_safe = fmt == "csv" and c1.checkbox(
    "Spreadsheet-safe CSV", key="exp_csv_safe",
    help="put ' before cells a spreadsheet would run as formulas (starting with = + - @ or a tab, not numbers); "
         "this changes those cells, so it is off by default — the export always counts them and warns")

st.subheader("Write to a folder")
c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
base = ev.exports_folder(ws)  # fixed for the page: a browser must not choose where on the server files go
c1.caption(f"Into a sub-folder of `{base}`", help=f"the app writes only inside this folder; the server sets it "
           f"with the `{ev.EXPORT_DIR_ENV}` environment variable (default: the workspace's `exports/`)")
name = ev.folder_name(c2)
force = st.checkbox("Overwrite files already in that folder", key="exp_force")
if st.button("Write files", type="primary", icon=":material/save:", key="exp_write"):
    with st.spinner(f"Selecting and writing {counts.rows_unique:,} rows …", show_time=True):
        res = state.guarded(ws, E.export, ws, recipe, name, fmt, with_scores, with_weights, force=force, base=base,
                            csv_safe=csv_safe)
    if res is not None:
        st.session_state["exp_last"] = res
if st.session_state.get("exp_last") is not None:
    ev.write_result(st.session_state["exp_last"])

st.subheader("Download")
zip_key = E.cli_command(ws.path, json.dumps(recipe, sort_keys=True), "-", fmt, with_scores, with_weights,
                        csv_safe=csv_safe)
if st.button("Prepare the download", icon=":material/folder_zip:", key="exp_zip"):
    with st.spinner("Preparing the download …", show_time=True):
        d = state.guarded(ws, E.export_download, ws, recipe, fmt, with_scores, with_weights, csv_safe)
    if d is not None:
        st.session_state["exp_download"] = (zip_key, d)
ready = st.session_state.get("exp_download")
if ready is not None and ready[0] == zip_key:  # made from this recipe and these options
    d = ready[1]
    c1, c2 = st.columns(2)
    c1.download_button(f"Download {d.data_name} ({d.manifest['rows']:,} rows, {ev.file_size(len(d.data))})", d.data,
                       file_name=d.data_name, icon=":material/download:", key="exp_dl_data")
    c2.download_button(f"Download all with recipe and manifest (zip, {ev.file_size(len(d.zip))})", d.zip,
                       file_name=f"{name or 'export'}.zip", mime="application/zip", icon=":material/download:",
                       key="exp_dl_zip")
    for w in d.manifest.get("warnings", []):
        st.warning(md_message(w), icon=":material/warning:")

ev.outcome_panel(ws, recipe)

st.subheader("The same from a terminal")
try:
    target = E.out_dir(name, base)
except CurateError as e:
    st.caption(f"Give a valid sub-folder name above to see the command ({md_message(e.message)}).")
    st.stop()
exists = any((target / f).exists() for f in (*E.FORMATS.values(), E.RECIPE_FILE, E.MANIFEST_FILE))
st.code(E.cli_command(ws.path, ref, target, fmt, with_scores, with_weights, force or exists, csv_safe),
        language="bash",
        wrap_lines=True)
st.caption("`--recipe` takes a .json file or the name of a recipe saved in the workspace (an uploaded file is kept "
           "in the workspace's `uploads/` folder)."
           + (" `--force`: the folder holds an export already, which the command replaces." if exists and not force
              else "")
           + " Close the app first: one process at a time can open a workspace.")
