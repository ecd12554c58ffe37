"""k nearest neighbours by cosine similarity, and the kNN outlier score built on it.

``outlier_score`` = mean cosine distance (1 − cos) to the k nearest other rows: a row far from everything is
odd (a different language, boilerplate, a parsing accident). Two search methods, both plain numpy matrix
products on L2-normalised vectors (so cosine = dot product):

* ``exact``: blocked brute force, N²·d; the same neighbours as sklearn ``NearestNeighbors(metric="cosine",
  algorithm="brute")`` (checked in tests), used up to ``exact_max`` rows (default 10,000).
* ``ivf``: an inverted file — spherical k-means cells (⌈√N⌉ of them), and each cell's rows are compared with
  the rows of the ``nprobe`` cells whose centroids are nearest its own. About nprobe·N^1.5·d, no compilation.
  ``bench/dedup.py`` reports its recall against exact search at 100k rows and its time next to pynndescent's.

Why not pynndescent by default: its numba functions compile on first use in every new process (about 80 s on
this two-core machine, measured in bench/dedup.py), longer than the whole IVF search at 100k rows.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .dedup import assign, default_k, spherical_kmeans
from .errors import CurateError, choices

Progress = Callable[[int, int, str], None]
METHODS = ("auto", "exact", "ivf")


def _topk(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the k largest values of *s* (descending) and their column indices."""
    if k >= s.shape[1]:
        idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(s, idx, 1)
        o = np.argsort(-vals, axis=1, kind="stable")
        idx = np.take_along_axis(idx, o, 1)
    return np.take_along_axis(s, idx, 1), idx


def exact_knn(x: np.ndarray, k: int, block: int = 2048, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(similarities n×k descending, indices n×k) of the k nearest *other* rows, by brute force."""
    n = len(x)
    sims = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for lo in range(0, n, block):
        s = x[lo: lo + block] @ x.T
        r = np.arange(s.shape[0])
        s[r, lo + r] = -np.inf  # not your own neighbour (duplicates of you still are)
        sims[lo: lo + block], idx[lo: lo + block] = _topk(s, k)
        if progress:
            progress(min(lo + block, n), n, "exact neighbours")
    return sims, idx


def ivf_knn(x: np.ndarray, k: int, n_cells: int | None = None, nprobe: int = 8, seed: int = 0,
            progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Approximate kNN: each k-means cell searched in its *nprobe* nearest cells (see the module docstring)."""
    n = len(x)
    n_cells = default_k(n) if n_cells is None else max(1, min(int(n_cells), n))
    cent = spherical_kmeans(x, n_cells, seed=seed)
    lab = assign(x, cent)
    used = np.unique(lab)
    cent = cent[used]
    lab = np.searchsorted(used, lab)
    order = np.argsort(lab, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(lab, minlength=len(cent)))]
    members = [order[starts[c]: starts[c + 1]] for c in range(len(cent))]
    cc = cent @ cent.T
    np.fill_diagonal(cc, np.inf)
    near = np.argsort(-cc, axis=1, kind="stable")  # cells by closeness to each cell, itself first
    sims = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    done = 0
    for c, q in enumerate(members):
        p = max(1, nprobe)
        while True:  # widen the probe until there are enough candidates
            cells = near[c, :p]
            cand = np.concatenate([members[j] for j in cells])
            if len(cand) - 1 >= k or p >= len(cent):
                break
            p *= 2
        s = x[q] @ x[cand].T
        r = np.arange(len(q))
        s[r, r] = -np.inf  # cell c comes first in `cells`, so its own rows lead `cand` in the same order
        vals, pos = _topk(s, min(k, len(cand)))
        sims[q, : vals.shape[1]], idx[q, : vals.shape[1]] = vals, cand[pos]
        done += len(q)
        if progress and (c % 32 == 0 or c == len(members) - 1):
            progress(done, n, f"neighbours in {len(members):,} cells")
    return sims, idx


def knn(x: np.ndarray, k: int, method: str = "auto", exact_max: int = 10_000, nprobe: int = 8, seed: int = 0,
        progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k nearest other rows by cosine; *method* ``auto`` = exact up to *exact_max* rows, IVF above."""
    if method not in METHODS:
        raise CurateError(f"Unknown neighbour search {method!r}", f"use one of {choices(METHODS)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = min(int(k), n - 1)
    if k < 1:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    if method == "exact" or (method == "auto" and n <= exact_max):
        return exact_knn(x, k, progress=progress)
    return ivf_knn(x, k, nprobe=nprobe, seed=seed, progress=progress)


def mean_knn_distance(x: np.ndarray, k: int = 10, **kw) -> np.ndarray:
    """Mean cosine distance to the k nearest other rows (NaN when a row has no other row)."""
    sims, _ = knn(x, k, **kw)
    if sims.shape[1] == 0:
        return np.full(len(x), np.nan)
    return np.clip(1.0 - sims.astype(np.float64), 0.0, 2.0).mean(1)


def per_label_knn_distance(x: np.ndarray, label_codes: np.ndarray, k: int = 10, **kw) -> np.ndarray:
    """Mean cosine distance to the k nearest rows *with the same label*; NaN for unlabelled rows and labels with
    one row (k shrinks to the label's size − 1 for small labels)."""
    codes = np.asarray(label_codes, dtype=np.int64)
    out = np.full(len(x), np.nan)
    progress = kw.pop("progress", None)
    total, before = int((codes >= 0).sum()), 0
    labels = np.unique(codes[codes >= 0])
    for i, c in enumerate(labels):
        rows = np.flatnonzero(codes == c)
        if len(rows) > 1:
            # one progress over every labelled row (a bar per label would restart 77 times)
            step = None if progress is None else (
                lambda d, t, m, b=before: progress(b + d, total, f"label {i + 1:,}/{len(labels):,}: {m}"))
            out[rows] = mean_knn_distance(x[rows], k, progress=step, **kw)
        before += len(rows)
        if progress is not None:
            progress(before, total, f"label {i + 1:,}/{len(labels):,}")
    return out


def tukey_cutoff(values: np.ndarray, whisker: float = 1.5) -> float:
    """Upper Tukey fence Q3 + whisker·IQR of the finite values (NaN when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan
    q1, q3 = np.percentile(v, [25, 75])
    return float(q3 + whisker * (q3 - q1))
