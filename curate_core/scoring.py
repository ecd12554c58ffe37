"""Stage `scores`: compute every registered score plugin (see curate_core/scores) into the `scores` table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import scores as _scores
from .errors import CurateError
from .stage import StageContext, stage
from .store import Store, quote_ident

_reg = _scores.registry()
#: the stage version folds in every plugin's version, so changing one score invalidates the finished run
_VERSION = "1:" + ",".join(f"{n}@{s.version}" for n, s in _reg.items())


@stage("scores", version=_VERSION, title="Scores (label noise, duplicates, outliers, text quality)",
       requires=("textstats", "embed", "probe"), outputs=("scores",), defaults={"only": None, "params": {}})
def run_scores(ctx: StageContext) -> dict:
    sctx = _scores.ScoreContext.from_store(ctx.store, params=ctx.params.get("params") or {})
    sctx.on_progress = ctx.progress
    columns, summaries, skipped = _scores.compute_all(
        sctx, only=ctx.params.get("only"), progress=lambda i, n, name: ctx.progress(i, n, name))
    table = pa.table({"row_id": pa.array(sctx.row_ids, pa.int64()),
                      **{k: _to_arrow(v) for k, v in columns.items()}})
    with ctx.store.transaction() as cur:
        ctx.store.replace_table("scores", table, cur=cur)
    for name, summary in summaries.items():
        ctx.store.put_summary(f"score:{name}", summary)
    return {"scores": list(summaries), "columns": list(columns), "skipped": skipped}


def _to_arrow(v: np.ndarray) -> pa.Array:
    v = np.asarray(v)
    if v.dtype == object:
        return pa.array([None if x is None else str(x) for x in v], pa.string())
    if v.dtype.kind == "f":
        return pa.array(v, from_pandas=True)  # NaN -> null keeps "missing" visible in SQL filters
    return pa.array(v)


def score_columns(store: Store) -> list[str]:
    """Names of the columns in the `scores` table (empty if the stage has not run)."""
    if not store.table_exists("scores"):
        return []
    return [c for c, _ in store.table_columns("scores") if c != "row_id"]


def export_scores(store: Store, out: str | Path) -> int:
    """Write id + every score column to *out* (.parquet or .csv); returns rows written."""
    cols = score_columns(store)
    if not cols:
        raise CurateError("No scores in this workspace yet", "run the scores stage: python -m curate_core run --workspace W")
    out = Path(out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise CurateError(f"Unknown output format {out.suffix!r}", "write to a .parquet or .csv file")
    sel = ", ".join(f"s.{quote_ident(c)}" for c in cols)
    df = store.query_df(f"SELECT d.id, {sel} FROM samples d JOIN scores s USING (row_id) ORDER BY d.row_id")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        df.to_csv(out, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), out)
    return len(df)
