"""Map stages: project + cluster time for N = 10k and 100k (optionally 1M), and cluster quality on the demo.

    python bench/map.py [--sizes 10000,100000] [--baseline-max 10000] [--demo WS]

Vectors are synthetic: a seeded mixture of 100 Gaussian topics in 384 dims (L2-normalised, topic spreads vary),
ingested as precomputed vectors. Each measurement runs in a fresh subprocess, so each pays numba's compile cost
once, as a real CLI run does. "ours" = `run --stages project,cluster` (PCA 50 → shared k-NN graph → UMAP 5-D
and 2-D on a stratified sample of ≤ 50k rows, transform of the rest, HDBSCAN); "baseline" = bare umap-learn
(2-D and 5-D fits on all raw 384-d vectors) + HDBSCAN, only up to --baseline-max rows (it gets slow).

--demo WS: the BANKING77 demo workspace (built with `python -m curate_core demo --workspace WS` if missing):
prints the number of clusters, noise share, median cluster purity, the adjusted Rand index of clusters
vs the true intents (`true_label`) and vs the (10 % noisy) labels, and the map's trustworthiness.
Every size prints the map's trustworthiness (sklearn, 15 neighbours, on 5,000 seeded rows: how many of a
row's neighbours on the map are also its neighbours in the embedding) and the clusters' ARI vs the topics.
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def synthetic(n: int, dim: int = 384, topics: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = rng.dirichlet(np.full(topics, 2.0))
    y = rng.choice(topics, size=n, p=sizes)
    spread = rng.uniform(0.03, 0.06, size=topics)
    x = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):  # in chunks: 1M rows stay at ~1.5 GB
        part = centres[y[lo: lo + 100_000]] + rng.normal(size=(len(y[lo: lo + 100_000]), dim)) * spread[y[lo: lo + 100_000], None]
        x[lo: lo + 100_000] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return x, y


def make_workspace(n: int, root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate_core import Workspace

    x, y = synthetic(n)
    path = root / f"vectors-{n}.parquet"
    pq.write_table(pa.table({
        "id": [f"r{i}" for i in range(n)], "text": [f"synthetic row {i} topic t{t}" for i, t in enumerate(y)],
        "label": [f"t{t}" for t in y],
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])}), path)
    ws_path = root / f"ws-{n}"
    with Workspace(ws_path) as ws:
        ws.ingest(path)
        ws.run(["embed"], params={"embed": {"embedder": "precomputed"}})
    path.unlink()
    return ws_path


def trustworthiness(store, n: int = 5000, seed: int = 0) -> float:
    """sklearn's trustworthiness of the 2-D map against the embeddings (15 neighbours) on *n* seeded rows:
    the share of each row's map neighbours that are also near it in the embedding (1 = all)."""
    from sklearn.manifold import trustworthiness as tw

    from curate_core.embed import embeddings

    ids, x = embeddings(store)
    xy = store.read_table("projection", ["row_id", "x", "y"])
    pick = np.sort(np.random.default_rng(seed).choice(len(ids), size=min(n, len(ids)), replace=False))
    xy = xy.set_index("row_id").loc[ids[pick]]
    return float(tw(x[pick], xy[["x", "y"]].to_numpy(), n_neighbors=15))


def one_ours(ws_path: Path) -> dict:
    from curate_core import Workspace

    with Workspace(ws_path) as ws:
        t0 = time.perf_counter()
        res = ws.run(["project", "cluster"])
        total = time.perf_counter() - t0
        by = {r["stage"]: r.get("summary", {}) for r in res}
        trust = trustworthiness(ws.store)
    return {"seconds": total, "project": by["project"], "cluster": by["cluster"], "trustworthiness": trust}


def one_baseline(ws_path: Path) -> dict:
    import warnings

    import hdbscan
    import umap

    from curate_core import Workspace
    from curate_core.cluster import auto_min_cluster_size, auto_min_samples
    from curate_core.embed import embeddings

    warnings.filterwarnings("ignore")
    with Workspace(ws_path) as ws:
        _, x = embeddings(ws.store)
    t0 = time.perf_counter()
    umap.UMAP(n_components=2, random_state=0).fit(x)
    u5 = umap.UMAP(n_components=5, min_dist=0.0, random_state=0).fit_transform(x)
    mcs = auto_min_cluster_size(len(x))
    hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=auto_min_samples(mcs)).fit(u5)
    return {"seconds": time.perf_counter() - t0}


def sub(kind: str, ws_path: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--one", kind, str(ws_path)], capture_output=True, text=True,
                       cwd=REPO)
    if r.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def demo(ws: Path) -> None:
    from sklearn.metrics import adjusted_rand_score

    from curate_core import Workspace
    from curate_core.cluster import cluster_info
    from curate_core.demo import build_demo

    if not (ws / "curate.duckdb").exists():
        build_demo(ws, stages=["embed", "project", "cluster"])
    with Workspace(ws) as w:
        w.run(["embed", "project", "cluster"])
        rows = w.store.rows(["row_id", "label", "true_label", "cluster"])
        info = cluster_info(w.store)
    real = info[info["cluster"] >= 0]
    nz = rows["cluster"] >= 0
    print(f"demo ({len(rows):,} rows, {rows['true_label'].nunique()} intents): {len(real)} clusters, "
          f"noise {1 - nz.mean():.1%} of rows")
    print(f"demo median cluster purity (noisy labels): {real['purity'].median():.3f}")
    true_purity = rows[nz].groupby("cluster")["true_label"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    print(f"demo median cluster purity (true intents): {true_purity.median():.3f}")
    print(f"demo adjusted Rand index vs true intents: {adjusted_rand_score(rows['true_label'], rows['cluster']):.3f} "
          f"(noise as one cluster); {adjusted_rand_score(rows['true_label'][nz], rows['cluster'][nz]):.3f} "
          f"(clustered rows only)")
    print(f"demo adjusted Rand index vs noisy labels: {adjusted_rand_score(rows['label'], rows['cluster']):.3f}")
    with Workspace(ws) as w:
        print(f"demo map trustworthiness (15 neighbours, 5,000 rows): {trustworthiness(w.store):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated row counts (add 1000000 for 1M)")
    ap.add_argument("--baseline-max", type=int, default=10_000, help="largest N for the bare umap-learn baseline")
    ap.add_argument("--demo", type=Path, help="demo workspace for the cluster quality numbers")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "WS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        fn = one_ours if a.one[0] == "ours" else one_baseline
        print(json.dumps(fn(Path(a.one[1])), default=str))
        return
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cpus", flush=True)
    if a.demo:
        demo(a.demo.resolve())
    root = Path(tempfile.mkdtemp(prefix="bench-map-"))
    try:
        for n in [int(s) for s in a.sizes.split(",") if s]:
            ws = make_workspace(n, root)
            o = sub("ours", ws)
            p, c = o["project"], o["cluster"]
            steps = ", ".join(f"{k} {v:.0f} s" for k, v in (p.get("fit_steps") or {}).items())
            detail = (f"[project {p['seconds']:.0f} s: fit {p['fit_rows']:,} rows in {p['fit_seconds']} s ({steps}), "
                      f"transform {p['transformed_rows']:,} rows in {p.get('transform_seconds')} s; "
                      f"cluster {c['seconds']:.0f} s: {c['clusters']} clusters, ARI vs topics {c['adjusted_rand']}; "
                      f"trustworthiness {o['trustworthiness']:.4f} on 5,000 rows]")
            if n <= a.baseline_max:
                b = sub("baseline", ws)
                print(f"project+cluster N={n:,}: ours {o['seconds']:.1f} s, baseline {b['seconds']:.1f} s, "
                      f"ratio {b['seconds'] / o['seconds']:.2f} {detail}", flush=True)
            else:
                print(f"project+cluster N={n:,}: ours {o['seconds']:.1f} s {detail}", flush=True)
            shutil.rmtree(ws, ignore_errors=True)
        print(f"load: {os.getloadavg()[0]:.2f} (1-min average) at the end")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
