"""Hostile and broken recipes: SQL fragments where names and values go, wrong types everywhere, malformed JSON,
impossible weights and budgets, unknown groups, a recipe from a newer version. Each is refused naming the field
(exit 2, ``error:``) or, for values, matched literally — and the workspace is the same afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate_core import CurateError
from curate_core import select as S

from ..select_fixtures import build
from .helpers import ALL, SQL_COLUMN, SQL_LABEL, SQL_SOURCE, assert_refused, cli, fingerprint


@pytest.fixture(scope="module")
def sws(tmp_path_factory):
    ws = build(tmp_path_factory.mktemp("sel") / "ws")
    yield ws
    ws.close()


# ------------------------------------------------------------------------------------ in the core (moved)
@pytest.mark.parametrize("doc, field", [
    ({"filters": [{"score": "no_such_score", "op": ">", "value": 1}]}, "filters[0].column"),
    ({"filters": [{"column": "outlier_score", "op": "<=", "value": "high"}]}, "filters[0].value"),
    ({"filters": [{"column": "lang", "op": "in", "value": [1, 2]}]}, "filters[0].value"),
    ({"filters": [{"column": "outlier_score", "op": "~", "value": 1}]}, "filters[0].op"),
    ({"filters": [{"column": "outlier_score", "op": "between", "value": [0.9, 0.1]}]}, "filters[0].value"),
    ({"filters": [{"column": "is_label_issue", "op": "<", "value": True}]}, "filters[0].op"),
    ({"filters": [{"column": "outlier_score", "op": "is", "value": True}]}, "filters[0].value"),
    ({"mixture": {"group_by": "label", "weights": {"alpha": 0, "beta": 0}}}, "mixture.weights"),
    ({"mixture": {"group_by": "label", "budget": {"rows": -5}}}, "mixture.budget.rows"),
    ({"mixture": {"group_by": "label", "budget": {"rows": 10.5}}}, "mixture.budget.rows"),
    ({"mixture": {"group_by": "label", "budget": {"rows": 10, "tokens": 5}}}, "mixture.budget"),
    ({"mixture": {"group_by": "label", "weights": {"alpha": 1, "nope": 2}}}, 'mixture.weights["nope"]'),
    ({"mixture": {"group_by": "no_col"}}, "mixture.group_by"),
    ({"mixture": {"group_by": "label", "temperature": 0}}, "mixture.temperature"),
    ({"mixture": {"group_by": "label", "max_repeats": 0}}, "mixture.max_repeats"),
    ({"mixture": {"group_by": "label", "quality": {"column": "lang", "strength": 1}}}, "mixture.quality.column"),
    ({"mixture": {"group_by": "label", "colour": "red"}}, "mixture.colour"),
    ({"dedup": {"semantic_eps": 2}}, "dedup.semantic_eps"),
    ({"selections": {"only": ["missing"]}}, "selections.only[0]"),
    ({"seed": -1}, "seed"),
    ({"seed": "x"}, "seed"),
    ({"version": 9}, "version"),
    ({"filter": []}, "filter"),
])
def test_bad_recipes_name_the_field(sws, doc, field):
    before = fingerprint(sws)
    with pytest.raises(CurateError) as e:
        S.live_counts(sws, doc)
    assert f"`{field}`" in e.value.message, e.value.message
    assert fingerprint(sws) == before


def test_bad_json_text_is_a_curate_error(sws):
    before = fingerprint(sws)
    with pytest.raises(CurateError, match="not valid JSON"):
        S.parse_recipe("{nope")
    assert fingerprint(sws) == before


# ------------------------------------------------------------------------------------------ through the CLI
def _recipe(tmp_path: Path, doc, name: str = "r.json") -> Path:
    p = tmp_path / name
    if isinstance(doc, bytes):
        p.write_bytes(doc)
    else:
        p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return p


def _refused(ws: Path, recipe: Path, *words: str, verb: str = "select") -> None:
    """`select` (or `export`) of *recipe* is refused saying *words*, and nothing in the workspace changed."""
    before = fingerprint(ws)
    extra = ["--out", ws.parent / "out"] if verb == "export" else []
    assert_refused(cli(verb, "--workspace", ws, "--recipe", recipe, *extra), *words)
    assert fingerprint(ws) == before
    assert not (ws.parent / "out").exists()


SQL_NAMES = {  # an SQL fragment where the recipe names a column, an operator, a group or a selection
    "filter column": ({"filters": [{"column": 'label"; DROP TABLE samples; --', "op": "==", "value": 1}]},
                      "filters[0].column", "unknown column"),
    "filter column, parenthesised": ({"filters": [{"column": "1=1) OR (1", "op": "==", "value": 1}]},
                                     "filters[0].column", "unknown column"),
    "operator": ({"filters": [{"column": "label", "op": "== 1 OR 1", "value": 1}]}, "filters[0].op",
                 "unknown operator"),
    "group by": ({"mixture": {"group_by": "label); DROP TABLE samples; --"}}, "mixture.group_by", "unknown column"),
    "quality column": ({"mixture": {"group_by": "label", "quality": {"column": "label_quality; DROP TABLE samples",
                                                                      "strength": 1}}},
                       "mixture.quality.column", "unknown column"),
    "weights group": ({"mixture": {"group_by": "label", "weights": {"billing'--": 1}}}, 'mixture.weights["billing\'--"]',
                      "no group"),
    "selection name": ({"selections": {"only": ["x'; DROP TABLE selections; --"]}}, "selections.only[0]",
                       "no saved selection"),
    "except selection": ({"selections": {"except": ["'; DELETE FROM decisions; --"]}}, "selections.except[0]",
                         "no saved selection"),
    "regex search": ({"search": [{"query": "'); DROP TABLE samples; --", "mode": "regex"}]}, "search[0].query",
                     "Invalid regular expression"),
}


@pytest.mark.parametrize("case", SQL_NAMES, ids=list(SQL_NAMES))
def test_sql_where_a_recipe_names_something_is_refused_by_name(built, tmp_path, case):
    doc, field, what = SQL_NAMES[case]
    _refused(built, _recipe(tmp_path, doc), field, what)


WRONG_TYPES = {
    "seed float": ({"seed": 1.5}, "`seed`: expected a whole number"),
    "seed text": ({"seed": "7"}, "`seed`: expected a whole number"),
    "version text": ({"version": "1"}, "`version`: expected a whole number"),
    "filters text": ({"filters": "label"}, "`filters`: expected a list"),
    "filters object": ({"filters": {"column": "label"}}, "`filters`: expected a list"),
    "filter number": ({"filters": [5]}, "`filters[0]`: expected an object"),
    "value list for <": ({"filters": [{"column": "label_quality", "op": "<", "value": [1]}]}, "`filters[0].value`"),
    "value object": ({"filters": [{"column": "label_quality", "op": "<", "value": {"a": 1}}]}, "`filters[0].value`"),
    "text for a number column": ({"filters": [{"column": "label_quality", "op": "<", "value": "0.5"}]},
                                 "must be a number"),
    "number for a text column": ({"filters": [{"column": "label", "op": "<", "value": 5}]}, "must be text"),
    "is true on text": ({"filters": [{"column": "label", "op": "is", "value": True}]}, "needs a true/false column"),
    "nulls word": ({"filters": [{"column": "label", "op": "==", "value": "a", "nulls": "maybe"}]},
                   "`filters[0].nulls`"),
    "dedup text": ({"dedup": "yes"}, "`dedup`: expected an object"),
    "dedup.exact text": ({"dedup": {"exact": "true"}}, "`dedup.exact`: expected true or false"),
    "decisions number": ({"decisions": 1}, "`decisions`: expected an object"),
    "auto_relabel text": ({"decisions": {"auto_relabel": "yes"}}, "`decisions.auto_relabel`: expected an object"),
    "mixture list": ({"mixture": [1]}, "`mixture`: expected an object"),
    "mixture text": ({"mixture": "label"}, "`mixture`: expected an object"),
    "group_by number": ({"mixture": {"group_by": 5}}, "`mixture.group_by`: expected a column name"),
    "budget text": ({"mixture": {"group_by": "label", "budget": "100"}}, "`mixture.budget`: expected an object"),
    "budget true": ({"mixture": {"group_by": "label", "budget": {"rows": True}}}, "`mixture.budget.rows`"),
    "weight text": ({"mixture": {"group_by": "label", "weights": {"billing": "1"}}}, 'mixture.weights["billing"]'),
    "weight NaN": ('{"mixture": {"group_by": "label", "weights": {"billing": NaN}}}', 'mixture.weights["billing"]'),
    "temperature Infinity": ('{"mixture": {"group_by": "label", "temperature": Infinity}}', "mixture.temperature"),
    "mode word": ({"mixture": {"group_by": "label", "mode": "drop"}}, "`mixture.mode`"),
    "quality text column": ({"mixture": {"group_by": "label", "quality": {"column": "label", "strength": 1}}},
                            "`mixture.quality.column`"),
    "selection number": ({"selections": {"only": [5]}}, "`selections.only`"),
    "empty selection name": ({"selections": {"only": [""]}}, "`selections.only`"),
    "name number": ({"name": 5}, "`name`: expected text"),
    "search text": ({"search": "refund"}, "`search`: expected a list"),
    "search mode": ({"search": [{"query": "x", "mode": "semantic"}]}, "`search[0].mode`"),
    "too many filters": ({"filters": [{"column": "label", "op": "==", "value": "a"}] * 49}, "at most 48 filters"),
}


@pytest.mark.parametrize("case", WRONG_TYPES, ids=list(WRONG_TYPES))
def test_a_wrong_type_anywhere_is_refused_naming_the_field(built, tmp_path, case):
    doc, words = WRONG_TYPES[case]
    _refused(built, _recipe(tmp_path, doc), words)


MALFORMED = {
    "truncated": ('{"filters": [', "not valid JSON"),
    "trailing comma": ('{"seed": 1,}', "not valid JSON"),
    "single quotes": ("{'seed': 1}", "not valid JSON"),
    "empty file": ("", "not valid JSON"),
    "binary": (bytes(range(256)), "not valid JSON"),  # json reads it as UTF-16: no JSON in it either
    "latin-1": ('{"name": "café"}'.encode("latin-1"), "not UTF-8"),
    "two documents": ('{"seed": 1}{"seed": 2}', "not valid JSON"),
    "a list": ('[{"filters": []}]', "A recipe is a JSON object"),
    "a string": ('"clean"', "A recipe is a JSON object"),
    "nested 100,000 deep": ('{"a":' * 100_000 + "1" + "}" * 100_000, "nests too deeply"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_recipe_files_are_refused_and_write_nothing(built, tmp_path, case):
    doc, words = MALFORMED[case]
    _refused(built, _recipe(tmp_path, doc), words, verb="export")


@pytest.mark.parametrize("mixture, words", [
    ({"weights": {"billing": 0, "travel": 0, "weather": 0}}, "all weights are zero"),
    ({"weights": {"billing": -1, "travel": 2}}, "must be at least 0"),
    ({"weights": {"billing": 1, "no_such_group": 1}}, 'no group "no_such_group" in column `label`'),
    ({"budget": {"rows": -1}}, "`mixture.budget.rows`: must be at least 1"),
    ({"budget": {"rows": 0}}, "`mixture.budget.rows`: must be at least 1"),
    ({"budget": {"tokens": -10}}, "`mixture.budget.tokens`: must be at least 1"),
    ({"budget": {"rows": 10**30}}, "`mixture.budget.rows`: must be at most"),
    ({"budget": {"rows": 1e300}}, "`mixture.budget.rows`: must be at most"),
    ({"cap": -3}, "`mixture.cap`: must be at least 1"),
    ({"max_repeats": 0}, "`mixture.max_repeats`: must be at least 1"),
    ({"temperature": -1}, "`mixture.temperature`: must be greater than 0"),
])
def test_impossible_weights_budgets_and_unknown_groups_are_refused(built, tmp_path, mixture, words):
    _refused(built, _recipe(tmp_path, {"mixture": {"group_by": "label", **mixture}}), words)


@pytest.mark.parametrize("doc, words", [({"version": 2}, ("reads recipes up to version 1, got 2", "update curate")),
                                        ({"version": 0}, ("`version`: must be at least 1",))])
def test_a_recipe_from_a_newer_version_says_to_update(built, tmp_path, doc, words):
    _refused(built, _recipe(tmp_path, doc), *words)


@pytest.mark.parametrize("mixture, field", [({"budget": {"rows": 10**18}, "max_repeats": None}, "mixture.budget.rows"),
                                            ({"budget": {"tokens": 10**13}}, "mixture.budget.tokens"),
                                            ({"cap": 10**15}, "mixture.cap"),
                                            ({"budget": {"rows": 10}, "max_repeats": 10**9}, "mixture.max_repeats")])
def test_huge_budgets_are_refused_by_name_not_overflowed(built, tmp_path, mixture, field):
    """Issue 17: a budget of 1e18 rows with unlimited repeats overflowed int64 (tokens −6.4e18 in the manifest)."""
    _refused(built, _recipe(tmp_path, {"mixture": {"group_by": "label", **mixture}}), field, "must be at most")


def test_a_recipe_with_a_byte_order_mark_is_read(built, tmp_path):
    """Saved by a Windows editor: the BOM is not an error (it was: "Unexpected UTF-8 BOM")."""
    bom = _recipe(tmp_path, "\ufeff".encode() + Path(ALL).read_bytes())
    r = cli("select", "--workspace", built, "--recipe", bom)
    assert r.rc == 0 and "selected" in r.out, r.err


def test_an_empty_selection_name_is_refused(built):
    """`select --save-selection ''` was ignored (exit 0, nothing saved)."""
    before = fingerprint(built)
    assert_refused(cli("select", "--workspace", built, "--recipe", ALL, "--save-selection", ""), "needs a name")
    assert fingerprint(built) == before


# ------------------------------------------------------------------------------- values: matched literally
def _count(ws: Path, tmp_path: Path, doc: dict) -> int:
    r = cli("select", "--workspace", ws, "--recipe", _recipe(tmp_path, doc, "count.json"), "--json")
    assert r.rc == 0, r.err
    return json.loads(r.out)["rows_selected"]


def test_sql_in_values_and_search_words_is_matched_literally(built, tmp_path):
    """A value is a `?` parameter: an SQL fragment selects the rows that hold exactly that text, no more, and
    LIKE wildcards in a search are plain characters."""
    before = fingerprint(built)
    assert _count(built, tmp_path, {"filters": [{"column": "label", "op": "==", "value": SQL_LABEL}]}) == 12
    assert _count(built, tmp_path, {"filters": [{"column": "label", "op": "!=", "value": SQL_LABEL}]}) == 288
    assert _count(built, tmp_path, {"filters": [{"column": "source", "op": "in", "value": [SQL_SOURCE]}]}) == 150
    assert _count(built, tmp_path, {"filters": [{"column": "label", "op": "==",
                                                 "value": "billing' OR '1'='1"}]}) == 0
    assert _count(built, tmp_path, {"filters": [{"column": SQL_COLUMN, "op": ">=", "value": 5}]}) == \
        sum(1 for i in range(300) if i % 7 >= 5)  # a column whose name is SQL is just a column
    assert _count(built, tmp_path, {"search": [{"query": "100%"}]}) == 6  # not every row: % is no wildcard
    assert _count(built, tmp_path, {"search": [{"query": "sure_thing"}]}) == 6
    assert _count(built, tmp_path, {"search": [{"query": "%' OR 1=1 --"}]}) == 0
    assert _count(built, tmp_path, {"mixture": {"group_by": "source", "weights": {SQL_SOURCE: 1, "web": 0}}}) == 150
    assert fingerprint(built) == before


def test_a_selection_named_with_sql_is_stored_and_used_as_that_name(built, tmp_path):
    name = "x'); DROP TABLE samples; --"
    before = fingerprint(built)
    doc = {"filters": [{"column": "label", "op": "==", "value": SQL_LABEL}]}
    r = cli("select", "--workspace", built, "--recipe", _recipe(tmp_path, doc), "--save-selection", name)
    assert r.rc == 0 and "saved selection" in r.out, r.err
    after = fingerprint(built)
    assert {k for k in after if after[k] != before.get(k)} == {"selections"}  # nothing else moved
    assert _count(built, tmp_path, {"selections": {"only": [name]}}) == 12
    assert _count(built, tmp_path, {"selections": {"except": [name]}}) == 288


# ------------------------------------------------------------------------- found by this suite, and fixed
def _ids(ws: Path, tmp_path: Path, doc: dict) -> list[str]:
    out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
    r = cli("export", "--workspace", ws, "--recipe", _recipe(tmp_path, doc, "ids.json"), "--out", out,
            "--format", "jsonl")
    assert r.rc == 0, r.err
    return [json.loads(x)["id"] for x in (out / "data.jsonl").read_text().splitlines()]


def test_weights_near_the_float_limit_mix_like_the_same_weights_small(built, tmp_path):
    """Found here: weights of 1e308 summed to inf and every share became NaN — the mixture selected 0 rows with
    exit 0. Weights are relative: {1e308, 1e308} is {1, 1}."""
    mix = {"group_by": "label", "budget": {"rows": 60}}
    small = _ids(built, tmp_path, {"mixture": {**mix, "weights": {"billing": 1, "travel": 1}}})
    huge = _ids(built, tmp_path, {"mixture": {**mix, "weights": {"billing": 1e308, "travel": 1e308}}})
    assert len(small) == 60 and huge == small
    tiny = _ids(built, tmp_path, {"mixture": {**mix, "weights": {"billing": 5e-324, "travel": 5e-324}}})
    assert tiny == small


def test_a_temperature_near_zero_gives_the_largest_group_not_nothing(built, tmp_path):
    """Found here: log(size) / 1e-308 was inf for every group, every share NaN, and the selection empty (exit 0).
    T → 0 gives every row to the largest group(s)."""
    mix = {"group_by": "source", "budget": {"rows": 40}}
    cold = _ids(built, tmp_path, {"mixture": {**mix, "temperature": 1e-308}})
    cool = _ids(built, tmp_path, {"mixture": {**mix, "temperature": 1e-3}})
    assert len(cold) == 40 and cold == cool  # the two sources are the same size: half each
    labels = _ids(built, tmp_path, {"mixture": {"group_by": "label", "temperature": 1e-308, "budget": {"rows": 30}}})
    assert len(labels) == 30 and not {f"r{i:04d}" for i in range(0, 300, 25)} & set(labels)  # not the 12-row label
    pool = _ids(built, tmp_path, {"mixture": {"group_by": None, "temperature": 1e-308, "budget": {"rows": 10}}})
    assert len(pool) == 10
