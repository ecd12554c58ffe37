"""`curate check`: is this workspace sound? What can still be read when it is not?

Opens the database read-only, without the checks a normal open makes (so a damaged file can still be examined),
and reports: the file against its own header (truncation), the schema version, every table read in full (every
column of every row, so a damaged block is met here, not in the middle of an export), per-row tables whose row
count differs from ``samples`` (stale after an ingest: the next run recomputes them), and checkpoint folders no
run will resume (left by crashes or abandoned parameters) with their size.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import duckdb

from .errors import CurateError
from .store import DB_FILE, SCHEMA_VERSION, _lock_error, file_not_folder, quote_ident, truncation

#: tables with one row per sample once their stage has run
PER_ROW = ("embeddings", "projection", "clusters", "scores", "textstats")


def check_workspace(path: str | Path) -> dict[str, Any]:
    """A report: ``ok`` (no damage found), ``problems`` (sentences), ``notes`` (not damage), and the details."""
    path = Path(path).expanduser().resolve()
    db = path / DB_FILE
    if not db.exists():
        raise file_not_folder(path) or CurateError(f"No workspace at {path}",
                                                   "give the folder that holds curate.duckdb")
    out: dict[str, Any] = {"workspace": str(path), "file_bytes": db.stat().st_size, "problems": [], "notes": [],
                           "tables": {}}
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as e:
        msg = str(e).splitlines()[0]
        if "could not set lock" in msg.lower():
            raise _lock_error(path, e) from None
        out["problems"].append(f"the database file cannot be opened: {msg}")
        out["ok"] = False
        return out
    try:
        _check_file(con, db, out)
        _check_tables(con, out)
        _check_checkpoints(con, path, out)
    finally:
        con.close()
    out["ok"] = not out["problems"]
    return out


def _check_file(con: duckdb.DuckDBPyConnection, db: Path, out: dict) -> None:
    why = truncation(con, db)
    if why is not None:
        out["problems"].append(f"the file is {why}")
    try:
        version = int(con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])
        out["schema_version"] = version
        if version > SCHEMA_VERSION:
            out["problems"].append(f"schema version {version} is newer than this curate_core knows "
                                   f"({SCHEMA_VERSION}): upgrade curate_core")
    except duckdb.Error as e:
        out["problems"].append(f"the schema version cannot be read: {str(e).splitlines()[0]}")


def table_digests(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """Per table: ``{"rows", "ok", "digest"}``, or ``{"ok": False, "error"}`` for a table that cannot be read in
    full. The digest changes when any value does: a fingerprint (the tests compare workspaces with it)."""
    names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                                       "AND table_type = 'BASE TABLE' AND table_catalog = current_database() "
                                       "ORDER BY table_name").fetchall()]
    tables: dict[str, dict[str, Any]] = {}
    for name in names:
        t = quote_ident(name)
        try:  # hashing every column reads every block of the table, checksums included; the hash of each whole
            # row as well, so two rows trading values (labels swapped, vectors under the wrong row_id) show too
            got = con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))), sum(hash(_curate_row)) "
                              f"FROM {t} AS _curate_row").fetchall()[0]
            tables[name] = {"rows": int(got[0]), "ok": True,
                            "digest": hashlib.sha256(repr(got[1:]).encode()).hexdigest()[:16]}
        except duckdb.Error as e:
            tables[name] = {"ok": False, "error": str(e).splitlines()[0]}
    return tables


def _check_tables(con: duckdb.DuckDBPyConnection, out: dict) -> None:
    out["tables"] = table_digests(con)
    out["problems"] += [f"table {name} cannot be read in full: {t['error']}" for name, t in out["tables"].items()
                        if not t["ok"]]
    n = out["tables"].get("samples", {}).get("rows")
    for name in PER_ROW:
        got = out["tables"].get(name, {}).get("rows")
        if n is not None and got is not None and got != n:
            out["notes"].append(f"{name} has {got:,} rows for {n:,} samples: stale since an ingest, the next "
                                "`run` recomputes it")


def _check_checkpoints(con: duckdb.DuckDBPyConnection, path: Path, out: dict) -> None:
    root = path / "checkpoints"
    if not root.is_dir():
        return
    try:
        live = {r[0] for r in con.execute("SELECT run_key FROM runs QUALIFY row_number() OVER "
                                          "(PARTITION BY run_key ORDER BY started DESC) = 1 "
                                          "AND status <> 'done'").fetchall()}
    except duckdb.Error:
        return
    orphans = [d for stage in sorted(root.iterdir()) if stage.is_dir() for d in sorted(stage.iterdir())
               if d.is_dir() and d.name not in live]
    size = sum(f.stat().st_size for d in orphans for f in d.rglob("*") if f.is_file())
    out["orphaned_checkpoints"] = {"folders": [str(d.relative_to(path)) for d in orphans], "bytes": size}
    if orphans:
        out["notes"].append(f"{len(orphans):,} checkpoint folder(s) no run will resume ({size:,} bytes): safe to "
                            f"delete, e.g. rm -r {root}/<stage>/<run_key>")


def report_lines(r: dict) -> list[str]:
    """The report for a terminal."""
    lines = [f"workspace  {r['workspace']}  ({r['file_bytes']:,} bytes, schema {r.get('schema_version', '?')})"]
    for name, t in r["tables"].items():
        lines.append(f"  {name:<14} {t['rows']:>12,} rows" if t["ok"] else f"  {name:<14} unreadable: {t['error']}")
    lines += [f"note: {n}" for n in r["notes"]]
    lines += [f"problem: {p}" for p in r["problems"]]
    lines.append("ok: no damage found" if r["ok"] else "damaged: restore curate.duckdb from a backup, or make a new "
                 "workspace and ingest the data again (recipe files and exports are not affected)")
    return lines
