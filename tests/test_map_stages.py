"""Stages project and cluster: stratified samples, PCA fallback (1–3 rows), checkpointed resume, HDBSCAN with
fit-on-sample, c-TF-IDF against its formula, label purity, CLI/info wiring.

Fast tests use TF-IDF vectors and ``method=pca`` (no numba compile); one slow-marked test runs UMAP itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curate_core import CurateError, Workspace, cluster, project
from curate_core.cluster import (auto_min_cluster_size, ctfidf, ctfidf_weights, fit_hdbscan, hdbscan_labels,
                                 keyword_sample, label_stats, predict_hdbscan)
from curate_core.project import Projector, stratified_sample
from tests.conftest import REPO, write_csv

FAST = {"embed": {"embedder": "tfidf", "dim": 16}, "project": {"method": "pca"}}
TOPICS = {"billing": ["card", "charged", "payment", "refund", "invoice"],
          "travel": ["flight", "hotel", "trip", "airport", "booking"],
          "weather": ["rain", "snow", "sunny", "forecast", "storm"]}


def topic_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lab = list(TOPICS)[i % 3]
        words = rng.choice(TOPICS[lab], size=4)
        rows.append({"id": f"r{i:04d}", "text": " ".join(words) + f" please {i}", "label": lab})
    return pd.DataFrame(rows)


def built(tmp_path: Path, n: int, params: dict | None = None, name: str = "ws") -> Workspace:
    ws = Workspace(tmp_path / name)
    ws.ingest(write_csv(tmp_path / f"{name}.csv", topic_frame(n)))
    ws.run(["embed", "project", "cluster"], params={**FAST, **(params or {})})
    return ws


# ------------------------------------------------------------------------------------------- sampling
def test_stratified_sample_is_deterministic_and_keeps_every_group():
    groups = np.array(["a"] * 900 + ["b"] * 90 + ["c"] * 9 + ["d"])
    s = stratified_sample(groups, 100, seed=3)
    assert len(s) == 100 and np.all(np.diff(s) > 0)
    np.testing.assert_array_equal(s, stratified_sample(groups, 100, seed=3))
    assert not np.array_equal(s, stratified_sample(groups, 100, seed=4))
    counts = pd.Series(groups[s]).value_counts()
    assert counts["a"] == 89 and counts["b"] == 9 and counts["c"] == 1 and counts["d"] == 1
    np.testing.assert_array_equal(stratified_sample(groups, 5000), np.arange(1000))
    assert len(stratified_sample(groups, 2)) == 2  # fewer slots than groups: still exactly n


# ---------------------------------------------------------------------------------------------- project
@pytest.mark.parametrize("n", [1, 2, 3, 12])
def test_tiny_data_falls_back_to_pca(n):
    X = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    p = Projector(method="umap").fit(X)
    xy, u = p.fitted()
    assert p.used == "pca" and "PCA instead of UMAP" in p.note
    assert xy.shape == (n, 2) and u.shape == (n, 5) and np.isfinite(u).all()
    xy2, u2 = p.transform(X)
    np.testing.assert_allclose(u2, u, atol=1e-5)


def test_without_umap_learn_the_projection_falls_back_to_pca(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` raise ImportError
    p = Projector(method="umap").fit(np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32))
    assert p.used == "pca" and "umap-learn is not installed" in p.note
    assert p.fitted()[0].shape == (40, 2)


def test_pca_projection_matches_sklearn():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(1).normal(size=(200, 12)).astype(np.float32)
    _, u = Projector(method="pca", pca_dims=50).fit(X).fitted()
    ref = PCA(5).fit_transform(X)
    for j in range(5):  # components agree up to sign
        assert abs(abs(np.corrcoef(u[:, j], ref[:, j])[0, 1]) - 1) < 1e-4


def test_unknown_method_is_a_curate_error():
    with pytest.raises(CurateError, match="umap"):
        Projector(method="tsne").fit(np.zeros((5, 3)))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_one_to_three_rows_run_through_all_stages(tmp_path, n):
    ws = Workspace(tmp_path / "w")
    ws.ingest(write_csv(tmp_path / "a.csv", topic_frame(n)))
    ws.run(["embed", "project", "cluster"], params={"embed": {"embedder": "tfidf"}})  # method umap → PCA fallback
    xy = ws.store.rows(["row_id", "x", "y", "cluster"])
    assert len(xy) == n and xy[["x", "y"]].notna().all().all()
    assert (xy["cluster"] == -1).all()
    assert cluster.cluster_info(ws.store)["size"].sum() == n
    ws.close()


def test_project_fit_on_sample_and_transform_the_rest(tmp_path):
    ws = built(tmp_path, 90, {"project": {"method": "pca", "sample_size": 30, "batch_size": 25}})
    ids, u, in_fit = project.projection5(ws.store)
    assert len(ids) == 90 and in_fit.sum() == 30 and u.shape == (90, 5)
    summary = ws.store.latest_runs()["project"]["summary"]
    s = json.loads(summary) if isinstance(summary, str) else summary
    assert s["fit_rows"] == 30 and s["transformed_rows"] == 60
    # the fit sample is stratified by label: 10 of each
    labels = ws.store.sample_frame(["row_id", "label"])["label"].to_numpy()
    assert pd.Series(labels[in_fit]).value_counts().tolist() == [10, 10, 10]
    ws.close()


def test_kill_9_during_project_resumes_to_the_same_coordinates(tmp_path):
    base = built(tmp_path, 60, name="base")
    base.close()
    args = ["--stages", "project", "--param", "project.sample_size=20", "--param", "project.batch_size=5",
            "--param", "project.method=\"pca\""]
    import shutil

    for name in ("killed", "clean"):
        shutil.copytree(tmp_path / "base", tmp_path / name)
    parts = lambda: sorted((tmp_path / "killed" / "checkpoints" / "project").rglob("part-*.parquet"))  # noqa: E731
    proc = subprocess.Popen([sys.executable, "-m", "curate_core", "run", "--workspace", str(tmp_path / "killed"), *args],
                            cwd=REPO, env={**os.environ, "CURATE_DEBUG_BATCH_DELAY": "0.4"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(parts()) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert 3 <= len(parts()) < 9
    for name in ("killed", "clean"):
        r = subprocess.run([sys.executable, "-m", "curate_core", "run", "--workspace", str(tmp_path / name), *args],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert ("rows from checkpoint" in r.stderr) == (name == "killed")
    with Workspace(tmp_path / "killed") as a, Workspace(tmp_path / "clean") as b:
        pa_, pb = a.store.rows(["row_id", "x", "y"]), b.store.rows(["row_id", "x", "y"])
        pd.testing.assert_frame_equal(pa_, pb)
        np.testing.assert_array_equal(project.projection5(a.store)[1], project.projection5(b.store)[1])


# ---------------------------------------------------------------------------------------------- cluster
def blobs(n_per: int, centres: int = 3, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(scale=10, size=(centres, dim))
    y = np.repeat(np.arange(centres), n_per)
    return (c[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_hdbscan_fit_on_sample_and_approximate_predict():
    from sklearn.metrics import adjusted_rand_score

    u, y = blobs(200)
    full, prob = hdbscan_labels(u, np.arange(len(u)), 20, 5)
    assert adjusted_rand_score(y, full) > 0.95 and ((prob >= 0) & (prob <= 1)).all()
    fit = stratified_sample(y, 150, seed=0)
    part, prob2 = hdbscan_labels(u, fit, 20, 5, batch_size=100)
    rest = np.setdiff1d(np.arange(len(u)), fit)
    assert adjusted_rand_score(y[rest], part[rest]) > 0.95  # predicted rows land in the right clusters
    assert set(np.unique(part)) <= set(np.unique(part[fit])) | {-1}


@pytest.mark.parametrize("spread, min_samples", [(0.3, 5), (1.6, 10), (1.6, None)])
def test_cluster_prediction_equals_hdbscans_approximate_predict(spread, min_samples):
    """Our all-rows-at-once prediction gives hdbscan's labels and strengths exactly: tight blobs, and blobs that
    overlap into a nested tree with noise between them."""
    import hdbscan

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(12, 5)) * 4
    y = rng.integers(0, 12, 6000)
    u = (centres[y] + rng.normal(size=(6000, 5)) * spread).astype(np.float32)
    model, _, _ = fit_hdbscan(u[:3000], 30, min_samples, predict=True)
    ref_label, ref_strength = hdbscan.approximate_predict(model, u[3000:])
    label, strength = predict_hdbscan(model, u[3000:])
    assert 0 < (ref_label < 0).sum() or spread < 1  # the overlapping case has noise to get right
    np.testing.assert_array_equal(label, ref_label)
    np.testing.assert_array_equal(strength, ref_strength)


def test_auto_min_cluster_size_scales():
    assert auto_min_cluster_size(3) == 2 and auto_min_cluster_size(100) == 5
    assert auto_min_cluster_size(10_000) == 50 and auto_min_cluster_size(200_000) == 1000


def test_ctfidf_weights_follow_the_formula():
    counts = np.array([[3, 0, 1], [1, 2, 1]], dtype=float)
    tf = counts / counts.sum(axis=1, keepdims=True)
    avg_words = counts.sum() / 2  # A: average words per class
    idf = np.log(1 + avg_words / counts.sum(axis=0))
    np.testing.assert_allclose(ctfidf_weights(counts), tf * idf)
    assert ctfidf_weights(np.zeros((2, 3))).sum() == 0


def test_ctfidf_picks_the_distinguishing_words():
    texts = ["cheap flight to rome", "flight delayed again", "my card was charged", "card payment failed",
             "the weather today", "weather forecast rain"]
    kw = ctfidf(texts, np.array([0, 0, 1, 1, 2, 2]), top_k=2, min_df=1)
    assert kw[0][0][0] == "flight" and kw[1][0][0] == "card" and kw[2][0][0] == "weather"
    assert ctfidf(["the and of", "a the"], np.array([0, 1]), min_df=1) == {0: [], 1: []}  # only stop words


def test_label_stats_purity_and_top_labels():
    df = label_stats(np.array([0, 0, 0, 0, 1, 1, -1]), np.array(["a", "a", "a", "b", None, None, "c"], dtype=object))
    d = df.set_index("cluster")
    assert d.loc[0, "purity"] == 0.75 and d.loc[0, "top_label"] == "a" and d.loc[0, "top_labels"] == "a 75% · b 25%"
    assert d.loc[1, "labelled"] == 0 and pd.isna(d.loc[1, "purity"])
    assert json.loads(d.loc[0, "label_counts"]) == {"a": 3, "b": 1}


def test_keyword_sample_caps_rows_per_cluster():
    c = np.array([0] * 50 + [1] * 5 + [-1] * 20)
    idx = keyword_sample(c, 10, seed=0)
    assert pd.Series(c[idx]).value_counts().to_dict() == {0: 10, 1: 5, -1: 10}


def test_cluster_stage_tables_and_means(tmp_path):
    ws = built(tmp_path, 120)
    info = cluster.cluster_info(ws.store)
    assert {"cluster", "size", "keywords", "purity", "top_labels", "label_counts", "x", "y"} <= set(info.columns)
    assert info["size"].sum() == 120
    real = info[info["cluster"] >= 0]
    assert len(real) >= 2 and (real["purity"] > 0.9).all()  # three well separated topics
    top = dict(zip(real["top_label"], real["keywords"]))
    assert any(w in top["billing"] for w in TOPICS["billing"])
    rows = ws.store.rows(["row_id", "cluster", "cluster_prob"])
    assert rows["cluster"].dtype.kind == "i" and rows["cluster_prob"].between(0, 1).all()
    # per-cluster means of later scores are joined at read time (here: a textstats column, and unknown ones skipped)
    ws.run(["textstats"])
    means = cluster.cluster_means(ws.store, ["n_chars", "label_quality"])
    assert list(means.columns) == ["cluster", "n_chars"] and len(means) == len(info)
    members = cluster.cluster_members(ws.store, int(real["cluster"].iloc[0]))
    sample = cluster.cluster_rows(ws.store, int(real["cluster"].iloc[0]), ["row_id", "text"], limit=3)
    assert len(sample) == 3 and set(sample["row_id"]) <= set(members)
    s = ws.store.latest_runs()["cluster"]["summary"]
    s = json.loads(s) if isinstance(s, str) else s
    assert s["median_purity"] > 0.9 and s["adjusted_rand"] > 0.7  # noise rows count as one more cluster
    ws.close()


def test_cluster_parameter_errors(tmp_path):
    ws = built(tmp_path, 30)
    with pytest.raises(CurateError, match="leaf"):
        ws.run(["cluster"], params={"cluster": {"selection": "bogus"}})
    with pytest.raises(CurateError, match="Unknown parameter"):
        ws.run(["cluster"], params={"cluster": {"bogus": 1}})
    ws.close()


def test_cli_run_and_info_show_the_stages(tmp_path):
    data = write_csv(tmp_path / "a.csv", topic_frame(40))
    w = str(tmp_path / "w")
    run = lambda *a: subprocess.run([sys.executable, "-m", "curate_core", *a], cwd=REPO, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    assert run("ingest", str(data), "--workspace", w).returncode == 0
    r = run("run", "--workspace", w, "--stages", "embed,project,cluster", "--embedder", "tfidf",
            "--param", "project.method=\"pca\"")
    assert r.returncode == 0, r.stderr
    info = json.loads(run("info", "--workspace", w, "--json").stdout)
    assert {k: info["stages"][k] for k in ("embed", "project", "cluster")} == dict.fromkeys(("embed", "project", "cluster"), "done")
    r = run("run", "--workspace", w, "--stages", "embed", "--embedder", "tfidf", "--model", "/x")
    assert r.returncode == 2 and "--model is for the minilm embedder" in r.stderr


@pytest.mark.slow
def test_umap_projection_separates_topics_and_transform_is_consistent(tmp_path):
    """The real UMAP path (numba compile: slow): fit on a sample, transform the rest, clusters match topics."""
    from sklearn.metrics import adjusted_rand_score

    ws = built(tmp_path, 300, {"project": {"method": "umap", "sample_size": 200, "batch_size": 50}})
    s = ws.store.latest_runs()["project"]["summary"]
    s = json.loads(s) if isinstance(s, str) else s
    assert s["method"] == "umap" and s["transformed_rows"] == 100
    rows = ws.store.rows(["row_id", "label", "cluster"])
    assert adjusted_rand_score(rows["label"], rows["cluster"]) > 0.8
    ws.close()


def test_the_map_does_not_depend_on_the_transform_batch_size(tmp_path):
    """A placed row's coordinates come from that row alone, so batches of 30 or 70 give the same map (and so
    would any executor's, or a run resumed mid-way)."""
    maps = []
    for batch in (30, 70):
        ws = built(tmp_path, 300, {"project": {"method": "umap", "sample_size": 200, "batch_size": batch,
                                               "epochs": 30}}, name=f"b{batch}")
        maps.append((ws.store.read_table("projection"), ws.store.read_table("projection5")))
        ws.close()
    for a, b in zip(*maps):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_exact_neighbours_match_sklearn():
    from sklearn.neighbors import NearestNeighbors

    from curate_core.project import ExactNeighbours

    rng = np.random.default_rng(0)
    data, queries = rng.normal(size=(500, 12)).astype(np.float32), rng.normal(size=(70, 12)).astype(np.float32)
    index = ExactNeighbours(data, block_bytes=4 * 500 * 16)  # several blocks
    idx, dist = index.query(queries, 7)
    idx[0, 0] = -1  # callers may write into the answer (umap does); the cached copy must not change
    again = index.query(queries, 7)
    idx[0, 0] = again[0][0, 0]
    np.testing.assert_array_equal(again[0], idx)
    ref_d, ref_i = NearestNeighbors(n_neighbors=7).fit(data).kneighbors(queries)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-4, atol=1e-4)
    i2, d2 = ExactNeighbours(data[:3]).query(queries[:2], 5)  # k larger than the data: all rows, sorted
    assert i2.shape == (2, 3) and (np.diff(d2, axis=1) >= 0).all()

