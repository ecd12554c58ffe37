"""Recipes → deterministic selections and live counts, computed in DuckDB.

The steps of a recipe (see :mod:`curate_core.recipes`), in order: decisions (exclude rows, relabel rows) →
filters (rows a person kept or relabelled pass them) → named selections (only / except) → SemDeDup at eps →
exact dedup (keep the best-ranked surviving row of each duplicate group) → mixture (per-group targets from
weights or temperature, then weighted sampling without replacement).

Sampling is Efraimidis–Spirakis: each row gets the key ``ln(u) / w`` with ``u`` from the md5 of
``"<seed>:<id>"`` (first 52 bits; the same on every machine and DuckDB version) and ``w = quality^strength``;
the top-k keys of a group are a weighted sample of k rows without replacement. Every step is one SQL query over
the workspace (:class:`~curate_core.recipes.compile.RecipeQuery`), so the same recipe on the same workspace
gives the same rows anywhere.

Public API: :func:`live_counts`, :func:`select` (→ :class:`Selection`), :func:`export_sql`,
:func:`column_profile`, :func:`group_sizes`, :func:`filterable_columns` — and, re-exported from
:mod:`curate_core.recipes`, :func:`parse_recipe`, :func:`load_recipe`, :func:`check_recipe`, :func:`allocate`,
:func:`group_shares`, :func:`recipe_diff`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import CurateError, choices
from .recipes.compile import RecipeQuery, Step, _bad, _checked, check_recipe  # noqa: F401 - the API
from .recipes.mixture import allocate, group_shares, mixture_counts  # noqa: F401
from .recipes.model import (DRAFT, MAX_FILTERS, MAX_GROUPS, MISSING_GROUP, OPS, RECIPE_VERSION, Filter,  # noqa: F401
                            Mixture, Recipe, _kind, describe_filter, load_recipe, new_recipe, parse_recipe,
                            recipe_diff)
from .recipes.source import source
from .store import Store, quote_ident


# ========================================================================================= counting
@dataclass
class Counts:
    """What a recipe draft would select: totals, per step, per group (before → after)."""

    rows_total: int
    tokens_total: int
    rows_pool: int  # after every step but the mixture
    tokens_pool: int
    rows_selected: int  # with repeats
    rows_unique: int
    tokens_selected: int
    tokens_estimated: bool  # True when the tokens (or, for a token budget, the rows) are an estimate
    steps: list[Step]
    groups: pd.DataFrame  # group, rows_before, tokens_before, rows_pool, tokens_pool, share_target,
    #                       target, rows_selected, tokens_selected, repeats, shortfall
    group_by: str | None
    unit: str = "rows"
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "rows_total": self.rows_total, "tokens_total": self.tokens_total, "rows_pool": self.rows_pool,
            "tokens_pool": self.tokens_pool, "rows_selected": self.rows_selected, "rows_unique": self.rows_unique,
            "tokens_selected": self.tokens_selected, "tokens_estimated": self.tokens_estimated, "unit": self.unit,
            "group_by": self.group_by,
            "steps": [s.__dict__ for s in self.steps],
            "groups": json.loads(self.groups.to_json(orient="records")),
            "warnings": self.warnings,
        }


def _counts_by_mask(store: Store, q: RecipeQuery) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(per group and mask: rows, tokens) and, with exact dedup, the rows it removes per group."""
    t = store.query(
        f"""SELECT coalesce(CAST(_graw AS VARCHAR), '{MISSING_GROUP}') AS _g, _m, sum(n) AS n, sum(tok) AS tok
            FROM (SELECT _graw, _m, count(*) AS n, sum(_tok) AS tok FROM ({q.base}) GROUP BY ALL) GROUP BY ALL""",
        q.p.values)
    by_mask = t.to_pandas()
    dd = None
    if q.r.dedup_exact:
        sql = f"""{q.pool_and_keep()}
            SELECT _g, count(*) AS n, sum(_tok) AS tok, NULL AS alone FROM pool JOIN dd USING (_dg)
            WHERE pool.row_id <> dd._keep GROUP BY _g
            UNION ALL SELECT NULL, 0, 0, count(*) FROM ({q.base}) WHERE _dr > 0"""
        dd = store.query(sql, q.p.values).to_pandas()
    return by_mask, dd


def live_counts(store: Any, recipe: Any, group_by: str | None = None, cached: bool | None = True,
                cat: dict[str, tuple[str, str]] | None = None) -> Counts:
    """Counts for a recipe draft, cheap enough for every slider move (one or two scans of the wide table).

    Per group: rows before (every row), after the steps (pool), the mixture target and what is selected.
    With a row budget the selected counts are exact (sampling takes exactly the target); with a token budget
    the rows (and without one, the tokens) of partly sampled groups are estimated from the group's mean.
    *group_by* chooses the composition grouping when the recipe has no mixture (default: label); *cat*, the
    catalog a caller has just read (:meth:`Store.catalog`), saves reading it again.
    """
    store = _store(store)
    r, cat = _checked(store, recipe, cat)
    group_by = r.mixture.group_by if r.mixture is not None else (group_by or "label")
    if group_by not in cat:
        group_by = None
    q = RecipeQuery(store, r, cached, group_by, cat)
    by_mask, dd = _counts_by_mask(store, q)
    return _summarise(r, q, by_mask, dd)


def mixture_removes_alone(c: Counts, recipe: Any) -> int | None:
    """Rows the recipe's mixture would remove from *all* rows on its own (no other step), from the per-group
    counts *c* already holds — no query; None without a mixture. With the rows the mixture leaves out of the
    pool (``rows_pool − rows_unique``) it fills the mixture's row of a "rows each step removes" table."""
    r = recipe if isinstance(recipe, Recipe) else parse_recipe(recipe)
    if r.mixture is None or c.groups.empty:
        return None
    g = c.groups.set_index("group")[["rows_before", "tokens_before"]].copy()
    g["rows_pool"], g["tokens_pool"] = g["rows_before"], g["tokens_before"]
    alone, _, _ = mixture_counts(r.mixture, g)
    return int(c.rows_total - np.minimum(alone["rows_selected"], alone["rows_before"]).sum())


def export_sql(store: Store, recipe: Any, columns: Iterable[tuple[str, str, str]],
               cat: dict[str, tuple[str, str]] | None = None) -> tuple[str, dict]:
    """For a recipe without a mixture: the SQL of its rows in row_id order, with *columns* — (source, column,
    output name); source ``selection`` means ``label`` (final), ``label_original``, ``repeats`` or ``weight``.
    Export streams this straight into ``COPY``: no row ids travel through Python.

    A recipe that reads columns of other tables (scores …) is evaluated over the narrow columns — the wide table
    when it is fresh, as live counts are — and the columns of ``samples`` (the texts above all) are joined to the
    rows that pass: carrying every text through the join of samples and scores built the join's hash table from
    the texts (1.8x a bare COPY of the same filter). A recipe that reads samples alone is one scan of it.
    *cat*: as for :func:`live_counts`.
    """
    r, cat = _checked(store, recipe, cat)
    if r.mixture is not None:
        raise ValueError("export_sql is for recipes without a mixture; use select()")
    columns = list(columns)
    group_by = "label" if "label" in cat else None
    ours = {"label": "q._label", "label_original": "q._label0", "repeats": "1", "weight": "1.0"}
    if all(cat[c][0] == "samples" for c in r.columns()):
        q = RecipeQuery(store, r, False, group_by, cat, extra=[c for src, c, _ in columns if src != "selection"])
        exprs = [ours[c] if src == "selection" else f"q.{q.extra[c]}" for src, c, _ in columns]
        return _select(exprs, columns, f"({q.survivors()}) q ORDER BY q.row_id"), q.p.values
    late = {c for src, c, _ in columns if src == "samples"}
    q = RecipeQuery(store, r, None, group_by, cat,
                    extra=[c for src, c, _ in columns if src not in ("selection", "samples")])
    if not q.relabels:  # the final label is the one in samples: read it there, with the other columns
        ours.update(label="_t.label", label_original="_t.label")
    exprs = [ours[c] if src == "selection" else f"_t.{quote_ident(c)}" if c in late else f"q.{q.extra[c]}"
             for src, c, _ in columns]
    rows = f"({q.survivors()}) q JOIN samples _t ON _t.row_id = q.row_id ORDER BY q.row_id"
    return _select(exprs, columns, rows), q.p.values


def _select(exprs: list[str], columns: list[tuple[str, str, str]], rest: str) -> str:
    uniq = list(dict.fromkeys(exprs))
    if len(uniq) == len(exprs):
        return f"SELECT {', '.join(f'{e} AS {quote_ident(out)}' for e, (_, _, out) in zip(exprs, columns))} FROM {rest}"
    # a column written twice (label_original = label when nothing relabels) is copied after the ORDER BY, which
    # then sorts one copy (a projection keeps the order): 0.01 s of a 0.3 s export of 500k rows
    inner = ", ".join(f"{e} AS _c{i}" for i, e in enumerate(uniq))
    outer = ", ".join(f"_c{uniq.index(e)} AS {quote_ident(out)}" for e, (_, _, out) in zip(exprs, columns))
    return f"SELECT {outer} FROM (SELECT {inner} FROM {rest})"


def _summarise(r: Recipe, q: RecipeQuery, by_mask: pd.DataFrame, dd: pd.DataFrame | None) -> Counts:
    masks = by_mask["_m"].to_numpy(np.int64)
    n = by_mask["n"].to_numpy(np.int64)
    tok = by_mask["tok"].fillna(0).to_numpy(np.int64)
    steps = []
    for i, (st, _) in enumerate(q.bits):
        bit = 1 << i
        steps.append(replace(st, removes_alone=int(n[(masks & bit) != 0].sum()),
                             removes_only=int(n[masks == bit].sum())))
    # per group (a few dozen of them, from ~1,000 (group, mask) rows): sums by integer code, not a pandas groupby
    codes, raw = pd.factorize(by_mask["_g"].to_numpy(object), use_na_sentinel=False)
    names = [MISSING_GROUP if x is None or (isinstance(x, float) and np.isnan(x)) else str(x) for x in raw]
    pool = masks == 0

    def per_group(values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(len(names), np.int64)
        np.add.at(out, codes if where is None else codes[where], values if where is None else values[where])
        return out

    groups = pd.DataFrame({"rows_before": per_group(n), "tokens_before": per_group(tok),
                           "rows_pool": per_group(n, pool), "tokens_pool": per_group(tok, pool)},
                          index=pd.Index(names, name="group"))
    if dd is not None:
        alone = dd[dd["_g"].isna() & dd["alone"].notna()]
        drops = dd[dd["alone"].isna()].set_index("_g")
        groups["rows_pool"] -= drops["n"].reindex(groups.index).fillna(0).astype(np.int64)
        groups["tokens_pool"] -= drops["tok"].reindex(groups.index).fillna(0).astype(np.int64)
        steps.append(Step("exact dedup (keep one per group)", "dedup.exact",
                          int(alone["alone"].sum()) if len(alone) else 0, int(drops["n"].sum())))
    groups = groups.sort_index(kind="stable").sort_values("rows_before", ascending=False, kind="stable")
    if len(groups) > MAX_GROUPS and r.mixture is not None:
        raise _bad("mixture.group_by", f"`{q.group_by}` has {len(groups):,} distinct values; a mixture works over "
                                       f"at most {MAX_GROUPS:,} groups", "group by source, label or cluster")
    warnings: list[str] = []
    rows_pool, tok_pool = int(groups["rows_pool"].sum()), int(groups["tokens_pool"].sum())
    if r.mixture is None:
        groups["share_target"] = groups["rows_pool"] / max(rows_pool, 1)
        groups["target"] = groups["rows_pool"].astype(float)
        groups["rows_selected"] = groups["rows_pool"]
        groups["tokens_selected"] = groups["tokens_pool"]
        groups["repeats"] = (groups["rows_pool"] > 0).astype(float)
        groups["shortfall"] = 0.0
        est = False
    else:
        groups, warnings, est = mixture_counts(r.mixture, groups)
    groups = groups.reset_index()
    return Counts(
        rows_total=int(n.sum()), tokens_total=int(tok.sum()), rows_pool=rows_pool, tokens_pool=tok_pool,
        rows_selected=int(groups["rows_selected"].sum()),
        rows_unique=int(np.minimum(groups["rows_selected"], groups["rows_pool"]).sum()),
        tokens_selected=int(groups["tokens_selected"].sum()), tokens_estimated=est, steps=steps, groups=groups,
        group_by=q.group_by, unit=r.mixture.unit if r.mixture else "rows", warnings=warnings)


# ========================================================================================= selection
@dataclass
class Selection:
    """The rows a recipe selects, with their final label, group, repeats and soft weight.

    ``weight`` = the group's target share / its achieved share in the selection (in the budget's unit), so a
    weighted loss over the selection sees the target mixture; with ``mode = "reweight"`` every pool row is kept
    and the weights alone carry the mixture.
    """

    recipe: Recipe
    table: pa.Table  # row_id, id, label, label_original, group, repeats, weight, n_tokens — sorted by row_id
    counts: Counts

    @property
    def row_ids(self) -> np.ndarray:
        return self.table.column("row_id").to_numpy()

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.table.column("label").to_pylist(), dtype=object)

    @property
    def weights(self) -> np.ndarray:
        return self.table.column("weight").to_numpy()

    @property
    def repeats(self) -> np.ndarray:
        return self.table.column("repeats").to_numpy()

    @property
    def group_counts(self) -> dict[str, int]:
        """Selected rows per group (repeats counted)."""
        return {r["group"]: int(r["rows_selected"]) for r in self.counts.groups.to_dict("records")
                if r["rows_selected"] > 0}

    def __len__(self) -> int:
        return self.table.num_rows

    def frame(self) -> pd.DataFrame:
        return self.table.to_pandas()


def _store(obj: Any) -> Store:
    if isinstance(obj, Store):
        return obj
    s = getattr(obj, "store", None)
    if isinstance(s, Store):
        return s
    raise TypeError(f"expected a Store or Workspace, got {type(obj).__name__}")


def select(store_or_ws: Any, recipe: Any, cached: bool | None = None) -> Selection:
    """Apply *recipe* to the workspace: the deterministic selection (see the module docstring).

    Raises CurateError (naming the recipe field) before touching anything when the recipe does not fit.
    """
    store = _store(store_or_ws)
    r, cat = _checked(store, recipe)
    group_by = r.mixture.group_by if r.mixture is not None else ("label" if "label" in cat else None)
    q = RecipeQuery(store, r, cached, group_by, cat)
    by_mask, dd = _counts_by_mask(store, q)
    counts = _summarise(r, q, by_mask, dd)
    m = r.mixture
    cols = "row_id, id, _label AS label, _label0 AS label_original, _g AS grp, _tok AS n_tokens"
    if m is None:
        t = store.query(f"SELECT {cols}, 1 AS repeats FROM ({q.survivors()}) ORDER BY row_id", q.p.values)
    else:
        t = _sample(store, r, q, counts, cols)
    return _finish(r, t, counts)


def _sample(store: Store, r: Recipe, q: RecipeQuery, counts: Counts, cols: str) -> pa.Table:
    """Rows of each group by Efraimidis–Spirakis keys: ``full`` whole passes plus the top keys of the rest."""
    m = r.mixture
    assert m is not None
    g = counts.groups
    size = (g["tokens_pool"] if m.unit == "tokens" else g["rows_pool"]).to_numpy(float)
    target = g["target"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        full = np.where(size > 0, np.floor(target / size + 1e-9), 0)
    if m.max_repeats is not None:
        full = np.minimum(full, m.max_repeats)
    rest = np.where(size > 0, target - full * size, 0.0)
    rest[(full >= (m.max_repeats or np.inf)) | (rest < 1e-9)] = 0.0
    plan = pa.table({"_g": pa.array(g["group"].astype(str).tolist(), pa.string()),
                     "_full": pa.array(full.astype(np.int64)), "_rest": pa.array(rest, pa.float64())})
    p = q.p
    if q.quality is not None:
        w = f"CASE WHEN _q > 0 THEN pow(_q, {p(float(m.quality_strength))}) ELSE 0 END"
        key = f"CASE WHEN {w} > 0 THEN ln(_u) / ({w}) ELSE '-inf'::DOUBLE END"
    else:
        key = "ln(_u)"
    u = f"((('0x' || md5({p(str(r.seed))} || ':' || id)[1:13])::BIGINT + 0.5) / 4503599627370496.0)"
    if m.unit == "tokens":  # a row is in while the middle of its tokens lies within the rest of the target
        inside = "sum(_tok) OVER w - _tok / 2.0 < _rest"
    else:
        inside = "row_number() OVER w <= _rest"
    sql = f"""WITH s AS (SELECT * FROM ({q.survivors()}) JOIN _plan USING (_g) WHERE _full > 0 OR _rest > 0),
        whole AS (SELECT {cols}, _full AS repeats FROM s WHERE _rest = 0),
        part AS (SELECT *, {u} AS _u FROM s WHERE _rest > 0),
        keyed AS (SELECT *, {key} AS _key FROM part),
        ranked AS (SELECT *, {inside} AS _in FROM keyed
                   WINDOW w AS (PARTITION BY _g ORDER BY _key DESC, _u DESC, id ROWS UNBOUNDED PRECEDING))
        SELECT * FROM (
            SELECT * FROM whole
            UNION ALL
            SELECT {cols}, _full + CASE WHEN _in THEN 1 ELSE 0 END AS repeats
            FROM ranked) WHERE repeats > 0 ORDER BY row_id"""
    return store.query(sql, p.values, tables={"_plan": plan})


def _finish(r: Recipe, t: pa.Table, counts: Counts) -> Selection:
    """Attach soft weights and put the actual per-group numbers into the counts (Arrow all the way: 1M rows)."""
    import pyarrow.compute as pc

    repeats = pc.cast(t.column("repeats"), pa.int64())
    tokens = pc.multiply(repeats, pc.cast(t.column("n_tokens"), pa.int64()))
    unit_tokens = r.mixture is not None and r.mixture.unit == "tokens"
    work = pa.table({"grp": t.column("grp"), "rows": repeats, "tokens": tokens})
    agg = work.group_by("grp").aggregate([("rows", "sum"), ("tokens", "sum")]).to_pandas().set_index("grp")
    g = counts.groups.set_index("group")
    g["rows_selected"] = agg["rows_sum"].reindex(g.index).fillna(0).astype(np.int64)
    g["tokens_selected"] = agg["tokens_sum"].reindex(g.index).fillna(0).astype(np.int64)
    amount = agg["tokens_sum" if unit_tokens else "rows_sum"].astype(float)
    total = float(amount.sum())
    if r.mixture is None or total <= 0:
        weight_g = pd.Series(1.0, index=agg.index)
    else:
        achieved = amount / total
        weight_g = (g["share_target"].reindex(agg.index) / achieved).replace([np.inf, -np.inf], np.nan).fillna(0.0)
    names = pa.array([str(x) for x in weight_g.index], pa.string())
    idx = pc.index_in(pc.cast(t.column("grp"), pa.string()), value_set=names)
    weight = pc.take(pa.array(weight_g.to_numpy(np.float64)), idx) if len(names) else pa.nulls(t.num_rows, pa.float64())
    counts.groups = g.reset_index()
    counts.rows_selected = int(pc.sum(repeats).as_py() or 0)
    counts.rows_unique = t.num_rows
    counts.tokens_selected = int(pc.sum(tokens).as_py() or 0)
    counts.tokens_estimated = False
    out = pa.table({
        "row_id": pc.cast(t.column("row_id"), pa.int64()),
        "id": pc.cast(t.column("id"), pa.string()),
        "label": pc.cast(t.column("label"), pa.string()),
        "label_original": pc.cast(t.column("label_original"), pa.string()),
        "group": pc.cast(t.column("grp"), pa.string()),
        "repeats": repeats,
        "weight": pc.cast(weight, pa.float64()),
        "n_tokens": pc.cast(t.column("n_tokens"), pa.int64()),
    })
    return Selection(r, out, counts)


# ====================================================================================== for the page
#: columns that make no sense as a slider (ids, coordinates, group keys handled by dedup)
NOT_FILTERABLE = {"row_id", "id", "text", "x", "y", "dup_group", "semdedup_cluster"}


def filterable_columns(store: Store) -> dict[str, str]:
    """column → kind (number / bool / text) of every catalog column a filter panel can use."""
    return {c: _kind(t) for c, (_, t) in store.catalog().items()
            if c not in NOT_FILTERABLE and _kind(t) in ("number", "bool", "text")}


@dataclass
class Profile:
    """What a filter panel draws: a histogram (numbers), value counts (text / true-false), missing values."""

    column: str
    kind: str
    rows: int
    missing: int
    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    edges: list[float] = field(default_factory=list)  # histogram bin edges (len = counts + 1)
    counts: list[int] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)  # text / bool: value → rows (most frequent first)
    distinct: int = 0


def column_profile(store: Store, column: str, bins: int = 40, top: int = 60) -> Profile:
    """Distribution of one column over every row (for the Select page's panels)."""
    kinds = filterable_columns(store)
    if column not in kinds:
        raise CurateError(f"Column `{column}` cannot be filtered", f"filterable: {choices(sorted(kinds))}")
    kind = kinds[column]
    src = source(store, [column], cached=True)
    c = quote_ident(column)
    head = store.query(f"SELECT count(*) AS n, count(*) - count({c}) AS miss, "
                            + (f"min({c})::DOUBLE AS lo, max({c})::DOUBLE AS hi, " if kind == "number" else "")
                            + f"count(DISTINCT {c}) AS d FROM {src}").to_pylist()[0]
    p = Profile(column, kind, int(head["n"]), int(head["miss"]), distinct=int(head["d"]))
    if kind != "number":
        t = store.query(f"SELECT CAST({c} AS VARCHAR) AS v, count(*) AS n FROM {src} WHERE {c} IS NOT NULL "
                             f"GROUP BY ALL ORDER BY n DESC, v LIMIT {int(top)}").to_pylist()
        p.values = {r["v"]: int(r["n"]) for r in t}
        return p
    if head["lo"] is None:
        return p
    lo, hi = float(head["lo"]), float(head["hi"])
    typ = store.catalog()[column][1].upper()
    p.lo, p.hi, p.integer = lo, hi, "INT" in typ and not typ.startswith("INTERVAL")
    if p.integer and hi - lo + 1 <= bins:
        p.edges = [lo - 0.5 + i for i in range(int(hi - lo) + 2)]
    else:
        width = (hi - lo) / bins if hi > lo else 1.0
        p.edges = [lo + i * width for i in range(bins + 1)]
    width = p.edges[1] - p.edges[0]
    n_bins = len(p.edges) - 1
    t = store.query(
        f"SELECT least(greatest(floor(({c} - $lo) / $w), 0), $last)::BIGINT AS b, count(*) AS n FROM {src} "
        f"WHERE {c} IS NOT NULL GROUP BY ALL", {"lo": p.edges[0], "w": width, "last": n_bins - 1}).to_pylist()
    counts = [0] * n_bins
    for r in t:
        counts[int(r["b"])] += int(r["n"])
    p.counts = counts
    return p


def group_sizes(store: Store, column: str, limit: int = MAX_GROUPS + 1) -> dict[str, int]:
    """Rows per value of a grouping column (values as group names), most frequent first."""
    src = source(store, [column], cached=True)
    c = quote_ident(column)
    t = store.query(f"SELECT coalesce(CAST({c} AS VARCHAR), '{MISSING_GROUP}') AS g, count(*) AS n FROM {src} "
                         f"GROUP BY ALL ORDER BY n DESC, g LIMIT {int(limit)}").to_pylist()
    return {r["g"]: int(r["n"]) for r in t}


