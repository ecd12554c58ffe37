"""Which workspace the app shows, and the one open Workspace per path (st.cache_resource).

The workspace path comes from, in order: the session (picked in the sidebar), the page's URL
(``?workspace=DIR``, so a reload or a bookmark keeps it and two tabs can show two workspaces), ``streamlit run
app.py -- --workspace DIR``, the ``CURATE_WORKSPACE`` environment variable, or the demo workspace if it was
built. Every page writes the session's workspace back into its URL.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from curate_core import CurateError, Workspace
from curate_core.demo import DEMO_WORKSPACE
from curate_core.errors import environment_error, log_exception

KEY = "workspace_path"
QUERY = "workspace"  # the URL's query parameter


def _cli_workspace() -> str | None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workspace")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.workspace


def default_workspace_path() -> str | None:
    for cand in (_cli_workspace(), os.environ.get("CURATE_WORKSPACE")):
        if cand:
            return str(Path(cand).expanduser().resolve())
    if (DEMO_WORKSPACE / "curate.duckdb").exists():
        return str(DEMO_WORKSPACE)
    return None


def workspace_path() -> str | None:
    if KEY not in st.session_state:
        url = st.query_params.get(QUERY)
        st.session_state[KEY] = str(Path(url).expanduser().resolve()) if url else default_workspace_path()
    path = st.session_state[KEY]
    if path and st.query_params.get(QUERY) != path:  # the URL names it: reloads and new tabs of it keep it
        st.query_params[QUERY] = path
    return path


def set_workspace_path(path: str | None) -> None:
    st.session_state[KEY] = str(Path(path).expanduser().resolve()) if path else None
    if path:
        st.query_params[QUERY] = st.session_state[KEY]
    else:
        st.query_params.pop(QUERY, None)


@st.cache_resource(show_spinner=False)
def _registry() -> dict[str, Workspace]:
    """One Workspace per path for the whole server process (DuckDB allows one writer process)."""
    return {}


def open_workspace(path: str, create: bool = False) -> Workspace:
    """The process-wide Workspace for *path* (opened once; a cursor per operation inside)."""
    path = str(Path(path).expanduser().resolve())
    reg = _registry()
    if path not in reg:  # the holder file lets a CLI command that finds it locked say that the app has it
        reg[path] = Workspace(path, create=create, holder=("app", "the Curate app"))
    return reg[path]


def current_workspace() -> Workspace | None:
    """The open workspace, or None (with the reason shown) when there is none or it cannot be opened.

    A workspace that another process holds (a `curate run` in a terminal, say) stops the page after saying who
    has it and offering to try again: nothing on the page could be read meanwhile, and "no workspace is open"
    would be wrong."""
    path = workspace_path()
    if not path:
        return None
    try:
        return open_workspace(path, create=False)
    except CurateError as e:
        show_error(e)
        if getattr(e, "pid", None) is not None:
            in_use(e)
        return None


def in_use(e: CurateError) -> None:
    """What a page says, and offers, while another process holds its workspace; then the page stops."""
    if getattr(e, "holder", None) == "run":
        st.info("A pipeline run started from a terminal is writing to this workspace. The pages open it again "
                "when that run has finished (its terminal shows the progress); its results are then here.",
                icon=":material/hourglass_top:")
    else:
        st.info("Another program has this workspace open, and DuckDB lets one program at a time use it. The pages "
                "open it again once that program has closed it.", icon=":material/lock:")
    st.button("Try again", key="ws_in_use_retry", icon=":material/refresh:")  # a click reruns the page
    st.stop()


def close_all() -> None:
    """Close every open workspace (tests call this between apps)."""
    reg = _registry()
    for ws in reg.values():
        ws.close()
    reg.clear()


def show_error(e: CurateError) -> None:
    """A CurateError as st.error: message, then the hint in italics (user values in them shown as typed)."""
    from .text import md_message

    st.error(md_message(e.message) + (f"  \n*{md_message(e.hint)}*" if e.hint else ""), icon=":material/error:")


def bug_error(ws: Workspace, e: Exception) -> CurateError:
    """An unexpected exception as a one-line CurateError: the machine's problem (a full disk, a damaged file)
    with what to do, else a bug, whose traceback goes to the workspace's logs/."""
    env = environment_error(e, ws.path)
    if env is not None:
        return env
    path = log_exception(ws.store.log_dir, e)
    return CurateError(f"Unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                       f"this is a bug; the traceback is in {path}")


def guarded(ws: Workspace, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *fn*; a CurateError is shown as such, anything else (a bug) is logged and shown in one line.

    Returns None when it failed, so a page can draw what it can instead of a stack trace.
    """
    try:
        return fn(*args, **kwargs)
    except CurateError as e:
        show_error(e)
    except Exception as e:  # noqa: BLE001 - a bug: never a traceback on the page
        show_error(bug_error(ws, e))
    return None
