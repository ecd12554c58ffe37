"""knn_label_agreement: the neighbours' vote against scikit-learn's NearestNeighbors on the same vectors, the flag
on seeded flips, ties, unlabelled rows, and parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from curate_core.errors import CurateError
from curate_core.scores import ScoreContext, registry
from curate_core.scores.neighbourhood import neighbour_votes


def _blobs(n_per: int = 40, classes: int = 4, flip: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 16)) * 4
    y = np.repeat(np.arange(classes), n_per)
    x = centres[y] + rng.normal(size=(len(y), 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # the embed stage stores unit vectors
    given = y.copy()
    flipped = rng.choice(len(y), int(flip * len(y)), replace=False)
    given[flipped] = (y[flipped] + 1 + rng.integers(0, classes - 1, len(flipped))) % classes
    return x.astype(np.float32), y, given


def _ctx(x, given, unlabelled=()):
    labels = [f"c{g}" for g in given]
    for i in unlabelled:
        labels[i] = None
    return ScoreContext.from_arrays([f"t{i}" for i in range(len(given))], labels, embeddings=x)


def test_agreement_equals_a_scikit_learn_neighbour_vote():
    x, _, given = _blobs()
    res = registry()["knn_label_agreement"].compute(_ctx(x, given))
    _, idx = NearestNeighbors(n_neighbors=11, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    idx = np.array([[j for j in row if j != i][:10] for i, row in enumerate(idx)])
    share = (given[idx] == given[:, None]).mean(1)
    assert np.allclose(res.values, share)
    top = np.array([np.bincount(given[row], minlength=4).argmax() for row in idx])
    flag = (share <= 0.2) & (top != given)
    assert np.array_equal(res.columns["knn_label_flag"], flag)
    assert res.summary["flagged"] == int(flag.sum())


def test_the_flag_finds_flips_in_separated_classes():
    x, y, given = _blobs(flip=0.1, seed=3)
    res = registry()["knn_label_agreement"].compute(_ctx(x, given))
    flag, truth = res.columns["knn_label_flag"], given != y
    assert (flag & truth).sum() >= 0.9 * truth.sum() and (flag & ~truth).sum() <= 2
    assert all(res.columns["knn_label"][truth] == [f"c{c}" for c in y[truth]])  # the neighbours know the truth


def test_ties_go_to_the_rows_own_label_and_unlabelled_rows_are_not_judged():
    idx = np.array([[1, 2], [0, 2], [0, 1]])
    share, top = neighbour_votes(idx, np.array([0, 1, 2]), 3)
    assert share.tolist() == [0.0, 0.0, 0.0] and top.tolist() == [1, 0, 0]  # a 1–1 tie: the smaller code
    share, top = neighbour_votes(idx, np.array([0, 0, 1]), 2)  # row 0 sees one of each: its own label wins
    assert share.tolist() == [0.5, 0.5, 0.0] and top.tolist() == [0, 0, 0]
    x, _, given = _blobs()
    res = registry()["knn_label_agreement"].compute(_ctx(x, given, unlabelled=[0, 5]))
    assert np.isnan(res.values[[0, 5]]).all() and not np.isnan(np.delete(res.values, [0, 5])).any()
    assert res.columns["knn_label"][0] is None and not res.columns["knn_label_flag"][[0, 5]].any()


def test_bad_parameters_name_the_field():
    sc = registry()["knn_label_agreement"]
    for bad in ({"k": 0}, {"max_share": 1.0}, {"max_share": -0.1}):
        with pytest.raises(CurateError, match="knn_label_agreement"):
            sc.settings({"knn_label": bad})
