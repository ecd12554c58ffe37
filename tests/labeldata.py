"""Tiny seeded data for the label-noise tests: Gaussian class blobs as precomputed vectors (no model runs),
with a known set of flipped labels, and a fast probe configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from curate_core import Workspace
from curate_core.dynamics import ProbeData, train_probe, ProbeConfig, threshold_sets

DIM = 16
CLASSES = ["billing", "music", "travel", "weather"]
#: a probe small enough for tests (a few hundred ms per run on one thread); on the vectors only: the texts are
#: placeholders that name the true class (TF-IDF features would read the answer off them)
FAST = {"epochs": 25, "folds": 3, "lr": 0.05, "features": "embedding"}


def frame(n: int = 160, rate: float = 0.1, seed: int = 0, unlabelled: int = 0) -> pd.DataFrame:
    """n rows in 4 well separated classes; `rate` of them flipped (true label in `true_label`); the last
    `unlabelled` rows have no label."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASSES), DIM)) * 1.5
    true = np.arange(n) % len(CLASSES)
    vecs = centres[true] + 0.6 * rng.normal(size=(n, DIM))
    given = true.copy()
    flip = rng.choice(n - unlabelled, int(round(rate * (n - unlabelled))), replace=False)
    given[flip] = (true[flip] + rng.integers(1, len(CLASSES), len(flip))) % len(CLASSES)
    labels = np.array(CLASSES, dtype=object)[given]
    if unlabelled:
        labels[n - unlabelled:] = None
    df = pd.DataFrame({"id": [f"r{i:03d}" for i in range(n)],
                       "text": [f"{CLASSES[t]} message number {i}" for i, t in enumerate(true)],
                       "label": labels, "true_label": np.array(CLASSES)[true]})
    for d in range(DIM):
        df[f"emb_{d}"] = vecs[:, d]
    return df


def params(**probe) -> dict:
    return {"embed": {"embedder": "precomputed"}, "probe": {**FAST, **probe}}


def workspace(path: Path, run: bool = True, df: pd.DataFrame | None = None, **probe) -> Workspace:
    ws = Workspace(path)
    ws.ingest(frame() if df is None else df, label="label", id="id")
    if run:
        ws.run(["scores"], params=params(**probe))
    return ws


def synthetic_probe(n: int = 120, n_classes: int = 4, rate: float = 0.15, seed: int = 0, unlabelled: int = 0,
                    epochs: int = 12, threshold_frac: float | None = None,
                    dim: int = DIM) -> tuple[ProbeData, np.ndarray, np.ndarray]:
    """(ProbeData, given label codes (-1 = unlabelled), flipped mask) without a workspace: out-of-fold-like
    probabilities from noisy blobs and the dynamics of two real threshold runs of a tiny probe."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 1.5 * np.sqrt(DIM / dim)
    true = np.arange(n) % n_classes
    x = (centres[true] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)
    given = true.copy()
    flip_idx = rng.choice(n - unlabelled, int(round(rate * (n - unlabelled))), replace=False)
    given[flip_idx] = (true[flip_idx] + rng.integers(1, n_classes, len(flip_idx))) % n_classes
    flipped = np.zeros(n, bool)
    flipped[flip_idx] = True
    codes = given.copy()
    if unlabelled:
        codes[n - unlabelled:] = -1
    lab = np.flatnonzero(codes >= 0)
    # probabilities: a softmax of distances to the class centres (what a good probe would say)
    d = -((x[:, None, :] - centres[None]) ** 2).sum(-1) / 4
    probs = np.exp(d - d.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    probs[codes < 0] = np.nan
    cfg = ProbeConfig(epochs=epochs, lr=0.05)
    R = 2
    margin = np.full((R, epochs, n), np.nan, np.float32)
    p_gold, p_sq = margin.copy(), margin.copy()
    own = np.zeros((R, n), bool)
    thr = np.zeros((R, n), bool)
    for r, s in enumerate(threshold_sets(len(lab), n_classes, R, seed, threshold_frac)):
        yy = codes[lab].copy()
        yy[s] = n_classes
        stats, _ = train_probe(x[lab], yy, n_classes + 1, cfg, seed=r)
        margin[r][:, lab], p_gold[r][:, lab], p_sq[r][:, lab] = stats.margin, stats.p_gold, stats.p_sq
        thr[r, lab[s]] = True
        own[r, lab] = True
        own[r, lab[s]] = False
    classes = [f"c{i}" for i in range(n_classes)]
    return ProbeData(classes, probs, margin, p_gold, p_sq, own, thr, {"probs": "synthetic"}), codes, flipped
