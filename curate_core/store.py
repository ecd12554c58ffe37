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
from typing import Any, Callable, Iterator, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import CurateError, choices

DB_FILE = "curate.duckdb"
SCHEMA_VERSION = 1

#: columns every samples row has; everything else in `samples` came from the user's file.
CORE_COLUMNS = ("row_id", "id", "text", "label", "source", "n_tokens")

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
        self._lock = threading.RLock()
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
            ).fetchone()[0]
            if not has_meta:
                cur.execute("BEGIN TRANSACTION")
                for stmt in _SCHEMA_V1:
                    cur.execute(stmt)
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)",
                            [str(SCHEMA_VERSION), _now().isoformat()])
                cur.execute("COMMIT")
                return
            version = int(cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
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
            row = cur.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.cursor() as cur:
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def put_summary(self, name: str, summary: dict) -> None:
        """Store a small JSON summary (e.g. a score's cutoff and flag count) for pages to show."""
        with self.cursor() as cur:
            cur.execute("INSERT OR REPLACE INTO summaries VALUES (?, ?)", [name, json.dumps(summary, default=_json_default)])

    def get_summary(self, name: str) -> dict | None:
        with self.cursor() as cur:
            row = cur.execute("SELECT json FROM summaries WHERE name = ?", [name]).fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------------------------- reading files
    @staticmethod
    def csv_reader(path: Path, delim: str) -> FileReader:
        return FileReader(
            "read_csv(?, all_varchar = true, header = true, delim = ?, quote = '\"', escape = '\"', "
            "max_line_size = 268435456, sample_size = -1)",
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
    def stage_input(self, cur, reader: FileReader, select: Sequence[tuple[str, str]]) -> int:
        """Load an input into the temp table ``_ingest`` with the given (expression, alias) columns.

        ``rowid + 1`` is the 1-based row number in the input (DuckDB keeps insertion order). Returns rows read.
        """
        src = _bind(cur, reader)
        cols = ", ".join(f"{expr} AS {quote_ident(alias)}" for expr, alias in select)
        cur.execute("DROP TABLE IF EXISTS _ingest")
        cur.execute(f"CREATE TEMP TABLE _ingest AS SELECT {cols} FROM {src}", reader.params)
        return cur.execute("SELECT count(*) FROM _ingest").fetchone()[0]

    def staged_problems(self, cur, sample: int = 5) -> dict:
        """Counts and examples of rows in ``_ingest`` the ingest policy cares about."""
        q = lambda sql: cur.execute(sql).fetchall()  # noqa: E731
        empty = q("SELECT rowid + 1 FROM _ingest WHERE text IS NULL OR trim(text, ' \t\r\n') = '' ORDER BY rowid")
        null_ids = q("SELECT rowid + 1 FROM _ingest WHERE id IS NULL OR id = '' ORDER BY rowid LIMIT 5")
        dup_in_file = q(f"""SELECT id, count(*) FROM _ingest WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1
                            ORDER BY min(rowid) LIMIT {int(sample)}""")
        n_dup_in_file = q("""SELECT count(*) FROM (SELECT id FROM _ingest WHERE id IS NOT NULL
                             GROUP BY id HAVING count(*) > 1)""")[0][0]
        clash = q(f"""SELECT i.id FROM _ingest i SEMI JOIN samples s ON s.id = i.id
                      ORDER BY i.rowid LIMIT {int(sample)}""")
        n_clash = q("SELECT count(*) FROM _ingest i SEMI JOIN samples s ON s.id = i.id")[0][0]
        return {
            "empty_text_rows": [r[0] for r in empty],
            "null_id_rows": [r[0] for r in null_ids],
            "dup_ids": [(r[0], r[1]) for r in dup_in_file],
            "n_dup_ids": n_dup_in_file,
            "clashing_ids": [r[0] for r in clash],
            "n_clashing_ids": n_clash,
        }

    def infer_types(self, cur, columns: Sequence[str]) -> dict[str, str]:
        """For VARCHAR columns of ``_ingest``: the narrowest type every non-null value casts to."""
        if not columns:
            return {}
        checks = []
        for c in columns:
            qc = quote_ident(c)
            for t in ("BIGINT", "DOUBLE", "BOOLEAN"):
                checks.append(f"count(*) FILTER (WHERE {qc} IS NOT NULL AND TRY_CAST({qc} AS {t}) IS NULL)")
            checks.append(f"count({qc})")
        row = cur.execute(f"SELECT {', '.join(checks)} FROM _ingest").fetchone()
        out = {}
        for i, c in enumerate(columns):
            bad_int, bad_float, bad_bool, nonnull = row[4 * i: 4 * i + 4]
            if nonnull == 0:
                out[c] = "VARCHAR"
            elif bad_int == 0:
                out[c] = "BIGINT"
            elif bad_float == 0:
                out[c] = "DOUBLE"
            elif bad_bool == 0:
                out[c] = "BOOLEAN"
            else:
                out[c] = "VARCHAR"
        return out

    def sample_columns(self, cur=None) -> list[tuple[str, str]]:
        """(name, type) of every column of ``samples``, core columns first."""
        def run(c):
            return c.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'samples' AND table_schema = 'main' ORDER BY ordinal_position"
            ).fetchall()
        if cur is not None:
            return [(a, b) for a, b in run(cur)]
        with self.cursor() as c:
            return [(a, b) for a, b in run(c)]

    def commit_staged(self, cur, extra_types: dict[str, str], batch_info: dict) -> tuple[int, int]:
        """Append the non-empty rows of ``_ingest`` to ``samples``; returns (rows added, first row_id)."""
        existing = dict(self.sample_columns(cur))
        for col, typ in extra_types.items():
            qc = quote_ident(col)
            if col not in existing:
                cur.execute(f"ALTER TABLE samples ADD COLUMN {qc} {typ}")
            elif existing[col] != typ and existing[col] != "VARCHAR":
                # the same column name with another type in an earlier file: keep both as text
                cur.execute(f"ALTER TABLE samples ALTER {qc} TYPE VARCHAR")
                extra_types[col] = "VARCHAR"
            elif existing[col] == "VARCHAR":
                extra_types[col] = "VARCHAR"
        first = cur.execute("SELECT coalesce(max(row_id), -1) + 1 FROM samples").fetchone()[0]
        names = ["row_id", "id", "text", "label", "source", "n_tokens", *extra_types]
        ws = "replace(replace(replace(text, chr(10), ' '), chr(9), ' '), chr(13), ' ')"
        exprs = [
            "? + row_number() OVER (ORDER BY rowid) - 1", "id", "text", "label", "source",
            f"len(list_filter(string_split({ws}, ' '), lambda w: w <> ''))",
            *[f"TRY_CAST({quote_ident(c)} AS {t})" if t != "VARCHAR" else f"CAST({quote_ident(c)} AS VARCHAR)"
              for c, t in extra_types.items()],
        ]
        cols = ", ".join(quote_ident(n) for n in names)
        cur.execute(
            f"""INSERT INTO samples ({cols}) SELECT {', '.join(exprs)} FROM _ingest
                WHERE text IS NOT NULL AND trim(text, ' \t\r\n') <> '' ORDER BY rowid""",
            [first],
        )
        added = cur.execute("SELECT count(*) FROM samples WHERE row_id >= ?", [first]).fetchone()[0]
        batch = cur.execute("SELECT coalesce(max(batch), 0) + 1 FROM ingests").fetchone()[0]
        cur.execute(
            "INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [batch, batch_info["path"], batch_info["sha256"], batch_info["format"], json.dumps(batch_info["mapping"]),
             added, batch_info["skipped"], first, _now()],
        )
        cur.execute("DROP TABLE IF EXISTS _ingest")
        return added, first

    # ----------------------------------------------------------------------------------- samples
    def count(self, table: str = "samples") -> int:
        with self.cursor() as cur:
            if not self.table_exists(table, cur):
                return 0
            return cur.execute(f"SELECT count(*) FROM {_check_table(table)}").fetchone()[0]

    def data_fingerprint(self) -> str:
        """Changes whenever rows are added: the hash of every ingest batch (file hash, mapping, rows)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT batch, sha256, mapping::VARCHAR, rows FROM ingests ORDER BY batch").fetchall()
        return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]

    def overview(self) -> dict:
        """Row count, label/source counts: what `info` and the app's overview show."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT count(*), count(label), count(DISTINCT label) FROM samples").fetchone()
            labels = cur.execute(
                "SELECT label, count(*) AS n FROM samples WHERE label IS NOT NULL GROUP BY label ORDER BY n DESC, label"
            ).fetchall()
            sources = cur.execute(
                "SELECT source, count(*) AS n FROM samples GROUP BY source ORDER BY min(row_id)"
            ).fetchall()
            tokens = cur.execute("SELECT coalesce(sum(n_tokens), 0) FROM samples").fetchone()[0]
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

    def latest_runs(self) -> dict[str, dict]:
        """The most recent run of each stage, as dicts."""
        with self.cursor() as cur:
            df = cur.execute(
                """SELECT * FROM runs QUALIFY row_number() OVER (PARTITION BY stage ORDER BY started DESC) = 1"""
            ).df()
        return {r["stage"]: r for r in df.to_dict("records")}

    def done_run(self, run_key: str) -> dict | None:
        """The finished run with this key, if its outputs are the ones in the tables now: it must be the latest
        finished run of its stage (after runs A, B of a stage, asking for A again must recompute, not reuse)."""
        with self.cursor() as cur:
            df = cur.execute(
                """SELECT * FROM runs r WHERE run_key = ? AND status = 'done'
                   AND finished = (SELECT max(finished) FROM runs o WHERE o.stage = r.stage AND o.status = 'done')
                   LIMIT 1""", [run_key]
            ).df()
        return None if df.empty else df.to_dict("records")[0]

    def run_history(self, limit: int = 50) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute(
                f"""SELECT stage, status, started, finished, run_key, params::VARCHAR AS params, error
                    FROM runs ORDER BY started DESC LIMIT {int(limit)}"""
            ).df()

    # ---------------------------------------------------------------------------- output tables
    def table_exists(self, table: str, cur=None) -> bool:
        sql = "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'"
        if cur is not None:
            return bool(cur.execute(sql, [table]).fetchone()[0])
        with self.cursor() as c:
            return bool(c.execute(sql, [table]).fetchone()[0])

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
                "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position", [table]).fetchall()]

    #: per-row output tables whose columns are not features (bulky or internal)
    NON_FEATURE_TABLES = {"embeddings", "embed_cache", "projection5"}

    def catalog(self) -> dict[str, tuple[str, str]]:
        """Every per-row column a page or recipe can use: column → (table, DuckDB type).

        ``samples`` first, then each existing output table keyed by ``row_id`` (textstats, projection,
        clusters, scores …). A name already taken by an earlier table is not repeated.
        """
        out: dict[str, tuple[str, str]] = {c: ("samples", t) for c, t in self.sample_columns()}
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position").fetchall()
        tables: dict[str, list[tuple[str, str]]] = {}
        for t, c, typ in rows:
            tables.setdefault(t, []).append((c, typ))
        for t in _output_tables:
            cols = tables.get(t)
            if t in self.NON_FEATURE_TABLES or not cols or "row_id" not in [c for c, _ in cols]:
                continue
            for c, typ in cols:
                out.setdefault(c, (t, typ))
        return out

    def rows(self, columns: Sequence[str], row_ids: Sequence[int] | None = None, limit: int | None = None,
             order_by: str = "row_id", descending: bool = False) -> pd.DataFrame:
        """A frame of any catalog columns (samples joined with output tables on row_id)."""
        cat = self.catalog()
        bad = [c for c in columns if c not in cat]
        if bad:
            raise CurateError(f"Unknown column(s) {choices(bad)}", f"available: {choices(sorted(cat))}")
        if order_by not in cat:
            raise CurateError(f"Unknown column {order_by!r} to sort by", f"available: {choices(sorted(cat))}")
        need = {cat[c][0] for c in [*columns, order_by]} - {"samples"}
        joins = " ".join(f"LEFT JOIN {_check_table(t)} USING (row_id)" for t in sorted(need))
        cols = ", ".join(f"{_check_table(cat[c][0])}.{quote_ident(c)}" if c != "row_id" else "samples.row_id"
                         for c in columns)
        order = f"{_check_table(cat[order_by][0])}.{quote_ident(order_by)}" if order_by != "row_id" else "samples.row_id"
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
        ids = t.column("row_id").to_numpy()
        vec = t.column("vec").combine_chunks()
        dim = vec.type.list_size
        return ids, np.asarray(vec.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)

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
        need = sorted({cat[c][0] for c in cols + nz} - {"samples"})
        joins = " ".join(f"LEFT JOIN {_check_table(t)} USING (row_id)" for t in need)
        ref = lambda c: f"{_check_table(cat[c][0])}.{quote_ident(c)}"  # noqa: E731
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
        need = sorted({cat[c][0] for c in cols} - {"samples", "projection"})
        joins = " ".join(f"LEFT JOIN {_check_table(t)} USING (row_id)" for t in need)
        sel = "".join(f", {_check_table(cat[c][0])}.{quote_ident(c)}" for c in cols)
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
        who = who or os.environ.get("USER") or "user"
        with self.transaction() as cur:
            known = cur.execute(
                "SELECT count(*) FROM samples WHERE list_contains(?, row_id)", [ids.tolist()]
            ).fetchone()[0]
            if known != ids.size:
                raise CurateError(f"{ids.size - known} of the chosen rows do not exist in this workspace")
            seq0, batch = cur.execute(
                "SELECT coalesce(max(seq), 0) + 1, coalesce(max(batch), 0) + 1 FROM decisions").fetchone()
            df = pd.DataFrame({
                "seq": np.arange(seq0, seq0 + ids.size, dtype=np.int64), "batch": batch, "row_id": ids,
                "action": action, "value": None if value is None else str(value), "reason": reason, "who": who,
                "decided_at": _now(),
            })
            cur.register("_dec", df)
            cur.execute("INSERT INTO decisions SELECT seq, batch, row_id, action, value, reason, who, decided_at FROM _dec")
            cur.unregister("_dec")
        return int(batch)

    def undo(self) -> int | None:
        """Undo the most recent decision batch not yet undone (by appending an `undo` entry)."""
        with self.transaction() as cur:
            row = cur.execute(
                """SELECT max(batch) FROM decisions WHERE action <> 'undo'
                   AND batch NOT IN (SELECT CAST(value AS BIGINT) FROM decisions WHERE action = 'undo')"""
            ).fetchone()
            if row[0] is None:
                return None
            target = int(row[0])
            seq, batch = cur.execute(
                "SELECT coalesce(max(seq), 0) + 1, coalesce(max(batch), 0) + 1 FROM decisions").fetchone()
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

    def delete_selection(self, name: str) -> None:
        with self.cursor() as cur:
            cur.execute("DELETE FROM selections WHERE name = ?", [name])

    def save_recipe(self, name: str, recipe: dict) -> None:
        name = _check_name(name, "recipe")
        with self.cursor() as cur:
            cur.execute("INSERT OR REPLACE INTO recipes VALUES (?, ?, ?)",
                        [name, json.dumps(recipe, sort_keys=True), _now()])

    def recipe(self, name: str) -> dict | None:
        with self.cursor() as cur:
            row = cur.execute("SELECT json FROM recipes WHERE name = ?", [name]).fetchone()
        return json.loads(row[0]) if row else None

    def recipe_names(self) -> list[str]:
        with self.cursor() as cur:
            return [r[0] for r in cur.execute("SELECT name FROM recipes ORDER BY name").fetchall()]

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
