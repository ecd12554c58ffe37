"""Probe feature sets: sparse and stacked inputs train like their dense equivalent, TF-IDF scaling, the out-of-fold
metrics against scikit-learn, and ``features: auto`` choosing by evidence in a real workspace."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import accuracy_score, log_loss

from curate_core import cli
from curate_core.dynamics import ProbeConfig, train_probe
from curate_core.errors import CurateError
from curate_core.features import Stacked, candidates, choose, mean_square, oof_quality, stack, tfidf_matrix

from . import labeldata

torch.set_num_threads(1)


def _data(n=60, d=30, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = sp.random(n, d, density=0.2, format="csr", dtype=np.float32, random_state=seed)
    y = rng.integers(0, c, n)
    return x, y


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_a_sparse_probe_trains_like_the_same_dense_matrix(model):
    x, y = _data()
    cfg = ProbeConfig(model=model, epochs=8, hidden=8)
    dense_stats, dense_p = train_probe(x.toarray(), y, 3, cfg, seed=1, x_eval=x.toarray()[:10])
    sparse_stats, sparse_p = train_probe(x, y, 3, cfg, seed=1, x_eval=x[:10])
    np.testing.assert_allclose(sparse_p, dense_p, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sparse_stats.margin, dense_stats.margin, rtol=1e-4, atol=1e-4)


def test_stacked_features_train_like_their_dense_concatenation_also_in_mini_batches():
    x, y = _data()
    emb = np.random.default_rng(3).normal(size=(x.shape[0], 5)).astype(np.float32)
    both = Stacked(emb, x)
    assert both.shape == (60, 35) and both[np.array([0, 2])].dense.shape == (2, 5)
    dense = np.hstack([emb, x.toarray()])
    cfg = ProbeConfig(epochs=6, batch_size=16)
    _, p_dense = train_probe(dense, y, 3, cfg, seed=2, x_eval=dense)
    _, p_stacked = train_probe(both, y, 3, cfg, seed=2, x_eval=both)
    np.testing.assert_allclose(p_stacked, p_dense, rtol=1e-4, atol=1e-5)


def test_tfidf_features_are_sparse_scaled_and_deterministic():
    texts = [f"refund my card {i % 7}" if i % 2 else f"top up failed again {i % 5}" for i in range(50)]
    a, b = tfidf_matrix(texts, seed=0), tfidf_matrix(texts, seed=0)
    assert sp.issparse(a) and a.shape[0] == 50 and a.dtype == np.float32
    assert mean_square(a) == pytest.approx(1.0, rel=1e-5)  # of the stored entries: rows are not blown up to √d
    assert (a != b).nnz == 0
    stacked = stack(np.ones((50, 4), np.float32), a)  # the embedding block gets the TF-IDF block's row norm
    assert np.square(stacked.dense).sum(1).mean() == pytest.approx(a.multiply(a).sum(1).mean(), rel=1e-5)
    with pytest.raises(CurateError, match="no words"):
        tfidf_matrix(["!!", "?"], seed=0)


def test_oof_quality_equals_scikit_learn_and_the_lowest_log_loss_wins():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=80)
    y = rng.integers(0, 4, 80)
    q = oof_quality(y, p)
    assert q["oof_accuracy"] == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-6)
    assert q["oof_log_loss"] == pytest.approx(log_loss(y, p, labels=range(4)), abs=1e-5)
    name, why = choose({"embedding": {"oof_accuracy": 0.9, "oof_log_loss": 0.40},
                        "tfidf": {"oof_accuracy": 0.8, "oof_log_loss": 0.35},
                        "both": {"oof_accuracy": 0.85, "oof_log_loss": 0.38}})
    assert name == "tfidf" and "lowest out-of-fold log-loss" in why and "embedding 0.4000" in why
    assert candidates("auto") == ("embedding", "tfidf", "both") and candidates("tfidf") == ("tfidf",)
    with pytest.raises(CurateError, match="Unknown probe features"):
        candidates("words")


def test_auto_features_choose_by_out_of_fold_log_loss_and_info_reports_it(tmp_path, capsys):
    """The fixture's texts name each row's true class, its vectors are noisy blobs: the word features must win,
    and every candidate's out-of-fold figures reach the probe summary and `info --json`."""
    with labeldata.workspace(tmp_path / "ws", features="auto") as ws:
        f = ws.store.get_summary("probe")["features"]
    assert set(f["candidates"]) == {"embedding", "tfidf", "both"}
    best = min(f["candidates"], key=lambda k: f["candidates"][k]["oof_log_loss"])
    assert f["chosen"] == best != "embedding", f
    assert f["candidates"][best]["oof_accuracy"] >= f["candidates"]["embedding"]["oof_accuracy"]
    assert cli.main(["info", "--workspace", str(tmp_path / "ws"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["probe"]["features"]["chosen"] == best
    flags = info["label_flags"]
    assert set(flags) == {"is_label_issue", "aum_flag", "is_hard_to_learn"}
    assert all(0 <= r["flag_rate"] <= 1 and r["estimated_noise_rate"] is not None for r in flags.values())
