"""Real browser: lasso on the Map page selects rows and saves them as a named selection.

AppTest cannot draw a lasso (plotly selections are browser events), so this drives Debian's chromium with
Playwright. It caught a real bug: a figure returned by st.cache_data silently lost lasso/box selection.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from curate_core import Workspace
from tests.conftest import REPO, write_csv
from tests.test_map_stages import FAST, topic_frame

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lasso_selects_rows_and_saves_a_named_selection(tmp_path):
    from playwright.sync_api import sync_playwright

    w = tmp_path / "w"
    with Workspace(w) as ws:
        ws.ingest(write_csv(tmp_path / "a.csv", topic_frame(90)))
        ws.run(["embed", "project", "cluster"], params=FAST)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--browser.gatherUsageStats", "false"], cwd=REPO,
                              env={**os.environ, "CURATE_WORKSPACE": str(w)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
                viewport={"width": 1300, "height": 1400})
            page = browser.new_page()
            deadline = time.monotonic() + 60
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/Map", timeout=30_000)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            page.wait_for_selector(".js-plotly-plot .nsewdrag", timeout=90_000)
            page.wait_for_timeout(2500)
            box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            r = min(box["width"], box["height"]) * 0.45  # a lasso around most of the plot
            page.mouse.move(cx - r, cy - r)
            page.mouse.down()
            for dx, dy in ((r, -r), (r, r), (-r, r), (-r, -r + 3)):
                page.mouse.move(cx + dx, cy + dy, steps=12)
            page.mouse.up()
            page.wait_for_selector("text=rows selected", timeout=60_000)
            page.get_by_role("textbox", name="Save as a named selection").fill("lassoed")
            page.get_by_role("button", name="Save selection").click()
            page.wait_for_selector("text=Saved selection", timeout=60_000)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    with Workspace(w) as ws:
        assert "lassoed" in ws.selections() and ws.selection("lassoed").size >= 10
