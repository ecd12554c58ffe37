"""Stage `cluster`: HDBSCAN on the k-D projection, keywords (c-TF-IDF) and label make-up per cluster.

* **HDBSCAN** on the ``projection5`` coordinates (density-based: any number of clusters, odd rows become noise,
  cluster −1). ``min_cluster_size`` scales with the data (:func:`auto_min_cluster_size`) unless given.
  Above ``sample_size`` rows it is fit on a stratified sample and the rest get ``approximate_predict``.
* **Keywords**: class-based TF-IDF as BERTopic defines it — all texts of a cluster form one document; a term's
  weight is its frequency in that cluster (L1-normalised) × ``log(1 + A / f_t)``, where ``A`` is the average
  number of words per cluster and ``f_t`` the term's frequency over all clusters. Terms frequent everywhere get
  low weight; terms that mark one cluster rise.
* **Label make-up**: size, labelled rows, the majority label and its share (*purity*), the top labels, and
  the full distribution as JSON. ``adjusted_rand`` in the stage summary says how well clusters match labels.
* Per-cluster means of later scores (label quality, duplicate rate) are not stored here: they are joined at
  read time by ``Store.cluster_means`` so they stay current when those stages rerun.

Outputs: ``clusters(row_id, cluster, cluster_prob)`` and ``cluster_info(cluster, size, labelled, keywords,
top_label, purity, top_labels, label_counts, x, y)`` (x, y: the cluster's median point on the map).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import CurateError
from .stage import StageContext, stage
from .project import sample_groups, stratified_sample, take_per_group
from .store import register_output_table

NOISE = -1
register_output_table("cluster_info", "cluster")


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
def hdbscan_labels(u: np.ndarray, fit_idx: np.ndarray, min_cluster_size: int, min_samples: int | None,
                   method: str = "eom", batch_size: int = 50_000, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(cluster, strength) for every row of *u*: HDBSCAN fit on ``u[fit_idx]``, approximate_predict for the rest."""
    n = len(u)
    cluster = np.full(n, NOISE, dtype=np.int32)
    prob = np.zeros(n, dtype=np.float64)
    if len(fit_idx) < 3 or len(fit_idx) <= min_cluster_size:  # too few rows to find any density structure
        return cluster, prob
    import hdbscan

    partial = len(fit_idx) < n
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        model = hdbscan.HDBSCAN(min_cluster_size=int(min_cluster_size),
                                min_samples=None if min_samples is None else int(min_samples),
                                cluster_selection_method=method, prediction_data=partial,
                                core_dist_n_jobs=1).fit(u[fit_idx])
    cluster[fit_idx] = model.labels_
    prob[fit_idx] = model.probabilities_
    if partial:
        rest = np.setdiff1d(np.arange(n), fit_idx)
        for lo in range(0, len(rest), batch_size):
            part = rest[lo: lo + batch_size]
            lab, strength = hdbscan.approximate_predict(model, u[part])
            cluster[part], prob[part] = lab, strength
            if progress:
                progress(len(fit_idx) + lo + len(part))
    return cluster, prob


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


@stage("cluster", version="1", title="Clusters (HDBSCAN) with keywords and label purity", requires=("project",),
       outputs=("clusters",),
       defaults={"min_cluster_size": None, "min_samples": None, "selection": "eom", "sample_size": 100_000,
                 "keywords": 8, "keyword_docs": 2_000, "stop_words": "english", "seed": 0})
def run_cluster(ctx: StageContext) -> dict:
    store, p = ctx.store, ctx.params
    ids, u, _ = store.projection5()
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
    ctx.progress(0, n, f"HDBSCAN on {len(fit_idx):,} rows (min cluster size {mcs})")
    ms = int(p["min_samples"] or auto_min_samples(mcs))
    cluster, prob = hdbscan_labels(u, fit_idx, mcs, ms, p["selection"],
                                   progress=lambda done: ctx.progress(done, n, "approximate_predict for the rest"))
    ctx.progress(n, n, "keywords and label make-up")

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
    store.write_clusters(
        pa.table({"row_id": pa.array(ids, pa.int64()), "cluster": pa.array(cluster, pa.int32()),
                  "cluster_prob": pa.array(prob, pa.float64())}),
        pa.Table.from_pandas(info, preserve_index=False))
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
