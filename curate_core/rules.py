"""Row rules, written once, as SQL: when a row fails a filter, when SemDeDup removes it.

The recipe compiler puts these expressions into its query; pages and score summaries that count the same thing
over arrays they already hold evaluate the very same SQL over those arrays (DuckDB on in-memory Arrow, see
:func:`evaluate`) — so a count on a page can never disagree with what the recipe selects, NULLs included.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import duckdb
import numpy as np
import pyarrow as pa

from .errors import CurateError
from .recipes.model import is_number
from .store import quote_ident

_SQL_OP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "<>"}


class Params:
    """Named ``$pN`` parameters, so SQL fragments can be composed in any order."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def keyword_terms(query: str) -> list[str]:
    """The terms of a keyword search: whitespace-separated, lower-cased, each once, in order."""
    return list(dict.fromkeys(t.lower() for t in query.split()))


def match_sql(query: str, mode: str, p: Params, text: str = "text") -> str:
    """SQL that is TRUE when *text* matches the search: ``keyword`` = every whitespace-separated term occurs,
    any case; ``regex`` = RE2 ``regexp_matches``. The one definition for ``curate search`` and recipe steps."""
    if mode == "keyword":
        return " AND ".join(f"contains(lower({text}), {p(t)})" for t in keyword_terms(query)) or "FALSE"
    if mode == "regex":
        return f"regexp_matches({text}, {p(query)})"
    raise ValueError(f"unknown match mode {mode!r}")


def check_regex(pattern: str, where: str = "") -> None:
    """A CurateError saying what is wrong with *pattern* (DuckDB's RE2 decides), or nothing."""
    try:
        _cursor().execute("SELECT regexp_matches('', $p)", {"p": pattern}).fetchall()
    except duckdb.Error as e:  # InvalidInputException with RE2's reason
        reason = str(e).split("Error:", 1)[-1].strip().splitlines()[0]
        raise CurateError(f"{where}Invalid regular expression {pattern!r}: {reason}",
                          "RE2 syntax (no look-around or back-references); escape ( [ { . * + ? with \\") from None


def _filter_cond(column: str, op: str, value: Any, p: Params, ref: str | None) -> tuple[str, str, bool]:
    """(column SQL, condition a kept row meets, whether the condition also decides NULLs — ``is None`` tests)."""
    c = ref or f"s.{quote_ident(column)}"
    if op in ("is", "is_not"):
        if value is None:
            return c, (f"{c} IS NULL" if op == "is" else f"{c} IS NOT NULL"), True
        cond = f"{c} = {p(value)}" if op == "is" else f"{c} <> {p(value)}"
    elif op == "between":
        lo, hi = value
        parts = ([f"{c} >= {p(lo)}"] if lo is not None else []) + ([f"{c} <= {p(hi)}"] if hi is not None else [])
        cond = " AND ".join(parts)
    elif op in ("in", "not_in"):
        vals = [float(v) if is_number(v) else v for v in value]
        lst = f"list_contains({p(vals)}, {c})"
        cond = lst if op == "in" else f"NOT {lst}"
    else:
        cond = f"{c} {_SQL_OP[op]} {p(value)}"
    return c, cond, False


def filter_fails(column: str, op: str, value: Any, nulls: str, p: Params, ref: str | None = None) -> str:
    """SQL that is TRUE when a row *fails* the filter ``column op value`` (never NULL).

    A NULL (a value the score could not compute) passes with ``nulls="keep"`` and fails with ``"drop"``;
    ``between`` is inclusive with ``None`` for an open end; ``in``/``not_in`` compare numbers as doubles.
    *ref* is the SQL the column is read as (default: ``s."column"``).
    """
    c, cond, total = _filter_cond(column, op, value, p, ref)
    if total:
        return f"NOT ({cond})"
    null_fails = "TRUE" if nulls == "drop" else "FALSE"
    return f"CASE WHEN {c} IS NULL THEN {null_fails} WHEN {cond} THEN FALSE ELSE TRUE END"


def filter_passes(column: str, op: str, value: Any, nulls: str, p: Params, ref: str | None = None) -> str:
    """SQL that is TRUE exactly when :func:`filter_fails` is FALSE, and FALSE or NULL otherwise: for ``WHERE``
    and ``CASE WHEN``, which treat NULL as not true. Written as plain comparisons so DuckDB pushes them into the
    scan of the column's table (the CASE of :func:`filter_fails` is evaluated row by row: a 5-filter export
    scanned the wide table in 50 ms instead of 30)."""
    c, cond, total = _filter_cond(column, op, value, p, ref)
    if total:
        return f"({cond})"
    # a value that is not NULL passes when the condition is TRUE (a NULL condition fails, as in filter_fails)
    return f"({c} IS NULL OR {cond})" if nulls != "drop" else f"({c} IS NOT NULL AND {cond})"


def semdedup_removes(eps: float, p: Params, ref: str = "s.semdedup_sim") -> str:
    """SQL that is TRUE when SemDeDup at *eps* removes the row: its largest cosine similarity to an earlier kept
    row of its cluster is above ``1 − eps`` (Abbas et al. 2023). NULL (no similarity) is kept."""
    return f"coalesce({ref} > {p(1.0 - float(eps))}, FALSE)"


_con: duckdb.DuckDBPyConnection | None = None
_con_lock = threading.Lock()


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of one small in-memory database for the process (a cursor per call: thread-safe)."""
    global _con
    with _con_lock:
        if _con is None:
            _con = duckdb.connect()
        return _con.cursor()


def query(columns: Mapping[str, Any], sql: str, params: dict[str, Any] | None = None) -> pa.Table:
    """Run *sql* over the in-memory *columns* (arrays of equal length; NaN reads as NULL), visible as
    ``_rows s``; *sql* is the rest of a ``SELECT`` (e.g. ``count(*) FROM _rows s WHERE …``)."""
    table = pa.table({k: (pa.array(np.asarray(v), from_pandas=True) if not isinstance(v, (pa.Array, pa.ChunkedArray))
                          else v) for k, v in columns.items()})
    cur = _cursor()
    try:
        cur.register("_rows", table)
        return cur.sql(f"SELECT {sql}", params=params or None).to_arrow_table()
    finally:
        cur.close()


def evaluate(columns: Mapping[str, Any], expressions: list[str], params: dict[str, Any]) -> list[np.ndarray]:
    """Each SQL *expression* (over ``s."<column>"``) evaluated on every row of the given in-memory *columns*:
    one boolean array per expression, in row order (an explicit row number orders them: DuckDB may plan an
    ``in`` list as a join, which does not keep row order)."""
    n = len(next(iter(columns.values()))) if columns else 0
    sel = ", ".join(f"({e}) AS e{i}" for i, e in enumerate(expressions))
    out = query({**columns, "_i": np.arange(n, dtype=np.int64)}, f"{sel} FROM _rows s ORDER BY s._i", params)
    return [out.column(i).to_numpy(zero_copy_only=False).astype(bool) for i in range(len(expressions))]


def count(columns: Mapping[str, Any], expressions: list[str], params: dict[str, Any]) -> list[int]:
    """How many rows of the in-memory *columns* each SQL *expression* is TRUE for (one scan for all)."""
    if not expressions:
        return []
    out = query(columns, ", ".join(f"count(*) FILTER (WHERE {e}) AS e{i}" for i, e in enumerate(expressions))
                + " FROM _rows s", params)
    return [int(out.column(i)[0].as_py()) for i in range(len(expressions))]
