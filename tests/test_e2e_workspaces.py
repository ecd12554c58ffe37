"""Two tabs on two workspaces, in a real browser: each keeps its own after a reload and a page switch, and every
page says which workspace it shows (issue 20: a new tab silently went back to the server's default)."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pandas as pd
import pytest

from curate_core import Workspace

from .browser import chromium, on_failure_shot, settle, shot, streamlit_app

pytestmark = pytest.mark.e2e


def _shown(page) -> str:
    """The workspace name the page's header caption shows."""
    cap = page.locator('[data-testid="stMain"] [data-testid="stCaptionContainer"]').filter(has_text="Workspace").first
    cap.wait_for(timeout=60_000)
    return cap.inner_text().replace("Workspace", "").strip().split()[-1]


def test_two_tabs_keep_their_own_workspace_across_reloads(tmp_path):
    a, b = tmp_path / "bank-a", tmp_path / "spam-b"
    for p, word in ((a, "card"), (b, "prize")):
        with Workspace(p) as w:
            w.ingest(pd.DataFrame({"text": [f"{word} text {i}" for i in range(12)], "label": ["x", "y"] * 6}))
    with streamlit_app(a) as url, chromium() as one, on_failure_shot(one):
        two = one.context.new_page()
        one.goto(f"{url}/?workspace={quote(str(b))}")
        two.goto(url)  # the server's default
        settle(one), settle(two)
        assert (_shown(one), _shown(two)) == ("spam-b", "bank-a")
        assert f"workspace={a.resolve()}" in unquote(two.url)  # the default, written into the URL
        for p in (one, two):
            p.reload()
            settle(p)
        assert (_shown(one), _shown(two)) == ("spam-b", "bank-a")
        # a page switch in tab one: the same workspace, named on that page too, and still there after a reload
        one.locator('[data-testid="stSidebar"]').get_by_role("link", name="Select").click()
        settle(one)
        one.get_by_role("heading", name="Select").wait_for(timeout=60_000)
        assert _shown(one) == "spam-b"
        one.reload()
        settle(one)
        assert _shown(one) == "spam-b" and "Select" in one.title()
        shot(one, "workspaces-tab-one-select")
        shot(two, "workspaces-tab-two-overview")
