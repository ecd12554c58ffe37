"""kNN outlier scores (against sklearn) and the text-quality heuristics (against hand counts and langid)."""

from __future__ import annotations

import numpy as np
import pytest

from curate_core import neighbours, textquality as tq
from curate_core.errors import CurateError


def _data(n=400, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, d))
    x = centres[rng.integers(0, 6, n)] + 0.4 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_knn_equals_sklearn_brute_force():
    from sklearn.neighbors import NearestNeighbors

    x = _data()
    sims, idx = neighbours.knn(x, 5, method="exact")
    dist, ref = NearestNeighbors(n_neighbors=6, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    np.testing.assert_allclose(1 - sims, dist[:, 1:], atol=1e-5)
    assert (idx != np.arange(len(x))[:, None]).all()  # never its own neighbour
    np.testing.assert_allclose(neighbours.mean_knn_distance(x, 5, method="exact"), dist[:, 1:].mean(1), atol=1e-5)


def test_ivf_search_is_close_to_exact():
    x = _data(n=1500)
    exact = neighbours.mean_knn_distance(x, 10, method="exact")
    approx = neighbours.mean_knn_distance(x, 10, method="ivf", nprobe=8)
    assert np.abs(exact - approx).mean() < 0.005
    assert (approx >= exact - 1e-5).all()  # an approximate search can only miss neighbours, not invent closer ones
    _, i_ex = neighbours.knn(x, 10, method="exact")
    _, i_ap = neighbours.knn(x, 10, method="ivf")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i_ex, i_ap)])
    assert recall > 0.9


def test_outlier_scores_rank_the_planted_outlier_first():
    x = _data(n=300)
    odd = np.ones((1, x.shape[1]), np.float32) / np.sqrt(x.shape[1])
    v = neighbours.mean_knn_distance(np.vstack([x, odd]), 10)
    assert v.argmax() == 300
    assert v[300] > neighbours.tukey_cutoff(v)
    with pytest.raises(CurateError, match="Unknown neighbour search"):
        neighbours.knn(x, 3, method="annoy")


def test_per_label_distance_and_small_inputs():
    x = _data(n=60)
    codes = np.array([0] * 30 + [1] * 29 + [-1])
    codes[5] = 2  # a label with one row: nothing to compare with
    v = neighbours.per_label_knn_distance(x, codes, k=5)
    assert np.isnan(v[59]) and np.isnan(v[5]) and np.isfinite(v[:5]).all()
    ref = neighbours.mean_knn_distance(x[30:59], 5)
    np.testing.assert_allclose(v[30:59], ref)
    assert np.isnan(neighbours.mean_knn_distance(x[:1], 10)).all()
    assert neighbours.mean_knn_distance(x[:3], 10).shape == (3,)  # k shrinks to n − 1


# ------------------------------------------------------------------------------------------- heuristics
TEXTS = ["Hello world", "ALL CAPS HERE!!", "a\na\nb\n\n", "x y z x y z x y z", "see http://a.b/c and www.d.e",
         "1234 5678", "😀😀", "", "ÉCOLE été"]


def test_heuristics_on_hand_counted_texts():
    np.testing.assert_allclose(tq.mean_word_len(TEXTS)[:2], [5.0, (3 + 4 + 6) / 3])
    np.testing.assert_allclose(tq.frac_non_alpha(TEXTS)[[0, 1, 5, 6, 7]], [0, 2 / 13, 1, 1, 0])
    np.testing.assert_allclose(tq.frac_upper(TEXTS)[[0, 1, 5, 8]], [1 / 10, 1.0, 0.0, 5 / 8])
    assert tq.n_urls(TEXTS).tolist() == [0, 0, 0, 0, 2, 0, 0, 0, 0]
    np.testing.assert_allclose(tq.frac_dup_lines(TEXTS)[[0, 2]], [0, 1 / 3])  # "a","a","b": one repeat
    # 9 words → 7 trigrams; "x y z", "y z x", "z x y" each first seen once, then 4 repeats
    np.testing.assert_allclose(tq.frac_dup_ngrams(TEXTS)[[0, 3]], [0, 4 / 7])
    assert tq.frac_dup_ngrams(TEXTS, n=2)[3] == pytest.approx(5 / 8)
    for fn in (tq.mean_word_len, tq.frac_non_alpha, tq.frac_upper, tq.frac_dup_lines, tq.frac_dup_ngrams):
        v = fn(TEXTS)
        assert v.shape == (len(TEXTS),) and np.isfinite(v).all()


def test_vectorised_langid_equals_langid_classify():
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    texts = ["The quick brown fox jumps over the lazy dog", "Der schnelle braune Fuchs springt über den Hund",
             "Le renard brun saute par-dessus le chien paresseux", "El zorro marrón salta sobre el perro",
             "Быстрая коричневая лиса", "速い茶色の狐", "ok", "", "lol 😀 http://x.y"] * 3
    lang, prob = tq.detect_language(texts, chunk=4)  # small chunks: exercise the length-sorted batching
    for t, l, p in zip(texts, lang, prob):
        ref_l, ref_p = ident.classify(t)
        assert (l, round(p, 6)) == (ref_l, round(ref_p, 6))
    long = "this is an english sentence about cats. " * 200
    assert tq.detect_language([long], max_bytes=2000)[0][0] == "en"
