"""The pages' caches (curate_ui/cache.py, the Map's points, the Label issues scores) follow the workspace: a
decision, an undo, a saved selection, an ingest or a new run is seen on the next read, never a stale copy."""

from __future__ import annotations

import pandas as pd
import pytest

from curate_core import Workspace
from curate_ui import cache, state

from .conftest import app_test, write_csv
from .test_map_stages import FAST


@pytest.fixture
def open_ws(app_env, tmp_path, small_csv):
    """The app's own Workspace (state.open_workspace) on 40 labelled rows, with textstats run."""
    with Workspace(tmp_path / "w") as w:
        w.ingest(small_csv)
        w.run(["textstats"])
    app_env(tmp_path / "w")
    return state.open_workspace(str(tmp_path / "w"))


def test_store_runs_state_changes_with_every_run_transition(ws, small_csv):
    ws.ingest(small_csv)
    before = ws.store.state("runs")
    ws.store.start_run("k1", "textstats", "1", {}, "in")
    started = ws.store.state("runs")
    ws.store.finish_run("k1", "done", {"n": 1})
    finished = ws.store.state("runs")
    assert len({before, started, finished}) == 3
    ws.store.start_run("k2", "embed", "1", {}, "in")
    running = ws.store.state("runs")
    with ws.store.cursor() as cur:  # what a new run does to a run another process left 'running'
        cur.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
    assert ws.store.state("runs") != running
    assert ws.store.state("runs") == ws.store.state("runs")  # no change, no new token


def test_info_follows_decisions_undo_selections_and_ingest(open_ws, tmp_path):
    ws = open_ws
    info = cache.info(ws)
    assert info["rows"] == 40 and info["decisions"] == 0 and info["selections"] == {}
    assert cache.info(ws) == info  # unchanged workspace: the same answer
    ws.decide([0, 1, 2], "exclude")
    assert cache.info(ws)["decisions"] == 3
    ws.undo()
    assert cache.info(ws)["decisions"] == 0
    ws.save_selection("pick", [4, 5])
    assert cache.info(ws)["selections"] == {"pick": 2}
    more = write_csv(tmp_path / "more.csv", [{"id": f"n{i}", "text": f"new text {i}", "label": "travel"}
                                              for i in range(5)])
    ws.ingest(more)
    info = cache.info(ws)
    assert info["rows"] == 45 and info["label_counts"]["travel"] > 0
    assert info["stages"]["textstats"] != "done"  # the data changed: its run no longer matches


def test_status_latest_runs_and_params_follow_runs(open_ws):
    ws = open_ws
    assert cache.status(ws)["textstats"] == "done" and cache.status(ws)["embed"] == "missing"
    assert set(cache.latest_runs(ws)) == {"textstats"}
    assert cache.stage_params(ws, "embed")["embedder"] != "tfidf"
    ws.run(["embed"], params={"embed": FAST["embed"]})
    assert cache.status(ws)["embed"] == "done"
    assert set(cache.latest_runs(ws)) == {"textstats", "embed"}
    assert cache.stage_params(ws, "embed")["embedder"] == "tfidf"  # sticky: the next run keeps it
    params = cache.stage_params(ws, "embed")
    params["embedder"] = "changed by the caller"  # a copy: the cached one stays as it was
    assert cache.stage_params(ws, "embed")["embedder"] == "tfidf"


def test_overview_counts_change_between_reruns_of_one_session(open_ws):
    """The Overview reads its counts through the cache: a decision made elsewhere (another page, the CLI's
    process is locked out, so: this process) shows on the next rerun of the same session."""
    at = app_test("app.py").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Decisions"] == "0"
    open_ws.decide([3, 7], "exclude")
    at.run()
    assert {m.label: m.value for m in at.metric}["Decisions"] == "2"
    open_ws.undo()
    at.run()
    assert {m.label: m.value for m in at.metric}["Decisions"] == "0"


def test_stage_gate_opens_once_the_stage_has_run(open_ws):
    at = app_test("pages/1_Map.py").run()
    assert any("needs the" in i.value for i in at.info)
    open_ws.run(["embed", "project", "cluster"], params=FAST)
    at.run()
    assert not at.exception and not any("needs the" in i.value for i in at.info)
    assert at.get("plotly_chart")


# ------------------------------------------------------------------------------------------------ the Map
@pytest.fixture
def map_ws(app_env, tmp_path):
    from .test_map_stages import topic_frame

    with Workspace(tmp_path / "m") as w:
        w.ingest(write_csv(tmp_path / "m.csv", topic_frame(60)))
        w.run(["textstats", "embed", "project", "cluster"], params=FAST)
    app_env(tmp_path / "m")
    return state.open_workspace(str(tmp_path / "m"))


def test_map_reads_texts_for_the_drawn_points_only(map_ws, monkeypatch):
    from curate_core import mapdata
    from curate_core.project import map_points

    asked: list[int] = []
    real = mapdata.short_texts
    monkeypatch.setattr(mapdata, "short_texts",
                        lambda store, ids, chars: asked.append(len(ids)) or real(store, ids, chars))
    df, total = mapdata.load_points(map_ws.store, ["cluster", "label"], max_points=25, text_chars=12)
    assert total == 60 and len(df) == 25 and asked == [25]
    full = map_points(map_ws.store, ["cluster", "label"], text_chars=12).set_index("row_id")
    assert df["text"].tolist() == full.loc[df["row_id"], "text"].tolist()  # each drawn row's own text
    assert df["label"].tolist() == full.loc[df["row_id"], "label"].tolist()
    small, total = mapdata.load_points(map_ws.store, ["cluster"], max_points=100, text_chars=12)
    pd.testing.assert_frame_equal(small[["row_id", "x", "y", "text", "cluster"]],
                                  map_points(map_ws.store, ["cluster"], text_chars=12)[["row_id", "x", "y", "text",
                                                                                         "cluster"]])


def test_map_points_follow_a_new_cluster_run_and_are_not_shared_for_writing(map_ws):
    from curate_ui import mapview

    path = str(map_ws.path)
    v1 = mapview.data_version(map_ws)
    first = mapview.load_points(path, v1, "cluster")
    before = first.points["cluster"].tolist()
    first.points["x"] = 0.0  # a caller's change stays in its copy
    assert (mapview.load_points(path, v1, "cluster").points["x"] != 0.0).any()
    map_ws.run(["cluster"], params={"cluster": {"min_cluster_size": 25}})
    v2 = mapview.data_version(map_ws)
    assert v2 != v1
    now = mapview.load_points(path, v2, "cluster").points
    want = map_ws.store.rows(["row_id", "cluster"]).set_index("row_id")["cluster"]
    assert now["cluster"].tolist() == want.loc[now["row_id"]].tolist() != before


# ------------------------------------------------------------------------------------------- Label issues
def test_label_scores_follow_a_scores_run_and_are_not_shared_for_writing(app_env, tmp_path):
    from curate_ui import labelview

    from . import labeldata

    labeldata.workspace(tmp_path / "l").close()
    app_env(tmp_path / "l")
    ws = state.open_workspace(str(tmp_path / "l"))
    data = labelview.load(ws)
    flags = int(data.frame["aum_flag"].sum())
    data.frame["aum_flag"] = True  # a caller's change stays in its copy
    data.summaries["aum"]["cutoff"] = 123.0
    data.classes.append("made up")
    again = labelview.load(ws)
    assert int(again.frame["aum_flag"].sum()) == flags
    assert again.summaries["aum"]["cutoff"] != 123.0 and "made up" not in again.classes
    points = labelview._datamap(str(ws.path), labelview._data_key(ws))
    assert len(points["row_id"]) == len(points["hover"]) == len(data.frame)
    low = float(data.frame["aum"].min()) - 1.0  # a cutoff below every row: nothing flagged
    params = cache.stage_params(ws, "scores").get("params") or {}
    ws.run(["scores"], params={"scores": {"params": {**params, "aum": {"cutoff": low}}}})
    assert int(labelview.load(ws).frame["aum_flag"].sum()) == 0 != flags
    assert labelview._datamap(str(ws.path), labelview._data_key(ws)) is not points


def test_vline_and_vrect_are_what_plotly_draws():
    import plotly.graph_objects as go

    from curate_ui import charts

    ref = go.Figure(go.Bar(x=[1, 2], y=[3, 4]))
    ref.add_vrect(x0=0.5, x1=1.5, fillcolor="green", opacity=0.08, line_width=0)
    ref.add_vline(x=1.2, line_dash="dash", line_color="firebrick", annotation_text="threshold")
    ref.add_vline(x=1.1, line_dash="dot", line_color="gray", annotation_text="stored", annotation_position="top left",
                  annotation_font_color="gray")
    ref.add_vline(x=1.3, line_color="#E45756")
    lines = [charts.vline(1.2, color="firebrick", dash="dash", text="threshold"),
             charts.vline(1.1, color="gray", dash="dot", text="stored", position="top left", font_color="gray"),
             charts.vline(1.3, color="#E45756")]
    ours = go.Figure(go.Bar(x=[1, 2], y=[3, 4]), layout=dict(
        shapes=[charts.vrect(0.5, 1.5, "green", 0.08), *[s for s, _ in lines]],
        annotations=[a for _, a in lines if a is not None]))
    assert ours.to_dict()["layout"]["shapes"] == ref.to_dict()["layout"]["shapes"]
    assert ours.to_dict()["layout"]["annotations"] == ref.to_dict()["layout"]["annotations"]


# ---------------------------------------------------------------------------------- Duplicates & outliers
def test_duplicates_page_follows_a_new_scores_run(app_env, tmp_path):
    """Its columns, histograms and counts are cached per scores run: a run with other parameters (URLs kept in
    the normalised text) shows its own repeats on the next rerun of the same session."""
    from . import dupdata

    dupdata.workspace(tmp_path / "d").close()
    app_env(tmp_path / "d")
    ws = state.open_workspace(str(tmp_path / "d"))
    at = app_test("pages/3_Duplicates_and_outliers.py").run()
    assert not at.exception, at.exception
    repeats = next(m.value for m in at.metric if m.label == "Repeats (rank > 0)")
    assert repeats == "4"
    params = cache.stage_params(ws, "scores").get("params") or {}
    ws.run(["scores"], params={"scores": {"params": {**params, "dup_rank": {"urls": False}}}})
    want = int((ws.store.rows(["dup_rank"])["dup_rank"] > 0).sum())
    assert want != 4
    at.run()
    assert not at.exception, at.exception
    assert next(m.value for m in at.metric if m.label == "Repeats (rank > 0)") == str(want)
