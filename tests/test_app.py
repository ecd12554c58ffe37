"""AppTest for app.py (overview): empty states, add data with column mapping, errors, the pipeline button."""

from __future__ import annotations

import pandas as pd

from curate_core import Workspace
from curate_ui import runner, state

from .conftest import app_test, write_csv


def test_no_workspace_shows_how_to_start(app_env, tmp_path, monkeypatch):
    app_env(None)
    monkeypatch.setattr(state, "DEMO_WORKSPACE", tmp_path / "no-demo")
    at = app_test("app.py").run()
    assert not at.exception
    assert any("Open or create a workspace" in i.value for i in at.info)


def test_overview_add_data_and_run(app_env, tmp_path, small_csv):
    wpath = tmp_path / "w"
    Workspace(wpath).close()
    app_env(wpath)
    at = app_test("app.py").run()
    assert not at.exception
    assert any("empty" in i.value for i in at.info)

    # add a file by path: the mapping form is pre-filled by auto-detection
    at.radio(key="add_how").set_value("A path on this machine").run()
    at.text_input(key="add_path").set_value(str(small_csv)).run()
    assert [s.value for s in at.selectbox][:2] == ["text", "label"]
    at.button[[b.label for b in at.button].index("Add to workspace")].click().run()
    assert not at.exception and not at.error
    assert any("added 40 rows" in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == "40" and metrics["Labels"] == "3"

    # a bad file shows st.error, never a traceback
    bad = write_csv(tmp_path / "bad.csv", [{"foo": 1}])
    at.text_input(key="add_path").set_value(str(bad)).run()
    assert not at.exception
    assert any("No column looks like the text" in w.value for w in at.warning)
    at.button[[b.label for b in at.button].index("Add to workspace")].click().run()
    assert any("Choose which column holds the text" in e.value for e in at.error)
    # a CurateError from ingest (the same ids again) and one from the preview (not UTF-8) are shown as errors
    at.text_input(key="add_path").set_value(str(small_csv)).run()
    at.button[[b.label for b in at.button].index("Add to workspace")].click().run()
    assert any("ids are already in the workspace" in e.value for e in at.error)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text\ncaf\u00e9\n".encode("latin-1"))
    at.text_input(key="add_path").set_value(str(latin)).run()
    assert any("line 2" in e.value and "encoding" in e.value for e in at.error)
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Rows"] == "40"

    # run the pipeline in the background thread, wait for it, and see the status change
    at.button[[b.label for b in at.button].index("Run pipeline")].click().run()
    ws = state.open_workspace(str(wpath))
    run = runner.get_run(ws)
    assert run is not None
    run.wait(120)
    assert run.error is None, run.error
    at.run()
    table = next(d.value for d in at.dataframe if "stage" in d.value.columns)
    assert isinstance(table, pd.DataFrame)
    assert table.set_index("stage").loc["textstats", "status"].endswith("done")
    assert not at.exception
    assert any(s.value.startswith("Pipeline finished") for s in at.success)
    assert set(table["status"]) == {"done"}
    assert any(m.value == "**Next steps**" for m in at.markdown)  # the Overview points to the pages to open next


def test_dataset_values_are_escaped_for_markdown():
    from curate_ui.text import md, md_message, plural, short

    # what would be bold, maths, a colour directive, a link, HTML, an emoji or a heading shows as typed
    assert md("*bold* $5 :red[x] [a](b) <img src=x> :smile:") == \
        r"\*bold\* \$5 \:red\[x\] \[a\](b) \<img src=x\> \:smile\:"
    assert md("# title") == r"\# title" and md("12. item") == r"12\. item" and md("a\n\nb") == "a b"
    assert md("a long label", 6) == "a lon…" and short("x\ny", None) == "x y"
    # a core message keeps its `code` spans; the rest is escaped, lines are kept
    assert md_message("group '$5' uses `a_b`\nhint: *x*") == "group '\\$5' uses `a_b`  \n" + r"hint\: \*x\*"
    assert [plural(n, "row") for n in (0, 1, 2, 12345)] == ["0 rows", "1 row", "2 rows", "12,345 rows"]


def test_overview_engine_panel_picks_where_runs_go(app_env, tmp_path, small_csv):
    """The Engine panel's choice reaches the run: Ray at an address where nothing listens is an error on the
    page (no traceback), with the CLI equivalent under the panel."""
    import socket

    wpath = tmp_path / "w"
    with Workspace(wpath) as w:
        w.ingest(small_csv)
    app_env(wpath)
    at = app_test("app.py").run()
    at.radio(key="engine_choice").set_value("ray").run()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    at.text_input(key="engine_address").set_value(f"127.0.0.1:{port}").run()
    assert any(f"--engine ray --ray-address 127.0.0.1:{port} --device auto" in c.value for c in at.caption)
    at.button[[b.label for b in at.button].index("Run pipeline")].click().run()
    assert not at.exception
    assert any(f"Ray is not reachable at 127.0.0.1\\:{port}" in e.value and "ray start --head" in e.value
               for e in at.error)
    run = runner.get_run(state.open_workspace(str(wpath)))
    assert run is not None and not run.running and run.results == []  # nothing ran


def test_the_url_names_the_workspace_and_every_page_shows_which_one(app_env, tmp_path, small_csv):
    """Issue 20: a new tab silently went back to the demo, and the sidebar cut every path to `…/workspac…`."""
    a, b = tmp_path / "bank-a", tmp_path / "spam-b"
    for p in (a, b):
        with Workspace(p) as w:
            w.ingest(small_csv)
    app_env(a)  # the server's default
    at = app_test("app.py")
    at.query_params["workspace"] = str(b)  # a reload (or a second tab) of a page that showed b
    at.run()
    assert not at.exception, at.exception
    assert any(c.value == ":material/folder_open: Workspace **spam-b**" for c in at.caption), [c.value for c in at.caption]
    assert at.session_state[state.KEY] == str(b.resolve())
    # no workspace in the URL: the default, written into the URL so a reload keeps it
    at = app_test("app.py").run()
    assert str(a.resolve()) in at.query_params["workspace"]
    assert any("Workspace **bank-a**" in c.value for c in at.caption)
    # opening another one from the sidebar moves the URL with it
    at.text_input(key="ws_path_input").set_value(str(b)).run()
    at.button(key="ws_open").click().run()
    assert not at.exception, at.exception
    assert str(b.resolve()) in at.query_params["workspace"]
    assert any("Workspace **spam-b**" in c.value for c in at.caption)
    # every page says which workspace it shows (with the full path on hover)
    for page in ("pages/1_Map.py", "pages/2_Label_issues.py", "pages/2_Review_queue.py",
                 "pages/3_Duplicates_and_outliers.py", "pages/4_Select.py", "pages/5_Export.py"):
        at = app_test(page)
        at.query_params["workspace"] = str(b)
        at.run()
        assert not at.exception, (page, at.exception)
        shown = [c for c in at.caption if "Workspace **spam-b**" in c.value]
        assert shown and shown[0].help == f"`{b.resolve()}`", page


def test_cancel_stops_the_run_at_the_next_batch_and_the_next_run_resumes(app_env, tmp_path, small_csv, monkeypatch):
    import threading

    from curate_core.embedders import TfidfSVD

    wpath = tmp_path / "w"
    with Workspace(wpath) as w:
        w.ingest(small_csv)
    app_env(wpath)
    gate, entered = threading.Event(), threading.Event()
    encode = TfidfSVD.encode

    def held(self, texts):  # the embed batch waits until the test has pressed Cancel
        entered.set()
        gate.wait(30)
        return encode(self, texts)

    monkeypatch.setattr(TfidfSVD, "encode", held)
    ws = state.open_workspace(str(wpath))
    params = {"embed": {"embedder": "tfidf"}}
    run = runner.start_run(ws, ["embed"], params=params)
    assert entered.wait(30)
    at = app_test("app.py").run()
    assert not at.exception, at.exception
    at.button(key="run_cancel").click().run()
    assert run.cancel.is_set()
    at.run()  # the page while the run is stopping
    assert at.button(key="run_cancel").disabled
    assert any("stopping at the next batch" in c.value for c in at.caption)
    gate.set()
    run.wait(60)
    assert not run.running and run.error is None and run.cancelled == "embed"
    assert ws.store.latest_runs()["embed"]["status"] == "interrupted"
    at = app_test("app.py").run()
    assert any("Run cancelled" in w.value and "`embed`" in w.value and "resumes" in w.value for w in at.warning)
    # the next run finishes the stage
    again = runner.start_run(ws, ["embed"], params=params)
    again.wait(60)
    assert again.error is None and again.cancelled is None and ws.status()["embed"] == "done"
