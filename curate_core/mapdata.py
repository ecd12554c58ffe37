"""What the Map page draws, headless: the projected points (a deterministic sample stratified by cluster above a
limit) with the short texts its hover shows — read for the drawn points only.

Above the limit (200,000 rows on the page) reading every row's text only to drop most of it cost a 1M-row
workspace 140 characters × 1M rows per read; here the points are read without text, sampled, and the texts of
the sampled rows are read in a second query.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .project import map_points, stratified_sample
from .store import Store


def load_points(store: Store, columns: Sequence[str], max_points: int,
                text_chars: int) -> tuple[pd.DataFrame, int]:
    """(points, total): row_id, x, y, ``text`` (its first *text_chars* characters) and *columns* of at most
    *max_points* projected rows — every row, or a sample stratified by ``cluster`` (which *columns* must then
    name) — and how many rows the projection has."""
    df = map_points(store, columns, text_chars=0)  # no text yet: above the limit most rows are not drawn
    total = len(df)
    if total > max_points:
        keep = stratified_sample(df["cluster"].to_numpy(), max_points, seed=0)
        df = df.iloc[keep].reset_index(drop=True)
    df["text"] = short_texts(store, df["row_id"].to_numpy(), text_chars)
    return df, total


def short_texts(store: Store, row_ids: np.ndarray, chars: int) -> np.ndarray:
    """The first *chars* characters of the texts of *row_ids*, in the order given (object array)."""
    ids = pa.table({"row_id": pa.array(np.asarray(row_ids, dtype=np.int64))})
    got = store.query("SELECT s.row_id, left(s.text, ?) AS text FROM samples s SEMI JOIN _ids USING (row_id)",
                      [int(chars)], tables={"_ids": ids}, df=True)
    return got.set_index("row_id")["text"].reindex(np.asarray(row_ids)).to_numpy(dtype=object)
