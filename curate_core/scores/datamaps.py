"""Dataset cartography (Swayamdipta et al. 2020): `confidence`, `variability`, `correctness`, `is_hard_to_learn`.

Over the training epochs of the probe: confidence = mean probability of the assigned label, variability = its
standard deviation, correctness = the fraction of epochs in which the assigned label was the top class.
Easy rows sit at high confidence, ambiguous ones at high variability, hard-to-learn ones (often mislabelled)
at low confidence and low variability. The paper draws the regions by eye; for a flag we calibrate like AUM:
``is_hard_to_learn`` = confidence below the ``percentile`` (default 99) of the threshold samples' confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..columns import Column
from .base import Score, ScoreContext, ScoreResult, register
from .aum import calibration_problem, check_percentile, fallback_cutoff, fallback_why, threshold_cutoff
from .label_quality import noise_estimate, probe_dynamics, rate_summary

#: like AUM_CAP: a row whose given label gets on average at least half the probability is not hard to learn; a
#: cutoff above it means the calibration failed (the same rule and fallback as AUM, see curate_core.scores.aum)
CONFIDENCE_CAP = 0.5


@register
@dataclass(frozen=True)
class Confidence(Score):
    name: str = "confidence"
    title: str = "Data map confidence"
    columns: tuple = (Column("confidence", "DOUBLE", "data-map confidence"),
                      Column("variability", "DOUBLE", "Data map variability"),
                      Column("correctness", "DOUBLE", "Data map correctness"),
                      Column("is_hard_to_learn", "BOOLEAN", "Hard to learn (data maps)", flag=True))
    kind: str = "global"
    requires: tuple = ("labels", "probe")
    topic: str = "label"
    method: str = "data maps"
    family: str = "training dynamics"  # the same probe runs as AUM: they err together
    direction: str = "higher_better"
    version: str = "2"
    nan_policy: str = "unlabelled"
    description: str = ("Data maps: mean (confidence) and std (variability) over epochs of the probability of the "
                        "assigned label, fraction of epochs it was the top class (correctness).")
    params: dict = field(default_factory=lambda: {"percentile": 99.0})

    def validate(self, settings: dict) -> None:
        check_percentile(self.name, settings["percentile"])

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes, probe = probe_dynamics(ctx)
        p = np.asarray(probe.p_gold, dtype=np.float64)  # R×E×N
        conf_runs = p.mean(axis=1)
        var_runs = p.std(axis=1)
        corr_runs = (np.asarray(probe.margin) > 0).mean(axis=1)
        out = {}
        for key, runs in (("confidence", conf_runs), ("variability", var_runs), ("correctness", corr_runs)):
            v = probe.per_run_mean(runs)
            v[codes < 0] = np.nan
            out[key] = v
        pct = float(self.settings(ctx)["percentile"])
        cutoff, thr = threshold_cutoff(conf_runs, probe.threshold, pct)
        estimate = noise_estimate(ctx)
        problem = None
        if cutoff is None:
            flag = np.zeros(ctx.n, bool)
            why = "no threshold samples (imported logits): no hard-to-learn flag"
        else:
            why = (f"confidence below the {pct:g}th percentile of {thr.size:,} threshold samples' confidence "
                   f"(rows moved to a fake class)")
            problem = calibration_problem(cutoff, CONFIDENCE_CAP, out["confidence"], estimate,
                                          int((codes >= 0).sum()))
            if problem:
                learnt, cutoff = cutoff, fallback_cutoff(out["confidence"], estimate, CONFIDENCE_CAP)
                why = fallback_why(problem, estimate, "confidence", cutoff, learnt)
            flag = np.nan_to_num(out["confidence"], nan=np.inf) < cutoff
        return ScoreResult(out["confidence"], {"variability": out["variability"], "correctness": out["correctness"],
                                               "is_hard_to_learn": flag}, {
            "flagged": int(flag.sum()), "cutoff": cutoff, "percentile": pct, "why": why,
            "flag_column": "is_hard_to_learn", "calibration": "failed" if problem else "ok",
            "calibration_problem": problem, **rate_summary(flag, codes, estimate),
        })
