"""The headless side of the Duplicates & outliers page: counts, histograms, the recipe draft."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from curate_core import dupview


def test_histogram_and_outside_counts():
    v = np.array([0.0, 0.1, 0.5, 0.5, 1.0, np.nan])
    h = dupview.histogram(v, bins=4)
    assert h["count"].sum() == 5 and h["left"].iloc[0] == 0.0 and h["right"].iloc[-1] == 1.0
    ints = dupview.histogram(np.array([1, 1, 2, 5]), bins=40, integer=True)
    assert ints["left"].iloc[0] == 0.5 and ints.set_index("left").loc[0.5, "count"] == 2
    assert dupview.outside(v, 0.1, 0.5) == 2  # 0.0 and 1.0; the NaN row is kept (recipe filters keep NULLs)
    assert dupview.outside(v, None, None) == 0
    assert dupview.outside(v, 0.1, 0.5, "drop") == 3  # with the filter's "nulls": "drop" the NaN row goes too
    same, moved = {"op": "<=", "value": 0.5, "nulls": "drop"}, {"column": "x", "op": "<=", "value": 0.4}
    assert dupview.kept_nulls(same, {"column": "x", "op": "<=", "value": 0.5}) == "drop"
    assert dupview.kept_nulls(same, moved) == "keep" and dupview.kept_nulls(None, moved) == "keep"
    assert dupview.histogram(np.array([np.nan]))["count"].sum() == 0


def test_range_filter_ops():
    assert dupview.range_filter("n_chars", 0, 100, 0, 100) is None
    assert dupview.range_filter("n_chars", 5, 100, 0, 100) == {"column": "n_chars", "op": ">=", "value": 5}
    assert dupview.range_filter("n_chars", 0, 50, 0, 100) == {"column": "n_chars", "op": "<=", "value": 50}
    assert dupview.range_filter("n_chars", 5, 50, 0, 100)["op"] == "between"


def test_merge_draft_keeps_what_other_pages_wrote():
    other = {"column": "is_label_issue", "op": "is", "value": False}
    mine_old = {"column": "outlier_score", "op": "<=", "value": 0.9}
    draft = {"version": 1, "seed": 7, "filters": [other, mine_old], "decisions": False,
             "dedup": {"exact": False, "semantic_eps": None}, "selections": {"only": ["lasso"], "except": []},
             "mixture": {"group_by": "label"}}
    new = dupview.merge_draft(draft, True, 0.05, [{"column": "lang", "op": "in", "value": ["en"]}])
    assert new["filters"] == [other, {"column": "lang", "op": "in", "value": ["en"]}]
    assert new["dedup"] == {"exact": True, "semantic_eps": 0.05}
    assert {k: new[k] for k in ("seed", "decisions", "selections", "mixture")} == \
           {k: draft[k] for k in ("seed", "decisions", "selections", "mixture")}
    assert draft["filters"] == [other, mine_old]  # the input is not modified
    with pytest.raises(ValueError):
        dupview.merge_draft(draft, False, None, [other])
    normalised = {**new, "filters": [other, {"column": "lang", "op": "in", "value": ["en"], "nulls": "keep"}]}
    again = dupview.merge_draft(normalised, True, 0.05, [{"column": "lang", "op": "in", "value": ["en"]}])
    assert again == normalised  # the Select page's normalised form is not rewritten back and forth
    fresh = dupview.merge_draft(None, False, None, [])
    assert fresh == dupview.new_recipe()


def test_save_draft_writes_only_changes(ws, small_csv):
    ws.ingest(str(small_csv))
    assert dupview.save_draft(ws.store, True, None, []) is True
    assert dupview.save_draft(ws.store, True, None, []) is False
    assert ws.store.recipe(dupview.DRAFT)["dedup"] == {"exact": True, "semantic_eps": None}
    assert dupview.owned_filters({"filters": [{"score": "lang", "op": "in", "value": ["en"]}]}) == \
           {"lang": {"score": "lang", "op": "in", "value": ["en"]}}


def test_exact_counts_and_semdedup_view():
    frame = pd.DataFrame({"dup_group": [0, 0, 1, 1, -1], "dup_rank": [0, 1, 0, 1, 0],
                          "dup_label_conflict": [True, True, False, False, False]})
    assert dupview.exact_counts(frame) == {"groups": 2, "rows_in_groups": 4, "repeats": 2, "conflict_groups": 1}
    sem = pd.DataFrame({"row_id": range(4), "semdedup_sim": [-1.0, 0.99, 0.5, -1.0],
                        "semdedup_cluster": [0, 0, 0, 1], "semdedup_match": [-1, 0, 0, -1]})
    v = dupview.semdedup_view(sem, 0.05)
    assert (v["removed"], v["kept"], round(v["share"], 2)) == (1, 3, 0.25)
    assert v["cells"]["kept_frac"].tolist() == [2 / 3, 1.0]


def test_page_counts_agree_with_what_the_recipe_removes(tmp_path):
    """The page counts with the recipe's own rules: its numbers are the recipe's, NULLs and eps included."""
    from curate_core import select as S

    from . import dupdata

    with dupdata.workspace(tmp_path / "ws") as ws:
        frame = dupview.load_columns(ws.store, ["semdedup_sim", "semdedup_cluster", "outlier_score", "mean_word_len"])
        for eps in (0.0, 0.02, 0.2, 0.6):
            counts = S.live_counts(ws.store, {"decisions": False, "dedup": {"semantic_eps": eps}})
            assert dupview.semdedup_view(frame, eps)["removed"] == counts.steps[0].removes_alone
        v = frame["mean_word_len"].to_numpy(float)
        lo, hi = np.nanpercentile(v, [20, 70])
        counts = S.live_counts(ws.store, {"decisions": False, "filters": [
            {"column": "mean_word_len", "op": "between", "value": [float(lo), float(hi)]}]})
        assert dupview.outside(v, float(lo), float(hi)) == counts.steps[0].removes_alone > 0
