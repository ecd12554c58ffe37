"""Contract of the label-noise score plugins on tiny synthetic data: one value per row, dtype, NaN policy,
determinism, and direction (flipped rows score worse)."""

from __future__ import annotations

import numpy as np
import pytest

from curate_core.scores import ScoreContext, compute_all, registry

from . import labeldata

LABEL_SCORES = ["label_quality", "aum", "confidence", "el2n", "forgetting", "consensus"]


@pytest.fixture(scope="module")
def computed():
    probe, codes, flipped = labeldata.synthetic_probe(n=160, rate=0.2, unlabelled=16, seed=1)
    labels = [probe.classes[c] if c >= 0 else None for c in codes]

    def run():
        ctx = ScoreContext.from_arrays([f"t{i}" for i in range(len(codes))], labels, probe=probe)
        return compute_all(ctx, only=LABEL_SCORES)

    return run(), run(), codes, flipped


@pytest.mark.parametrize("name", LABEL_SCORES)
def test_label_score_contract(computed, name):
    (cols, summaries, skipped), (cols2, _, _), codes, flipped = computed
    assert not skipped, skipped
    sc = registry()[name]
    v = np.asarray(cols[name])
    assert v.shape == codes.shape
    assert v.dtype.kind in "fi"
    if sc.nan_policy == "unlabelled":
        assert np.array_equal(np.isnan(v), codes < 0)
    else:
        assert v.dtype.kind == "i" or not np.isnan(v).any()
    assert np.array_equal(v, np.asarray(cols2[name]), equal_nan=True)  # deterministic
    lab = codes >= 0
    bad, good = v[lab & flipped].mean(), v[lab & ~flipped].mean()
    assert sc.direction in ("higher_better", "higher_worse")
    assert (bad < good) if sc.direction == "higher_better" else (bad > good), (name, bad, good)
    assert summaries[name]["title"] == sc.title


def test_flagging_scores_give_a_boolean_column_and_a_summary(computed):
    (cols, summaries, _), _, codes, _ = computed
    for name, col in (("label_quality", "is_label_issue"), ("aum", "aum_flag"), ("confidence", "is_hard_to_learn")):
        assert cols[col].dtype == bool and cols[col].shape == codes.shape
        s = summaries[name]
        assert s["flagged"] == int(cols[col].sum()) and s["why"] and s["flag_column"] == col
        assert "cutoff" in s
