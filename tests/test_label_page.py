"""AppTest for pages/2_Label_issues.py (exclude, relabel, keep, bulk, undo, lasso selections, AUM slider) and the
durability of decisions across an app restart and a kill -9."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from curate_core import Workspace
from curate_core import labelissues as li

from . import labeldata
from .conftest import REPO, app_test

PAGE = "pages/2_Label_issues.py"


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def _table(at):
    return next(d.value for d in at.dataframe if "suggested_label" in d.value.columns)


def _select(at, rows):
    gen = at.session_state["_li_gen"] if "_li_gen" in at.session_state else 0  # the table's key changes per action
    at.session_state[f"li_table_{gen}"] = {"selection": {"rows": list(rows), "columns": [], "cells": []}}
    return at.run()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("label-page") / "ws"
    labeldata.workspace(path).close()
    return path


@pytest.fixture
def built(template, tmp_path):
    """A fresh copy of the scored workspace per test (tests add decisions)."""
    path = tmp_path / "ws"
    shutil.copytree(template, path)
    return path


def test_page_exclude_relabel_keep_and_undo(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    assert _metric(at, "Labelled rows") == "160"
    table = _table(at)
    assert len(table) > 0 and (table["consensus"] >= 1).all()
    first, second = table["id"].iloc[0], table["id"].iloc[1]

    _select(at, [0])
    at.button(key="li_exclude").click().run()
    assert not at.exception, at.exception
    assert _metric(at, "Excluded · relabelled") == "1 · 0"
    assert "Excluded 1 row" in at.success[0].value
    assert _table(at).set_index("id").loc[first, "decision"] == "excluded"

    row = _table(at).set_index("id").loc[second]
    _select(at, [1])
    at.button(key="li_relabel_sugg").click().run()
    assert _metric(at, "Excluded · relabelled") == "1 · 1"
    assert _table(at).set_index("id").loc[second, "decision"] == f"→ {row['suggested_label']}"

    _select(at, [1])
    at.selectbox(key="li_target").set_value("music")
    at.button(key="li_relabel").click().run()
    assert _table(at).set_index("id").loc[second, "decision"] == "→ music"

    _select(at, [2])
    at.button(key="li_keep").click().run()
    assert _metric(at, "Reviewed (keep)") == "1"

    at.button(key="li_undo").click().run()  # undoes the keep
    assert _metric(at, "Reviewed (keep)") == "0"
    at.button(key="li_undo").click().run()  # undoes "relabel to music": the suggested relabel is in force again
    assert _table(at).set_index("id").loc[second, "decision"] == f"→ {row['suggested_label']}"
    with Workspace(built) as ws:  # the log is append-only: every action and undo is a row
        log = ws.store.decision_log()
        assert list(log["action"][:2]) == ["undo", "undo"] and len(log) == 6


def test_consensus_button_has_its_own_k_and_the_relabel_menu_starts_at_the_suggestion(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    # the suspects filter shows every flagged row (k = 1); the recipe button keeps clean.json's 2
    assert at.number_input(key="li_min_consensus").value == 1 and at.number_input(key="li_cons_k").value == 2
    assert at.button(key="li_cons_draft").label == "Add to recipe: drop rows flagged by ≥ 2 methods"
    # the page says what the consensus counts, and that two of the methods share their training runs
    said = next(c.value for c in at.caption if c.value.startswith("The consensus counts"))
    assert "3 methods" in said and "confident learning · AUM · data maps" in said and "same probe runs" in said
    at.number_input(key="li_cons_k").set_value(3).run()
    assert at.button(key="li_cons_draft").label == "Add to recipe: drop rows flagged by ≥ 3 methods"
    at.button(key="li_cons_draft").click().run()
    with Workspace(built) as ws:
        assert {"column": "consensus", "op": "<", "value": 3} in ws.store.recipe(li.DRAFT)["filters"]
    table = _table(at)
    pick = next(i for i in range(len(table)) if table["suggested_label"].iloc[i] != sorted(table["label"])[0])
    _select(at, [pick])
    assert at.selectbox(key="li_target").value == table["suggested_label"].iloc[pick]
    at.selectbox(key="li_target").set_value("music").run()  # a person's choice stays while the pick does
    assert at.selectbox(key="li_target").value == "music"
    # undo says what it undid
    at.button(key="li_relabel").click().run()
    at.button(key="li_undo").click().run()
    assert any(s.value == "Undid the relabel of 1 row to `music` (label issues page)." for s in at.success), [s.value for s in at.success]


def test_bulk_relabel_to_suggested_is_one_undoable_batch(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    n = len(_table(at))
    at.radio(key="li_scope").set_value("all").run()
    at.button(key="li_relabel_sugg").click().run()
    assert not at.exception, at.exception
    relabelled = int(_metric(at, "Excluded · relabelled").split("·")[1])
    assert 0 < relabelled <= n
    at.button(key="li_undo").click().run()
    assert _metric(at, "Excluded · relabelled") == "0 · 0"


def test_decisions_survive_an_app_restart(built, app_env):
    from curate_ui import state

    app_env(built)
    at = app_test(PAGE).run()
    _select(at, [0, 1, 2])
    at.button(key="li_exclude").click().run()
    assert _metric(at, "Excluded · relabelled") == "3 · 0"
    state.close_all()  # what a server restart does: the database is closed and opened again
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    at = app_test(PAGE).run()
    assert _metric(at, "Excluded · relabelled") == "3 · 0"


def test_decisions_survive_kill_9(built):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from curate_core import Workspace
        ws = Workspace({str(built)!r})
        ws.decide([0, 1, 2, 3], "exclude")
        ws.relabel_each([5, 6], ["music", "travel"])
        ws.undo()
        ws.decide([7], "keep")
        print("decided", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "decided"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    with Workspace(built) as ws:
        cur = ws.decisions()
    assert cur.set_index("row_id")["action"].to_dict() == {0: "exclude", 1: "exclude", 2: "exclude", 3: "exclude",
                                                           7: "keep"}


def test_lasso_narrows_the_table_and_saves_a_selection(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    at.session_state["li_map"] = {"selection": {"points": [{"point_index": 0}, {"point_index": 3}],
                                                "point_indices": [0, 3], "box": [], "lasso": []}}
    at.session_state["li_min_consensus"] = 0
    at.run()
    assert not at.exception, at.exception
    assert len(_table(at)) == 2
    at.text_input(key="li_sel_name").set_value("odd-ones")
    at.button(key="li_sel_save").click().run()
    with Workspace(built) as ws:
        assert ws.selection("odd-ones").tolist() == [0, 3]


def test_aum_slider_moves_the_count_and_recipe_draft(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    cap = lambda: next(c.value for c in at.caption if "rows below" in c.value)  # noqa: E731
    before = int(cap().split(" of ")[0].replace(",", ""))
    slider = at.slider(key="li_aum_cutoff")
    slider.set_value(slider.min).run()
    assert int(cap().split(" of ")[0].replace(",", "")) < before
    at.session_state["li_cons_k"] = 2
    at.run()
    at.button(key="li_cons_draft").click().run()
    with Workspace(built) as ws:
        draft = ws.store.recipe(li.DRAFT)
    assert {"column": "consensus", "op": "<", "value": 2} in draft["filters"] and draft["version"] == 1


def test_page_explains_missing_labels_and_missing_stages(tmp_path, app_env):
    df = labeldata.frame(n=40).drop(columns=["label"])
    with Workspace(tmp_path / "nolabels") as ws:
        ws.ingest(df, id="id")
        ws.run(["scores"], params={"embed": {"embedder": "precomputed"}})
    app_env(tmp_path / "nolabels")
    at = app_test(PAGE).run()
    assert not at.exception
    assert "needs at least two classes" in at.info[0].value
    labeldata.workspace(tmp_path / "fresh", run=False).close()
    app_env(tmp_path / "fresh")
    at = app_test(PAGE).run()
    assert not at.exception and "needs the `scores` stage" in at.info[0].value


def test_apply_the_slider_cutoff_recomputes_aum_flag(built, app_env):
    from curate_ui import runner, state

    app_env(built)
    at = app_test(PAGE).run()
    slider = at.slider(key="li_aum_cutoff")
    stored_flags = _metric(at, "AUM flags")
    slider.set_value(slider.min).run()
    at.button(key="li_aum_apply").click().run()
    ws = state.open_workspace(str(built))
    run = runner.get_run(ws)
    assert run is not None
    run.wait(120)
    assert run.error is None, run.error
    s = ws.store.get_summary("score:aum")
    assert s["cutoff"] == pytest.approx(slider.min) and "set by hand" in s["why"]
    at.run()
    assert not at.exception, at.exception
    assert _metric(at, "AUM flags") == "0" != stored_flags
    at.button(key="li_aum_reset").click().run()
    runner.get_run(ws).wait(120)
    assert "99th percentile" in ws.store.get_summary("score:aum")["why"]


def test_suspects_narrowed_by_a_search(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    every = _table(at)
    at.text_input(key="li_query").set_value("travel").run()
    assert not at.exception, at.exception
    narrowed = _table(at)
    assert 0 < len(narrowed) < len(every) and narrowed["text"].str.contains("travel").all()
    at.text_input(key="li_query").set_value("re:^(music|weather) ").run()
    assert _table(at)["text"].str.match(r"^(music|weather) ").all()
    at.text_input(key="li_query").set_value("re:(oops").run()
    assert not at.exception and any("Invalid regular expression" in e.value for e in at.error)


def test_a_failed_aum_calibration_is_explained_on_the_page(tmp_path, app_env):
    """A case built to fail: 45 % of the rows per run moved to the fake class on tiny data, so the probe memorises
    them. The page says the calibration failed, why, and what flags instead (the documented fallback)."""
    path = tmp_path / "ws"
    labeldata.workspace(path, threshold_frac=0.45).close()
    app_env(path)
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    warnings = [w.value.replace("\\", "") for w in at.warning]  # markdown escapes of the core's message
    aum = next(w for w in warnings if w.startswith("AUM: calibration failed"))
    assert "memorised" in aum and "Fallback" in aum and "lowest AUM" in aum
    assert any(w.startswith("data maps: calibration failed") for w in warnings)
    assert "Probe features: `embedding`" in " ".join(c.value.replace("\\", "") for c in at.caption)


def test_no_calibration_warning_when_it_holds(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    assert not [w.value for w in at.warning if "calibration failed" in w.value]
    with Workspace(built) as ws:
        assert ws.store.get_summary("score:aum")["calibration"] == "ok"


def test_a_label_with_one_row_is_named_on_the_page_and_the_rest_is_scored(tmp_path, app_env):
    df = labeldata.frame()
    df.loc[0, "label"] = "lonely"
    labeldata.workspace(tmp_path / "ws", df=df).close()
    app_env(tmp_path / "ws")
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    note = next(i.value.replace("\\\\", "") for i in at.info if "single row" in i.value)
    assert "`lonely`" in note and "every other row is scored" in note
    assert _metric(at, "Labelled rows") == "160" and len(_table(at)) > 0
