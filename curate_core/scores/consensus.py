"""`consensus`: how many label-noise methods flag a row (0..n), so a recipe can require k of n.

The methods are the flag columns of the label scores computed before it (cleanlab's ``is_label_issue``, AUM's
``aum_flag``, data maps' ``is_hard_to_learn``). The summary carries per-method counts and pairwise overlaps for
the Label issues page. Unlabelled rows are flagged by no method, so their consensus is 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import CurateError
from ..columns import Column
from .base import Score, ScoreContext, ScoreResult, register, registered
from .label_quality import RATE_WARN, noise_estimate

#: flag column → method name shown on the page
class _FlagMethods(Mapping):
    """flag column → method name of every registered score that declares a ``method`` (read live from the
    registry, so a new label-noise plugin is counted the day it is registered)."""

    def _now(self) -> dict[str, str]:
        return {s.flag: s.method for s in registered().values() if s.method and s.flag}

    def __getitem__(self, key: str) -> str:
        return self._now()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


#: the flags the consensus counts (e.g. is_label_issue → "confident learning", aum_flag → "AUM")
FLAGS: Mapping[str, str] = _FlagMethods()


@register
@dataclass(frozen=True)
class Consensus(Score):
    name: str = "consensus"
    title: str = "Label-noise consensus (methods flagging the row)"
    columns: tuple = (Column("consensus", "BIGINT", "methods flagging"),)
    kind: str = "global"
    requires: tuple = ()
    topic: str = "label"
    direction: str = "higher_worse"
    version: str = "1"
    nan_policy: str = "never"
    description: str = "Number of label-noise methods (confident learning, AUM, data maps) that flag the row."

    @property
    def needs(self) -> tuple[str, ...]:
        """It reads the flag of every score that declares a method, whichever of them could run."""
        return tuple(s.name for s in registered().values() if s.method and s.flag)

    def describe(self) -> dict:
        return {**super().describe(), "uses": list(self.needs)}

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        cols = {c: np.asarray(ctx.column(c), bool) for c in FLAGS if ctx.has(f"score:{c}")}
        if not cols:
            raise CurateError("no label-noise flags were computed (they need labels and the probe stage)")
        m = np.stack(list(cols.values()))
        values = m.sum(axis=0).astype(np.int64)
        names = list(cols)
        overlap = (m[:, None, :] & m[None, :, :]).sum(axis=2)
        counts = dict(zip(names, m.sum(axis=1).tolist()))
        # the yardstick every flag's summary uses too: how many labels confident learning estimates are wrong
        est = noise_estimate(ctx)
        loud = [FLAGS[c] for c in names if est is not None and counts[c] > RATE_WARN * est[0]]
        return ScoreResult(values, summary={
            "over_estimate": loud,
            "warning": (f"{', '.join(loud)} flag{'s' if len(loud) == 1 else ''} more than {RATE_WARN:g}× the "
                        f"{est[0]:,} rows confident learning estimates are mislabelled: a consensus ≥ 2 then leans on "
                        "them") if loud else None,
            "methods": {c: FLAGS[c] for c in names},
            "counts": {c: int(v) for c, v in zip(names, m.sum(axis=1))},
            "overlap": {"columns": names, "matrix": overlap.tolist()},
            "distribution": {str(k): int((values == k).sum()) for k in range(len(names) + 1)},
            "flagged": int((values > 0).sum()), "cutoff": 1,
            "why": f"count of {len(names)} methods' flags; filter consensus ≥ k to require k of {len(names)}",
        })
