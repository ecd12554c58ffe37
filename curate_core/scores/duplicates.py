"""Duplicate scores: exact (normalised-text groups) and semantic (SemDeDup). The maths is in curate_core/dedup.py.

Parameters (``--param 'scores.params={"dup_rank": {"urls": false}}'``):

* ``dup_rank``: the :class:`~curate_core.dedup.Normalise` switches ``unicode``, ``urls``, ``case``,
  ``punctuation``, ``whitespace`` (all true by default).
* ``semdedup_sim``: ``n_clusters`` (default ⌈√N⌉), ``max_cluster_size`` (4,000: larger k-means clusters are
  split again before the pairwise step, so it costs at most N·4,000·d), ``keep`` (``hard``: keep the row
  farthest from its centroid, as in the paper; ``first``: keep the first row), ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import dedup
from ..columns import Column
from .base import Score, ScoreContext, ScoreResult, register

#: eps values whose removed counts go into the semdedup summary (the page computes any other eps live)
SUMMARY_EPS = (0.01, 0.02, 0.05, 0.1, 0.2)


@register
@dataclass(frozen=True)
class ExactDuplicates(Score):
    name: str = "dup_rank"
    title: str = "Exact duplicates (rank in the group of equal normalised texts; 0 = kept)"
    columns: tuple = (Column("dup_rank", "BIGINT", "Rank in its exact-duplicate group (0 = kept)"),
                      Column("dup_group", "BIGINT", "Exact-duplicate group (−1 = none)"),
                      Column("dup_label_conflict", "BOOLEAN", "Its duplicate group carries different labels"),
                      Column("is_duplicate", "BOOLEAN", "Repeats an earlier kept row", flag=True))
    kind: str = "global"
    requires: tuple = ("texts",)
    uses: tuple = ("label_quality",)  # keeps the row with the best label quality when that score exists
    topic: str = "duplicates"
    direction: str = "higher_worse"
    version: str = "1"
    description: str = ("Rows whose normalised text (case, whitespace, punctuation, URLs, Unicode folded) equals "
                        "another row's form a group (`dup_group`, −1 = no duplicate). Rank 0 is the kept row: the "
                        "best `label_quality` when that score exists, else the first seen. `dup_label_conflict` "
                        "marks groups whose rows carry different labels — label-noise evidence.")
    params: dict = field(default_factory=lambda: dedup.Normalise().as_dict())

    def check(self, given: dict) -> None:
        dedup.Normalise.from_params(given)  # names the normalisation options, and wants true/false

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        opts = dedup.Normalise.from_params(self.settings(ctx))
        codes = dedup.group_codes(ctx.texts, opts)
        quality = ctx.column("label_quality") if ctx.has("score:label_quality") else None
        labels = ctx.label_codes if ctx.has("label_codes") else None
        g = dedup.exact_groups(codes, labels, quality)
        rule = "best label_quality (ties: first seen)" if quality is not None else "first seen"
        return ScoreResult(
            g.rank,
            columns={"dup_group": g.group, "dup_label_conflict": g.conflict, "is_duplicate": g.rank > 0},
            summary={"flagged": g.n_duplicates, "cutoff": "dup_rank > 0",
                     "why": f"repeats an earlier kept row after normalising ({opts.describe()}); kept row: {rule}",
                     "groups": g.n_groups, "rows_in_groups": g.rows_in_groups,
                     "conflict_groups": g.conflict_groups, "conflict_rows": int(g.conflict.sum()),
                     "normalise": opts.as_dict(), "keep_rule": rule},
        )


@register
@dataclass(frozen=True)
class SemDeDup(Score):
    name: str = "semdedup_sim"
    title: str = "SemDeDup: largest cosine similarity to an earlier (kept-first) row of its k-means cell"
    columns: tuple = (Column("semdedup_sim", "DOUBLE", "SemDeDup similarity to an earlier row of its k-means cell"),
                      Column("semdedup_cluster", "BIGINT", "SemDeDup k-means cell"),
                      Column("semdedup_match", "BIGINT", "row_id it near-duplicates (−1: none)"))
    kind: str = "group"
    requires: tuple = ("embeddings",)
    topic: str = "duplicates"
    direction: str = "higher_worse"
    version: str = "1"
    description: str = ("A row is a semantic near-duplicate at eps when semdedup_sim > 1 − eps (Abbas et al. "
                        "2023). `semdedup_cluster` is its k-means cell (SemDeDup's own partition, not the map's "
                        "clusters), `semdedup_match` the row_id it duplicates (−1: the first row of its cell, never "
                        "removed).")
    params: dict = field(default_factory=lambda: {"n_clusters": None, "max_cluster_size": 4_000, "keep": "hard",
                                                  "seed": 0})

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        p = self.settings(ctx)
        r = dedup.semdedup(ctx.embeddings, n_clusters=p["n_clusters"], max_cluster_size=int(p["max_cluster_size"]),
                           keep=str(p["keep"]), seed=int(p["seed"]),
                           progress=lambda d, t, m: ctx.report(d, t, f"semdedup: {m}"))
        row_ids = np.asarray(ctx.row_ids, dtype=np.int64)
        match = np.where(r.match >= 0, row_ids[np.maximum(r.match, 0)], -1)
        removed = dict(zip(map(str, SUMMARY_EPS), dedup.removed_counts(r.sim, SUMMARY_EPS)))
        return ScoreResult(
            r.sim.astype(np.float64),
            columns={"semdedup_cluster": r.cluster, "semdedup_match": match},
            summary={"flagged": removed[str(dedup.DEFAULT_EPS)],
                     "cutoff": f"semdedup_sim > 1 - eps (eps = {dedup.DEFAULT_EPS} here; any eps on the page)",
                     "why": "cosine similarity to an earlier row of the same k-means cell is above 1 − eps",
                     "removed_at_eps": removed, "clusters": r.n_clusters, "largest_cluster": r.largest_cluster,
                     "split_clusters": r.split_clusters, "max_cluster_size": int(p["max_cluster_size"]),
                     "keep": p["keep"]},
        )
