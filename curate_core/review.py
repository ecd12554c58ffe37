"""The review queue: one suspect at a time, with what a person needs to decide — the whole text, the given and
suggested label with the probe's probabilities, why each method flagged it, and its nearest neighbours with
their labels. Decisions go to the same undoable log as the Label issues page (reason ``review queue``), so the
queue resumes where the person stopped: the next row is the first one in queue order without a decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from . import labelissues as li
from .errors import CurateError, choices
from .store import Store

REASON = "review queue"
#: queue orders: name → (title, the suspects ranking it uses)
ORDERS = {"consensus": "methods that flag it (the consensus), then label quality", "aum": "AUM, lowest first",
          "label_quality": "label quality, lowest first", "cluster": "cluster by cluster, consensus within"}


@dataclass
class Item:
    """One row of the queue, ready to show."""

    row_id: int
    id: str
    text: str
    label: str
    suggested: str | None
    p_label: float | None  # out-of-fold probability of the given label
    p_suggested: float | None
    reasons: list[str]
    neighbours: pd.DataFrame = field(repr=False)  # id, label, score (cosine), text
    decision: str = ""
    cluster: int | None = None
    #: the relabel_agreement score's second opinion: (label a probe trained on the unflagged rows suggests, its
    #: probability, share of the nearest unflagged rows carrying it); None where the row is not judged
    second: tuple[str, float, float] | None = None


def queue(data: li.LabelData, order: str = "consensus", decisions: pd.DataFrame | None = None,
          flagged_only: bool = True) -> pd.DataFrame:
    """Every row at least one method flags (or, with *flagged_only* off, every labelled row: a spot check of
    the rows no method flags), in *order* (see ``ORDERS``), with its decision in force."""
    if order not in ORDERS:
        raise CurateError(f"Unknown queue order {order!r}", f"use one of {choices(ORDERS)}")
    rank = "consensus" if order == "cluster" else order
    q = li.suspects(data, li.SuspectFilter(min_consensus=1 if flagged_only else 0, rank_by=rank), decisions)
    if order == "cluster" and data.has_clusters and not q.empty:
        q = q.sort_values(["cluster", "consensus", "label_quality"], ascending=[True, False, True],
                          kind="stable").reset_index(drop=True)
    return q


def next_row(q: pd.DataFrame, skipped: Sequence[int] = ()) -> int | None:
    """The first row of the queue with no decision and not skipped in this session (None when all are done)."""
    if q.empty:
        return None
    todo = (q["decision"] == "") & ~q["row_id"].isin(list(skipped))
    return int(q.loc[todo, "row_id"].iloc[0]) if todo.any() else None


def reasons(row: pd.Series, summaries: dict) -> list[str]:
    """Why the methods flagged *row*, in words with the numbers, e.g. "AUM −4.20, below the cutoff −0.70"."""
    out = []
    if bool(row.get("is_label_issue")):
        out.append(f"confident learning: label quality {row['label_quality']:.3g}; the confident joint counts this "
                   f"label among the estimated errors")
    if bool(row.get("aum_flag")):
        cut = (summaries.get("aum") or {}).get("cutoff")
        out.append(f"AUM {row['aum']:.2f}" + (f", below the cutoff {cut:.2f}" if cut is not None else "")
                   + " (the probe kept preferring another class while training)")
    if bool(row.get("is_hard_to_learn")):
        cut = (summaries.get("confidence") or {}).get("cutoff")
        out.append(f"data map: confidence {row['confidence']:.2f}" + (f", below {cut:.2f}" if cut is not None else "")
                   + f", variability {row['variability']:.2f} (hard to learn)")
    if bool(row.get("knn_label_flag")):
        out.append(f"neighbours: {row['knn_label_agreement']:.0%} of its nearest labelled rows carry its label, "
                   f"most carry {row['knn_label']!s}")
    if not out:
        out.append(f"no method flags it now (label quality {row.get('label_quality', float('nan')):.3g})")
    return out


def _probs(store: Store, row_id: int, classes: list[str], label: str, suggested: str | None) -> tuple:
    """The probe's out-of-fold probability of the given and the suggested label (one row read, not the table:
    the page redraws on every key)."""
    if not store.table_exists("probe_probs"):
        return None, None
    hit = store.query("SELECT probs FROM probe_probs WHERE row_id = ?", [int(row_id)])
    if hit.num_rows == 0:
        return None, None
    p = hit.column("probs")[0].as_py()
    at = {c: i for i, c in enumerate(classes)}
    pick = lambda c: float(p[at[c]]) if c in at and at[c] < len(p) else None  # noqa: E731
    return pick(label), pick(suggested) if suggested else None


def neighbours(store: Store, row_id: int, k: int = 5) -> pd.DataFrame:
    """The *k* rows nearest to *row_id* in the embedding (cosine), with their labels; empty without embeddings."""
    from .search import search

    ident = store.query_df("SELECT id FROM samples WHERE row_id = ?", [int(row_id)])
    try:
        res = search(store, like=str(ident["id"].iloc[0]), k=k)
    except CurateError:
        return pd.DataFrame({"id": [], "label": [], "score": [], "text": []})
    return res.rows[["id", "label", "score", "text"]]


def item(store: Store, data: li.LabelData, q: pd.DataFrame, row_id: int, k: int = 5) -> Item:
    """Everything the queue shows about one row."""
    row = q.set_index("row_id").loc[int(row_id)]
    text = store.query_df("SELECT text FROM samples WHERE row_id = ?", [int(row_id)])["text"].iloc[0]
    sugg = row.get("suggested_label")
    sugg = None if sugg is None or (isinstance(sugg, float) and np.isnan(sugg)) else str(sugg)
    p_label, p_sugg = _probs(store, int(row_id), data.classes, str(row["label"]), sugg)
    cluster = int(row["cluster"]) if data.has_clusters and pd.notna(row.get("cluster")) else None
    second = None
    if pd.notna(row.get("relabel_label")) and pd.notna(row.get("relabel_agreement")):
        second = (str(row["relabel_label"]), float(row["relabel_confidence"]), float(row["relabel_agreement"]))
    return Item(int(row_id), str(row["id"]), str(text), str(row["label"]), sugg, p_label, p_sugg,
                reasons(row, data.summaries), neighbours(store, int(row_id), k), str(row["decision"]), cluster,
                second)


def decide(ws, it: Item, action: str, label: str | None = None) -> str:
    """Apply Keep / Exclude / Relabel (to *label*, default the suggestion) to the row; returns a sentence."""
    if action == "keep":
        ws.decide([it.row_id], "keep", reason=REASON)
        return f"Kept `{it.id}` as `{it.label}`."
    if action == "exclude":
        ws.decide([it.row_id], "exclude", reason=REASON)
        return f"Excluded `{it.id}`."
    if action == "relabel":
        new = label or it.suggested
        if not new or new == it.label:
            raise CurateError("Nothing to relabel to", "the suggested label is the given one: keep it, or pick a label")
        ws.decide([it.row_id], "relabel", value=new, reason=REASON)
        return f"Relabelled `{it.id}` from `{it.label}` to `{new}`."
    raise CurateError(f"Unknown review action {action!r}", "use keep, exclude or relabel")


def pace(store: Store) -> tuple[int, float | None]:
    """(rows decided in the queue, median seconds between two of its decisions — pauses over 10 minutes left
    out), for the "37 of 1,245 reviewed, ~9 s per row" line."""
    log = store.query_df("""SELECT decided_at FROM decisions WHERE reason = ? AND action <> 'undo' AND batch NOT IN
                            (SELECT CAST(value AS BIGINT) FROM decisions WHERE action = 'undo') ORDER BY seq""",
                         [REASON])
    if log.empty:
        return 0, None
    gaps = pd.to_datetime(log["decided_at"]).diff().dt.total_seconds().to_numpy()[1:]
    gaps = gaps[(gaps > 0) & (gaps < 600)]
    return len(log), (float(np.median(gaps)) if gaps.size else None)
