"""The Store: the one place that talks SQL to DuckDB.

A workspace is a directory::

    curate.duckdb      samples, stage outputs (embeddings, projection, clusters, scores), runs, decisions,
                       selections, recipes, meta
    checkpoints/       Parquet shards of stages in progress (see pipeline.py)
    logs/              tracebacks of unexpected errors
    tmp/               DuckDB spill files and transcoded inputs

Rules kept here: identifiers are quoted with :func:`quote_ident` and table names are whitelisted
(:data:`CORE_TABLES` plus the output tables stages register with :func:`register_output_table`); values are
always ``?`` parameters; each operation uses its own cursor so the app's background thread and its pages can
share one database instance. Schema changes go through :data:`MIGRATIONS`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import CurateError, choices

DB_FILE = "curate.duckdb"
SCHEMA_VERSION = 1

#: columns every samples row has; everything else in `samples` came from the user's file.
CORE_COLUMNS = ("row_id", "id", "text", "label", "source", "n_tokens")
#: per-row columns the tool writes (stage outputs) or adds to exports. A file column with one of these names is
#: kept as ``input_<name>``, so it can never stand in for the tool's own (re-ingesting an export made with
#: --with-scores must not make its old `label_quality` look like the current score). A test keeps this in step
#: with what a full pipeline run writes.
TOOL_COLUMNS = frozenset({
    "n_chars", "n_words", "n_lines", "x", "y", "cluster", "cluster_prob",
    "label_quality", "is_label_issue", "suggested_label", "aum", "aum_flag", "confidence", "variability",
    "correctness", "is_hard_to_learn", "el2n", "forgetting", "consensus",
    "dup_group", "dup_rank", "dup_label_conflict", "is_duplicate", "semdedup_sim", "semdedup_cluster",
    "semdedup_match", "outlier_score", "is_outlier", "label_outlier_score",
    "mean_word_len", "frac_non_alpha", "frac_upper", "n_urls", "frac_dup_lines", "frac_dup_ngrams", "lang",
    "lang_score", "label_original", "repeats", "weight",
})

CORE_TABLES = {
    "meta", "samples", "ingests", "runs", "decisions", "selections", "recipes", "summaries",
}
_output_tables: dict[str, str] = {}  # table -> stage that writes it


def register_output_table(table: str, stage: str) -> None:
    """Whitelist a per-row output table (keyed by ``row_id``) written by *stage*."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", table):
        raise ValueError(f"bad output table name {table!r}")
    _output_tables[table] = stage


def output_tables() -> dict[str, str]:
    return dict(_output_tables)


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB (any user column name becomes safe)."""
    return '"' + str(name).replace('"', '""') + '"'


def _check_table(name: str) -> str:
    if name not in CORE_TABLES and name not in _output_tables:
        raise ValueError(f"table {name!r} is not a known workspace table")
    return quote_ident(name)


# --------------------------------------------------------------------------------------------- schema
_SCHEMA_V1 = [
    "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE samples (row_id BIGINT, id VARCHAR, text VARCHAR, label VARCHAR, source VARCHAR,
                             n_tokens INTEGER)""",
    """CREATE TABLE ingests (batch INTEGER, path VARCHAR, sha256 VARCHAR, format VARCHAR, mapping JSON,
                             rows BIGINT, skipped BIGINT, first_row_id BIGINT, ingested_at TIMESTAMP)""",
    """CREATE TABLE runs (run_key VARCHAR, stage VARCHAR, version VARCHAR, params JSON, inputs VARCHAR,
                          status VARCHAR, started TIMESTAMP, finished TIMESTAMP, summary JSON, error VARCHAR)""",
    """CREATE TABLE decisions (seq BIGINT, batch BIGINT, row_id BIGINT, action VARCHAR, value VARCHAR,
                               reason VARCHAR, who VARCHAR, decided_at TIMESTAMP)""",
    "CREATE TABLE selections (name VARCHAR, row_id BIGINT, created TIMESTAMP)",
    "CREATE TABLE recipes (name VARCHAR PRIMARY KEY, json VARCHAR, saved TIMESTAMP)",
    "CREATE TABLE summaries (name VARCHAR PRIMARY KEY, json VARCHAR)",
]
#: MIGRATIONS[v] upgrades a workspace from schema v to v+1. Add entries; never edit old ones.
MIGRATIONS: dict[int, list[str]] = {}


@dataclass
class FileReader:
    """How DuckDB should read one input: a table function call with its (quoted) arguments."""

    sql: str  # e.g. "read_csv(?, all_varchar=true, ...)"
    params: list[Any]
    arrow: Any = None  # a registered Python object (pandas/arrow) instead of a file


def _serialised(method: Callable) -> Callable:
    """Run a Store method under the workspace's write lock (see Store.writing)."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        with self._write:
            return method(self, *args, **kwargs)

    return wrapper


class Store:
    """Owner of one workspace database. Open it once per process; use a cursor per operation."""

    def __init__(self, path: str | Path, create: bool = True, memory_limit: str | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        db = self.path / DB_FILE
        if not db.exists():
            if not create:
                raise CurateError(
                    f"No workspace at {self.path}",
                    "create one with `python -m curate_core ingest FILE --workspace DIR`, or check the path",
                )
            if self.path.exists() and not self.path.is_dir():
                raise CurateError(f"{self.path} is a file, not a workspace directory", "choose a directory path")
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in ("checkpoints", "logs", "tmp"):
            (self.path / sub).mkdir(exist_ok=True)
        #: one writer at a time inside this process: row ids, decision sequence and batch numbers are max()+1
        #: (two app sessions acting at once would otherwise both take the same numbers)
        self._write = threading.RLock()
        try:
            self._con = duckdb.connect(str(db))
        except duckdb.IOException as e:
            raise _lock_error(self.path, e) from None
        self._con.execute("SET temp_directory = ?", [str(self.path / "tmp")])
        self._con.execute(f"SET memory_limit = '{_memory_limit(memory_limit)}'")
        self._con.execute("SET preserve_insertion_order = true")
        self._migrate()

    # ----------------------------------------------------------------------------------- lifecycle
    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one operation (thread-safe: each thread gets its own)."""
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def writing(self) -> threading.RLock:
        """Hold while adding rows, decisions, selections or recipes (``with store.writing(): …``)."""
        return self._write

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: on any exception the workspace stays exactly as it was."""
        with self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._con.close()

    @property
    def log_dir(self) -> Path:
        return self.path / "logs"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def _migrate(self) -> None:
        with self.cursor() as cur:
            has_meta = cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' AND table_schema = 'main'"
            ).fetchall()[0][0]
            if not has_meta:
                cur.execute("BEGIN TRANSACTION")
                for stmt in _SCHEMA_V1:
                    cur.execute(stmt)
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)",
                            [str(SCHEMA_VERSION), _now().isoformat()])
                cur.execute("COMMIT")
                return
            version = int(cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])
            if version > SCHEMA_VERSION:
                raise CurateError(
                    f"This workspace has schema version {version}; this curate_core knows up to {SCHEMA_VERSION}",
                    "update the tool (git pull && pip install -r requirements.txt)",
                )
            while version < SCHEMA_VERSION:
                cur.execute("BEGIN TRANSACTION")
                for stmt in MIGRATIONS[version]:
                    cur.execute(stmt)
                version += 1
                cur.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version)])
                cur.execute("COMMIT")

    # ----------------------------------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.cursor() as cur:
            rows = cur.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else default

    def set_meta(self, key: str, value: str) -> None:
        with self.cursor() as cur:
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def put_summary(self, name: str, summary: dict) -> None:
        """Store a small JSON summary (e.g. a score's cutoff and flag count) for pages to show."""
        with self.cursor() as cur:
            cur.execute("INSERT OR REPLACE INTO summaries VALUES (?, ?)", [name, json.dumps(summary, default=_json_default)])

    def get_summary(self, name: str) -> dict | None:
        with self.cursor() as cur:
            rows = cur.execute("SELECT json FROM summaries WHERE name = ?", [name]).fetchall()
        return json.loads(rows[0][0]) if rows else None

    # ------------------------------------------------------------------------------- reading files
    @staticmethod
    def csv_reader(path: Path, delim: str) -> FileReader:
        return FileReader(
            "read_csv(?, all_varchar = true, header = true, delim = ?, quote = '\"', escape = '\"', "
            "max_line_size = 268435456)",
            [str(path), delim],
        )

    @staticmethod
    def jsonl_reader(path: Path, array: bool = False) -> FileReader:
        fmt = "array" if array else "newline_delimited"
        return FileReader(f"read_json(?, format = '{fmt}', maximum_object_size = 268435456, sample_size = -1)",
                          [str(path)])

    @staticmethod
    def parquet_reader(path: Path) -> FileReader:
        return FileReader("read_parquet(?)", [str(path)])

    @staticmethod
    def object_reader(obj: Any) -> FileReader:
        return FileReader("_curate_src", [], arrow=obj)

    def describe(self, reader: FileReader) -> list[tuple[str, str]]:
        """(column, DuckDB type) of an input, without reading it all."""
        with self.cursor() as cur:
            src = _bind(cur, reader)
            rows = cur.execute(f"DESCRIBE SELECT * FROM {src}", reader.params).fetchall()
        return [(r[0], r[1]) for r in rows]

    def preview(self, reader: FileReader, n: int = 20) -> pd.DataFrame:
        with self.cursor() as cur:
            src = _bind(cur, reader)
            return cur.execute(f"SELECT * FROM {src} LIMIT {int(n)}", reader.params).df()

    # ------------------------------------------------------------------------------------ ingest
    #: a text is empty when it is NULL or has no non-whitespace character (a regex scan stops at the first one)
    _EMPTY_TEXT = "(text IS NULL OR NOT regexp_matches(text, '\\S'))"
    #: words separated by spaces, tabs and line breaks; the cheap split is exact unless whitespace is irregular
    _TOKENS = ("CASE WHEN contains(text, '  ') OR contains(text, chr(10)) OR contains(text, chr(9)) "
               "OR contains(text, chr(13)) OR starts_with(text, ' ') OR ends_with(text, ' ') "
               "THEN len(list_filter(string_split(replace(replace(replace(text, chr(10), ' '), chr(9), ' '), "
               "chr(13), ' '), ' '), lambda w: w <> '')) ELSE len(string_split(text, ' ')) END")

    def next_row_id(self, cur) -> int:
        return int(cur.execute("SELECT coalesce(max(row_id), -1) + 1 FROM samples").fetchall()[0][0])

    def prepare_columns(self, cur, wanted: dict[str, str],
                        fits: Callable[[dict[str, str]], set[str]] | None = None) -> dict[str, str]:
        """Make sure ``samples`` has each extra column; returns the type each will be inserted as.

        A new column gets the input's type. For columns an earlier file created with another type, ``fits({col:
        type})`` names those whose every new value casts to that type (CSV text holding numbers; one scan for
        all); the others become text so nothing is lost.
        """
        existing = dict(self.sample_columns(cur))
        typed = {c: existing[c] for c, t in wanted.items() if c in existing and existing[c] not in (t, "VARCHAR")}
        fit = fits(typed) if typed and fits is not None else set()
        out = {}
        for col, typ in wanted.items():
            qc = quote_ident(col)
            if col not in existing:
                cur.execute(f"ALTER TABLE samples ADD COLUMN {qc} {typ}")
                out[col] = typ
            elif existing[col] == typ or col in fit:
                out[col] = existing[col]
            else:
                if existing[col] != "VARCHAR":
                    cur.execute(f"ALTER TABLE samples ALTER {qc} TYPE VARCHAR")
                out[col] = "VARCHAR"
        return out

    @staticmethod
    def _cast(expr: str, typ: str) -> str:
        """A cast that turns float NaN into NULL (a missing value, not a number bigger than every other)."""
        if typ in ("DOUBLE", "FLOAT", "REAL"):
            return f"CASE WHEN isnan(TRY_CAST({expr} AS DOUBLE)) THEN NULL ELSE CAST({expr} AS {typ}) END"
        return f"CAST({expr} AS {typ})"

    @staticmethod
    def _uncastable(qc: str, typ: str) -> str:
        """SQL: the text value *qc* does not cast to *typ* (integers by pattern: TRY_CAST('0.5' AS BIGINT)
        rounds instead of failing)."""
        if typ in ("BIGINT", "INTEGER"):
            return f"NOT regexp_full_match(trim({qc}), '[+-]?[0-9]{{1,18}}')"
        return f"TRY_CAST({qc} AS {typ}) IS NULL"

    def input_fits(self, cur, reader: FileReader, checks: dict[str, str]) -> set[str]:
        """The input's text columns (of *checks*: column → type) whose non-empty values all cast to their type,
        in one scan of the input (integers checked by pattern)."""
        if not checks:
            return set()
        src = _bind(cur, reader)
        counts = [f"count(*) FILTER (WHERE {quote_ident(c)} IS NOT NULL AND {self._uncastable(quote_ident(c), t)})"
                  for c, t in checks.items()]
        row = cur.execute(f"SELECT {', '.join(counts)} FROM {src}", reader.params).fetchall()[0]
        return {c for c, n in zip(checks, row) if n == 0}

    def insert_input(self, cur, reader: FileReader, select: Sequence[tuple[str, str]], first: int,
                     extra_types: dict[str, str], id_prefix: str) -> int:
        """Append every row of an input to ``samples``; returns rows read.

        Two statements: the file is read, mapped and token-counted into a temporary table in parallel (file
        order kept: DuckDB preserves insertion order, so a fresh table's rowids count the file rows, from an
        offset inside a transaction), then appended with ``row_id = first + file row − 1``. A ``row_number() OVER
        ()`` in one statement gives the same rows but is a pipeline breaker: the ingest is ~20 % slower on 2 cores. Generated ids (when
        the input has none) are ``<id_prefix>-<file row, zero padded to 6>`` (the file's source name, even when
        a column gives each row its source: ids must not depend on data). Empty texts are inserted too;
        :meth:`drop_empty` removes them after the checks, so their file rows can be reported.
        """
        src = _bind(cur, reader)
        cols = ", ".join(f"{expr} AS {quote_ident(alias)}" for expr, alias in select)
        extras = [c for c in extra_types]
        casts = [self._cast(quote_ident(c), t) for c, t in extra_types.items()]
        names = ", ".join(quote_ident(n) for n in ["row_id", "id", "text", "label", "source", "n_tokens", *extras])
        stage = f"_ingest_{os.getpid()}"
        cur.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS SELECT *, {self._TOKENS} AS _n_tokens "
                    f"FROM (SELECT {cols} FROM {src})", list(reader.params))
        # rows a transaction adds get rowids from a large offset: the file row is rowid − the smallest
        lo, hi, n = cur.execute(f"SELECT min(rowid), max(rowid), count(*) FROM {stage}").fetchall()[0]
        ordinal = f"rowid - {int(lo)} + 1" if n and hi - lo + 1 == n else "row_number() OVER (ORDER BY rowid)"
        inserted = cur.execute(
            f"""INSERT INTO samples ({names})
                SELECT ? + _ord - 1, coalesce(id, printf('%s-%06d', ?, _ord)), text, label, source,
                       _n_tokens{''.join(', ' + c for c in casts)}
                FROM (SELECT *, {ordinal} AS _ord FROM {stage})""",
            [first, id_prefix],
        ).fetchall()
        cur.execute(f"DROP TABLE {stage}")  # after an error, the transaction's rollback drops it
        return int(inserted[0][0])  # an INSERT returns the number of rows it added

    def new_rows_problems(self, cur, first: int, ids_generated: bool = False, sample: int = 5) -> dict:
        """Counts and examples of what the ingest policy checks, over the rows added from *first* on.

        One scan counts everything; examples are only looked up for the problems that exist. Generated ids
        (source + file row) are unique by construction, so their distinct count is skipped.
        """
        q = lambda sql, *p: cur.execute(sql, [first, *p]).fetchall()  # noqa: E731
        distinct = "0" if ids_generated else "count(id) - count(DISTINCT id)"
        n_empty, n_null_id, n_dup_rows, n_unlabelled = q(f"""
            SELECT count(*) FILTER (WHERE {self._EMPTY_TEXT}),
                   count(*) FILTER (WHERE id IS NULL OR id = ''),
                   {distinct},
                   count(*) FILTER (WHERE label IS NULL AND NOT {self._EMPTY_TEXT})
            FROM samples WHERE row_id >= ?""")[0]
        out = {"n_empty": int(n_empty), "empty_text_rows": [], "null_id_rows": [], "dup_ids": [], "n_dup_ids": 0,
               "clashing_ids": [], "n_clashing_ids": 0, "unlabelled": int(n_unlabelled)}
        if n_empty:
            out["empty_text_rows"] = [r[0] for r in q(
                f"SELECT row_id - ? + 1 FROM samples WHERE row_id >= ? AND {self._EMPTY_TEXT} ORDER BY row_id LIMIT 1000",
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

    def drop_empty(self, cur, first: int) -> None:
        """Remove the empty-text rows added from *first* on and renumber the rest densely (file order kept)."""
        cur.execute(f"DELETE FROM samples WHERE row_id >= ? AND {self._EMPTY_TEXT}", [first])
        cur.execute(
            """UPDATE samples SET row_id = r.new
               FROM (SELECT row_id AS old, ? + row_number() OVER (ORDER BY row_id) - 1 AS new
                     FROM samples WHERE row_id >= ?) r
               WHERE samples.row_id = r.old""", [first, first])

    def infer_types(self, cur, columns: Sequence[str], first: int) -> dict[str, str]:
        """For text columns: the narrowest type every non-null value (of rows from *first* on) casts to."""
        if not columns:
            return {}
        checks = []
        for c in columns:
            qc = quote_ident(c)
            for t in ("BIGINT", "DOUBLE", "BOOLEAN"):
                checks.append(f"count(*) FILTER (WHERE {qc} IS NOT NULL AND {self._uncastable(qc, t)})")
            checks.append(f"count({qc})")
        row = cur.execute(f"SELECT {', '.join(checks)} FROM samples WHERE row_id >= ?", [first]).fetchall()[0]
        out = {}
        for i, c in enumerate(columns):
            bad_int, bad_float, bad_bool, nonnull = row[4 * i: 4 * i + 4]
            out[c] = ("VARCHAR" if nonnull == 0 else "BIGINT" if bad_int == 0 else "DOUBLE" if bad_float == 0
                      else "BOOLEAN" if bad_bool == 0 else "VARCHAR")
        return out

    def retype(self, cur, types: dict[str, str]) -> None:
        for col, typ in types.items():
            if typ != "VARCHAR":
                qc = quote_ident(col)
                using = (f"CASE WHEN isnan(TRY_CAST({qc} AS DOUBLE)) THEN NULL ELSE TRY_CAST({qc} AS {typ}) END"
                         if typ == "DOUBLE" else f"TRY_CAST({qc} AS {typ})")
                cur.execute(f"ALTER TABLE samples ALTER {qc} TYPE {typ} USING {using}")

    def record_ingest(self, cur, info: dict, first: int) -> int:
        added = int(cur.execute("SELECT count(*) FROM samples WHERE row_id >= ?", [first]).fetchall()[0][0])
        batch = cur.execute("SELECT coalesce(max(batch), 0) + 1 FROM ingests").fetchall()[0][0]
        cur.execute(
            "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [batch, info["path"], info["sha256"], info["format"], json.dumps(info["mapping"]), added,
             info["skipped"], first, _now()],
        )
        return added

    def sample_columns(self, cur=None) -> list[tuple[str, str]]:
        """(name, type) of every column of ``samples``, core columns first."""
        def run(c):  # duckdb_columns(): same answer as information_schema, ~5x faster (matters per slider move)
            return c.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'samples' "
                "AND schema_name = 'main' AND database_name = current_database() ORDER BY column_index"
            ).fetchall()
        if cur is not None:
            return [(a, b) for a, b in run(cur)]
        with self.cursor() as c:
            return [(a, b) for a, b in run(c)]

    # ----------------------------------------------------------------------------------- samples
    def count(self, table: str = "samples") -> int:
        with self.cursor() as cur:
            if not self.table_exists(table, cur):
                return 0
            return cur.execute(f"SELECT count(*) FROM {_check_table(table)}").fetchall()[0][0]

    def data_fingerprint(self) -> str:
        """Changes whenever rows are added: the hash of every ingest batch (file hash, mapping, rows)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT batch, sha256, mapping::VARCHAR, rows FROM ingests ORDER BY batch").fetchall()
        return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]

    def overview(self) -> dict:
        """Row count, label/source counts: what `info` and the app's overview show."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT count(*), count(label), count(DISTINCT label) FROM samples").fetchall()[0]
            labels = cur.execute(
                "SELECT label, count(*) AS n FROM samples WHERE label IS NOT NULL GROUP BY label ORDER BY n DESC, label"
            ).fetchall()
            sources = cur.execute(
                "SELECT source, count(*) AS n FROM samples GROUP BY source ORDER BY min(row_id)"
            ).fetchall()
            tokens = cur.execute("SELECT coalesce(sum(n_tokens), 0) FROM samples").fetchall()[0][0]
        return {
            "rows": int(rows[0]), "labelled": int(rows[1]), "labels": int(rows[2]), "tokens": int(tokens),
            "label_counts": {k: int(v) for k, v in labels},
            "source_counts": {k: int(v) for k, v in sources},
        }

    def iter_samples(self, columns: Sequence[str], batch_size: int = 10_000,
                     skip: Callable[[int], bool] | None = None) -> Iterator[tuple[int, pa.Table | None, int]]:
        """Yield (batch index, table, rows) for ``samples`` cut into fixed row_id ranges of *batch_size*.

        The cut depends only on the row ids (contiguous from 0, never deleted), so batch *i* is always the same
        rows: checkpoints of a killed run line up with the rerun. Batches where ``skip(i)`` is true are not
        read (table None) — that is how resumed runs avoid re-reading finished work.
        """
        cols = self._sample_cols(columns)
        with self.cursor() as cur:
            # fetchall, not fetchone: DuckDB refuses cur.sql() while an execute() result is unfinished
            n = cur.execute("SELECT coalesce(max(row_id) + 1, 0) FROM samples").fetchall()[0][0]
            for i, lo in enumerate(range(0, n, batch_size)):
                hi = min(lo + batch_size, n)
                if skip is not None and skip(i):
                    yield i, None, hi - lo
                    continue
                table = cur.sql(f"SELECT {cols} FROM samples WHERE row_id >= ? AND row_id < ? ORDER BY row_id",
                                params=[lo, hi]).to_arrow_table()
                yield i, table, table.num_rows

    def sample_frame(self, columns: Sequence[str] = ("row_id", "id", "text", "label", "source"),
                     row_ids: Sequence[int] | None = None, limit: int | None = None) -> pd.DataFrame:
        """A pandas frame of some columns, for all rows or the given row_ids (in row_id order)."""
        cols = self._sample_cols(columns)
        with self.cursor() as cur:
            if row_ids is None:
                lim = f" LIMIT {int(limit)}" if limit is not None else ""
                return cur.execute(f"SELECT {cols} FROM samples ORDER BY row_id{lim}").df()
            ids = pa.table({"row_id": pa.array(np.asarray(row_ids, dtype=np.int64))})
            cur.register("_want", ids)
            try:
                return cur.execute(
                    f"SELECT {cols} FROM samples SEMI JOIN _want USING (row_id) ORDER BY row_id"
                ).df()
            finally:
                cur.unregister("_want")

    def _sample_cols(self, columns: Sequence[str]) -> str:
        have = [c for c, _ in self.sample_columns()]
        bad = [c for c in columns if c not in have]
        if bad:
            raise CurateError(f"Unknown column(s) {choices(bad)}", f"columns in this workspace: {choices(have)}")
        return ", ".join(quote_ident(c) for c in columns)

    # -------------------------------------------------------------------------------------- runs
    def start_run(self, run_key: str, stage: str, version: str, params: dict, inputs: str) -> None:
        with self.cursor() as cur:
            cur.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, NULL, NULL)",
                [run_key, stage, version, json.dumps(params, sort_keys=True, default=_json_default), inputs, _now()],
            )

    def finish_run(self, run_key: str, status: str, summary: dict | None = None, error: str | None = None) -> None:
        with self.cursor() as cur:
            cur.execute(
                """UPDATE runs SET status = ?, finished = ?, summary = ?, error = ?
                   WHERE run_key = ? AND status = 'running'""",
                [status, _now(), json.dumps(summary or {}, default=_json_default), error, run_key],
            )

    def latest_runs(self, statuses: Sequence[str] | None = None) -> dict[str, dict]:
        """The most recent run of each stage (only among runs with one of *statuses*, if given), as dicts."""
        where, params = ("WHERE list_contains(?, status)", [list(statuses)]) if statuses else ("", [])
        with self.cursor() as cur:
            df = cur.execute(
                f"""SELECT * FROM runs {where}
                    QUALIFY row_number() OVER (PARTITION BY stage ORDER BY started DESC) = 1""", params
            ).df()
        return {r["stage"]: r for r in df.to_dict("records")}

    def run_history(self, limit: int = 50) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute(
                f"""SELECT stage, status, started, finished, run_key, params::VARCHAR AS params, error
                    FROM runs ORDER BY started DESC LIMIT {int(limit)}"""
            ).df()

    # ---------------------------------------------------------------------------- output tables
    def table_exists(self, table: str, cur=None) -> bool:
        sql = ("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main' "
               "AND database_name = current_database()")
        if cur is not None:
            return bool(cur.execute(sql, [table]).fetchall()[0][0])
        with self.cursor() as c:
            return bool(c.execute(sql, [table]).fetchall()[0][0])

    def replace_table(self, table: str, data: pa.Table | pd.DataFrame | None = None,
                      parquet_files: Sequence[Path] | None = None, cur=None) -> int:
        """Atomically replace an output table with *data* or the rows of *parquet_files*; returns rows."""
        qt = _check_table(table)

        def run(c) -> int:
            if parquet_files is not None:
                files = [str(p) for p in parquet_files]
                if not files:
                    raise ValueError("no parquet files to import")
                c.execute(f"CREATE OR REPLACE TABLE {qt} AS SELECT * FROM read_parquet(?)", [files])
            else:
                c.register("_data", data)
                try:
                    c.execute(f"CREATE OR REPLACE TABLE {qt} AS SELECT * FROM _data")
                finally:
                    c.unregister("_data")
            return c.execute(f"SELECT count(*) FROM {qt}").fetchall()[0][0]

        if cur is not None:
            return run(cur)
        with self.transaction() as c:
            return run(c)

    def read_table(self, table: str, columns: Sequence[str] | None = None, order_by: str | None = "row_id") -> pd.DataFrame:
        qt = _check_table(table)
        cols = "*" if columns is None else ", ".join(quote_ident(c) for c in columns)
        order = f" ORDER BY {quote_ident(order_by)}" if order_by else ""
        with self.cursor() as cur:
            return cur.execute(f"SELECT {cols} FROM {qt}{order}").df()

    def table_columns(self, table: str) -> list[tuple[str, str]]:
        _check_table(table)
        with self.cursor() as cur:
            return [(a, b) for a, b in cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? AND table_schema = 'main' AND table_catalog = current_database() "
                "ORDER BY ordinal_position", [table]).fetchall()]

    #: per-row output tables whose columns are not features (bulky or internal)
    NON_FEATURE_TABLES = {"embeddings", "embed_cache", "projection5", "probe_probs", "probe_epochs"}

    def catalog(self) -> dict[str, tuple[str, str]]:
        """Every per-row column a page or recipe can use: column → (table, DuckDB type).

        ``samples`` first, then each existing output table keyed by ``row_id`` (textstats, projection,
        clusters, scores …). A name already taken by an earlier table is not repeated.
        """
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                "WHERE schema_name = 'main' AND database_name = current_database() "
                "ORDER BY table_name, column_index").fetchall()
        tables: dict[str, list[tuple[str, str]]] = {}
        for t, c, typ in rows:
            tables.setdefault(t, []).append((c, typ))
        out: dict[str, tuple[str, str]] = {c: ("samples", typ) for c, typ in tables.get("samples", [])}
        for t in _output_tables:
            cols = tables.get(t)
            if t in self.NON_FEATURE_TABLES or not cols or "row_id" not in [c for c, _ in cols]:
                continue
            for c, typ in cols:
                out.setdefault(c, (t, typ))
        return out

    @staticmethod
    def _joins(tables: Iterable[str], base: Sequence[str] = ("samples",)) -> str:
        """``LEFT JOIN t USING (row_id)`` for each output table *tables* holds besides the *base* tables."""
        return " ".join(f"LEFT JOIN {_check_table(t)} USING (row_id)" for t in sorted(set(tables) - set(base)))

    @staticmethod
    def _ref(cat: dict[str, tuple[str, str]], column: str) -> str:
        """*column* qualified by the table the catalog says holds it (``row_id`` from samples)."""
        return "samples.row_id" if column == "row_id" else f"{_check_table(cat[column][0])}.{quote_ident(column)}"

    def rows(self, columns: Sequence[str], row_ids: Sequence[int] | None = None, limit: int | None = None,
             order_by: str = "row_id", descending: bool = False) -> pd.DataFrame:
        """A frame of any catalog columns (samples joined with output tables on row_id)."""
        cat = self.catalog()
        bad = [c for c in columns if c not in cat]
        if bad:
            raise CurateError(f"Unknown column(s) {choices(bad)}", f"available: {choices(sorted(cat))}")
        if order_by not in cat:
            raise CurateError(f"Unknown column {order_by!r} to sort by", f"available: {choices(sorted(cat))}")
        joins = self._joins(cat[c][0] for c in [*columns, order_by])
        cols = ", ".join(self._ref(cat, c) for c in columns)
        order = self._ref(cat, order_by)
        direction = "DESC NULLS LAST" if descending else "ASC NULLS LAST"
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        with self.cursor() as cur:
            if row_ids is None:
                return cur.execute(f"SELECT {cols} FROM samples {joins} ORDER BY {order} {direction}{lim}").df()
            cur.register("_want", pa.table({"row_id": pa.array(np.asarray(row_ids, dtype=np.int64))}))
            try:
                return cur.execute(f"SELECT {cols} FROM samples {joins} SEMI JOIN _want USING (row_id) "
                                   f"ORDER BY {order} {direction}{lim}").df()
            finally:
                cur.unregister("_want")

    def drop_table(self, table: str) -> None:
        with self.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {_check_table(table)}")

    # ------------------------------------------------------------------------------- embeddings
    def _ensure_embed_cache(self, cur) -> None:
        cur.execute("CREATE TABLE IF NOT EXISTS embed_cache (model_key VARCHAR, text_hash VARCHAR, vec FLOAT[])")

    def embed_todo(self, model_key: str) -> pd.DataFrame:
        """(text_hash, row_id) of each distinct text with no cached vector for *model_key*, in row order."""
        with self.cursor() as cur:
            self._ensure_embed_cache(cur)
            # longest first (ties by row_id): shards then hold texts of similar length, so batches pad little
            # and the order is deterministic, which lets a resumed run line up with its checkpoint shards
            return cur.execute(
                """SELECT h AS text_hash, r AS row_id FROM (
                       SELECT md5(text) AS h, min(row_id) AS r, max(length(text)) AS n FROM samples GROUP BY h) t
                   WHERE NOT EXISTS (SELECT 1 FROM embed_cache c WHERE c.model_key = ? AND c.text_hash = t.h)
                   ORDER BY n DESC, r""", [model_key]).df()

    def import_embeddings(self, model_key: str, parts: Sequence[Path]) -> tuple[int, int]:
        """Add checkpoint parts to the cache and rebuild ``embeddings(row_id, vec FLOAT[d])``; one transaction."""
        with self.transaction() as cur:
            self._ensure_embed_cache(cur)
            if parts:
                # anti-join: parts left by a run killed after this transaction committed are not added twice
                cur.execute("""INSERT INTO embed_cache
                               SELECT DISTINCT ON (p.text_hash) ?, p.text_hash, CAST(p.vec AS FLOAT[])
                               FROM read_parquet(?) p
                               WHERE NOT EXISTS (SELECT 1 FROM embed_cache c
                                                 WHERE c.model_key = ? AND c.text_hash = p.text_hash)""",
                            [model_key, [str(p) for p in parts], model_key])
            row = cur.execute("SELECT len(vec) FROM embed_cache WHERE model_key = ? LIMIT 1", [model_key]).fetchall()
            if not row:
                raise CurateError("No vectors were produced", "is the workspace empty?")
            dim = int(row[0][0])
            cur.execute(
                f"""CREATE OR REPLACE TABLE embeddings AS
                    SELECT s.row_id, CAST(c.vec AS FLOAT[{dim}]) AS vec
                    FROM samples s JOIN (SELECT DISTINCT ON (text_hash) text_hash, vec FROM embed_cache
                                         WHERE model_key = ?) c ON c.text_hash = md5(s.text)
                    ORDER BY s.row_id""", [model_key])
            n = cur.execute("SELECT count(*) FROM embeddings").fetchall()[0][0]
        return int(n), dim

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(row_ids, float32 matrix N×d) in row_id order; CurateError if the embed stage has not run."""
        if not self.table_exists("embeddings"):
            raise CurateError("No embeddings in this workspace yet",
                              f"run the embed stage: python -m curate_core run --workspace {self.path} --stages embed")
        with self.cursor() as cur:
            t = cur.sql("SELECT row_id, vec FROM embeddings ORDER BY row_id").to_arrow_table()
        return t.column("row_id").to_numpy(), self._fixed_list(t.column("vec"))

    # ------------------------------------------------------------------- map: projection & clusters
    # Tables of the `project` and `cluster` stages (curate_core/project.py, cluster.py):
    #   projection(row_id, x, y)                  2-D map coordinates
    #   projection5(row_id, vec FLOAT[k], in_fit) k-D coordinates for clustering; in_fit = row was in the fit sample
    #   clusters(row_id, cluster, cluster_prob)   HDBSCAN cluster (-1 = noise) and membership strength
    #   cluster_info(cluster, size, …)            one row per cluster (see cluster.py); per-cluster means of
    #                                             later scores are joined at read time by cluster_means()
    def import_projection(self, parts: Sequence[Path]) -> int:
        """Replace ``projection`` and ``projection5`` with the rows of checkpoint *parts*, in one transaction."""
        files = [str(p) for p in parts]
        if not files:
            raise ValueError("no projection parts to import")
        with self.transaction() as cur:
            cur.execute("""CREATE OR REPLACE TABLE projection AS
                           SELECT row_id, x, y FROM read_parquet(?) ORDER BY row_id""", [files])
            k = int(cur.execute("SELECT len(vec) FROM read_parquet(?) LIMIT 1", [files]).fetchall()[0][0])
            cur.execute(f"""CREATE OR REPLACE TABLE projection5 AS
                            SELECT row_id, CAST(vec AS FLOAT[{k}]) AS vec, in_fit FROM read_parquet(?)
                            ORDER BY row_id""", [files])
            return int(cur.execute("SELECT count(*) FROM projection").fetchall()[0][0])

    def projection5(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row_ids, float32 N×k coordinates, in_fit booleans) in row_id order."""
        if not self.table_exists("projection5"):
            raise CurateError("No projection in this workspace yet",
                              f"run the project stage: python -m curate_core run --workspace {self.path} --stages project")
        with self.cursor() as cur:
            t = cur.sql("SELECT row_id, vec, in_fit FROM projection5 ORDER BY row_id").to_arrow_table()
        vec = t.column("vec").combine_chunks()
        flat = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
        u = flat.reshape(t.num_rows, -1) if t.num_rows else flat.reshape(0, 0)
        return t.column("row_id").to_numpy(), u, t.column("in_fit").to_numpy(zero_copy_only=False)

    def write_clusters(self, clusters: pa.Table, info: pa.Table) -> None:
        """Replace ``clusters`` (rows in row_id order) and ``cluster_info`` together, in one transaction."""
        with self.transaction() as cur:
            self.replace_table("clusters", clusters, cur=cur)
            self.replace_table("cluster_info", info, cur=cur)

    def cluster_info(self) -> pd.DataFrame:
        """One row per cluster (noise = -1 included), ordered by cluster id."""
        if not self.table_exists("cluster_info"):
            raise CurateError("No clusters in this workspace yet",
                              f"run the cluster stage: python -m curate_core run --workspace {self.path} --stages cluster")
        return self.read_table("cluster_info", order_by="cluster")

    NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "UTINYINT",
                     "USMALLINT", "UINTEGER", "UBIGINT")

    def cluster_means(self, columns: Sequence[str], nonzero: Sequence[str] = ()) -> pd.DataFrame:
        """Per cluster, the mean of numeric/boolean catalog *columns* (e.g. label_quality, is_label_issue → a
        rate) and the share of rows where each *nonzero* column is > 0 (e.g. dup_rank → duplicate rate, as
        ``<col>_rate``): the slot later scores fill without rerunning the cluster stage. Columns missing from
        the workspace are skipped."""
        cat = self.catalog()
        ok = lambda c: (c in cat and cat[c][0] != "clusters"  # noqa: E731
                        and (cat[c][1] in self.NUMERIC_TYPES + ("BOOLEAN",) or cat[c][1].startswith("DECIMAL")))
        cols, nz = [c for c in columns if ok(c)], [c for c in nonzero if ok(c)]
        joins = self._joins(cat[c][0] for c in cols + nz)
        ref = lambda c: self._ref(cat, c)  # noqa: E731
        aggs = "".join(f", avg(CAST({ref(c)} AS DOUBLE)) AS {quote_ident(c)}" for c in cols)
        aggs += "".join(f", avg(CASE WHEN {ref(c)} IS NULL THEN NULL WHEN {ref(c)} > 0 THEN 1.0 ELSE 0.0 END) "
                        f"AS {quote_ident(c + '_rate')}" for c in nz)
        with self.cursor() as cur:
            return cur.execute(f"""SELECT clusters.cluster{aggs} FROM clusters
                                   JOIN samples USING (row_id) {joins}
                                   GROUP BY clusters.cluster ORDER BY clusters.cluster""").df()

    def cluster_rows(self, cluster: int, columns: Sequence[str], limit: int = 50) -> pd.DataFrame:
        """Rows of one cluster, most typical first (highest membership strength), with any catalog columns."""
        ids = self.cluster_members(cluster)
        if ids.size == 0:
            return pd.DataFrame(columns=list(columns))
        cols = list(dict.fromkeys([*columns, "cluster_prob"]))
        df = self.rows(cols, row_ids=ids, order_by="cluster_prob", descending=True, limit=limit)
        return df[list(columns)]

    def map_points(self, columns: Sequence[str], text_chars: int = 160) -> pd.DataFrame:
        """Every projected row: row_id, x, y, the first *text_chars* characters of its text (as ``text``) and
        any catalog *columns* — what the Map page draws, in one query."""
        cat = self.catalog()
        cols = [c for c in dict.fromkeys(columns) if c not in ("row_id", "x", "y", "text")]
        bad = [c for c in cols if c not in cat]
        if bad:
            raise CurateError(f"Unknown column(s) {choices(bad)}", f"available: {choices(sorted(cat))}")
        joins = self._joins((cat[c][0] for c in cols), base=("samples", "projection"))
        sel = "".join(f", {self._ref(cat, c)}" for c in cols)
        with self.cursor() as cur:
            return cur.execute(f"""SELECT projection.row_id, projection.x, projection.y,
                                          left(samples.text, ?) AS text{sel}
                                   FROM projection JOIN samples USING (row_id) {joins}
                                   ORDER BY projection.row_id""", [int(text_chars)]).df()

    def cluster_members(self, cluster: int) -> np.ndarray:
        with self.cursor() as cur:
            rows = cur.execute("SELECT row_id FROM clusters WHERE cluster = ? ORDER BY row_id", [int(cluster)]).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    # -------------------------------------------------------------------------------- decisions
    ACTIONS = ("exclude", "relabel", "keep")

    @_serialised
    def decide(self, row_ids: Sequence[int], action: str, value: str | None = None, reason: str = "",
               who: str | None = None) -> int:
        """Append one decision batch (the same action for several rows); returns the batch number."""
        if action not in self.ACTIONS:
            raise CurateError(f"Unknown action {action!r}", f"use one of {choices(self.ACTIONS)}")
        if action == "relabel" and (value is None or str(value) == ""):
            raise CurateError("A relabel decision needs the new label", "pass value='<label>'")
        ids = np.unique(np.asarray(list(row_ids), dtype=np.int64))
        if ids.size == 0:
            raise CurateError("No rows chosen for the decision", "select at least one row")
        return self._append_decisions(ids, action, None if value is None else str(value), reason, who)

    def _append_decisions(self, ids: np.ndarray, action: str, values: Any, reason: str, who: str | None) -> int:
        """Append one batch (rows *ids*, one value or one per row) numbered after the log's last; the rows must
        exist. Callers hold the write lock (``@_serialised``), so two batches never get the same numbers."""
        with self.transaction() as cur:
            known = cur.execute(
                "SELECT count(*) FROM samples WHERE list_contains(?, row_id)", [ids.tolist()]
            ).fetchall()[0][0]
            if known != ids.size:
                raise CurateError(f"{ids.size - known} of the chosen rows do not exist in this workspace")
            seq0, batch = cur.execute(
                "SELECT coalesce(max(seq), 0) + 1, coalesce(max(batch), 0) + 1 FROM decisions").fetchall()[0]
            df = pd.DataFrame({
                "seq": np.arange(seq0, seq0 + ids.size, dtype=np.int64), "batch": batch, "row_id": ids,
                "action": action, "value": values, "reason": reason,
                "who": who or os.environ.get("USER") or "user", "decided_at": _now(),
            })
            cur.register("_dec", df)
            cur.execute("INSERT INTO decisions SELECT seq, batch, row_id, action, value, reason, who, decided_at FROM _dec")
            cur.unregister("_dec")
        return int(batch)

    @_serialised
    def undo(self) -> int | None:
        """Undo the most recent decision batch not yet undone (by appending an `undo` entry)."""
        with self.transaction() as cur:
            row = cur.execute(
                """SELECT max(batch) FROM decisions WHERE action <> 'undo'
                   AND batch NOT IN (SELECT CAST(value AS BIGINT) FROM decisions WHERE action = 'undo')"""
            ).fetchall()[0]
            if row[0] is None:
                return None
            target = int(row[0])
            seq, batch = cur.execute(
                "SELECT coalesce(max(seq), 0) + 1, coalesce(max(batch), 0) + 1 FROM decisions").fetchall()[0]
            cur.execute("INSERT INTO decisions VALUES (?, ?, NULL, 'undo', ?, '', ?, ?)",
                        [seq, batch, str(target), os.environ.get("USER") or "user", _now()])
        return target

    CURRENT_DECISIONS_SQL = """
        SELECT row_id, action, value FROM decisions
        WHERE action <> 'undo'
          AND batch NOT IN (SELECT CAST(value AS BIGINT) FROM decisions WHERE action = 'undo')
        QUALIFY row_number() OVER (PARTITION BY row_id ORDER BY seq DESC) = 1"""

    def current_decisions(self) -> pd.DataFrame:
        """Per row, the latest decision still in force: (row_id, action, value)."""
        with self.cursor() as cur:
            return cur.execute(self.CURRENT_DECISIONS_SQL + " ORDER BY row_id").df()

    def decision_log(self, limit: int = 200) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute(
                f"SELECT * FROM decisions ORDER BY seq DESC LIMIT {int(limit)}").df()

    # --------------------------------------------------------------------- selections & recipes
    @_serialised
    def save_selection(self, name: str, row_ids: Sequence[int]) -> int:
        name = _check_name(name, "selection")
        ids = np.unique(np.asarray(list(row_ids), dtype=np.int64))
        with self.transaction() as cur:
            cur.execute("DELETE FROM selections WHERE name = ?", [name])
            df = pd.DataFrame({"name": name, "row_id": ids, "created": _now()})
            cur.register("_sel", df)
            cur.execute("INSERT INTO selections SELECT name, row_id, created FROM _sel")
            cur.unregister("_sel")
        return int(ids.size)

    def selection_names(self) -> dict[str, int]:
        with self.cursor() as cur:
            return {k: int(v) for k, v in cur.execute(
                "SELECT name, count(*) FROM selections GROUP BY name ORDER BY name").fetchall()}

    def selection(self, name: str) -> np.ndarray:
        with self.cursor() as cur:
            rows = cur.execute("SELECT row_id FROM selections WHERE name = ? ORDER BY row_id", [name]).fetchall()
        if not rows and name not in self.selection_names():
            raise CurateError(f"No selection named {name!r}", f"saved selections: {choices(self.selection_names())}")
        return np.array([r[0] for r in rows], dtype=np.int64)

    @_serialised
    def delete_selection(self, name: str) -> None:
        with self.cursor() as cur:
            cur.execute("DELETE FROM selections WHERE name = ?", [name])

    @_serialised
    def save_recipe(self, name: str, recipe: dict) -> None:
        name = _check_name(name, "recipe")
        with self.cursor() as cur:
            cur.execute("INSERT OR REPLACE INTO recipes VALUES (?, ?, ?)",
                        [name, json.dumps(recipe, sort_keys=True), _now()])

    def recipe(self, name: str) -> dict | None:
        with self.cursor() as cur:
            rows = cur.execute("SELECT json FROM recipes WHERE name = ?", [name]).fetchall()
        return json.loads(rows[0][0]) if rows else None

    def recipe_names(self) -> list[str]:
        with self.cursor() as cur:
            return [r[0] for r in cur.execute("SELECT name FROM recipes ORDER BY name").fetchall()]

    # ------------------------------------------------------------------------ outcome check (issue 8)
    def read_input(self, reader: FileReader, columns: Sequence[str]) -> pd.DataFrame:
        """Some columns of an input file as text (for eval files, which are read, not ingested)."""
        with self.cursor() as cur:
            src = _bind(cur, reader)
            cols = ", ".join(f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in columns)
            return cur.execute(f"SELECT {cols} FROM {src}", reader.params).df()

    def cached_vectors(self, model_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors in ``embed_cache`` for (model key, md5 of text)."""
        with self.cursor() as cur:
            self._ensure_embed_cache(cur)
            cur.register("_h", pa.table({"text_hash": pa.array(list(hashes), pa.string())}))
            try:
                t = cur.sql("""SELECT DISTINCT ON (c.text_hash) c.text_hash, c.vec FROM embed_cache c
                               SEMI JOIN _h USING (text_hash) WHERE c.model_key = ?""",
                            params=[model_key]).to_arrow_table()
            finally:
                cur.unregister("_h")
        vec = t.column("vec").to_pylist()
        return {h: np.asarray(v, dtype=np.float32) for h, v in zip(t.column("text_hash").to_pylist(), vec)}

    def cache_vectors(self, model_key: str, hashes: Sequence[str], vecs: np.ndarray) -> None:
        """Add vectors of texts outside the workspace (e.g. an eval file) to ``embed_cache``."""
        vecs = np.asarray(vecs, dtype=np.float32)
        data = pa.table({"text_hash": pa.array(list(hashes), pa.string()),
                         "vec": pa.array(list(vecs), pa.list_(pa.float32()))})
        with self.transaction() as cur:
            self._ensure_embed_cache(cur)
            cur.register("_v", data)
            try:
                cur.execute("INSERT INTO embed_cache SELECT ?, text_hash, vec FROM _v", [model_key])
            finally:
                cur.unregister("_v")

    # ------------------------------------------------------------------ selection & export (issue 7)
    #: in-memory database attached to this DuckDB instance: select.py's materialised wide table lives here, so
    #: a slider move is one scan of one table (no joins) and the workspace file never grows because of it
    SEL_DB = "curate_sel"

    def selection_state_key(self) -> str:
        """Changes whenever a per-row table changes (rows added, a stage output replaced, columns added).

        DuckDB gives a replaced table a new ``table_oid``; inserts change ``estimated_size``; ingest of a file
        with new columns changes ``column_count``. Decisions and selections are not part of it (they are small
        and joined live). One catalog query: it runs on every slider move.
        """
        watch = {"samples", "ingests", *(t for t in _output_tables if t not in self.NON_FEATURE_TABLES)}
        with self.cursor() as cur:
            rows = cur.execute(
                """SELECT table_name, table_oid, estimated_size, column_count FROM duckdb_tables()
                   WHERE schema_name = 'main' AND database_name = current_database() ORDER BY table_name""").fetchall()
        blob = json.dumps([r for r in rows if r[0] in watch], default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def selection_source(self, columns: Sequence[str], cached: bool | None = None,
                         cat: dict[str, tuple[str, str]] | None = None) -> str:
        """A relation (for ``FROM``) with ``row_id`` and the given catalog columns, one row per sample.

        ``cached=True`` builds (or reuses) the materialised wide table of every catalog column but ``text``;
        ``False`` joins just the tables the columns live in; ``None`` uses the wide table only if it is
        already built and fresh (the CLI's one-off export should not pay for building it).
        """
        cat = cat if cat is not None else self.catalog()
        missing = [c for c in columns if c not in cat]
        if missing:  # select.py validates first; this is a guard, not the user-facing message
            raise CurateError(f"Unknown column(s) {choices(missing)}", f"available: {choices(sorted(cat))}")
        wide_ok = "text" not in columns
        if wide_ok and cached is not False:
            key = self.selection_state_key()
            if cached or self._wide_key() == key:
                self._build_wide(cat, key)
                return f"{self.SEL_DB}.wide"
        return "(" + self._joined_select(cat, ["row_id", *[c for c in columns if c != "row_id"]]) + ")"

    def _joined_select(self, cat: dict[str, tuple[str, str]], columns: Sequence[str]) -> str:
        cols = ", ".join(self._ref(cat, c) for c in dict.fromkeys(columns))
        return f"SELECT {cols} FROM samples {self._joins(cat[c][0] for c in columns)}"

    _wide_locks: dict[str, threading.Lock] = {}

    def _wide_key(self) -> str | None:
        with self.cursor() as cur:
            if not getattr(self, "_sel_attached", False):
                cur.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {self.SEL_DB}")
                cur.execute(f"CREATE TABLE IF NOT EXISTS {self.SEL_DB}.info (key VARCHAR)")
                self._sel_attached = True
            row = cur.execute(f"SELECT key FROM {self.SEL_DB}.info").fetchall()
        return row[0][0] if row else None

    def _build_wide(self, cat: dict[str, tuple[str, str]], key: str) -> None:
        lock = Store._wide_locks.setdefault(str(self.path), threading.Lock())
        with lock:
            if self._wide_key() == key:
                return
            cols = [c for c in cat if c != "text"]
            with self.cursor() as cur:
                cur.execute(f"CREATE OR REPLACE TABLE {self.SEL_DB}.wide AS "
                            + self._joined_select(cat, cols) + " ORDER BY samples.row_id")
                cur.execute(f"DELETE FROM {self.SEL_DB}.info")
                cur.execute(f"INSERT INTO {self.SEL_DB}.info VALUES (?)", [key])

    def run_select(self, sql: str, params: dict[str, Any] | None = None,
                   tables: dict[str, pa.Table] | None = None) -> pa.Table:
        """Run a read-only query built by select.py (quoted identifiers, ``$name`` parameters) → Arrow.

        *tables* are small Arrow tables (e.g. per-group targets) registered under their names for the query.
        """
        with self.cursor() as cur:
            for name, t in (tables or {}).items():
                cur.register(name, t)
            try:
                return cur.sql(sql, params=params or None).to_arrow_table()
            finally:
                for name in tables or {}:
                    cur.unregister(name)

    COPY_FORMATS = {"parquet": "(FORMAT parquet, COMPRESSION zstd)", "csv": "(FORMAT csv, HEADER true)",
                    "jsonl": "(FORMAT json)"}

    def copy_select(self, sql: str, path: Path, fmt: str, params: dict[str, Any] | None = None,
                    tables: dict[str, pa.Table] | None = None) -> None:
        """``COPY (sql) TO path`` in *fmt*; with insertion order preserved the bytes depend only on the rows."""
        if fmt not in self.COPY_FORMATS:
            raise CurateError(f"Unknown export format {fmt!r}", f"use one of {choices(self.COPY_FORMATS)}")
        with self.cursor() as cur:
            for name, t in (tables or {}).items():
                cur.register(name, t)
            try:
                cur.execute(f"COPY ({sql}) TO $_path {self.COPY_FORMATS[fmt]}", {**(params or {}), "_path": str(path)})
            finally:
                for name in tables or {}:
                    cur.unregister(name)

    def export_selection(self, selected: pa.Table, path: Path, fmt: str, columns: Sequence[tuple[str, str, str]]) -> int:
        """Write the selected rows to *path* in row_id order; returns rows written.

        *selected* has ``row_id`` plus per-row values of the selection (final label, repeats, weight …).
        *columns* are (source, column, output name) in file order; source is ``samples``, ``selection`` (a
        column of *selected*) or ``catalog`` (a stage-output column, joined on row_id).
        """
        cat = self.catalog()
        exprs, tables = [], set()
        for src, col, out in columns:
            if src == "samples":
                exprs.append(f"s.{quote_ident(col)} AS {quote_ident(out)}")
            elif src == "selection":
                exprs.append(f"_sel.{quote_ident(col)} AS {quote_ident(out)}")
            else:
                table = cat[col][0]
                tables.add(table)
                exprs.append(f"{_check_table(table)}.{quote_ident(col)} AS {quote_ident(out)}")
        joins = self._joins(tables)
        sql = f"SELECT {', '.join(exprs)} FROM samples s JOIN _sel USING (row_id) {joins} ORDER BY s.row_id"
        self.copy_select(sql, path, fmt, tables={"_sel": selected})
        return selected.num_rows

    def decisions_state(self) -> str:
        """A short hash of the decisions log (changes with every decision and undo)."""
        with self.cursor() as cur:
            row = cur.execute("SELECT count(*), coalesce(max(seq), 0) FROM decisions").fetchall()[0]
        return hashlib.sha256(json.dumps(row).encode()).hexdigest()[:16]

    def selections_state(self) -> str:
        """A short hash of the saved selections (names, sizes and creation times)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT name, count(*), sum(row_id), max(created) FROM selections "
                               "GROUP BY name ORDER BY name").fetchall()
        return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]

    def done_run_keys(self) -> dict[str, str]:
        """stage → run key of its latest finished run (for export manifests)."""
        with self.cursor() as cur:
            rows = cur.execute(
                """SELECT stage, run_key FROM runs WHERE status = 'done'
                   QUALIFY row_number() OVER (PARTITION BY stage ORDER BY finished DESC) = 1 ORDER BY stage""").fetchall()
        return {a: b for a, b in rows}

    # ------------------------------------------------------------------ duplicates & outliers (issue 6)
    def _scores_have(self, *columns: str) -> None:
        have = {c for c, _ in self.table_columns("scores")} if self.table_exists("scores") else set()
        missing = [c for c in columns if c not in have]
        if missing:
            raise CurateError(f"No {choices(missing)} score in this workspace yet",
                              f"run the scores stage: python -m curate_core run --workspace {self.path} --stages scores")

    def dup_groups(self, limit: int | None = None) -> pd.DataFrame:
        """Exact-duplicate groups: dup_group, size, labels (distinct), conflict, first row_id, its text.

        Groups with conflicting labels first, then larger groups first.
        """
        self._scores_have("dup_group", "dup_label_conflict")
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        with self.cursor() as cur:
            return cur.execute(
                f"""SELECT c.dup_group, count(*) AS size, count(DISTINCT s.label) AS labels,
                           bool_or(c.dup_label_conflict) AS conflict, min(s.row_id) AS first_row,
                           arg_min(s.text, s.row_id) AS text
                    FROM scores c JOIN samples s USING (row_id) WHERE c.dup_group >= 0
                    GROUP BY c.dup_group ORDER BY conflict DESC, size DESC, c.dup_group{lim}""").df()

    def dup_group_sizes(self) -> pd.DataFrame:
        """(size, groups): how many exact-duplicate groups have each size."""
        self._scores_have("dup_group")
        with self.cursor() as cur:
            return cur.execute(
                """SELECT size, count(*) AS groups FROM (
                       SELECT count(*) AS size FROM scores WHERE dup_group >= 0 GROUP BY dup_group)
                   GROUP BY size ORDER BY size""").df()

    def dup_group_rows(self, group: int, extra: Sequence[str] = ()) -> pd.DataFrame:
        """The rows of one exact-duplicate group, kept row first: row_id, id, label, dup_rank, *extra*, text."""
        self._scores_have("dup_group", "dup_rank", *extra)
        cols = "".join(f", c.{quote_ident(e)}" for e in extra)
        with self.cursor() as cur:
            return cur.execute(
                f"""SELECT s.row_id, s.id, s.label, c.dup_rank{cols}, s.text
                    FROM scores c JOIN samples s USING (row_id) WHERE c.dup_group = ?
                    ORDER BY c.dup_rank, s.row_id""", [int(group)]).df()

    # ---------------------------------------------------------- label noise (issue 5): probe outputs
    def write_probe(self, prob_parts: Sequence[Path], epoch_parts: Sequence[Path], n_classes: int,
                    n_epochs: int) -> None:
        """Replace ``probe_probs(row_id, probs FLOAT[C])`` and ``probe_epochs(run, row_id, threshold,
        margin/p_gold/p_sq FLOAT[E])`` with the rows of the probe's checkpoint parts, in one transaction."""
        c, e = int(n_classes), int(n_epochs)
        with self.transaction() as cur:
            cur.execute(f"""CREATE OR REPLACE TABLE probe_probs AS
                            SELECT row_id, CAST(probs AS FLOAT[{c}]) AS probs FROM read_parquet(?) ORDER BY row_id""",
                        [[str(p) for p in prob_parts]])
            if not epoch_parts:  # no training dynamics (threshold_runs=0): an empty table says so
                cur.execute(f"""CREATE OR REPLACE TABLE probe_epochs (run INTEGER, row_id BIGINT, threshold BOOLEAN,
                                margin FLOAT[{e}], p_gold FLOAT[{e}], p_sq FLOAT[{e}])""")
                return
            cur.execute(f"""CREATE OR REPLACE TABLE probe_epochs AS
                            SELECT CAST(run AS INTEGER) AS run, row_id, threshold, CAST(margin AS FLOAT[{e}]) AS margin,
                                   CAST(p_gold AS FLOAT[{e}]) AS p_gold, CAST(p_sq AS FLOAT[{e}]) AS p_sq
                            FROM read_parquet(?) ORDER BY run, row_id""", [[str(p) for p in epoch_parts]])

    def drop_probe(self) -> None:
        with self.transaction() as cur:
            cur.execute("DROP TABLE IF EXISTS probe_probs")
            cur.execute("DROP TABLE IF EXISTS probe_epochs")

    @staticmethod
    def _fixed_list(col: pa.ChunkedArray) -> np.ndarray:
        arr = col.combine_chunks()
        width = arr.type.list_size
        return np.asarray(arr.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, width)

    def row_ids(self) -> np.ndarray:
        """Every row_id, ascending (arrow, no pandas: cheap at 1M rows)."""
        with self.cursor() as cur:
            return cur.sql("SELECT row_id FROM samples ORDER BY row_id").to_arrow_table().column(0).to_numpy()

    def probe_probs(self) -> tuple[np.ndarray, np.ndarray]:
        """(row_ids, out-of-fold probabilities n×C float32) of the labelled rows (in table order)."""
        if not self.table_exists("probe_probs"):
            raise CurateError("No probe outputs yet", "run the probe stage")
        with self.cursor() as cur:
            t = cur.sql("SELECT row_id, probs FROM probe_probs").to_arrow_table()  # any order: callers map row_ids
        return t.column("row_id").to_numpy(), self._fixed_list(t.column("probs"))

    def probe_epochs(self) -> dict[str, np.ndarray]:
        """Per (run, row), in table order: run, row_id, threshold flags and the E-long per-epoch stats (n×E float32)."""
        if not self.table_exists("probe_epochs"):
            raise CurateError("No probe outputs yet", "run the probe stage")
        with self.cursor() as cur:
            t = cur.sql("SELECT run, row_id, threshold, margin, p_gold, p_sq FROM probe_epochs").to_arrow_table()
        out = {"run": t.column("run").to_numpy().astype(np.int64), "row_id": t.column("row_id").to_numpy(),
               "threshold": t.column("threshold").to_numpy(zero_copy_only=False).astype(bool)}
        for k in ("margin", "p_gold", "p_sq"):
            out[k] = self._fixed_list(t.column(k)) if t.num_rows else np.zeros((0, 0), np.float32)
        return out

    @_serialised
    def relabel_each(self, row_ids: Sequence[int], labels: Sequence[str], reason: str = "",
                     who: str | None = None) -> int:
        """One decision batch relabelling each row to its own label (e.g. "relabel to suggested"), so one
        undo reverts it all. Returns the batch number."""
        ids = np.asarray(list(row_ids), dtype=np.int64)
        vals = [str(v) for v in labels]
        if ids.size == 0 or ids.size != len(vals) or np.unique(ids).size != ids.size:
            raise CurateError("Relabel needs one new label per chosen row (each row once)")
        return self._append_decisions(ids, "relabel", vals, reason, who)

    # ------------------------------------------------------------------------------------ misc
    def query_df(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a read-only query built by a core module (select.py) from quoted identifiers and ? params."""
        with self.cursor() as cur:
            return cur.execute(sql, list(params)).df()


# ------------------------------------------------------------------------------------------ helpers
def _bind(cur, reader: FileReader) -> str:
    if reader.arrow is not None:
        cur.register("_curate_src", reader.arrow)
    return reader.sql


def _check_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise CurateError(f"A {what} needs a name (1–200 characters)")
    return name


def _memory_limit(explicit: str | None) -> str:
    value = explicit or os.environ.get("CURATE_MEMORY_LIMIT", "2GB")
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value.strip(), re.I):
        raise CurateError(f"Bad memory limit {value!r}", "use e.g. 512MB or 2GB")
    return value.strip()


def _lock_error(path: Path, exc: Exception) -> CurateError:
    msg = str(exc)
    if "lock" not in msg.lower():
        return CurateError(f"Could not open the workspace database in {path}: {msg.splitlines()[0]}")
    pid = re.search(r"PID (\d+)", msg)
    who = f" (process {pid.group(1)})" if pid else ""
    err = CurateError(
        f"The workspace {path} is open in another process{who}; DuckDB allows one writer at a time",
        "close the app or the other command that uses this workspace, then try again",
    )
    err.pid = int(pid.group(1)) if pid else None  # type: ignore[attr-defined]  # lets `run` wait for another run
    return err


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
