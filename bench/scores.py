"""The `scores` stage on a synthetic workspace: a full run, a rerun after one score's parameter changes, and the
row scores (text heuristics + language) through the executor against the bare functions.

    python bench/scores.py [--rows 100000] [--repeat 3]

The workspace: N rows of random banking-word texts with 20 labels, 64-d precomputed vectors in 200 blobs (so
SemDeDup and the kNN outliers do real work), and imported out-of-fold probabilities + per-epoch logits (so no
probe is trained). Lines:

* ``scores stage, every score``: ``run(["scores"], force=True)``, median of --repeat;
* ``scores rerun after an AUM cutoff change``: ours = the same run after changing ``aum.cutoff`` (only the
  scores that depend on it recompute), baseline = every score recomputed (what any parameter change cost when
  the stage had one run key); ratio = baseline / ours;
* ``row scores``: ours = the stage computing only the row scores (snapshot, executor batches, import),
  baseline = the seven heuristic functions on the whole text array in memory; ratio = ours / baseline.

Runs on any checkout with the same Workspace API (``python /old/checkout/bench/scores.py`` measures that code).
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout's own curate_core

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from curate_core import Workspace  # noqa: E402
from curate_core import textquality as tq  # noqa: E402
from curate_core.dynamics import import_params  # noqa: E402

ROW_SCORES = ["mean_word_len", "frac_non_alpha", "frac_upper", "n_urls", "frac_dup_lines", "frac_dup_ngrams", "lang"]


def build(path: Path, n: int, seed: int = 0) -> Workspace:
    rng = np.random.default_rng(seed)
    words = np.array(["bank", "card", "money", "transfer", "the", "a", "is", "my", "why", "pending", "fee", "top",
                      "refund", "Declined", "ATM", "www.bank.com"])
    texts = [" ".join(words[rng.integers(0, len(words), k)]) for k in rng.integers(3, 30, n)]
    C, E, d = 20, 20, 64
    classes = [f"class_{i:02d}" for i in range(C)]
    true = rng.integers(0, C, n)
    centres = rng.normal(size=(200, d))
    vecs = centres[rng.integers(0, 200, n)] + 0.3 * rng.normal(size=(n, d))
    logits = rng.normal(size=(E, n, C)).astype(np.float32)
    logits[:, np.arange(n), true] += np.linspace(0.5, 4, E, dtype=np.float32)[:, None]
    last = logits[-1].astype(np.float64)
    probs = np.exp(last - last.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.save(path.parent / "probs.npy", probs)
    np.save(path.parent / "logits.npy", logits)
    ws = Workspace(path)
    ws.ingest(pd.DataFrame({"id": [f"r{i:07d}" for i in range(n)], "text": texts,
                            "label": np.array(classes)[true], "embedding": list(vecs.astype(np.float32))}),
              text="text", label="label", id="id")
    ws.run(["probe"], params={"embed": {"embedder": "precomputed", "column": "embedding"},
                              "probe": import_params(probs=path.parent / "probs.npy", logits=path.parent / "logits.npy")})
    return ws


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cpus", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws = build(Path(tmp) / "ws", a.rows)
        print(f"built {a.rows:,} rows (ingest, precomputed vectors, imported probe) in {time.perf_counter() - t0:.1f} s")
        ws.run(["scores"])  # warm: numba/langid models, the first scores table
        full = [timed(lambda: ws.run(["scores"], force=True)) for _ in range(a.repeat)]
        print(f"scores stage, every score ({a.rows:,} rows): {statistics.median(full):.2f} s "
              f"[median of {a.repeat}: {', '.join(f'{x:.2f}' for x in full)}]", flush=True)
        change = []
        for i in range(a.repeat):  # a new cutoff each time, like moving the Label issues page's slider and applying
            params = {"scores": {"params": {"aum": {"cutoff": -0.5 - 0.1 * i}}}}
            change.append(timed(lambda: ws.run(["scores"], params=params)))
        ours, base = statistics.median(change), statistics.median(full)
        print(f"scores rerun after an AUM cutoff change ({a.rows:,} rows): ours {ours:.2f} s, baseline {base:.2f} s "
              f"(every score recomputed), ratio {base / ours:.1f}", flush=True)
        only = {"scores": {"only": ROW_SCORES, "params": {}}}
        rows = [timed(lambda: ws.run(["scores"], params=only, force=True)) for _ in range(a.repeat)]
        texts = ws.store.sample_frame(["text"])["text"].tolist()
        ws.close()

    def bare() -> None:
        arr = tq.as_arrow(texts)
        for fn in (tq.mean_word_len, tq.frac_non_alpha, tq.frac_upper, tq.n_urls, tq.frac_dup_lines,
                   tq.frac_dup_ngrams):
            fn(arr)
        tq.detect_language(arr, max_bytes=2000)

    bare()  # warm
    plain = [timed(bare) for _ in range(a.repeat)]
    ours, base = statistics.median(rows), statistics.median(plain)
    print(f"row scores (7 heuristics + langid, {a.rows:,} rows): ours {ours:.2f} s, baseline {base:.2f} s "
          f"(the functions on the whole array), ratio {ours / base:.2f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
