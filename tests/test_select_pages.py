"""AppTest for the Select and Export pages: a slider move changes the count; export writes files."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from .conftest import app_test
from curate_core import select as S
from .select_fixtures import build


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _open_page(tmp_path, app_env, page: str, draft: dict, n: int = 300, scores: bool = True):
    """A synthetic workspace with *draft* as its draft recipe, handed to an AppTest of *page* (already run)."""
    ws = build(tmp_path / "ws", n=n, scores=scores)
    ws.store.save_recipe(S.DRAFT, draft)
    path = ws.path
    ws.close()
    app_env(path)
    at = app_test(page)
    at.run()
    assert not at.exception, at.exception
    return at, path


def test_select_page_slider_move_changes_the_count_and_the_draft(tmp_path, app_env):
    at, path = _open_page(tmp_path, app_env, "pages/4_Select.py",
                          {"filters": [{"column": "outlier_score", "op": "<=", "value": 0.9}],
                           "mixture": {"group_by": "label", "budget": {"rows": 120}, "temperature": 3.0}})
    assert not at.error, [e.value for e in at.error]
    assert _metric(at, "Selected rows") == "120"
    assert _metric(at, "Pass the filters") == f"{S.live_counts(at_store(path), {'filters': [{'column': 'outlier_score', 'op': '<=', 'value': 0.9}]}).rows_pool:,}"
    slider = at.slider(key="sel_w_rng_outlier_score")
    slider.set_value((slider.min, 0.3)).run()
    assert not at.exception, at.exception
    want = S.live_counts(at_store(path), {"filters": [{"column": "outlier_score", "op": "between", "value": [None, 0.3]}]})
    assert _metric(at, "Pass the filters") == f"{want.rows_pool:,}"
    draft = at_store(path).recipe(S.DRAFT)
    assert draft["filters"][0]["op"] == "between" and draft["filters"][0]["value"][1] == 0.3
    # switch the mixture off: every passing row is selected
    at.toggle(key="sel_w_mix_on").set_value(False).run()
    assert _metric(at, "Selected rows") == f"{want.rows_pool:,}"
    assert at_store(path).recipe(S.DRAFT)["mixture"] is None
    # a bool panel: only rows that are not label issues
    at.multiselect(key="sel_w_cols").set_value(["outlier_score", "is_label_issue"]).run()
    at.radio(key="sel_w_bool_is_label_issue").set_value("false").run()
    assert not at.exception, at.exception
    f = at_store(path).recipe(S.DRAFT)["filters"]
    assert {"column": "is_label_issue", "op": "is", "value": False, "nulls": "keep"} in f
    assert int(_metric(at, "Selected rows").replace(",", "")) < want.rows_pool


def test_select_page_shows_what_the_mixture_removes_and_warns_when_it_shrinks_the_selection(tmp_path, app_env):
    at, path = _open_page(tmp_path, app_env, "pages/4_Select.py",
                          {"mixture": {"group_by": "label", "temperature": 1.0}})
    assert not at.exception, at.exception

    def mixture_row():
        t = next(d.value for d in at.dataframe if "step" in d.value.columns)
        return t[t["step"] == "mixture by label"].iloc[0]

    assert mixture_row()["removes only it"] == mixture_row()["removes alone"] == 0 and not at.warning
    at.select_slider(key="sel_w_mix_t").set_value(1000.0).run()
    assert not at.exception, at.exception
    want = S.live_counts(at_store(path), at_store(path).recipe(S.DRAFT))
    assert _metric(at, "Selected rows") == f"{want.rows_selected:,}" and want.rows_selected < 0.75 * want.rows_pool
    assert mixture_row()["removes only it"] == want.rows_pool - want.rows_unique > 0
    # alone, on every row: the same mixture over all rows (here no other step, so the same count)
    assert mixture_row()["removes alone"] == want.rows_total - want.rows_unique
    smallest = truth_labels(path).idxmin()
    shrink = [w.value for w in at.warning if "The mixture's shares keep" in w.value]
    assert len(shrink) == 1 and f"'{smallest}' runs out first" in shrink[0] and "set a budget" in shrink[0]
    # a budget is a deliberate size: no shrink warning
    at.radio(key="sel_w_mix_bk").set_value("rows").run()
    assert not [w for w in at.warning if "The mixture's shares keep" in w.value]


def test_export_page_writes_files(tmp_path, app_env):
    at, path = _open_page(tmp_path, app_env, "pages/5_Export.py",
                          {"filters": [{"column": "lang", "op": "in", "value": ["en"]}]})
    n = S.live_counts(at_store(path), {"filters": [{"column": "lang", "op": "in", "value": ["en"]}]}).rows_selected
    assert _metric(at, "Rows to export") == f"{n:,}"
    assert any("--recipe __draft__" in c.value for c in at.code)
    at.text_input(key="exp_name").set_value("first").run()
    at.button(key="exp_write").click().run()
    assert not at.exception, at.exception
    out = path / "exports" / "first"
    assert pq.read_metadata(out / "data.parquet").num_rows == n
    assert (out / "manifest.json").exists() and (out / "recipe.json").exists()
    # again without overwrite: refused, files untouched
    at.button(key="exp_write").click().run()
    assert any("already holds" in e.value for e in at.error)
    # a traversal name is refused
    at.text_input(key="exp_name").set_value("../evil").run()
    at.button(key="exp_write").click().run()
    assert any("not allowed" in e.value for e in at.error)
    assert not (path / "evil").exists()
    at.button(key="exp_zip").click().run()
    assert not at.exception, at.exception
    assert len(at.get("download_button")) == 2


def test_export_page_keeps_the_folder_name_across_recipe_sources(tmp_path, app_env):
    at, path = _open_page(tmp_path, app_env, "pages/5_Export.py", {"filters": []})
    default = at.text_input(key="exp_name").value
    assert default.startswith("export-")
    at.text_input(key="exp_name").set_value("mine").run()
    at.radio(key="exp_src").set_value("upload").run()  # no file yet: the page stops before the folder box
    assert not at.exception and not any(t.key == "exp_name" for t in at.text_input)
    at.radio(key="exp_src").set_value("draft").run()
    assert at.text_input(key="exp_name").value == "mine"
    assert not any("--force" in c.value for c in at.code)
    at.button(key="exp_write").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert (path / "exports" / "mine" / "data.parquet").exists()
    # the folder holds an export now: the command shown replaces it, and says so
    assert any("--force" in c.value and "exports/mine" in c.value for c in at.code)
    assert any("--force`: the folder holds an export already" in c.value for c in at.caption)


def at_store(path):
    from curate_ui import state

    return state.open_workspace(str(path)).store


def test_select_page_search_step_is_stored_as_a_query(tmp_path, app_env):
    at, path = _open_page(tmp_path, app_env, "pages/4_Select.py", {})
    texts = at_store(path).query_df("SELECT text FROM samples")["text"]
    want = int((texts.str.lower().str.contains("w", regex=False) & texts.str.contains("1", regex=False)).sum())
    at.text_input(key="sel_w_srch_q").set_value("w 1").run()
    assert not at.exception, at.exception
    assert at_store(path).recipe(S.DRAFT)["search"] == [{"query": "w 1", "mode": "keyword", "match": "only"}]
    want_rows = S.live_counts(at_store(path), {"search": [{"query": "w 1"}]}).rows_selected
    assert _metric(at, "Selected rows") == f"{want_rows:,}" and want_rows == want
    at.selectbox(key="sel_w_srch_match").set_value("except").run()
    assert at_store(path).recipe(S.DRAFT)["search"][0]["match"] == "except"
    at.text_input(key="sel_w_srch_q").set_value("").run()
    assert "search" not in at_store(path).recipe(S.DRAFT)


def test_select_page_measures_the_fit_to_the_dsir_target(tmp_path, app_env):
    import numpy as np
    import pandas as pd

    from curate_core import Workspace

    rng = np.random.default_rng(0)
    bank, sky = "card payment refund transfer balance fee".split(), "rain snow storm sunny cloud wind".split()
    texts = [" ".join(rng.choice(bank if i < 60 else sky, 5)) + f" {i}" for i in range(240)]
    with Workspace(tmp_path / "ws") as ws:
        ws.ingest(pd.DataFrame({"id": [f"r{i}" for i in range(240)], "text": texts}))
        ws.run(["scores"], params={"embed": {"embedder": "tfidf", "dim": 16},
                                   "scores": {"params": {"dsir": {"target": texts[:30]}}}})
        ws.store.save_recipe(S.DRAFT, {"mixture": {"group_by": None, "budget": {"rows": 60},
                                                   "quality": {"column": "dsir_weight", "strength": 1}}})
        path = ws.path
    app_env(path)
    at = app_test("pages/4_Select.py")
    at.run()
    assert not at.exception, at.exception
    assert not any(m.label == "KL reduction" for m in at.metric)  # measured on request only
    at.button(key="sel_dsir_fit").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert float(_metric(at, "KL reduction").split()[0]) > 0


def test_select_page_suggests_mixture_weights_and_applies_them_to_the_sliders(tmp_path, app_env):
    import pandas as pd

    from curate_core import Workspace
    from curate_ui import runner, state

    from .test_mixsearch import SOURCES, rows

    with Workspace(tmp_path / "ws") as ws:
        ws.ingest(pd.DataFrame([r for k, (s, f) in enumerate(SOURCES) for r in rows(120, k, f, s)]))
        ws.run(["embed"], params={"embed": {"embedder": "tfidf", "dim": 32}})
        ws.store.save_recipe(S.DRAFT, {"mixture": {"group_by": "source", "budget": {"rows": 150}}})
        path = ws.path
    app_env(path)
    at = app_test("pages/4_Select.py")
    at.run()
    assert not at.exception, at.exception
    assert at.number_input(key="sel_w_ms_budget").value == 150  # the recipe's budget
    at.number_input(key="sel_w_ms_trials").set_value(8).run()
    at.button(key="sel_mix_suggest").click().run()
    assert not at.exception, at.exception
    job = runner.get_job(state.open_workspace(str(path)), "mixsearch")
    assert job is not None
    job.wait(300)
    assert job.error is None, job.error
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    r = job.result
    assert len(r.trials) == 8 and all(t.predicted is not None for t in r.trials)
    assert _metric(at, "Suggested: accuracy") == f"{r.measured:.4f}"
    assert _metric(at, "Natural shares") == f"{r.natural.metric:.4f}"
    assert r.weights["noisy"] < r.weights["clean"]
    # apply: the sliders carry the suggestion (largest share = 100), the draft records the search
    at.button(key="sel_mix_apply").click().run()
    assert not at.exception, at.exception
    top = max(r.weights.values())
    for g, w in r.weights.items():
        assert at.slider(key=S_key("w", "source", g)).value == round(100 * w / top)
    mix = at_store(path).recipe(S.DRAFT)["mixture"]
    assert mix["origin"] == r.params and mix["origin"]["trials"] == 8
    assert mix["weights"] == {g: float(round(100 * w / top)) for g, w in r.weights.items()}
    assert any("came from a mixture search (8 trials of 150 rows" in c.value for c in at.caption)
    # a hand move makes the weights the person's own: the record goes
    at.slider(key=S_key("w", "source", "noisy")).set_value(50).run()
    mix = at_store(path).recipe(S.DRAFT)["mixture"]
    assert mix["weights"]["noisy"] == 50 and "origin" not in mix


def S_key(*parts):
    from curate_ui.selectview import _key

    return _key(*parts)


def truth_labels(path):
    """Rows per label in the workspace at *path* (a pandas Series)."""
    return at_store(path).rows(["label"]).groupby("label").size()

