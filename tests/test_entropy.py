"""The `entropy` score (ambiguity): the normalised entropy of the out-of-fold probabilities, checked against
scipy on the same inputs, and ranking truly ambiguous rows (between two class centres) above clear ones."""

from __future__ import annotations

import numpy as np
from scipy.stats import entropy as scipy_entropy

from curate_core.scores import ScoreContext, compute_all
from curate_core.scores.entropy import normalised_entropy

from . import labeldata


def test_normalised_entropy_matches_scipy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(5, 0.7), size=200)
    p[0] = [1, 0, 0, 0, 0]
    p[1] = np.full(5, 0.2)
    ours = normalised_entropy(p)
    ref = scipy_entropy(p, axis=1) / np.log(5)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert ours[0] == 0.0 and abs(ours[1] - 1.0) < 1e-12 and ((ours >= 0) & (ours <= 1 + 1e-12)).all()


def test_entropy_score_on_a_probe_nan_for_unlabelled_and_higher_between_classes():
    probe, codes, _ = labeldata.synthetic_probe(n=120, unlabelled=10, seed=4)
    # make row 3 sit exactly between two classes, row 4 sure of its class
    probe.probs[3] = [0.5, 0.5, 0.0, 0.0]
    probe.probs[4] = [0.97, 0.01, 0.01, 0.01]
    labels = [probe.classes[c] if c >= 0 else None for c in codes]
    ctx = ScoreContext.from_arrays([f"t{i}" for i in range(120)], labels, probe=probe)
    cols, summaries, skipped = compute_all(ctx, only=["entropy"])
    assert not skipped
    v = cols["entropy"]
    assert np.array_equal(np.isnan(v), codes < 0)
    assert abs(v[3] - np.log(2) / np.log(4)) < 1e-6 and v[4] < 0.15 < v[3]
    assert summaries["entropy"]["above_half"] == int((v[codes >= 0] > 0.5).sum())
