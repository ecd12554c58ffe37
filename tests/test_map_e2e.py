"""Real browser: lasso on the Map page selects rows and saves them as a named selection.

AppTest cannot draw a lasso (plotly selections are browser events), so this drives Debian's chromium with
Playwright (tests/browser.py). It caught a real bug: a figure returned by st.cache_data silently lost lasso/box
selection.
"""

from __future__ import annotations

import pytest

from curate_core import Workspace
from tests.browser import chromium, on_failure_shot, streamlit_app
from tests.conftest import write_csv
from tests.test_map_stages import FAST, topic_frame

pytestmark = pytest.mark.e2e


def test_lasso_selects_rows_and_saves_a_named_selection(tmp_path):
    w = tmp_path / "w"
    with Workspace(w) as ws:
        ws.ingest(write_csv(tmp_path / "a.csv", topic_frame(90)))
        ws.run(["embed", "project", "cluster"], params=FAST)
    with streamlit_app(w) as url, chromium(1300, 1400) as page, on_failure_shot(page, "map-lasso-failure"):
        page.goto(f"{url}/Map", timeout=60_000)
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
    with Workspace(w) as ws:
        assert "lassoed" in ws.selections() and ws.selection("lassoed").size >= 10
