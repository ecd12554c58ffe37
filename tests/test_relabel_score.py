"""`relabel_agreement`: the clean-probe suggestion and its neighbours' agreement for the flagged rows.

Synthetic blobs (one per class) with seeded label flips and a consensus that flags the flips and some clean
rows: the clean probe must recover the true label of nearly every flip, the neighbours must agree with it, and
rows that are not flagged must stay unjudged. The neighbour share is checked against a plain Python loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from curate_core import CurateError
from curate_core.neighbours import knn
from curate_core.scores import ScoreContext, registered
from curate_core.scores.relabel import neighbour_agreement

CLASSES = ["a", "b", "c", "d"]


def blobs(n: int = 400, flip: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, len(CLASSES), n)
    centres = rng.normal(size=(len(CLASSES), 16)) * 3
    x = (centres[true] + rng.normal(size=(n, 16))).astype(np.float32)
    given = true.copy()
    flipped = rng.random(n) < flip
    given[flipped] = (true[flipped] + rng.integers(1, len(CLASSES), flipped.sum())) % len(CLASSES)
    # the consensus: every flip flagged by 2–3 methods, 5 % of the clean rows by 2, the rest by 0–1
    cons = rng.integers(0, 2, n)
    cons[flipped] = rng.integers(2, 4, flipped.sum())
    cons[~flipped & (rng.random(n) < 0.05)] = 2
    return x, true, given, flipped, cons


def context(x, given, cons, **params):
    ctx = ScoreContext.from_arrays([f"t{i}" for i in range(len(x))], [CLASSES[g] for g in given], x)
    ctx.scores["consensus"] = cons
    ctx.params = {"relabel_agreement": params} if params else {}
    return ctx


def test_the_clean_probe_recovers_the_flipped_labels_and_the_neighbours_agree():
    x, true, given, flipped, cons = blobs()
    score = registered()["relabel_agreement"]
    r = score.compute(context(x, given, cons))
    flagged = cons >= 2
    lab, conf, agree = r.columns["relabel_label"], r.columns["relabel_confidence"], r.values
    assert np.isnan(agree[~flagged]).all() and np.isnan(conf[~flagged]).all()
    assert all(v is None for v in lab[~flagged])
    right = np.array([lab[i] == CLASSES[true[i]] for i in np.flatnonzero(flipped)])
    assert right.mean() >= 0.95, right.mean()
    assert np.median(agree[flipped]) >= 0.8 and ((conf[flagged] > 0) & (conf[flagged] <= 1)).all()
    # flagged rows whose label was right: the clean probe mostly confirms it (no relabel)
    clean_flagged = flagged & ~flipped
    assert np.mean([lab[i] == CLASSES[given[i]] for i in np.flatnonzero(clean_flagged)]) >= 0.9
    assert r.summary["judged"] == int(flagged.sum()) and r.summary["trained_on"] == int((~flagged).sum())
    # a stricter consensus judges fewer rows
    r3 = score.compute(context(x, given, cons, min_consensus=3))
    assert r3.summary["judged"] == int((cons >= 3).sum()) < r.summary["judged"]


def test_the_neighbour_share_matches_a_plain_loop():
    x, _, given, _, cons = blobs(n=150, seed=3)
    _, idx = knn(x, 12)
    usable = cons < 2
    rows = np.flatnonzero(~usable)
    sugg = np.random.default_rng(1).integers(0, len(CLASSES), len(rows))
    got = neighbour_agreement(idx, given, usable, rows, sugg, 5)
    for j, r in enumerate(rows):
        nb = [q for q in idx[r] if usable[q]][:5]
        want = np.mean([given[q] == sugg[j] for q in nb]) if nb else 0.0
        assert got[j] == pytest.approx(want)


def test_no_flagged_rows_and_bad_parameters():
    x, _, given, _, cons = blobs(n=120)
    score = registered()["relabel_agreement"]
    r = score.compute(context(x, given, np.zeros_like(cons)))
    assert np.isnan(r.values).all() and r.summary["judged"] == 0 and "no row is flagged" in r.summary["why"]
    for bad, what in (({"k": 0}, "k must"), ({"pool": 5, "k": 10}, "pool"), ({"l2": -1}, "l2"),
                      ({"min_consensus": 1.5}, "min_consensus"), ({"colour": 1}, "colour")):
        with pytest.raises(CurateError, match=what):
            score.settings({"relabel_agreement": bad})
