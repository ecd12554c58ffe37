"""Stage `cluster`: HDBSCAN on the k-D projection, keywords (c-TF-IDF) and label make-up per cluster.

* **HDBSCAN** on the ``projection5`` coordinates (density-based: any number of clusters, odd rows become noise,
  cluster −1). ``min_cluster_size`` scales with the data (:func:`auto_min_cluster_size`) unless given.
  Above ``sample_size`` rows it is fit on a stratified sample and the rest get ``approximate_predict``, batch
  by batch through the executor (resumable; the fitted model is kept in the checkpoint).
* **Keywords**: class-based TF-IDF as BERTopic defines it — all texts of a cluster form one document; a term's
  weight is its frequency in that cluster (L1-normalised) × ``log(1 + A / f_t)``, where ``A`` is the average
  number of words per cluster and ``f_t`` the term's frequency over all clusters. Terms frequent everywhere get
  low weight; terms that mark one cluster rise.
* **Label make-up**: size, labelled rows, the majority label and its share (*purity*), the top labels, and
  the full distribution as JSON. ``adjusted_rand`` in the stage summary says how well clusters match labels.
* Per-cluster means of later scores (label quality, duplicate rate) are not stored here: they are joined at
  read time by :func:`cluster_means` so they stay current when those stages rerun.

Outputs: ``clusters(row_id, cluster, cluster_prob)`` and ``cluster_info(cluster, size, labelled, keywords,
top_label, purity, top_labels, label_counts, x, y)`` (x, y: the cluster's median point on the map).
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from .columns import Column, Table
from .embed import fixed_list, vec_array
from .errors import CurateError
from .execution import snapshot_table
from .project import projection5, sample_groups, stratified_sample, take_per_group
from .stage import StageContext, stage
from .store import NUMERIC_TYPES, Store, column_ref, join_sql, quote_ident

NOISE = -1
PREDICT_BATCH = 50_000  # rows per approximate_predict batch


def auto_min_cluster_size(n: int) -> int:
    """Smallest group worth calling a cluster: 0.5 % of the rows, at least 5 (at most n // 2 for tiny data).

    Tuned on BANKING77 (10k rows, 77 intents): 0.5 % with ``min_samples`` 10 gave the best agreement with the
    intents (adjusted Rand 0.44, 7 % noise); 0.25 % split intents, 0.8 % merged them.
    """
    return int(max(2, min(max(5, round(0.005 * n)), max(2, n // 2))))


def auto_min_samples(min_cluster_size: int) -> int:
    """HDBSCAN's density smoothing; its default (= min_cluster_size) sends many rows to noise on large data."""
    return int(max(1, min(10, min_cluster_size)))


# -------------------------------------------------------------------------------------------- HDBSCAN
def fit_hdbscan(u_fit: np.ndarray, min_cluster_size: int, min_samples: int | None, method: str = "eom",
                predict: bool = False) -> tuple[Any, np.ndarray, np.ndarray]:
    """(model or None, cluster, strength) of HDBSCAN on the fit rows; *predict* keeps what
    ``approximate_predict`` needs for the rest. Too few rows for any density structure: all noise, no model."""
    n = len(u_fit)
    if n < 3 or n <= min_cluster_size:
        return None, np.full(n, NOISE, dtype=np.int32), np.zeros(n, dtype=np.float64)
    import hdbscan

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        model = hdbscan.HDBSCAN(min_cluster_size=int(min_cluster_size),
                                min_samples=None if min_samples is None else int(min_samples),
                                cluster_selection_method=method, prediction_data=predict,
                                core_dist_n_jobs=1).fit(u_fit)
    return model, model.labels_.astype(np.int32), model.probabilities_.astype(np.float64)


def predict_hdbscan(model: Any, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster, strength) of rows outside the fit sample (all noise without a model): hdbscan's
    ``approximate_predict``, computed for all rows at once.

    Why not call it: it walks the condensed tree in a Python loop per row and finds each row's neighbour in the
    tree by a linear scan (4 s per 50k rows; a minute at 1M). The steps are the same, as array operations: the
    nearest fit row by mutual reachability among the ``2 × min_samples`` raw neighbours, the lambda at which the
    row joins it, then up the cluster tree while the parent cluster was still alive at that lambda; strength =
    lambda / the cluster's largest lambda. A test holds the result equal to hdbscan's own.
    """
    n = len(u)
    if model is None:
        return np.full(n, NOISE, dtype=np.int32), np.zeros(n, dtype=np.float64)
    pd_ = model.prediction_data_
    ctree = pd_.cluster_tree
    if ctree.shape[0] == 0 or n == 0:
        return np.full(n, NOISE, dtype=np.int32), np.zeros(n, dtype=np.float64)
    m = model.min_samples or model.min_cluster_size
    dist, ind = pd_.tree.query(np.asarray(u), k=2 * m)
    mr = np.maximum(np.maximum(pd_.core_distances[ind], dist[:, [m]]), dist)
    best = mr.argmin(axis=1)
    rows = np.arange(n)
    nearest, reach = ind[rows, best], mr[rows, best]
    with np.errstate(divide="ignore"):
        lam = np.where(reach > 0.0, 1.0 / reach, np.finfo(np.double).max)
    raw = model.condensed_tree_._raw_tree
    points = raw[raw["child_size"] == 1]  # a fit row's own line: the cluster it falls out of, and when
    parent_of = np.empty(len(pd_.raw_data), dtype=np.int64)
    fell_at = np.empty(len(pd_.raw_data), dtype=np.float64)
    parent_of[points["child"]], fell_at[points["child"]] = points["parent"], points["lambda_val"]
    cluster = parent_of[nearest]
    # clusters as a dense lookup: cluster id → its parent and the lambda at which it split off
    top = int(max(ctree["child"].max(), ctree["parent"].max())) + 1
    up, born = np.full(top, -1, dtype=np.int64), np.full(top, -np.inf)
    up[ctree["child"]], born[ctree["child"]] = ctree["parent"], ctree["lambda_val"]
    root = ctree["parent"].min()
    climbing = np.flatnonzero(fell_at[nearest] > lam)
    while climbing.size:
        c = cluster[climbing]
        go = (c > root) & (up[c] >= 0) & (born[c] >= lam[climbing])
        climbing = climbing[go]
        cluster[climbing] = up[cluster[climbing]]
    label_of = np.full(top, NOISE, dtype=np.int32)
    max_lambda = np.zeros(top)
    for c, label in pd_.cluster_map.items():
        label_of[c], max_lambda[c] = label, pd_.max_lambdas[c]
    label = label_of[cluster]
    ml = max_lambda[cluster]
    with np.errstate(divide="ignore", invalid="ignore"):
        strength = np.where(label < 0, 0.0, np.where(ml > 0.0, np.minimum(ml, lam) / ml, 1.0))
    return label, strength


def hdbscan_labels(u: np.ndarray, fit_idx: np.ndarray, min_cluster_size: int, min_samples: int | None,
                   method: str = "eom", batch_size: int = 50_000, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(cluster, strength) for every row of *u*: HDBSCAN fit on ``u[fit_idx]``, approximate_predict for the rest
    (in memory; the stage runs the same two steps through the executor)."""
    n = len(u)
    cluster = np.full(n, NOISE, dtype=np.int32)
    prob = np.zeros(n, dtype=np.float64)
    model, cluster[fit_idx], prob[fit_idx] = fit_hdbscan(u[fit_idx], min_cluster_size, min_samples, method,
                                                         predict=len(fit_idx) < n)
    rest = np.setdiff1d(np.arange(n), fit_idx)
    for lo in range(0, len(rest), batch_size):
        part = rest[lo: lo + batch_size]
        cluster[part], prob[part] = predict_hdbscan(model, u[part])
        if progress:
            progress(len(fit_idx) + lo + len(part))
    return cluster, prob


def _assignments(row_ids: np.ndarray, cluster: np.ndarray, prob: np.ndarray) -> pa.Table:
    return pa.table({"row_id": pa.array(row_ids, pa.int64()), "cluster": pa.array(cluster, pa.int32()),
                     "cluster_prob": pa.array(prob, pa.float64())})


def assign(model: Any, batch: pa.Table) -> pa.Table:
    """Batch function: (row_id, vec) of rows outside the fit sample → their cluster and strength."""
    cluster, prob = predict_hdbscan(model, fixed_list(batch.column("vec")))
    return _assignments(batch.column("row_id").to_numpy(), cluster, prob)


# ------------------------------------------------------------------------------------------ c-TF-IDF
def ctfidf(texts: list[str], cluster: np.ndarray, top_k: int = 8, stop_words: str | None = "english",
           min_df: int = 2) -> dict[int, list[tuple[str, float]]]:
    """Top *top_k* (term, weight) per cluster by class-based TF-IDF (BERTopic's c-TF-IDF)."""
    from sklearn.feature_extraction.text import CountVectorizer

    ids = np.unique(cluster)
    if len(texts) == 0:
        return {}
    vec = CountVectorizer(stop_words=stop_words, min_df=min(min_df, len(texts)), ngram_range=(1, 1))
    try:
        counts = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary (only stop words / punctuation)
        return {int(c): [] for c in ids}
    terms = vec.get_feature_names_out()
    w = ctfidf_weights(_class_counts(counts, cluster, ids))
    out: dict[int, list[tuple[str, float]]] = {}
    for row, c in enumerate(ids):
        r = w[row]
        top = np.argsort(-r, kind="stable")[:top_k]
        out[int(c)] = [(str(terms[j]), float(r[j])) for j in top if r[j] > 0]
    return out


def _class_counts(counts, cluster: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Term counts summed per cluster: (clusters × terms), dense."""
    import scipy.sparse as sp

    pos = np.searchsorted(ids, cluster)
    member = sp.csr_matrix((np.ones(len(cluster)), (pos, np.arange(len(cluster)))), shape=(len(ids), len(cluster)))
    return np.asarray((member @ counts).todense(), dtype=np.float64)


def ctfidf_weights(class_counts: np.ndarray) -> np.ndarray:
    """c-TF-IDF of a (classes × terms) count matrix: tf (L1 per class) × log(1 + A / f_t)."""
    m = np.asarray(class_counts, dtype=np.float64)
    words = m.sum(axis=1, keepdims=True)
    tf = np.divide(m, words, out=np.zeros_like(m), where=words > 0)
    avg_words = m.sum(axis=1).mean()
    f_t = m.sum(axis=0)
    idf = np.log(1.0 + np.divide(avg_words, f_t, out=np.zeros_like(f_t), where=f_t > 0))
    return tf * idf


# ---------------------------------------------------------------------------------------- cluster info
def label_stats(cluster: np.ndarray, labels: np.ndarray, top: int = 3) -> pd.DataFrame:
    """Per cluster: size, labelled rows, majority label, purity, 'a 80% · b 12%' text and counts JSON."""
    df = pd.DataFrame({"cluster": cluster, "label": labels})
    rows = []
    for c, g in df.groupby("cluster", sort=True):
        counts = g["label"].dropna().astype(str).value_counts()
        counts = counts.sort_index().sort_values(ascending=False, kind="stable")
        labelled = int(counts.sum())
        share = counts / labelled if labelled else counts
        rows.append({
            "cluster": int(c), "size": int(len(g)), "labelled": labelled,
            "top_label": counts.index[0] if labelled else None,
            "purity": float(share.iloc[0]) if labelled else None,
            "top_labels": " · ".join(f"{k} {v:.0%}" for k, v in share.head(top).items()) if labelled else "",
            "label_counts": json.dumps({str(k): int(v) for k, v in counts.items()}),
        })
    return pd.DataFrame(rows)


def keyword_sample(cluster: np.ndarray, per_cluster: int, seed: int) -> np.ndarray:
    """Indices of at most *per_cluster* seeded random rows of each cluster (bounds c-TF-IDF cost at 1M rows)."""
    if len(cluster) == 0:
        return np.zeros(0, dtype=np.int64)
    _, codes = np.unique(cluster, return_inverse=True)
    return take_per_group(codes, np.full(codes.max() + 1, per_cluster), seed)


COLUMNS = (Column("cluster", "INTEGER", "Cluster (HDBSCAN; −1 = noise)"),
           Column("cluster_prob", "DOUBLE", "Cluster membership strength"))


@stage("cluster", version="1", title="Clusters (HDBSCAN) with keywords and label purity", requires=("project",),
       outputs=(Table("clusters", COLUMNS), Table("cluster_info", features=False)),
       defaults={"min_cluster_size": None, "min_samples": None, "selection": "eom", "sample_size": 100_000,
                 "keywords": 8, "keyword_docs": 2_000, "stop_words": "english", "seed": 0})
def run_cluster(ctx: StageContext) -> dict:
    """HDBSCAN fit on a stratified sample, approximate_predict for the rest through the executor (fit on a
    sample, then map); then keywords and label make-up on the driver."""
    store, p = ctx.store, ctx.params
    ids, u, _ = projection5(store)
    n = len(ids)
    if n != store.count():
        raise CurateError(f"The projection covers {n:,} of {store.count():,} rows", "run the project stage again")
    if p["selection"] not in ("eom", "leaf"):
        raise CurateError(f"Unknown cluster selection {p['selection']!r}", "use `eom` (fewer, larger) or `leaf` (finer)")
    sample_size, seed = int(p["sample_size"]), int(p["seed"])
    fit_rows = min(n, sample_size)
    mcs = int(p["min_cluster_size"] or auto_min_cluster_size(fit_rows))
    if mcs < 2:
        raise CurateError(f"min_cluster_size must be at least 2 (got {mcs})")
    fit_idx = stratified_sample(sample_groups(store), sample_size, seed) if n > sample_size else np.arange(n)
    rest_idx = np.setdiff1d(np.arange(n), fit_idx)
    ms = int(p["min_samples"] or auto_min_samples(mcs))
    ck = ctx.checkpoint
    rest = pa.table({"row_id": pa.array(ids[rest_idx], pa.int64()), "vec": vec_array(u[rest_idx])})
    batches = snapshot_table(ck, rest, PREDICT_BATCH)
    del rest

    def fit() -> tuple[Any, pa.Table]:
        ctx.progress(0, n, f"HDBSCAN on {len(fit_idx):,} rows (min cluster size {mcs})")
        model, lab, strength = fit_hdbscan(u[fit_idx], mcs, ms, p["selection"], predict=len(rest_idx) > 0)
        return model, _assignments(ids[fit_idx], lab, strength)

    tracker = ctx.tracker(n, offset=len(fit_idx), working="approximate_predict for the rest" if len(rest_idx) else "")
    _, names = ctx.executor.fit_sample_then_map(fit, assign, batches, ck, tracker)
    ctx.progress(n, n, "keywords and label make-up")
    ck.mark_complete()
    got = ck.parts(names).read().sort_by("row_id")
    cluster = got.column("cluster").to_numpy()
    prob = got.column("cluster_prob").to_numpy()

    samples = store.sample_frame(["row_id", "label"])
    labels = samples["label"].to_numpy(dtype=object)
    info = label_stats(cluster, labels)
    kw_idx = keyword_sample(cluster, int(p["keyword_docs"]), seed)
    texts = store.sample_frame(["row_id", "text"], row_ids=ids[kw_idx])["text"].tolist()
    kws = ctfidf(texts, cluster[kw_idx], top_k=int(p["keywords"]), stop_words=p["stop_words"] or None)
    info["keywords"] = [", ".join(t for t, _ in kws.get(c, [])) for c in info["cluster"]]
    xy = store.rows(["row_id", "x", "y"])
    centre = pd.DataFrame({"cluster": cluster, "x": xy["x"].to_numpy(), "y": xy["y"].to_numpy()}).groupby("cluster").median()
    info = info.join(centre, on="cluster")
    info = info[["cluster", "size", "labelled", "keywords", "top_label", "purity", "top_labels", "label_counts", "x", "y"]]
    with store.transaction() as cur:  # the assignments and the per-cluster table together
        store.replace_table("clusters", _assignments(ids, cluster, prob), cur=cur)
        store.replace_table("cluster_info", pa.Table.from_pandas(info, preserve_index=False), cur=cur)
    return {"rows": n, "clusters": int(len(set(cluster.tolist()) - {NOISE})), "noise_rows": int((cluster == NOISE).sum()),
            "min_cluster_size": mcs, "min_samples": ms, "fit_rows": int(len(fit_idx)), **agreement(cluster, labels, info)}


def agreement(cluster: np.ndarray, labels: np.ndarray, info: pd.DataFrame) -> dict:
    """How clusters line up with labels: median purity of real clusters, adjusted Rand index (noise counted
    as one more cluster) over labelled rows."""
    real = info[(info["cluster"] != NOISE) & info["purity"].notna()]
    known = np.array([v is not None and v == v for v in labels])
    out = {"median_purity": None if real.empty else round(float(real["purity"].median()), 4), "adjusted_rand": None}
    if known.sum() >= 2:
        from sklearn.metrics import adjusted_rand_score

        out["adjusted_rand"] = round(float(adjusted_rand_score(labels[known].astype(str), cluster[known])), 4)
    return out


# -------------------------------------------------------------------------------------- reading clusters
def cluster_info(store: Store) -> pd.DataFrame:
    """One row per cluster (noise = -1 included), ordered by cluster id."""
    if not store.table_exists("cluster_info"):
        raise CurateError("No clusters in this workspace yet",
                          f"run the cluster stage: python -m curate_core run --workspace {store.path} --stages cluster")
    return store.read_table("cluster_info", order_by="cluster")


def cluster_means(store: Store, columns: Sequence[str], nonzero: Sequence[str] = ()) -> pd.DataFrame:
    """Per cluster, the mean of numeric/boolean catalog *columns* (e.g. label_quality, is_label_issue → a rate)
    and the share of rows where each *nonzero* column is > 0 (e.g. dup_rank → duplicate rate, as
    ``<col>_rate``): the slot later scores fill without rerunning the cluster stage. Columns missing from the
    workspace are skipped."""
    cat = store.catalog()
    ok = lambda c: (c in cat and cat[c][0] != "clusters"  # noqa: E731
                    and (cat[c][1] in NUMERIC_TYPES + ("BOOLEAN",) or cat[c][1].startswith("DECIMAL")))
    cols, nz = [c for c in columns if ok(c)], [c for c in nonzero if ok(c)]
    joins = join_sql(cat[c][0] for c in cols + nz)
    ref = lambda c: column_ref(cat, c)  # noqa: E731
    aggs = "".join(f", avg(CAST({ref(c)} AS DOUBLE)) AS {quote_ident(c)}" for c in cols)
    aggs += "".join(f", avg(CASE WHEN {ref(c)} IS NULL THEN NULL WHEN {ref(c)} > 0 THEN 1.0 ELSE 0.0 END) "
                    f"AS {quote_ident(c + '_rate')}" for c in nz)
    return store.query_df(f"""SELECT clusters.cluster{aggs} FROM clusters JOIN samples USING (row_id) {joins}
                              GROUP BY clusters.cluster ORDER BY clusters.cluster""")


def cluster_members(store: Store, cluster: int) -> np.ndarray:
    return store.query("SELECT row_id FROM clusters WHERE cluster = ? ORDER BY row_id",
                       [int(cluster)]).column("row_id").to_numpy().astype(np.int64)


def cluster_rows(store: Store, cluster: int, columns: Sequence[str], limit: int = 50) -> pd.DataFrame:
    """Rows of one cluster, most typical first (highest membership strength), with any catalog columns."""
    ids = cluster_members(store, cluster)
    if ids.size == 0:
        return pd.DataFrame(columns=list(columns))
    cols = list(dict.fromkeys([*columns, "cluster_prob"]))
    df = store.rows(cols, row_ids=ids, order_by="cluster_prob", descending=True, limit=limit)
    return df[list(columns)]
