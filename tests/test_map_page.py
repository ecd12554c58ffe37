"""AppTest for the Map page: gate, render, colour switch, cluster browser, saved selection survives a reload;
plus the page helpers (figure, hover escaping, lasso ids, sampling above the point limit)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from curate_core import Workspace
from curate_ui import mapview
from tests.conftest import app_test, write_csv
from tests.test_map_stages import FAST, topic_frame

PAGE = "pages/1_Map.py"


@pytest.fixture
def map_ws(tmp_path):
    df = topic_frame(60)
    df.loc[0, "text"] = "<b>bold</b> <script>alert(1)</script> card charged"
    with Workspace(tmp_path / "w") as ws:
        ws.ingest(write_csv(tmp_path / "a.csv", df))
        ws.run(["textstats", "embed", "project", "cluster"], params=FAST)
    return tmp_path / "w"


def chart_spec(at) -> dict:
    charts = at.get("plotly_chart")
    assert charts, "no plotly chart on the page"
    return json.loads(charts[0].proto.spec)


def test_map_page_gate_without_stages(app_env, tmp_path):
    with Workspace(tmp_path / "w") as ws:
        ws.ingest(write_csv(tmp_path / "a.csv", topic_frame(10)))
    app_env(tmp_path / "w")
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("needs the" in i.value and "project" in i.value for i in at.info)
    assert any(b.label.startswith("Run ") for b in at.button)


def test_map_page_renders_switches_colour_and_saves_a_selection(app_env, map_ws):
    app_env(map_ws)
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    spec = chart_spec(at)
    traces = spec["data"]
    assert traces and {t["type"] for t in traces} == {"scattergl"}
    assert sum(len(t["customdata"]["bdata"]) if isinstance(t["customdata"], dict) else len(t["customdata"])
               for t in traces) > 0
    hover = " ".join(h for t in traces for h in t["hovertext"])
    assert "&lt;script&gt;" in hover and "<script>" not in hover  # dataset text is escaped
    assert {t["name"].split(" (")[0] for t in traces} >= {"billing", "travel", "weather"}  # coloured by label
    assert at.selectbox(key="map_top").value == 20 and not at.selectbox(key="map_top").disabled

    # numeric colour: one continuous scale with a colour bar
    at.selectbox(key="map_colour").set_value("n_chars").run()
    assert not at.exception
    traces = chart_spec(at)["data"]
    assert any(t["marker"].get("showscale") for t in traces) and at.selectbox(key="map_top").disabled
    at.selectbox(key="map_colour").set_value("cluster").run()
    names = [t["name"] for t in chart_spec(at)["data"]]
    assert any(n.startswith("cluster ") for n in names)

    # cluster browser: highlight a cluster, list its rows, use it as the selection, save it under a name
    clusters = [c for c in at.selectbox(key="map_cluster").options if c != "(none)"]
    assert clusters and len(at.dataframe) >= 1
    at.selectbox(key="map_cluster").select(clusters[0]).run()
    assert not at.exception
    assert chart_spec(at)["data"][-1]["marker"]["color"] == "#d62728"  # the highlighted cluster on top
    at.button(key="cluster_to_selection").click().run()
    assert any("rows selected" in m.value for m in at.markdown)
    at.text_input(key="sel_name").input("my pick")
    at.button[[b.label for b in at.button].index("Save selection")].click().run()
    assert not at.exception
    assert any("Saved selection" in s.value for s in at.success)

    # reload: the selection is in the workspace
    at2 = app_test(PAGE).run()
    assert not at2.exception
    assert any("my pick" in c.value for c in at2.caption)
    from curate_ui import state

    ws = state.open_workspace(str(map_ws))
    assert "my pick" in ws.selections() and ws.selection("my pick").size > 0


def test_selected_row_ids_from_plotly_points():
    pts = [{"curve_number": 0, "point_index": 3, "customdata": 7}, {"customdata": [2]}, {"customdata": 7}, {"x": 1}]
    np.testing.assert_array_equal(mapview.selected_row_ids(pts), [2, 7])
    assert mapview.selected_row_ids([]).size == 0


def test_map_figure_categories_numbers_and_highlight():
    n = 2 * (mapview.CATEGORY_LIMIT + 5)
    pts = pd.DataFrame({"row_id": np.arange(n), "x": np.random.default_rng(0).normal(size=n),
                        "y": np.random.default_rng(1).normal(size=n), "hover": ["t"] * n,
                        "label": [f"l{i % (mapview.CATEGORY_LIMIT + 5)}" for i in range(n)],
                        "cluster": np.r_[np.full(10, -1), np.arange(n - 10) % 4],
                        "score": np.r_[np.full(5, np.nan), np.linspace(0, 1, n - 5)]})
    fig = mapview.map_figure(pts, "label", "category")
    assert len(fig.data) == mapview.CATEGORY_LIMIT + 1 and fig.data[-1].name.startswith("other (5 more)")
    assert sum(len(t.x) for t in fig.data) == n
    fig = mapview.map_figure(pts, "label", "category", top=20)  # the page's default: the 20 largest, the rest grey
    assert len(fig.data) == 21 and fig.data[-1].name.startswith(f"other ({mapview.CATEGORY_LIMIT + 5 - 20} more)")
    assert sum(len(t.x) for t in fig.data) == n and fig.data[-1].marker.color == "#bbbbbb"
    fig = mapview.map_figure(pts, "score", "number", highlight=2)
    assert fig.data[0].name == "score: missing" and fig.data[1].marker.showscale
    assert fig.data[-1].name.startswith("cluster 2") and len(fig.data[-1].x) == (pts["cluster"] == 2).sum()
    fig = mapview.map_figure(pts, "cluster", "category")
    assert fig.data[-1].name.startswith("noise")


def test_load_points_samples_above_the_limit(app_env, map_ws):
    from curate_ui import state

    ws = state.open_workspace(str(map_ws))
    data = mapview.load_points(str(map_ws), "v1", "label", max_points=30)
    assert data.total == 60 and len(data.points) == 30
    again = mapview.load_points(str(map_ws), "v2", "label", max_points=30)
    pd.testing.assert_frame_equal(data.points, again.points)  # deterministic
    per_cluster = data.points["cluster"].value_counts()
    assert set(per_cluster.index) == set(ws.store.rows(["cluster"])["cluster"].unique())


def test_map_settings_rerun_stages_from_the_page(app_env, map_ws):
    from curate_ui import runner, state

    app_env(map_ws)
    at = app_test(PAGE).run()
    at.selectbox(key="map_embedder").select("tfidf")
    at.number_input(key="map_mcs").set_value(7)
    at.button[[b.label for b in at.button].index("Run embed, project, cluster")].click().run()
    assert not at.exception
    ws = state.open_workspace(str(map_ws))
    run = runner.get_run(ws)
    assert run is not None
    run.wait(120)
    assert run.error is None, run.error
    last = ws.store.latest_runs()["cluster"]
    params = json.loads(last["params"]) if isinstance(last["params"], str) else last["params"]
    assert params["min_cluster_size"] == 7 and ws.status()["cluster"] == "done"
    at.run()
    assert not at.exception and chart_spec(at)["data"]


def test_map_page_says_when_it_draws_a_sample(app_env, map_ws, monkeypatch):
    monkeypatch.setattr(mapview, "MAX_POINTS", 25)
    app_env(map_ws)
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("Showing 25 of 60 rows" in i.value and "stratified by cluster" in i.value for i in at.info)
    assert sum(len(t["hovertext"]) for t in chart_spec(at)["data"]) == 25


def search(at, query: str, mode: str = "keyword"):
    """Fill the search form and submit it in one run (form values only count when the form is submitted)."""
    at.text_input(key="map_query").set_value(query)
    at.selectbox(key="map_query_mode").set_value(mode)
    return at.button[[b.label for b in at.button].index("Search")].click().run()


def test_map_search_marks_matches_and_saves_them(app_env, map_ws):
    with Workspace(map_ws) as ws:
        texts = ws.samples(["row_id", "text"])
    want = texts[texts["text"].str.lower().str.contains("card")]["row_id"].tolist()
    app_env(map_ws)
    at = app_test(PAGE).run()
    search(at, "CARD")
    assert not at.exception, at.exception
    assert any(m.value.startswith(f"**{len(want):,} rows match**") for m in at.markdown)
    marked = next(t for t in chart_spec(at)["data"] if t["name"].startswith("search matches"))
    assert marked["name"] == f"search matches ({len(want):,} drawn)"
    assert any(f"{len(want)} rows selected" in m.value for m in at.markdown)  # the matches are the selection
    at.text_input(key="sel_name").input("cards")
    at.button[[b.label for b in at.button].index("Save selection")].click().run()
    with Workspace(map_ws) as ws:
        assert ws.selection("cards").tolist() == sorted(want)
    # a bad regex is an error on the page, not a traceback; meaning search marks the nearest rows
    search(at, "(unclosed", "regex")
    assert not at.exception and any("Invalid regular expression" in e.value for e in at.error)
    search(at, "card payment", "semantic")
    assert any(m.value.startswith(f"**{min(60, mapview.SEMANTIC_K)} nearest rows**") for m in at.markdown)
    at.button(key="map_search_clear").click().run()
    assert not any(t["name"].startswith("search matches") for t in chart_spec(at)["data"])
