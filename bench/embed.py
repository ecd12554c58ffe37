"""Embed throughput: the pipeline's `embed` stage vs a bare SentenceTransformer.encode on the same texts.

    python bench/embed.py [--n 2000] [--rounds 3] [--data CSV]

Both sides load the model and embed the same N real texts (BANKING77 train by default, a seeded sample),
interleaved for --rounds rounds on this machine; the best round of each is compared (the machine is shared,
so the best round is the least disturbed one). "ours" is `Workspace.run(["embed"])` on a fresh workspace
(model load, reading texts, md5 cache keys, checkpoint shards, import into DuckDB); "baseline" is
`SentenceTransformer(path)` + `.encode(texts, batch_size=B, normalize_embeddings=True)` with the same batch size,
and a second line compares with encode's default batch size (32).
Prints `name: ours X s, baseline Y s, ratio R` (ratio = baseline / ours: ≥ 1 means ours is faster).
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "banking77" / "train.csv"
if not DEFAULT_DATA.exists():
    DEFAULT_DATA = REPO / "assets" / "demo" / "banking77_train.csv"


def bare(texts: list[str], batch_size: int) -> float:
    from sentence_transformers import SentenceTransformer

    from curate_core.embed import MiniLM

    t0 = time.perf_counter()
    model = SentenceTransformer(str(MiniLM()._path()), device="cpu")
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                 show_progress_bar=False)
    return time.perf_counter() - t0


def ours(csv: Path, batch_size: int) -> float:
    from curate_core import Workspace

    d = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        with Workspace(d / "ws") as ws:
            ws.ingest(csv)
            t0 = time.perf_counter()
            ws.run(["embed"], params={"embed": {"embedder": "minilm", "batch_size": batch_size}})
            return time.perf_counter() - t0
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    a = ap.parse_args()
    from curate_core.embed import MiniLM

    batch = MiniLM().batch_size
    df = pd.read_csv(a.data, dtype=str, keep_default_na=False)
    df = df[df["text"].str.strip() != ""].drop_duplicates("text").sample(min(a.n, len(df)), random_state=0)
    texts = df["text"].tolist()
    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-data-"))
    csv = tmp / "texts.csv"
    pd.DataFrame({"id": [f"t{i}" for i in range(len(texts))], "text": texts}).to_csv(csv, index=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bare(texts[:64], batch)  # warm the OS file cache and torch kernels for both sides
    times: dict[str, list[float]] = {"ours": [], "bare": [], "bare32": []}
    for r in range(a.rounds):
        times["ours"].append(ours(csv, batch))
        times["bare"].append(bare(texts, batch))
        times["bare32"].append(bare(texts, 32))
        print(f"round {r + 1}: ours {times['ours'][-1]:.2f} s, bare (batch {batch}) {times['bare'][-1]:.2f} s, "
              f"bare (batch 32) {times['bare32'][-1]:.2f} s", flush=True)
    o, b, b32 = min(times["ours"]), min(times["bare"]), min(times["bare32"])
    n = len(texts)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cpus")
    print(f"embed {n} texts (load + encode, batch {batch}): ours {o:.2f} s, baseline {b:.2f} s, ratio {b / o:.3f}"
          f"  [{n / o:.0f} vs {n / b:.0f} texts/s]")
    print(f"embed {n} texts vs encode defaults (batch 32): ours {o:.2f} s, baseline {b32:.2f} s, ratio {b32 / o:.3f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
