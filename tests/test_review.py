"""The review queue: its order, the reasons and neighbours it shows, decisions into the shared log, resuming
where the person stopped, and the page (AppTest: whole text with HTML shown as text, keys, undo)."""

from __future__ import annotations

import shutil

import pytest

from curate_core import Workspace
from curate_core import labelissues as li
from curate_core import review as rv

from . import labeldata
from .conftest import app_test

PAGE = "pages/2_Review_queue.py"
HTML = "<b>bold</b> <script>alert(1)</script> & **stars**"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    df = labeldata.frame()
    flipped = df["label"] != df["true_label"]
    df.loc[flipped, "text"] = df.loc[flipped, "text"] + " " + HTML
    path = tmp_path_factory.mktemp("review") / "ws"
    labeldata.workspace(path, df=df.drop(columns=["true_label"])).close()
    return path


@pytest.fixture
def ws(template, tmp_path):
    shutil.copytree(template, tmp_path / "ws")
    with Workspace(tmp_path / "ws") as w:
        yield w


def test_queue_orders_reasons_neighbours_and_resume(ws):
    data = li.load(ws.store)
    q = rv.queue(data, "consensus", ws.decisions())
    assert len(q) > 0 and (q["consensus"] >= 1).all()
    assert list(q["consensus"]) == sorted(q["consensus"], reverse=True)
    aum = rv.queue(data, "aum", ws.decisions())
    assert set(aum["row_id"]) == set(q["row_id"]) and list(aum["aum"]) == sorted(aum["aum"])
    first = rv.next_row(q)
    it = rv.item(ws.store, data, q, first)
    assert it.row_id == first
    assert it.text == ws.store.query_df("SELECT text FROM samples WHERE row_id = ?", [first])["text"].iloc[0]
    assert it.reasons and all(isinstance(r, str) for r in it.reasons)
    if it.suggested and it.suggested != it.label:
        assert it.p_suggested is not None and it.p_suggested > it.p_label
    assert len(it.neighbours) == 5 and it.id not in set(it.neighbours["id"])
    # the top of the queue is flagged by ≥ 2 methods: the clean probe's second opinion is there; a row fewer
    # than two methods flag has none (it was in that probe's training set)
    assert q["consensus"].iloc[0] >= 2
    assert it.second is not None and it.second[0] in data.classes and 0 < it.second[1] <= 1 and 0 <= it.second[2] <= 1
    every = rv.queue(data, "consensus", ws.decisions(), flagged_only=False)
    unflagged = int(every.loc[every["consensus"] < 2, "row_id"].iloc[0])
    assert rv.item(ws.store, data, every, unflagged).second is None
    why = " ".join(it.reasons)
    assert any(w in why for w in ("confident learning", "AUM", "data map"))  # it is in the queue: a method flags it

    rv.decide(ws, it, "keep")
    q2 = rv.queue(data, "consensus", ws.decisions())
    second = rv.next_row(q2)
    assert second != first and q2.set_index("row_id").loc[first, "decision"] == "kept"
    assert rv.next_row(q2, skipped=[second]) not in (first, second)
    it2 = rv.item(ws.store, data, q2, second)
    rv.decide(ws, it2, "exclude")
    assert rv.pace(ws.store)[0] == 2
    ws.undo()  # the exclude is undone: that row is next again, and the pace counts one decision
    assert rv.next_row(rv.queue(data, "consensus", ws.decisions())) == second
    assert rv.pace(ws.store)[0] == 1


def test_relabel_needs_a_different_label(ws):
    data = li.load(ws.store)
    q = rv.queue(data, "consensus", ws.decisions())
    it = rv.item(ws.store, data, q, rv.next_row(q))
    other = next(c for c in data.classes if c != it.label)
    msg = rv.decide(ws, it, "relabel", label=other)
    assert f"to `{other}`" in msg
    assert ws.decisions().set_index("row_id").loc[it.row_id, "value"] == other
    with pytest.raises(Exception, match="Nothing to relabel to"):
        rv.decide(ws, it, "relabel", label=it.label)


def test_page_reviews_with_keys_and_shows_html_as_text(ws, app_env):
    path = ws.path
    ws.close()
    app_env(path)
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    assert at.text and any(HTML in t.value for t in at.text)  # st.text: shown as typed, never rendered
    assert not any("<script>" in m.value for m in at.markdown)
    assert any(c.value.startswith("Second opinion: a probe trained on the unflagged rows") for c in at.caption)
    start = at.progress[0].proto.text
    assert start.startswith("0 of ")
    assert {b.proto.shortcut for b in at.button if b.key and b.key.startswith("rv_")} >= {"k", "x", "l", "s", "u"}
    shown = at.text[0].value
    at.button(key="rv_keep").click().run()
    assert any("Kept" in s.value for s in at.success)
    assert at.progress[0].proto.text.startswith("1 of ")
    assert at.text[0].value != shown or len(at.text) == 0  # the next row
    at.button(key="rv_skip").click().run()
    at.button(key="rv_exclude").click().run()
    assert at.progress[0].proto.text.startswith("2 of ")
    at.button(key="rv_undo").click().run()
    assert any(s.value == "Undid the exclude of 1 row (review queue)." for s in at.success)
    assert at.progress[0].proto.text.startswith("1 of ")
    with Workspace(path) as w:
        d = w.decisions()
        assert len(d) == 1 and d["action"].iloc[0] == "keep"
    at2 = app_test(PAGE).run()  # a new session resumes after the kept row
    assert at2.progress[0].proto.text.startswith("1 of ") and not at2.exception


def test_the_queue_can_take_every_labelled_row(ws):
    data = li.load(ws.store)
    flagged = rv.queue(data, "consensus", ws.decisions())
    every = rv.queue(data, "consensus", ws.decisions(), flagged_only=False)
    assert len(every) == len(data.frame) > len(flagged)
    assert list(every["row_id"][:len(flagged)]) == list(flagged["row_id"])  # the flagged rows first


def test_both_label_pages_say_why_there_is_nothing_without_labels(tmp_path, app_env):
    df = labeldata.frame().drop(columns=["label", "true_label"])
    with Workspace(tmp_path / "w") as w:
        w.ingest(df, id="id")
        w.run(["scores"], params=labeldata.params())
    app_env(tmp_path / "w")
    for page, who in ((PAGE, "The review queue needs"), ("pages/2_Label_issues.py", "Label issues need")):
        at = app_test(page).run()
        assert not at.exception, at.exception
        assert any(f"{who} a label column with at least two classes" in i.value for i in at.info), page
