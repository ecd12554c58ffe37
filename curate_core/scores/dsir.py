"""DSIR target selection as a score: how much more each row looks like a target than like the pool.

The maths and the target forms are in :mod:`curate_core.dsir`. Columns: ``dsir_log_weight`` (the log
importance weight) and ``dsir_weight`` = ``exp(log weight − max)`` in (0, 1] — a mixture with
``quality: {"column": "dsir_weight", "strength": 1}`` is DSIR's importance resampling (scale does not matter to
the sampler). Without a target the score is skipped with a hint; a target file that does not exist refuses the
scores run before anything is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import dsir
from ..columns import Column
from ..errors import CurateError
from .base import Score, ScoreResult, register


@register
@dataclass(frozen=True)
class Dsir(Score):
    name: str = "dsir_log_weight"
    title: str = "DSIR importance weight towards a target (hashed n-grams)"
    columns: tuple = (Column("dsir_log_weight", "DOUBLE", "DSIR log importance weight"),
                      Column("dsir_weight", "DOUBLE", "DSIR importance weight (max 1)"))
    kind: str = "global"
    requires: tuple = ("texts",)
    topic: str = "quality"
    direction: str = "higher_better"
    version: str = "1"
    alias: str = "dsir"
    description: str = ("Log importance weight log p_target(x) − log p_pool(x) under bag-of-hashed-unigram+bigram "
                        "models (DSIR); set the target with --param scores.dsir.target=FILE (or selection:NAME, "
                        "source:VALUE).")
    params: dict = field(default_factory=lambda: {"target": None, "text": None, "buckets": dsir.BUCKETS,
                                                  "smoothing": dsir.SMOOTHING})

    def validate(self, settings: dict) -> None:
        b, s = settings["buckets"], settings["smoothing"]
        if not isinstance(b, int) or isinstance(b, bool) or not 16 <= b <= 1_000_000:
            raise CurateError(f"scores.dsir.buckets must be a whole number from 16 to 1,000,000; got {b!r}")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0:
            raise CurateError(f"scores.dsir.smoothing must be a number above 0; got {s!r}")
        dsir.check_target(settings["target"])

    def compute(self, ctx) -> ScoreResult:
        st = self.settings(ctx)
        target, what = dsir.target_texts(ctx.store, st["target"], st["text"])
        b, s = st["buckets"], float(st["smoothing"])
        x = dsir.hashed_counts(ctx.texts, b)
        raw = np.asarray(x.sum(axis=0)).ravel()
        tgt = np.asarray(dsir.hashed_counts(target, b).sum(axis=0)).ravel()
        logw = dsir.log_weights(x, tgt, raw, s)
        weight = np.exp(logw - logw.max()) if len(logw) else logw
        nz_t, nz_r = np.flatnonzero(tgt), np.flatnonzero(raw)
        summary = {"target": what, "target_texts": len(target), "buckets": b, "smoothing": s,
                   "kl_target_pool": dsir.kl(tgt, raw, s), "median_log_weight": float(np.median(logw)) if len(logw) else None,
                   # the two models, sparse, so a selection's KL reduction needs only its own texts
                   "target_buckets": nz_t.tolist(), "target_counts": tgt[nz_t].tolist(),
                   "raw_buckets": nz_r.tolist(), "raw_counts": raw[nz_r].tolist()}
        return ScoreResult(logw, {"dsir_weight": weight}, summary)
