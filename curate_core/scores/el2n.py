"""Data Diet (Paul et al. 2021) and forgetting events (Toneva et al. 2019): `el2n`, `forgetting`.

EL2N = ‖softmax − onehot(assigned label)‖₂ early in training, averaged over runs (seeds); high = hard or
mislabelled. The epoch is the ``epoch`` parameter (1-based; default 10 % of the probe's epochs, like the
paper's epoch 20 of 200).

Forgetting events = how often a row goes from correctly classified in one epoch to misclassified in the next.
Rows never classified correctly count as E events (more than any learned row can have), as the paper ranks
never-learned rows as the most forgettable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..columns import Column
from ..dynamics import el2n_from_stats
from ..errors import CurateError
from .base import Score, ScoreContext, ScoreResult, register
from .label_quality import probe_dynamics


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """…×E boolean (correct per epoch) → forgetting events per row; never-correct rows get E."""
    c = np.asarray(correct, bool)
    events = (c[..., :-1] & ~c[..., 1:]).sum(axis=-1).astype(np.float64)
    return np.where(c.any(axis=-1), events, float(c.shape[-1]))


@register
@dataclass(frozen=True)
class EL2N(Score):
    name: str = "el2n"
    title: str = "EL2N (early-training error norm)"
    columns: tuple = (Column("el2n", "DOUBLE", "EL2N"),)
    kind: str = "global"
    requires: tuple = ("labels", "probe")
    topic: str = "label"
    direction: str = "higher_worse"
    version: str = "1"
    nan_policy: str = "unlabelled"
    description: str = "‖softmax − onehot‖₂ at an early epoch (10 % of training), averaged over probe runs."
    params: dict = field(default_factory=lambda: {"epoch": None})  # None: 10 % of the probe's epochs

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes, probe = probe_dynamics(ctx)
        E = probe.p_gold.shape[1]
        epoch = int(self.settings(ctx)["epoch"] or max(2, math.ceil(0.1 * E)))
        if not 1 <= epoch <= E:
            raise CurateError(f"EL2N epoch must be between 1 and {E}; got {epoch}")
        runs = el2n_from_stats(probe.p_gold[:, epoch - 1], probe.p_sq[:, epoch - 1])  # R×N
        values = probe.per_run_mean(runs)
        values[codes < 0] = np.nan
        return ScoreResult(values, summary={"epoch": epoch, "epochs": E})


@register
@dataclass(frozen=True)
class Forgetting(Score):
    name: str = "forgetting"
    title: str = "Forgetting events"
    columns: tuple = (Column("forgetting", "DOUBLE", "forgetting events"),)
    kind: str = "global"
    requires: tuple = ("labels", "probe")
    topic: str = "label"
    direction: str = "higher_worse"
    version: str = "1"
    nan_policy: str = "unlabelled"
    description: str = "Times a row went from correct to wrong between epochs (never learned = number of epochs)."

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        codes, probe = probe_dynamics(ctx)
        correct = np.moveaxis(np.asarray(probe.margin) > 0, 1, -1)  # R×N×E
        values = probe.per_run_mean(forgetting_events(correct))
        values[codes < 0] = np.nan
        never = int(np.sum(values == correct.shape[-1]))
        return ScoreResult(values, summary={"never_learned": never, "epochs": int(correct.shape[-1])})
