"""Stage `scores`: every registered score plugin into the `scores` table — each score with its own run key.

A score's run key hashes its name, version and parameters, the data, the run keys of the stages whose
resources it reads (``embeddings`` → embed, ``probe`` → probe) and the keys of the scores it requires or uses.
A score whose key matches its last run (and whose columns are in the table) is reused; the others are computed,
in dependency order: changing one score's parameter recomputes it and its dependants only. Each computed
score's run is recorded in ``runs`` as stage ``score:<name>``, in the same transaction that writes the new
``scores`` table (reused columns are carried over), so the table and the runs never disagree.

Row scores (a function of each text alone) run through the executor in row-id batches, one checkpoint part per
batch; group and global scores run on the driver.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import resources
from . import scores as _scores
from .columns import Table
from .errors import CurateError
from .scores.base import Score, ScoreContext, canonical, compute_one, ordered
from .stage import StageContext, digest, stage
from .store import Store, json_default, now, quote_ident

_reg = _scores.registry()
STAGE = "scores"
TABLE = "scores"
ROW_BATCH = 50_000  # rows per batch of the row scores


def run_name(score: str) -> str:
    """How a score's own runs are named in the ``runs`` table."""
    return f"score:{score}"


def score_key(sc: Score, settings: dict, inputs: dict) -> str:
    return digest({"score": sc.name, "version": sc.version, "params": settings, "inputs": inputs})


def _inputs(sc: Score, data: str, stage_keys: dict[str, str], keys: dict[str, str | None]) -> dict:
    """What a score's result depends on: the data, the runs of the stages behind its resources, and the scores
    it reads (a dependency that was skipped counts as absent)."""
    out: dict[str, Any] = {"data": data}
    for r in sc.requires:
        st = None if r.startswith("score:") else resources.stage_of(r)
        if st:
            out[st] = stage_keys.get(st)
    for dep in sc.needs:
        out[f"score:{dep}"] = keys.get(dep)
    return out


class RowScores:
    """Batch function of the row scores: (row_id, text) → row_id + every column of the given scores."""

    def __init__(self, todo: list[tuple[Score, dict]]) -> None:
        self.todo = todo

    def __call__(self, batch: pa.Table) -> pa.Table:
        cols: dict[str, Any] = {"row_id": batch.column("row_id")}
        for sc, settings in self.todo:
            out = sc.compute_batch(batch, settings)
            cols.update({c.name: to_arrow(out[c.name]) for c in sc.columns})
        return pa.table(cols)


#: the stage's version names every score and its version: a new or changed plugin makes the stage due (and then
#: only the scores whose own keys changed are computed)
VERSION = "2:" + ",".join(f"{n}@{s.version}" for n, s in _reg.items())


def score_settings(stage_params: dict) -> tuple[dict[str, dict], list[str], dict[str, dict]]:
    """(per-score parameters by canonical name, the scores this run computes, each one's merged settings) of
    the scores stage's parameters. Raises CurateError for a bad parameter: the pipeline calls this before any
    stage of the run starts, so a typo is refused before an hour of embedding, not after it."""
    params = stage_params.get("params") or {}
    if not isinstance(params, dict):
        raise CurateError(f"scores.params must be an object {{score: {{parameter: value}}}}, got {params!r}")
    unknown = sorted(k for k in params if canonical(k) is None)
    if unknown:
        raise CurateError(f"scores.params names unknown score(s) {unknown}", f"scores: {sorted(_reg)}")
    merged: dict[str, dict] = {}
    for k, v in params.items():  # an alias (dsir) names its score (dsir_log_weight)
        merged[canonical(k)] = {**merged.get(canonical(k), {}), **v} if isinstance(v, dict) else v
    only = stage_params.get("only")
    names = [n for n in ordered(_reg) if only is None or n in only]
    settings: dict[str, dict] = {}
    for name in names:  # a bad parameter refuses the run before anything is computed or replaced
        try:
            settings[name] = _reg[name].settings(merged)
        except CurateError as e:
            raise CurateError(f"Bad parameters for the score `{name}`: {e.message}",
                              (e.hint + "; " if e.hint else "") + "nothing was changed: every score column is as it was") from None
    return merged, names, settings


@stage(STAGE, version=VERSION, title="Scores (label noise, duplicates, outliers, text quality)",
       requires=("textstats", "embed", "probe"),
       outputs=(Table(TABLE, tuple(c for s in _reg.values() for c in s.columns)),),
       defaults={"only": None, "params": {}}, nested="params", check=score_settings)
def run_scores(ctx: StageContext) -> dict:
    store = ctx.store
    params, names, settings = score_settings(ctx.params)
    have = {c for c, _ in store.table_columns(TABLE)} if store.table_exists(TABLE) else set()
    last = store.latest_runs()
    data = store.data_fingerprint()

    keys: dict[str, str | None] = {}
    inputs: dict[str, dict] = {}
    reused, skipped, todo = [], {}, []
    for name in names:
        sc = _reg[name]
        # a dependant's key holds this key whatever the outcome: skipping is as deterministic as computing
        inputs[name] = _inputs(sc, data, ctx.inputs, keys)
        keys[name] = key = score_key(sc, settings[name], inputs[name])
        prev = last.get(run_name(name))
        same = not ctx.force and prev is not None and prev["run_key"] == key
        if same and prev["status"] == "done" and set(sc.column_names) <= have:
            reused.append(name)
        elif same and prev["status"] == "skipped":  # the same inputs: skipped again, for the same reason
            skipped[name] = prev["error"]
        else:
            todo.append(name)

    sctx = ScoreContext.from_store(store, params=params)
    sctx.on_progress = ctx.progress
    kept_cols = {c for n in reused for c in _reg[n].column_names}  # only a reused score's columns are current
    sctx.earlier = lambda col: _earlier(store, col, kept_cols)
    computed: dict[str, dict[str, np.ndarray]] = {}
    written: dict[str, pa.Array | pa.ChunkedArray] = {}  # columns for the new table, as Arrow
    summaries: dict[str, dict] = {}
    started: dict[str, Any] = {}
    rows = [n for n in todo if _reg[n].kind == "row"]
    if rows:  # every row score in one pass over the text batches, through the executor
        started.update({n: now() for n in rows})
        got = _row_scores(ctx, [(_reg[n], settings[n]) for n in rows])
        for n in rows:
            sc = _reg[n]
            written.update({c: got.column(c) for c in sc.column_names})
            computed[n] = {c: _to_numpy(got.column(c)) for c in sc.column_names}
            sctx.scores.update(computed[n])
            summaries[n] = {"title": sc.title, "direction": sc.direction, "version": sc.version,
                            **sc.summarise(computed[n])}
    rest = [n for n in todo if _reg[n].kind != "row"]
    ctx.phase()  # progress in scores from here: a fresh ETA
    for i, name in enumerate(rest):
        ctx.progress(i, len(rest), name, unit="scores")
        started[name] = now()
        try:
            computed[name], summaries[name] = compute_one(_reg[name], sctx)
        except CurateError as e:
            skipped[name] = str(e)
    ctx.progress(len(rest), len(rest), "", unit="scores")

    kept = [n for n in names if n in reused or n in computed]
    order = [c for n in kept for c in _reg[n].column_names]
    written.update({c: to_arrow(v) for n in rest if n in computed for c, v in computed[n].items()})
    new = pa.table({"row_id": pa.array(store.row_ids(), pa.int64()), **written})
    carry = [c for n in reused for c in _reg[n].column_names]
    with store.transaction() as cur:
        _write_scores(store, cur, new, carry, order)
        for name in [n for n in todo if n in computed or n in skipped]:
            sc = _reg[name]
            status = "done" if name in computed else "skipped"
            _record(cur, name, keys[name], sc, settings[name], inputs[name], started.get(name), status,
                    summaries.get(name), skipped.get(name))
        for name, summary in summaries.items():
            store.put_summary(f"score:{name}", summary, cur=cur)
    return {"scores": kept, "computed": sorted(computed), "reused": reused, "columns": order, "skipped": skipped}


def _record(cur, name: str, key: str, sc: Score, settings: dict, inputs: dict, started, status: str,
            summary: dict | None, error: str | None) -> None:
    cur.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [key, run_name(name), sc.version, json.dumps(settings, sort_keys=True, default=json_default),
                 json.dumps(inputs, sort_keys=True), status, started or now(), now(),
                 json.dumps({k: v for k, v in (summary or {}).items() if k != "threshold_aum"}, default=json_default),
                 error])


def _row_scores(ctx: StageContext, todo: list[tuple[Score, dict]]) -> pa.Table:
    """Columns of the row scores (row_id order), computed batch by batch through the executor (resumable: the
    parts live in a checkpoint named by these scores and their settings, so a rerun that computes other ones
    never mixes them)."""
    ck = ctx.checkpoint.child("rows-" + digest([(sc.name, sc.version, st) for sc, st in todo])[:12])
    return ctx.map_samples(["row_id", "text"], RowScores(todo), ROW_BATCH, ck=ck).read()


def _to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return np.asarray(col.to_pylist(), dtype=object)
    return col.to_numpy()


def _earlier(store: Store, column: str, kept: set[str]) -> np.ndarray | None:
    """A column of a score reused from an earlier run (the current scores table), in row_id order; None for any
    other column (a score skipped or recomputed in this run must not be read from the old table)."""
    if column not in kept:
        return None
    return _to_numpy(store.read_table(TABLE, ["row_id", column], arrow=True).column(column))


def _write_scores(store: Store, cur, new: pa.Table, carry: list[str], order: list[str]) -> None:
    """The new scores table: row_id, then every kept score's columns in registry order — computed ones from
    *new*, reused ones (*carry*) from the current table — in the caller's transaction."""
    ref = {c: f"o.{quote_ident(c)}" for c in carry} | {c: f"n.{quote_ident(c)}" for c in new.column_names}
    cols = "".join(f", {ref[c]} AS {quote_ident(c)}" for c in order)
    cur.register("_new_scores", new)
    try:
        old = f"LEFT JOIN {quote_ident(TABLE)} o USING (row_id)" if carry else ""
        cur.execute(f"CREATE OR REPLACE TABLE {quote_ident(TABLE)} AS SELECT n.row_id{cols} "
                    f"FROM _new_scores n {old} ORDER BY n.row_id")
    finally:
        cur.unregister("_new_scores")


def to_arrow(v: np.ndarray) -> pa.Array:
    v = np.asarray(v)
    if v.dtype == object:
        return pa.array([None if x is None else str(x) for x in v], pa.string())
    if v.dtype.kind == "f":
        return pa.array(v, from_pandas=True)  # NaN -> null keeps "missing" visible in SQL filters
    return pa.array(v)


def score_columns(store: Store) -> list[str]:
    """Names of the columns in the `scores` table (empty if the stage has not run)."""
    if not store.table_exists(TABLE):
        return []
    return [c for c, _ in store.table_columns(TABLE) if c != "row_id"]


def export_scores(store: Store, out: str | Path) -> int:
    """Write id + every declared score column to *out* (.parquet or .csv); returns rows written.

    The file has the columns ``scores --list`` declares, in that order, whatever this workspace computed: a
    score that was skipped here (e.g. ``dsir`` without a target, label scores without labels) is a column of
    NULLs, so every export of this version has one schema. Its reason is in ``info`` and the run summary."""
    have = set(score_columns(store))
    if not have:
        raise CurateError("No scores in this workspace yet", "run the scores stage: python -m curate_core run --workspace W")
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise CurateError(f"Unknown output format {out.suffix!r}", "write to a .parquet or .csv file")
    declared = [c for n in ordered(_reg) for c in _reg[n].columns]
    sel = ", ".join(f"s.{quote_ident(c.name)}" if c.name in have else f"CAST(NULL AS {c.type}) AS {quote_ident(c.name)}"
                    for c in declared)
    df = store.query_df(f"SELECT d.id, {sel} FROM samples d JOIN scores s USING (row_id) ORDER BY d.row_id")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        df.to_csv(out, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), out)
    return len(df)


def describe_scores() -> list[dict]:
    """Every registered score as ``scores --list --json`` prints it: name, columns, kind, requires, params …"""
    return [_reg[n].describe() for n in ordered(_reg)]

