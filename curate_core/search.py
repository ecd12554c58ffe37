"""Find rows: keyword (every term, case-insensitive, ranked BM25-style), regex (DuckDB's RE2), semantic (the
query embedded by the workspace's own embedder, cosine top-k) and "more like this" (a row's neighbours).

Keyword and regex run in DuckDB over ``samples.text`` (the ``fts`` extension cannot be installed offline, and a
substring scan of 1M short texts takes a fraction of a second). Semantic search is an exact cosine top-k with one
matrix product: at ≤ 10M × 384 that is tens of milliseconds a million rows, far below what an approximate index
would save, and exact means the same answer every time. The vectors are read once per embed run into a
float32 ``.npy`` beside the database (``cache/search-<run_key>.npy``, memory-mapped), so a CLI call does not
re-read 1.5 GB from DuckDB. ``--where`` narrows every mode with the recipe's filter rules.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import CurateError, choices
from .recipes.model import OPS, _parse_filter
from .recipes.source import source
from .embedders import normalise
from .rules import Params, check_regex, filter_passes, keyword_terms, match_sql
from .store import Store

MODES = ("keyword", "regex", "semantic")
K1, B = 1.2, 0.75  # BM25's usual constants


@dataclass
class SearchResult:
    """The ranked rows of one search (``rows``: row_id, id, score, label, cluster, text; best first) and every
    matching row id (``matched``: all keyword/regex matches, the top k of a semantic or "like" search)."""

    mode: str
    query: str | None
    like: str | None
    count: int
    rows: pd.DataFrame
    matched: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        recs = json.loads(self.rows.to_json(orient="records", force_ascii=False))
        return {"mode": self.mode, "query": self.query, "like": self.like, "count": self.count, "rows": recs}


def parse_where(items: Sequence[Sequence[str]] | None) -> list[dict]:
    """``[["aum", "<", "0"], ["label", "==", "card_arrival"]]`` → recipe filter documents (values parsed as
    JSON when they parse, e.g. numbers, ``true``, ``[1, 2]``)."""
    out = []
    for it in items or []:
        if len(it) != 3:
            raise CurateError(f"--where takes COLUMN OP VALUE, got {' '.join(it)!r}", "e.g. --where aum '<' 0")
        col, op, raw = it
        if op == "=":
            op = "=="
        if op not in OPS:
            raise CurateError(f"Unknown operator {op!r} in --where", f"use one of {choices(OPS)}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.append({"column": col, "op": op, "value": value})
    return out


def _where_sql(store: Store, where: Sequence[dict], p: Params) -> tuple[str, str]:
    """(JOIN, condition) restricting ``samples s0`` to the rows that pass every *where* filter."""
    if not where:
        return "", "TRUE"
    cat = store.catalog()
    filters = [_parse_filter(f, f"--where {i + 1}") for i, f in enumerate(where)]
    unknown = [f.column for f in filters if f.column not in cat]
    if unknown:
        raise CurateError(f"--where names unknown column(s) {choices(unknown)}", f"columns: {choices(sorted(cat))}")
    rel = source(store, [f.column for f in filters if f.column != "row_id"])
    keeps = " AND ".join(filter_passes(f.column, f.op, f.value, f.nulls, p) for f in filters)
    return f"JOIN {rel} s ON s.row_id = s0.row_id", keeps


def _terms(query: str) -> list[str]:
    terms = keyword_terms(query)
    if not terms:
        raise CurateError("The keyword query is empty", "type one or more words")
    return terms


def keyword(store: Store, query: str, where: Sequence[dict] = ()) -> tuple[pd.DataFrame, int]:
    """Rows containing every term (case-insensitive substrings), scored by BM25 over term occurrences."""
    terms = _terms(query)
    p = Params()
    ph = [p(t) for t in terms]
    has = [f"contains(lower(text), {x})" for x in ph]
    with store.cursor() as cur:
        n, avg, *dfs = cur.execute("SELECT count(*), avg(length(text)), "
                                   + ", ".join(f"count(*) FILTER (WHERE {h})" for h in has) + " FROM samples",
                                   p.values).fetchall()[0]
        if not n:
            return pd.DataFrame({"row_id": pd.Series([], "int64"), "score": pd.Series([], "float64")}), 0
        idf = [math.log(1 + (n - d + 0.5) / (d + 0.5)) for d in dfs]
        join, cond = _where_sql(store, where, p)
        norm = f"{K1} * (1 - {B} + {B} * length(s0.text) / {float(avg or 1.0)!r})"
        tf = [f"((length(lower(s0.text)) - length(replace(lower(s0.text), {x}, ''))) / {len(t)})"
              for x, t in zip(ph, terms)]
        score = " + ".join(f"{w!r} * {f} * {K1 + 1} / ({f} + {norm})" for w, f in zip(idf, tf))
        df = cur.execute(f"""SELECT s0.row_id, {score} AS score FROM samples s0 {join}
                             WHERE {match_sql(query, "keyword", p, "s0.text")} AND {cond}""",
                         p.values).df()
    return df, len(df)


def regex(store: Store, pattern: str, where: Sequence[dict] = ()) -> tuple[pd.DataFrame, int]:
    """Rows whose text matches *pattern* (RE2 syntax, case-sensitive unless it starts with ``(?i)``), scored
    by the number of matches."""
    if not pattern:
        raise CurateError("The regular expression is empty", "e.g. --query '^how (do|can) i'")
    check_regex(pattern)
    p = Params()
    pat = p(pattern)
    with store.cursor() as cur:
        join, cond = _where_sql(store, where, p)
        df = cur.execute(f"""SELECT s0.row_id, CAST(len(regexp_extract_all(s0.text, {pat})) AS DOUBLE) AS score
                             FROM samples s0 {join} WHERE {match_sql(pattern, "regex", p, "s0.text")} AND {cond}""",
                         p.values).df()
    return df, len(df)


# ------------------------------------------------------------------------------------------ semantic
def _vectors(store: Store) -> tuple[np.ndarray, np.ndarray]:
    """(row_ids, unit-length float32 vectors) of the workspace's embeddings, memory-mapped from a per-run file."""
    from .embed import embeddings

    run = store.latest_runs(statuses=("done",)).get("embed")
    if run is None:
        raise CurateError("Semantic search needs embeddings, and the workspace has none yet",
                          f"run the embed stage: python -m curate_core run --workspace {store.path} --stages embed")
    folder = Path(store.path) / "cache"
    vec_f, ids_f = folder / f"search-{run['run_key']}.npy", folder / f"search-{run['run_key']}-ids.npy"
    if vec_f.exists() and ids_f.exists():
        return np.load(ids_f), np.load(vec_f, mmap_mode="r")
    ids, vecs = embeddings(store)
    vecs = normalise(vecs)
    folder.mkdir(exist_ok=True)
    for old in folder.glob("search-*.npy"):  # vectors of earlier embed runs (not this one's, another process may
        if run["run_key"] not in old.name:  # be writing them right now)
            old.unlink(missing_ok=True)
    for f, arr in ((ids_f, ids), (vec_f, vecs)):  # the vectors last: they are what "ready" is checked by
        tmp = f.with_name(f".{f.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, arr)
        tmp.replace(f)
    return ids, vecs


_EMBEDDERS: dict[tuple[str, str], Any] = {}


def query_embedder(store: Store) -> Any:
    """The workspace's embedder, ready to embed queries: built (model loaded, TF-IDF refit) once per process
    and embed run, so the second query of a session costs one encode."""
    from .embed import workspace_embedder

    run = store.latest_runs(statuses=("done",)).get("embed")
    key = (str(store.path), run["run_key"] if run else "")
    if key not in _EMBEDDERS:
        _EMBEDDERS.clear()  # one workspace's model at a time
        _EMBEDDERS[key] = workspace_embedder(store)
    return _EMBEDDERS[key]


def _allowed(store: Store, where: Sequence[dict]) -> np.ndarray | None:
    if not where:
        return None
    p = Params()
    join, cond = _where_sql(store, where, p)
    with store.cursor() as cur:
        return cur.execute(f"SELECT s0.row_id FROM samples s0 {join} WHERE {cond}", p.values).df()["row_id"].to_numpy()


def top_k(vecs: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None,
          exclude: int | None = None, chunk: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
    """(positions, cosine scores) of the *k* rows most similar to unit vector *q*, best first (ties: lower
    position first). Batched so memory stays flat at 10M rows."""
    sims = np.empty(len(vecs), np.float32)
    for lo in range(0, len(vecs), chunk):
        sims[lo:lo + chunk] = np.asarray(vecs[lo:lo + chunk]) @ q
    if allowed is not None:
        mask = np.full(len(vecs), -np.inf, np.float32)
        mask[allowed] = 0
        sims += mask
    if exclude is not None:
        sims[exclude] = -np.inf
    k = min(int(k), int(np.isfinite(sims).sum()))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    part = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
    order = np.lexsort((part, -sims[part]))
    return part[order], sims[part[order]]


def semantic(store: Store, query: str | None = None, like: str | None = None, k: int = 50,
             where: Sequence[dict] = ()) -> tuple[pd.DataFrame, int]:
    """The *k* rows nearest to the embedded *query*, or to the row whose id is *like* (the row itself left out)."""
    ids, vecs = _vectors(store)
    exclude = None
    if like is not None:
        with store.cursor() as cur:
            hit = cur.execute("SELECT row_id FROM samples WHERE id = ?", [str(like)]).fetchall()
        if not hit:
            raise CurateError(f"No row with id {like!r}", "ids are the `id` column (info shows a few)")
        pos = np.searchsorted(ids, hit[0][0])
        if pos >= len(ids) or ids[pos] != hit[0][0]:
            raise CurateError(f"Row {like!r} has no embedding yet", "run the embed stage again")
        q, exclude = np.asarray(vecs[pos], np.float32), int(pos)
    else:
        if not query or not query.strip():
            raise CurateError("The semantic query is empty", "type a sentence, e.g. --query 'I lost my card'")
        q = normalise(query_embedder(store).encode([query]))[0]
    allowed = _allowed(store, where)
    allowed_pos = None if allowed is None else np.searchsorted(ids, allowed[np.isin(allowed, ids)])
    pos, sims = top_k(vecs, q, k, allowed_pos, exclude)
    return pd.DataFrame({"row_id": ids[pos], "score": sims.astype(np.float64)}), len(pos)


# --------------------------------------------------------------------------------------------- entry
def search(store: Store, query: str | None = None, mode: str = "keyword", like: str | None = None, k: int = 50,
           where: Sequence[dict] = ()) -> SearchResult:
    """Search the workspace: see the module docstring. *k* limits the rows shown (and, for semantic and
    "like" searches, the rows matched)."""
    if int(k) < 1:
        raise CurateError(f"--k must be at least 1; got {k}", "how many rows to show, e.g. --k 50")
    if like is not None:
        mode = "semantic"
        scored, count = semantic(store, like=like, k=k, where=where)
    elif query is None:
        raise CurateError("Give a query or a row to find neighbours of", "--query TEXT, or --like ID")
    elif mode == "keyword":
        scored, count = keyword(store, query, where)
    elif mode == "regex":
        scored, count = regex(store, query, where)
    elif mode == "semantic":
        scored, count = semantic(store, query=query, k=k, where=where)
    else:
        raise CurateError(f"Unknown search mode {mode!r}", f"use one of {choices(MODES)}")
    scored = scored.sort_values(["score", "row_id"], ascending=[False, True], kind="stable")
    return SearchResult(mode, query, like, count, details(store, scored.head(int(k))),
                        np.sort(scored["row_id"].to_numpy(np.int64)))


def details(store: Store, scored: pd.DataFrame) -> pd.DataFrame:
    """row_id, id, score, label, cluster (when the map has run), text of the scored rows, in their order."""
    cols = ["id", "label", "text"] + (["cluster"] if "cluster" in store.catalog() else [])
    if scored.empty:
        return pd.DataFrame({c: [] for c in ["row_id", "id", "score", "label", "cluster", "text"]})
    with store.cursor() as cur:
        cur.register("_hits", scored[["row_id", "score"]])
        try:
            rel = source(store, cols, cached=False)
            out = cur.execute(f"""SELECT h.row_id, s.id, h.score, s.label, {'s.cluster' if 'cluster' in cols
                                  else 'NULL::INTEGER AS cluster'}, s.text
                                  FROM _hits h JOIN {rel} s USING (row_id)""").df()
        finally:
            cur.unregister("_hits")
    order = {r: i for i, r in enumerate(scored["row_id"])}
    return out.sort_values("row_id", key=lambda c: c.map(order)).reset_index(drop=True)


def save(store: Store, result: SearchResult, name: str) -> int:
    """Save every matched row as the named selection (for recipes' ``selections.only`` / ``except``)."""
    return store.save_selection(name, result.matched)

