"""Selection → data file + ``recipe.json`` + ``manifest.json`` in one folder, reproducibly.

The data file is written by DuckDB's ``COPY`` in row_id order with insertion order preserved, so the same
recipe on the same workspace gives byte-identical files (also from a fresh process). ``recipe.json`` is the
normalised recipe (every default spelled out, so it replays the same even if defaults change);
``manifest.json`` says what was written and from what: row counts, per-group counts, the workspace fingerprint
(data, stage run keys, decisions, selections), the sha256 of each file, package versions and the time.

Safety: files go only into the chosen folder under fixed names; a folder given relative to a base folder (the
app's export folder) must stay inside it (``..``, absolute paths and symlinks out are refused); existing files
are not replaced without ``force``; the recipe is checked (and the selection computed) before anything is
created, so a bad recipe writes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import os
import platform
import re
import shlex
import tempfile
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from .errors import CurateError, choices
from .select import Counts, Recipe, _checked, _store, export_sql, live_counts, load_recipe, select
from .store import CORE_COLUMNS, Store, column_ref, join_sql, quote_ident
from .version import VERSION

FORMATS = {"parquet": "data.parquet", "csv": "data.csv", "jsonl": "data.jsonl"}
RECIPE_FILE = "recipe.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


@dataclass
class ExportResult:
    out: Path
    files: list[dict]  # name, rows, bytes, sha256
    manifest: dict
    counts: Counts

    def lines(self) -> list[str]:
        m = self.manifest
        out = [f"wrote {m['rows']:,} rows ({m['tokens']:,} tokens) to {self.out}"]
        out += [f"  {f['name']}  {f['bytes']:,} bytes  sha256 {f['sha256'][:16]}…" for f in self.files]
        out += [f"warning: {w}" for w in m.get("warnings", [])]
        return out


def out_dir(out: str | Path, base: str | Path | None = None) -> Path:
    """The folder an export writes to.

    Without *base* (the CLI) *out* is the user's chosen folder, taken as given. With *base* (the app), *out* is
    a folder name inside *base*: absolute paths, ``..`` and anything that resolves outside *base* (symlinks)
    are refused.
    """
    if base is None:
        if not str(out).strip():  # Path("") is the current folder: an empty --out must not write there
            raise CurateError("The export folder is empty", "give --out a folder path (it is created if missing)")
        p = Path(out).expanduser()
        if p.exists() and not p.is_dir():
            raise CurateError(f"{p} exists and is not a folder", "give --out a folder path (it is created if missing)")
        return p.resolve()
    root = Path(base).expanduser().resolve()
    name = str(out).strip()
    parts = re.split(r"[\\/]", name)  # raw components: Path() would quietly drop "." and "a//b"
    if not name or Path(name).is_absolute() or any(x in ("", ".", "..") for x in parts) or name.startswith("~"):
        raise CurateError(f"Export folder name {name!r} is not allowed",
                          f"give a plain folder name (letters, digits, . _ -); it is created inside {root}")
    if not all(_NAME_RE.fullmatch(x) for x in parts):
        raise CurateError(f"Export folder name {name!r} has characters that are not allowed",
                          "use letters, digits, '.', '_' and '-' (start with a letter or digit)")
    p = (root / name).resolve()
    if root not in p.parents:  # a symlink back to the export folder itself is outside too
        raise CurateError(f"Export folder {name!r} would be outside {root}", "choose a folder name inside it")
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _packages() -> dict[str, str]:
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str], ...]:
    """Versions of the packages an export depends on, read once a process (each read parses the package's
    metadata file: ~10 ms an export)."""
    out = {"python": platform.python_version()}
    for pkg in ("duckdb", "pyarrow", "pandas", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    out["curate_core"] = VERSION
    return tuple(out.items())


def workspace_fingerprint(store: Store) -> dict:
    """What the selection depends on: data, finished stage runs, decisions, selections (+ one combined hash)."""
    fp = {"data": store.data_fingerprint(), "stages": store.done_run_keys(),
          "decisions": store.state("decisions"), "selections": store.state("selections")}
    fp["id"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return fp


def data_columns(store: Store, recipe: Recipe, with_scores: bool, with_weights: bool) -> list[tuple[str, str, str]]:
    """(source, column, output name) of each column of the data file, in order:
    id, text, label, [label_original], source, n_tokens, the file's other columns, [scores …], [repeats], [weight]."""
    user = [c for c, _ in store.sample_columns() if c not in CORE_COLUMNS]
    taken = set(CORE_COLUMNS) | set(user)

    def name(want: str) -> str:  # a user column of the same name keeps its name; ours gets a prefix
        out = want if want not in taken else f"curate_{want}"
        taken.add(out)
        return out

    cols = [("samples", "id", "id"), ("samples", "text", "text"), ("selection", "label", "label")]
    if recipe.relabel:
        cols.append(("selection", "label_original", name("label_original")))
    cols += [("samples", c, c) for c in ("source", "n_tokens", *user)]
    if with_scores:
        cols += [("catalog", c, name(c)) for c, (t, typ) in store.catalog().items()
                 if t != "samples" and c != "row_id" and not typ.endswith("]")]
    m = recipe.mixture
    if m is not None and m.mode == "sample" and m.max_repeats != 1:
        cols.append(("selection", "repeats", name("repeats")))
    if with_weights:
        cols.append(("selection", "weight", name("weight")))
    return cols


def write_selection(store: Store, selected: pa.Table, path: Path, fmt: str,
                    columns: Sequence[tuple[str, str, str]]) -> int:
    """Write the selected rows to *path* in row_id order; returns rows written.

    *selected* has ``row_id`` plus per-row values of the selection (final label, repeats, weight …).
    *columns* are (source, column, output name) in file order; source is ``samples``, ``selection`` (a column
    of *selected*) or ``catalog`` (a stage-output column, joined on row_id).
    """
    cat = store.catalog()
    exprs, tables = [], set()
    for src, col, out in columns:
        if src == "samples":
            exprs.append(f"s.{quote_ident(col)} AS {quote_ident(out)}")
        elif src == "selection":
            exprs.append(f"_sel.{quote_ident(col)} AS {quote_ident(out)}")
        else:
            tables.add(cat[col][0])
            exprs.append(f"{column_ref(cat, col)} AS {quote_ident(out)}")
    sql = f"SELECT {', '.join(exprs)} FROM samples s JOIN _sel USING (row_id) {join_sql(tables)} ORDER BY s.row_id"
    store.copy(sql, path, fmt, tables={"_sel": selected})
    return selected.num_rows


#: a CSV cell a spreadsheet may run as a formula (OWASP "CSV injection"): one that starts with one of these and
#: is not a plain number (-0.5 is a number, -2+3 or =cmd() are not)
FORMULA_START = r"^[=+\-@\t\r]"


def csv_formula_cells(store: Store, path: Path, names: Sequence[str], safe: bool = False) -> dict[str, int]:
    """Per column of the CSV at *path* (header *names*), how many cells a spreadsheet could take for a formula;
    with *safe*, rewrite the file with ``'`` before each of them (the usual neutraliser; it changes the data, so
    it is opt-in). Read back as text with a fixed dialect, so what is counted is what a spreadsheet would read."""
    cols = {n: "VARCHAR" for n in names}
    src = "read_csv($p, delim=',', quote='\"', escape='\"', header=true, auto_detect=false, columns=$cols)"

    def risky(c: str) -> str:
        return f"(regexp_matches({c}, '{FORMULA_START}') AND TRY_CAST({c} AS DOUBLE) IS NULL)"

    with store.cursor() as cur:
        counts = ", ".join(f"count(*) FILTER (WHERE {risky(quote_ident(n))})" for n in names)
        row = cur.execute(f"SELECT {counts} FROM {src}", {"p": str(path), "cols": cols}).fetchall()[0]
        found = {n: int(k) for n, k in zip(names, row) if k}
        if safe and found:
            q = quote_ident
            exprs = ", ".join(f"CASE WHEN {risky(q(n))} THEN chr(39) || {q(n)} ELSE {q(n)} END AS {q(n)}"
                              if n in found else q(n) for n in names)
            tmp = path.with_name(path.name + ".safe")
            cur.execute(f"COPY (SELECT {exprs} FROM {src}) TO $out (FORMAT csv, HEADER true)",
                        {"p": str(path), "cols": cols, "out": str(tmp)})
            os.replace(tmp, path)
    return found


def export(store_or_ws: Any, recipe: Any, out: str | Path, fmt: str = "parquet", with_scores: bool = False,
           with_weights: bool = False, force: bool = False, base: str | Path | None = None,
           command_line: str | None = None, csv_safe: bool = False) -> ExportResult:
    """Write the recipe's selection to the folder *out* (see the module docstring). Returns what was written."""
    store = _store(store_or_ws)
    if fmt not in FORMATS:
        raise CurateError(f"Unknown export format {fmt!r}", f"use one of {choices(FORMATS)}")
    folder = out_dir(out, base)
    r, cat = _checked(store, load_recipe(recipe, store))  # the catalog read once for the checks, SQL and counts
    # any format's data file counts: a new manifest beside an older export's data.csv would pass that off as this
    # export's (--force removes it, below)
    targets = [folder / name for name in FORMATS.values()] + [folder / RECIPE_FILE, folder / MANIFEST_FILE]
    existing = [p.name for p in targets if p.exists() or p.is_symlink()]
    if existing and not force:
        raise CurateError(f"{folder} already holds {choices(existing)}",
                          "choose another folder, or pass --force (the app: tick 'overwrite') to replace them")
    columns = data_columns(store, r, with_scores, with_weights)
    # computed before the folder exists: a recipe that fails here (e.g. an unknown mixture group) writes nothing
    if r.mixture is None:  # one COPY of the selection query, no row ids through Python
        sql, params = export_sql(store, r, columns, cat)
        write = lambda path: store.copy(sql, path, fmt, params)  # noqa: E731
    else:  # sampling: materialise the selection (with repeats and weights), then join it
        sel = select(store, r)
        write = lambda path: write_selection(store, sel.table, path, fmt, columns)  # noqa: E731
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / FORMATS[fmt]
    for other in FORMATS.values():  # --force with another format: no stale data file beside the new one
        if other != data_path.name and (folder / other).exists() and force:
            (folder / other).unlink()
    tmp = folder / f".{data_path.name}.{os.getpid()}.tmp"
    formula: dict[str, int] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="curate-export-manifest") as pool:
        # what the manifest needs of the workspace — the counts (one scan of the narrow columns) and the
        # fingerprint — is read beside the COPY, on cursors of its own
        counting: Future | None = pool.submit(live_counts, store, r, cached=None, cat=cat) if r.mixture is None else None
        fingerprint = pool.submit(workspace_fingerprint, store)
        try:
            write(tmp)
            if fmt == "csv":
                formula = csv_formula_cells(store, tmp, [o for _, _, o in columns], safe=csv_safe)
            c = counting.result() if counting is not None else sel.counts
            os.replace(tmp, data_path)
        finally:
            if tmp.exists():
                tmp.unlink()
    warnings = list(c.warnings)
    if formula:
        n = sum(formula.values())
        where = ", ".join(f"{k} ({v:,})" for k, v in formula.items())
        warnings.append(f"{n:,} CSV cell{'s' if n != 1 else ''} start{'' if n != 1 else 's'} with = + - @ or a "
                        f"tab and would run as a formula if the file is opened in a spreadsheet: {where}; "
                        + ("each got a leading ' (--csv-safe)." if csv_safe else
                           "written as they are (the training data is unchanged); --csv-safe prefixes them with '."))
    recipe_text = json.dumps(r.to_json(), indent=2, sort_keys=False) + "\n"
    _write_text(folder / RECIPE_FILE, recipe_text)
    files = [{"name": data_path.name, "rows": c.rows_unique, "bytes": data_path.stat().st_size,
              "sha256": _sha256(data_path)},
             {"name": RECIPE_FILE, "bytes": len(recipe_text.encode()), "sha256": _sha256(folder / RECIPE_FILE)}]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "workspace": {"path": str(store.path), "fingerprint": fingerprint.result()},
        "recipe": RECIPE_FILE,
        "format": fmt,
        "rows": c.rows_unique,
        "rows_with_repeats": c.rows_selected,
        "tokens": c.tokens_selected,
        "rows_in_workspace": c.rows_total,
        "group_by": c.group_by,
        "groups": {g["group"]: int(g["rows_selected"]) for g in c.groups.to_dict("records") if g["rows_selected"]},
        "steps": [{"step": s.name, "removes_alone": s.removes_alone, "removes_only": s.removes_only} for s in c.steps],
        "columns": [out for _, _, out in columns],
        "files": files,
        "warnings": warnings,
        **({"csv_formula_cells": formula, "csv_safe": bool(csv_safe)} if fmt == "csv" else {}),
        "packages": _packages(),
        "command": command_line or cli_command(store.path, folder / RECIPE_FILE, folder, fmt, with_scores,
                                               with_weights, csv_safe=csv_safe),
    }
    _write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=2, default=str) + "\n")
    return ExportResult(folder, files, manifest, c)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def cli_command(workspace: Path | str, recipe: Path | str, out: Path | str, fmt: str = "parquet",
                with_scores: bool = False, with_weights: bool = False, force: bool = False,
                csv_safe: bool = False) -> str:
    """The shell command that does the same export."""
    parts = ["python", "-m", "curate_core", "export", "--workspace", str(workspace), "--recipe", str(recipe),
             "--out", str(out), "--format", fmt]
    parts += ["--with-scores"] * with_scores + ["--with-weights"] * with_weights + ["--force"] * force
    parts += ["--csv-safe"] * (csv_safe and fmt == "csv")
    return " ".join(shlex.quote(p) for p in parts)


@dataclass
class Download:
    """An export held in memory for the app's download buttons: the data file alone and a zip of all files."""

    data_name: str
    data: bytes
    zip: bytes
    manifest: dict


def export_download(store_or_ws: Any, recipe: Any, fmt: str = "parquet", with_scores: bool = False,
                    with_weights: bool = False, csv_safe: bool = False) -> Download:
    """The same export, in memory (written to a temporary folder, read back, removed)."""
    with tempfile.TemporaryDirectory(prefix="curate-export-") as tmp:
        res = export(store_or_ws, recipe, Path(tmp) / "export", fmt, with_scores, with_weights, csv_safe=csv_safe)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name in [f["name"] for f in res.files] + [MANIFEST_FILE]:
                z.write(res.out / name, arcname=name)
        data_name = FORMATS[fmt]
        return Download(data_name, (res.out / data_name).read_bytes(), buf.getvalue(), res.manifest)
