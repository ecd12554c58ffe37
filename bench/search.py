"""Search at scale: keyword, regex and semantic search against bare DuckDB / numpy on the same data.

    python bench/search.py [--rows 1000000] [--dim 384] [--repeat 5]

The workspace: N random banking-word texts, embedded by TF-IDF + SVD to --dim dimensions (the embedder then
also embeds the semantic query, as MiniLM would). Each line is the median of --repeat calls after one warm-up
(the first semantic call writes the memory-mapped vector file; its time is its own line):

* ``keyword``: ``search(query="card fee")`` (count + BM25 order + the top 50 with their text) vs a bare
  ``SELECT count(*) … WHERE text ILIKE '%card%' AND text ILIKE '%fee%'``;
* ``regex``: ``search(mode="regex")`` vs a bare ``count(*) WHERE regexp_matches``;
* ``semantic``: ``search(mode="semantic")`` (query embedding, cosine over every row, top 50, details) vs a bare
  numpy ``vecs @ q`` + ``argpartition`` on the same in-memory matrix;
* ``like``: neighbours of a row (no query embedding).

Ratio = ours / baseline. Goals at 1M rows on 2 cores: keyword/regex ≤ 1 s, semantic ≤ 1.5 s.
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
from curate_core.search import _vectors, search  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    words = np.array(["bank", "card", "money", "transfer", "the", "a", "is", "my", "why", "pending", "fee", "top",
                      "up", "refund", "declined", "ATM", "how", "do", "I", "can", "exchange", "rate", "pin"])
    texts = [" ".join(words[rng.integers(0, len(words), k)]) for k in rng.integers(3, 20, a.rows)]
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "w")
        ws.ingest(pd.DataFrame({"id": [f"r{i}" for i in range(a.rows)], "text": texts,
                                "label": rng.choice(["a", "b", "c"], a.rows)}))
        t0 = time.perf_counter()
        ws.run(["embed"], params={"embed": {"embedder": "tfidf", "dim": a.dim}})
        print(f"setup: {a.rows:,} rows embedded by tfidf-{a.dim} in {time.perf_counter() - t0:.0f} s", flush=True)
        store = ws.store
        t0 = time.perf_counter()
        _vectors(store)
        print(f"first semantic call writes the vector file: {time.perf_counter() - t0:.2f} s")

        def bare_count(sql: str) -> int:
            with store.cursor() as cur:
                return cur.execute(sql).fetchall()[0][0]

        kw = timed(lambda: search(store, "card fee", k=50), a.repeat)
        kw0 = timed(lambda: bare_count("SELECT count(*) FROM samples WHERE text ILIKE '%card%' AND text ILIKE '%fee%'"),
                    a.repeat)
        n = search(store, "card fee", k=1).count
        print(f"keyword 'card fee' ({n:,} matches): ours {kw:.3f} s, baseline {kw0:.3f} s, ratio {kw / kw0:.2f}")
        pat = "^how (do|can) I"
        rx = timed(lambda: search(store, pat, mode="regex", k=50), a.repeat)
        rx0 = timed(lambda: bare_count(f"SELECT count(*) FROM samples WHERE regexp_matches(text, '{pat}')"), a.repeat)
        n = search(store, pat, mode="regex", k=1).count
        print(f"regex {pat!r} ({n:,} matches): ours {rx:.3f} s, baseline {rx0:.3f} s, ratio {rx / rx0:.2f}")
        ids, mm = _vectors(store)
        vecs = np.asarray(mm)
        q = vecs[123]

        def bare_topk() -> None:
            s = vecs @ q
            top = np.argpartition(-s, 50)[:50]
            top[np.argsort(-s[top])]

        se = timed(lambda: search(store, "why is my card declined", mode="semantic", k=50), a.repeat)
        se0 = timed(bare_topk, a.repeat)
        print(f"semantic top-50: ours {se:.3f} s, baseline {se0:.3f} s, ratio {se / se0:.2f}")
        lk = timed(lambda: search(store, like="r123", k=50), a.repeat)
        print(f"like top-50: ours {lk:.3f} s, baseline {se0:.3f} s, ratio {lk / se0:.2f}")
        ws.close()


if __name__ == "__main__":
    main()
