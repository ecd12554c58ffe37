"""The scores stage: each score has its own run key, so changing one score's parameter recomputes it and the
scores that depend on it — nothing else (read from the runs table) — and `scores --list --json` describes
every registered score with the columns the scores table then has."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd

from curate_core import scores
from curate_core.scoring import score_columns

from . import labeldata
from .conftest import REPO


def _score_runs(ws) -> pd.DataFrame:
    h = ws.store.run_history(limit=10_000)
    return h[h["stage"].str.startswith("score:")]


def _changed(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    """Scores with a run in *after* that is not in *before*."""
    old = set(zip(before["stage"], before["run_key"], before["started"]))
    return {st.split(":", 1)[1] for st, key, t in zip(after["stage"], after["run_key"], after["started"])
            if (st, key, t) not in old}


def test_changing_one_score_parameter_reruns_it_and_its_dependants_only(tmp_path):
    with labeldata.workspace(tmp_path / "ws") as ws:
        first = _score_runs(ws)
        assert set(first["stage"]) == {f"score:{n}" for n in scores.registry()}  # every score ran once
        table = ws.store.read_table("scores")

        # AUM's percentile: aum, the consensus that counts its flag and the relabel suggestion that reads the
        # consensus; not the other label scores, not SemDeDup
        res = ws.run(["scores"], params={**labeldata.params(), "scores": {"params": {"aum": {"percentile": 90}}}})
        second = _score_runs(ws)
        assert _changed(first, second) == {"aum", "consensus", "relabel_agreement"}
        summary = res[-1]["summary"]
        assert sorted(summary["computed"]) == ["aum", "consensus", "relabel_agreement"] and "semdedup_sim" in summary["reused"]
        now = ws.store.read_table("scores")
        assert list(now.columns) == list(table.columns)  # the same columns, in the same order
        for col in ("label_quality", "confidence", "semdedup_sim", "dup_rank", "mean_word_len", "lang"):
            pd.testing.assert_series_equal(now[col], table[col])  # reused columns carried over unchanged
        assert now["aum_flag"].sum() <= table["aum_flag"].sum()  # a lower percentile flags fewer rows

        # the same parameters again: nothing is recomputed
        ws.run(["scores"], params={**labeldata.params(), "scores": {"params": {"aum": {"percentile": 90}}}})
        assert _changed(second, _score_runs(ws)) == set()

        # label_quality is used by dup_rank (it keeps the best-quality row) and counted by consensus (which the
        # relabel suggestion reads)
        ws.run(["scores"], params={**labeldata.params(), "scores": {"params": {
            "aum": {"percentile": 90}, "label_quality": {"method": "normalized_margin"}}}})
        assert _changed(second, _score_runs(ws)) == {"label_quality", "dup_rank", "consensus", "relabel_agreement"}

        # a probe rerun (new probe run key) recomputes everything that reads the probe, and only that
        before = _score_runs(ws)
        ws.run(["scores"], params={**labeldata.params(epochs=20), "scores": {"params": {
            "aum": {"percentile": 90}, "label_quality": {"method": "normalized_margin"}}}})
        label_scores = {n for n, s in scores.registry().items() if "probe" in s.requires}
        assert _changed(before, _score_runs(ws)) == label_scores | {"dup_rank", "consensus", "relabel_agreement"}


def test_force_recomputes_every_score(tmp_path):
    with labeldata.workspace(tmp_path / "ws") as ws:
        before = _score_runs(ws)
        ws.run(["scores"], params=labeldata.params(), force=True)
        assert _changed(before, _score_runs(ws)) == set(scores.registry())


def test_scores_list_json_declares_what_the_scores_table_holds(tmp_path):
    r = subprocess.run([sys.executable, "-m", "curate_core", "scores", "--list", "--json"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [s["name"] for s in listed] and {s["name"] for s in listed} == set(scores.registry())
    for s in listed:
        assert {"name", "columns", "kind", "requires", "params"} <= set(s) and s["columns"]
        assert s["columns"][0]["name"] == s["name"] and all(c["type"] for c in s["columns"])
    with labeldata.workspace(tmp_path / "ws", run=False) as ws:
        target = ws.store.query_df("SELECT text FROM samples LIMIT 20")["text"].tolist()  # so DSIR runs too
        ws.run(["scores"], params={**labeldata.params(), "scores": {"params": {"dsir": {"target": target}}}})
        declared = [c["name"] for s in listed for c in s["columns"]]
        assert score_columns(ws.store) == declared  # the table: exactly the declared columns, in that order
        assert np.isfinite(ws.store.read_table("scores")["label_quality"].to_numpy(float)).all()


def test_the_scores_export_has_every_declared_column_also_where_a_score_was_skipped(tmp_path):
    """A score skipped here (dsir without a target) is a column of NULLs in `scores --out`, so every export has
    the schema `scores --list` declares (the execution-seam acceptance compares the two)."""
    import pyarrow.parquet as pq

    from curate_core.scoring import export_scores

    with labeldata.workspace(tmp_path / "ws") as ws:  # no DSIR target: dsir is skipped
        assert "dsir_log_weight" not in score_columns(ws.store)
        export_scores(ws.store, tmp_path / "s.parquet")
        t = pq.read_table(tmp_path / "s.parquet")
        declared = [c.name for n in scores.ordered(scores.registry()) for c in scores.registry()[n].columns]
        assert t.column_names == ["id", *declared]
        assert t.column("dsir_weight").null_count == t.num_rows and t.column("label_quality").null_count < t.num_rows


def test_a_dependency_skipped_in_this_run_is_not_read_from_the_old_table(tmp_path, monkeypatch):
    """When label_quality is skipped now, the consensus must not count its flag from the previous table."""
    from curate_core.errors import CurateError
    from curate_core.scores.label_quality import LabelQuality

    def cannot(self, ctx):  # a score that cannot judge this data (a bad parameter refuses the run instead)
        raise CurateError("cannot judge these labels")

    with labeldata.workspace(tmp_path / "ws") as ws:
        before = ws.store.get_summary("score:consensus")
        assert "is_label_issue" in before["methods"]
        monkeypatch.setattr(LabelQuality, "compute", cannot)
        res = ws.run(["scores"], params=labeldata.params(), force=True)
        summary = res[-1]["summary"]
        assert "label_quality" in summary["skipped"] and "consensus" in summary["computed"]
        after = ws.store.get_summary("score:consensus")
        assert "is_label_issue" not in after["methods"] and set(after["methods"]) == {"aum_flag", "is_hard_to_learn"}
        assert "label_quality" not in score_columns(ws.store) and "is_label_issue" not in score_columns(ws.store)

