"""`consensus`: how many label-noise methods flag a row (0..n), so a recipe can require k of n.

The methods are the flag columns of the label scores computed before it: cleanlab's ``is_label_issue``
(confident learning), AUM's ``aum_flag`` and data maps' ``is_hard_to_learn`` (both *training dynamics*: they
read the same probe runs), plus any method a run names in ``include`` (the neighbours' ``knn_label_flag``,
"kNN labels", the *neighbourhood* family, does not vote by default). ``count: "families"`` gives each family one
vote, a family flagging when any of its methods does.

Why the default stays one vote per method — consensus ≥ 2 against the true flips (MiniLM): BANKING77 20 %
flips seed 11: methods 2,180 rows P 0.91 R 0.99; families with the neighbours 2,258 P 0.88 R 0.99; families
without them (confident learning ∧ training dynamics) 1,775 P 0.93 R 0.82. Seed 12: 2,208 P 0.89 R 0.99 /
2,285 P 0.87 R 0.99 / 1,848 P 0.91 R 0.84. SMS Spam 10 % flips: 507 P 0.98 R 0.89 / 506 P 0.98 R 0.89 / 430
P 0.99 R 0.76; clean SMS Spam 17 / 16 / 12 rows. AUM and data maps agree on rows confident learning misses
(its recall is 0.83 there) and those are mostly real flips; the outcome follows: on seed 11 `relabel.json`
recovers 91.5 % of the accuracy gap with the default and 85.2 % with families and neighbours. The summary
carries per-method counts and pairwise overlaps for the Label issues page. Unlabelled rows are flagged by no
method, so their consensus is 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import CurateError, choices
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

COUNTS = ("methods", "families")


def _voting(include: list[str]) -> set[str]:
    """Flag columns the consensus counts: every method that votes by default, plus the ones *include* names."""
    return {s.flag for s in registered().values() if s.method and s.flag and (s.votes or s.method in include)}


def families(flags: list[str]) -> dict[str, list[str]]:
    """family → its flag columns among *flags*, in registry order (a score without a family is its own)."""
    of = {s.flag: (s.family or s.method) for s in registered().values() if s.method and s.flag}
    out: dict[str, list[str]] = {}
    for f in flags:
        out.setdefault(of.get(f, f), []).append(f)
    return out


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
    version: str = "2"
    nan_policy: str = "never"
    description: str = ("Number of label-noise methods (confident learning, AUM, data maps) that flag the row; "
                        "count: families gives AUM and data maps (the same probe runs) one vote together.")
    params: dict = field(default_factory=lambda: {"count": "methods", "include": []})

    def validate(self, settings: dict) -> None:
        if settings["count"] not in COUNTS:
            raise CurateError(f"`consensus` count must be one of {choices(COUNTS)}, got {settings['count']!r}")
        known = sorted(set(FLAGS.values()))
        inc = settings["include"]
        if not isinstance(inc, list) or any(m not in known for m in inc):
            raise CurateError(f"`consensus` include must list method names, got {inc!r}", f"methods: {choices(known)}")

    @property
    def needs(self) -> tuple[str, ...]:
        """It reads the flag of every score that declares a method, whichever of them could run."""
        return tuple(s.name for s in registered().values() if s.method and s.flag)

    def describe(self) -> dict:
        return {**super().describe(), "uses": list(self.needs)}

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        p = self.settings(ctx)
        count, voting = p["count"], _voting(p["include"])
        cols = {c: np.asarray(ctx.column(c), bool) for c in FLAGS if c in voting and ctx.has(f"score:{c}")}
        if not cols:
            raise CurateError("no label-noise flags were computed (they need labels and the probe stage)")
        m = np.stack(list(cols.values()))
        names = list(cols)
        fam = families(names) if count == "families" else {FLAGS[c]: [c] for c in names}
        votes = np.stack([np.any([cols[c] for c in members], axis=0) for members in fam.values()])
        values = votes.sum(axis=0).astype(np.int64)
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
            "count": count, "families": {f: [FLAGS[c] for c in members] for f, members in fam.items()},
            "counts": {c: int(v) for c, v in zip(names, m.sum(axis=1))},
            "overlap": {"columns": names, "matrix": overlap.tolist()},
            "distribution": {str(k): int((values == k).sum()) for k in range(len(fam) + 1)},
            "flagged": int((values > 0).sum()), "cutoff": 1,
            "why": (f"count of {len(fam)} {count} flagging ({describe_families(fam)}); filter consensus ≥ k to "
                    f"require k of {len(fam)}"),
        })


def describe_families(fam: dict[str, list[str]]) -> str:
    """"confident learning · training dynamics (AUM, data maps) · …" for a family → flag columns mapping."""
    def one(f: str, members: list[str]) -> str:
        names = [FLAGS[c] for c in members]
        return f if names == [f] else f"{f} ({', '.join(names)})"
    return " · ".join(one(f, m) for f, m in fam.items())
