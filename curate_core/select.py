"""Recipes → deterministic selections, computed in DuckDB.

A **recipe** is a versioned JSON document (schema in the README, section "Recipes")::

    {"version": 1, "seed": 0,
     "filters": [{"column": "outlier_score", "op": "<=", "value": 0.4, "nulls": "keep"}],
     "decisions": {"exclude": true, "relabel": true, "reviewed_pass_filters": true},
     "dedup": {"exact": true, "semantic_eps": 0.05},
     "selections": {"only": [], "except": []},
     "mixture": {"group_by": "label", "weights": null, "budget": {"rows": 5000}, "cap": null,
                 "temperature": 1.0, "max_repeats": 1, "quality": {"column": "label_quality", "strength": 1.0},
                 "mode": "sample", "redistribute": true}}

The steps, in order: decisions (exclude rows, relabel rows) → filters (rows a person kept or relabelled pass
them) → named selections (only / except) → SemDeDup at eps → exact dedup (keep the best-ranked surviving row of
each duplicate group) → mixture (per-group targets from weights or temperature, then weighted sampling without
replacement).

Sampling is Efraimidis–Spirakis: each row gets the key ``ln(u) / w`` with ``u`` from the md5 of
``"<seed>:<id>"`` (first 52 bits; the same on every machine and DuckDB version) and ``w = quality^strength``;
the top-k keys of a group are a weighted sample of k rows without replacement. Every step is one SQL query over
the workspace, so the same recipe on the same workspace gives the same rows anywhere.

Public API: :func:`parse_recipe`, :func:`load_recipe`, :func:`check_recipe`, :func:`live_counts`,
:func:`select` (→ :class:`Selection`), :func:`allocate`, :func:`group_shares`, :func:`recipe_diff`.

Adding a recipe field: extend the dataclass, parse it in :func:`parse_recipe` (naming the field in errors),
emit it in :meth:`Recipe.to_json`, and turn it into SQL in :class:`_Query` (a removal step is one more bit of
the row mask, so live counts get its "removes alone / only" numbers for free).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import CurateError, choices
from .store import Store, quote_ident

RECIPE_VERSION = 1
DRAFT = "__draft__"  # the workspace's working recipe: the pages add to it, Export writes it


def new_recipe() -> dict:
    """An empty recipe v1 (keeps every row): what a draft starts from."""
    return {"version": 1, "seed": 0, "filters": [], "decisions": True,
            "dedup": {"exact": False, "semantic_eps": None},
            "selections": {"only": [], "except": []}, "mixture": None}

MAX_FILTERS = 48  # one bit of the row mask each (plus the named steps below)
MAX_GROUPS = 1000
MISSING_GROUP = "(missing)"
OPS = ("<", "<=", ">", ">=", "==", "!=", "between", "in", "not_in", "is", "is_not")
_SQL_OP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "<>"}
TOP_KEYS = ("version", "seed", "filters", "decisions", "dedup", "selections", "mixture", "name", "description")
MIXTURE_KEYS = ("group_by", "weights", "budget", "cap", "temperature", "max_repeats", "quality", "mode",
                "redistribute")

#: where the agreed per-row columns come from, for "run stage X first" messages
KNOWN_COLUMNS: dict[str, tuple[str, str]] = {
    **{c: ("textstats", "text statistics") for c in ("n_chars", "n_words", "n_lines")},
    **{c: ("project", "2-D map") for c in ("x", "y")},
    **{c: ("cluster", "clusters") for c in ("cluster", "cluster_prob")},
    **{c: ("scores", "label-noise scores") for c in (
        "label_quality", "is_label_issue", "suggested_label", "aum", "aum_flag", "confidence", "variability",
        "correctness", "el2n", "forgetting", "consensus")},
    **{c: ("scores", "duplicate and outlier scores") for c in (
        "dup_group", "dup_rank", "dup_label_conflict", "semdedup_sim", "semdedup_cluster", "outlier_score",
        "label_outlier_score")},
    **{c: ("scores", "text-quality heuristics") for c in (
        "mean_word_len", "frac_non_alpha", "frac_upper", "n_urls", "frac_dup_lines", "frac_dup_ngrams", "lang",
        "lang_score")},
}

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL")


def _kind(duck_type: str) -> str:
    t = duck_type.upper()
    if t.startswith("DECIMAL") or t in _NUMERIC:
        return "number"
    if t == "BOOLEAN":
        return "bool"
    if t == "VARCHAR":
        return "text"
    return "other"  # dates, lists, structs …: not filterable yet


# =============================================================================================== recipe
@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any
    nulls: str = "keep"  # rows where the column is NULL: "keep" (pass the filter) or "drop"

    def to_json(self) -> dict:
        return {"column": self.column, "op": self.op, "value": self.value, "nulls": self.nulls}


@dataclass(frozen=True)
class Mixture:
    group_by: str = "label"
    weights: dict[str, float] | None = None  # target shares (normalised); None → from temperature
    budget_rows: int | None = None
    budget_tokens: int | None = None
    cap: int | None = None  # per-group maximum, in the budget's unit (rows when there is no budget)
    temperature: float = 1.0  # shares ∝ size^(1/T) when weights is None
    max_repeats: int | None = 1  # epochs a group may be repeated to fill its share (None = no limit)
    quality_column: str | None = None
    quality_strength: float = 0.0  # sampling weight ∝ quality^strength inside a group
    mode: str = "sample"  # "sample": draw rows to meet the targets; "reweight": keep every row, weight it
    redistribute: bool = True  # a group that cannot fill its share leaves its rest to the others

    @property
    def unit(self) -> str:
        return "tokens" if self.budget_tokens is not None else "rows"

    @property
    def budget(self) -> int | None:
        return self.budget_tokens if self.budget_tokens is not None else self.budget_rows

    def to_json(self) -> dict:
        budget = None
        if self.budget_rows is not None:
            budget = {"rows": self.budget_rows}
        elif self.budget_tokens is not None:
            budget = {"tokens": self.budget_tokens}
        return {"group_by": self.group_by, "weights": None if self.weights is None else dict(self.weights),
                "budget": budget, "cap": self.cap, "temperature": self.temperature, "max_repeats": self.max_repeats,
                "quality": None if self.quality_column is None else
                {"column": self.quality_column, "strength": self.quality_strength},
                "mode": self.mode, "redistribute": self.redistribute}


@dataclass(frozen=True)
class Recipe:
    version: int = RECIPE_VERSION
    seed: int = 0
    filters: tuple[Filter, ...] = ()
    exclude: bool = True  # apply exclude decisions
    relabel: bool = True  # apply relabel decisions (original label kept as label_original on export)
    reviewed_pass_filters: bool = True  # rows with a keep/relabel decision in force pass the filters
    dedup_exact: bool = False
    semantic_eps: float | None = None
    only: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()
    mixture: Mixture | None = None
    name: str | None = None
    description: str | None = None

    @property
    def uses_decisions(self) -> bool:
        return self.exclude or self.relabel or self.reviewed_pass_filters

    def to_json(self) -> dict:
        """The normalised document (every default spelled out): what recipe.json of an export holds."""
        out: dict[str, Any] = {"version": self.version, "seed": self.seed}
        if self.name:
            out["name"] = self.name
        if self.description:
            out["description"] = self.description
        out.update({
            "filters": [f.to_json() for f in self.filters],
            "decisions": {"exclude": self.exclude, "relabel": self.relabel,
                          "reviewed_pass_filters": self.reviewed_pass_filters},
            "dedup": {"exact": self.dedup_exact, "semantic_eps": self.semantic_eps},
            "selections": {"only": list(self.only), "except": list(self.except_)},
            "mixture": None if self.mixture is None else self.mixture.to_json(),
        })
        return out

    def columns(self) -> list[str]:
        """Catalog columns the recipe reads."""
        cols = [f.column for f in self.filters]
        if self.dedup_exact:
            cols += ["dup_group", "dup_rank"]
        if self.semantic_eps is not None:
            cols.append("semdedup_sim")
        if self.mixture is not None:
            cols.append(self.mixture.group_by)
            if self.mixture.quality_column and self.mixture.quality_strength:
                cols.append(self.mixture.quality_column)
        return list(dict.fromkeys(c for c in cols if c not in ("row_id",)))


def _bad(field_: str, what: str, hint: str = "") -> CurateError:
    return CurateError(f"Recipe field `{field_}`: {what}", hint)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _int(v: Any, field_: str, lo: int | None = None, allow_none: bool = False) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(field_, f"expected a whole number, got {json.dumps(v)}")
    if lo is not None and v < lo:
        raise _bad(field_, f"must be at least {lo}, got {v}")
    return v


def _num(v: Any, field_: str, lo: float | None = None, strict: bool = False) -> float:
    if not _is_num(v):
        raise _bad(field_, f"expected a number, got {json.dumps(v)}")
    v = float(v)
    if lo is not None and (v <= lo if strict else v < lo):
        raise _bad(field_, f"must be {'greater than' if strict else 'at least'} {lo:g}, got {v:g}")
    return v


def _bool(v: Any, field_: str) -> bool:
    if not isinstance(v, bool):
        raise _bad(field_, f"expected true or false, got {json.dumps(v)}")
    return v


def _dict(v: Any, field_: str, keys: Iterable[str]) -> dict:
    if not isinstance(v, dict):
        raise _bad(field_, f"expected an object, got {json.dumps(v)}")
    unknown = [k for k in v if k not in keys]
    if unknown:
        raise _bad(f"{field_}.{unknown[0]}" if field_ else unknown[0], "unknown key",
                   f"keys of {field_ or 'a recipe'}: {choices(keys)}")
    return v


def _names(v: Any, field_: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise _bad(field_, f"expected a list of selection names, got {json.dumps(v)}")
    return tuple(v)


def parse_recipe(doc: Any) -> Recipe:
    """Check a recipe's structure (types, ranges, known keys) and return it normalised.

    *doc* is a dict, a JSON string, or a :class:`Recipe`. Checks that need the workspace (columns, groups,
    selection names) are in :func:`check_recipe`. Errors name the field, e.g. ``mixture.budget.rows``.
    """
    if isinstance(doc, Recipe):
        return doc
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as e:
            raise CurateError(f"The recipe is not valid JSON: {e}", "check the file with a JSON validator") from None
    d = _dict(doc, "", TOP_KEYS)
    version = _int(d.get("version", RECIPE_VERSION), "version", lo=1)
    if version > RECIPE_VERSION:
        raise _bad("version", f"this tool reads recipes up to version {RECIPE_VERSION}, got {version}",
                   "update curate (git pull && pip install -r requirements.txt)")
    seed = _int(d.get("seed", 0), "seed", lo=0)

    filters_doc = d.get("filters") or []
    if not isinstance(filters_doc, list):
        raise _bad("filters", f"expected a list of filters, got {json.dumps(filters_doc)}")
    if len(filters_doc) > MAX_FILTERS:
        raise _bad("filters", f"at most {MAX_FILTERS} filters, got {len(filters_doc)}")
    filters = tuple(_parse_filter(f, f"filters[{i}]") for i, f in enumerate(filters_doc))

    dec = d.get("decisions", True)
    if isinstance(dec, bool):
        exclude = relabel = reviewed = dec
    else:
        dec = _dict(dec, "decisions", ("exclude", "relabel", "reviewed_pass_filters"))
        exclude = _bool(dec.get("exclude", True), "decisions.exclude")
        relabel = _bool(dec.get("relabel", True), "decisions.relabel")
        reviewed = _bool(dec.get("reviewed_pass_filters", True), "decisions.reviewed_pass_filters")

    dd = d.get("dedup") or {}
    dd = _dict(dd, "dedup", ("exact", "semantic_eps"))
    exact = _bool(dd.get("exact", False), "dedup.exact")
    eps = dd.get("semantic_eps")
    if eps is not None:
        eps = _num(eps, "dedup.semantic_eps", lo=0.0)
        if eps > 1:
            raise _bad("dedup.semantic_eps", f"must be between 0 and 1 (a row goes when its similarity to a kept "
                                             f"neighbour is above 1 − eps), got {eps:g}")

    sel = _dict(d.get("selections") or {}, "selections", ("only", "except"))
    only = _names(sel.get("only"), "selections.only")
    except_ = _names(sel.get("except"), "selections.except")

    mix = d.get("mixture")
    mixture = None if mix is None else _parse_mixture(mix)
    name = d.get("name")
    desc = d.get("description")
    for k, v in (("name", name), ("description", desc)):
        if v is not None and not isinstance(v, str):
            raise _bad(k, f"expected text, got {json.dumps(v)}")
    return Recipe(version, seed, filters, exclude, relabel, reviewed, exact, eps, only, except_, mixture, name, desc)


def _parse_filter(f: Any, where: str) -> Filter:
    f = _dict(f, where, ("column", "score", "op", "value", "nulls"))
    col = f.get("column", f.get("score"))
    if "column" in f and "score" in f and f["column"] != f["score"]:
        raise _bad(f"{where}.score", "give either `column` or its alias `score`, not both")
    if not isinstance(col, str) or not col:
        raise _bad(f"{where}.column", "missing: which column does the filter use?")
    op = f.get("op")
    if op not in OPS:
        raise _bad(f"{where}.op", f"unknown operator {json.dumps(op)}", f"use one of {choices(OPS)}")
    if "value" not in f:
        raise _bad(f"{where}.value", "missing")
    v = f["value"]
    if op == "between":
        if not (isinstance(v, list) and len(v) == 2 and all(x is None or _is_num(x) or isinstance(x, str) for x in v)
                and any(x is not None for x in v)):
            raise _bad(f"{where}.value", f"`between` needs [low, high] (null for an open end), got {json.dumps(v)}")
        if all(_is_num(x) for x in v) and v[0] > v[1]:
            raise _bad(f"{where}.value", f"low {v[0]} is above high {v[1]}")
    elif op in ("in", "not_in"):
        if not isinstance(v, list) or not v or any(isinstance(x, (list, dict)) or x is None for x in v):
            raise _bad(f"{where}.value", f"`{op}` needs a non-empty list of values, got {json.dumps(v)}")
        if len({type(x) if not _is_num(x) else float for x in v}) > 1:
            raise _bad(f"{where}.value", f"mixes value types: {json.dumps(v)}")
    elif op in ("is", "is_not"):
        if v is not None and not isinstance(v, bool):
            raise _bad(f"{where}.value", f"`{op}` needs true, false or null, got {json.dumps(v)}")
    else:
        if not (_is_num(v) or isinstance(v, (str, bool))):
            raise _bad(f"{where}.value", f"`{op}` needs a number, text or true/false, got {json.dumps(v)}")
    nulls = f.get("nulls", "keep")
    if nulls not in ("keep", "drop"):
        raise _bad(f"{where}.nulls", f"expected \"keep\" or \"drop\", got {json.dumps(nulls)}")
    return Filter(col, op, v, nulls)


def _parse_mixture(m: Any) -> Mixture:
    m = _dict(m, "mixture", MIXTURE_KEYS)
    group_by = m.get("group_by", "label")
    if not isinstance(group_by, str) or not group_by:
        raise _bad("mixture.group_by", f"expected a column name, got {json.dumps(group_by)}")
    weights = m.get("weights")
    if weights is not None:
        if not isinstance(weights, dict) or not weights:
            raise _bad("mixture.weights", f"expected an object {{group: weight}} or null, got {json.dumps(weights)}")
        weights = {str(k): _num(v, f"mixture.weights[{json.dumps(k)}]", lo=0.0) for k, v in weights.items()}
        if sum(weights.values()) <= 0:
            raise _bad("mixture.weights", "all weights are zero: give at least one group a positive weight")
    budget = m.get("budget")
    rows = tokens = None
    if budget is not None:
        budget = _dict(budget, "mixture.budget", ("rows", "tokens"))
        if len(budget) != 1:
            raise _bad("mixture.budget", 'give exactly one of {"rows": N} or {"tokens": N} (or null for no budget)')
        if "rows" in budget:
            rows = _int(budget["rows"], "mixture.budget.rows", lo=1)
        else:
            tokens = _int(budget["tokens"], "mixture.budget.tokens", lo=1)
    cap = _int(m.get("cap"), "mixture.cap", lo=1, allow_none=True)
    temperature = _num(m.get("temperature", 1.0), "mixture.temperature", lo=0.0, strict=True)
    max_repeats = _int(m.get("max_repeats", 1), "mixture.max_repeats", lo=1, allow_none=True)
    q = m.get("quality")
    qcol, strength = None, 0.0
    if q is not None:
        q = _dict(q, "mixture.quality", ("column", "strength"))
        qcol = q.get("column")
        if not isinstance(qcol, str) or not qcol:
            raise _bad("mixture.quality.column", f"expected a column name, got {json.dumps(qcol)}")
        strength = _num(q.get("strength", 1.0), "mixture.quality.strength", lo=0.0)
        if strength > 20:
            raise _bad("mixture.quality.strength", f"must be at most 20, got {strength:g}")
    mode = m.get("mode", "sample")
    if mode not in ("sample", "reweight"):
        raise _bad("mixture.mode", f'expected "sample" or "reweight", got {json.dumps(mode)}')
    redistribute = _bool(m.get("redistribute", True), "mixture.redistribute")
    return Mixture(group_by, weights, rows, tokens, cap, temperature, max_repeats, qcol, strength, mode, redistribute)


def load_recipe(src: Any, store: Store | None = None) -> Recipe:
    """A recipe from a dict / Recipe / JSON text / path to a .json file / name of a recipe saved in *store*."""
    if isinstance(src, (dict, Recipe)):
        return parse_recipe(src)
    if isinstance(src, Path) or (isinstance(src, str) and not src.lstrip().startswith("{")):
        p = Path(src).expanduser()
        if p.is_file():
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise CurateError(f"Could not read the recipe {p}: {e}") from None
            return parse_recipe(text)
        if store is not None and isinstance(src, str):
            saved = store.recipe(src)
            if saved is not None:
                return parse_recipe(saved)
        saved_names = [n for n in store.recipe_names() if n != DRAFT] if store is not None else []
        raise CurateError(f"No recipe file {p}" + (" and no saved recipe of that name" if store is not None else ""),
                          "give the path of a recipe .json file"
                          + (f" or a saved recipe: {choices(saved_names)}" if saved_names else ""))
    return parse_recipe(src)


# ===================================================================================== workspace check
def _missing_column(store: Store, col: str, where: str, cat: dict) -> CurateError:
    if col in KNOWN_COLUMNS:
        stage, what = KNOWN_COLUMNS[col]
        ran = stage in store.done_run_keys()
        if ran:
            return _bad(where, f"`{col}` ({what}) is not in this workspace: the `{stage}` stage ran without "
                               f"producing it (its score was skipped or is not installed)",
                        f"see `python -m curate_core info --workspace {store.path}`; columns: {choices(sorted(cat))}")
        return _bad(where, f"`{col}` ({what}) is not in this workspace yet: it comes from the `{stage}` stage, "
                           "which has not run",
                    f"run it: python -m curate_core run --workspace {store.path} --stages {stage}")
    return _bad(where, f"unknown column `{col}`", f"columns in this workspace: {choices(sorted(cat), limit=60)}")


def check_recipe(store: Store, recipe: Any) -> Recipe:
    """Parse *recipe* and check it against the workspace: columns exist with fitting types, selections exist.

    Group names in ``mixture.weights`` are checked when the groups are counted (:func:`live_counts`).
    """
    return _checked(store, recipe)[0]


def _checked(store: Store, recipe: Any) -> tuple[Recipe, dict[str, tuple[str, str]]]:
    """:func:`check_recipe`, also returning the catalog it read (one metadata query per slider move)."""
    r = parse_recipe(recipe)
    cat = store.catalog()

    def need(col: str, where: str, kinds: tuple[str, ...] | None = None) -> str:
        if col not in cat:
            raise _missing_column(store, col, where, cat)
        kind = _kind(cat[col][1])
        if kinds is not None and kind not in kinds:
            raise _bad(where, f"column `{col}` has type {cat[col][1]}, which cannot be used here",
                       f"use a column of kind {' or '.join(kinds)}")
        return kind

    for i, f in enumerate(r.filters):
        where = f"filters[{i}]"
        kind = need(f.column, f"{where}.column", ("number", "bool", "text"))
        _check_filter_types(f, kind, cat[f.column][1], where)
    if r.dedup_exact:
        need("dup_group", "dedup.exact")
        need("dup_rank", "dedup.exact", ("number",))
    if r.semantic_eps is not None:
        need("semdedup_sim", "dedup.semantic_eps", ("number",))
    saved = store.selection_names()
    for key, names in (("only", r.only), ("except", r.except_)):
        for i, n in enumerate(names):
            if n not in saved:
                raise _bad(f"selections.{key}[{i}]", f"no saved selection named {json.dumps(n)}",
                           f"saved selections: {choices(saved)}")
    m = r.mixture
    if m is not None:
        need(m.group_by, "mixture.group_by", ("number", "bool", "text"))
        if m.quality_column is not None:
            need(m.quality_column, "mixture.quality.column", ("number", "bool"))
    return r, cat


def _check_filter_types(f: Filter, kind: str, duck_type: str, where: str) -> None:
    vals = f.value if isinstance(f.value, list) else [f.value]
    vals = [v for v in vals if v is not None]
    if f.op in ("is", "is_not"):
        if f.value is not None and kind != "bool":
            raise _bad(f"{where}.value", f"`{f.op} {json.dumps(f.value)}` needs a true/false column; "
                                         f"`{f.column}` is {duck_type}", "use == / != / in for other columns")
        return
    want = {"number": "a number", "bool": "true or false", "text": "text"}[kind]
    ok = {"number": _is_num, "bool": lambda v: isinstance(v, bool), "text": lambda v: isinstance(v, str)}[kind]
    bad = [v for v in vals if not ok(v)]
    if bad:
        raise _bad(f"{where}.value", f"column `{f.column}` is {duck_type}, so the value must be {want}; "
                                     f"got {json.dumps(bad[0])}")
    if kind == "bool" and f.op in ("<", "<=", ">", ">=", "between"):
        raise _bad(f"{where}.op", f"`{f.op}` does not apply to the true/false column `{f.column}`",
                   "use is / is_not / == / !=")


# ============================================================================================ SQL
class _Params:
    """Named ``$pN`` parameters, so SQL fragments can be composed in any order."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


@dataclass(frozen=True)
class Step:
    """One removal step of a recipe and its live numbers."""

    name: str  # e.g. "outlier_score <= 0.4", "exclude decisions", "exact dedup"
    key: str  # "filters[0]", "decisions", "selections.only", "selections.except", "dedup.semantic", "dedup.exact"
    removes_alone: int  # rows it removes when applied alone to every row
    removes_only: int  # rows only it removes (they would come back without it)


def _filter_sql(f: Filter, p: _Params, label: str = "s.label") -> str:
    """SQL that is TRUE when a row *fails* the filter (NULL values per ``f.nulls``).

    Columns are qualified (``s.``) so a user column named like a decisions column (``value``, ``action``) is not
    ambiguous; a filter on ``label`` tests the final label (after relabel decisions), as the mixture groups do.
    """
    c = label if f.column == "label" else f"s.{quote_ident(f.column)}"
    if f.op in ("is", "is_not"):
        if f.value is None:
            cond = f"{c} IS NULL" if f.op == "is" else f"{c} IS NOT NULL"
            return f"NOT ({cond})"
        cond = f"{c} = {p(f.value)}" if f.op == "is" else f"{c} <> {p(f.value)}"
    elif f.op == "between":
        lo, hi = f.value
        parts = ([f"{c} >= {p(lo)}"] if lo is not None else []) + ([f"{c} <= {p(hi)}"] if hi is not None else [])
        cond = " AND ".join(parts)
    elif f.op in ("in", "not_in"):
        vals = [float(v) if _is_num(v) else v for v in f.value]
        lst = f"list_contains({p(vals)}, {c})"
        cond = lst if f.op == "in" else f"NOT {lst}"
    else:
        cond = f"{c} {_SQL_OP[f.op]} {p(f.value)}"
    null_fails = "TRUE" if f.nulls == "drop" else "FALSE"
    return f"CASE WHEN {c} IS NULL THEN {null_fails} WHEN {cond} THEN FALSE ELSE TRUE END"


def describe_filter(f: Filter) -> str:
    if f.op == "between":
        lo, hi = f.value
        s = (f"{f.column} ≥ {lo:g}" if hi is None else f"{f.column} ≤ {hi:g}" if lo is None
             else f"{lo:g} ≤ {f.column} ≤ {hi:g}") if all(_is_num(x) or x is None for x in f.value) \
            else f"{f.column} between {f.value[0]} and {f.value[1]}"
    elif f.op in ("in", "not_in"):
        shown = ", ".join(map(str, f.value[:5])) + (" …" if len(f.value) > 5 else "")
        s = f"{f.column} {'in' if f.op == 'in' else 'not in'} {{{shown}}}"
    elif f.op in ("is", "is_not"):
        s = f"{f.column} {'is' if f.op == 'is' else 'is not'} {json.dumps(f.value)}"
    else:
        s = f"{f.column} {f.op} {f.value:g}" if _is_num(f.value) else f"{f.column} {f.op} {json.dumps(f.value)}"
    return s + (" (drop missing)" if f.nulls == "drop" and f.op not in ("is", "is_not") else "")


class _Query:
    """The SQL of one recipe: a ``base`` relation with the final label, the group, tokens and a bit mask of the
    steps that remove each row (0 = the row survives every step before exact dedup and the mixture)."""

    def __init__(self, store: Store, r: Recipe, cached: bool | None, group_by: str | None,
                 cat: dict[str, tuple[str, str]], extra: Iterable[str] = ()) -> None:
        self.store, self.r, self.p = store, r, _Params()
        self.group_by = group_by
        #: more catalog columns passed through (for export: text, user columns, scores) → their alias in base
        self.extra = {c: f"_x{i}" for i, c in enumerate(dict.fromkeys(extra))}
        cols = ["id", "label", "n_tokens", *r.columns(), *self.extra]
        if group_by:
            cols.append(group_by)
        m = r.mixture
        self.quality = m.quality_column if m is not None and m.quality_column and m.quality_strength > 0 else None
        src = store.selection_source(list(dict.fromkeys(cols)), cached=cached, cat=cat)
        dec = r.uses_decisions and _has_decisions(store)
        # the final label: a person's relabel decision wins. A future rule such as "relabel flagged rows to
        # suggested_label" is one more WHEN here (its columns added to `cols` above), e.g.
        # CASE WHEN d.action = 'relabel' THEN d.value WHEN <rule filter> THEN s.suggested_label ELSE s.label END
        label = "s.label"
        if dec and r.relabel:
            label = "CASE WHEN d.action = 'relabel' THEN d.value ELSE s.label END"
        graw = "NULL"
        if group_by:
            graw = label if group_by == "label" else f"s.{quote_ident(group_by)}"
        group = f"coalesce(CAST({graw} AS VARCHAR), '{MISSING_GROUP}')"
        reviewed = "d.action IN ('keep', 'relabel')" if dec and r.reviewed_pass_filters else "FALSE"
        bits: list[tuple[Step, str]] = []
        for i, f in enumerate(r.filters):
            fails = _filter_sql(f, self.p, label)
            bits.append((Step(describe_filter(f), f"filters[{i}]", 0, 0),
                         fails if reviewed == "FALSE" else f"(NOT coalesce({reviewed}, FALSE) AND {fails})"))
        if dec and r.exclude:
            bits.append((Step("exclude decisions", "decisions", 0, 0), "coalesce(d.action = 'exclude', FALSE)"))
        if r.only:
            bits.append((Step(f"only selections {', '.join(r.only)}", "selections.only", 0, 0),
                         f"s.row_id NOT IN (SELECT row_id FROM selections WHERE list_contains({self.p(list(r.only))}, name))"))
        if r.except_:
            bits.append((Step(f"except selections {', '.join(r.except_)}", "selections.except", 0, 0),
                         f"s.row_id IN (SELECT row_id FROM selections WHERE list_contains({self.p(list(r.except_))}, name))"))
        if r.semantic_eps is not None:
            bits.append((Step(f"SemDeDup at eps {r.semantic_eps:g}", "dedup.semantic", 0, 0),
                         f"coalesce(s.semdedup_sim > {self.p(1.0 - r.semantic_eps)}, FALSE)"))
        self.bits = bits
        mask = " + ".join(f"(CASE WHEN {expr} THEN {1 << i} ELSE 0 END)" for i, (_, expr) in enumerate(bits)) or "0"
        extra = []
        if r.dedup_exact:
            extra += ["s.dup_group AS _dg", "s.dup_rank AS _dr"]
        if self.quality:
            extra.append(f"CAST(s.{quote_ident(self.quality)} AS DOUBLE) AS _q")
        extra += [f"s.{quote_ident(c)} AS {alias}" for c, alias in self.extra.items()]
        join = f" LEFT JOIN ({Store.CURRENT_DECISIONS_SQL}) d USING (row_id)" if dec else ""
        # _graw: the group's own value (counting groups by it avoids a string cast per row); _g: its name
        self.base = (f"SELECT s.row_id, s.id, {label} AS _label, s.label AS _label0, {graw} AS _graw, "
                     f"{group} AS _g, coalesce(s.n_tokens, 0) AS _tok, CAST({mask} AS BIGINT) AS _m"
                     + "".join(f", {e}" for e in extra) + f" FROM {src} s{join}")
        # the same rows as `base WHERE _m = 0`, written as one condition per step so DuckDB can push each into
        # the scan of its own table (export reads far fewer rows through the joins)
        self.passing = self.base + (" WHERE " + " AND ".join(f"NOT ({expr})" for _, expr in bits) if bits else "")

    def pool_and_keep(self) -> str:
        """``WITH pool`` (rows with mask 0) ``, dd`` (per duplicate group that still has a copy in the pool: the
        row to keep — lowest dup_rank, then row_id). Only groups with a dup_rank > 0 row are looked at, so the
        cost follows the number of duplicates, not of rows."""
        return f"""WITH pool AS ({self.passing}),
            dd AS (SELECT _dg, min({{'r': _dr, 'i': row_id}}).i AS _keep FROM pool
                   WHERE _dg IN (SELECT _dg FROM pool WHERE _dr > 0) GROUP BY _dg)"""

    def survivors(self) -> str:
        """SQL of the rows that pass every step but the mixture (exact dedup included)."""
        if not self.r.dedup_exact:
            return self.passing
        return f"""{self.pool_and_keep()}
            SELECT pool.* FROM pool LEFT JOIN dd USING (_dg) WHERE dd._keep IS NULL OR pool.row_id = dd._keep"""


def _has_decisions(store: Store) -> bool:
    return store.count("decisions") > 0


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


def _counts_by_mask(store: Store, q: _Query) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(per group and mask: rows, tokens) and, with exact dedup, the rows it removes per group."""
    t = store.run_select(
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
        dd = store.run_select(sql, q.p.values).to_pandas()
    return by_mask, dd


def live_counts(store: Any, recipe: Any, group_by: str | None = None, cached: bool | None = True) -> Counts:
    """Counts for a recipe draft, cheap enough for every slider move (one or two scans of the wide table).

    Per group: rows before (every row), after the steps (pool), the mixture target and what is selected.
    With a row budget the selected counts are exact (sampling takes exactly the target); with a token budget
    the rows (and without one, the tokens) of partly sampled groups are estimated from the group's mean.
    *group_by* chooses the composition grouping when the recipe has no mixture (default: label).
    """
    store = _store(store)
    r, cat = _checked(store, recipe)
    group_by = r.mixture.group_by if r.mixture is not None else (group_by or "label")
    if group_by not in cat:
        group_by = None
    q = _Query(store, r, cached, group_by, cat)
    by_mask, dd = _counts_by_mask(store, q)
    return _summarise(r, q, by_mask, dd)


def export_query(store: Store, recipe: Any, columns: Iterable[tuple[str, str, str]]) -> tuple[str, dict, Counts]:
    """For a recipe without a mixture: the SQL of its rows in row_id order, with *columns* — (source, column,
    output name); source ``selection`` means ``label`` (final), ``label_original``, ``repeats`` or ``weight`` —
    plus its counts. Export streams this straight into ``COPY``: no row ids travel through Python."""
    r, cat = _checked(store, recipe)
    if r.mixture is not None:
        raise ValueError("export_query is for recipes without a mixture; use select()")
    columns = list(columns)
    counts = live_counts(store, r, cached=None)
    q = _Query(store, r, False, "label" if "label" in cat else None, cat,
               extra=[c for src, c, _ in columns if src != "selection"])
    ours = {"label": "_label", "label_original": "_label0", "repeats": "1", "weight": "1.0"}
    exprs = [f"{ours[c] if src == 'selection' else q.extra[c]} AS {quote_ident(out)}" for src, c, out in columns]
    return f"SELECT {', '.join(exprs)} FROM ({q.survivors()}) ORDER BY row_id", q.p.values, counts


def _summarise(r: Recipe, q: _Query, by_mask: pd.DataFrame, dd: pd.DataFrame | None) -> Counts:
    by_mask["n"] = by_mask["n"].astype(np.int64)
    by_mask["tok"] = by_mask["tok"].fillna(0).astype(np.int64)
    masks = by_mask["_m"].to_numpy(np.int64)
    n = by_mask["n"].to_numpy(np.int64)
    steps = []
    for i, (st, _) in enumerate(q.bits):
        bit = 1 << i
        steps.append(replace(st, removes_alone=int(n[(masks & bit) != 0].sum()),
                             removes_only=int(n[masks == bit].sum())))
    g = by_mask.groupby("_g", dropna=False, sort=False)
    groups = pd.DataFrame({"rows_before": g["n"].sum(), "tokens_before": g["tok"].sum()})
    pool = by_mask[by_mask["_m"] == 0].groupby("_g", dropna=False, sort=False)[["n", "tok"]].sum()
    groups["rows_pool"] = pool["n"].reindex(groups.index).fillna(0).astype(np.int64)
    groups["tokens_pool"] = pool["tok"].reindex(groups.index).fillna(0).astype(np.int64)
    if dd is not None:
        alone = dd[dd["_g"].isna() & dd["alone"].notna()]
        drops = dd[dd["alone"].isna()].set_index("_g")
        groups["rows_pool"] -= drops["n"].reindex(groups.index).fillna(0).astype(np.int64)
        groups["tokens_pool"] -= drops["tok"].reindex(groups.index).fillna(0).astype(np.int64)
        steps.append(Step("exact dedup (keep one per group)", "dedup.exact",
                          int(alone["alone"].sum()) if len(alone) else 0, int(drops["n"].sum())))
    groups.index = groups.index.map(lambda x: MISSING_GROUP if x is None or (isinstance(x, float) and np.isnan(x))
                                    else str(x))
    groups.index.name = "group"
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
        groups, warnings, est = _mixture_counts(r.mixture, groups)
    groups = groups.reset_index()
    return Counts(
        rows_total=int(n.sum()), tokens_total=int(by_mask["tok"].sum()), rows_pool=rows_pool, tokens_pool=tok_pool,
        rows_selected=int(groups["rows_selected"].sum()),
        rows_unique=int(np.minimum(groups["rows_selected"], groups["rows_pool"]).sum()),
        tokens_selected=int(groups["tokens_selected"].sum()), tokens_estimated=est, steps=steps, groups=groups,
        group_by=q.group_by, unit=r.mixture.unit if r.mixture else "rows", warnings=warnings)


# ========================================================================================== mixture
def group_shares(sizes: dict[str, float], temperature: float = 1.0, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Target share of each group: normalised *weights* if given (missing groups get 0), else
    size^(1/T) normalised — T = 1 keeps the natural proportions, T → ∞ gives every non-empty group the same."""
    if weights is not None:
        w = {g: float(weights.get(g, 0.0)) for g in sizes}
        tot = sum(w.values())
        return {g: (v / tot if tot > 0 else 0.0) for g, v in w.items()}
    logs = {g: math.log(s) / temperature for g, s in sizes.items() if s > 0}
    if not logs:
        return {g: 0.0 for g in sizes}
    top = max(logs.values())
    ex = {g: math.exp(v - top) for g, v in logs.items()}
    tot = sum(ex.values())
    return {g: ex.get(g, 0.0) / tot for g in sizes}


def allocate(shares: dict[str, float], capacity: dict[str, float], budget: float | None,
             redistribute: bool = True, integer: bool = True) -> dict[str, float]:
    """Per-group targets for *budget* split by *shares*, none above its *capacity*.

    Water-filling: a group whose share exceeds its capacity gets its capacity, and (with *redistribute*) the
    rest of the budget is split among the others by their shares, repeatedly. No budget means the largest total
    that meets the shares exactly without exceeding any capacity. With *integer*, targets are whole numbers
    summing to the (reachable) budget by largest remainders, so each is within ±1 of share × budget where the
    group has room.
    """
    active = {g for g, s in shares.items() if s > 0}
    if budget is None:
        # with redistribute, a group that has nothing to give does not shrink the mix of the others to nothing
        ratios = [capacity[g] / shares[g] for g in active if capacity[g] > 0 or not redistribute]
        budget = min(ratios) if ratios else 0.0
        if integer:
            budget = math.floor(budget + 1e-9)
    alloc = {g: 0.0 for g in shares}
    if not redistribute:
        for g in active:
            alloc[g] = min(shares[g] * budget, capacity[g])
    else:
        remaining = float(budget)
        while active and remaining > 1e-12:
            tot = sum(shares[g] for g in active)
            full = {g for g in active if remaining * shares[g] / tot >= capacity[g] - 1e-9}
            if not full:
                for g in active:
                    alloc[g] = remaining * shares[g] / tot
                break
            for g in full:
                alloc[g] = float(capacity[g])
                remaining -= capacity[g]
            active -= full
    if not integer:
        return alloc
    floors = {g: math.floor(v + 1e-9) for g, v in alloc.items()}
    reach = min(float(budget), sum(min(alloc[g], capacity[g]) for g in alloc)) if redistribute else sum(alloc.values())
    left = int(round(reach)) - sum(floors.values())
    order = sorted((g for g in alloc if floors[g] + 1 <= capacity[g] and alloc[g] - floors[g] > 1e-9),
                   key=lambda g: (-(alloc[g] - floors[g]), -shares[g], g))
    for g in order[:max(left, 0)]:
        floors[g] += 1
    return {g: float(v) for g, v in floors.items()}


def _mixture_counts(m: Mixture, groups: pd.DataFrame) -> tuple[pd.DataFrame, list[str], bool]:
    names = list(groups.index)
    if m.weights is not None:
        unknown = [g for g in m.weights if g not in names]
        if unknown:
            raise _bad(f"mixture.weights[{json.dumps(unknown[0])}]",
                       f"no group {json.dumps(unknown[0])} in column `{m.group_by}`",
                       f"groups: {choices(names, limit=40)}")
    rows = dict(zip(names, groups["rows_pool"].astype(float)))
    toks = dict(zip(names, groups["tokens_pool"].astype(float)))
    size = toks if m.unit == "tokens" else rows
    shares = group_shares(size, m.temperature, m.weights)
    reps = math.inf if m.max_repeats is None else m.max_repeats
    cap = math.inf if m.cap is None else float(m.cap)
    if m.mode == "reweight":
        target = {g: size[g] if shares[g] > 0 else 0.0 for g in names}
        capacity = dict(size)
    else:
        budget = m.budget
        epochs = reps
        if budget is None:
            # the largest mix that meets the shares without repeats; the cap then clips big groups and (with
            # redistribute) the others keep their rows — cap + T = 1 is ClusterClip-style clipping
            epochs = 1
            fits = allocate(shares, {g: size[g] for g in names}, None, m.redistribute, integer=m.unit == "rows")
            budget = sum(fits.values())
        capacity = {g: min(size[g] * epochs, cap) if size[g] > 0 else 0.0 for g in names}  # 0 × ∞ is not a room
        target = allocate(shares, capacity, budget, m.redistribute, integer=m.unit == "rows")
    groups["share_target"] = [shares[g] for g in names]
    groups["target"] = [target[g] for g in names]
    sel_rows, sel_tok, repeats = [], [], []
    for g in names:
        t, s = target[g], size[g]
        rep = t / s if s > 0 else 0.0
        repeats.append(rep)
        if m.unit == "rows":
            sel_rows.append(int(round(t)))
            mean_tok = toks[g] / rows[g] if rows[g] else 0.0
            sel_tok.append(int(round(t * mean_tok)))
        else:
            mean_tok = toks[g] / rows[g] if rows[g] else 0.0
            sel_rows.append(int(round(t / mean_tok)) if mean_tok > 0 else 0)
            sel_tok.append(int(round(t)))
    groups["rows_selected"] = sel_rows
    groups["tokens_selected"] = sel_tok
    groups["repeats"] = repeats
    # what each group was asked for before capacities: share × budget (no budget: as if uncapped)
    if m.mode == "reweight":
        wanted = dict(target)
    else:
        wanted = {g: shares[g] * budget for g in names}
        if m.budget is None:  # without a budget the cap is the point, not a shortfall
            wanted = {g: min(wanted[g], cap) for g in names}
    # short: a group that gave all it can (rows × repeats, or its cap) and still has less than its share;
    # a group with room is never short (rounding to whole rows is not a shortfall)
    short = {g: wanted[g] - target[g] if target[g] >= capacity[g] - 1e-9 and wanted[g] - target[g] > 0.5 else 0.0
             for g in names}
    groups["shortfall"] = [short[g] for g in names]
    # a partly sampled group's tokens (token budget: its rows) depend on which rows are drawn: estimated here
    est = m.mode == "sample" and any(size[g] > 0 and abs(target[g] / size[g] - round(target[g] / size[g])) > 1e-9
                                     for g in names)
    warnings = _mixture_warnings(m, names, shares, wanted, target, size, cap, short)
    return groups, warnings, est


def _mixture_warnings(m: Mixture, names: list[str], shares: dict, wanted: dict, target: dict, size: dict,
                      cap: float, short: dict) -> list[str]:
    out = []
    unit = m.unit
    for g in names:
        if shares[g] <= 0:
            continue
        if short[g] > 0:
            why = ("it has no rows left after the filters" if size[g] == 0 else
                   f"it is capped at {cap:,.0f} {unit}" if target[g] >= cap - 1e-9 else
                   f"it would have to repeat {wanted[g] / size[g]:.1f}× (max_repeats = {m.max_repeats})")
            out.append(f"Group {g!r} cannot fill its share: {target[g]:,.0f} of {wanted[g]:,.0f} {unit} "
                       f"({shares[g]:.1%} wanted) — {why}.")
        elif size[g] > 0 and target[g] > size[g] + 1e-9:
            out.append(f"Group {g!r} repeats {target[g] / size[g]:.1f}× to fill its share.")
    if m.budget is not None and m.mode == "sample":
        got = sum(target.values())
        if got + 0.5 < m.budget:
            out.append(f"The budget of {m.budget:,} {unit} is not met: {got:,.0f} {unit} can be selected "
                       f"(shortfall {m.budget - got:,.0f})"
                       + ("" if m.redistribute else "; set redistribute to let other groups fill in") + ".")
    if m.weights is not None:
        zero = [g for g in names if m.weights.get(g, 0) == 0]
        if zero:
            out.append(f"{len(zero):,} group(s) have weight 0 and are left out: {choices(zero, limit=8)}.")
    return out


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
    q = _Query(store, r, cached, group_by, cat)
    by_mask, dd = _counts_by_mask(store, q)
    counts = _summarise(r, q, by_mask, dd)
    m = r.mixture
    cols = "row_id, id, _label AS label, _label0 AS label_original, _g AS grp, _tok AS n_tokens"
    if m is None:
        t = store.run_select(f"SELECT {cols}, 1 AS repeats FROM ({q.survivors()}) ORDER BY row_id", q.p.values)
    else:
        t = _sample(store, r, q, counts, cols)
    return _finish(r, t, counts)


def _sample(store: Store, r: Recipe, q: _Query, counts: Counts, cols: str) -> pa.Table:
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
    return store.run_select(sql, p.values, tables={"_plan": plan})


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
    src = store.selection_source([column], cached=True)
    c = quote_ident(column)
    head = store.run_select(f"SELECT count(*) AS n, count(*) - count({c}) AS miss, "
                            + (f"min({c})::DOUBLE AS lo, max({c})::DOUBLE AS hi, " if kind == "number" else "")
                            + f"count(DISTINCT {c}) AS d FROM {src}").to_pylist()[0]
    p = Profile(column, kind, int(head["n"]), int(head["miss"]), distinct=int(head["d"]))
    if kind != "number":
        t = store.run_select(f"SELECT CAST({c} AS VARCHAR) AS v, count(*) AS n FROM {src} WHERE {c} IS NOT NULL "
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
    t = store.run_select(
        f"SELECT least(greatest(floor(({c} - $lo) / $w), 0), $last)::BIGINT AS b, count(*) AS n FROM {src} "
        f"WHERE {c} IS NOT NULL GROUP BY ALL", {"lo": p.edges[0], "w": width, "last": n_bins - 1}).to_pylist()
    counts = [0] * n_bins
    for r in t:
        counts[int(r["b"])] += int(r["n"])
    p.counts = counts
    return p


def group_sizes(store: Store, column: str, limit: int = MAX_GROUPS + 1) -> dict[str, int]:
    """Rows per value of a grouping column (values as group names), most frequent first."""
    src = store.selection_source([column], cached=True)
    c = quote_ident(column)
    t = store.run_select(f"SELECT coalesce(CAST({c} AS VARCHAR), '{MISSING_GROUP}') AS g, count(*) AS n FROM {src} "
                         f"GROUP BY ALL ORDER BY n DESC, g LIMIT {int(limit)}").to_pylist()
    return {r["g"]: int(r["n"]) for r in t}


# ============================================================================================== diff
def recipe_diff(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """Differences between two recipes as (field path, value in a, value in b), both normalised first."""
    ja, jb = parse_recipe(a).to_json(), parse_recipe(b).to_json()
    out: list[tuple[str, Any, Any]] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in list(dict.fromkeys([*x, *y])):
                walk(x.get(k), y.get(k), f"{path}.{k}" if path else k)
        elif isinstance(x, list) and isinstance(y, list) and path != "filters" and not path.endswith(".value"):
            if x != y:
                out.append((path, x, y))
        elif path == "filters" and isinstance(x, list) and isinstance(y, list):
            for i in range(max(len(x), len(y))):
                walk(x[i] if i < len(x) else None, y[i] if i < len(y) else None, f"filters[{i}]")
        elif x != y:
            out.append((path, x, y))

    walk(ja, jb, "")
    return out
