"""The project stage's own UMAP steps (curate_core.umap_layout) against umap-learn on the same inputs: the
neighbour weights and the fuzzy graph equal its own, new rows start where its transform starts them, and a
fitted layout is as faithful as its fit; placing new rows depends on nothing but the row."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from curate_core import umap_layout as ul
from curate_core.project import ExactNeighbours, Projector

umap_ = pytest.importorskip("umap.umap_")


def blobs(n: int, dims: int = 10, centres: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dims)) * 2
    y = rng.integers(0, centres, n)
    return (c[y] + 0.4 * rng.normal(size=(n, dims))).astype(np.float32), y


@pytest.fixture(scope="module")
def data():
    X, y = blobs(1500)
    idx, dist = ExactNeighbours(X).query(X, 15)
    return X, y, idx, dist


@pytest.mark.parametrize("local_connectivity", [1.0, 0.0])
def test_smoothing_equals_umap_learns(data, local_connectivity):
    _, _, _, dist = data
    sigma, rho = ul.smooth_knn(dist, 15.0, local_connectivity)
    ref_sigma, ref_rho = umap_.smooth_knn_dist(dist, 15.0, local_connectivity=local_connectivity)
    np.testing.assert_array_equal(rho, ref_rho)
    np.testing.assert_allclose(sigma, ref_sigma, rtol=1e-6)


def test_memberships_and_the_fuzzy_graph_equal_umap_learns(data):
    X, _, idx, dist = data
    sigma, rho = umap_.smooth_knn_dist(dist, 15.0, local_connectivity=1.0)
    _, _, vals, _ = umap_.compute_membership_strengths(idx, dist, sigma, rho)
    np.testing.assert_allclose(ul.memberships(idx, dist, 1.0, same_set=True), vals.reshape(idx.shape), atol=1e-6)
    ref, _, _ = umap_.fuzzy_simplicial_set(X, 15, np.random.RandomState(0), "euclidean", knn_indices=idx,
                                           knn_dists=dist)
    mine = ul.fuzzy_graph(idx, dist)
    assert abs(mine.tocsr() - ref.tocsr()).max() < 1e-6
    assert mine.nnz == ref.nnz


@pytest.mark.parametrize("min_dist", [0.0, 0.1, 0.5])
def test_the_curve_parameters_are_umap_learns(min_dist):
    assert ul.ab_params(min_dist) == pytest.approx(umap_.find_ab_params(1.0, min_dist), rel=1e-9)


@pytest.mark.parametrize("pieces", [1, 3])
def test_the_spectral_start_is_umap_learns(pieces):
    """Connected: our own eigen-solve, the same numbers as umap-learn's; in pieces: umap-learn's own layout."""
    import scipy.sparse.csgraph
    from umap.spectral import spectral_layout

    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(size=(400, 6)) + 40 * p for p in range(pieces)]).astype(np.float32)
    idx, dist = ExactNeighbours(X).query(X, 15)
    g = ul._pruned(ul.fuzzy_graph(idx, dist), 100)
    assert scipy.sparse.csgraph.connected_components(g)[0] == pieces
    rs_ours, rs_ref = np.random.RandomState(7), np.random.RandomState(7)
    ours = ul._spectral(g, X, 5, rs_ours)
    ref = spectral_layout(X, g, 5, rs_ref, metric="euclidean", metric_kwds={})
    ref = (ref * (10.0 / np.abs(ref).max())).astype(np.float32)
    ref = ref + rs_ref.normal(scale=0.0001, size=ref.shape).astype(np.float32)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert rs_ours.randint(1 << 30) == rs_ref.randint(1 << 30)  # the same draws taken: the SGD seed follows


def test_a_fitted_layout_is_as_faithful_as_umap_learns(data):
    """Same neighbours, same number of epochs: the map keeps the same share of neighbourhoods (the SGD is
    umap-learn's, in single-precision powers) and separates the same blobs."""
    X, y, idx, dist = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = umap_.UMAP(n_neighbors=15, min_dist=0.1, n_epochs=100, random_state=0,
                         precomputed_knn=(idx.copy(), dist.copy(), None)).fit(X).embedding_
    mine, a, b = ul.fit_layout(ul.fuzzy_graph(idx, dist), X, 2, 0.1, 100, seed=0)
    t_ref, t_mine = trustworthiness(X, ref, n_neighbors=15), trustworthiness(X, mine, n_neighbors=15)
    assert t_mine > 0.9 and abs(t_mine - t_ref) < 0.01, (t_mine, t_ref)

    def blob_accuracy(layout):  # share of rows whose nearest other row on the map is from their blob
        d = ((layout[:, None, :] - layout[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return float(np.mean(y[d.argmin(1)] == y))
    assert blob_accuracy(mine) > 0.95 and abs(blob_accuracy(mine) - blob_accuracy(ref)) < 0.02


def test_a_seed_gives_one_layout(data):
    X, _, idx, dist = data
    g = ul.fuzzy_graph(idx, dist)
    one, _, _ = ul.fit_layout(g, X, 2, 0.1, 30, seed=3)
    np.testing.assert_array_equal(one, ul.fit_layout(g, X, 2, 0.1, 30, seed=3)[0])
    assert not np.array_equal(one, ul.fit_layout(g, X, 2, 0.1, 30, seed=4)[0])


@pytest.fixture(scope="module")
def placed():
    X, y = blobs(2300, seed=1)
    fit, new = X[:2000], X[2000:]
    index = ExactNeighbours(fit)
    idx, dist = index.query(fit, 15)
    layout, a, b = ul.fit_layout(ul.fuzzy_graph(idx, dist), fit, 2, 0.1, 60, seed=0)
    qi, qd = index.query(new, 15)
    return fit, new, layout, a, b, qi, ul.memberships(qi, qd, 0.0, same_set=False), y


def test_new_rows_start_where_umap_learns_transform_starts_them(placed):
    import scipy.sparse

    fit, new, layout, _, _, qi, w, _ = placed
    graph = scipy.sparse.coo_matrix((w.ravel(), (np.repeat(np.arange(len(new)), 15), qi.ravel())),
                                    shape=(len(new), len(fit))).tocsr()
    graph.eliminate_zeros()
    np.testing.assert_allclose(ul.start_positions(layout, qi, w), umap_.init_graph_transform(graph, layout),
                               atol=1e-4)


def test_a_new_rows_place_depends_on_that_row_alone(placed):
    """Not on the rows beside it in the batch, nor on the number of threads: so every executor, batch size
    and machine size gives the same map."""
    _, _, layout, a, b, qi, w, _ = placed
    whole = ul.place_new(layout, qi, w, 20, a, b, seed=0)
    halves = np.vstack([ul.place_new(layout, qi[:117], w[:117], 20, a, b, seed=0),
                        ul.place_new(layout, qi[117:], w[117:], 20, a, b, seed=0)])
    np.testing.assert_array_equal(whole, halves)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(whole, ul.place_new(layout, qi, w, 20, a, b, seed=0))
    finally:
        numba.set_num_threads(threads)


def test_new_rows_land_in_their_blob(placed):
    _, _, layout, a, b, qi, w, y = placed
    out = ul.place_new(layout, qi, w, 20, a, b, seed=0)
    d = ((out[:, None, :] - layout[None, :, :]) ** 2).sum(-1)
    assert np.mean(y[:2000][d.argmin(1)] == y[2000:]) > 0.95


def test_projector_transform_of_a_batch_equals_its_rows_in_any_split():
    X, _ = blobs(1200, dims=60, seed=2)
    p = Projector(method="umap", epochs=30).fit(X[:900], total_rows=1200)
    xy, u = p.transform(X[900:])
    xy2 = np.vstack([p.transform(X[900:1000])[0], p.transform(X[1000:])[0]])
    np.testing.assert_array_equal(xy, xy2)
    assert u.shape == (300, 5) and np.isfinite(u).all()


def test_exact_neighbours_order_ties_by_index():
    data = np.tile(np.arange(6, dtype=np.float32), 3)[:, None]  # every point 3 times: 0..5, 0..5, 0..5
    idx, dist = ExactNeighbours(data).query(np.array([[2.0]], dtype=np.float32), 5)
    assert idx[0, :3].tolist() == [2, 8, 14] and dist[0, :3].tolist() == [0, 0, 0]
    assert dist[0, 3] == dist[0, 4] == 1 and idx[0, 3] < idx[0, 4]
