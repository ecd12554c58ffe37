"""Stage `textstats`: cheap per-row text statistics (characters, words, lines).

A deliberately small stage that shows the batch → checkpoint → import pattern every long stage follows
(see pipeline.StageContext.map_batches). The statistics are a pure row-wise map over Arrow batches, so a
cluster engine can run the same function on its own partitions.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from .stage import StageContext, import_parts, stage


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


@stage("textstats", version="1", title="Text statistics", outputs=("textstats",),
       defaults={"batch_size": 50_000})
def run_textstats(ctx: StageContext) -> dict:
    parts = ctx.map_batches(["row_id", "text"], text_stats, batch_size=int(ctx.params["batch_size"]))
    n = import_parts(ctx, "textstats", parts)
    return {"rows": n}
