"""Recipes and deterministic selection (curate_core.select), checked against pandas / numpy references."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate_core import CurateError
from curate_core import select as S

from .select_fixtures import LABELS, build, truth

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sws(tmp_path_factory):
    ws = build(tmp_path_factory.mktemp("sel") / "ws")
    yield ws
    ws.close()


@pytest.fixture
def fresh(tmp_path):
    ws = build(tmp_path / "ws", n=300)
    yield ws
    ws.close()


def ids(sel: S.Selection) -> set[int]:
    return set(sel.row_ids.tolist())


# ----------------------------------------------------------------------------------------- parsing
def test_unknown_column_lists_columns_and_known_score_names_its_stage(tmp_path):
    ws = build(tmp_path / "ws", n=50, scores=False)
    with pytest.raises(CurateError) as e:
        S.check_recipe(ws.store, {"filters": [{"column": "no_such", "op": ">", "value": 1}]})
    assert "no_such" in e.value.message and "`label`" in e.value.hint
    with pytest.raises(CurateError) as e:
        S.check_recipe(ws.store, json.loads((REPO / "assets/recipes/clean.json").read_text()))
    assert "`scores` stage" in e.value.message and "--stages scores" in e.value.hint
    with pytest.raises(CurateError) as e:
        S.check_recipe(ws.store, {"mixture": {"group_by": "cluster"}})
    assert "`cluster` stage" in e.value.message
    ws.close()


def test_recipe_round_trip_and_aliases():
    r = S.parse_recipe({"filters": [{"score": "x", "op": "<", "value": 1}], "decisions": False,
                        "mixture": {"group_by": "label", "budget": {"tokens": 100}}})
    j = r.to_json()
    assert j["filters"][0] == {"column": "x", "op": "<", "value": 1, "nulls": "keep"}
    assert j["decisions"] == {"exclude": False, "relabel": False, "reviewed_pass_filters": False}
    assert j["mixture"]["budget"] == {"tokens": 100} and j["mixture"]["max_repeats"] == 1
    assert S.parse_recipe(j) == r  # normalised form parses to the same recipe
    assert S.parse_recipe(json.dumps(j)) == r


def test_example_recipes_parse_and_are_documented():
    readme = (REPO / "README.md").read_text()
    for name in ("all", "clean", "balanced"):
        doc = json.loads((REPO / f"assets/recipes/{name}.json").read_text())
        S.parse_recipe(doc)
        assert f"assets/recipes/{name}.json" in readme


# ------------------------------------------------------------------------------------------ filters
def _ref_fail(df: pd.DataFrame, f: dict) -> np.ndarray:
    col = df[f["column"]]
    isnull = col.isna().to_numpy()
    v = f["value"]
    vals = col.to_numpy(dtype=object)
    ok = np.zeros(len(df), dtype=bool)
    for i, x in enumerate(vals):
        if isnull[i]:
            continue
        if f["op"] == "between":
            ok[i] = (v[0] is None or x >= v[0]) and (v[1] is None or x <= v[1])
        elif f["op"] == "in":
            ok[i] = x in v
        elif f["op"] == "not_in":
            ok[i] = x not in v
        elif f["op"] == "is":
            ok[i] = bool(x) == v
        elif f["op"] == "is_not":
            ok[i] = bool(x) != v
        else:
            ok[i] = {"<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v, "==": x == v, "!=": x != v}[f["op"]]
    null_fails = f.get("nulls", "keep") == "drop"
    return np.where(isnull, null_fails, ~ok)


FILTERS = [
    {"column": "label_quality", "op": ">=", "value": 0.3},
    {"column": "label_quality", "op": ">=", "value": 0.3, "nulls": "drop"},
    {"column": "outlier_score", "op": "<", "value": 0.8},
    {"column": "outlier_score", "op": "between", "value": [0.1, 0.9]},
    {"column": "outlier_score", "op": "between", "value": [None, 0.5]},
    {"column": "consensus", "op": "<", "value": 2},
    {"column": "consensus", "op": "!=", "value": 3},
    {"column": "is_label_issue", "op": "is", "value": False},
    {"column": "is_label_issue", "op": "is_not", "value": True, "nulls": "drop"},
    {"column": "lang", "op": "in", "value": ["en", "fr"]},
    {"column": "lang", "op": "not_in", "value": ["de"]},
    {"column": "label", "op": "==", "value": "beta"},
    {"column": "n_tokens", "op": ">", "value": 3},
    {"column": "extra_num", "op": "<=", "value": 0.5},
]


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: f"{f['column']} {f['op']} {f['value']} {f.get('nulls', '')}")
def test_each_filter_matches_pandas(sws, f):
    df = truth(sws)
    want = set(df.loc[~_ref_fail(df, f), "row_id"].tolist())
    sel = S.select(sws, {"filters": [f]})
    assert ids(sel) == want


RULE_CASES = [("x", op, v) for op, v in [("<", 0.5), ("<=", 0.5), (">", 0.5), (">=", 0.5), ("==", 0.5), ("!=", 0.5),
                                          ("between", [0.2, 0.8]), ("between", [None, 0.8]), ("between", [0.2, None]),
                                          ("in", [0.5, 1.0]), ("not_in", [0.5]), ("is", None), ("is_not", None)]] \
    + [("b", "is", True), ("b", "is_not", True), ("b", "is", None), ("t", "in", ["a", "c"]), ("t", "not_in", ["a"]),
       ("t", "==", "a"), ("t", "!=", "a"), ("t", "<", "b")]


@pytest.mark.parametrize("nulls", ["keep", "drop"])
@pytest.mark.parametrize("column,op,value", RULE_CASES)
def test_filter_passes_is_exactly_not_fails(column, op, value, nulls):
    """The pushable form the compiler uses keeps exactly the rows the rule's CASE form says do not fail, NULLs
    included (a NULL value, or a NULL comparison, must not slip through either way)."""
    from curate_core import rules

    cols = {"x": np.array([0.1, 0.5, 0.9, np.nan, 1.0, 0.2, 0.8, np.nan]),
            "b": pd.array([True, False, None, True, None, False, True, None], dtype="boolean").to_numpy(object),
            "t": np.array(["a", "b", None, "c", "a", None, "d", "b"], dtype=object)}
    p = rules.Params()
    fails, passes = rules.evaluate(cols, [rules.filter_fails(column, op, value, nulls, p),
                                          rules.filter_passes(column, op, value, nulls, p)], p.values)
    assert passes.tolist() == (~fails).tolist()
    assert 0 < fails.sum() < len(fails) or op in ("is", "is_not")  # the case tells rows apart


def test_is_null_filter(sws):
    df = truth(sws)
    sel = S.select(sws, {"filters": [{"column": "label_quality", "op": "is", "value": None}]})
    assert ids(sel) == set(df.loc[df["label_quality"].isna(), "row_id"])


def test_steps_removes_alone_and_only_match_pandas(sws):
    fs = [FILTERS[0], FILTERS[2], FILTERS[9]]
    df = truth(sws)
    fails = np.stack([_ref_fail(df, f) for f in fs])
    c = S.live_counts(sws, {"filters": fs})
    assert c.rows_total == len(df)
    assert c.rows_pool == int((~fails.any(axis=0)).sum()) == c.rows_selected
    for i, step in enumerate(c.steps):
        others = np.delete(fails, i, axis=0).any(axis=0)
        assert step.removes_alone == int(fails[i].sum())
        assert step.removes_only == int((fails[i] & ~others).sum())
    assert c.tokens_pool == int(df.loc[~fails.any(axis=0), "n_tokens"].sum())
    # per-group before → after, by label
    g = c.groups.set_index("group")
    assert g["rows_before"].to_dict() == df.groupby("label").size().to_dict()
    assert g["rows_pool"].to_dict() == df[~fails.any(axis=0)].groupby("label").size().reindex(g.index, fill_value=0).to_dict()


def test_cached_wide_table_and_live_join_agree_and_cache_follows_new_scores(fresh):
    rec = {"filters": [FILTERS[0], FILTERS[2]], "mixture": {"group_by": "source", "budget": {"rows": 90}}}
    a = S.select(fresh, rec, cached=True)
    b = S.select(fresh, rec, cached=False)
    assert a.table.equals(b.table)
    n0 = S.live_counts(fresh, {"filters": [FILTERS[2]]}).rows_pool
    sc = truth(fresh)[["row_id"]].assign(outlier_score=1.0)
    fresh.store.replace_table("scores", sc)
    assert S.live_counts(fresh, {"filters": [FILTERS[2]]}).rows_pool == 0 != n0


# -------------------------------------------------------------------------------------- decisions
def test_decisions_exclude_relabel_and_reviewed_rows_pass_filters(fresh):
    df = truth(fresh)
    bad = df.loc[df["consensus"].fillna(0) >= 2, "row_id"].tolist()
    fresh.decide([bad[0]], "exclude")
    fresh.decide([bad[1]], "relabel", value="gamma")
    fresh.decide([bad[2]], "keep")
    plain = int((df["row_id"] != -1).sum())
    rec = {"filters": [{"column": "consensus", "op": "<", "value": 2}]}
    sel = S.select(fresh, rec)
    got = ids(sel)
    assert bad[0] not in got and bad[1] in got and bad[2] in got and bad[3] not in got
    lab = dict(zip(sel.row_ids.tolist(), sel.labels.tolist()))
    orig = dict(zip(sel.row_ids.tolist(), sel.table.column("label_original").to_pylist()))
    assert lab[bad[1]] == "gamma" and orig[bad[1]] == df.set_index("row_id").loc[bad[1], "label"]
    # decisions off: nothing applied, the filter alone decides
    off = S.select(fresh, {**rec, "decisions": False})
    assert bad[0] not in ids(off) and bad[1] not in ids(off)
    assert len(S.select(fresh, {"decisions": False})) == plain
    # only exclude: relabel not applied and reviewed rows face the filters
    ex = S.select(fresh, {**rec, "decisions": {"exclude": True, "relabel": False, "reviewed_pass_filters": False}})
    assert bad[1] not in ids(ex) and bad[2] not in ids(ex)
    # undo the keep: the row faces the filter again
    fresh.undo()
    assert bad[2] not in ids(S.select(fresh, rec))
    c = S.live_counts(fresh, {})
    assert [s.key for s in c.steps] == ["decisions"] and c.steps[0].removes_alone == 1


def test_group_by_label_uses_relabelled_label(fresh):
    df = truth(fresh)
    rid = int(df.loc[df["label"] == "alpha", "row_id"].iloc[0])
    fresh.decide([rid], "relabel", value="delta")
    g = S.live_counts(fresh, {}).groups.set_index("group")
    assert g.loc["delta", "rows_pool"] == int((df["label"] == "delta").sum()) + 1


# ------------------------------------------------------------------------------- dedup, selections
def test_exact_dedup_keeps_the_best_ranked_survivor(fresh):
    df = truth(fresh)
    sel = S.select(fresh, {"dedup": {"exact": True}})
    got = ids(sel)
    groups = df.dropna(subset=["dup_group"])
    assert all(((groups["dup_rank"] == 0) == groups["row_id"].isin(got)).tolist())
    assert len(got) == len(df) - int((groups["dup_rank"] > 0).sum())
    # the representative of group 0 is excluded: its rank-1 copy takes over
    fresh.decide([0], "exclude")
    got = ids(S.select(fresh, {"dedup": {"exact": True}}))
    assert 0 not in got and 1 in got and 2 not in got
    c = S.live_counts(fresh, {"dedup": {"exact": True}})
    step = [s for s in c.steps if s.key == "dedup.exact"][0]
    assert step.removes_alone == int((groups["dup_rank"] > 0).sum())
    assert step.removes_only == int((groups["dup_rank"] > 0).sum()) - 1
    assert c.rows_pool == len(got)


def test_semantic_dedup_removes_rows_above_one_minus_eps(sws):
    df = truth(sws)
    sel = S.select(sws, {"dedup": {"semantic_eps": 0.2}})
    assert ids(sel) == set(df.loc[~(df["semdedup_sim"] > 0.8), "row_id"])


def test_named_selections_only_and_except(fresh):
    fresh.save_selection("a", range(0, 100))
    fresh.save_selection("b", range(50, 150))
    fresh.save_selection("c", range(90, 95))
    assert ids(S.select(fresh, {"selections": {"only": ["a", "b"]}})) == set(range(150))
    assert ids(S.select(fresh, {"selections": {"only": ["a"], "except": ["c"]}})) == set(range(90)) | set(range(95, 100))


# ---------------------------------------------------------------------------------------- mixture
def test_allocate_water_filling_and_rounding():
    shares = {"a": 0.5, "b": 0.3, "c": 0.2}
    t = S.allocate(shares, {"a": 1e9, "b": 1e9, "c": 1e9}, 101)
    assert sum(t.values()) == 101 and all(abs(t[g] - shares[g] * 101) <= 1 for g in shares)
    t = S.allocate(shares, {"a": 1e9, "b": 1e9, "c": 5}, 100)
    assert t["c"] == 5 and sum(t.values()) == 100 and t["a"] / t["b"] == pytest.approx(5 / 3, abs=0.05)
    t = S.allocate(shares, {"a": 1e9, "b": 1e9, "c": 5}, 100, redistribute=False)
    assert t == {"a": 50, "b": 30, "c": 5}
    t = S.allocate(shares, {"a": 10, "b": 10, "c": 10}, 100)
    assert t == {"a": 10, "b": 10, "c": 10}
    t = S.allocate(shares, {"a": 40, "b": 60, "c": 8}, None)  # no budget: largest exact mix
    assert t == {"a": 20, "b": 12, "c": 8}


def test_group_shares_temperature():
    sizes = {"a": 900, "b": 90, "c": 10}
    assert S.group_shares(sizes, 1.0) == pytest.approx({"a": 0.9, "b": 0.09, "c": 0.01})
    assert S.group_shares(sizes, 1e9) == pytest.approx({g: 1 / 3 for g in sizes})
    half = S.group_shares(sizes, 2.0)
    assert half["a"] == pytest.approx(30 / (30 + math.sqrt(90) + math.sqrt(10)))
    assert S.group_shares(sizes, 1, {"a": 1, "b": 3}) == {"a": 0.25, "b": 0.75, "c": 0.0}


def test_weights_and_row_budget_give_w_times_b_within_one(sws):
    w = {"alpha": 0.4, "beta": 0.3, "gamma": 0.2, "delta": 0.1}
    B = 157
    rec = {"mixture": {"group_by": "label", "weights": w, "budget": {"rows": B}}}
    live = S.live_counts(sws, rec)
    sel = S.select(sws, rec)
    got = sel.frame().groupby("label").size().to_dict()
    assert sum(got.values()) == B == live.rows_selected
    for g, wg in w.items():
        assert abs(got[g] - wg * B) <= 1
    assert live.groups.set_index("group")["rows_selected"].to_dict() == got
    assert not live.warnings


def test_group_that_cannot_fill_its_share_is_reported_and_others_fill_in(sws):
    df = truth(sws)
    n_delta = int((df["label"] == "delta").sum())
    B = 4 * n_delta + 20  # a uniform share of delta is more than it has
    rec = {"mixture": {"group_by": "label", "weights": {g: 1 for g in LABELS}, "budget": {"rows": B}}}
    c = S.live_counts(sws, rec)
    g = c.groups.set_index("group")
    assert g.loc["delta", "rows_selected"] == n_delta and g.loc["delta", "shortfall"] == pytest.approx(B / 4 - n_delta)
    assert c.rows_selected == B  # met from the others
    assert any("'delta' cannot fill its share" in w for w in c.warnings)
    no = S.live_counts(sws, {"mixture": {**rec["mixture"], "redistribute": False}})
    assert no.rows_selected == B - math.ceil(B / 4 - n_delta) or abs(no.rows_selected - (B - (B / 4 - n_delta))) <= 1
    assert any("budget" in w and "not met" in w for w in no.warnings)
    sel = S.select(sws, {"mixture": {**rec["mixture"], "redistribute": False}})
    assert len(sel) == no.rows_selected


def test_budget_above_everything_states_the_shortfall(sws):
    c = S.live_counts(sws, {"mixture": {"group_by": "source", "budget": {"rows": 10_000}}})
    assert c.rows_selected == c.rows_pool
    assert any("not met" in w and "shortfall" in w for w in c.warnings)


def test_repeats_fill_a_small_group_up_to_max_repeats(sws):
    df = truth(sws)
    n_delta = int((df["label"] == "delta").sum())
    w = {"alpha": 1, "delta": 1}
    rec = {"mixture": {"group_by": "label", "weights": w, "budget": {"rows": 5 * n_delta}, "max_repeats": 2}}
    sel = S.select(sws, rec)
    f = sel.frame()
    delta = f[f["label"] == "delta"]
    assert delta["repeats"].max() == 2 and delta["repeats"].sum() == 2 * n_delta
    assert f.loc[f["label"] == "alpha", "repeats"].sum() == 5 * n_delta - 2 * n_delta
    assert any("'delta' cannot fill" in x and "max_repeats = 2" in x for x in sel.counts.warnings)
    rec["mixture"]["max_repeats"] = 3
    sel = S.select(sws, rec)
    d = sel.frame().query("label == 'delta'")
    assert d["repeats"].sum() == round(2.5 * n_delta) and set(d["repeats"]) <= {2, 3}
    assert any("repeats 2.5×" in x for x in sel.counts.warnings)


def test_token_budget_per_group_within_one_row_of_target(sws):
    B = 900  # 300 tokens per source; the smallest (news) has about 490
    rec = {"mixture": {"group_by": "source", "weights": {"web": 1, "books": 1, "news": 1}, "budget": {"tokens": B}}}
    sel = S.select(sws, rec)
    f = sel.frame()
    tok = (f["n_tokens"] * f["repeats"]).groupby(f["group"]).sum()
    biggest = int(f["n_tokens"].max())
    for g in ("web", "books", "news"):
        assert abs(tok[g] - B / 3) <= biggest / 2 + 1e-9
    live = S.live_counts(sws, rec)
    assert live.tokens_estimated and live.tokens_selected == pytest.approx(B, abs=2)


def test_cap_clips_big_groups(sws):
    df = truth(sws)
    n = df.groupby("label").size()
    cap = int(n.sort_values().iloc[1])  # between the two smallest and the two largest labels
    # no budget, natural shares: ClusterClip-style clipping, every small group keeps all its rows
    c = S.live_counts(sws, {"mixture": {"group_by": "label", "cap": cap}})
    got = c.groups.set_index("group")["rows_selected"]
    assert got.to_dict() == {g: min(int(v), cap) for g, v in n.items()} and not c.warnings
    # with a budget: a capped group is reported and the others fill in
    B = 4 * cap
    c = S.live_counts(sws, {"mixture": {"group_by": "label", "cap": cap // 2, "budget": {"rows": B},
                                        "weights": {"alpha": 1, "beta": 1}}})
    got = c.groups.set_index("group")["rows_selected"]
    assert got["alpha"] == got["beta"] == cap // 2 and c.rows_selected == cap // 2 * 2
    assert any("capped" in w for w in c.warnings) and any("not met" in w for w in c.warnings)


def test_temperature_one_is_natural_and_no_budget_keeps_everything(sws):
    c = S.live_counts(sws, {"mixture": {"group_by": "label", "temperature": 1.0}})
    assert c.rows_selected == c.rows_pool and not c.warnings
    # rounding a share to whole rows is not a shortfall when the group has room
    c = S.live_counts(sws, {"mixture": {"group_by": "label", "temperature": 10.0, "budget": {"rows": 101}}})
    assert c.rows_selected == 101 and not c.warnings and (c.groups["shortfall"] == 0).all()


def test_a_mixture_that_shrinks_the_pool_says_so_and_names_the_scarcest_group(sws):
    n = truth(sws).groupby("label").size()
    c = S.live_counts(sws, {"mixture": {"group_by": "label", "temperature": 1000.0}})
    # near-uniform shares without a budget: every group gives what the smallest one has
    assert c.rows_selected == pytest.approx(4 * n.min(), abs=4) and c.rows_selected < 0.75 * c.rows_pool
    shrink = [w for w in c.warnings if w.startswith("The mixture's shares keep")]
    assert len(shrink) == 1 and f"of the {c.rows_pool:,} rows" in shrink[0]
    assert f"{n.idxmin()!r} runs out first" in shrink[0] and "set a budget" in shrink[0]
    # a small shrink stays quiet, and a cap's clipping (natural shares) is the point, not a surprise
    assert not S.live_counts(sws, {"mixture": {"group_by": "label", "temperature": 1.2}}).warnings
    c = S.live_counts(sws, {"mixture": {"group_by": "label", "cap": int(n.min())}})
    assert c.rows_selected < 0.75 * c.rows_pool and not c.warnings
    # with a budget the size is the person's choice
    assert not [w for w in S.live_counts(sws, {"mixture": {"group_by": "label", "temperature": 1000.0,
                                                           "budget": {"rows": 50}}}).warnings
                if w.startswith("The mixture's shares keep")]


def test_what_a_mixture_removes_alone_is_the_mixture_over_every_row(sws):
    m = {"group_by": "label", "temperature": 1000.0}
    rec = {"filters": [{"column": "outlier_score", "op": "<=", "value": 0.5}], "mixture": m}
    c = S.live_counts(sws, rec)
    only_mix = S.live_counts(sws, {"mixture": m})
    assert S.mixture_removes_alone(c, rec) == only_mix.rows_total - only_mix.rows_unique > 0
    assert S.mixture_removes_alone(c, rec) != c.rows_pool - c.rows_unique  # the filter changes what it draws
    assert S.mixture_removes_alone(S.live_counts(sws, {}), {}) is None


def test_reweight_mode_keeps_every_row_and_weights_give_the_target(sws):
    w = {"alpha": 1, "beta": 1, "gamma": 1, "delta": 1}
    sel = S.select(sws, {"mixture": {"group_by": "label", "weights": w, "mode": "reweight"}})
    f = sel.frame()
    assert len(f) == S.live_counts(sws, {}).rows_pool
    share = f.groupby("label")["weight"].sum() / f["weight"].sum()
    assert share.to_dict() == pytest.approx({g: 0.25 for g in w})
    assert f["weight"].mean() == pytest.approx(1.0)


def test_soft_weights_correct_a_shortfall(sws):
    rec = {"mixture": {"group_by": "label", "weights": {g: 1 for g in LABELS}, "budget": {"rows": 400}}}
    f = S.select(sws, rec).frame()
    share = (f["weight"] * f["repeats"]).groupby(f["label"]).sum() / (f["weight"] * f["repeats"]).sum()
    assert share.to_dict() == pytest.approx({g: 0.25 for g in LABELS})


# ---------------------------------------------------------------------------- Efraimidis–Spirakis
def _u(seed: int, id_: str) -> float:
    return (int(hashlib.md5(f"{seed}:{id_}".encode()).hexdigest()[:13], 16) + 0.5) / 2 ** 52


def test_sampling_equals_numpy_reference_of_es_keys(sws):
    df = truth(sws)
    seed, k, strength = 7, 30, 2.0
    rec = {"seed": seed, "mixture": {"group_by": "label", "weights": {"beta": 1}, "budget": {"rows": k},
                                     "quality": {"column": "label_quality", "strength": strength}}}
    got = ids(S.select(sws, rec))
    beta = df[df["label"] == "beta"]
    q = beta["label_quality"].to_numpy(float)
    w = np.where(q > 0, np.power(np.nan_to_num(q, nan=0.0), strength), 0.0)
    u = np.array([_u(seed, i) for i in beta["id"]])
    key = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1), -np.inf)
    order = np.lexsort((-u, -key))  # key desc, then u desc
    assert got == set(beta["row_id"].to_numpy()[order[:k]].tolist())


def test_sampling_probability_follows_the_quality_weights(tmp_path):
    # 400 groups of 4 rows with quality 1, 2, 3, 4 (strength 1), one row drawn per group:
    # P(row i) = w_i / sum(w) = i / 10 for a weighted draw
    n_groups = 400
    rows = [{"id": f"g{g}-{i}", "text": "t", "label": f"g{g}"} for g in range(n_groups) for i in range(4)]
    from curate_core import Workspace
    ws = Workspace(tmp_path / "ws")
    ws.ingest(pd.DataFrame(rows))
    ws.store.replace_table("scores", pd.DataFrame({"row_id": np.arange(4 * n_groups),
                                                   "label_quality": np.tile([1.0, 2.0, 3.0, 4.0], n_groups)}))
    rec = {"mixture": {"group_by": "label", "budget": {"rows": n_groups}, "temperature": 1.0,
                       "quality": {"column": "label_quality", "strength": 1.0}}}
    sel = S.select(ws, rec)
    pos = sel.row_ids % 4
    freq = np.bincount(pos, minlength=4) / n_groups
    se = np.sqrt(np.array([0.1, 0.2, 0.3, 0.4]) * 0.9 / n_groups)
    assert np.all(np.abs(freq - [0.1, 0.2, 0.3, 0.4]) < 4 * se + 0.01), freq
    # strength 0: uniform
    rec["mixture"]["quality"]["strength"] = 0.0
    freq0 = np.bincount(S.select(ws, rec).row_ids % 4, minlength=4) / n_groups
    assert np.all(np.abs(freq0 - 0.25) < 0.09), freq0
    ws.close()


def test_selection_is_deterministic_and_depends_on_the_seed(sws):
    rec = {"seed": 3, "mixture": {"group_by": "label", "budget": {"rows": 100}, "temperature": 2.0}}
    a, b = S.select(sws, rec), S.select(sws, rec)
    assert a.table.equals(b.table)
    c = S.select(sws, {**rec, "seed": 4})
    assert len(c) == len(a) and ids(c) != ids(a)


# -------------------------------------------------------------------------------------- hypothesis
_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(t1=st.floats(0, 1), dt=st.floats(0, 1), col=st.sampled_from(["label_quality", "outlier_score"]),
       op=st.sampled_from(["<=", ">="]), nulls=st.sampled_from(["keep", "drop"]),
       budget=st.one_of(st.none(), st.integers(1, 700)), temp=st.floats(0.2, 50))
def test_tightening_a_filter_never_adds_rows(sws, t1, dt, col, op, nulls, budget, temp):
    loose = t1 if op == "<=" else t1 - dt
    tight = t1 - dt if op == "<=" else t1
    mk = lambda v: {"filters": [{"column": col, "op": op, "value": v, "nulls": nulls},  # noqa: E731
                                {"column": "lang", "op": "in", "value": ["en", "de"]}]}
    a, b = S.select(sws, mk(loose)), S.select(sws, mk(tight))
    assert ids(b) <= ids(a)
    mix = {"group_by": "label", "budget": None if budget is None else {"rows": budget}, "temperature": temp}
    ca, cb = S.live_counts(sws, {**mk(loose), "mixture": mix}), S.live_counts(sws, {**mk(tight), "mixture": mix})
    assert cb.rows_selected <= ca.rows_selected
    assert len(S.select(sws, {**mk(tight), "mixture": mix})) == cb.rows_selected


@_settings
@given(frac=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_large_temperature_gives_near_uniform_groups(sws, frac, seed):
    smallest = int(truth(sws).groupby("label").size().min())
    budget = 1 + int(frac * (len(LABELS) * smallest - 1))  # every label can fill a uniform share
    sel = S.select(sws, {"seed": seed, "mixture": {"group_by": "label", "budget": {"rows": budget},
                                                   "temperature": 1e6}})
    counts = sel.frame().groupby("label").size().reindex(LABELS, fill_value=0)
    assert counts.sum() == budget
    assert counts.max() - counts.min() <= 1


# -------------------------------------------------------------------------------------- misc API
def test_recipe_diff():
    a = {"filters": [{"column": "x", "op": "<", "value": 1}], "mixture": {"group_by": "label"}}
    b = {"filters": [{"column": "x", "op": "<", "value": 2}, {"column": "y", "op": ">", "value": 0}], "seed": 1}
    d = {p: (x, y) for p, x, y in S.recipe_diff(a, b)}
    assert d["seed"] == (0, 1)
    assert d["filters[0].value"] == (1, 2)
    assert d["filters[1]"][0] is None and d["filters[1]"][1]["column"] == "y"
    assert d["mixture"][1] is None
    assert S.recipe_diff(a, a) == []


def test_load_recipe_from_file_saved_name_and_errors(fresh, tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"seed": 5}))
    assert S.load_recipe(str(p)).seed == 5
    fresh.store.save_recipe("mine", {"seed": 6})
    assert S.load_recipe("mine", fresh.store).seed == 6
    with pytest.raises(CurateError, match="No recipe file"):
        S.load_recipe("nothing-here", fresh.store)


def test_workspace_methods_and_example_recipes(fresh):
    assert len(fresh.select(str(REPO / "assets/recipes/all.json"))) == 300
    clean = fresh.select(str(REPO / "assets/recipes/clean.json"))
    df = truth(fresh)
    pool = df[df["consensus"].isna() | (df["consensus"] < 2)]
    # exact dedup keeps the best-ranked row of each duplicate group among the rows the filter left
    first = pool.dropna(subset=["dup_group"]).sort_values(["dup_rank", "row_id"]).groupby("dup_group")["row_id"].first()
    want = set(pool.loc[pool["dup_group"].isna(), "row_id"]) | set(first)
    assert ids(clean) == want
    assert (pool["dup_rank"] > 0).any() and len(want) < len(pool)
    bal = fresh.live_counts(str(REPO / "assets/recipes/balanced.json"))
    assert bal.rows_selected == 300  # budget 2,000 > 300 rows: everything, with the shortfall stated
    assert any("not met" in w for w in bal.warnings)


# ----------------------------------------------------------------------------- review fixes (wrong answers)
def test_a_label_filter_sees_the_label_after_relabel(tmp_path):
    ws = build(tmp_path / "w")
    first = int(ws.samples(["row_id", "label"]).query("label == 'alpha'")["row_id"].iloc[0])
    ws.decide([first], "relabel", "beta")
    for reviewed in (True, False):
        dec = {"exclude": True, "relabel": True, "reviewed_pass_filters": reviewed}
        alpha = ws.select({"filters": [{"column": "label", "op": "in", "value": ["alpha"]}], "decisions": dec})
        beta = ws.select({"filters": [{"column": "label", "op": "==", "value": "beta"}], "decisions": dec})
        # a relabelled row is a reviewed row: with reviewed_pass_filters it passes every filter anyway
        assert (first in alpha.row_ids.tolist()) == reviewed
        assert first in beta.row_ids.tolist() and set(beta.labels) == {"beta"}


def test_user_columns_named_like_decision_columns_filter_fine(tmp_path):
    from curate_core import Workspace

    ws = Workspace(tmp_path / "w")
    ws.ingest(pd.DataFrame({"text": [f"t{i}" for i in range(10)], "value": list(range(10)),
                            "action": ["a"] * 10}))
    ws.decide([0], "keep")
    sel = ws.select({"filters": [{"column": "value", "op": ">", "value": 4},
                                 {"column": "action", "op": "==", "value": "a"}]})
    assert sel.row_ids.tolist() == [0, 5, 6, 7, 8, 9]  # row 0 was reviewed (keep): it passes the filters


def test_an_empty_weighted_group_does_not_eat_the_budget_or_empty_the_mix(tmp_path):
    ws = build(tmp_path / "w")
    no_delta = [{"column": "label", "op": "!=", "value": "delta"}]
    weights = {g: 1.0 for g in LABELS}
    for reps in (None, 1):
        mix = {"group_by": "label", "weights": weights, "budget": {"rows": 240}, "max_repeats": reps}
        sel = ws.select({"filters": no_delta, "mixture": mix})
        counts = ws.live_counts({"filters": no_delta, "mixture": mix})
        assert len(sel) == counts.rows_selected == 240
        assert "delta" not in sel.group_counts and any("delta" in w for w in counts.warnings)
    mix = {"group_by": "label", "weights": weights, "budget": None, "redistribute": True}
    sel = ws.select({"filters": no_delta, "mixture": mix})
    assert len(sel) > 0 and any("delta" in w for w in ws.live_counts({"filters": no_delta, "mixture": mix}).warnings)


# ------------------------------------------------------------------------------------------ auto-relabel
AUTO = {"decisions": {"auto_relabel": {"min_consensus": 2, "min_confidence": 0.6}}}


def _with_suggestions(ws):
    """The fixture's scores plus a suggested label and its probability (seeded), as label_quality writes them."""
    sc = ws.store.read_table("scores")
    rng = np.random.default_rng(4)
    sc["suggested_label"] = rng.choice(LABELS, len(sc))
    sc["suggested_confidence"] = rng.random(len(sc))
    ws.store.replace_table("scores", sc)
    return truth(ws)


def test_auto_relabel_relabels_sure_flagged_rows_and_drops_the_rest(fresh):
    df = _with_suggestions(fresh)
    sel = S.select(fresh, AUTO)
    flagged = df["consensus"].fillna(0) >= 2
    sure = (df["suggested_label"] != df["label"]) & (df["suggested_confidence"] >= 0.6)
    want = df.loc[~flagged | sure]
    assert ids(sel) == set(want["row_id"]) and 0 < (flagged & sure).sum() < flagged.sum()
    lab = dict(zip(sel.row_ids.tolist(), sel.labels.tolist()))
    expect = np.where(flagged & sure, df["suggested_label"], df["label"])
    assert all(lab[r] == e for r, e in zip(df["row_id"], expect) if r in lab)
    steps = {s.key: s for s in S.live_counts(fresh, AUTO).steps}
    assert steps["decisions.auto_relabel"].removes_alone == int((flagged & ~sure).sum())
    keep = S.select(fresh, {"decisions": {"auto_relabel": {**AUTO["decisions"]["auto_relabel"], "drop_rest": False}}})
    assert len(keep) == len(df)  # without drop_rest every row stays, the sure ones relabelled
    assert sum(a != b for a, b in zip(keep.labels.tolist(), keep.table.column("label_original").to_pylist())) \
        == int((flagged & sure).sum())


def test_a_persons_decision_wins_over_auto_relabel(fresh):
    df = _with_suggestions(fresh)
    flagged = df["consensus"].fillna(0) >= 2
    sure = (df["suggested_label"] != df["label"]) & (df["suggested_confidence"] >= 0.6)
    relabel_me, keep_me = (int(r) for r in df.loc[flagged & sure, "row_id"].iloc[:2])
    unsure = int(df.loc[flagged & ~sure, "row_id"].iloc[0])
    fresh.decide([relabel_me], "relabel", value="alpha" if df.set_index("row_id").loc[relabel_me, "suggested_label"]
                 != "alpha" else "beta")
    fresh.decide([keep_me, unsure], "keep")
    sel = S.select(fresh, AUTO)
    lab = dict(zip(sel.row_ids.tolist(), sel.labels.tolist()))
    given = df.set_index("row_id")["label"]
    assert lab[relabel_me] == fresh.store.query_df(
        "SELECT value FROM decisions WHERE row_id = ? ORDER BY seq DESC LIMIT 1", [relabel_me])["value"].iloc[0]
    assert lab[keep_me] == given[keep_me] and lab[unsure] == given[unsure]  # kept as given, not relabelled/dropped


def test_auto_relabel_parses_refuses_bad_values_and_leaves_other_recipes_unchanged(fresh):
    r = S.parse_recipe(AUTO)
    assert r.auto_relabel.min_consensus == 2 and r.auto_relabel.drop_rest is True
    assert S.parse_recipe(r.to_json()) == r and "auto-relabel" in r.auto_relabel.describe()
    assert "auto_relabel" not in S.parse_recipe({}).to_json()["decisions"]  # old recipes keep their document
    for bad, field in (({"min_consensus": 0}, "min_consensus"), ({"min_confidence": 1.5}, "min_confidence"),
                       ({"min_confidence": "high"}, "min_confidence"), ({"colour": 1}, "colour")):
        with pytest.raises(CurateError, match=f"decisions.auto_relabel.*{field}|{field}.*auto_relabel"):
            S.parse_recipe({"decisions": {"auto_relabel": bad}})
    with pytest.raises(CurateError, match="suggested_label|suggested_confidence"):
        S.select(fresh, AUTO)  # the fixture's scores have no suggestions: named, with the stage that writes them


CLEAN = {"decisions": {"auto_relabel": {"min_consensus": 2, "min_confidence": 0.3, "suggestion": "clean_probe",
                                        "min_agreement": 0.5}}}


def test_auto_relabel_from_the_clean_probe_needs_the_neighbours_to_agree(fresh):
    df = _with_suggestions(fresh)
    sc = fresh.store.read_table("scores")
    rng = np.random.default_rng(5)
    flagged_sc = sc["consensus"].fillna(0).to_numpy() >= 2
    sc["relabel_label"] = np.where(flagged_sc, rng.choice(LABELS, len(sc)), None)
    sc["relabel_confidence"] = np.where(flagged_sc, rng.random(len(sc)), np.nan)
    sc["relabel_agreement"] = np.where(flagged_sc, rng.random(len(sc)), np.nan)
    fresh.store.replace_table("scores", sc)
    df = truth(fresh)
    sel = S.select(fresh, CLEAN)
    flagged = df["consensus"].fillna(0) >= 2
    sure = ((df["relabel_label"] != df["label"]) & (df["relabel_confidence"] >= 0.3)
            & (df["relabel_agreement"] >= 0.5))
    assert 0 < (flagged & sure).sum() < flagged.sum()
    assert ids(sel) == set(df.loc[~flagged | sure, "row_id"])
    lab = dict(zip(sel.row_ids.tolist(), sel.labels.tolist()))
    expect = np.where(flagged & sure, df["relabel_label"], df["label"])
    assert all(lab[r] == e for r, e in zip(df["row_id"], expect) if r in lab)
    # the out-of-fold rule on the same workspace reads the other columns, and selects other rows
    assert ids(S.select(fresh, AUTO)) != ids(sel)
    r = S.parse_recipe(CLEAN)
    assert S.parse_recipe(r.to_json()) == r and "unflagged" in r.auto_relabel.describe()
    assert set(r.columns()) >= {"relabel_label", "relabel_confidence", "relabel_agreement", "consensus"}
    for bad, field in (({"suggestion": "oracle"}, "suggestion"), ({"min_agreement": 2}, "min_agreement"),
                       ({"min_agreement": 0.5}, "min_agreement")):  # the last: agreement without the clean probe
        with pytest.raises(CurateError, match=f"decisions.auto_relabel.{field}"):
            S.parse_recipe({"decisions": {"auto_relabel": bad}})


def test_relabel_recipe_is_shipped_and_documented():
    doc = json.loads((REPO / "assets/recipes/relabel.json").read_text())
    assert S.parse_recipe(doc).auto_relabel is not None
    assert "assets/recipes/relabel.json" in (REPO / "README.md").read_text()
