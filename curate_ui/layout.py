"""Page frame shared by app.py and pages/: page config, the workspace picker, stage gates, run progress."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from curate_core import CurateError, Workspace

from . import cache, runner, state
from .text import md


def page(title: str, icon: str = ":material/dataset:") -> Workspace | None:
    """Set up a page; returns the open workspace or None (the page then shows its empty state)."""
    path = state.workspace_path()
    name = Path(path).name if path else None
    st.set_page_config(page_title=f"{title} · {name} · Curate" if name else f"{title} · Curate", page_icon=icon,
                       layout="wide")
    sidebar_workspace()
    st.title(title)
    if path:  # which workspace this is, on every page (the full path on hover)
        st.caption(f":material/folder_open: Workspace **{md(name or path)}**", help=f"`{path}`")
    ws = state.current_workspace()
    if ws is not None:
        runner.run_on_open(ws)
    if ws is not None and ws.store.read_only:
        st.info("This workspace's folder cannot be written (a read-only disk or another user's files): every page "
                "reads and counts, exports go to the export folder, but decisions, saved selections and runs need a "
                "writable copy.", icon=":material/lock:")
    return ws


def require_workspace(title: str, icon: str = ":material/dataset:") -> Workspace:
    """Like :func:`page`, but stops the page with a pointer to the Overview when no workspace is open."""
    ws = page(title, icon)
    if ws is None:
        st.info("No workspace is open. Open or create one on the **Overview** page (sidebar), "
                "or start the app with `--workspace DIR`.", icon=":material/folder_open:")
        st.stop()
    if ws.store.count() == 0:
        st.info("This workspace has no rows yet. Add a file on the **Overview** page.", icon=":material/upload_file:")
        st.stop()
    run_progress(ws)  # a run started here or elsewhere: its progress right under the title
    return ws


#: the sidebar's pages (Streamlit's own list is off in .streamlit/config.toml: it would call app.py "app")
PAGES = [("app.py", "Overview", ":material/dashboard:"),
         ("pages/1_Map.py", "Map", ":material/scatter_plot:"),
         ("pages/2_Label_issues.py", "Label issues", ":material/label:"),
         ("pages/2_Review_queue.py", "Review queue", ":material/rate_review:"),
         ("pages/3_Duplicates_and_outliers.py", "Duplicates & outliers", ":material/content_copy:"),
         ("pages/4_Select.py", "Select", ":material/tune:"),
         ("pages/5_Export.py", "Export", ":material/download:")]


def sidebar_workspace() -> None:
    with st.sidebar:
        try:
            for file, label, icon in PAGES:
                st.page_link(file, label=label, icon=icon)
            st.divider()
        except StreamlitPageNotFoundError:  # a page run on its own (AppTest of pages/X.py) knows no other pages
            pass
        path = state.workspace_path()
        st.caption("Workspace")
        if path:
            st.markdown(f"**{md(Path(path).name or path)}**", help=f"`{path}`")
        st.code(path or "(none open)", language=None, wrap_lines=True)
        with st.expander("Open or create a workspace", expanded=path is None):
            new = st.text_input("Folder", value=path or str(Path.cwd() / "workspaces" / "my-dataset"),
                                key="ws_path_input", help="A folder holding curate.duckdb; created if missing.")
            c1, c2 = st.columns(2)
            if c1.button("Open", width="stretch", key="ws_open"):
                _switch(new, create=False)
            if c2.button("Create", width="stretch", key="ws_create"):
                _switch(new, create=True)


def _switch(path: str, create: bool) -> None:
    try:
        state.open_workspace(path, create=create)
    except CurateError as e:
        state.show_error(e)
        return
    state.set_workspace_path(path)
    st.rerun()


def stage_gate(ws: Workspace, stages: list[str], what: str) -> bool:
    """True if every stage in *stages* is done; otherwise explain, offer to run them, and return False."""
    status = cache.status(ws)
    missing = [s for s in stages if status.get(s) != "done"]
    if not missing:
        return True
    run = runner.get_run(ws)
    if run is not None and run.running:
        st.info(f"{what} appears when the pipeline run in progress (above) has finished.",
                icon=":material/hourglass_top:")
        return False
    names = ", ".join(f"`{s}`" for s in missing)
    st.info(f"{what} needs the {names} stage{'s' if len(missing) > 1 else ''}, which "
            f"{'have' if len(missing) > 1 else 'has'} not run on the current data and settings yet (rows were "
            "added, a parameter changed, or this version of the tool computes it differently).",
            icon=":material/info:")
    if st.button(f"Run {', '.join(missing)} now", type="primary", key=f"gate_{'_'.join(missing)}",
                 help="in the background, with progress here; stages they build on run first if needed"):
        runner.start_run(ws, missing)
        st.rerun()
    st.caption(f"Stages they build on run first if needed; the whole pipeline runs from the Overview page. From a "
               f"terminal: `python -m curate_core run --workspace {ws.path} --stages {','.join(missing)}`")
    return False


FINISHED_NOTE_SECONDS = 60  # how long pages other than the Overview say that the run finished


def run_progress(ws: Workspace, home: bool = False) -> None:
    """Progress of the background run (redrawn every second, with the ETA) or how the last run went.

    Only a running run redraws itself (a fragment that reruns every second, and the whole page once it ends), so
    a page without a run does no periodic work. After the run, the Overview (*home*) keeps saying how it went;
    other pages say it for a minute only, so an old run does not sit on every page.
    """
    run = runner.get_run(ws)
    if run is None:
        return
    if run.running or st.session_state.get("_run_was_running"):
        _live_progress(ws)
    elif home or time.monotonic() - (run.finished or 0) < FINISHED_NOTE_SECONDS:
        _run_outcome(run)


@st.fragment(run_every=1.0)
def _live_progress(ws: Workspace) -> None:
    run = runner.get_run(ws)
    if run is not None and run.running:
        ev = run.current()
        if ev is None:
            st.progress(0.0, text="starting …")
        else:
            st.progress(min(max(ev.fraction, 0.0), 1.0), text=ev.describe())
        done = [s for s in run.events if ev is None or s != ev.stage]
        on = "" if run.engine == "local" else f" on {run.engine}"
        # one above the other: beside the caption, in the Overview's narrow pipeline column, the button was cut
        st.caption(f"running{on} for {runner.describe(run)}" + (f" · finished: {', '.join(done)}" if done else "")
                   + (" · stopping at the next batch …" if run.cancel.is_set() else
                      " · you can use the other pages meanwhile"))
        if st.button("Cancel", key="run_cancel", icon=":material/stop_circle:", disabled=run.cancel.is_set(),
                     help="stop the run at the next batch; finished stages and the batches done so far are kept, "
                          "so running it again resumes"):
            run.cancel.set()
            st.rerun(scope="fragment")
        st.session_state["_run_was_running"] = True
        return
    st.session_state.pop("_run_was_running", None)
    st.rerun()  # refresh the whole page: new tables are there now


def _run_outcome(run: runner.BackgroundRun) -> None:
    if run.error is not None:
        state.show_error(run.error)
    elif run.cancelled is not None:
        done = [s for s, ev in run.events.items() if s != run.cancelled and ev.fraction >= 1.0]
        st.warning(f"Run cancelled after {runner.describe(run)}, in the `{run.cancelled}` stage"
                   + (f" (finished: {', '.join(done)})" if done else "")
                   + ". Finished stages and the batches done so far are kept: running it again resumes.",
                   icon=":material/stop_circle:")
    else:
        st.success(run_summary(run), icon=":material/check_circle:")


def run_summary(run: runner.BackgroundRun) -> str:
    """"Pipeline finished in 27 s: ran textstats, embed; reused project." """
    by: dict[str, list[str]] = {}
    for r in run.results:
        by.setdefault(r["status"], []).append(r["stage"])
    order = ["done", "failed", "skipped", "reused"]
    words = {"done": "ran {}", "failed": "{} failed", "skipped": "skipped {}", "reused": "{} already up to date"}
    parts = [words.get(k, k + " {}").format(", ".join(by[k]))
             for k in sorted(by, key=lambda k: order.index(k) if k in order else len(order))]
    return f"Pipeline finished in {runner.describe(run)}" + (": " + "; ".join(parts) if parts else "") + "."
