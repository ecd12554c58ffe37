"""Area under the margin (Pleiss et al. 2020): `aum` and `aum_flag`.

AUM of a row = the mean over training epochs of (logit of its assigned class − largest other logit), taken while
the probe trains on it. Mislabelled rows are fitted late or never, so their margin stays low. The cutoff comes
from *threshold samples*: rows the probe stage moved to a fake extra class (so they are surely "mislabelled");
a row whose AUM is below the ``percentile`` (default 99) of the threshold samples' AUM is flagged. Each row's
AUM averages the threshold runs in which it kept its own label (see curate_core.dynamics).

With imported per-epoch logits there are no threshold samples; the cutoff is then 0 (on average the given
label was not the model's top class), and the summary says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..columns import Column
from ..errors import CurateError
from .base import Score, ScoreContext, ScoreResult, register
from .label_quality import probe_dynamics


def per_run_aum(margin: np.ndarray) -> np.ndarray:
    """R×E×N margins → R×N AUM (mean over epochs; vectorised, float64)."""
    return np.asarray(margin, dtype=np.float64).mean(axis=1)


#: A cutoff learnt from threshold samples is capped at this AUM. Above 0 the given label wins on average, so the
#: row does not look mislabelled whatever the threshold samples say: they score that high only when the probe
#: memorised them, which happens on tiny data (few rows per class, many dimensions). On real data the cutoff is
#: well below 0 (BANKING77: −0.71) and the cap changes nothing.
AUM_CAP = 0.0


def capped(cutoff: float, cap: float, why: str, what: str) -> tuple[float, str]:
    """(min(cutoff, cap), why — with a note when the cap applied)."""
    if cutoff <= cap:
        return cutoff, why
    return cap, (f"{why}; that point ({cutoff:.3f}) is capped at {cap:g}: the probe memorised the threshold "
                 f"samples (too few rows for a reliable cutoff), and a row {what} above {cap:g} is not flagged")


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
    direction: str = "higher_better"
    version: str = "1"
    nan_policy: str = "unlabelled"
    description: str = ("Mean over training epochs of (assigned-class logit − largest other logit); aum_flag = "
                        "below the 99th percentile of threshold samples' AUM (parameters: percentile, or cutoff to set it by hand).")
    params: dict = field(default_factory=lambda: {"percentile": 99.0, "cutoff": None})

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes, probe = probe_dynamics(ctx)
        p = self.settings(ctx)
        pct = float(p["percentile"])
        if not 0 < pct <= 100:
            raise CurateError(f"AUM percentile must be in (0, 100]; got {pct}")
        runs = per_run_aum(probe.margin)
        values = probe.per_run_mean(runs)
        values[codes < 0] = np.nan
        cutoff, thr = threshold_cutoff(runs, probe.threshold, pct)
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
            cutoff, why = capped(cutoff, AUM_CAP, why, "with an AUM")
        flag = np.nan_to_num(values, nan=np.inf) < cutoff
        return ScoreResult(values, {"aum_flag": flag}, {
            "flagged": int(flag.sum()), "cutoff": cutoff, "percentile": pct, "why": why, "flag_column": "aum_flag",
            "threshold_samples": int(thr.size), "threshold_aum": np.round(thr, 4).tolist(),
            "epochs": int(probe.margin.shape[1]), "runs": int(probe.margin.shape[0]),
        })
