"""Outlier scores: mean cosine distance to the k nearest rows (all rows, or rows with the same label).

The neighbour search is in curate_core/neighbours.py (exact up to 10,000 rows, an IVF index above).
Parameters: ``k`` (10), ``method`` (auto | exact | ivf), ``exact_max`` (10,000), ``nprobe`` (8), ``seed`` (0);
``outlier_score`` also ``whisker`` (1.5: rows above Q3 + 1.5·IQR are flagged `is_outlier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import neighbours
from ..errors import CurateError
from ..columns import Column
from .base import Score, ScoreContext, ScoreResult, register

_KNN = {"k": 10, "method": "auto", "exact_max": 10_000, "nprobe": 8, "seed": 0}


def _knn_kw(p: dict, ctx: ScoreContext, name: str) -> dict:
    return {"method": str(p["method"]), "exact_max": int(p["exact_max"]), "nprobe": int(p["nprobe"]),
            "seed": int(p["seed"]), "progress": lambda d, t, m: ctx.report(d, t, f"{name}: {m}")}


@register
@dataclass(frozen=True)
class Outlier(Score):
    name: str = "outlier_score"
    title: str = "Outlier score (mean cosine distance to the 10 nearest rows)"
    columns: tuple = (Column("outlier_score", "DOUBLE", "Outlier score (mean cosine distance to the nearest rows)"),
                      Column("is_outlier", "BOOLEAN", "Above the upper Tukey fence", flag=True))
    kind: str = "global"
    requires: tuple = ("embeddings",)
    topic: str = "outliers"
    direction: str = "higher_worse"
    version: str = "1"
    description: str = ("Rows far from every other row: another language, boilerplate, broken text. "
                        "`is_outlier` marks rows above the upper Tukey fence (Q3 + 1.5·IQR).")
    nan_policy: str = "allowed"  # a workspace with one row has no neighbours
    params: dict = field(default_factory=lambda: {**_KNN, "whisker": 1.5})

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        p = self.settings(ctx)
        v = neighbours.mean_knn_distance(ctx.embeddings, int(p["k"]), **_knn_kw(p, ctx, self.name))
        cut = neighbours.tukey_cutoff(v, float(p["whisker"]))
        flag = np.nan_to_num(v, nan=-np.inf) > cut
        return ScoreResult(v, columns={"is_outlier": flag},
                           summary={"flagged": int(flag.sum()), "cutoff": cut, "k": int(p["k"]),
                                    "why": f"mean cosine distance to the {int(p['k'])} nearest rows is above the "
                                           f"upper Tukey fence Q3 + {p['whisker']}·IQR"})


@register
@dataclass(frozen=True)
class LabelOutlier(Score):
    name: str = "label_outlier_score"
    title: str = "Label outlier score (mean cosine distance to the 10 nearest rows with the same label)"
    columns: tuple = (Column("label_outlier_score", "DOUBLE", "Label outlier score"),)
    kind: str = "group"
    requires: tuple = ("embeddings", "label_codes")
    topic: str = "outliers"
    direction: str = "higher_worse"
    version: str = "1"
    description: str = ("A row far from the other rows of its own label: an odd member of its class, or a "
                        "mislabelled one. NaN for unlabelled rows and labels with a single row.")
    nan_policy: str = "allowed"
    params: dict = field(default_factory=lambda: dict(_KNN))

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes = np.asarray(ctx.label_codes)
        if not (codes >= 0).any():
            raise CurateError("needs labels; this data has none")
        p = self.settings(ctx)
        v = neighbours.per_label_knn_distance(ctx.embeddings, codes, int(p["k"]), **_knn_kw(p, ctx, self.name))
        return ScoreResult(v, summary={"k": int(p["k"]), "scored": int(np.isfinite(v).sum())})
