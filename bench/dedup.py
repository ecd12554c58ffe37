"""Benchmarks for duplicates, outliers and text quality. Run from the repo root:

    .venv/bin/python bench/dedup.py [--sizes 10000,100000] [--no-pynndescent] [--threads N]

Prints ``name: ours X s, baseline Y s, ratio R`` lines (ratio = baseline / ours: > 1 means we are faster),
measured in the same run, plus rows/s and the SMS Spam precision/recall of the exact-duplicate detector.

* exact_dup_N: Arrow normalisation + grouping vs a plain-Python dict of the same normalised texts.
* semdedup_N: SemDeDup (k-means, pairwise within clusters, cap 4,000) vs all-pairs "largest similarity to an
  earlier row" by blocked matrix products (the quadratic method it replaces); plus the recall of near-duplicate
  rows (similarity > 0.95 to an earlier row) that the clusters keep.
* knn_N: the outlier score's neighbour search (exact ≤ 10k, IVF above) vs sklearn NearestNeighbors brute force
  (at 100k on a 5,000-query sample, scaled to N — marked "est.") and pynndescent in a fresh process (its numba
  compilation is part of what a pipeline run pays).
* heuristics_N: the vectorised text-quality columns vs per-text Python (str methods + langid.classify; langid
  measured on 1,000 texts and scaled).
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import csv
import subprocess
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curate_core import dedup, neighbours, textquality as tq  # noqa: E402

DATA = next((d for d in (REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data",
                         Path("/work/shared/data")) if d.exists()), None)


def line(name: str, ours: float, base: float, extra: str = "", est: bool = False) -> None:
    print(f"{name}: ours {ours:.2f} s, baseline {base:.2f} s{' (est.)' if est else ''}, ratio {base / ours:.1f}"
          + (f"  [{extra}]" if extra else ""), flush=True)


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        return [r["text"] for r in csv.DictReader(f)]


def corpus(n: int) -> list[str]:
    """Real texts (tweets, SMS, banking queries) repeated up to n rows."""
    texts = []
    for p in ("health_news_twitter/health_news_twitter.csv", "sms_spam/sms_spam.csv", "banking77/train.csv"):
        texts += read_texts(DATA / p)
    reps = -(-n // len(texts))
    return (texts * reps)[:n]


# ------------------------------------------------------------------------------------------------ exact
def python_repeats(texts: list[str]) -> np.ndarray:
    """Ground truth: rows whose normalised text (same rules, plain Python) was seen before (empty → raw)."""
    seen: set[str] = set()
    rep = np.zeros(len(texts), bool)
    for i, t in enumerate(texts):
        k = dedup.normalise_py(t) or "\0raw:" + t
        rep[i] = k in seen
        seen.add(k)
    return rep


def ours_repeats(texts: list[str]) -> np.ndarray:
    return dedup.exact_groups(dedup.group_codes(texts)).rank > 0


def bench_exact(sizes: list[int]) -> None:
    for n in sizes:
        texts = corpus(n)
        ours, t_ours = timed(ours_repeats, texts)
        base, t_base = timed(python_repeats, texts)
        assert (ours == base).all(), "Arrow and Python normalisations disagree"
        line(f"exact_dup_{n // 1000}k", t_ours, t_base, f"{n / t_ours:,.0f} rows/s; {int(ours.sum()):,} repeats")


def precision_recall(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = int((pred & truth).sum())
    return tp / max(int(pred.sum()), 1), tp / max(int(truth.sum()), 1)


def bench_sms() -> None:
    texts = read_texts(DATA / "sms_spam" / "sms_spam.csv")
    pred = ours_repeats(texts)
    p, r = precision_recall(pred, python_repeats(texts))
    print(f"sms_exact_dup: {int(pred.sum())} repeats; vs plain-Python dict of normalised text: precision {p:.4f}, "
          f"recall {r:.4f}", flush=True)
    seen: set[str] = set()
    raw = np.zeros(len(texts), bool)
    for i, t in enumerate(texts):
        raw[i] = t in seen
        seen.add(t)
    p, r = precision_recall(pred, raw)
    print(f"sms_exact_dup: vs byte-identical repeats ({int(raw.sum())}): precision {p:.4f}, recall {r:.4f} "
          f"(the extra rows differ only in case, spacing, punctuation or URLs)", flush=True)


# --------------------------------------------------------------------------------------------- vectors
def vectors(n: int, d: int = 384, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors with 10 % planted near-duplicates (cosine 0.9–0.999 to an earlier row)."""
    rng = np.random.default_rng(seed)
    base_n = n - n // 10
    centres = rng.normal(size=(max(8, int(np.sqrt(n))), d)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), base_n)] + 0.8 * rng.normal(size=(base_n, d)).astype(np.float32)
    src = rng.integers(0, base_n, n - base_n)
    noise = rng.uniform(0.02, 0.35, size=(n - base_n, 1)).astype(np.float32)
    x = np.vstack([x, x[src] / np.linalg.norm(x[src], axis=1, keepdims=True) * 1.0 + noise *
                   rng.normal(size=(n - base_n, d)).astype(np.float32) / np.sqrt(d)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def all_pairs_earlier_max(x: np.ndarray, block: int = 512) -> np.ndarray:
    """Baseline: largest cosine to any earlier row, all pairs (N²/2·d)."""
    out = np.full(len(x), -1.0, np.float32)
    for lo in range(0, len(x), block):
        hi = min(lo + block, len(x))
        s = x[lo:hi] @ x[:hi].T
        s[:, lo:hi][np.triu_indices(hi - lo)] = -np.inf  # only rows before each row count
        out[lo:hi] = s.max(1)
    out[0] = -1.0
    return out


def bench_semdedup(sizes: list[int]) -> None:
    for n in sizes:
        x = vectors(n)
        r, t_ours = timed(dedup.semdedup, x, keep="first")
        base, t_base = timed(all_pairs_earlier_max, x)
        truth = base > 0.95
        found = r.sim > 0.95
        recall = (found & truth).sum() / max(truth.sum(), 1)
        line(f"semdedup_{n // 1000}k", t_ours, t_base,
             f"{n / t_ours:,.0f} rows/s; {r.n_clusters:,} clusters, largest {r.largest_cluster:,}, "
             f"{r.split_clusters} split; near-dup rows (cos > 0.95 to an earlier row) found: {recall:.3f} "
             f"of {int(truth.sum()):,}")


def bench_knn(sizes: list[int], pynn: bool) -> None:
    from sklearn.neighbors import NearestNeighbors

    for n in sizes:
        x = vectors(n, seed=1)
        (sims, idx), t_ours = timed(neighbours.knn, x, 10)
        q = np.random.default_rng(0).choice(n, size=min(n, 5000), replace=False)
        nn = NearestNeighbors(n_neighbors=11, metric="cosine", algorithm="brute").fit(x)
        (dist, ref), t_q = timed(nn.kneighbors, x[q])
        t_base = t_q * n / len(q)
        recall = np.mean([len(set(a[1:]) & set(b)) / 10 for a, b in zip(ref, idx[q])])
        err = np.abs(dist[:, 1:].mean(1) - (1 - sims[q]).mean(1)).mean()
        method = "exact" if n <= 10_000 else "ivf"
        line(f"knn_{n // 1000}k", t_ours, t_base,
             f"{method}; recall@10 {recall:.3f}, mean |Δ outlier_score| {err:.5f}", est=len(q) < n)
        if pynn and n >= 100_000:
            t = pynndescent_fresh_process(x)
            line(f"knn_{n // 1000}k_vs_pynndescent", t_ours, t, "pynndescent in a new process, numba JIT included")


def pynndescent_fresh_process(x: np.ndarray) -> float:
    path = REPO / "bench" / ".pynnd_x.npy"
    np.save(path, x)
    code = ("import sys,time,numpy as np;x=np.load(sys.argv[1]);t=time.perf_counter();import pynndescent;"
            "pynndescent.NNDescent(x,metric='cosine',n_neighbors=11,random_state=0).neighbor_graph;"
            "print(time.perf_counter()-t)")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ heuristics
def python_heuristics(texts: list[str], lang_sample: int = 1000) -> float:
    """Per-text Python for the same columns; langid.classify timed on a sample and scaled."""
    import re

    from langid.langid import LanguageIdentifier, model

    t0 = time.perf_counter()
    url = re.compile(r"(?:https?://|www\.)\S+", re.I)
    for t in texts:
        words = t.split()
        _ = sum(map(len, words)) / max(len(words), 1)
        letters = sum(c.isalpha() for c in t)
        visible = sum(not c.isspace() for c in t)
        _ = (visible - letters) / max(visible, 1), sum(c.isupper() for c in t) / max(letters, 1)
        _ = len(url.findall(t))
        lines = [ln.strip() for ln in t.split("\n") if ln.strip()]
        _ = 1 - len(set(lines)) / max(len(lines), 1)
        lw = t.lower().split()
        grams = list(zip(lw, lw[1:], lw[2:]))
        _ = 1 - len(set(grams)) / max(len(grams), 1)
    rest = time.perf_counter() - t0
    ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    sample = texts[:lang_sample]
    t0 = time.perf_counter()
    for t in sample:
        ident.classify(t)
    return rest + (time.perf_counter() - t0) * len(texts) / len(sample)


def ours_heuristics(texts) -> None:
    a = tq.as_arrow(texts)
    for fn in (tq.mean_word_len, tq.frac_non_alpha, tq.frac_upper, tq.n_urls, tq.frac_dup_lines, tq.frac_dup_ngrams):
        fn(a)
    tq.detect_language(a)


def bench_heuristics(sizes: list[int]) -> None:
    tq._langid_model()  # model load (about 3 s) once, as in a pipeline run
    for n in sizes:
        texts = corpus(n)
        _, t_ours = timed(ours_heuristics, texts)
        t_base = python_heuristics(texts)
        line(f"heuristics_{n // 1000}k", t_ours, t_base, f"{n / t_ours:,.0f} rows/s, 8 columns incl. language",
             est=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--no-pynndescent", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads (default: library default)")
    ap.add_argument("--only", default="exact,sms,semdedup,knn,heuristics")
    a = ap.parse_args()
    if DATA is None:
        sys.exit("shared data not found (../shared/data)")
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on {os.cpu_count()} cores "
          f"({subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()})", flush=True)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(a.threads):
        dedup.semdedup(vectors(200))  # warm-up: sklearn's import (seconds) is a one-off, not per-row work
        only = a.only.split(",")
        if "exact" in only:
            bench_exact(sizes)
        if "sms" in only:
            bench_sms()
        if "semdedup" in only:
            bench_semdedup(sizes)
        if "knn" in only:
            bench_knn(sizes, pynn=not a.no_pynndescent)
        if "heuristics" in only:
            bench_heuristics(sizes)
    print(f"load at end: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
