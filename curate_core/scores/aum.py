"""Area under the margin (Pleiss et al. 2020): `aum` and `aum_flag`.

AUM of a row = the mean over training epochs of (logit of its assigned class − largest other logit), taken while
the probe trains on it. Mislabelled rows are fitted late or never, so their margin stays low. The cutoff comes
from *threshold samples*: rows the probe stage moved to a fake extra class (so they are surely "mislabelled");
a row whose AUM is below the ``percentile`` (default 99) of the threshold samples' AUM is flagged. Each row's
AUM averages the threshold runs in which it kept its own label (see curate_core.dynamics).

**Failed calibration.** The cutoff is only as good as the threshold samples: when the probe memorises them (tiny
data, many dimensions) their AUM is high and so is the cutoff. The calibration is called failed when the learnt
cutoff is above 0 (the given label wins on average, so such a row is no suspect) or the flag would mark more than
2× the share of labels confident learning estimates to be wrong, or less than half of it (and at least 1 % of the
rows off). Then the documented fallback flags the rows with the lowest AUM, as many as confident learning
estimates are wrong (``cleanlab.count.num_label_issues``), and the summary says why (``calibration``).

With imported per-epoch logits there are no threshold samples; the cutoff is then 0 (on average the given
label was not the model's top class), and the summary says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..columns import Column
from ..errors import CurateError
from .base import Score, ScoreContext, ScoreResult, register
from .label_quality import RATE_WARN, noise_estimate, probe_dynamics, rate_summary


def per_run_aum(margin: np.ndarray) -> np.ndarray:
    """R×E×N margins → R×N AUM (mean over epochs; vectorised, float64)."""
    return np.asarray(margin, dtype=np.float64).mean(axis=1)


#: A cutoff learnt from threshold samples above this AUM means the calibration failed. Above 0 the given label
#: wins on average, so the row does not look mislabelled whatever the threshold samples say: they score that high
#: only when the probe memorised them, which happens on tiny data (few rows per class, many dimensions). On real
#: data the cutoff is well below 0 (BANKING77: −0.71).
AUM_CAP = 0.0


def calibration_problem(cutoff: float, cap: float, values: np.ndarray, estimate: tuple[int, float] | None,
                        n_labelled: int) -> str | None:
    """Why a cutoff learnt from threshold samples cannot be trusted (None when it can), see the module doc."""
    if cutoff > cap:
        return (f"the threshold samples' cutoff ({cutoff:.3f}) is above {cap:g}: the probe memorised them, so "
                "they do not look mislabelled (too few rows for a reliable cutoff)")
    if estimate is None:  # no probabilities to compare with
        return None
    flagged = int((np.nan_to_num(values, nan=np.inf) < cutoff).sum())
    n_est, rate_est = estimate
    rate = flagged / max(1, n_labelled)
    if flagged > RATE_WARN * n_est and flagged - RATE_WARN * n_est > 0.01 * n_labelled:
        return (f"the cutoff {cutoff:.3f} would flag {rate:.1%} of the labelled rows, more than {RATE_WARN:g}× the "
                f"{rate_est:.1%} confident learning estimates to be wrong: the threshold samples are not separated "
                "from the rest")
    if flagged < n_est / RATE_WARN and n_est / RATE_WARN - flagged > 0.01 * n_labelled:
        return (f"the cutoff {cutoff:.3f} would flag {rate:.1%} of the labelled rows, less than 1/{RATE_WARN:g} of the "
                f"{rate_est:.1%} confident learning estimates to be wrong: the threshold samples are harder to fit "
                "than the mislabelled rows (a probe that fits almost every row, e.g. on many sparse features)")
    return None


def fallback_cutoff(values: np.ndarray, estimate: tuple[int, float] | None, cap: float) -> float:
    """The failed calibration's cutoff: the estimated number of lowest values (the cap when there is no
    estimate). Not capped: a probe that fits every row (many sparse features, few rows) gives even the mislabelled
    rows an AUM above 0, yet still ranks them lowest."""
    return cap if estimate is None else lowest_cutoff(values, estimate[0])


def fallback_why(problem: str, estimate: tuple[int, float] | None, what: str, cutoff: float, learnt: float) -> str:
    how = ("none is flagged above the cap" if estimate is None else
           f"the {estimate[0]:,} rows with the lowest {what} are flagged, as many as confident learning estimates are "
           "mislabelled")
    return f"calibration failed: {problem}. Fallback: {how} (cutoff {cutoff:.3f}; the threshold samples gave {learnt:.3f})"


def lowest_cutoff(values: np.ndarray, k: int) -> float:
    """A cutoff that flags the *k* lowest finite values (``values < cutoff``; ties at the k-th value included)."""
    v = np.sort(values[np.isfinite(values)])
    if k <= 0 or v.size == 0:
        return float(v[0]) if v.size else 0.0  # nothing is below the smallest value
    return float(np.nextafter(v[min(k, v.size) - 1], np.inf))


def check_percentile(score: str, value) -> None:
    """A threshold samples' percentile must be a number in (0, 100]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
        raise CurateError(f"The `{score}` percentile must be a number in (0, 100]; got {value!r}",
                          f'e.g. --param \'scores.params={{"{score}": {{"percentile": 95}}}}\'')


def threshold_cutoff(per_run: np.ndarray, threshold: np.ndarray, percentile: float) -> tuple[float | None, np.ndarray]:
    """(percentile of the threshold samples' values, those values) — None when there are no threshold samples."""
    values = per_run[threshold]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None, values
    return float(np.percentile(values, percentile)), values


@register
@dataclass(frozen=True)
class AUM(Score):
    name: str = "aum"
    title: str = "Area under the margin (AUM)"
    columns: tuple = (Column("aum", "DOUBLE", "AUM"),
                      Column("aum_flag", "BOOLEAN", "AUM below the threshold samples' cutoff", flag=True))
    kind: str = "global"
    requires: tuple = ("labels", "probe")
    topic: str = "label"
    method: str = "AUM"
    family: str = "training dynamics"
    direction: str = "higher_better"
    version: str = "2"
    nan_policy: str = "unlabelled"
    description: str = ("Mean over training epochs of (assigned-class logit − largest other logit); aum_flag = "
                        "below the 99th percentile of threshold samples' AUM (parameters: percentile, or cutoff to set it by hand).")
    params: dict = field(default_factory=lambda: {"percentile": 99.0, "cutoff": None})

    def validate(self, settings: dict) -> None:
        check_percentile(self.name, settings["percentile"])
        c = settings["cutoff"]
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not np.isfinite(c)):
            raise CurateError(f"AUM cutoff must be a finite number or null; got {c!r}",
                              'e.g. --param \'scores.params={"aum": {"cutoff": -0.5}}\'')

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes, probe = probe_dynamics(ctx)
        p = self.settings(ctx)
        pct = float(p["percentile"])
        runs = per_run_aum(probe.margin)
        values = probe.per_run_mean(runs)
        values[codes < 0] = np.nan
        cutoff, thr = threshold_cutoff(runs, probe.threshold, pct)
        estimate = noise_estimate(ctx)
        problem = None
        manual = p["cutoff"]
        if manual is not None:  # set by hand (the Label issues page's slider)
            cutoff = float(manual)
            share = f" = the {(thr <= cutoff).mean():.0%} point of {thr.size:,} threshold samples" if thr.size else ""
            why = f"cutoff {cutoff:.3f} set by hand{share}"
        elif cutoff is None:
            cutoff, why = 0.0, ("no threshold samples (imported logits): cutoff 0, i.e. on average the given label "
                                "was not the model's top class")
        else:
            why = (f"{pct:g}th percentile of the AUM of {thr.size:,} threshold samples (rows moved to a fake class, "
                   f"so surely mislabelled): rows whose AUM is lower look mislabelled too")
            problem = calibration_problem(cutoff, AUM_CAP, values, estimate, int((codes >= 0).sum()))
            if problem:
                learnt, cutoff = cutoff, fallback_cutoff(values, estimate, AUM_CAP)
                why = fallback_why(problem, estimate, "AUM", cutoff, learnt)
        flag = np.nan_to_num(values, nan=np.inf) < cutoff
        return ScoreResult(values, {"aum_flag": flag}, {
            "flagged": int(flag.sum()), "cutoff": cutoff, "percentile": pct, "why": why, "flag_column": "aum_flag",
            "threshold_samples": int(thr.size), "threshold_aum": np.round(thr, 4).tolist(),
            "epochs": int(probe.margin.shape[1]), "runs": int(probe.margin.shape[0]),
            "calibration": "failed" if problem else "ok", "calibration_problem": problem,
            **rate_summary(flag, codes, estimate),
        })
