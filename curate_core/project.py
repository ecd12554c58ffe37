"""Stage `project`: the embeddings in 2-D (the map) and in ~5-D (for clustering).

How, and why this way:

* **PCA first** (384 → 50 dims, fit on the sample). UMAP's neighbour search and every transform are cheaper in
  50 dims, and the neighbourhoods barely change (for L2-normalised sentence vectors the first 50 components keep
  the structure that decides who is whose neighbour).
* **One neighbour graph, two layouts.** The k-NN graph of the fit rows and its fuzzy set are built once and
  serve both layouts (5-D, ``min_dist=0`` for clustering; 2-D, ``min_dist=0.1`` for the map). The search is
  exact (:class:`ExactNeighbours`: BLAS products and torch's top-k, no compile step) up to ``exact_pairs``
  distance pairs, else pynndescent.
* **Both layouts at once.** One eigen-decomposition gives the spectral start of both (the 2-D start is the
  first two columns of the 5-D one); their SGD runs in two threads (:mod:`curate_core.umap_layout`, umap-learn's
  algorithm compiled once per machine). 100 epochs each (umap's default is 200, or 500 below 10k rows).
* **Fit on a sample, place the rest.** Up to ``sample_size`` rows (default 50k, stratified by label, else by
  source) are fit; the others are placed in batches of ``batch_size`` through the executor (fit on a sample,
  then map), each written as a checkpoint part, so a killed run resumes where it stopped. A new row starts at
  the weighted mean of its neighbours among the fit rows and gets a third of the fit's epochs with the fitted
  layout fixed; rows are placed in parallel and a row's place depends on that row alone, so any batch size,
  thread count or executor gives the same map. The fitted model is pickled next to the parts.
* **Seeded**, so reruns and resumed runs give the same coordinates.
* **PCA fallback** when umap-learn is missing, ``method="pca"``, or fewer than 20 rows (UMAP needs neighbours);
  1–3 rows still get coordinates (missing components are 0).
* numba compiles the layout kernels on first use; they are cached on disk (``NUMBA_CACHE_DIR`` defaults to a
  user cache folder), so that happens once per machine, not once per run.

Measured (``bench/map.py``, 2 cores): 100k rows 47 s for project + cluster, against 90–101 s with umap-learn's
fit and transform; map trustworthiness and cluster ARI unchanged within their run-to-run spread.

Outputs: ``projection(row_id, x, y)`` and ``projection5(row_id, vec FLOAT[k], in_fit)``.
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .columns import Column, Table
from .embed import embeddings, fixed_list, vec_array
from .errors import CurateError, choices
from .execution import MODEL, snapshot_table
from .stage import StageContext, stage
from .store import Store, column_ref, join_sql, parquet_relation

METHODS = ("umap", "pca")
MIN_UMAP_ROWS = 20


# ------------------------------------------------------------------------------------------- sampling
def stratified_sample(groups: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a deterministic sample of *n* rows where every group keeps its share.

    Quotas are proportional (largest remainder), every group gets at least one row while there is room, and
    inside a group the rows with the smallest seeded random keys are taken — so the same data and seed give
    the same sample on any machine.
    """
    groups = np.asarray(groups)
    total = len(groups)
    if n >= total:
        return np.arange(total)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    _, codes = np.unique(groups.astype(str), return_inverse=True)
    counts = np.bincount(codes)
    exact = counts * (n / total)
    quota = np.floor(exact).astype(np.int64)
    # small groups first get one row each (if there is room), then the remainder goes by largest fraction
    if len(counts) <= n:
        quota = np.maximum(quota, 1)
    while quota.sum() > n:  # the minimum of one row overshot: take back from the largest quotas
        quota[np.argmax(quota)] -= 1
    left = n - quota.sum()
    if left > 0:
        room = counts - quota
        frac = np.where(room > 0, exact - np.floor(exact), -1.0)
        for g in np.argsort(-frac, kind="stable")[:left]:
            quota[g] += 1
    return take_per_group(codes, quota, seed)


def take_per_group(codes: np.ndarray, quota: np.ndarray, seed: int = 0) -> np.ndarray:
    """Sorted indices of the ``quota[g]`` rows of each group ``g`` (codes 0 … G−1) with the smallest seeded
    random keys: the same data and seed give the same rows on any machine."""
    total = len(codes)
    counts = np.bincount(codes, minlength=len(quota))
    keys = np.random.default_rng(seed).random(total)
    order = np.lexsort((keys, codes))  # by group, then key
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(total, dtype=np.int64)
    rank[order] = np.arange(total) - np.repeat(start, counts)
    return np.flatnonzero(rank < quota[codes])


# ---------------------------------------------------------------------------------------- neighbours
class ExactNeighbours:
    """Exact Euclidean k-NN by blocked matrix products and a top-k per row (torch, every core), with the
    ``query`` method of a search index.

    Why: pynndescent's index costs 40–60 s of numba compile in every process before it does any work. Exact
    search has no compile step and, for up to a few billion distance pairs (e.g. 100k rows against a 50k fit
    sample in 50 dims), finishes sooner than that compile; above it the stage uses pynndescent. The top k of
    each row come from ``torch.topk`` (numpy's ``argpartition`` took 3–10× longer on these 50k-wide rows) and
    are ordered by (distance, index), so ties come out the same every time.
    """

    def __init__(self, data: np.ndarray, block_bytes: int = 256 << 20) -> None:
        self.data = np.require(data, np.float32, ["C", "W"])  # writable: torch refuses read-only memory
        self._sq = np.einsum("ij,ij->i", self.data, self.data)
        self._block = max(64, int(block_bytes // (4 * max(1, len(self.data)))))

    def query(self, X: np.ndarray, k: int, epsilon: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices int32, distances float32) of the *k* nearest fit rows of each row of *X*, nearest first."""
        import torch

        X = np.require(X, np.float32, ["C", "W"])
        k = min(k, len(self.data))
        idx = np.empty((len(X), k), dtype=np.int32)
        dist = np.empty((len(X), k), dtype=np.float32)
        data, sq = torch.from_numpy(self.data), torch.from_numpy(self._sq)
        for lo in range(0, len(X), self._block):
            q = X[lo: lo + self._block]
            # ‖q−b‖² = ‖q‖² − 2 q·b + ‖b‖²; ‖q‖² does not change the order within a row
            d = torch.addmm(sq, torch.from_numpy(q), data.T, beta=1.0, alpha=-2.0)
            dd, part = torch.topk(d, k, dim=1, largest=False, sorted=False)
            dd, part = dd.numpy(), part.numpy()
            order = np.lexsort((part, dd), axis=1)
            idx[lo: lo + len(q)] = np.take_along_axis(part, order, axis=1)
            qq = np.einsum("ij,ij->i", q, q)[:, None]
            dist[lo: lo + len(q)] = np.sqrt(np.maximum(np.take_along_axis(dd, order, axis=1) + qq, 0))
        return idx, dist


# ------------------------------------------------------------------------------------------ projector
class Projector:
    """PCA pre-reduction + UMAP to 2-D and *cluster_dims*-D; sklearn-like (no work in the constructor).

    ``fit(X)`` returns self; ``fitted()`` gives the coordinates of the fit rows; ``transform(X)`` places new
    rows. ``method`` is "umap" or "pca"; UMAP falls back to PCA below :data:`MIN_UMAP_ROWS` rows.
    """

    def __init__(self, method: str = "umap", n_neighbors: int = 15, min_dist: float = 0.1, cluster_dims: int = 5,
                 pca_dims: int = 50, epochs: int | None = 100, seed: int = 0, exact_pairs: float = 5e9) -> None:
        self.method, self.n_neighbors, self.min_dist = method, n_neighbors, min_dist
        self.cluster_dims, self.pca_dims, self.epochs, self.seed = cluster_dims, pca_dims, epochs, seed
        self.exact_pairs = exact_pairs  # exact k-NN while (fit rows × rows to place) stays below this
        self.used = method  # what actually ran ("pca" after a fallback)
        self.note = ""

    # -- fit
    def fit(self, X: np.ndarray, progress=None, total_rows: int | None = None) -> "Projector":
        """Fit on *X*; *total_rows* (fit rows + rows to transform later) decides exact vs approximate k-NN."""
        X = np.asarray(X, dtype=np.float32)
        self._total = max(len(X), int(total_rows or 0))
        if self.method not in METHODS:
            raise CurateError(f"Unknown projection method {self.method!r}", f"use one of {choices(METHODS)}")
        self.timings: dict[str, float] = {}
        t0 = [time.monotonic()]

        def say(msg: str) -> None:  # report the step and time the previous one
            now = time.monotonic()
            if getattr(self, "_step", None):
                self.timings[self._step] = round(now - t0[0], 1)
            self._step, t0[0] = msg.split(":")[0] if msg else None, now
            if progress and msg:
                progress(msg)

        self._pca = None
        if X.shape[0] > self.pca_dims and X.shape[1] > self.pca_dims:
            from sklearn.decomposition import PCA

            say(f"PCA: {X.shape[1]} → {self.pca_dims} dims")
            self._pca = PCA(self.pca_dims, random_state=self.seed, svd_solver="randomized").fit(X)
        Z = self._reduce(X)
        self.used = self.method
        if self.method == "umap" and X.shape[0] < MIN_UMAP_ROWS:
            self.used, self.note = "pca", f"PCA instead of UMAP: {X.shape[0]} rows (UMAP needs {MIN_UMAP_ROWS}+)"
        if self.used == "umap":
            if importlib.util.find_spec("umap") is None:  # found, not imported: importing it costs seconds
                self.used, self.note = "pca", "PCA instead of UMAP: umap-learn is not installed"
        if self.used == "pca":
            self._fit_pca(Z)
        else:
            self._fit_umap(Z, say)
        say("")
        return self

    def _reduce(self, X: np.ndarray) -> np.ndarray:
        Z = X if self._pca is None else self._pca.transform(X)
        return np.ascontiguousarray(Z, dtype=np.float32)

    def _fit_pca(self, Z: np.ndarray) -> None:
        self._mean = Z.mean(axis=0)
        k = int(min(max(2, self.cluster_dims), Z.shape[0], Z.shape[1]))
        if Z.shape[0] >= 2 and k >= 1:
            _, _, vt = np.linalg.svd(Z - self._mean, full_matrices=False)
            self._axes = vt[:k]
        else:
            self._axes = np.zeros((0, Z.shape[1]), dtype=np.float32)
        self._fit5 = self._pca_coords(Z, max(2, self.cluster_dims))
        self._fit2 = self._fit5[:, :2].copy()

    def _pca_coords(self, Z: np.ndarray, k: int) -> np.ndarray:
        out = np.zeros((Z.shape[0], k), dtype=np.float32)
        proj = (Z - self._mean) @ self._axes.T
        out[:, : min(k, proj.shape[1])] = proj[:, :k]
        return out

    def _fit_umap(self, Z: np.ndarray, say) -> None:
        from .umap_layout import fit_layout, fuzzy_graph, spectral_start

        n = Z.shape[0]
        self._k = k = min(self.n_neighbors, n - 1)
        # one neighbour graph for both layouts (and the search index that places the other rows)
        if n * self._total <= self.exact_pairs:
            say(f"kNN: exact neighbours of {n:,} rows")
            self._index = ExactNeighbours(Z)
            idx, dist = self._index.query(Z, k)
        else:
            from pynndescent import NNDescent

            say(f"kNN: approximate neighbours of {n:,} rows (pynndescent)")
            self._index = NNDescent(Z, n_neighbors=k, metric="euclidean", random_state=self.seed, low_memory=True,
                                    n_jobs=1, verbose=False)
            idx, dist = self._index.neighbor_graph
        graph = fuzzy_graph(idx, dist)
        epochs = self.epochs or (500 if n <= 10_000 else 200)  # umap-learn's defaults
        say("spectral start: eigenvectors of the neighbour graph")
        start = spectral_start(graph, Z, max(2, self.cluster_dims), epochs, self.seed)
        say(f"UMAP-{self.cluster_dims}D and 2-D: both layouts at once")
        with ThreadPoolExecutor(2) as pool:  # the SGD releases the GIL: one layout per core
            five = pool.submit(fit_layout, graph, Z, self.cluster_dims, 0.0, epochs, self.seed,
                               start[:, :self.cluster_dims])
            two = pool.submit(fit_layout, graph, Z, 2, self.min_dist, epochs, self.seed, start[:, :2])
            (self._fit5, *self._ab5), (self._fit2, *self._ab2) = five.result(), two.result()

    # -- results
    def fitted(self) -> tuple[np.ndarray, np.ndarray]:
        """(2-D, k-D) coordinates of the rows the projector was fit on."""
        return self._fit2, self._fit5

    def transform(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Place new rows in the fitted layouts: (2-D, k-D). A row's place depends on that row alone (its
        neighbours among the fit rows and the seed), not on the other rows of the batch."""
        Z = self._reduce(np.asarray(X, dtype=np.float32))
        if self.used == "pca":
            c = self._pca_coords(Z, max(2, self.cluster_dims))
            return c[:, :2].copy(), c
        from .umap_layout import memberships, place_new

        if isinstance(self._index, ExactNeighbours):
            idx, dist = self._index.query(Z, self._k)
        else:
            idx, dist = self._index.query(Z, self._k, epsilon=0.12)  # umap-learn's epsilon for this metric
        w = memberships(idx, dist, local_connectivity=0.0, same_set=False)
        epochs = max(1, self.epochs // 3) if self.epochs else 30  # umap-learn's transform: a third of the fit's
        return (place_new(self._fit2, idx, w, epochs, *self._ab2, seed=self.seed),
                place_new(self._fit5, idx, w, epochs, *self._ab5, seed=self.seed))


# ---------------------------------------------------------------------------------------------- stage
def sample_groups(store: Store) -> np.ndarray:
    """What fit samples are stratified by: the label when rows carry one, else the source."""
    df = store.sample_frame(["row_id", "label", "source"])
    lab = df["label"]
    if lab.notna().any():
        return lab.fillna("(unlabelled)").astype(str).to_numpy()
    return df["source"].fillna("").astype(str).to_numpy()


def _part(row_ids: np.ndarray, xy: np.ndarray, u: np.ndarray, in_fit: bool) -> pa.Table:
    return pa.table({
        "row_id": pa.array(row_ids, pa.int64()),
        "x": pa.array(xy[:, 0].astype(np.float64)), "y": pa.array(xy[:, 1].astype(np.float64)),
        "vec": vec_array(u), "in_fit": pa.array(np.full(len(row_ids), in_fit)),
    })


def place(proj: Projector, batch: pa.Table) -> pa.Table:
    """Batch function of the transform step: (row_id, vec) of rows outside the fit sample → their coordinates."""
    xy, u = proj.transform(fixed_list(batch.column("vec")))
    return _part(batch.column("row_id").to_numpy(), xy, u, False)


def import_projection(store: Store, parts) -> int:
    """Replace ``projection`` and ``projection5`` with the rows of checkpoint *parts*, in one transaction."""
    with store.transaction() as cur, parquet_relation(cur, parts) as (rel, params):
        cur.execute(f"""CREATE OR REPLACE TABLE projection AS
                        SELECT row_id, x, y FROM {rel} ORDER BY row_id""", params)
        k = int(cur.execute(f"SELECT len(vec) FROM {rel} LIMIT 1", params).fetchall()[0][0])
        cur.execute(f"""CREATE OR REPLACE TABLE projection5 AS
                        SELECT row_id, CAST(vec AS FLOAT[{k}]) AS vec, in_fit FROM {rel}
                        ORDER BY row_id""", params)
        return int(cur.execute("SELECT count(*) FROM projection").fetchall()[0][0])


def projection5(store: Store) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_ids, float32 N×k coordinates, in_fit booleans) in row_id order."""
    if not store.table_exists("projection5"):
        raise CurateError("No projection in this workspace yet",
                          f"run the project stage: python -m curate_core run --workspace {store.path} --stages project")
    t = store.read_table("projection5", ["row_id", "vec", "in_fit"], arrow=True)
    return t.column("row_id").to_numpy(), fixed_list(t.column("vec")), t.column("in_fit").to_numpy(zero_copy_only=False)


def map_points(store: Store, columns: Sequence[str], text_chars: int = 160) -> pd.DataFrame:
    """Every projected row: row_id, x, y, the first *text_chars* characters of its text (as ``text``) and any
    catalog *columns* — what the Map page draws, in one query."""
    cat = store.catalog()
    cols = [c for c in dict.fromkeys(columns) if c not in ("row_id", "x", "y", "text")]
    bad = [c for c in cols if c not in cat]
    if bad:
        raise CurateError(f"Unknown column(s) {choices(bad)}", f"available: {choices(sorted(cat))}")
    joins = join_sql((cat[c][0] for c in cols), base=("samples", "projection"))
    sel = "".join(f", {column_ref(cat, c)}" for c in cols)
    return store.query_df(f"""SELECT projection.row_id, projection.x, projection.y, left(samples.text, ?) AS text{sel}
                              FROM projection JOIN samples USING (row_id) {joins}
                              ORDER BY projection.row_id""", [int(text_chars)])


COLUMNS = (Column("x", "DOUBLE", "Map x"), Column("y", "DOUBLE", "Map y"))


@stage("project", version="2", title="2-D map and 5-D projection (UMAP)", requires=("embed",),
       outputs=(Table("projection", COLUMNS), Table("projection5", features=False)),
       defaults={"method": "umap", "n_neighbors": 15, "min_dist": 0.1, "cluster_dims": 5, "pca_dims": 50,
                 "epochs": 100, "sample_size": 50_000, "batch_size": 20_000, "exact_pairs": 5e9, "seed": 0})
def run_project(ctx: StageContext) -> dict:
    """Fit on a stratified sample (on the driver), then place the other rows with ``transform`` in batches."""
    store, p = ctx.store, ctx.params
    ids, X = embeddings(store)
    n = len(ids)
    if n != store.count():
        raise CurateError(f"Embeddings cover {n:,} of {store.count():,} rows", "run the embed stage again")
    sample_size = int(p["sample_size"])
    if sample_size < 1:
        raise CurateError(f"sample_size must be at least 1 (got {sample_size})")
    seed = int(p["seed"])
    fit_idx = stratified_sample(sample_groups(store), sample_size, seed) if n > sample_size else np.arange(n)
    rest_idx = np.setdiff1d(np.arange(n), fit_idx)
    ck = ctx.checkpoint
    rest = pa.table({"row_id": pa.array(ids[rest_idx], pa.int64()), "vec": vec_array(X[rest_idx])})
    batches = snapshot_table(ck, rest, max(1, int(p["batch_size"])))
    del rest

    def fit() -> tuple[Projector, pa.Table]:
        proj = Projector(p["method"], int(p["n_neighbors"]), float(p["min_dist"]), int(p["cluster_dims"]),
                         int(p["pca_dims"]), None if p["epochs"] is None else int(p["epochs"]), seed,
                         float(p["exact_pairs"]))
        t0 = time.monotonic()
        proj.fit(X[fit_idx], progress=lambda msg: ctx.progress(0, n, f"fitting on {len(fit_idx):,} rows: {msg}"),
                 total_rows=n)
        proj.fit_seconds = round(time.monotonic() - t0, 1)
        xy, u = proj.fitted()
        return proj, _part(ids[fit_idx], xy, u, True)

    tracker = ctx.tracker(n, offset=len(fit_idx), working="placing the rest with transform" if len(rest_idx) else "",
                          resumed_note=lambda r: f"placed with transform; {r:,} rows from checkpoint")
    t0 = time.monotonic()
    resumed = ck.has(MODEL)  # the fit finished in a run that was killed: its model is loaded, not refit
    proj, names = ctx.executor.fit_sample_then_map(fit, place, batches, ck, tracker)
    if proj.note:
        ctx.progress(n, n, proj.note)
    ck.mark_complete()
    import_projection(store, ck.parts(names).source())
    fit_s = None if resumed else getattr(proj, "fit_seconds", None)
    return {"method": proj.used, "rows": n, "fit_rows": int(len(fit_idx)), "transformed_rows": int(len(rest_idx)),
            "fit_seconds": fit_s, "fit_steps": getattr(proj, "timings", {}),
            "transform_seconds": round(time.monotonic() - t0 - (fit_s or 0), 1), "note": proj.note}
