"""AppTest for pages/3_Duplicates_and_outliers.py: sections, a slider move with live counts, the recipe draft."""

from __future__ import annotations

import pytest

from curate_core import dupview

from . import dupdata
from .conftest import app_test

PAGE = "pages/3_Duplicates_and_outliers.py"


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "ws"
    dupdata.workspace(path).close()
    return path


def test_page_slider_moves_change_counts_and_fill_the_draft(built, app_env):
    from curate_ui import state

    app_env(built)
    ws = state.open_workspace(str(built))
    ws.store.save_recipe(dupview.DRAFT, {**dupview.new_recipe(), "seed": 3,
                                         "filters": [{"column": "is_label_issue", "op": "is", "value": False}]})
    runs = ws.store.run_history(1000)
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    assert _metric(at, "Repeats (rank > 0)") == "4"
    assert _metric(at, "Groups with conflicting labels") == "1"
    removed_default = int(_metric(at, "Rows removed").replace(",", ""))

    at.slider(key="dup_eps").set_value(0.3).run()
    removed_wide = int(_metric(at, "Rows removed").replace(",", ""))
    assert removed_wide > removed_default
    at.slider(key="dup_eps").set_value(0.0).run()
    assert int(_metric(at, "Rows removed").replace(",", "")) <= removed_default

    at.toggle(key="dup_exact").set_value(True)
    at.slider(key="dup_eps").set_value(0.02)
    at.toggle(key="dup_use_eps").set_value(True)
    at.slider(key="dup_range_n_words").set_value((4, 8))
    at.run()
    assert not at.exception, at.exception
    assert any("rows outside the range" in c.value and "n_words" in c.value for c in at.caption)

    draft = ws.store.recipe(dupview.DRAFT)
    assert draft["dedup"] == {"exact": True, "semantic_eps": 0.02}
    assert {"column": "n_words", "op": "between", "value": [4, 8]} in draft["filters"]
    assert {"column": "is_label_issue", "op": "is", "value": False} in draft["filters"]  # other pages' entry kept
    assert draft["seed"] == 3
    # every move above was a filter over stored columns: no stage ran
    assert ws.store.run_history(1000).equals(runs)

    at.slider(key="dup_range_n_words").set_value((at.slider(key="dup_range_n_words").min,
                                                 at.slider(key="dup_range_n_words").max)).run()
    assert all(f["column"] != "n_words" for f in ws.store.recipe(dupview.DRAFT)["filters"])

    at.multiselect(key="dup_langs").select("en").run()
    assert {"column": "lang", "op": "in", "value": ["en"]} in ws.store.recipe(dupview.DRAFT)["filters"]
    others = ws.store.rows(["lang"])["lang"].ne("en").sum()
    assert any(f"**{others:,}** rows in other languages" in c.value for c in at.caption)


def test_semdedup_speaks_of_cells_and_starts_at_a_conservative_eps(built, app_env):
    from curate_core.dedup import DEFAULT_EPS
    from curate_ui import state

    app_env(built)
    state.open_workspace(str(built)).store.save_recipe(dupview.DRAFT, dupview.new_recipe())  # no eps chosen yet
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    assert DEFAULT_EPS == 0.01 and at.slider(key="dup_eps").value == DEFAULT_EPS
    assert "cell" in at.slider(key="dup_eps").label and "cluster" not in at.slider(key="dup_eps").label
    labels = [m.label for m in at.metric]
    assert "k-means cells" in labels and "Clusters" not in labels
    at.slider(key="dup_eps").set_value(0.3).run()
    assert any(m.value.startswith("**Share kept per k-means cell**") for m in at.markdown)
    pairs = next(d.value for d in at.dataframe if "removed_text" in d.value.columns)
    assert "cell" in pairs.columns and "cluster" not in pairs.columns


def test_page_groups_browser_lists_conflicts_first(built, app_env):
    app_env(built)
    at = app_test(PAGE).run()
    pick = at.selectbox(key="dup_pick")
    assert pick.options[0].startswith("⚠ conflicting labels")
    assert len(pick.options) == 3
    first = next(d.value for d in at.dataframe if "dup_rank" in d.value.columns)
    assert sorted(first["label"]) == ["billing", "travel"]  # the conflicting group
    at.selectbox(key="dup_pick").set_value(2).run()  # dup_group 2: the URL variants
    assert not at.exception
    rows = next(d.value for d in at.dataframe if "dup_rank" in d.value.columns)
    assert rows["row_id"].tolist() == [53, 54, 55] and rows["dup_rank"].tolist() == [0, 1, 2]


def test_page_without_scores_points_at_the_stage(tmp_path, app_env):
    dupdata.workspace(tmp_path / "ws", run=False).close()
    app_env(tmp_path / "ws")
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("`scores`" in i.value for i in at.info)
    assert any(b.label.startswith("Run ") for b in at.button)


def test_page_when_embedding_scores_were_skipped(tmp_path, app_env):
    with dupdata.workspace(tmp_path / "ws", run=False) as ws:
        ws.run(["scores"], params={"embed": {"embedder": "precomputed"},
                                   "scores": {"only": ["dup_rank", "mean_word_len"]}})
    app_env(tmp_path / "ws")
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("semdedup_sim" in e and "--stages scores" in e for e in errors), errors
    assert _metric(at, "Repeats (rank > 0)") == "4"  # what exists is still shown


def test_page_takes_an_open_ended_range_the_select_page_wrote(built, app_env):
    """The Select page writes one-sided ranges as between [a, None]: the range slider starts there, no crash."""
    from curate_ui import state

    app_env(built)
    ws = state.open_workspace(str(built))
    lo = int(ws.store.rows(["n_words"])["n_words"].min()) + 1
    ws.store.save_recipe(dupview.DRAFT, {**dupview.new_recipe(),
                                         "filters": [{"column": "n_words", "op": "between", "value": [lo, None]}]})
    at = app_test(PAGE).run()
    assert not at.exception, at.exception
    slider = at.slider(key="dup_range_n_words")
    assert slider.value == (lo, slider.max)
