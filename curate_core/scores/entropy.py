"""`entropy`: how unsure the out-of-fold probe is between classes — rows where several labels fit.

The normalised predictive entropy ``H(p) / ln C`` of a row's out-of-fold probabilities: 0 when one class holds
all the probability, 1 when every class is equally likely. Unlike label quality it ignores the given label, so
it finds rows that are *ambiguous* whatever their label — the kind a person reviews or drops even when the label
is not wrong (the held-out view of data maps' "ambiguous" region). NaN for unlabelled rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..columns import Column
from .base import Score, ScoreContext, ScoreResult, register
from .label_quality import probe_for_labels


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Row-wise H(p) / ln C of an n×C probability matrix (0·ln 0 = 0; rows renormalised to sum to 1)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h / np.log(p.shape[1])


@register
@dataclass(frozen=True)
class Entropy(Score):
    name: str = "entropy"
    title: str = "Ambiguity (normalised entropy of the out-of-fold probabilities)"
    columns: tuple = (Column("entropy", "DOUBLE", "ambiguity (entropy)"),)
    kind: str = "global"
    requires: tuple = ("labels", "probe")
    topic: str = "label"
    direction: str = "higher_worse"
    version: str = "1"
    nan_policy: str = "unlabelled"
    description: str = ("H(p) / ln C of the out-of-fold probabilities: 0 = the probe is sure of one class, "
                        "1 = every class equally likely; high = ambiguous whatever the given label.")

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes, _, probe = probe_for_labels(ctx)
        lab = codes >= 0
        values = np.full(ctx.n, np.nan)
        values[lab] = normalised_entropy(probe.probs[lab])
        known = values[lab]
        return ScoreResult(values, summary={
            "median": float(np.median(known)) if known.size else None,
            "p90": float(np.percentile(known, 90)) if known.size else None,
            "above_half": int((known > 0.5).sum())})
