"""The duplicate/outlier/text-quality score plugins in the pipeline: columns, contract, draft, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from curate_core import dupview, scores
from curate_core.errors import CurateError
from curate_core.scoring import export_scores

from . import dupdata

MINE = ["dup_rank", "semdedup_sim", "outlier_score", "label_outlier_score", "mean_word_len", "frac_non_alpha",
        "frac_upper", "n_urls", "frac_dup_lines", "frac_dup_ngrams", "lang"]
COLUMNS = ["dup_group", "dup_rank", "dup_label_conflict", "semdedup_sim", "semdedup_cluster", "outlier_score",
           "label_outlier_score", "mean_word_len", "frac_non_alpha", "frac_upper", "n_urls", "frac_dup_lines",
           "frac_dup_ngrams", "lang", "lang_score"]


@pytest.fixture(scope="module")
def dws(tmp_path_factory):
    ws = dupdata.workspace(tmp_path_factory.mktemp("dups") / "ws")
    yield ws
    ws.close()


def test_every_column_is_in_the_scores_export(dws, tmp_path):
    out = tmp_path / "s.parquet"
    assert export_scores(dws.store, out) == 56
    s = pd.read_parquet(out)
    assert set(COLUMNS) <= set(s.columns)
    assert s["id"].tolist()[:2] == ["r000", "r001"]


def test_planted_rows_are_found(dws):
    df = dws.store.rows(["row_id", "dup_rank", "dup_group", "dup_label_conflict", "semdedup_sim",
                         "semdedup_match", "outlier_score", "label_outlier_score", "n_urls"]).set_index("row_id")
    assert df.loc[[51, 52, 54, 55], "dup_rank"].tolist() == [1, 1, 1, 2]
    assert df.loc[0, "dup_group"] == df.loc[51, "dup_group"] and df.loc[0, "dup_rank"] == 0
    assert df["dup_label_conflict"].sum() == 2 and df.loc[[1, 52], "dup_label_conflict"].all()
    # planted near-duplicate vectors: rows j and 40 + j (and 51 for row 0, 52 for row 1). All but the first of
    # each group in keep order are matched inside the group at similarity > 0.999
    for j in range(10):
        group = {j, 40 + j} | ({51} if j == 0 else {52} if j == 1 else set())
        matched = [r for r in group if df.loc[r, "semdedup_match"] in group and df.loc[r, "semdedup_sim"] > 0.999]
        assert len(matched) == len(group) - 1, (j, df.loc[sorted(group)])
    assert df["outlier_score"].idxmax() == 50
    assert df["label_outlier_score"].nlargest(2).index.tolist() in ([50, 52], [52, 50])  # 52 carries row 1's vector
    assert df.loc[[53, 54, 55], "n_urls"].tolist() == [1, 1, 1]
    summary = dws.store.get_summary("score:dup_rank")
    # with the label-noise scores in the same run, the kept row of a group is the one with the best label_quality
    rule = "best label_quality (ties: first seen)" if "label_quality" in dws.store.catalog() else "first seen"
    assert summary["flagged"] == 4 and summary["conflict_groups"] == 1 and summary["keep_rule"] == rule


def test_plugin_contract_on_synthetic_arrays():
    """Shape, NaN policy, determinism and direction of every plugin this issue adds."""
    df = dupdata.frame()
    emb = df[[f"emb_{d}" for d in range(dupdata.DIM)]].to_numpy(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = df["label"].tolist()
    labels[3] = None
    reg = scores.registry()

    def run():
        ctx = scores.ScoreContext.from_arrays(df["text"].tolist(), labels, emb)
        return scores.compute_all(ctx, only=MINE)

    cols, summaries, skipped = run()
    again, _, _ = run()
    assert not skipped and set(MINE) <= set(summaries)
    for name in MINE:
        sc = reg[name]
        assert sc.direction in scores.DIRECTIONS and sc.title and sc.description
        v = cols[name]
        assert v.shape == (len(df),)
        if v.dtype.kind == "f":
            nan = np.isnan(v)
            if sc.nan_policy == "never":
                assert not nan.any(), name
        np.testing.assert_array_equal(v, again[name])  # deterministic
    assert np.isnan(cols["label_outlier_score"][3])  # unlabelled row
    assert cols["dup_label_conflict"].dtype == bool and cols["dup_rank"].dtype.kind == "i"


def test_dup_rank_keeps_the_best_label_quality_when_it_exists():
    texts = ["same text", "Same text!", "same  text", "other"]
    q = np.array([0.1, 0.8, 0.5, 0.9])
    ctx = scores.ScoreContext.from_arrays(texts, ["a", "a", "b", "b"])
    ctx.scores["label_quality"] = q  # as if the label-noise plugin ran earlier in the same stage
    res = scores.registry()["dup_rank"].compute(ctx)
    assert res.values.tolist() == [2, 0, 1, 0]
    assert res.summary["keep_rule"].startswith("best label_quality")
    assert res.columns["dup_label_conflict"].tolist() == [True, True, True, False]


def test_normalisation_is_a_stage_parameter(tmp_path):
    with dupdata.workspace(tmp_path / "ws", run=False) as ws:
        ws.run(["scores"], params={"embed": {"embedder": "precomputed"},
                                   "scores": {"only": ["dup_rank"], "params": {"dup_rank": {"urls": False}}}})
        df = ws.store.rows(["row_id", "dup_rank"]).set_index("row_id")
        assert df.loc[[53, 54, 55], "dup_rank"].tolist() == [0, 0, 0]  # URLs differ, so no group
        with pytest.raises(CurateError) as e:  # a typo refuses the run and says why; the column stays as it was
            ws.run(["scores"], params={"scores": {"only": ["dup_rank"], "params": {"dup_rank": {"url": False}}}})
        reason = str(e.value)
        assert "Unknown normalisation option(s) `url`" in reason and "`urls`" in reason
        assert ws.store.rows(["row_id", "dup_rank"]).set_index("row_id")["dup_rank"].equals(df["dup_rank"])


# ---------------------------------------------------------------------------------------- bad input
def test_no_embeddings_gives_a_message_that_names_the_embed_stage(tmp_path):
    with dupdata.workspace(tmp_path / "ws", run=False) as ws:
        ctx = scores.ScoreContext.from_store(ws.store)
        _, _, skipped = scores.compute_all(ctx, only=["semdedup_sim", "outlier_score"])
        for name in ("semdedup_sim", "outlier_score"):
            assert "No embeddings" in skipped[name] and "--stages embed" in skipped[name]
        with pytest.raises(CurateError) as e:
            dupview.require_columns(ws.store, ["semdedup_sim"], "SemDeDup")
        assert "no embeddings" in e.value.message and "--stages embed,scores" in e.value.hint


def test_embeddings_that_miss_rows_are_refused(tmp_path):
    with dupdata.workspace(tmp_path / "ws", run=False) as ws:
        vecs = np.ones((10, 4), np.float32) / 2
        ws.store.replace_table("embeddings", pa.table({
            "row_id": pa.array(np.arange(10), pa.int64()),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 4)}))
        ctx = scores.ScoreContext.from_store(ws.store)
        _, _, skipped = scores.compute_all(ctx, only=["semdedup_sim"])
        assert "cover 10 of 56 rows" in skipped["semdedup_sim"] and "--stages embed" in skipped["semdedup_sim"]


# --------------------------------------------------------------------------------- eps is a pure filter
def test_eps_changes_counts_without_running_a_stage(dws):
    runs_before = dws.store.run_history(1000)
    frame = dupview.load_columns(dws.store, list(dupview.SEMDEDUP_COLUMNS))
    counts = [dupview.semdedup_view(frame, e)["removed"] for e in (0.0, 0.001, 0.2, 0.6)]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    pairs = dupview.semdedup_pairs(dws.store, frame, 0.001)
    assert len(pairs) == counts[1] and (pairs["similarity"] > 0.999).all()
    assert set(pairs["removed_row"]) | set(pairs["kept_row"]) >= {51, 0}
    pd.testing.assert_frame_equal(dws.store.run_history(1000), runs_before)
    assert dws.status()["scores"] == "done"
