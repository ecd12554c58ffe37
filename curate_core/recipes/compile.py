"""Recipe → SQL: the checks against a workspace, and the one query every count, selection and export uses.

:class:`RecipeQuery` turns a checked recipe into a ``base`` relation with the final label, the group, tokens and
a bit mask of the steps that remove each row, then ``passing`` / ``survivors`` / ``pool_and_keep`` built from
it. Its parameters are named (``$pN``) and collected as it is built; identifiers are quoted; the decisions come
from the schema's ``decisions_in_force`` view and the per-row columns from :mod:`.source` — the compiler never
reaches into the Store's internals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import CurateError, choices
from ..rules import Params, check_regex, filter_passes, match_sql, semdedup_removes
from ..store import Store, quote_ident
from .model import ALL_ROWS, MISSING_GROUP, Filter, Recipe, _bad, is_number, _kind, describe_filter, parse_recipe
from .source import source

# ===================================================================================== workspace check
def _missing_column(store: Store, col: str, where: str, cat: dict) -> CurateError:
    from ..pipeline import column_origins  # which stage makes which column: the pipeline's declarations

    origins = column_origins()
    if col in origins:
        stage, what = origins[col]
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


def _checked(store: Store, recipe: Any,
             cat: dict[str, tuple[str, str]] | None = None) -> tuple[Recipe, dict[str, tuple[str, str]]]:
    """:func:`check_recipe`, also returning the catalog it read (one metadata query per slider move); *cat*, a
    catalog the caller has just read, saves reading it again."""
    r = parse_recipe(recipe)
    cat = cat if cat is not None else store.catalog()

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
    if r.auto_relabel is not None:
        for col in r.auto_relabel.columns:
            need(col, "decisions.auto_relabel")
    saved = store.selection_names() if r.only or r.except_ else {}
    for key, names in (("only", r.only), ("except", r.except_)):
        for i, n in enumerate(names):
            if n not in saved:
                raise _bad(f"selections.{key}[{i}]", f"no saved selection named {json.dumps(n)}",
                           f"saved selections: {choices(saved)}")
    for i, x in enumerate(r.search):
        if x.mode == "regex":
            check_regex(x.query, where=f"search[{i}].query: ")
    m = r.mixture
    if m is not None:
        if m.group_by is not None:
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
    ok = {"number": is_number, "bool": lambda v: isinstance(v, bool), "text": lambda v: isinstance(v, str)}[kind]
    bad = [v for v in vals if not ok(v)]
    if bad:
        raise _bad(f"{where}.value", f"column `{f.column}` is {duck_type}, so the value must be {want}; "
                                     f"got {json.dumps(bad[0])}")
    if kind == "bool" and f.op in ("<", "<=", ">", ">=", "between"):
        raise _bad(f"{where}.op", f"`{f.op}` does not apply to the true/false column `{f.column}`",
                   "use is / is_not / == / !=")


# ============================================================================================ SQL
@dataclass(frozen=True)
class Step:
    """One removal step of a recipe and its live numbers."""

    name: str  # e.g. "outlier_score <= 0.4", "exclude decisions", "exact dedup"
    key: str  # "filters[0]", "decisions", "selections.only", "selections.except", "dedup.semantic", "dedup.exact"
    removes_alone: int  # rows it removes when applied alone to every row
    removes_only: int  # rows only it removes (they would come back without it)


def filter_sql(f: Filter, p: Params, label: str = "s.label") -> str:
    """SQL that is TRUE when a row *passes* the filter, and FALSE or NULL when it fails (the rule is
    :func:`curate_core.rules.filter_fails`; this is its pushable form, :func:`curate_core.rules.filter_passes`).

    Columns are qualified (``s.``) so a user column named like a decisions column (``value``, ``action``) is not
    ambiguous; a filter on ``label`` tests the final label (after relabel decisions), as the mixture groups do.
    """
    return filter_passes(f.column, f.op, f.value, f.nulls, p, ref=label if f.column == "label" else None)


class RecipeQuery:
    """The SQL of one recipe: a ``base`` relation with the final label, the group, tokens and a bit mask of the
    steps that remove each row (0 = the row survives every step before exact dedup and the mixture)."""

    def __init__(self, store: Store, r: Recipe, cached: bool | None, group_by: str | None,
                 cat: dict[str, tuple[str, str]], extra: Iterable[str] = ()) -> None:
        self.store, self.r, self.p = store, r, Params()
        self.group_by = group_by
        #: more catalog columns passed through (for export: text, user columns, scores) → their alias in base
        self.extra = {c: f"_x{i}" for i, c in enumerate(dict.fromkeys(extra))}
        cols = ["id", "label", "n_tokens", *r.columns(), *self.extra]
        if group_by:
            cols.append(group_by)
        m = r.mixture
        self.quality = m.quality_column if m is not None and m.quality_column and m.quality_strength > 0 else None
        src = source(store, list(dict.fromkeys(cols)), cached=cached, cat=cat)
        dec = r.uses_decisions and _has_decisions(store)
        # the final label: a person's relabel decision wins, then the auto-relabel rule, then the given label
        label = "s.label"
        auto_bit = None
        if r.auto_relabel is not None:  # the rule: flagged by enough methods → suggested label if sure, else drop
            a = r.auto_relabel
            free = "d.action IS NULL" if dec else "TRUE"  # a person's decision wins over the rule
            flagged = f"({free} AND coalesce(s.consensus, 0) >= {self.p(int(a.min_consensus))})"
            new, conf = f"s.{a.label_column}", f"s.{a.confidence_column}"
            sure = (f"({new} IS NOT NULL AND {new} IS DISTINCT FROM s.label "
                    f"AND coalesce({conf}, 0) >= {self.p(float(a.min_confidence))}"
                    + (f" AND coalesce(s.relabel_agreement, 0) >= {self.p(float(a.min_agreement))}"
                       if a.suggestion == "clean_probe" else "") + ")")
            label = f"CASE WHEN {flagged} AND {sure} THEN {new} ELSE s.label END"
            if a.drop_rest:
                auto_bit = (Step("auto-relabel: flagged rows it cannot relabel", "decisions.auto_relabel", 0, 0),
                            f"NOT ({flagged} AND NOT {sure})")
        if dec and r.relabel:
            label = f"CASE WHEN d.action = 'relabel' THEN d.value ELSE {label} END"
        graw = "NULL" if m is None or m.group_by is not None else f"'{ALL_ROWS}'"
        if group_by:
            graw = label if group_by == "label" else f"s.{quote_ident(group_by)}"
        group = f"coalesce(CAST({graw} AS VARCHAR), '{MISSING_GROUP}')"
        reviewed = "d.action IN ('keep', 'relabel')" if dec and r.reviewed_pass_filters else "FALSE"
        # per step: SQL that is TRUE exactly when the step keeps the row (FALSE or NULL when it removes it). Filters
        # are plain comparisons DuckDB pushes into the scans; the other steps' removal tests are never NULL
        bits: list[tuple[Step, str]] = []
        for i, f in enumerate(r.filters):
            keeps = filter_sql(f, self.p, label)
            bits.append((Step(describe_filter(f), f"filters[{i}]", 0, 0),
                         keeps if reviewed == "FALSE" else f"(coalesce({reviewed}, FALSE) OR {keeps})"))
        if dec and r.exclude:
            bits.append((Step("exclude decisions", "decisions", 0, 0), "NOT coalesce(d.action = 'exclude', FALSE)"))
        if auto_bit is not None:
            bits.append(auto_bit)
        if r.only:
            bits.append((Step(f"only selections {', '.join(r.only)}", "selections.only", 0, 0),
                         f"s.row_id IN (SELECT row_id FROM selections WHERE list_contains({self.p(list(r.only))}, name))"))
        if r.except_:
            bits.append((Step(f"except selections {', '.join(r.except_)}", "selections.except", 0, 0),
                         f"s.row_id NOT IN (SELECT row_id FROM selections WHERE list_contains({self.p(list(r.except_))}, name))"))
        for i, x in enumerate(r.search):
            hit = f"s.row_id IN (SELECT row_id FROM samples WHERE {match_sql(x.query, x.mode, self.p)})"
            bits.append((Step(x.describe(), f"search[{i}]", 0, 0), hit if x.match == "only" else f"NOT ({hit})"))
        if r.semantic_eps is not None:
            bits.append((Step(f"SemDeDup at eps {r.semantic_eps:g}", "dedup.semantic", 0, 0),
                         f"NOT {semdedup_removes(r.semantic_eps, self.p)}"))
        self.bits = bits
        mask = " + ".join(f"(CASE WHEN {keeps} THEN 0 ELSE {1 << i} END)" for i, (_, keeps) in enumerate(bits)) or "0"
        extra = []
        if r.dedup_exact:
            extra += ["s.dup_group AS _dg", "s.dup_rank AS _dr"]
        if self.quality:
            extra.append(f"CAST(s.{quote_ident(self.quality)} AS DOUBLE) AS _q")
        extra += [f"s.{quote_ident(c)} AS {alias}" for c, alias in self.extra.items()]
        join = " LEFT JOIN decisions_in_force d USING (row_id)" if dec else ""
        # _graw: the group's own value (counting groups by it avoids a string cast per row); _g: its name
        #: whether the final label can differ from ``samples.label`` (relabel decisions or the auto-relabel rule)
        self.relabels = label != "s.label"
        self.base = (f"SELECT s.row_id, s.id, {label} AS _label, s.label AS _label0, {graw} AS _graw, "
                     f"{group} AS _g, coalesce(s.n_tokens, 0) AS _tok, CAST({mask} AS BIGINT) AS _m"
                     + "".join(f", {e}" for e in extra) + f" FROM {src} s{join}")
        # the same rows as `base WHERE _m = 0`, written as one condition per step so DuckDB can push each into
        # the scan of its own table (export reads far fewer rows through the joins)
        self.passing = self.base + (" WHERE " + " AND ".join(keeps for _, keeps in bits) if bits else "")

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


