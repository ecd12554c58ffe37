"""Workspace reads that every rerun of a page repeats, cached until the workspace changes.

A page reruns on every widget change; reading the stage status (a run-key plan over every stage), the latest
runs or the Overview's counts again each time costs tens of milliseconds that buy nothing. These helpers cache
them with ``st.cache_data``, keyed by the workspace path and short tokens from ``Store.state``: ``runs`` (a run
started, finished or was interrupted), ``tables`` (rows ingested, a stage's table replaced), ``decisions`` and
``selections``. A token is one cheap query, so a change made anywhere — this session, another tab, the
background run's thread, the CLI — is seen on the next rerun; nothing here needs clearing by hand.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from curate_core import Workspace
from curate_core.pipeline import plan

from . import state


def token(ws: Workspace, *what: str) -> str:
    """The cache key part for the states *what* depends on (see ``Store.state``)."""
    return "|".join(ws.store.state(w) for w in what)


@st.cache_data(show_spinner=False, max_entries=32)
def _status(path: str, key: str) -> dict[str, str]:
    return state.open_workspace(path).status()


def status(ws: Workspace) -> dict[str, str]:
    """``Workspace.status()``: done / partial / missing per stage (changes with runs, and with ingests, which
    change the data fingerprint every run key includes)."""
    return _status(str(ws.path), token(ws, "runs", "tables"))


@st.cache_data(show_spinner=False, max_entries=32)
def _latest_runs(path: str, key: str) -> dict[str, dict]:
    return state.open_workspace(path).store.latest_runs()


def latest_runs(ws: Workspace) -> dict[str, dict]:
    """``Store.latest_runs()``: the most recent run of each stage."""
    return _latest_runs(str(ws.path), token(ws, "runs"))


@st.cache_data(show_spinner=False, max_entries=32)
def _params(path: str, key: str) -> dict[str, dict]:
    return plan(state.open_workspace(path).store).params


def stage_params(ws: Workspace, stage: str) -> dict[str, Any]:
    """The parameters the next run of *stage* would use (sticky ones from its last run): a copy to edit."""
    return dict(_params(str(ws.path), token(ws, "runs", "tables"))[stage])


@st.cache_data(show_spinner=False, max_entries=16)
def _info(path: str, key: str) -> dict:
    return state.open_workspace(path).info()


def info(ws: Workspace) -> dict:
    """``Workspace.info()`` (the Overview's counts: rows, labels, sources, tokens, stages, decisions …): a few
    scans of the samples table, redone only when rows, runs, decisions or selections change."""
    return _info(str(ws.path), token(ws, "tables", "runs", "decisions", "selections"))
