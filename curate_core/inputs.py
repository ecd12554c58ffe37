"""How DuckDB reads an input file and appends it to ``samples``: the SQL of ingest (the policy is in ingest.py).

Every function runs on the Store's connection (a cursor of the caller's transaction where it takes ``cur``), with
identifiers quoted by :func:`~curate_core.store.quote_ident` and values as ``?`` parameters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from .store import TEXT_TYPE, Store, now, quote_ident, samples_columns


@dataclass
class FileReader:
    """How DuckDB should read one input: a table function call with its (quoted) arguments."""

    sql: str  # e.g. "read_csv(?, all_varchar=true, ...)"
    params: list[Any]
    arrow: Any = None  # a registered Python object (pandas/arrow) instead of a file
    #: the same input read with a higher line limit, for when this reader meets a record longer than its own
    long_lines: "FileReader | None" = None

    def with_leading(self, *values: Any) -> "FileReader":
        """This reader (and its long-line twin) with *values* before its own parameters (for a query whose own
        ``?`` come before the table function's)."""
        return FileReader(self.sql, [*values, *self.params], self.arrow,
                          self.long_lines.with_leading(*values) if self.long_lines is not None else None)


def _bind(cur, reader: FileReader) -> str:
    if reader.arrow is not None:
        cur.register("_curate_src", reader.arrow)
    return reader.sql


# ------------------------------------------------------------------------------- reading files
#: CSV records up to this size are read by all of DuckDB's threads: DuckDB's own default, so the rows fall into
#: the same row groups as a bare ``read_csv``'s. DuckDB reads a file on one thread once its max_line_size passes
#: ~16 MiB (measured, DuckDB 2.0): at 256 MiB for every file, the whole ingest — parsing, token counts,
#: compression — ran on one core. (8 MiB read in parallel too, but cut a 1M-row file into partial row groups
#: that the next checkpoint merged again: +0.3–0.6 s at close.)
CSV_LINE_PARALLEL = 2 << 20
#: the longest CSV record ingest accepts; a file with a record above CSV_LINE_PARALLEL is read again with it
CSV_LINE_MAX = 256 << 20


def csv_reader(path: Path, delim: str, max_line: int = CSV_LINE_PARALLEL) -> FileReader:
    """A CSV/TSV reader (every column as text) whose ``long_lines`` twin takes records up to CSV_LINE_MAX."""
    return FileReader(
        "read_csv(?, all_varchar = true, header = true, delim = ?, quote = '\"', escape = '\"', "
        "max_line_size = ?)",
        [str(path), delim, max_line],
        long_lines=csv_reader(path, delim, CSV_LINE_MAX) if max_line < CSV_LINE_MAX else None,
    )


def line_too_long(e: BaseException) -> bool:
    """Whether DuckDB refused a CSV record as longer than the reader's max_line_size."""
    return "Maximum line size of" in str(e)


def retrying(reader: FileReader, read: Callable[[FileReader], Any]) -> Any:
    """``read(reader)``, once more with ``reader.long_lines`` if the input holds a record too long for it."""
    try:
        return read(reader)
    except Exception as e:
        if reader.long_lines is None or not line_too_long(e):
            raise
    return read(reader.long_lines)

def jsonl_reader(path: Path, array: bool = False) -> FileReader:
    fmt = "array" if array else "newline_delimited"
    return FileReader(f"read_json(?, format = '{fmt}', maximum_object_size = 268435456, sample_size = -1)",
                      [str(path)])

def parquet_reader(path: Path) -> FileReader:
    return FileReader("read_parquet(?)", [str(path)])

def object_reader(obj: Any) -> FileReader:
    return FileReader("_curate_src", [], arrow=obj)

def memory_limit(store: Store) -> tuple[str, int]:
    """DuckDB's memory limit on the Store's connection, as DuckDB writes it ("1.8 GiB") and in bytes."""
    with store.cursor() as cur:
        text = str(cur.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]i?B|bytes)?\s*", text)
    if not m:  # an unexpected spelling: no limit of our own
        return text, 1 << 62
    scale = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50,
             "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}.get(m.group(2) or "", 1)
    return text, int(float(m.group(1)) * scale)


def describe(store: Store, reader: FileReader) -> tuple[FileReader, list[tuple[str, str]]]:
    """(column, DuckDB type) of an input, without reading it all, and the reader that could read its start
    (the long-line twin when a record there is too long for *reader*)."""
    def run(r: FileReader) -> tuple[FileReader, list[tuple[str, str]]]:
        with store.cursor() as cur:
            src = _bind(cur, r)
            rows = cur.execute(f"DESCRIBE SELECT * FROM {src}", r.params).fetchall()
        return r, [(row[0], row[1]) for row in rows]

    return retrying(reader, run)

def preview(store: Store, reader: FileReader, n: int = 20) -> pd.DataFrame:
    def run(r: FileReader) -> pd.DataFrame:
        with store.cursor() as cur:
            src = _bind(cur, r)
            return cur.execute(f"SELECT * FROM {src} LIMIT {int(n)}", r.params).df()

    return retrying(reader, run)

# ------------------------------------------------------------------------------------ ingest
#: ``n_tokens`` of a row :func:`insert_staged` found empty — a text with no non-whitespace character: such rows are
#: all dropped (or refused) before the ingest commits, so the marker is never stored, and the checks find them
#: without reading the texts again (a NULL text gets a NULL count)
EMPTY_MARK = -1
#: the rows added from ``row_id >= ?`` on whose text is empty
_EMPTY_ROW = f"(n_tokens IS NULL OR n_tokens = {EMPTY_MARK})"
#: words separated by spaces, tabs and line breaks, from the text and its split at spaces (``_w``, computed once).
#: The split's length is exact unless the text has a tab, a line break or an empty piece (a leading, trailing or
#: double space); those rows and the ones with a form feed (the only whitespace of the emptiness test that does
#: not separate words) take the slow path, which also marks empty texts
_TOKENS = ("CASE WHEN contains(text, chr(10)) OR contains(text, chr(9)) OR contains(text, chr(13)) "
           "OR contains(text, chr(12)) OR list_contains(_w, '') "
           f"THEN (CASE WHEN NOT regexp_matches(text, '\\S') THEN {EMPTY_MARK} "
           "ELSE len(list_filter(string_split(replace(replace(replace(text, chr(10), ' '), chr(9), ' '), "
           "chr(13), ' '), ' '), lambda w: w <> '')) END) ELSE len(_w) END")

_STAGE = "_curate_ingest"  # the temporary table stage_input reads a file into

def next_row_id(cur) -> int:
    return int(cur.execute("SELECT coalesce(max(row_id), -1) + 1 FROM samples").fetchall()[0][0])

#: more columns to add or retype than this: rebuild ``samples`` once instead of one ALTER each (every ALTER keeps a
#: copy of the table until the ingest commits: 600 columns took twice the memory of the file's rows)
RETYPE_REBUILD = 8


def prepare_columns(store: Store, cur, wanted: dict[str, str],
                    fits: Callable[[dict[str, str]], set[str]] | None = None) -> dict[str, str]:
    """Make sure ``samples`` has each extra column; returns the type each will be inserted as.

    A new column gets the input's type. For columns an earlier file created with another type, ``fits({col:
    type})`` names those whose every new value casts to that type (CSV text holding numbers; one scan for
    all); the others become text so nothing is lost. Up to RETYPE_REBUILD changes are ALTERs; more rebuild
    ``samples`` once (each ALTER makes a version of the whole table that lives until the commit: 2,000 new
    columns took 1.2 GB and 2.5 s before a single row was read).
    """
    existing = dict(store.sample_columns(cur))
    typed = {c: existing[c] for c, t in wanted.items() if c in existing and existing[c] not in (t, "VARCHAR")}
    fit = fits(typed) if typed and fits is not None else set()
    out, add, to_text = {}, {}, []
    for col, typ in wanted.items():
        if col not in existing:
            add[col] = out[col] = typ
        elif existing[col] == typ or col in fit:
            out[col] = existing[col]
        else:
            if existing[col] != "VARCHAR":
                to_text.append(col)
            out[col] = "VARCHAR"
    if len(add) + len(to_text) > RETYPE_REBUILD:
        rebuild_samples(cur, to_text, add)
        return out
    for col in to_text:
        cur.execute(f"ALTER TABLE samples ALTER {quote_ident(col)} TYPE VARCHAR")
    for col, typ in add.items():
        cur.execute(f"ALTER TABLE samples ADD COLUMN {quote_ident(col)} {typ}")
    return out


def rebuild_samples(cur, to_text: Sequence[str], add: dict[str, str] | None = None) -> None:
    """Rewrite ``samples`` in one pass: the columns *to_text* become VARCHAR and the columns of *add*
    (name → type) are appended, NULL for every row. Linear in rows × columns, where an ALTER per column is
    quadratic in columns.

    The rows keep their physical order (insertion order is preserved), which ingest keeps in row_id order; no
    reader depends on it (they all order by row_id). An ``ORDER BY row_id`` here sorted whole rows: 10,000
    columns × 100 rows took 9.6 s instead of 1.5 s. The new table is declared, not made by the query, so
    each column keeps its storage (the texts' is TEXT_TYPE).
    """
    old = samples_columns(cur)
    types = {c: "VARCHAR" if c in to_text else t for c, t in old}
    types.update(add or {})
    types["text"] = TEXT_TYPE
    exprs = [f"CAST({quote_ident(c)} AS VARCHAR)" if c in to_text else quote_ident(c) for c, _ in old]
    exprs += [f"CAST(NULL AS {t})" for t in (add or {}).values()]
    cur.execute("CREATE TABLE _samples_rebuilt (" + ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items()) + ")")
    cur.execute(f"INSERT INTO _samples_rebuilt SELECT {', '.join(exprs)} FROM samples")
    cur.execute("DROP TABLE samples")
    cur.execute("ALTER TABLE _samples_rebuilt RENAME TO samples")

def _cast(expr: str, typ: str) -> str:
    """A cast that turns float NaN into NULL (a missing value, not a number bigger than every other)."""
    if typ in ("DOUBLE", "FLOAT", "REAL"):
        return f"CASE WHEN isnan(TRY_CAST({expr} AS DOUBLE)) THEN NULL ELSE CAST({expr} AS {typ}) END"
    return f"CAST({expr} AS {typ})"

def uncastable(qc: str, typ: str) -> str:
    """SQL: the text value *qc* does not cast to *typ* (integers by pattern: TRY_CAST('0.5' AS BIGINT)
    rounds instead of failing)."""
    if typ in ("BIGINT", "INTEGER"):
        return f"NOT regexp_full_match(trim({qc}), '[+-]?[0-9]{{1,18}}')"
    return f"TRY_CAST({qc} AS {typ}) IS NULL"

#: up to this many staged text columns are typed (or checked against an earlier file's types) by early-stopping
#: searches for a value that does not fit; more are counted in one scan
EARLY_STOP_COLUMNS = 16
_TYPES = ("BIGINT", "DOUBLE", "BOOLEAN")  # narrowest first; VARCHAR when none fits


def _any_value(cur, col: str, misfitting: str | None = None) -> bool:
    """Whether *col* has a staged non-null value (one that does not cast to the type *misfitting*), by a search
    that stops at the first such row (``LIMIT 1``)."""
    qc = quote_ident(col)
    where = f"{qc} IS NOT NULL" + (f" AND {uncastable(qc, misfitting)}" if misfitting else "")
    return bool(cur.execute(f"SELECT 1 FROM {_STAGE} WHERE {where} LIMIT 1").fetchall())


def staged_fits(cur, checks: dict[str, str]) -> set[str]:
    """The staged text columns (of *checks*: column → type) whose non-empty values all cast to their type
    (integers checked by pattern): a few columns by :func:`_any_value` searches, more in one scan of filtered
    counts."""
    if len(checks) <= EARLY_STOP_COLUMNS:
        return {c for c, t in checks.items() if not _any_value(cur, c, misfitting=t)}
    counts = [f"count(*) FILTER (WHERE {quote_ident(c)} IS NOT NULL AND {uncastable(quote_ident(c), t)})"
              for c, t in checks.items()]
    row = _aggregates(cur, counts, _STAGE, [])
    return {c for c, n in zip(checks, row) if n == 0}

def stage_input(cur, reader: FileReader, select: Sequence[tuple[str, str]]) -> int:
    """Read every row of an input, mapped by *select* ((SQL expression, name) pairs), into a temporary table
    :func:`insert_staged` appends to ``samples``; returns the rows read.

    The file is read in parallel and kept in file order (DuckDB preserves insertion order, so the table's rowids
    count the file rows). Staged, the CSV columns' types are inferred and checked in memory before ``samples``
    changes, and the rows are numbered while they are appended: an UPDATE of ``row_id`` after the append made the
    commit and the next checkpoint rewrite the column (+0.4 s of 1.8 s at 1M rows), and ``row_number() OVER ()``
    runs the read, the token counts and the compression on one thread.
    """
    cols = ", ".join(f"{expr} AS {quote_ident(alias)}" for expr, alias in select)
    src = _bind(cur, reader)
    cur.execute(f"CREATE OR REPLACE TEMP TABLE {_STAGE} AS SELECT {cols} FROM {src}", list(reader.params))
    return int(cur.execute(f"SELECT count(*) FROM {_STAGE}").fetchall()[0][0])

def insert_staged(cur, first: int, extra_types: dict[str, str], id_prefix: str) -> None:
    """Append the staged rows to ``samples`` as ``row_id = first + file row − 1``, with token counts and the
    extra columns cast to *extra_types*, then drop the staging table.

    Rows without an id — every row when the input has no id column — get ``<id_prefix>-<file row, zero padded
    to 6>`` (the file's source name, even when a column gives each row its source: ids must not depend on data).
    Empty texts are inserted too, with ``n_tokens`` = EMPTY_MARK; :func:`drop_empty` removes them after the
    checks, so their file rows can be reported.
    """
    casts = [_cast(quote_ident(c), t) for c, t in extra_types.items()]
    names = ", ".join(quote_ident(n) for n in ["row_id", "id", "text", "label", "source", "n_tokens", *extra_types])
    # inside a transaction a fresh table's rowids start from a large offset: the file row is rowid − the smallest
    lo, hi, n = cur.execute(f"SELECT min(rowid), max(rowid), count(*) FROM {_STAGE}").fetchall()[0]
    ordinal = f"rowid - {int(lo)} + 1" if n and hi - lo + 1 == n else "row_number() OVER (ORDER BY rowid)"  # never seen
    cur.execute(
        f"""INSERT INTO samples ({names})
            SELECT ? + _ord - 1, coalesce(id, printf('%s-%06d', ?, _ord)), text, label, source,
                   {_TOKENS}{''.join(', ' + c for c in casts)}
            FROM (SELECT *, {ordinal} AS _ord, string_split(text, ' ') AS _w FROM {_STAGE})""",
        [first, id_prefix])
    cur.execute(f"DROP TABLE {_STAGE}")  # after an error, the transaction's rollback drops it

def new_rows_problems(cur, first: int, ids_generated: bool = False, sample: int = 5) -> dict:
    """Counts and examples of what the ingest policy checks, over the rows added from *first* on.

    One scan counts everything; examples are only looked up for the problems that exist. Generated ids
    (source + file row) are unique by construction, so their distinct count is skipped.
    """
    q = lambda sql, *p: cur.execute(sql, [first, *p]).fetchall()  # noqa: E731
    distinct = "0" if ids_generated else "count(id) - count(DISTINCT id)"
    n_empty, n_null_id, n_dup_rows, n_unlabelled = q(f"""
        SELECT count(*) FILTER (WHERE {_EMPTY_ROW}),
               count(*) FILTER (WHERE id IS NULL OR id = ''),
               {distinct},
               count(*) FILTER (WHERE label IS NULL AND NOT {_EMPTY_ROW})
        FROM samples WHERE row_id >= ?""")[0]
    out = {"n_empty": int(n_empty), "empty_text_rows": [], "null_id_rows": [], "dup_ids": [], "n_dup_ids": 0,
           "clashing_ids": [], "n_clashing_ids": 0, "unlabelled": int(n_unlabelled)}
    if n_empty:
        out["empty_text_rows"] = [r[0] for r in q(
            f"SELECT row_id - ? + 1 FROM samples WHERE row_id >= ? AND {_EMPTY_ROW} ORDER BY row_id LIMIT 1000",
            first)]
    if n_null_id:
        out["null_id_rows"] = [r[0] for r in q(
            "SELECT row_id - ? + 1 FROM samples WHERE row_id >= ? AND (id IS NULL OR id = '') ORDER BY row_id LIMIT 5",
            first)]
    if n_dup_rows:
        dups = q("""SELECT id, count(*) AS n, min(row_id) AS r FROM samples WHERE row_id >= ? AND id IS NOT NULL
                    GROUP BY id HAVING count(*) > 1 ORDER BY r""")
        out["dup_ids"] = [(r[0], r[1]) for r in dups[:sample]]
        out["n_dup_ids"] = len(dups)
    elif first > 0:
        clash = q("""SELECT n.id FROM (SELECT id, row_id FROM samples WHERE row_id >= ?) n
                     SEMI JOIN (SELECT id FROM samples WHERE row_id < ?) o ON o.id = n.id ORDER BY n.row_id""",
                  first)
        out["n_clashing_ids"] = len(clash)
        out["clashing_ids"] = [r[0] for r in clash[:sample]]
    return out

def drop_empty(cur, first: int) -> None:
    """Remove the empty-text rows added from *first* on and renumber the rest densely (file order kept)."""
    cur.execute(f"DELETE FROM samples WHERE row_id >= ? AND {_EMPTY_ROW}", [first])
    cur.execute(
        """UPDATE samples SET row_id = r.new
           FROM (SELECT row_id AS old, ? + row_number() OVER (ORDER BY row_id) - 1 AS new
                 FROM samples WHERE row_id >= ?) r
           WHERE samples.row_id = r.old""", [first, first])

AGGREGATES_PER_QUERY = 64  # filtered counts one type-checking query computes


def _aggregates(cur, exprs: Sequence[str], source: str, params: Sequence[Any]) -> list:
    """The values of the aggregate *exprs* over ``FROM source``, a few per query: one query over 2,000 columns
    (8,000 filtered aggregates) took 22 GB and the machine; 64 a query is faster than 16, 256 or 1,024."""
    out: list = []
    for lo in range(0, len(exprs), AGGREGATES_PER_QUERY):
        out += cur.execute(f"SELECT {', '.join(exprs[lo: lo + AGGREGATES_PER_QUERY])} FROM {source}",
                           list(params)).fetchall()[0]
    return out


def infer_types(cur, columns: Sequence[str]) -> dict[str, str]:
    """For staged text columns: the narrowest type every non-null value casts to.

    A few columns are typed by asking, type by type, for one value that does not fit (``LIMIT 1``): the scan stops
    at the first misfit, so a column of words or decimals costs microseconds and only a column that fits its type
    is read whole (counting the misfits of every type read every value: 0.11 s of a 1M-row ingest). More columns
    are unpivoted into (column, value) rows and counted in one query grouped by column, linear in cells: as
    filtered counts a few columns a query, each query planned over the whole table, 2,000 columns took 126
    queries and 1.4 s, 10,000 columns 626 queries and 14 s.
    """
    if not columns:
        return {}
    if len(columns) <= EARLY_STOP_COLUMNS:
        out = {}
        for c in columns:
            out[c] = "VARCHAR"  # also for a column of NULLs, which every type would "fit"
            if _any_value(cur, c):
                out[c] = next((t for t in _TYPES if not _any_value(cur, c, misfitting=t)), "VARCHAR")
        return out
    cols = ", ".join(quote_ident(c) for c in columns)
    fails = ", ".join(f"count(*) FILTER (WHERE {uncastable('v', t)})" for t in _TYPES)
    rows = cur.execute(f"""SELECT name, {fails}, count(*) FROM (UNPIVOT (SELECT {cols} FROM {_STAGE})
                           ON COLUMNS(*) INTO NAME name VALUE v) GROUP BY name""").fetchall()
    found = {r[0]: r[1:] for r in rows}  # UNPIVOT leaves NULLs out: a column of NULLs has no row
    out = {}
    for c in columns:
        bad_int, bad_float, bad_bool, nonnull = found.get(c, (0, 0, 0, 0))
        out[c] = ("VARCHAR" if nonnull == 0 else "BIGINT" if bad_int == 0 else "DOUBLE" if bad_float == 0
                  else "BOOLEAN" if bad_bool == 0 else "VARCHAR")
    return out


def record_ingest(cur, info: dict, first: int) -> int:
    added = int(cur.execute("SELECT count(*) FROM samples WHERE row_id >= ?", [first]).fetchall()[0][0])
    batch = cur.execute("SELECT coalesce(max(batch), 0) + 1 FROM ingests").fetchall()[0][0]
    cur.execute(
        "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [batch, info["path"], info["sha256"], info["format"], json.dumps(info["mapping"]), added,
         info["skipped"], first, now()],
    )
    return added


def read_input(store: Store, reader: FileReader, columns: Sequence[str]) -> pd.DataFrame:
    """Some columns of an input file as text (for eval files, which are read, not ingested)."""
    cols = ", ".join(f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in columns)

    def run(r: FileReader) -> pd.DataFrame:
        with store.cursor() as cur:
            src = _bind(cur, r)
            return cur.execute(f"SELECT {cols} FROM {src}", r.params).df()

    return retrying(reader, run)
