"""Shared fixtures: temporary workspaces, small data files, AppTest runners."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from curate_core import Workspace  # installed into .venv by the README's set-up (pip install -e .)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: real-browser end-to-end test (Playwright + Debian chromium)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds (real model, subprocesses)")


@pytest.fixture
def ws(tmp_path: Path):
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture
def ews(tmp_path: Path):
    """A 300-row synthetic workspace with made-up scores (tests/select_fixtures.py) for the export tests."""
    from .select_fixtures import build

    w = build(tmp_path / "ws", n=300)
    yield w
    w.close()


def write_csv(path: Path, rows: list[dict] | pd.DataFrame) -> Path:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    df.to_csv(path, index=False)
    return path


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    """40 labelled texts in 3 classes, with ids."""
    topics = {"billing": "my card was charged twice for the payment",
              "travel": "book a flight and a hotel for the trip",
              "weather": "will it rain or snow tomorrow morning"}
    rows = []
    for i in range(40):
        lab = list(topics)[i % 3]
        rows.append({"id": f"r{i:03d}", "text": f"{topics[lab]} number {i}", "label": lab})
    return write_csv(tmp_path / "small.csv", rows)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch):
    """Run AppTest scripts against a given workspace with clean streamlit caches."""
    import streamlit as st

    from curate_ui import state

    def set_ws(path: Path | str | None) -> None:
        if path is None:
            monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
        else:
            monkeypatch.setenv("CURATE_WORKSPACE", str(path))

    st.cache_data.clear()
    yield set_ws
    state.close_all()
    st.cache_resource.clear()
    st.cache_data.clear()


def app_test(script: str, timeout: float = 60):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(REPO / script), default_timeout=timeout)


def kill_9_when(proc, ready: Callable[[], bool], timeout: float = 120.0) -> bool:
    """Wait until ``ready()`` (or *timeout*, or the process ends), then SIGKILL *proc* and reap it: how the
    resume tests kill a run midway. Returns whether it was still running when killed."""
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive
