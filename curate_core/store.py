"""The Store: the workspace's DuckDB database, and nothing but storage.

A workspace is a directory::

    curate.duckdb      samples, stage outputs (embeddings, projection, clusters, scores), runs, decisions,
                       selections, recipes, meta
    checkpoints/       parts of stage runs in progress (see execution.py; the root may be elsewhere)
    logs/              tracebacks of unexpected errors
    tmp/               DuckDB spill files and transcoded inputs

What the Store owns: the connection, a cursor per operation (so the app's background thread and its pages share
one database instance), transactions and the in-process write lock, the schema and its explicit
:data:`MIGRATIONS`, a generic per-row table API (replace / read tables and columns keyed by ``row_id``, the
catalog of every feature column), the run log, the append-only decision log, named selections and recipes.

What it does not own: what a stage or a page reads and writes. That lives with the domain (embed.py,
project.py, cluster.py, dynamics.py, inputs.py for ingest, recipes/ for selection SQL) and goes through the
Store's connection and its rules: identifiers whitelisted (:func:`check_table`) or quoted (:func:`quote_ident`),
values always ``?`` / ``$name`` parameters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import CurateError, choices, damaged_database

DB_FILE = "curate.duckdb"
HEADER_BYTES = 3 * 4096  # a DuckDB file starts with three 4 KiB headers, then its blocks
#: who has the workspace open ({"pid", "kind", "what"}), written by processes that say so (the app): the lock
#: error of another process reads it when DuckDB names the same pid
HOLDER_FILE = "holder.json"
SCHEMA_VERSION = 2

#: columns every samples row has; everything else in `samples` came from the user's file.
CORE_COLUMNS = ("row_id", "id", "text", "label", "source", "n_tokens")
CORE_TABLES = {"meta", "samples", "ingests", "runs", "decisions", "selections", "recipes", "summaries"}
NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "UTINYINT",
                 "USMALLINT", "UINTEGER", "UBIGINT")
ACTIONS = ("exclude", "relabel", "keep")

_output_tables: dict[str, str] = {}  # table -> stage that writes it
_non_feature: set[str] = set()  # output tables whose columns are not features (bulky vectors, internal state)


def register_output_table(table: str, stage: str, features: bool = True) -> None:
    """Whitelist an output table written by *stage*. With *features*, its per-row columns (keyed by ``row_id``)
    join the catalog that pages, filters and recipes use; without, it is storage only (vectors, caches)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", table):
        raise ValueError(f"bad output table name {table!r}")
    _output_tables[table] = stage
    (_non_feature.discard if features else _non_feature.add)(table)


def output_tables() -> dict[str, str]:
    return dict(_output_tables)


def feature_tables() -> list[str]:
    return [t for t in _output_tables if t not in _non_feature]


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB (any user column name becomes safe)."""
    return '"' + str(name).replace('"', '""') + '"'


def check_table(name: str) -> str:
    """*name* quoted, if it is a workspace table (core or registered); anything else is refused."""
    if name not in CORE_TABLES and name not in _output_tables:
        raise ValueError(f"table {name!r} is not a known workspace table")
    return quote_ident(name)


def join_sql(tables: Iterable[str], base: Sequence[str] = ("samples",)) -> str:
    """``LEFT JOIN t USING (row_id)`` for each output table in *tables* besides the *base* tables."""
    return " ".join(f"LEFT JOIN {check_table(t)} USING (row_id)" for t in sorted(set(tables) - set(base)))


def column_ref(cat: dict[str, tuple[str, str]], column: str) -> str:
    """*column* qualified by the table the catalog says holds it (``row_id`` from samples)."""
    return "samples.row_id" if column == "row_id" else f"{check_table(cat[column][0])}.{quote_ident(column)}"


# --------------------------------------------------------------------------------------------- schema
#: the texts are stored as they are: FSST compression slows every scan of the texts (1M tweets: the search page's
#: keyword query 0.16 vs 0.11 s, ILIKE 0.17 vs 0.11 s, COPY 0.43 vs 0.37 s) and a 1M-row ingest (ratio to a bare
#: ``read_csv`` 0.79 vs 0.83), to save ~48 bytes a text (the demo's 10,003 texts: 1.1 MB stored so, 0.8 MB
#: compressed, in a 47 MB workspace). At 10M rows compression wins the ingest back (12.4 vs 13.0 s) and stores the
#: workspace in 0.26 GB instead of 1.0 GB: the trade is in the README and bench/ingest.py
TEXT_TYPE = "VARCHAR USING COMPRESSION uncompressed"
_SCHEMA_V1 = [
    "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    f"""CREATE TABLE samples (row_id BIGINT, id VARCHAR, text {TEXT_TYPE}, label VARCHAR, source VARCHAR,
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
MIGRATIONS: dict[int, list[str]] = {
    # v2: the decisions in force as a view: per row, its latest decision whose batch was not undone. The
    # recipe compiler joins it by name instead of carrying a copy of the rule.
    1: ["""CREATE VIEW decisions_in_force AS
           SELECT row_id, action, value FROM decisions
           WHERE action <> 'undo'
             AND batch NOT IN (SELECT CAST(value AS BIGINT) FROM decisions WHERE action = 'undo')
           QUALIFY row_number() OVER (PARTITION BY row_id ORDER BY seq DESC) = 1"""],
}


def _serialised(method: Callable) -> Callable:
    """Run a Store method under the workspace's write lock (see ``Store.write_lock``)."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        with self.write_lock:
            return method(self, *args, **kwargs)

    return wrapper


class Store:
    """Owner of one workspace database. Open it once per process; use a cursor per operation."""

    def __init__(self, path: str | Path, create: bool = True, memory_limit: str | None = None,
                 checkpoints: Any = None, holder: tuple[str, str] | None = None) -> None:
        """*holder* says who opens it, as (kind, words), e.g. ``("app", "the Curate app")``: written to
        :data:`HOLDER_FILE`, so another process that finds the workspace locked can say who has it."""
        self.path = Path(path).expanduser().resolve()
        db = self.path / DB_FILE
        if not db.exists():
            if (err := file_not_folder(self.path)) is not None:  # before "no workspace": it says what is wrong
                raise err
            if not create:
                raise CurateError(f"No workspace at {self.path}",
                                  "create one with `python -m curate_core ingest FILE --workspace DIR`, or check the path")
        #: True when the folder cannot be written (a read-only mount, another user's files): reading verbs work,
        #: the first write says why it cannot
        self.read_only = db.exists() and not _writable(self.path)
        if not self.read_only:
            self.path.mkdir(parents=True, exist_ok=True)
            for sub in ("checkpoints", "logs", "tmp"):
                (self.path / sub).mkdir(exist_ok=True)
        self.log_dir = self.path / "logs"
        self.checkpoint_dir = self.path / "checkpoints"
        #: where stages keep the parts of runs in progress: the workspace's folder, or any path or pyarrow
        #: filesystem URI (``CURATE_CHECKPOINTS``), e.g. storage every worker of a cluster can reach
        self.checkpoint_root = checkpoints or os.environ.get("CURATE_CHECKPOINTS") or str(self.checkpoint_dir)
        #: one writer at a time inside this process: row ids, decision sequence and batch numbers are max()+1
        #: (two app sessions acting at once would otherwise both take the same numbers). Hold it while adding rows.
        self.write_lock = threading.RLock()
        try:
            self._con = duckdb.connect(str(db), read_only=self.read_only)
        except duckdb.IOException as e:
            if "not a valid duckdb database" in str(e).lower():
                raise damaged_database(self.path, "not a DuckDB database file") from None
            raise _lock_error(self.path, e) from None
        _check_file_size(self._con, self.path, db)
        try:
            self._con.execute("SET temp_directory = ?", [str(self.path / "tmp") if not self.read_only
                                                         else tempfile.gettempdir()])
            self._con.execute(f"SET memory_limit = '{_memory_limit(memory_limit)}'")
            self._con.execute("SET preserve_insertion_order = true")
            self._migrate()
        except BaseException:  # a refused open (a newer schema, a bad memory limit) keeps no lock on the file
            self._con.close()
            raise
        if holder and not self.read_only:
            with contextlib.suppress(OSError):  # a courtesy to other processes: never a reason to fail the open
                (self.path / HOLDER_FILE).write_text(json.dumps({"pid": os.getpid(), "kind": holder[0],
                                                                 "what": holder[1]}))

    # ----------------------------------------------------------------------------------- lifecycle
    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for one operation (thread-safe: each thread gets its own)."""
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

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

    def _migrate(self) -> None:
        if self.read_only:  # nothing can be created or upgraded; a workspace this version cannot read says so
            version = int(self.get_meta("schema_version") or 0)
            if version != SCHEMA_VERSION:
                raise CurateError(f"This read-only workspace has schema version {version}; this curate_core "
                                  f"reads version {SCHEMA_VERSION} and would have to upgrade it",
                                  "open it once where its folder can be written, or copy it somewhere writable")
            return
        with self.cursor() as cur:
            has_meta = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' "
                                   "AND table_schema = 'main'").fetchall()[0][0]
            if not has_meta:
                cur.execute("BEGIN TRANSACTION")
                for stmt in _SCHEMA_V1:
                    cur.execute(stmt)
                cur.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('created', ?)", [now().isoformat()])
                cur.execute("COMMIT")
            version = int(cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])
            if version > SCHEMA_VERSION:
                raise CurateError(
                    f"This workspace has schema version {version}; this curate_core knows up to {SCHEMA_VERSION}",
                    "update the tool (git pull && pip install -r requirements.txt -e .)")
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

    def put_summary(self, name: str, summary: dict, cur=None) -> None:
        """Store a small JSON summary (e.g. a score's cutoff and flag count) for pages to show."""
        with _cursor(self, cur) as c:
            c.execute("INSERT OR REPLACE INTO summaries VALUES (?, ?)", [name, json.dumps(summary, default=json_default)])

    def get_summary(self, name: str) -> dict | None:
        with self.cursor() as cur:
            rows = cur.execute("SELECT json FROM summaries WHERE name = ?", [name]).fetchall()
        return json.loads(rows[0][0]) if rows else None

    # -------------------------------------------------------------------------------------- samples
    def count(self, table: str = "samples") -> int:
        with self.cursor() as cur:
            if not self.table_exists(table, cur):
                return 0
            return cur.execute(f"SELECT count(*) FROM {check_table(table)}").fetchall()[0][0]

    def sample_columns(self, cur=None) -> list[tuple[str, str]]:
        """(name, type) of every column of ``samples``, core columns first."""
        with _cursor(self, cur) as c:
            return samples_columns(c)

    def data_fingerprint(self) -> str:
        """Changes whenever rows are added: the hash of every ingest batch (file hash, mapping, rows)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT batch, sha256, mapping::VARCHAR, rows FROM ingests ORDER BY batch").fetchall()
        return _digest(rows)

    def row_ids(self) -> np.ndarray:
        """Every row_id, ascending (arrow, no pandas: cheap at 1M rows)."""
        with self.cursor() as cur:
            return cur.sql("SELECT row_id FROM samples ORDER BY row_id").to_arrow_table().column(0).to_numpy()

    def sample_range(self, columns: Sequence[str], lo: int, hi: int) -> pa.Table:
        """Some columns of the rows ``lo <= row_id < hi``, in row_id order, as Arrow (a stage's input batch)."""
        cols = self._sample_cols(columns)
        with self.cursor() as cur:
            return cur.sql(f"SELECT {cols} FROM samples WHERE row_id >= ? AND row_id < ? ORDER BY row_id",
                           params=[int(lo), int(hi)]).to_arrow_table()

    def sample_frame(self, columns: Sequence[str] = ("row_id", "id", "text", "label", "source"),
                     row_ids: Sequence[int] | None = None, limit: int | None = None) -> pd.DataFrame:
        """A pandas frame of some columns, for all rows or the given row_ids (in row_id order)."""
        cols = self._sample_cols(columns)
        with self.cursor() as cur:
            if row_ids is None:
                lim = f" LIMIT {int(limit)}" if limit is not None else ""
                return cur.execute(f"SELECT {cols} FROM samples ORDER BY row_id{lim}").df()
            with _registered(cur, "_want", _ids_table(row_ids)):
                return cur.execute(f"SELECT {cols} FROM samples SEMI JOIN _want USING (row_id) ORDER BY row_id").df()

    def _sample_cols(self, columns: Sequence[str]) -> str:
        have = [c for c, _ in self.sample_columns()]
        bad = [c for c in columns if c not in have]
        if bad:
            raise CurateError(f"Unknown column(s) {choices(bad)}", f"columns in this workspace: {choices(have)}")
        return ", ".join(quote_ident(c) for c in columns)

    # ---------------------------------------------------------------------------- per-row tables
    def table_exists(self, table: str, cur=None) -> bool:
        with _cursor(self, cur) as c:
            return bool(c.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main' "
                                  "AND database_name = current_database()", [table]).fetchall()[0][0])

    def table_columns(self, table: str) -> list[tuple[str, str]]:
        check_table(table)
        with self.cursor() as cur:
            return [(a, b) for a, b in cur.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
                "AND database_name = current_database() ORDER BY column_index", [table]).fetchall()]

    def replace_table(self, table: str, data: pa.Table | pd.DataFrame | None = None,
                      parquet_files: Sequence[Path | str] | Any = None, cur=None) -> int:
        """Atomically replace an output table with *data* or the rows of *parquet_files* (paths, or a pyarrow
        dataset of files on another filesystem); returns rows. With *cur*, inside the caller's transaction."""
        qt = check_table(table)

        def run(c) -> int:
            if parquet_files is not None:
                with parquet_relation(c, parquet_files) as (rel, params):
                    c.execute(f"CREATE OR REPLACE TABLE {qt} AS SELECT * FROM {rel}", params)
            else:
                with _registered(c, "_data", data):
                    c.execute(f"CREATE OR REPLACE TABLE {qt} AS SELECT * FROM _data")
            return c.execute(f"SELECT count(*) FROM {qt}").fetchall()[0][0]

        if cur is not None:
            return run(cur)
        with self.transaction() as c:
            return run(c)

    def drop_table(self, table: str, cur=None) -> None:
        with _cursor(self, cur) as c:
            c.execute(f"DROP TABLE IF EXISTS {check_table(table)}")

    def read_table(self, table: str, columns: Sequence[str] | None = None, order_by: str | None = "row_id",
                   arrow: bool = False) -> pd.DataFrame | pa.Table:
        """A whole table (some columns), ordered; as pandas, or as Arrow with *arrow* (no copies for vectors)."""
        qt = check_table(table)
        cols = "*" if columns is None else ", ".join(quote_ident(c) for c in columns)
        order = f" ORDER BY {quote_ident(order_by)}" if order_by else ""
        with self.cursor() as cur:
            rel = cur.sql(f"SELECT {cols} FROM {qt}{order}")
            return rel.to_arrow_table() if arrow else rel.df()

    def catalog(self) -> dict[str, tuple[str, str]]:
        """Every per-row column a page or recipe can use: column → (table, DuckDB type).

        ``samples`` first, then each existing feature table keyed by ``row_id`` (textstats, projection,
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
        for t in feature_tables():
            cols = tables.get(t)
            if not cols or "row_id" not in [c for c, _ in cols]:
                continue
            for c, typ in cols:
                out.setdefault(c, (t, typ))
        return out

    def rows(self, columns: Sequence[str], row_ids: Sequence[int] | None = None, limit: int | None = None,
             order_by: str = "row_id", descending: bool = False) -> pd.DataFrame:
        """A frame of any catalog columns (samples joined with output tables on row_id)."""
        cat = self.catalog()
        bad = [c for c in [*columns, order_by] if c not in cat]
        if bad:
            raise CurateError(f"Unknown column(s) {choices(bad)}" + (" to sort by" if bad == [order_by] else ""),
                              f"available: {choices(sorted(cat))}")
        joins = join_sql(cat[c][0] for c in [*columns, order_by])
        cols = ", ".join(column_ref(cat, c) for c in columns)
        direction = "DESC NULLS LAST" if descending else "ASC NULLS LAST"
        lim = f" LIMIT {int(limit)}" if limit is not None else ""
        sql = f"SELECT {cols} FROM samples {joins}"
        with self.cursor() as cur:
            if row_ids is None:
                return cur.execute(f"{sql} ORDER BY {column_ref(cat, order_by)} {direction}{lim}").df()
            with _registered(cur, "_want", _ids_table(row_ids)):
                return cur.execute(f"{sql} SEMI JOIN _want USING (row_id) "
                                   f"ORDER BY {column_ref(cat, order_by)} {direction}{lim}").df()

    # ------------------------------------------------------------------------------------- queries
    def query(self, sql: str, params: dict[str, Any] | Sequence[Any] | None = None,
              tables: dict[str, pa.Table] | None = None, df: bool = False) -> pa.Table | pd.DataFrame:
        """Run a read-only query a core module built (quoted identifiers, ``?`` or ``$name`` parameters) → Arrow
        (or pandas with *df*). *tables* are small Arrow tables registered under their names for the query."""
        with self.cursor() as cur, contextlib.ExitStack() as stack:
            for name, t in (tables or {}).items():
                stack.enter_context(_registered(cur, name, t))
            rel = cur.sql(sql, params=params or None)
            return rel.df() if df else rel.to_arrow_table()

    def query_df(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> pd.DataFrame:
        return self.query(sql, params, df=True)

    COPY_FORMATS = {"parquet": "(FORMAT parquet, COMPRESSION zstd)", "csv": "(FORMAT csv, HEADER true)",
                    "jsonl": "(FORMAT json)"}

    def copy(self, sql: str, path: Path, fmt: str, params: dict[str, Any] | None = None,
             tables: dict[str, pa.Table] | None = None) -> None:
        """``COPY (sql) TO path`` in *fmt*; with insertion order preserved the bytes depend only on the rows."""
        if fmt not in self.COPY_FORMATS:
            raise CurateError(f"Unknown export format {fmt!r}", f"use one of {choices(self.COPY_FORMATS)}")
        with self.cursor() as cur, contextlib.ExitStack() as stack:
            for name, t in (tables or {}).items():
                stack.enter_context(_registered(cur, name, t))
            cur.execute(f"COPY ({sql}) TO $_path {self.COPY_FORMATS[fmt]}", {**(params or {}), "_path": str(path)})

    def state(self, what: str) -> str:
        """A short hash that changes when *what* changes: ``decisions`` (every decision and undo),
        ``selections`` (names, sizes, times), ``tables`` (a feature table replaced, rows or columns added —
        what cached per-row data depends on; one catalog query, cheap enough for every slider move) or ``runs``
        (a stage run started, finished or was marked interrupted: stage status, run keys, summaries)."""
        with self.cursor() as cur:
            if what == "runs":
                rows = cur.execute("SELECT count(*), max(started), max(finished), "
                                   "sum(hash(run_key || ':' || coalesce(status, ''))) FROM runs").fetchall()
            elif what == "decisions":
                rows = cur.execute("SELECT count(*), coalesce(max(seq), 0) FROM decisions").fetchall()[0]
            elif what == "selections":
                rows = cur.execute("SELECT name, count(*), sum(row_id), max(created) FROM selections "
                                   "GROUP BY name ORDER BY name").fetchall()
            elif what == "tables":  # a replaced table gets a new oid; inserts change the size; ingest adds columns
                watch = {"samples", "ingests", *feature_tables()}
                rows = [r for r in cur.execute(
                    """SELECT table_name, table_oid, estimated_size, column_count FROM duckdb_tables()
                       WHERE schema_name = 'main' AND database_name = current_database() ORDER BY table_name""").fetchall()
                        if r[0] in watch]
            else:
                raise ValueError(f"no state {what!r}")
        return _digest(rows)

    # ------------------------------------------------------------------------------------------ runs
    def start_run(self, run_key: str, stage: str, version: str, params: dict, inputs: str, cur=None) -> None:
        with _cursor(self, cur) as c:
            c.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, 'running', ?, NULL, NULL, NULL)",
                      [run_key, stage, version, json.dumps(params, sort_keys=True, default=json_default), inputs, now()])

    def finish_run(self, run_key: str, status: str, summary: dict | None = None, error: str | None = None,
                   cur=None) -> None:
        with _cursor(self, cur) as c:
            c.execute("""UPDATE runs SET status = ?, finished = ?, summary = ?, error = ?
                         WHERE run_key = ? AND status = 'running'""",
                      [status, now(), json.dumps(summary or {}, default=json_default), error, run_key])

    def latest_runs(self, statuses: Sequence[str] | None = None) -> dict[str, dict]:
        """The most recent run of each stage (only among runs with one of *statuses*, if given), as dicts."""
        where, params = ("WHERE list_contains(?, status)", [list(statuses)]) if statuses else ("", [])
        with self.cursor() as cur:
            df = cur.execute(f"""SELECT * FROM runs {where}
                                 QUALIFY row_number() OVER (PARTITION BY stage ORDER BY started DESC) = 1""",
                             params).df()
        return {r["stage"]: r for r in df.to_dict("records")}

    def done_run_keys(self) -> dict[str, str]:
        """stage → run key of its latest finished run (for export manifests and page caches)."""
        with self.cursor() as cur:
            rows = cur.execute("""SELECT stage, run_key FROM runs WHERE status = 'done'
                                  QUALIFY row_number() OVER (PARTITION BY stage ORDER BY finished DESC) = 1
                                  ORDER BY stage""").fetchall()
        return {a: b for a, b in rows}

    def run_history(self, limit: int = 50) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute(f"""SELECT stage, status, started, finished, run_key, params::VARCHAR AS params, error
                                   FROM runs ORDER BY started DESC LIMIT {int(limit)}""").df()

    # ------------------------------------------------------------------------------------- decisions
    @_serialised
    def decide(self, row_ids: Sequence[int], action: str, value: str | Sequence[str] | None = None,
               reason: str = "", who: str | None = None) -> int:
        """Append one decision batch; returns its number (one undo reverts it all). *value* is the new label
        of a relabel: one for every row, or a list with one per row (e.g. "relabel to the suggested label")."""
        if action not in ACTIONS:
            raise CurateError(f"Unknown action {action!r}", f"use one of {choices(ACTIONS)}")
        if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
            if action != "relabel":
                raise CurateError(f"One value per row is for relabel decisions, not {action!r}")
            ids = np.asarray(list(row_ids), dtype=np.int64)
            vals: Any = [str(v) for v in value]
            if ids.size == 0 or ids.size != len(vals) or np.unique(ids).size != ids.size:
                raise CurateError("Relabel needs one new label per chosen row (each row once)")
        else:
            if action == "relabel" and (value is None or str(value) == ""):
                raise CurateError("A relabel decision needs the new label", "pass value='<label>'")
            ids = np.unique(np.asarray(list(row_ids), dtype=np.int64))
            vals = None if value is None else str(value)
            if ids.size == 0:
                raise CurateError("No rows chosen for the decision", "select at least one row")
        with self.transaction() as cur:
            known = cur.execute("SELECT count(*) FROM samples WHERE list_contains(?, row_id)",
                                [ids.tolist()]).fetchall()[0][0]
            if known != ids.size:
                raise CurateError(f"{ids.size - known} of the chosen rows do not exist in this workspace")
            seq0, batch = self._next_numbers(cur)
            df = pd.DataFrame({"seq": np.arange(seq0, seq0 + ids.size, dtype=np.int64), "batch": batch, "row_id": ids,
                               "action": action, "value": vals, "reason": reason, "who": who or _user(),
                               "decided_at": now()})
            with _registered(cur, "_dec", df):
                cur.execute("INSERT INTO decisions SELECT seq, batch, row_id, action, value, reason, who, decided_at "
                            "FROM _dec")
        return int(batch)

    @staticmethod
    def _next_numbers(cur) -> tuple[int, int]:
        """(next sequence number, next batch number) of the decision log; callers hold the write lock."""
        seq, batch = cur.execute("SELECT coalesce(max(seq), 0) + 1, coalesce(max(batch), 0) + 1 FROM decisions"
                                 ).fetchall()[0]
        return int(seq), int(batch)

    @_serialised
    def undo(self) -> int | None:
        """Undo the most recent decision batch not yet undone (by appending an `undo` entry)."""
        with self.transaction() as cur:
            row = cur.execute("""SELECT max(batch) FROM decisions WHERE action <> 'undo' AND batch NOT IN
                                 (SELECT CAST(value AS BIGINT) FROM decisions WHERE action = 'undo')""").fetchall()[0]
            if row[0] is None:
                return None
            target = int(row[0])
            seq, batch = self._next_numbers(cur)
            cur.execute("INSERT INTO decisions VALUES (?, ?, NULL, 'undo', ?, '', ?, ?)",
                        [seq, batch, str(target), _user(), now()])
        return target

    def current_decisions(self) -> pd.DataFrame:
        """Per row, the latest decision still in force: (row_id, action, value)."""
        with self.cursor() as cur:
            return cur.execute("SELECT * FROM decisions_in_force ORDER BY row_id").df()

    def decision_log(self, limit: int = 200) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute(f"SELECT * FROM decisions ORDER BY seq DESC LIMIT {int(limit)}").df()

    # ------------------------------------------------------------------------- selections, recipes
    @_serialised
    def save_selection(self, name: str, row_ids: Sequence[int]) -> int:
        name = _check_name(name, "selection")
        ids = np.unique(np.asarray(list(row_ids), dtype=np.int64))
        with self.transaction() as cur:
            cur.execute("DELETE FROM selections WHERE name = ?", [name])
            with _registered(cur, "_sel", pd.DataFrame({"name": name, "row_id": ids, "created": now()})):
                cur.execute("INSERT INTO selections SELECT name, row_id, created FROM _sel")
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
            cur.execute("INSERT OR REPLACE INTO recipes VALUES (?, ?, ?)", [name, json.dumps(recipe, sort_keys=True), now()])

    def recipe(self, name: str) -> dict | None:
        with self.cursor() as cur:
            rows = cur.execute("SELECT json FROM recipes WHERE name = ?", [name]).fetchall()
        return json.loads(rows[0][0]) if rows else None

    def recipe_names(self) -> list[str]:
        with self.cursor() as cur:
            return [r[0] for r in cur.execute("SELECT name FROM recipes ORDER BY name").fetchall()]


# ------------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _cursor(store: Store, cur=None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The caller's cursor (inside its transaction), or a new one."""
    if cur is not None:
        yield cur
    else:
        with store.cursor() as c:
            yield c


def samples_columns(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(name, type) of every column of ``samples`` in table order, read on *cur* (inside its transaction)."""
    # duckdb_columns(): ~5x faster than information_schema (read per slider move)
    return [(a, b) for a, b in cur.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'samples' "
        "AND schema_name = 'main' AND database_name = current_database() ORDER BY column_index").fetchall()]


@contextlib.contextmanager
def _registered(cur, name: str, obj: Any) -> Iterator[None]:
    """A Python object (Arrow / pandas) visible to SQL as *name* for the duration of the block."""
    cur.register(name, obj)
    try:
        yield
    finally:
        # in a transaction a failed statement has aborted, unregister fails too ("Current transaction is aborted")
        # and its error would replace the real one (a read-only folder, a full disk) with one that reads as a bug
        with contextlib.suppress(duckdb.TransactionException):
            cur.unregister(name)


@contextlib.contextmanager
def parquet_relation(cur, source: Sequence[Path | str] | Any) -> Iterator[tuple[str, list]]:
    """(FROM-clause text, its parameters) reading Parquet files: local paths through DuckDB's own reader, or a
    pyarrow dataset (files on another filesystem) registered for the statement."""
    if isinstance(source, (list, tuple)):
        files = [str(p) for p in source]
        if not files:
            raise ValueError("no parquet files to import")
        yield "read_parquet(?)", [files]
        return
    name = f"_parts_{id(source):x}"
    with _registered(cur, name, source):
        yield name, []


def _ids_table(row_ids: Sequence[int]) -> pa.Table:
    return pa.table({"row_id": pa.array(np.asarray(row_ids, dtype=np.int64))})


def _digest(rows: Any) -> str:
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]


def _user() -> str:
    return os.environ.get("USER") or "user"


def _check_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise CurateError(f"A {what} needs a name (1–200 characters)", f"give the {what} a name that is not empty")
    return name


def _memory_limit(explicit: str | None) -> str:
    value = explicit or os.environ.get("CURATE_MEMORY_LIMIT", "2GB")
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value.strip(), re.I):
        raise CurateError(f"Bad memory limit {value!r}", "use e.g. 512MB or 2GB")
    return value.strip()


def truncation(con: duckdb.DuckDBPyConnection, db: Path) -> str | None:
    """Why the database file *db* is truncated — it holds fewer bytes than the blocks in use need — or None (also
    while a write-ahead log is pending). Cheap: the file's size against one pragma.

    Blocks in use, not all blocks: DuckDB trims free blocks off the end of its file while its header still counts
    them (a healthy workspace, 359 blocks counted, 358 in use, the file one block short, read as damaged)."""
    if Path(str(db) + ".wal").exists():
        return None
    row = con.execute("PRAGMA database_size").fetchall()[0]
    block_size, used = int(row[2]), int(row[4])
    size = db.stat().st_size
    if size < HEADER_BYTES + used * block_size:
        return f"truncated: {size:,} bytes where its {used:,} blocks in use need {HEADER_BYTES + used * block_size:,}"
    return None


def _check_file_size(con: duckdb.DuckDBPyConnection, path: Path, db: Path) -> None:
    """A truncated database file is found at open, not by the first query that reads past its end."""
    why = truncation(con, db)
    if why is not None:
        con.close()
        raise damaged_database(path, why)


def file_not_folder(path: Path) -> CurateError | None:
    """The error for a workspace path that is a file (the database file itself, say), or None."""
    if not path.exists() or path.is_dir():
        return None
    hint = (f"give the folder that holds it: {path.parent}" if path.name == DB_FILE else
            "a workspace is a folder (holding curate.duckdb): give that folder, or a new folder to create one")
    return CurateError(f"{path} is a file, not a workspace directory", hint)


def _writable(path: Path) -> bool:
    """Can this process create files in *path* (not just: do the permission bits say so — a read-only mount, or
    root on a read-only bind, only shows when trying)?"""
    try:
        fd, name = tempfile.mkstemp(prefix=".write-test-", dir=path)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def _lock_error(path: Path, exc: Exception) -> CurateError:
    msg = str(exc)
    if "could not set lock" not in msg.lower():  # not "lock" alone: "in block at location …" is damage
        if any(w in msg.lower() for w in ("corrupt", "checksum", "could not read enough bytes")):
            return damaged_database(path, msg.splitlines()[0])
        return CurateError(f"Could not open the workspace database in {path}: {msg.splitlines()[0]}")
    pid = re.search(r"PID (\d+)", msg)
    kind, what = holder(path, int(pid.group(1))) if pid else (None, None)
    who = f" ({what + ', ' if what else ''}process {pid.group(1)})" if pid else ""
    hint = {"run": "wait until that run has finished (its terminal shows the progress and an ETA), then try again",
            "app": "do it in the app (its Overview runs the pipeline, the Export page exports), or stop the app "
                   "(Ctrl-C where it runs) and try again"}.get(
        kind or "", "close the app or the other command that uses this workspace, then try again")
    err = CurateError(f"The workspace {path} is open in another process{who}; DuckDB allows one writer at a time",
                      hint)
    err.pid = int(pid.group(1)) if pid else None  # type: ignore[attr-defined]  # lets `run` wait for another run
    err.holder = kind  # type: ignore[attr-defined]  # "run", "app", "cli" or None: pages say it in their words
    return err


def holder(path: Path, pid: int) -> tuple[str | None, str | None]:
    """Who process *pid*, which holds the workspace at *path*, is: (kind, words) — ``("run", "a `curate run`")``,
    ``("app", "the Curate app")``, ``("cli", "a `curate info`")`` — or (None, None).

    From the workspace's :data:`HOLDER_FILE` when it names that pid, else from the process's command line
    (Linux /proc; nothing where that cannot be read)."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        said = json.loads((path / HOLDER_FILE).read_text())
        if int(said["pid"]) == pid:
            return str(said["kind"]), str(said["what"])
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None, None
    for i, a in enumerate(args):
        if a == "curate_core" or os.path.basename(a) == "curate":  # python -m curate_core …, the console script
            cmd = next((x for x in args[i + 1:] if x and not x.startswith("-")), "")
            return ("run" if cmd == "run" else "cli"), f"a `curate {cmd}`"
        if os.path.basename(a) == "streamlit":  # streamlit run app.py, python -m streamlit run app.py
            return "app", "the Curate app"
    return None, None


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def json_default(o: Any) -> Any:
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
