"""The read side of the Duplicates & outliers page, headless: what it shows and the recipe draft it writes.

Everything a slider changes is computed here from columns already in the workspace (the ``scores`` and
``textstats`` tables): moving the SemDeDup eps, the outlier threshold or a heuristic's range never reruns a
stage. The page keeps the chosen values in the recipe draft (``recipes`` row ``__draft__``, recipe v1): it
owns the ``dedup`` entry and the ``filters`` on the columns in :data:`FILTER_COLUMNS`, and leaves every other
entry as it found it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from . import dedup, rules
from .errors import CurateError
from .recipes.draft import RecipeDraft, with_dedup, with_filters
from .recipes.model import DRAFT, filter_column, new_recipe  # noqa: F401  (re-exported: the page and tests use dupview.DRAFT)
from .scores import registry
from .store import Store, quote_ident
from .textstats import COLUMNS as TEXTSTATS_COLUMNS



@dataclass(frozen=True)
class Heuristic:
    column: str
    title: str
    integer: bool = False


#: range-filterable text statistics, in page order: the textstats stage's columns, then every numeric column of
#: the text-quality scores (derived from their declarations)
HEURISTICS = tuple(Heuristic(c.name, c.title or c.name, c.integer)
                   for c in (*TEXTSTATS_COLUMNS, *(c for s in registry().values() if s.topic == "quality"
                                                   for c in s.columns))
                   if c.type != "VARCHAR")
SEMDEDUP_COLUMNS = tuple(registry()["semdedup_sim"].column_names)
#: filters this page owns in the recipe draft (anything else in `filters` is kept as it is)
FILTER_COLUMNS = frozenset([h.column for h in HEURISTICS] + ["outlier_score", "lang"])


def scores_run(store: Store) -> str | None:
    """Run key of the latest finished `scores` run (a cache key for the page), or None."""
    return store.done_run_keys().get("scores")


def missing_columns(store: Store, columns: Sequence[str]) -> list[str]:
    cat = store.catalog()
    return [c for c in columns if c not in cat]


def skipped_scores(store: Store) -> dict[str, str]:
    """Scores the latest `scores` run skipped, with the reason (e.g. no embeddings, one class)."""
    run = store.latest_runs().get("scores")
    if run is None or not run.get("summary"):
        return {}
    summary = run["summary"] if isinstance(run["summary"], dict) else json.loads(run["summary"])
    return dict(summary.get("skipped") or {})


def require_columns(store: Store, columns: Sequence[str], what: str) -> None:
    """Raise a CurateError naming the stage to run when *columns* are not in the workspace."""
    missing = missing_columns(store, columns)
    if not missing:
        return
    embed_based = {c for sc in registry().values() if "embeddings" in sc.requires for c in sc.column_names}
    reasons = "; ".join(f"{k}: {v}" for k, v in skipped_scores(store).items() if k in missing)
    if any(c in embed_based for c in missing) and not store.table_exists("embeddings"):
        stages, reason = "embed,scores", "the rows have no embeddings yet"
    else:
        stages, reason = "scores", reasons or "the scores stage has not computed them"
    raise CurateError(f"{what} needs {', '.join(f'`{c}`' for c in missing)}, which the workspace does not have "
                      f"({reason})",
                      f"run: python -m curate_core run --workspace {store.path} --stages {stages}")


def load_columns(store: Store, columns: Sequence[str]) -> pd.DataFrame:
    """row_id plus the given per-row columns (those that exist), for every row."""
    have = [c for c in columns if c not in missing_columns(store, columns)]
    return store.rows(["row_id", *have])


# ------------------------------------------------------------------------------------- exact groups
def dup_groups(store: Store, limit: int | None = None) -> pd.DataFrame:
    """Exact-duplicate groups: dup_group, size, labels (distinct), conflict, first row_id, its text.

    Groups with conflicting labels first, then larger groups first.
    """
    require_columns(store, ["dup_group", "dup_label_conflict"], "Exact duplicate groups")
    lim = f" LIMIT {int(limit)}" if limit is not None else ""
    return store.query_df(
        f"""SELECT c.dup_group, count(*) AS size, count(DISTINCT s.label) AS labels,
                   bool_or(c.dup_label_conflict) AS conflict, min(s.row_id) AS first_row,
                   arg_min(s.text, s.row_id) AS text
            FROM scores c JOIN samples s USING (row_id) WHERE c.dup_group >= 0
            GROUP BY c.dup_group ORDER BY conflict DESC, size DESC, c.dup_group{lim}""")


def dup_group_sizes(store: Store) -> pd.DataFrame:
    """(size, groups): how many exact-duplicate groups have each size."""
    require_columns(store, ["dup_group"], "Exact duplicate groups")
    return store.query_df("""SELECT size, count(*) AS groups FROM (
                                 SELECT count(*) AS size FROM scores WHERE dup_group >= 0 GROUP BY dup_group)
                             GROUP BY size ORDER BY size""")


def dup_group_rows(store: Store, group: int, extra: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of one exact-duplicate group, kept row first: row_id, id, label, dup_rank, *extra*, text."""
    require_columns(store, ["dup_group", "dup_rank", *extra], "An exact duplicate group")
    cols = "".join(f", c.{quote_ident(e)}" for e in extra)
    return store.query_df(f"""SELECT s.row_id, s.id, s.label, c.dup_rank{cols}, s.text
                              FROM scores c JOIN samples s USING (row_id) WHERE c.dup_group = ?
                              ORDER BY c.dup_rank, s.row_id""", [int(group)])


# ------------------------------------------------------------------------------------------- numbers
def exact_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Totals of the exact-duplicate columns: groups, rows in groups, repeats (rank > 0), conflicting groups."""
    g = frame["dup_group"].to_numpy()
    in_group = g >= 0
    conflict = frame["dup_label_conflict"].to_numpy(dtype=bool) & in_group
    return {"groups": int(np.unique(g[in_group]).size), "rows_in_groups": int(in_group.sum()),
            "repeats": int((frame["dup_rank"].to_numpy() > 0).sum()),
            "conflict_groups": int(np.unique(g[conflict]).size)}


def top_rows(store: Store, frame: pd.DataFrame, column: str, above: float, n: int = 20) -> pd.DataFrame:
    """The *n* rows with the largest *column* above *above*: row_id, id, label, the score, text."""
    top = frame[frame[column] > above].nlargest(n, column)[["row_id", column]]
    if top.empty:
        return pd.DataFrame(columns=["row_id", "id", "label", column, "text"])
    rows = store.rows(["row_id", "id", "label", "text"], row_ids=top["row_id"].to_numpy())
    out = top.merge(rows, on="row_id")
    return out[["row_id", "id", "label", column, "text"]]


def histogram(values: Sequence[float], bins: int = 40, integer: bool = False) -> pd.DataFrame:
    """Bars for a histogram: left, right, count (finite values only; integer data gets whole-number bins)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return pd.DataFrame({"left": [], "right": [], "count": []})
    lo, hi = float(v.min()), float(v.max())
    if integer:  # bins centred on whole numbers
        width = max(1, math.ceil((hi - lo + 1) / bins))
        edges = np.arange(lo - 0.5, hi + width, width, dtype=np.float64)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts, edges = np.histogram(v, bins=edges)
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts.astype(np.int64)})


def outside(values: Sequence[float], lo: float | None, hi: float | None, nulls: str = "keep") -> int:
    """Rows a ``between [lo, hi]`` filter drops, counted by the recipe's own rule
    (:func:`curate_core.rules.filter_fails`): NaN rows are kept by default, as recipe filters keep NULLs — a row
    a score cannot judge is not evidence against it — and dropped with ``nulls="drop"``."""
    if lo is None and hi is None and nulls == "keep":
        return 0
    p = rules.Params()
    fails = rules.filter_fails("v", "between", [lo, hi], nulls, p) if (lo, hi) != (None, None) else \
        "s.v IS NULL"
    return rules.count({"v": np.asarray(values, dtype=np.float64)}, [fails], p.values)[0]


def kept_nulls(current: dict | None, new: dict | None) -> str:
    """The ``nulls`` rule the draft will hold for the page's filter *new*: the current filter's, when the page
    leaves its op and value as they are (the draft keeps that filter's dict, see ``recipes.draft``), else keep."""
    if current and new and (current.get("op"), current.get("value")) == (new["op"], new["value"]):
        return current.get("nulls", "keep")
    return "keep"


def semdedup_view(frame: pd.DataFrame, eps: float) -> dict:
    """Counts at *eps* from the stored columns: removed rows, share, and the per-cell kept fractions."""
    cells = dedup.kept_by_cell(frame["semdedup_cluster"].to_numpy(), frame["semdedup_sim"].to_numpy(np.float64),
                                     eps)
    removed, n = int(cells["removed"].sum()), len(frame)
    return {"eps": float(eps), "removed": removed, "kept": n - removed, "share": removed / n if n else 0.0,
            "cells": cells}


def semdedup_pairs(store: Store, frame: pd.DataFrame, eps: float, limit: int = 50,
                   closest_first: bool = True) -> pd.DataFrame:
    """Removed rows at *eps* next to the earlier row they duplicate: similarity, both texts and labels.

    ``closest_first`` shows the pairs just above the threshold first (the ones a user wants to judge).
    """
    p = rules.Params()
    cols = ["row_id", "semdedup_sim", "semdedup_match", "semdedup_cluster"]
    sub = rules.query({c: frame[c].to_numpy() for c in cols},
                      f"{', '.join('s.' + c for c in cols)} FROM _rows s WHERE {rules.semdedup_removes(eps, p)} "
                      f"ORDER BY s.semdedup_sim {'ASC' if closest_first else 'DESC'}, s.row_id LIMIT {int(limit)}",
                      p.values).to_pandas()
    if sub.empty:
        return pd.DataFrame(columns=["similarity", "removed_text", "removed_label", "kept_text", "kept_label",
                                     "removed_row", "kept_row", "cell"])
    ids = np.unique(np.r_[sub["row_id"].to_numpy(), sub["semdedup_match"].to_numpy()])
    info = store.rows(["row_id", "text", "label"], row_ids=ids).set_index("row_id")
    a, b = info.loc[sub["row_id"]], info.loc[sub["semdedup_match"]]
    return pd.DataFrame({
        "similarity": sub["semdedup_sim"].to_numpy(), "removed_text": a["text"].to_numpy(),
        "removed_label": a["label"].to_numpy(), "kept_text": b["text"].to_numpy(), "kept_label": b["label"].to_numpy(),
        "removed_row": sub["row_id"].to_numpy(), "kept_row": sub["semdedup_match"].to_numpy(),
        "cell": sub["semdedup_cluster"].to_numpy()})


# ---------------------------------------------------------------------------------------- recipe draft
def range_filter(column: str, lo: float, hi: float, full_lo: float, full_hi: float) -> dict | None:
    """The filter a range slider stands for: none when it spans the data, else ``>=``, ``<=`` or ``between``."""
    low, high = lo > full_lo, hi < full_hi
    if low and high:
        return {"column": column, "op": "between", "value": [lo, hi]}
    if low:
        return {"column": column, "op": ">=", "value": lo}
    if high:
        return {"column": column, "op": "<=", "value": hi}
    return None


def owned_filters(recipe: dict | None) -> dict[str, dict]:
    """This page's filters in a recipe, by column."""
    return {filter_column(f): f for f in (recipe or {}).get("filters", []) or [] if filter_column(f) in FILTER_COLUMNS}


def merge_draft(recipe: dict | None, exact: bool, semantic_eps: float | None, filters: Sequence[dict]) -> dict:
    """*recipe* with this page's choices: ``dedup`` set, owned filters replaced, everything else kept."""
    return with_dedup(with_filters(recipe, FILTER_COLUMNS, filters), exact, semantic_eps)


def save_draft(store: Store, exact: bool, semantic_eps: float | None, filters: Sequence[dict],
               draft: RecipeDraft | None = None) -> bool:
    """Write the page's choices into the draft (*draft*: the one the page already read); True if it changed."""
    d = draft or RecipeDraft(store)
    return d.replace(merge_draft(d.doc, exact, semantic_eps, filters)).save()
