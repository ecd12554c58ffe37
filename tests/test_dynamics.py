"""Probe maths: logit statistics, AUM against the reference `aum` library, deterministic training, folds,
threshold samples, and validation of imported predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from curate_core import CurateError
from curate_core.dynamics import (EpochStats, ProbeConfig, ProbeData, aum_from_logits, el2n_from_stats,
                                  fold_indices, load_logits_file, load_probs_file, logit_stats, threshold_sets,
                                  train_probe)
from curate_core.scores import ScoreContext
from curate_core.scores.aum import AUM

torch.set_num_threads(1)


def _logits(E=6, n=40, C=5, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(E, n, C)) * 4).astype(np.float32)


def test_logit_stats_match_their_definitions():
    z = _logits(1, 30, 6)[0]
    t = np.random.default_rng(1).integers(0, 6, 30)
    margin, p_gold, p_sq = logit_stats(z, t)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for i in range(30):
        others = np.delete(z[i].astype(np.float64), t[i])
        assert margin[i] == pytest.approx(z[i, t[i]] - others.max(), abs=1e-6)
        assert p_gold[i] == pytest.approx(p[i, t[i]], abs=1e-6)
        onehot = np.eye(6)[t[i]]
        assert el2n_from_stats(p_gold[i], p_sq[i]) == pytest.approx(np.linalg.norm(p[i] - onehot), abs=1e-6)


def test_aum_equals_the_reference_library(tmp_path):
    from aum import AUMCalculator

    logits = _logits(E=9, n=64, C=7, seed=3)
    targets = np.random.default_rng(4).integers(0, 7, 64)
    calc = AUMCalculator(str(tmp_path), compressed=True)
    for ep in logits:  # one update per epoch, as in a training loop
        records = calc.update(torch.from_numpy(ep), torch.from_numpy(targets), list(range(64)))
    ref = np.array([records[i].aum for i in range(64)])
    ours = aum_from_logits(logits, targets)
    assert np.abs(ours - ref).max() <= 1e-5

    # the score plugin on the same logits (stored as per-epoch float32 margins, one run, no threshold samples)
    stats = EpochStats.from_logits(logits, targets)
    probe = ProbeData([f"c{i}" for i in range(7)], None, stats.margin[None], stats.p_gold[None], stats.p_sq[None],
                      np.ones((1, 64), bool), np.zeros((1, 64), bool))
    labels = [f"c{i}" for i in targets]
    ctx = ScoreContext.from_arrays(["t"] * 64, labels, probe=probe)
    res = AUM().compute(ctx)
    assert np.abs(res.values - ref).max() <= 1e-5
    assert res.summary["cutoff"] == 0.0 and "no threshold samples" in res.summary["why"]
    assert (res.columns["aum_flag"] == (ref < 0)).all()


def _blobs(n=90, C=3, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    x = (rng.normal(size=(C, d))[y] * 2 + rng.normal(size=(n, d))).astype(np.float32)
    return x, y


@pytest.mark.parametrize("cfg", [ProbeConfig(epochs=8), ProbeConfig(epochs=5, batch_size=16),
                                 ProbeConfig(model="mlp", hidden=16, epochs=6, lr=0.01)])
def test_training_is_seeded_and_records_every_row_every_epoch(cfg):
    x, y = _blobs()
    a_stats, a_probs = train_probe(x, y, 3, cfg, seed=5, x_eval=x[:10])
    b_stats, b_probs = train_probe(x, y, 3, cfg, seed=5, x_eval=x[:10])
    assert a_stats.margin.shape == (cfg.epochs, len(y))
    for k in ("margin", "p_gold", "p_sq"):
        assert np.isfinite(getattr(a_stats, k)).all()
        assert np.array_equal(getattr(a_stats, k), getattr(b_stats, k))
    assert np.array_equal(a_probs, b_probs)
    assert np.allclose(a_probs.sum(1), 1, atol=1e-5)
    # it learns: late epochs have larger margins than the first
    assert a_stats.margin[-1].mean() > a_stats.margin[0].mean()


def test_full_batch_first_epoch_logits_are_those_of_the_untrained_model():
    x, y = _blobs()
    stats, _ = train_probe(x, y, 3, ProbeConfig(epochs=3), seed=0)
    assert np.allclose(stats.margin[0], 0) and np.allclose(stats.p_gold[0], 1 / 3)  # zero-initialised softmax regression


def test_folds_are_stratified_disjoint_and_cover_all_rows():
    y = np.repeat(np.arange(4), [30, 20, 10, 7])
    folds = fold_indices(y, 5, seed=0)
    allrows = np.concatenate(folds)
    assert sorted(allrows.tolist()) == list(range(len(y)))
    for f in folds:
        counts = np.bincount(y[f], minlength=4)
        assert (np.abs(counts - np.bincount(y) / 5) <= 1).all()
    assert [f.tolist() for f in folds] == [f.tolist() for f in fold_indices(y, 5, seed=0)]
    with pytest.raises(CurateError, match="at least 2 folds"):
        fold_indices(y, 1, 0)


def test_threshold_sets_are_disjoint_and_sized_n_over_c_plus_one():
    sets = threshold_sets(780, 77, 3, seed=0)
    assert [len(s) for s in sets] == [10, 10, 10]
    assert len(np.unique(np.concatenate(sets))) == 30
    # few classes: N/(C+1) would be a third of the rows for two classes, the probe would memorise them
    assert [len(s) for s in threshold_sets(1000, 2, 2, seed=0)] == [100, 100]
    with pytest.raises(CurateError, match="exceed"):
        threshold_sets(10, 1, 3, seed=0, frac=0.5)


# ------------------------------------------------------------------------------------ imported files
IDS = ["a", "b", "c", "d"]
LABELLED = np.array([True, True, False, True])
CLASSES = ["neg", "pos"]
PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7]])


def test_probs_from_npy_in_workspace_order_or_labelled_order(tmp_path):
    np.save(tmp_path / "p.npy", PROBS)
    got = load_probs_file(tmp_path / "p.npy", IDS, LABELLED, CLASSES)
    assert np.allclose(got, PROBS[[0, 1, 3]])
    np.save(tmp_path / "lab.npy", PROBS[[0, 1, 3]])
    assert np.allclose(load_probs_file(tmp_path / "lab.npy", IDS, LABELLED, CLASSES), PROBS[[0, 1, 3]])


def test_probs_from_parquet_are_matched_by_id_and_class_name(tmp_path):
    df = pd.DataFrame({"pos": PROBS[::-1, 1], "id": IDS[::-1], "neg": PROBS[::-1, 0]})  # other row and column order
    df.to_parquet(tmp_path / "p.parquet")
    assert np.allclose(load_probs_file(tmp_path / "p.parquet", IDS, LABELLED, CLASSES), PROBS[[0, 1, 3]])


def test_npy_with_ids_file_and_class_order(tmp_path):
    order = [3, 0, 1]
    np.save(tmp_path / "p.npy", PROBS[order][:, ::-1])
    (tmp_path / "ids.txt").write_text("\n".join(IDS[i] for i in order))
    got = load_probs_file(tmp_path / "p.npy", IDS, LABELLED, CLASSES, ids_file=str(tmp_path / "ids.txt"),
                          file_classes=["pos", "neg"])
    assert np.allclose(got, PROBS[[0, 1, 3]])


@pytest.mark.parametrize("make, match", [
    (lambda: PROBS[:, :1], "1 columns but the workspace has 2 classes"),
    (lambda: PROBS[:2], "have 2 rows; the workspace has 4 rows"),
    (lambda: np.where(np.eye(4, 2) > 0, np.nan, PROBS), "NaN or infinite"),
    (lambda: PROBS * 2, r"must lie in \[0, 1\]"),
    (lambda: PROBS * 0.5, "do not sum to 1"),
    (lambda: PROBS[None], "2-D array"),
])
def test_bad_probs_are_refused_with_a_clear_message(tmp_path, make, match):
    np.save(tmp_path / "p.npy", make())
    with pytest.raises(CurateError, match=match):
        load_probs_file(tmp_path / "p.npy", IDS, LABELLED, CLASSES)


def test_bad_ids_and_classes_are_refused(tmp_path):
    df = pd.DataFrame({"id": ["a", "b", "zz"], "neg": [0.5] * 3, "pos": [0.5] * 3})
    df.to_parquet(tmp_path / "unknown.parquet")
    with pytest.raises(CurateError, match="not in the workspace.*zz"):
        load_probs_file(tmp_path / "unknown.parquet", IDS, LABELLED, CLASSES)
    df = pd.DataFrame({"id": ["a", "b"], "neg": [0.5] * 2, "pos": [0.5] * 2})
    df.to_parquet(tmp_path / "missing.parquet")
    with pytest.raises(CurateError, match="1 labelled row.*no predicted probabilities.*`d`"):
        load_probs_file(tmp_path / "missing.parquet", IDS, LABELLED, CLASSES)
    df = pd.DataFrame({"id": IDS, "neg": [0.5] * 4, "positive": [0.5] * 4})
    df.to_parquet(tmp_path / "classes.parquet")
    with pytest.raises(CurateError, match="missing `pos`; unknown `positive`"):
        load_probs_file(tmp_path / "classes.parquet", IDS, LABELLED, CLASSES)
    df = pd.DataFrame({"id": ["a", "a", "b", "d"], "neg": [0.5] * 4, "pos": [0.5] * 4})
    df.to_parquet(tmp_path / "dup.parquet")
    with pytest.raises(CurateError, match="repeat 1 id"):
        load_probs_file(tmp_path / "dup.parquet", IDS, LABELLED, CLASSES)


def test_logits_from_npy_and_long_parquet_agree(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 2)).astype(np.float32)
    np.save(tmp_path / "l.npy", logits)
    a = load_logits_file(tmp_path / "l.npy", IDS, LABELLED, CLASSES)
    assert a.shape == (3, 3, 2) and np.allclose(a, logits[:, [0, 1, 3]])
    long = pd.DataFrame([{"id": IDS[i], "epoch": e, "pos": logits[e, i, 1], "neg": logits[e, i, 0]}
                         for e in range(3) for i in (3, 1, 0, 2)])
    long.to_parquet(tmp_path / "l.parquet")
    assert np.allclose(load_logits_file(tmp_path / "l.parquet", IDS, LABELLED, CLASSES), a)
    np.save(tmp_path / "bad.npy", logits[0])
    with pytest.raises(CurateError, match="3-D array E×N×C"):
        load_logits_file(tmp_path / "bad.npy", IDS, LABELLED, CLASSES)
    long.iloc[:-1].to_parquet(tmp_path / "ragged.parquet")
    with pytest.raises(CurateError, match="different row counts"):
        load_logits_file(tmp_path / "ragged.parquet", IDS, LABELLED, CLASSES)


def test_integer_labels_take_columns_in_numeric_order():
    """A model's column j is class j: with 12 integer classes, text order (0, 1, 10, 11, 2, …) would be wrong."""
    from curate_core.dynamics import _class_order

    classes = sorted(str(i) for i in range(12))  # the workspace's (text) order
    order = _class_order(None, classes, 12, "predicted probabilities")
    assert [int(c) for c in classes] == order.tolist()
    words = ["b", "a", "c"]
    assert _class_order(None, sorted(words), 3, "x").tolist() == [0, 1, 2]


def test_one_threshold_run_is_refused(tmp_path):
    from . import labeldata

    ws = labeldata.workspace(tmp_path / "w", run=False)
    with pytest.raises(CurateError, match="threshold_runs must be 0"):
        ws.run(["probe"], params=labeldata.params(threshold_runs=1))
