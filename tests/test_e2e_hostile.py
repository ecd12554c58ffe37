"""Every page on a hostile workspace in a real browser: HTML/JS in texts, labels, sources, a column name, a saved
selection's and a recipe's names must show as text — no dialog, no element made from data, no traceback."""

from __future__ import annotations

import pandas as pd
import pytest

from curate_core import Workspace, select as S

from .browser import chromium, on_failure_shot, settle, shot, streamlit_app

pytestmark = pytest.mark.e2e

IMG = "<img src=x onerror=alert('text')>"
SCRIPT = "<script>alert('label')</script>"
SVG = "\"><svg onload=alert('name')>"
PAGES = ["", "Map", "Label_issues", "Review_queue", "Duplicates_and_outliers", "Select", "Export"]


def hostile_workspace(path) -> None:
    rows = []
    for i in range(120):
        lab = ["billing", "travel", SCRIPT][i % 3]
        text = [f"my card was charged {i} times {IMG}", f"book a flight {i} {SVG}", f"**bold** _x_ {i} `code` $x$"][i % 3]
        rows.append({"id": f"h{i}", "text": text, "label": lab, "source": ["web", SVG][i % 2], IMG: i % 7})
    with Workspace(path) as ws:
        ws.ingest(pd.DataFrame(rows), source="source")
        ws.run(params={"embed": {"embedder": "tfidf"}, "project": {"method": "pca"}, "probe": {"epochs": 10}})
        ws.store.save_selection(SVG, [0, 1, 2])
        ws.store.save_recipe(SVG, {"filters": [{"column": "consensus", "op": "<", "value": 2}]})
        ws.store.save_recipe(S.DRAFT, {"mixture": {"group_by": "label", "temperature": 3.0}})


def test_every_page_shows_hostile_names_and_texts_as_text(tmp_path):
    ws = tmp_path / "ws"
    hostile_workspace(ws)
    dialogs: list[str] = []
    with streamlit_app(ws) as url, chromium() as page, on_failure_shot(page, "hostile-failure"):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        for p in PAGES:
            page.goto(f"{url}/{p}")
            settle(page)
            page.wait_for_timeout(1200)
            body = page.locator('[data-testid="stMain"]').inner_text()
            assert "Traceback" not in body and "Unexpected" not in body, p
            assert page.locator('img[src="x"]').count() == 0, p
            assert page.locator("svg[onload]").count() == 0 and page.locator("main script").count() == 0, p
            shot(page, f"hostile-{p or 'overview'}")
        # the map's hover labels and legends are SVG text made by plotly from the data: hover a few points
        page.goto(f"{url}/Map")
        page.wait_for_selector(".js-plotly-plot .nsewdrag", timeout=120_000)
        settle(page)
        box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
        for fx, fy in ((0.3, 0.3), (0.5, 0.5), (0.7, 0.6), (0.45, 0.55)):
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            page.wait_for_timeout(300)
        assert page.locator('img[src="x"]').count() == 0 and page.locator("svg[onload]").count() == 0
    assert dialogs == []
