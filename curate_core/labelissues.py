"""What the Label issues page does, without streamlit: the suspects frame, filters and ranking, the AUM cutoff
slider's arithmetic, actions (exclude / relabel / keep, one undoable batch each) and the recipe-draft filter.

The page (pages/2_Label_issues.py via curate_ui/labelview.py) only draws what these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .dupview import skipped_scores
from .errors import CurateError, choices
from .scores import registry
from .scores.base import ordered
from .scores.consensus import FLAGS
from .scores.label_quality import RATE_WARN
from .recipes.draft import RecipeDraft
from .recipes.model import DRAFT  # noqa: F401 - the page and tests read li.DRAFT
from .store import Store

#: the label-noise scores, in computing order (derived from the registry: every score of topic "label")
LABEL_SCORES = [n for n in ordered(registry()) if registry()[n].topic == "label"]
#: per-row columns the page uses (all written by the scores stage)
SCORE_COLUMNS = [c for n in LABEL_SCORES for c in registry()[n].column_names]
#: how the suspects table can be ranked: score → (its column's title, ascending = worst first); the consensus first
RANKINGS = {n: (registry()[n].columns[0].title or n, registry()[n].direction == "higher_better")
            for n in sorted(LABEL_SCORES, key=lambda n: n != "consensus")}
ACTIONS = ("exclude", "relabel_suggested", "relabel", "keep")


@dataclass
class LabelData:
    """The label score columns of every labelled row, plus the summaries the page shows."""

    frame: pd.DataFrame  # row_id, id, label, SCORE_COLUMNS, [cluster]
    summaries: dict[str, dict] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    has_clusters: bool = False
    missing: str | None = None  # why there is nothing to show (no labels, probe skipped …)

    @property
    def threshold_aum(self) -> np.ndarray:
        return np.asarray(self.summaries.get("aum", {}).get("threshold_aum", []), dtype=float)


def load(store: Store) -> LabelData:
    """Read the label scores from the workspace (labelled rows only)."""
    cat = store.catalog()
    have = [c for c in SCORE_COLUMNS if c in cat]
    if "label_quality" not in have:
        reason = _skip_reason(store)
        return LabelData(pd.DataFrame(), missing=reason)
    has_clusters = "cluster" in cat
    cols = ["row_id", "id", "label", *have, *(["cluster"] if has_clusters else [])]
    df = store.rows(cols)
    df = df[df["label"].notna()].reset_index(drop=True)
    summaries = {}
    for name in LABEL_SCORES:
        s = store.get_summary(f"score:{name}")
        if s:
            summaries[name] = s
    probe = store.get_summary("probe") or {}
    summaries["probe"] = probe
    return LabelData(df, summaries, list(probe.get("classes") or sorted(df["label"].unique())), has_clusters)


def _skip_reason(store: Store) -> str:
    probe = store.get_summary("probe") or {}
    if probe.get("skipped"):
        return f"The label-noise scores were skipped: {probe['skipped']}."
    reason = skipped_scores(store).get("label_quality")
    if reason:
        return f"The label-noise scores were skipped: {reason}."
    return "The label-noise scores have not been computed yet."


# ------------------------------------------------------------------------------- flag-rate sanity
def flag_report(summaries: dict[str, dict]) -> dict[str, dict]:
    """Per label-noise method (by its flag column): how many rows it flags, the flag rate next to confident
    learning's estimated noise rate, and whether its calibration held (``info --json`` and the page)."""
    out = {}
    for name in LABEL_SCORES:
        s = summaries.get(name) or {}
        col = s.get("flag_column")
        if col in FLAGS:
            out[col] = {"method": FLAGS[col], "flagged": s.get("flagged"), "flag_rate": s.get("flag_rate"),
                        "estimated_noise_rate": s.get("estimated_noise_rate"),
                        "over_estimate": s.get("over_estimate", False),
                        **({"calibration": s["calibration"]} if "calibration" in s else {}), "why": s.get("why")}
    return out


def flag_warnings(summaries: dict[str, dict]) -> list[str]:
    """What a person should know before trusting the flags: a failed calibration (and its fallback), and any
    method that flags more than RATE_WARN× the share of labels confident learning estimates to be wrong."""
    out = []
    for r in flag_report(summaries).values():
        if r.get("calibration") == "failed":
            out.append(f"{r['method']}: {r['why']}.")
        elif r.get("over_estimate"):
            out.append(f"{r['method']} flags {r['flag_rate']:.1%} of the labelled rows, more than {RATE_WARN:g}× the "
                       f"{r['estimated_noise_rate']:.1%} confident learning estimates to be mislabelled: many of its "
                       "flags may be the probe's own mistakes; require agreement (consensus ≥ 2) or raise its cutoff.")
    return out


def set_aside_note(probe: dict) -> str:
    """Labels too small to judge (one row): their rows get no label scores; the others are scored as usual."""
    aside = probe.get("set_aside") or {}
    if not aside:
        return ""
    shown = ", ".join(f"`{c}`" for c in list(aside)[:5]) + (" …" if len(aside) > 5 else "")
    n = sum(aside.values())
    return (f"{len(aside):,} label{'s' if len(aside) != 1 else ''} with a single row ({shown}): a classifier cannot "
            f"judge a label it sees once, so {'its row gets' if n == 1 else f'their {n:,} rows get'} no label "
            "scores; every other row is scored.")


def features_note(probe: dict) -> str:
    """One line on the probe's features: the one chosen and every candidate's out-of-fold accuracy and log-loss
    (why it was chosen, when it was the only one)."""
    f = probe.get("features") or {}
    if not f:
        return ""
    cand = f.get("candidates") or {}
    if len(cand) < 2:
        return f"Probe features: `{f.get('chosen')}` ({f.get('why')})."
    each = " · ".join(f"{k} {v['oof_accuracy']:.3f} (log-loss {v['oof_log_loss']:.3f})" for k, v in cand.items())
    return f"Probe features: `{f.get('chosen')}`, the lowest out-of-fold log-loss; out-of-fold accuracy {each}."


# ------------------------------------------------------------------------------------------- AUM
def aum_cutoff_stats(aum: np.ndarray, threshold_aum: np.ndarray, cutoff: float) -> dict:
    """For a cutoff on the AUM slider: rows below it and which percentile of threshold samples it is."""
    a = np.asarray(aum, dtype=float)
    a = a[np.isfinite(a)]
    thr = np.asarray(threshold_aum, dtype=float)
    return {
        "below": int((a < cutoff).sum()),
        "rows": int(a.size),
        "percentile": float((thr <= cutoff).mean() * 100) if thr.size else None,
    }


# ----------------------------------------------------------------------------------------- suspects
@dataclass
class SuspectFilter:
    labels: Sequence[str] = ()
    clusters: Sequence[int] = ()
    min_consensus: int = 1
    aum_below: float | None = None  # also show rows whose AUM is below this (the slider's cutoff)
    selection: Sequence[int] | None = None  # only these row_ids (lasso or a saved selection)
    hide_decided: bool = False
    rank_by: str = "consensus"


def suspects(data: LabelData, f: SuspectFilter, decisions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows matching the filter, worst first, with the decision in force (if any) in column ``decision``."""
    df = data.frame
    if df.empty:
        return df.assign(decision=pd.Series(dtype=object))
    keep = np.ones(len(df), bool)
    flagged = df["consensus"].to_numpy() >= max(0, int(f.min_consensus))
    if f.aum_below is not None and "aum" in df:
        flagged |= df["aum"].to_numpy() < f.aum_below
    keep &= flagged if f.min_consensus > 0 or f.aum_below is not None else True
    if f.labels:
        keep &= df["label"].isin(list(f.labels)).to_numpy()
    if f.clusters and data.has_clusters:
        keep &= df["cluster"].isin(list(f.clusters)).to_numpy()
    if f.selection is not None:
        keep &= df["row_id"].isin(np.asarray(f.selection, dtype=np.int64)).to_numpy()
    out = df[keep].copy()
    out["decision"] = describe_decisions(out["row_id"], decisions)
    if f.hide_decided:
        out = out[out["decision"] == ""]
    if f.rank_by not in RANKINGS:
        raise CurateError(f"Unknown ranking {f.rank_by!r}", f"use one of {choices(RANKINGS)}")
    _, ascending = RANKINGS[f.rank_by]
    keys = [f.rank_by, "label_quality"] if f.rank_by == "consensus" else [f.rank_by]
    asc = [ascending, True] if f.rank_by == "consensus" else [ascending]
    return out.sort_values(keys, ascending=asc, kind="stable", na_position="last").reset_index(drop=True)


def describe_decisions(row_ids: pd.Series, decisions: pd.DataFrame | None) -> np.ndarray:
    """Per row: "", "excluded", "kept", or "→ label" for the decision in force."""
    out = np.full(len(row_ids), "", dtype=object)
    if decisions is None or decisions.empty:
        return out
    d = decisions.set_index("row_id")
    pos = d.index.get_indexer(np.asarray(row_ids))
    hit = pos >= 0
    action = d["action"].to_numpy(dtype=object)[pos[hit]]
    value = d["value"].to_numpy(dtype=object)[pos[hit]]
    text = np.array([f"→ {v}" for v in value], dtype=object)
    text[action == "exclude"] = "excluded"
    text[action == "keep"] = "kept"
    out[hit] = text
    return out


def decision_counts(decisions: pd.DataFrame) -> dict[str, int]:
    """Rows per decision in force: excluded, relabelled, kept."""
    if decisions is None or decisions.empty:
        return {"excluded": 0, "relabelled": 0, "kept": 0}
    a = decisions["action"]
    return {"excluded": int((a == "exclude").sum()), "relabelled": int((a == "relabel").sum()),
            "kept": int((a == "keep").sum())}


# ------------------------------------------------------------------------------------------ actions
def act(ws, row_ids: Sequence[int], action: str, data: LabelData, label: str | None = None,
        reason: str = "label issues page") -> tuple[int, str]:
    """Apply one page action to rows as a single decision batch (so one undo reverts it).

    ``relabel_suggested`` relabels each row to its own suggested label (rows whose suggestion equals the given
    label are skipped). Returns (batch, a sentence for the page).
    """
    ids = np.unique(np.asarray(list(row_ids), dtype=np.int64))
    if ids.size == 0:
        raise CurateError("No rows chosen", "select rows in the table (or tick “all rows shown”) first")
    if action not in ACTIONS:
        raise CurateError(f"Unknown action {action!r}", f"use one of {choices(ACTIONS)}")
    n = f"{ids.size:,} row{'s' if ids.size != 1 else ''}"
    if action == "exclude":
        return ws.decide(ids, "exclude", reason=reason), f"Excluded {n}."
    if action == "keep":
        return ws.decide(ids, "keep", reason=reason), f"Marked {n} as reviewed (keep)."
    if action == "relabel":
        if not label:
            raise CurateError("Choose the label to relabel to")
        return ws.decide(ids, "relabel", value=label, reason=reason), f"Relabelled {n} to `{label}`."
    df = data.frame.set_index("row_id").reindex(ids)
    sugg = df["suggested_label"]
    change = sugg.notna() & (sugg != df["label"])
    if not change.any():
        raise CurateError("The suggested label equals the given label for every chosen row", "nothing to relabel")
    batch = ws.relabel_each(ids[change.to_numpy()], sugg[change].astype(str).tolist(), reason=reason)
    skipped = int((~change).sum())
    extra = f" ({skipped:,} already had the suggested label)" if skipped else ""
    k = int(change.sum())
    return batch, f"Relabelled {k:,} row{'s' if k != 1 else ''} to {'their' if k != 1 else 'its'} suggested label{extra}."


# ------------------------------------------------------------------------------------- recipe draft
def draft_filter(store: Store, column: str, op: str, value) -> dict:
    """Put one filter on *column* into the recipe draft (replacing an earlier one on the same column)."""
    draft = RecipeDraft(store).set_filter(column, op, value)
    draft.save()
    return draft.doc


def histogram(values: np.ndarray, lo: float, hi: float, bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, counts) of the finite values in [lo, hi]: a chart gets 60 numbers, not 100k."""
    v = np.asarray(values, dtype=float)
    counts, edges = np.histogram(v[np.isfinite(v)], bins=bins, range=(lo, hi))
    return (edges[:-1] + edges[1:]) / 2, counts


def sample_for_plot(df: pd.DataFrame, max_points: int, keep: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
    """At most *max_points* rows (seeded), always including rows where *keep* is true (e.g. flagged ones)."""
    if len(df) <= max_points:
        return df
    keep = np.zeros(len(df), bool) if keep is None else np.asarray(keep, bool)
    must = np.flatnonzero(keep)[:max_points]
    rest = np.flatnonzero(~keep)
    pick = np.random.default_rng(seed).choice(rest, size=max(0, max_points - must.size), replace=False)
    return df.iloc[np.sort(np.concatenate([must, pick]))]


def overlap_frame(data: LabelData) -> pd.DataFrame:
    """Method × method counts of rows both flag (the diagonal: rows each flags)."""
    cols = [c for c in FLAGS if c in data.frame]
    m = np.stack([data.frame[c].fillna(False).to_numpy(bool) for c in cols]) if cols else np.zeros((0, 0), bool)
    counts = (m[:, None, :] & m[None, :, :]).sum(axis=2) if cols else np.zeros((0, 0), int)
    names = [FLAGS[c] for c in cols]
    return pd.DataFrame(counts, index=names, columns=names)
