"""The Label issues page's core helpers (curate_core.labelissues): filters and ranking, decisions shown per row,
actions as one batch, the AUM slider arithmetic, the recipe draft, and the cluster filter once clusters exist."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from curate_core import CurateError, Workspace
from curate_core import labelissues as li
from curate_core.store import register_output_table

from . import labeldata
from .conftest import app_test


def _data() -> li.LabelData:
    df = pd.DataFrame({
        "row_id": np.arange(6), "id": [f"r{i}" for i in range(6)], "label": ["a", "a", "b", "b", "c", "c"],
        "suggested_label": ["b", "a", "b", "a", "c", "a"], "label_quality": [0.1, 0.9, 0.8, 0.05, 0.7, 0.2],
        "aum": [-3.0, 2.0, 1.5, -4.0, 0.5, -1.0], "consensus": [2, 0, 0, 3, 1, 1],
        "is_label_issue": [True, False, False, True, False, True], "cluster": [0, 0, 1, 1, -1, 1],
    })
    return li.LabelData(df, {}, ["a", "b", "c"], has_clusters=True)


def test_suspects_filter_and_rank():
    d = _data()
    assert li.suspects(d, li.SuspectFilter())["row_id"].tolist() == [3, 0, 5, 4]  # consensus desc, then quality
    assert li.suspects(d, li.SuspectFilter(min_consensus=2))["row_id"].tolist() == [3, 0]
    assert li.suspects(d, li.SuspectFilter(min_consensus=0, rank_by="aum"))["row_id"].tolist() == [3, 0, 5, 4, 2, 1]
    assert li.suspects(d, li.SuspectFilter(labels=["b"], min_consensus=0))["row_id"].tolist() == [3, 2]
    assert li.suspects(d, li.SuspectFilter(clusters=[1]))["row_id"].tolist() == [3, 5]
    assert li.suspects(d, li.SuspectFilter(selection=[0, 4, 1]))["row_id"].tolist() == [0, 4]
    # rows below the AUM slider count as suspects too
    assert li.suspects(d, li.SuspectFilter(min_consensus=2, aum_below=0.0))["row_id"].tolist() == [3, 0, 5]
    with pytest.raises(CurateError, match="Unknown ranking"):
        li.suspects(d, li.SuspectFilter(rank_by="nope"))


def test_decisions_are_described_and_can_be_hidden():
    d = _data()
    dec = pd.DataFrame({"row_id": [0, 3, 5], "action": ["exclude", "relabel", "keep"], "value": [None, "a", None]})
    t = li.suspects(d, li.SuspectFilter(), dec)
    assert dict(zip(t["row_id"], t["decision"])) == {3: "→ a", 0: "excluded", 5: "kept", 4: ""}
    assert li.suspects(d, li.SuspectFilter(hide_decided=True), dec)["row_id"].tolist() == [4]
    assert li.decision_counts(dec) == {"excluded": 1, "relabelled": 1, "kept": 1}


def test_aum_cutoff_stats_and_plot_helpers():
    s = li.aum_cutoff_stats(np.array([-2, -1, 0, 1, np.nan]), np.array([-3, -2, -1, 0]), -0.5)
    assert s == {"below": 2, "rows": 4, "percentile": 75.0}
    x, counts = li.histogram(np.array([0.1, 0.2, 0.9, np.nan]), 0, 1, bins=2)
    assert counts.tolist() == [2, 1] and x.tolist() == [0.25, 0.75]
    df = pd.DataFrame({"v": np.arange(100)})
    keep = np.zeros(100, bool)
    keep[[5, 95]] = True
    out = li.sample_for_plot(df, 10, keep)
    assert len(out) == 10 and {5, 95} <= set(out["v"])


def test_relabel_to_suggested_is_one_batch_and_skips_rows_already_right(tmp_path):
    with labeldata.workspace(tmp_path / "ws") as ws:
        data = li.load(ws.store)
        t = li.suspects(data, li.SuspectFilter())
        ids = t["row_id"].to_numpy()[:5]
        same = data.frame.set_index("row_id").loc[ids]
        n_change = int((same["suggested_label"] != same["label"]).sum())
        batch, msg = li.act(ws, ids, "relabel_suggested", data)
        cur = ws.decisions().set_index("row_id")
        assert len(cur) == n_change and (cur["action"] == "relabel").all()
        assert (cur["value"] == same.loc[cur.index, "suggested_label"]).all()
        assert ws.undo() == batch and ws.decisions().empty
        right = data.frame[data.frame["suggested_label"] == data.frame["label"]]["row_id"].to_numpy()[:3]
        with pytest.raises(CurateError, match="equals the given label"):
            li.act(ws, right, "relabel_suggested", data)
        with pytest.raises(CurateError, match="No rows chosen"):
            li.act(ws, [], "exclude", data)
        with pytest.raises(CurateError, match="Unknown label"):
            li.act(ws, ids, "relabel", data, label="no-such-label")


def test_draft_filter_replaces_its_column_and_keeps_the_rest(tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        ws.store.save_recipe(li.DRAFT, {"version": 1, "seed": 3, "filters": [
            {"column": "n_chars", "op": ">", "value": 5}, {"score": "consensus", "op": "<", "value": 3}]})
        d = li.draft_filter(ws.store, "consensus", "<", 2)
        assert d["seed"] == 3 and d["filters"] == [{"column": "n_chars", "op": ">", "value": 5},
                                                   {"column": "consensus", "op": "<", "value": 2}]
        assert ws.store.recipe(li.DRAFT) == d


def test_page_filters_by_cluster_when_the_clusters_table_exists(tmp_path, app_env):
    register_output_table("clusters", "cluster")  # what the map feature's `cluster` stage registers
    with labeldata.workspace(tmp_path / "ws") as ws:
        n = ws.store.count()
        ws.store.replace_table("clusters", pa.table({"row_id": pa.array(np.arange(n), pa.int64()),
                                                    "cluster": pa.array(np.arange(n) % 3, pa.int32()),
                                                    "cluster_prob": np.ones(n)}))
    app_env(tmp_path / "ws")
    at = app_test("pages/2_Label_issues.py").run()
    assert not at.exception, at.exception
    at.multiselect(key="li_clusters").set_value([2]).run()
    ids = next(d.value for d in at.dataframe if "suggested_label" in d.value.columns)["id"]
    assert len(ids) > 0 and all(int(i[1:]) % 3 == 2 for i in ids)


def test_flag_warnings_name_a_loud_method_and_a_failed_calibration():
    summaries = {
        "label_quality": {"flag_column": "is_label_issue", "flagged": 50, "flag_rate": 0.05,
                          "estimated_noise_rate": 0.05, "over_estimate": False},
        "aum": {"flag_column": "aum_flag", "flagged": 300, "flag_rate": 0.3, "estimated_noise_rate": 0.05,
                "over_estimate": True, "calibration": "ok", "why": "w"},
        "confidence": {"flag_column": "is_hard_to_learn", "flagged": 50, "flag_rate": 0.05,
                       "estimated_noise_rate": 0.05, "over_estimate": False, "calibration": "failed",
                       "why": "calibration failed: x. Fallback: y"},
    }
    w = li.flag_warnings(summaries)
    assert len(w) == 2
    assert w[0].startswith("AUM flags 30.0% of the labelled rows, more than 2× the 5.0%")
    assert w[1] == "data maps: calibration failed: x. Fallback: y."
    report = li.flag_report(summaries)
    assert report["aum_flag"]["over_estimate"] and report["is_hard_to_learn"]["calibration"] == "failed"
    assert li.flag_warnings({k: {**v, "over_estimate": False, "calibration": "ok"} for k, v in summaries.items()}) == []
