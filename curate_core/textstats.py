"""Stage `textstats`: cheap per-row text statistics (characters, words, lines).

A deliberately small stage that shows the pattern every long stage follows: a pure row-wise function over
Arrow batches (:func:`text_stats`), run by the executor over row-id batches of ``samples`` (resumable
checkpoint parts), imported in one transaction (see ``StageContext.map_samples``).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .columns import Column, Table
from .stage import StageContext, stage


def text_stats(batch: pa.Table) -> pa.Table:
    """row_id, n_chars, n_words (whitespace-separated), n_lines for one batch of (row_id, text)."""
    text = batch.column("text")
    words = pc.list_value_length(pc.utf8_split_whitespace(text))
    lines = pc.add(pc.count_substring(text, "\n"), 1)
    return pa.table({
        "row_id": batch.column("row_id"),
        "n_chars": pc.cast(pc.utf8_length(text), pa.int32()),
        "n_words": pc.cast(words, pa.int32()),
        "n_lines": pc.cast(lines, pa.int32()),
    })


COLUMNS = (Column("n_chars", "INTEGER", "Characters"), Column("n_words", "INTEGER", "Words"),
           Column("n_lines", "INTEGER", "Lines"))


@stage("textstats", version="1", title="Text statistics", outputs=(Table("textstats", COLUMNS),),
       defaults={"batch_size": 50_000})
def run_textstats(ctx: StageContext) -> dict:
    parts = ctx.map_samples(["row_id", "text"], text_stats, batch_size=int(ctx.params["batch_size"]))
    names = [Path(p).name for p in parts.paths]
    totals = ctx.executor.totals(_totals, names, ctx.checkpoint, _merge) if names else {}
    n = ctx.import_parts("textstats", parts)
    return {"rows": n, **totals}


def _totals(part: pa.Table) -> dict:
    """What the stage summary says about one part: sums and maxima merge across parts in any order."""
    return {"chars": int(pc.sum(part.column("n_chars")).as_py() or 0),
            "words": int(pc.sum(part.column("n_words")).as_py() or 0),
            "longest_chars": int(pc.max(part.column("n_chars")).as_py() or 0),
            "longest_words": int(pc.max(part.column("n_words")).as_py() or 0)}


def _merge(a: dict, b: dict) -> dict:
    return {k: (max if k.startswith("longest") else sum)((a[k], b[k])) for k in a}
