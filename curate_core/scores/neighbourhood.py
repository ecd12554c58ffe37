"""`knn_label_agreement`: do a row's nearest labelled neighbours carry its label? (deep k-NN, Bahri et al. 2020)

The label-noise methods of the probe — confident learning, AUM, data maps — all read one model's predictions
(AUM and data maps even the same training runs), so they err together. This one never trains: a row whose label
is rare among its ``k`` nearest labelled rows (cosine on the embeddings), while another label is more common
there, is flagged `knn_label_flag`: the "neighbourhood" family of evidence, next to confident learning and
training dynamics. The consensus counts it only on request (``consensus.include: ["kNN labels"]``): as a
default vote it flagged more clean rows than it found flips that the others miss, and on BANKING77 with 20 %
flips (seed 11) it lowered what `relabel.json` recovers of the accuracy gap from 91.5 % to 85.2 % (families)
or 83.0 % (a fourth method), and `clean.json` from 84.7 % to 80.1 %.

Columns: `knn_label_agreement` (share of the k neighbours carrying the row's label), `knn_label` (their most
common label; ties go to the row's own, then to the first class) and the flag: agreement ≤ ``max_share`` and
`knn_label` ≠ the row's label. Measured on BANKING77 with 20 % flips (MiniLM): k 10, max_share 0.2 flags 2,632
rows (precision 0.76, recall 1.00); on SMS Spam with 10 % flips 507 (0.93, 0.85); on clean SMS Spam 46 of 5,574.
Parameters: ``k`` (10), ``max_share`` (0.2) and the neighbour search's ``method``, ``exact_max``, ``nprobe``,
``seed`` (as the outlier scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import neighbours
from ..columns import Column
from ..errors import CurateError
from .base import Score, ScoreContext, ScoreResult, labelled_classes, register
from .outliers import _KNN, _knn_kw


def neighbour_votes(idx: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(share of each row's neighbours carrying its own code, the neighbours' most common code — ties to the
    row's own, then to the smallest code) for neighbour lists *idx* over rows with label *codes*."""
    n, k = idx.shape
    votes = np.zeros((n, n_classes), np.int32)
    np.add.at(votes, (np.repeat(np.arange(n), k), codes[idx].ravel()), 1)
    own = votes[np.arange(n), codes]
    top = votes.argmax(1)
    top = np.where(votes[np.arange(n), top] == own, codes, top)
    return own / max(k, 1), top


@register
@dataclass(frozen=True)
class KnnLabel(Score):
    name: str = "knn_label_agreement"
    alias: str = "knn_label"
    title: str = "kNN label agreement (share of the 10 nearest labelled rows with the row's label)"
    columns: tuple = (Column("knn_label_agreement", "DOUBLE", "share of the nearest labelled rows carrying its label"),
                      Column("knn_label", "VARCHAR", "most common label among the nearest labelled rows"),
                      Column("knn_label_flag", "BOOLEAN", "its neighbours mostly carry another label", flag=True))
    kind: str = "global"
    requires: tuple = ("labels", "label_codes", "embeddings")
    topic: str = "label"
    method: str = "kNN labels"
    family: str = "neighbourhood"
    votes: bool = False  # measured: as a vote it lowers what relabel.json recovers (module docstring)
    direction: str = "higher_better"
    version: str = "1"
    nan_policy: str = "unlabelled"
    description: str = ("Share of the row's k nearest labelled rows that carry its label; flagged when at most "
                        "max_share do and another label is more common (deep k-NN). Needs no probe.")
    params: dict = field(default_factory=lambda: {**_KNN, "max_share": 0.2})

    def validate(self, settings: dict) -> None:
        if not 1 <= int(settings["k"]) <= 1000:
            raise CurateError(f"`knn_label_agreement` k must be between 1 and 1000, got {settings['k']!r}")
        if not 0.0 <= float(settings["max_share"]) < 1.0:
            raise CurateError(f"`knn_label_agreement` max_share must be in [0, 1), got {settings['max_share']!r}")

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes, classes = labelled_classes(ctx)
        p = self.settings(ctx)
        rows = np.flatnonzero(codes >= 0)
        if len(rows) < 2:
            raise CurateError("needs at least two labelled rows")
        _, idx = neighbours.knn(np.asarray(ctx.embeddings)[rows], int(p["k"]), **_knn_kw(p, ctx, self.name))
        share, top = neighbour_votes(idx, codes[rows], len(classes))
        agreement = np.full(len(codes), np.nan)
        agreement[rows] = share
        label = np.full(len(codes), None, dtype=object)
        label[rows] = np.asarray(classes, dtype=object)[top]
        flag = np.zeros(len(codes), bool)
        flag[rows] = (share <= float(p["max_share"])) & (top != codes[rows])
        return ScoreResult(agreement, columns={"knn_label": label, "knn_label_flag": flag}, summary={
            "flagged": int(flag.sum()), "cutoff": float(p["max_share"]), "k": int(idx.shape[1]),
            "why": f"at most {float(p['max_share']):.0%} of its {idx.shape[1]} nearest labelled rows carry its "
                   "label and another label is more common there"})
