"""Local vs Ray engine on one machine: per-stage wall time of the same pipeline on the same workspace.

    python bench/engine.py [--rows 10000] [--ray-cpus 2] [--stages textstats,embed,project,cluster,probe,scores]

Two fresh workspaces get the same N BANKING77 texts (the shared data set, else the bundled demo); one runs the
stages with ``--engine local``, the other with ``--engine ray`` on an in-process Ray of --ray-cpus CPUs (started
before the clock runs; its start-up is its own line), after a small warm-up run that compiles UMAP/HDBSCAN
(numba, once per process) so neither side pays it. Lines:

* ``<stage>: local X s, ray Y s, ratio R`` — R = ray / local: the Ray engine's overhead on one machine (≤ 1 means
  Ray was faster, e.g. two one-thread actors beat one two-thread process);
* ``embed rows/s per worker`` — texts embedded per second divided by the actors that embedded them, so a reader
  can extrapolate to N workers (embedding is the stage that scales out);
* ``embed --device cuda`` — only where torch sees a GPU: the embed stage on CUDA vs CPU, and the agreement of
  the vectors (least cosine similarity, documented to be ≥ 0.9999);
* ``identical`` — the max abs difference of embeddings and of the score columns between the two runs.
"""

from __future__ import annotations

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout's own curate_core

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from curate_core import Workspace  # noqa: E402
from curate_core.scoring import score_columns  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "banking77" / "train.csv"
if not DATA.exists():
    DATA = REPO / "assets" / "demo" / "banking77_train.csv"


def vectors(ws: Workspace) -> np.ndarray:
    return np.vstack(ws.store.read_table("embeddings")["vec"])


def scores(ws: Workspace) -> pd.DataFrame:
    cols = score_columns(ws.store)
    return ws.store.query_df(f"SELECT {', '.join(cols)} FROM scores ORDER BY row_id") if cols else pd.DataFrame()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--stages", default="textstats,embed,project,cluster,probe,scores")
    a = ap.parse_args()
    stages = a.stages.split(",")
    df = pd.read_csv(DATA).sample(frac=1.0, random_state=0).head(a.rows)
    from curate_core.execution import make_executor

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "in.csv"
        df.to_csv(csv, index=False)
        t0 = time.perf_counter()
        ray_ex = make_executor("ray", address="local", num_cpus=a.ray_cpus, device="cpu")
        print(f"ray start (in-process, {a.ray_cpus} CPUs): {time.perf_counter() - t0:.1f} s", flush=True)
        warm = Workspace(Path(tmp) / "warm")  # UMAP/HDBSCAN compile with numba once per process: not in either run
        warm.ingest(df.head(300))
        warm.run(["project", "cluster"], params={"embed": {"embedder": "tfidf", "dim": 16}})
        warm.close()
        runs = {}
        for name, engine in (("local", make_executor("local", device="cpu")), ("ray", ray_ex)):
            ws = Workspace(Path(tmp) / name)
            ws.ingest(csv)
            results = ws.run(stages, engine=engine)
            runs[name] = (ws, {r["stage"]: r["summary"]["seconds"] for r in results if r["status"] == "done"})
        (lw, lt), (rw, rt) = runs["local"], runs["ray"]
        for st in stages:
            if st in lt and st in rt:
                print(f"{st}: local {lt[st]:.1f} s, ray {rt[st]:.1f} s, ratio {rt[st] / max(lt[st], 1e-9):.2f}")
        total_l, total_r = sum(lt.values()), sum(rt.values())
        print(f"all stages: local {total_l:.1f} s, ray {total_r:.1f} s, ratio {total_r / total_l:.2f}")
        if "embed" in rt:
            workers = ray_ex._pool(10**9)
            n = len(df)
            print(f"embed rows/s per worker: local {n / lt['embed']:.0f} (1 process, {os.cpu_count()} threads), "
                  f"ray {n / rt['embed'] / workers:.0f} ({workers} actors, 1 thread each; {n / rt['embed']:.0f} total)")
            diff = float(np.abs(vectors(lw) - vectors(rw)).max())
            sl, sr = scores(lw), scores(rw)
            sdiff = max((float(np.nanmax(np.abs(sl[c].to_numpy(float) - sr[c].to_numpy(float)))) for c in sl.columns
                         if pd.api.types.is_numeric_dtype(sl[c]) and len(sl)), default=0.0)
            print(f"identical: embeddings max abs diff {diff:.1e}, score columns max abs diff {sdiff:.1e}")
        import torch

        if torch.cuda.is_available() and "embed" in stages:
            gw = Workspace(Path(tmp) / "gpu")
            gw.ingest(csv)
            r = gw.run(["embed"], engine=make_executor("local", device="cuda"))
            g = vectors(gw)
            cos = float((g * vectors(lw)).sum(1).min())
            print(f"embed --device cuda: cpu {lt['embed']:.1f} s, cuda {r[-1]['summary']['seconds']:.1f} s, "
                  f"ratio {r[-1]['summary']['seconds'] / lt['embed']:.2f}; least cosine to cpu {cos:.6f}")
        else:
            print("embed --device cuda: no GPU here (torch.cuda.is_available() is False)")
        for ws, _ in runs.values():
            ws.close()


if __name__ == "__main__":
    main()
