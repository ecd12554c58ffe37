"""Confident learning (cleanlab) on the probe's out-of-fold probabilities: `label_quality`, `is_label_issue`,
`suggested_label`.

We call the library rather than re-implement it: ``cleanlab.rank.get_label_quality_scores`` (default
``self_confidence``: the out-of-fold probability of the given label) and ``cleanlab.filter.find_label_issues``
(default ``prune_by_noise_rate``: estimates how many rows of each given class really belong to each other class
from the confident joint, then flags that many rows per pair, lowest margin first). The suggested label is the
class the out-of-fold probabilities rank first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..columns import Column
from ..errors import CurateError, choices
from .base import Score, ScoreContext, ScoreResult, labelled_classes, register

METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")


def probe_for_labels(ctx: ScoreContext):
    """(codes, classes, probe) after checking the labels can be judged and the probe saw the same classes."""
    codes, classes = labelled_classes(ctx)
    probe = ctx.probe
    if list(probe.classes) != list(classes):
        raise CurateError("The probe was trained on other classes than the workspace has now",
                          "run the probe stage again")
    return codes, classes, probe


def probe_dynamics(ctx: ScoreContext):
    """(codes, probe) for the training-dynamics scores (AUM, data maps, EL2N, forgetting)."""
    codes, _, probe = probe_for_labels(ctx)
    if not probe.has_dynamics:
        raise CurateError("The probe has no training dynamics", "run the probe stage again")
    return codes, probe


def estimated_noise(codes: np.ndarray, probs: np.ndarray | None) -> tuple[int, float] | None:
    """(count, share of the labelled rows) of wrong labels as confident learning estimates them from the
    out-of-fold probabilities (cleanlab ``num_label_issues``, the off-diagonal of the calibrated confident joint):
    the yardstick every label flag's rate is held against. None without probabilities."""
    from cleanlab.count import num_label_issues

    lab = codes >= 0
    if probs is None or not lab.any() or np.isnan(probs[lab]).any():
        return None
    count = int(num_label_issues(codes[lab], np.asarray(probs[lab], dtype=np.float64)))
    return count, count / int(lab.sum())


def noise_estimate(ctx: ScoreContext) -> tuple[int, float] | None:
    """:func:`estimated_noise` of the context's probe, computed once per scores run: confident learning, AUM, data
    maps and the consensus all hold their flags against it. None without judgeable labels or a probe."""
    def compute() -> tuple[int, float] | None:
        try:
            codes, _, probe = probe_for_labels(ctx)
        except CurateError:
            return None
        return estimated_noise(codes, probe.probs)

    return ctx.memo("noise_estimate", compute)


#: a method that flags more than this many times confident learning's estimated noise rate is warned about
RATE_WARN = 2.0


def rate_summary(flag: np.ndarray, codes: np.ndarray, estimate: tuple[int, float] | None) -> dict:
    """The flag rate next to the estimated noise rate (both shares of the labelled rows), for a flag's summary."""
    n_lab = max(1, int((codes >= 0).sum()))
    rate = int(np.asarray(flag, bool).sum()) / n_lab
    if estimate is None:
        return {"flag_rate": round(rate, 6)}
    return {"flag_rate": round(rate, 6), "estimated_noise_rate": round(estimate[1], 6),
            "estimated_noise": int(estimate[0]), "over_estimate": bool(rate > RATE_WARN * estimate[1])}


@register
@dataclass(frozen=True)
class LabelQuality(Score):
    name: str = "label_quality"
    title: str = "Label quality (confident learning)"
    columns: tuple = (Column("label_quality", "DOUBLE", "label quality (confident learning)"),
                      Column("is_label_issue", "BOOLEAN", "Label issue (cleanlab find_label_issues)", flag=True),
                      Column("suggested_label", "VARCHAR", "Suggested label (out-of-fold top class)"),
                      Column("suggested_confidence", "DOUBLE", "Probability of the suggested label (out-of-fold)"))
    kind: str = "global"
    requires: tuple = ("labels", "probe")
    topic: str = "label"
    method: str = "confident learning"
    family: str = "confident learning"
    direction: str = "higher_better"
    version: str = "2"
    nan_policy: str = "unlabelled"
    description: str = ("cleanlab label quality of the given label from out-of-fold probabilities (0 = surely wrong, "
                        "1 = surely right); is_label_issue = cleanlab find_label_issues; suggested_label = the "
                        "out-of-fold top class, suggested_confidence its out-of-fold probability.")
    params: dict = field(default_factory=lambda: {"method": "self_confidence", "filter_by": "prune_by_noise_rate"})

    def validate(self, settings: dict) -> None:
        if settings["method"] not in METHODS:
            raise CurateError(f"Unknown label quality method {settings['method']!r}", f"use one of {choices(METHODS)}")
        if settings["filter_by"] not in FILTERS:
            raise CurateError(f"Unknown filter_by {settings['filter_by']!r}", f"use one of {choices(FILTERS)}")

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        codes, classes, probe = probe_for_labels(ctx)
        p = self.settings(ctx)
        method, filter_by = p["method"], p["filter_by"]
        lab = codes >= 0
        probs = np.asarray(probe.probs[lab], dtype=np.float64)
        if np.isnan(probs).any():
            raise CurateError("The probe has no probabilities for some labelled rows", "run the probe stage again")
        given = codes[lab]
        quality = get_label_quality_scores(given, probs, method=method)
        issues = find_label_issues(given, probs, filter_by=filter_by, n_jobs=1)  # n_jobs=1: no fork in app threads
        top = probs.argmax(axis=1)
        values = np.full(ctx.n, np.nan)
        values[lab] = quality
        flag = np.zeros(ctx.n, bool)
        flag[lab] = issues
        names = np.asarray(classes, dtype=str)
        if lab.all():  # a str array becomes an arrow column without a Python loop
            suggested = names[top]
        else:
            suggested = np.full(ctx.n, None, dtype=object)
            suggested[lab] = names[top].astype(object)
        confidence = np.full(ctx.n, np.nan)
        confidence[lab] = probs.max(axis=1)
        n_flag = int(issues.sum())
        return ScoreResult(values, {"is_label_issue": flag, "suggested_label": suggested,
                                    "suggested_confidence": confidence}, {
            "flagged": n_flag, "cutoff": None, "flag_column": "is_label_issue",
            "why": (f"cleanlab find_label_issues (filter_by={filter_by}) on {probe.info.get('probs', 'given')} "
                    f"probabilities: the confident joint estimates {n_flag:,} of {int(lab.sum()):,} labels are wrong "
                    f"({n_flag / max(1, int(lab.sum())):.1%}); per-class thresholds, no single cutoff"),
            "method": method, "filter_by": filter_by,
            "suggested_differs": int((top != given).sum()),
            **rate_summary(flag, codes, noise_estimate(ctx)),
        })
