"""`consensus`: how many label-noise methods flag a row (0..n), so a recipe can require k of n.

The methods are the flag columns of the label scores computed before it (cleanlab's ``is_label_issue``, AUM's
``aum_flag``, data maps' ``is_hard_to_learn``). The summary carries per-method counts and pairwise overlaps for
the Label issues page. Unlabelled rows are flagged by no method, so their consensus is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CurateError
from .base import Score, ScoreContext, ScoreResult, register

#: flag column → method name shown on the page
FLAGS = {"is_label_issue": "confident learning", "aum_flag": "AUM", "is_hard_to_learn": "data maps"}


@register
@dataclass(frozen=True)
class Consensus(Score):
    name: str = "consensus"
    title: str = "Label-noise consensus (methods flagging the row)"
    requires: tuple = ()
    direction: str = "higher_worse"
    version: str = "1"
    nan_policy: str = "never"
    description: str = "Number of label-noise methods (confident learning, AUM, data maps) that flag the row."

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        cols = {c: np.asarray(ctx.scores[c], bool) for c in FLAGS if c in ctx.scores}
        if not cols:
            raise CurateError("no label-noise flags were computed (they need labels and the probe stage)")
        m = np.stack(list(cols.values()))
        values = m.sum(axis=0).astype(np.int64)
        names = list(cols)
        overlap = (m[:, None, :] & m[None, :, :]).sum(axis=2)
        return ScoreResult(values, summary={
            "methods": {c: FLAGS[c] for c in names},
            "counts": {c: int(v) for c, v in zip(names, m.sum(axis=1))},
            "overlap": {"columns": names, "matrix": overlap.tolist()},
            "distribution": {str(k): int((values == k).sum()) for k in range(len(names) + 1)},
            "flagged": int((values > 0).sum()), "cutoff": 1,
            "why": f"count of {len(names)} methods' flags; filter consensus ≥ k to require k of {len(names)}",
        })
