"""Search: keyword and regex counts equal plain Python, BM25 order, invalid patterns, semantic and "more like
this" on TF-IDF vectors, --where, saved selections replayed by a recipe, and the CLI's JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from curate_core import CurateError, Workspace
from curate_core.search import parse_where, save, search, top_k

from .conftest import REPO

TEXTS = ["My card was declined", "how do I top up my CARD", "How can I get a new card?", "card card card payment",
         "Where is my refund", "how do i reset my PIN", "Top up failed twice", "the ATM kept my card",
         "refund for a cancelled order", "Is there a fee to top up by card?", "<b>html</b> & stuff card"]


@pytest.fixture
def sws(tmp_path):
    df = pd.DataFrame({"id": [f"t{i:02d}" for i in range(len(TEXTS))], "text": TEXTS,
                       "label": ["card", "topup", "card", "card", "refund", "pin", "topup", "card", "refund",
                                 "topup", "card"]})
    with Workspace(tmp_path / "w") as ws:
        ws.ingest(df)
        ws.run(["embed", "textstats"], params={"embed": {"embedder": "tfidf", "dim": 8}})
        yield ws


def test_keyword_matches_every_term_case_insensitively_and_ranks_by_bm25(sws):
    for q in ("card", "top up", "CARD how", "zzz"):
        want = sum(all(t.lower() in x.lower() for t in q.split()) for x in TEXTS)
        assert search(sws.store, q, k=100).count == want
    res = search(sws.store, "card", k=3)
    assert res.count == 7 and len(res.rows) == 3
    assert res.rows["id"].iloc[0] == "t03"  # "card card card payment": three occurrences in a short text
    assert list(res.rows["score"]) == sorted(res.rows["score"], reverse=True)
    assert len(res.matched) == 7  # every match is kept for a saved selection, not only the rows shown
    with pytest.raises(CurateError, match="empty"):
        search(sws.store, "   ")


def test_regex_equals_python_re_and_bad_patterns_are_clear(sws):
    for pat in (r"^how (do|can) i", r"(?i)^how", r"\?$", "top.up"):
        assert search(sws.store, pat, mode="regex", k=100).count == sum(bool(re.search(pat, t)) for t in TEXTS)
    with pytest.raises(CurateError, match="Invalid regular expression '\\(unclosed'"):
        search(sws.store, "(unclosed", mode="regex")


def test_semantic_and_like_rank_by_cosine(sws):
    res = search(sws.store, "top up my card", mode="semantic", k=4)
    assert res.count == 4 and list(res.rows["score"]) == sorted(res.rows["score"], reverse=True)
    assert res.rows["score"].iloc[0] <= 1.0 + 1e-6
    like = search(sws.store, like="t01", k=3)
    assert like.mode == "semantic" and "t01" not in set(like.rows["id"]) and like.count == 3
    with pytest.raises(CurateError, match="No row with id 'nope'"):
        search(sws.store, like="nope")


def test_top_k_is_exact_with_stable_ties():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(1000, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v[10] = v[20]  # a tie: the lower position comes first
    q = v[20]
    pos, sims = top_k(v, q, 5, chunk=128)
    want = np.lexsort((np.arange(1000), -(v @ q)))[:5]
    assert list(pos) == list(want) and pos[0] == 10 and pos[1] == 20
    pos, _ = top_k(v, q, 5, allowed=np.arange(500, 1000), exclude=None)
    assert (pos >= 500).all()


def test_where_narrows_every_mode(sws):
    where = parse_where([["label", "==", "topup"]])
    assert search(sws.store, "card", where=where, k=100).count == 2
    assert search(sws.store, "top", mode="regex", where=where, k=100).count == 2  # not "Top up failed": capital T
    assert set(search(sws.store, "card", mode="semantic", where=where, k=10).rows["label"]) == {"topup"}
    with pytest.raises(CurateError, match="unknown column"):
        search(sws.store, "card", where=parse_where([["nope", ">", "1"]]))
    with pytest.raises(CurateError, match="Unknown operator"):
        parse_where([["n_words", "~", "1"]])


def test_a_saved_search_replays_in_a_recipe(sws, tmp_path):
    res = search(sws.store, "card", k=1)
    assert save(sws.store, res, "cards") == 7
    recipe = {"version": 1, "selections": {"only": ["cards"], "except": []}, "decisions": False}
    out = tmp_path / "out"
    sws.export(recipe, out, fmt="csv")
    got = pd.read_csv(next(out.glob("data*.csv")))
    assert sorted(got["id"]) == sorted(f"t{i:02d}" for i, t in enumerate(TEXTS) if "card" in t.lower())


def test_cli_search_json_and_errors(sws):
    sws.close()
    cli = [sys.executable, "-m", "curate_core", "search", "--workspace", str(sws.path)]
    r = subprocess.run([*cli, "--query", "card", "--json", "--k", "2", "--save-selection", "kw"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["mode"] == "keyword" and doc["count"] == 7 and len(doc["rows"]) == 2 and doc["saved"] == "kw"
    assert {"id", "score", "label", "cluster", "text"} <= set(doc["rows"][0])
    r = subprocess.run([*cli, "--query", "(unclosed", "--mode", "regex"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: Invalid regular expression")
    r = subprocess.run([*cli, "--query", "card"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("7 rows match keyword 'card'")


def test_a_recipe_search_step_replays_the_query(sws, tmp_path):
    from curate_core.select import live_counts

    only = {"search": [{"query": "card", "mode": "keyword"}], "decisions": False}
    c = live_counts(sws, only, cached=False)
    want = sum("card" in t.lower() for t in TEXTS)
    assert c.rows_selected == want and c.steps[-1].name == 'only rows matching keyword "card"'
    assert live_counts(sws, {"search": [{"query": "card", "match": "except"}]}).rows_selected == len(TEXTS) - want
    rx = {"search": [{"query": r"^how (do|can) i", "mode": "regex"}]}
    assert live_counts(sws, rx).rows_selected == sum(bool(re.search(r"^how (do|can) i", t)) for t in TEXTS)
    sws.export(only, tmp_path / "out", fmt="csv")
    got = pd.read_csv(next((tmp_path / "out").glob("data*.csv")))
    assert len(got) == want
    assert json.loads((tmp_path / "out" / "recipe.json").read_text())["search"] == [
        {"query": "card", "mode": "keyword", "match": "only"}]
    assert "search" not in sws.select({}).recipe.to_json()  # a recipe without search steps keeps its document
    with pytest.raises(CurateError, match=r"search\[0\]\.query: Invalid regular expression"):
        live_counts(sws, {"search": [{"query": "(x", "mode": "regex"}]})
    with pytest.raises(CurateError, match="save its rows"):
        live_counts(sws, {"search": [{"query": "x", "mode": "semantic"}]})
