"""A user's whole journey in a real browser (Debian chromium via Playwright), against `streamlit run app.py`.

Upload a small CSV, map its columns, run the pipeline and wait for it, see the map, exclude a suspect row on
Label issues, move a slider on Select and watch the count change, export and count the rows of the downloaded
file; upload `clean.json` as the recipe, write the files with the default folder name, and run the command the
page shows to get the same bytes. One text is `<img src=x onerror=alert(1)>…`: it must show as text, never as an element or a script.
Screenshots of every step go to tests/artifacts/ (look at them).
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from curate_core import Workspace

from .browser import ARTIFACTS, chromium, metric, on_failure_shot, settle, shot, streamlit_app
from .conftest import REPO

CLEAN = REPO / "assets" / "recipes" / "clean.json"

pytestmark = pytest.mark.e2e

XSS = "<img src=x onerror=alert(1)> why was my card charged twice for one payment"
TEMPLATES = {
    "billing": ["why was my card charged {n} times", "I see a fee of {n} euros on my statement",
                "refund the double payment of {n} dollars", "my card payment of {n} was declined"],
    "travel": ["book a flight to city {n} next week", "I need a hotel room for {n} nights",
               "is my train to platform {n} delayed", "change my airport transfer to {n} pm"],
    "weather": ["will it rain {n} days from now", "how cold is it tonight, {n} degrees?",
                "is snow expected in the next {n} hours", "forecast for the weekend, {n} percent sun"],
}


def journey_csv(path) -> int:
    rng = random.Random(0)
    rows = []
    for i in range(90):
        label = list(TEMPLATES)[i % 3]
        rows.append({"id": f"j{i:03d}", "text": rng.choice(TEMPLATES[label]).format(n=rng.randint(2, 99)),
                     "label": label})
    rows.append({"id": "j-xss", "text": XSS, "label": "weather"})  # a billing text with the wrong label
    pd.DataFrame(rows).to_csv(path, index=False)
    return len(rows)


def _count(s: str) -> int:
    return int(re.sub(r"[^\d]", "", s))


def test_user_journey_in_a_real_browser(tmp_path):
    n_rows = journey_csv(tmp_path / "journey.csv")
    ws_path = tmp_path / "ws"
    Workspace(ws_path).close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    with streamlit_app(ws_path, log=ARTIFACTS / "e2e-server.log") as url, chromium() as page, on_failure_shot(page):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        settle(page)

        # 1. upload the CSV; the column mapping is pre-filled; add it
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(tmp_path / "journey.csv"))
        page.get_by_role("button", name="Add to workspace").wait_for(timeout=60_000)
        settle(page)
        shot(page, "1-upload-mapping")
        page.get_by_role("button", name="Add to workspace").click()
        page.get_by_text(f"added {n_rows} rows").wait_for(timeout=60_000)
        settle(page)
        assert metric(page, "Rows") == str(n_rows)

        # 2. run the whole pipeline in the app's background thread and wait for it
        page.get_by_role("button", name="Run pipeline", exact=True).click()
        page.get_by_text("Pipeline finished").wait_for(timeout=900_000)
        settle(page)
        shot(page, "2-overview-pipeline-done")

        # 3. the map is drawn
        page.get_by_role("link", name="Map", exact=True).click()
        page.wait_for_selector(".js-plotly-plot .nsewdrag", timeout=120_000)
        settle(page)
        shot(page, "3-map")

        # 3b. search the map: the matches are counted, drawn on top, and saved as a named selection
        want_card = sum("card" in t.lower() for t in pd.read_csv(tmp_path / "journey.csv")["text"])
        page.get_by_role("textbox", name="Search the texts").fill("card")
        page.get_by_test_id("stBaseButton-secondaryFormSubmit").filter(has_text="Search").click()
        page.get_by_text(f"{want_card} rows match").wait_for(timeout=60_000)
        settle(page)
        page.get_by_role("textbox", name="Save as a named selection").fill("cards")
        page.get_by_role("button", name="Save selection").click()
        page.get_by_text(f"Saved selection “cards” ({want_card} rows)").wait_for(timeout=60_000)
        settle(page)
        shot(page, "3b-map-search")

        # 4. label issues: the wrongly labelled row is the top suspect; read it (as text) and exclude it
        page.get_by_role("link", name="Label issues", exact=True).click()
        page.get_by_text("Suspects", exact=True).wait_for(timeout=120_000)
        settle(page)
        grid = page.locator('[data-testid="stDataFrame"]').last
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box
        page.get_by_text("Read the 1 selected row").wait_for(timeout=60_000)
        settle(page)
        code = page.locator('[data-testid="stCode"]').filter(has_text="onerror").first
        assert code.inner_text().strip() == XSS, "the HTML-looking text is shown as text, whole"
        assert page.locator('img[src="x"]').count() == 0, "dataset text became an element"
        page.get_by_role("button", name="Exclude", exact=True).click()
        page.get_by_text("Excluded 1").wait_for(timeout=60_000)
        settle(page)
        assert metric(page, "Excluded · relabelled").startswith("1")
        shot(page, "4-label-issues")

        # 4b. the review queue: every labelled row (the journey has one flagged row, decided above); keep three
        # with the keyboard; the progress line counts them
        page.get_by_role("link", name="Review queue", exact=True).click()
        page.get_by_text("Every labelled row, not only the flagged ones").click()
        progress = page.get_by_text(re.compile(r"^\d+ of [\d,]+ labelled rows? reviewed"))
        progress.wait_for(timeout=120_000)
        settle(page)
        reviewed0, flagged = (int(x.replace(",", "")) for x in re.findall(r"[\d,]+", progress.inner_text())[:2])
        kept = min(3, flagged - reviewed0)
        assert kept >= 1, "nothing left to review"
        for i in range(kept):
            page.get_by_role("heading", name="Review queue").click()  # focus the page, not a widget
            page.keyboard.press("k")
            page.get_by_text(re.compile(rf"^{reviewed0 + i + 1} of [\d,]+ labelled rows? reviewed")).wait_for(
                timeout=60_000)
            settle(page)
        assert page.locator('img[src="x"]').count() == 0
        shot(page, "4b-review-queue")

        # 5. select: the excluded row is gone; a filter slider moves the count live
        page.get_by_role("link", name="Select", exact=True).click()
        page.get_by_text("Filter on").first.wait_for(timeout=120_000)
        settle(page)
        assert _count(metric(page, "Selected rows")) == n_rows - 1
        ms = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Filter on").first
        ms.click()
        page.keyboard.type("n_chars")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
        thumb.wait_for(state="attached", timeout=60_000)
        settle(page)
        thumb.focus()
        for _ in range(10):  # raise the lower end by 10 characters: the shortest texts drop out
            page.keyboard.press("ArrowRight")
        settle(page)
        # the slider sends its value a moment after the last key press: poll instead of trusting one settle()
        for _ in range(60):
            selected = _count(metric(page, "Selected rows"))
            if selected < n_rows - 1:
                break
            page.wait_for_timeout(500)
        assert selected < n_rows - 1, "moving the slider did not change the count"
        # on a busy machine the slider can send a value from the middle of the key presses first, then the last
        # one: read the count once it holds still (the Export page counts the draft the last value wrote)
        for _ in range(20):
            settle(page)
            page.wait_for_timeout(1000)
            again = _count(metric(page, "Selected rows"))
            if again == selected:
                break
            selected = again
        shot(page, "5-select")

        # 6. export: download the data file and count its rows
        page.get_by_role("link", name="Export", exact=True).click()
        page.get_by_role("button", name="Prepare the download").wait_for(timeout=120_000)
        settle(page)
        assert _count(metric(page, "Rows to export")) == selected
        page.get_by_role("button", name="Prepare the download").click()
        button = page.get_by_role("button", name=re.compile(r"Download data\.parquet"))
        button.wait_for(timeout=120_000)
        with page.expect_download() as dl:
            button.click()
        path = tmp_path / "downloaded.parquet"
        dl.value.save_as(path)
        shot(page, "6-export")

        # 7. upload a recipe file and write the files with the default folder name; keep the command shown
        page.get_by_text("A recipe file", exact=True).click()
        settle(page)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(CLEAN))
        page.get_by_role("button", name="Write files").wait_for(timeout=60_000)
        settle(page)
        page.get_by_role("button", name="Write files").click()
        page.get_by_text("Wrote ").first.wait_for(timeout=120_000)
        settle(page)
        shot(page, "7-export-uploaded-recipe")
        command = next(t for t in page.locator('[data-testid="stCode"]').all_inner_texts()
                       if "curate_core export" in t)
    written = Path(re.search(r"--out (\S+)", command).group(1))
    assert (written / "data.parquet").exists() and written.parent == ws_path / "exports"
    assert written.name.startswith("export-")  # the default folder name survived the switch to an uploaded file
    first = (written / "data.parquet").read_bytes()
    assert json.loads((written / "recipe.json").read_text())["dedup"]["exact"] is True  # clean.json's own recipe
    # the app has stopped (one process opens a workspace): run the command as shown, with the venv's python
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(shlex.split(command.replace("\\\n", " ")), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (written / "data.parquet").read_bytes() == first
    assert pq.read_metadata(path).num_rows == selected
    assert not dialogs, f"a script ran in the page: {dialogs}"
    with Workspace(ws_path) as ws:
        d = ws.decisions()
        assert sorted(d["action"]) == ["exclude"] + ["keep"] * kept
        assert ws.samples(["id"], row_ids=d[d["action"] == "exclude"]["row_id"].tolist())["id"].tolist() == ["j-xss"]
        assert ws.selection("cards").size == want_card
