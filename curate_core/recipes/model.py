"""Recipes: the versioned JSON document that says which rows to select, parsed and checked.

A **recipe** (schema in the README, section "Recipes")::

    {"version": 1, "seed": 0,
     "filters": [{"column": "outlier_score", "op": "<=", "value": 0.4, "nulls": "keep"}],
     "decisions": {"exclude": true, "relabel": true, "reviewed_pass_filters": true},
     "dedup": {"exact": true, "semantic_eps": 0.05},
     "selections": {"only": [], "except": []},
     "mixture": {"group_by": "label", "weights": null, "budget": {"rows": 5000}, "cap": null,
                 "temperature": 1.0, "max_repeats": 1, "quality": {"column": "label_quality", "strength": 1.0},
                 "mode": "sample", "redistribute": true}}

:func:`parse_recipe` checks its structure (types, ranges, known keys; errors name the field, e.g.
``mixture.budget.rows``) and returns a normalised :class:`Recipe`; checks that need a workspace are in
:mod:`.compile`. Adding a recipe field: extend the dataclass, parse it in :func:`parse_recipe`, emit it in
:meth:`Recipe.to_json`, and turn it into SQL in :class:`~curate_core.recipes.compile.RecipeQuery`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import CurateError, choices
from ..store import Store

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
ALL_ROWS = "(all rows)"  # the one group of a mixture with group_by null
OPS = ("<", "<=", ">", ">=", "==", "!=", "between", "in", "not_in", "is", "is_not")
#: search modes a recipe step can replay (a semantic top-k depends on the embedding: save it as a selection)
MATCH_MODES = ("keyword", "regex")
TOP_KEYS = ("version", "seed", "filters", "decisions", "dedup", "selections", "search", "mixture", "name",
            "description")
MIXTURE_KEYS = ("group_by", "weights", "budget", "cap", "temperature", "max_repeats", "quality", "mode",
                "redistribute", "origin")

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
    group_by: str | None = "label"  # None: the whole pool is one group (e.g. DSIR importance resampling)
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
    #: where the weights came from (e.g. a mixture search's parameters and seed); recorded, never interpreted
    origin: dict | None = None

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
                "mode": self.mode, "redistribute": self.redistribute,
                **({"origin": self.origin} if self.origin is not None else {})}


@dataclass(frozen=True)
class SearchStep:
    """Keep only (``match: only``) or drop (``except``) the rows whose text matches a keyword or regex search,
    evaluated when the recipe runs (the query is stored, not its rows: new data is searched too)."""

    query: str
    mode: str = "keyword"
    match: str = "only"

    def to_json(self) -> dict:
        return {"query": self.query, "mode": self.mode, "match": self.match}

    def describe(self) -> str:
        return f"{self.match} rows matching {self.mode} {json.dumps(self.query, ensure_ascii=False)}"


@dataclass(frozen=True)
class AutoRelabel:
    """Relabel flagged rows to a suggested label where the methods agree and the suggestion is sure; drop the
    other flagged rows. A person's decision on a row always wins over the rule.

    ``suggestion`` names where the label comes from: ``out_of_fold`` = confident learning's `suggested_label`
    (probes trained on every label, the noisy ones included) with its probability; ``clean_probe`` = the
    `relabel_agreement` score's `relabel_label` (a probe trained on the unflagged rows) with its probability,
    and the share of the row's nearest unflagged neighbours that carry it at least ``min_agreement``.
    """

    min_consensus: int = 2  # a row is flagged when at least this many label-noise methods flag it
    min_confidence: float = 0.7  # relabel when the suggested label's probability is at least this
    drop_rest: bool = True  # drop the flagged rows that are not relabelled
    suggestion: str = "out_of_fold"  # out_of_fold | clean_probe
    min_agreement: float = 0.0  # clean_probe: share of the nearest unflagged neighbours with the suggested label

    SUGGESTIONS = ("out_of_fold", "clean_probe")

    @property
    def label_column(self) -> str:
        return "relabel_label" if self.suggestion == "clean_probe" else "suggested_label"

    @property
    def confidence_column(self) -> str:
        return "relabel_confidence" if self.suggestion == "clean_probe" else "suggested_confidence"

    @property
    def columns(self) -> tuple[str, ...]:
        """The score columns the rule reads."""
        extra = ("relabel_agreement",) if self.suggestion == "clean_probe" else ()
        return ("consensus", self.label_column, self.confidence_column, *extra)

    def to_json(self) -> dict:
        return {"min_consensus": self.min_consensus, "min_confidence": self.min_confidence,
                "drop_rest": self.drop_rest, "suggestion": self.suggestion, "min_agreement": self.min_agreement}

    def describe(self) -> str:
        rest = "; the other flagged rows dropped" if self.drop_rest else ""
        if self.suggestion == "clean_probe":
            sure = (f"a probe trained on the unflagged rows suggests when its probability is ≥ "
                    f"{self.min_confidence:g} and ≥ {self.min_agreement:.0%} of the nearest unflagged rows carry it")
        else:
            sure = f"the out-of-fold suggestion when its probability is ≥ {self.min_confidence:g}"
        return f"auto-relabel rows flagged by ≥ {self.min_consensus} methods to {sure}{rest}"


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
    search: tuple[SearchStep, ...] = ()
    auto_relabel: AutoRelabel | None = None

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
                          "reviewed_pass_filters": self.reviewed_pass_filters,
                          # only when used: recipes without the rule keep their document (and digest)
                          **({"auto_relabel": self.auto_relabel.to_json()} if self.auto_relabel else {})},
            "dedup": {"exact": self.dedup_exact, "semantic_eps": self.semantic_eps},
            "selections": {"only": list(self.only), "except": list(self.except_)},
            "mixture": None if self.mixture is None else self.mixture.to_json(),
        })
        if self.search:  # only when used: a recipe without search steps keeps its document (and digest)
            out["search"] = [x.to_json() for x in self.search]
        return out

    def columns(self) -> list[str]:
        """Catalog columns the recipe reads."""
        cols = [f.column for f in self.filters]
        if self.dedup_exact:
            cols += ["dup_group", "dup_rank"]
        if self.semantic_eps is not None:
            cols.append("semdedup_sim")
        if self.auto_relabel is not None:
            cols += list(self.auto_relabel.columns)
        if self.mixture is not None:
            if self.mixture.group_by is not None:
                cols.append(self.mixture.group_by)
            if self.mixture.quality_column and self.mixture.quality_strength:
                cols.append(self.mixture.quality_column)
        return list(dict.fromkeys(c for c in cols if c not in ("row_id",)))


#: what a refused recipe field points to when it has nothing more specific to say
FIELDS_HINT = "the README's section \"Recipes\" describes every field; assets/recipes/*.json are examples"


def _bad(field_: str, what: str, hint: str = "") -> CurateError:
    return CurateError(f"Recipe field `{field_}`: {what}", hint or FIELDS_HINT)


def is_number(v: Any) -> bool:
    """A finite JSON number (true/false are not numbers)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


#: the largest budget or cap a recipe may ask for: far beyond any workspace, and small enough that rows × tokens
#: per row stays inside int64 (a budget of 1e18 rows overflowed into negative token counts)
MAX_COUNT = 10**12
MAX_REPEATS = 10**6


def _int(v: Any, field_: str, lo: int | None = None, allow_none: bool = False, hi: int | None = None) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        raise _bad(field_, f"expected a whole number, got {json.dumps(v)}")
    if lo is not None and v < lo:
        raise _bad(field_, f"must be at least {lo}, got {v}")
    if hi is not None and v > hi:
        raise _bad(field_, f"must be at most {hi:,}, got {v:,}")
    return v


def _num(v: Any, field_: str, lo: float | None = None, strict: bool = False) -> float:
    if not is_number(v):
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

    *doc* is a dict, JSON text (a str, or the bytes of a file), or a :class:`Recipe`. Checks that need the
    workspace (columns, groups, selection names) are in :func:`check_recipe`. Errors name the field, e.g.
    ``mixture.budget.rows``.
    """
    if isinstance(doc, Recipe):
        return doc
    try:
        return _parse_recipe(doc)
    except RecursionError:  # json.loads (or a check) meeting a value nested thousands of levels deep
        raise CurateError("The recipe nests too deeply to read (a value inside thousands of levels)",
                          "recipes are flat objects: see assets/recipes/clean.json for the shape") from None


def _parse_recipe(doc: Any) -> Recipe:
    if isinstance(doc, (str, bytes, bytearray)):
        try:  # bytes (an uploaded file): json finds UTF-8/16/32 and skips a byte-order mark, as the CLI does
            doc = json.loads(doc)
        except json.JSONDecodeError as e:
            raise CurateError(f"The recipe is not valid JSON: {e}", "check the file with a JSON validator") from None
        except UnicodeDecodeError as e:
            raise CurateError(f"The recipe is not UTF-8 text ({e.reason} at byte {e.start})",
                              "save the recipe file as UTF-8 (recipes are JSON)") from None
    if not isinstance(doc, dict):  # a JSON array or a bare value is not a recipe at all
        shown = json.dumps(doc)
        raise CurateError(f"A recipe is a JSON object ({{\"filters\": …, \"mixture\": …}}); got "
                          f"{type(doc).__name__ if not isinstance(doc, list) else 'a list'}: "
                          f"{shown[:60] + ('…' if len(shown) > 60 else '')}",
                          "see assets/recipes/clean.json for the shape")
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
    auto = None
    if isinstance(dec, bool):
        exclude = relabel = reviewed = dec
    else:
        dec = _dict(dec, "decisions", ("exclude", "relabel", "reviewed_pass_filters", "auto_relabel"))
        exclude = _bool(dec.get("exclude", True), "decisions.exclude")
        relabel = _bool(dec.get("relabel", True), "decisions.relabel")
        reviewed = _bool(dec.get("reviewed_pass_filters", True), "decisions.reviewed_pass_filters")
        auto = _parse_auto_relabel(dec.get("auto_relabel"))

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

    search = _parse_search(d.get("search"))
    mix = d.get("mixture")
    mixture = None if mix is None else _parse_mixture(mix)
    name = d.get("name")
    desc = d.get("description")
    for k, v in (("name", name), ("description", desc)):
        if v is not None and not isinstance(v, str):
            raise _bad(k, f"expected text, got {json.dumps(v)}")
    return Recipe(version, seed, filters, exclude, relabel, reviewed, exact, eps, only, except_, mixture, name, desc,
                  search, auto)


def _parse_auto_relabel(doc: Any) -> "AutoRelabel | None":
    if doc is None or doc is False:
        return None
    f = "decisions.auto_relabel"
    doc = _dict(doc, f, ("min_consensus", "min_confidence", "drop_rest", "suggestion", "min_agreement"))
    k = _int(doc.get("min_consensus", 2), f"{f}.min_consensus", lo=1)
    c = _num(doc.get("min_confidence", 0.7), f"{f}.min_confidence", lo=0.0)
    if c > 1:
        raise _bad(f"{f}.min_confidence", f"is a probability, at most 1; got {c:g}")
    how = doc.get("suggestion", "out_of_fold")
    if how not in AutoRelabel.SUGGESTIONS:
        raise _bad(f"{f}.suggestion", f"must be one of {choices(AutoRelabel.SUGGESTIONS)}; got {json.dumps(how)}")
    agree = _num(doc.get("min_agreement", 0.0), f"{f}.min_agreement", lo=0.0)
    if agree > 1:
        raise _bad(f"{f}.min_agreement", f"is a share of neighbours, at most 1; got {agree:g}")
    if agree > 0 and how != "clean_probe":
        raise _bad(f"{f}.min_agreement", "applies to the clean-probe suggestion only",
                   'add "suggestion": "clean_probe", or leave min_agreement out')
    return AutoRelabel(k, c, _bool(doc.get("drop_rest", True), f"{f}.drop_rest"), how, agree)


def _parse_search(doc: Any) -> tuple[SearchStep, ...]:
    if doc is None:
        return ()
    if not isinstance(doc, list):
        raise _bad("search", f"expected a list of searches, got {json.dumps(doc)}")
    out = []
    for i, x in enumerate(doc):
        where = f"search[{i}]"
        x = _dict(x, where, ("query", "mode", "match"))
        q, mode, match = x.get("query"), x.get("mode", "keyword"), x.get("match", "only")
        if not isinstance(q, str) or not q.strip():
            raise _bad(f"{where}.query", f"expected the words or pattern to search for, got {json.dumps(q)}")
        if mode == "semantic":
            raise _bad(f"{where}.mode", "a meaning search is a top-k of the embedding, not a rule a recipe can replay",
                       "save its rows: curate search --mode semantic --save-selection NAME, then selections.only")
        if mode not in MATCH_MODES:
            raise _bad(f"{where}.mode", f"unknown mode {json.dumps(mode)}", f"use one of {choices(MATCH_MODES)}")
        if match not in ("only", "except"):
            raise _bad(f"{where}.match", f"expected \"only\" or \"except\", got {json.dumps(match)}")
        out.append(SearchStep(q, mode, match))
    return tuple(out)


def filter_column(f: dict) -> str | None:
    """The column a filter document names (``column``, or its alias ``score``)."""
    return f.get("column", f.get("score"))


def _parse_filter(f: Any, where: str) -> Filter:
    f = _dict(f, where, ("column", "score", "op", "value", "nulls"))
    col = filter_column(f)
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
        if not (isinstance(v, list) and len(v) == 2 and all(x is None or is_number(x) or isinstance(x, str) for x in v)
                and any(x is not None for x in v)):
            raise _bad(f"{where}.value", f"`between` needs [low, high] (null for an open end), got {json.dumps(v)}")
        if all(is_number(x) for x in v) and v[0] > v[1]:
            raise _bad(f"{where}.value", f"low {v[0]} is above high {v[1]}")
    elif op in ("in", "not_in"):
        if not isinstance(v, list) or not v or any(isinstance(x, (list, dict)) or x is None for x in v):
            raise _bad(f"{where}.value", f"`{op}` needs a non-empty list of values, got {json.dumps(v)}")
        if len({type(x) if not is_number(x) else float for x in v}) > 1:
            raise _bad(f"{where}.value", f"mixes value types: {json.dumps(v)}")
    elif op in ("is", "is_not"):
        if v is not None and not isinstance(v, bool):
            raise _bad(f"{where}.value", f"`{op}` needs true, false or null, got {json.dumps(v)}")
    else:
        if not (is_number(v) or isinstance(v, (str, bool))):
            raise _bad(f"{where}.value", f"`{op}` needs a number, text or true/false, got {json.dumps(v)}")
    nulls = f.get("nulls", "keep")
    if nulls not in ("keep", "drop"):
        raise _bad(f"{where}.nulls", f"expected \"keep\" or \"drop\", got {json.dumps(nulls)}")
    return Filter(col, op, v, nulls)


def _parse_mixture(m: Any) -> Mixture:
    m = _dict(m, "mixture", MIXTURE_KEYS)
    group_by = m.get("group_by", "label")
    if group_by is not None and (not isinstance(group_by, str) or not group_by):
        raise _bad("mixture.group_by", f"expected a column name (or null: the pool as one group), got {json.dumps(group_by)}")
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
            rows = _int(budget["rows"], "mixture.budget.rows", lo=1, hi=MAX_COUNT)
        else:
            tokens = _int(budget["tokens"], "mixture.budget.tokens", lo=1, hi=MAX_COUNT)
    cap = _int(m.get("cap"), "mixture.cap", lo=1, allow_none=True, hi=MAX_COUNT)
    temperature = _num(m.get("temperature", 1.0), "mixture.temperature", lo=0.0, strict=True)
    max_repeats = _int(m.get("max_repeats", 1), "mixture.max_repeats", lo=1, allow_none=True, hi=MAX_REPEATS)
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
    origin = m.get("origin")
    if origin is not None and not isinstance(origin, dict):
        raise _bad("mixture.origin", f"expected an object (where the weights came from) or null, got {json.dumps(origin)}")
    return Mixture(group_by, weights, rows, tokens, cap, temperature, max_repeats, qcol, strength, mode, redistribute,
                   origin)


def load_recipe(src: Any, store: Store | None = None) -> Recipe:
    """A recipe from a dict / Recipe / JSON text / path to a .json file / name of a recipe saved in *store*."""
    if isinstance(src, (dict, Recipe)):
        return parse_recipe(src)
    if isinstance(src, Path) or (isinstance(src, str) and not src.lstrip().startswith("{")):
        p = Path(src).expanduser()
        if p.is_file():
            try:
                data = p.read_bytes()  # parse_recipe decodes: a byte-order mark is fine, a wrong encoding said
            except OSError as e:
                raise CurateError(f"Could not read the recipe {p}: {e.strerror or e}",
                                  "check that the file can be read") from None
            return parse_recipe(data)
        if store is not None and isinstance(src, str):
            saved = store.recipe(src)
            if saved is not None:
                return parse_recipe(saved)
        saved_names = [n for n in store.recipe_names() if n != DRAFT] if store is not None else []
        raise CurateError(f"No recipe file {p}" + (" and no saved recipe of that name" if store is not None else ""),
                          "give the path of a recipe .json file"
                          + (f" or a saved recipe: {choices(saved_names)}" if saved_names else ""))
    return parse_recipe(src)



def describe_filter(f: Filter) -> str:
    if f.op == "between":
        lo, hi = f.value
        s = (f"{f.column} ≥ {lo:g}" if hi is None else f"{f.column} ≤ {hi:g}" if lo is None
             else f"{lo:g} ≤ {f.column} ≤ {hi:g}") if all(is_number(x) or x is None for x in f.value) \
            else f"{f.column} between {f.value[0]} and {f.value[1]}"
    elif f.op in ("in", "not_in"):
        shown = ", ".join(map(str, f.value[:5])) + (" …" if len(f.value) > 5 else "")
        s = f"{f.column} {'in' if f.op == 'in' else 'not in'} {{{shown}}}"
    elif f.op in ("is", "is_not"):
        s = f"{f.column} {'is' if f.op == 'is' else 'is not'} {json.dumps(f.value)}"
    else:
        s = f"{f.column} {f.op} {f.value:g}" if is_number(f.value) else f"{f.column} {f.op} {json.dumps(f.value)}"
    return s + (" (drop missing)" if f.nulls == "drop" and f.op not in ("is", "is_not") else "")



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

