"""UMAP's fuzzy graph and layout optimisation, as the project stage runs them (McInnes, Healy & Melville, 2018).

The steps follow umap-learn's ``UMAP.fit`` and ``UMAP.transform`` (a test checks the fit against it on the
same neighbours and seed), with three differences that are the reason this file exists:

* **One fuzzy graph, two layouts.** The 5-D (clustering) and 2-D (map) layouts share the neighbour graph and
  its fuzzy set; umap-learn builds both per model.
* **Placing new rows in parallel.** While new rows are placed the fitted layout stays fixed, so each row's
  optimisation touches only that row: rows run in parallel threads, and a row's place depends on its own
  neighbours and seed only — not on the thread count, the batch it came in, or the executor. Each row's
  strongest edge is sampled every epoch (umap-learn scales edges by the strongest edge of the whole batch,
  which ties a row's place to the rows around it in the batch).
* **Compiled once per machine.** Every numba function here is cached on disk; umap-learn's epoch and graph
  functions compile again in every process (about 5 s per CLI run).

The spectral start and the curve fit of ``a``, ``b`` are umap-learn's steps too, written here with scipy so that a
run imports umap-learn only for a graph in several pieces (whose layout it does best) or pynndescent's search.
"""

from __future__ import annotations

import os
from pathlib import Path


def _user_numba_cache() -> None:
    """Compiled kernels go to a writable user cache folder (site-packages may be read-only), set before numba is
    imported, which reads it once: so they are compiled once per machine, not once per run."""
    if "NUMBA_CACHE_DIR" not in os.environ:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        os.environ["NUMBA_CACHE_DIR"] = str(base / "curate" / "numba")


_user_numba_cache()

import numba  # noqa: E402 - after the cache folder is chosen
import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402

SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
INT32_MIN, INT32_MAX = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1
NEGATIVE_SAMPLE_RATE = 5.0


# ----------------------------------------------------------------------------------------------- primitives
@numba.njit("i4(i8[::1])", cache=True)
def _rand_int(state):
    """Tausworthe (taus88) step on a 3-word state: umap-learn's generator, so a seed gives its layouts."""
    state[0] = (((state[0] & 4294967294) << 12) & 0xFFFFFFFF) ^ ((((state[0] << 13) & 0xFFFFFFFF) ^ state[0]) >> 19)
    state[1] = (((state[1] & 4294967288) << 4) & 0xFFFFFFFF) ^ ((((state[1] << 2) & 0xFFFFFFFF) ^ state[1]) >> 25)
    state[2] = (((state[2] & 4294967280) << 17) & 0xFFFFFFFF) ^ ((((state[2] << 3) & 0xFFFFFFFF) ^ state[2]) >> 11)
    return state[0] ^ state[1] ^ state[2]


@numba.njit(fastmath=True, cache=True)
def _sq_dist(x, y):  # no fixed signature: a model read from Ray's object store holds read-only arrays
    result = numba.float32(0.0)
    for i in range(x.shape[0]):
        diff = x[i] - y[i]
        result += diff * diff
    return result


@numba.njit(fastmath=True, cache=True, inline="always")
def _clip(v):
    return 4.0 if v > 4.0 else (-4.0 if v < -4.0 else v)


@numba.njit(fastmath=True, cache=True, inline="always")
def _attract(current, other, a, b, alpha, move_other):
    """One positive-edge step: pull *current* (and, while fitting, *other*) together."""
    dsq = _sq_dist(current, other)
    if dsq > 0.0:
        p = dsq ** numba.float32(b)  # single precision: a gradient step needs no more, and powf is ~3x faster
        coeff = -2.0 * a * b * (p / dsq)
        coeff /= a * p + 1.0
    else:
        coeff = 0.0
    for d in range(current.shape[0]):
        g = _clip(coeff * (current[d] - other[d]))
        current[d] += g * alpha
        if move_other:
            other[d] += -g * alpha


@numba.njit(fastmath=True, cache=True, inline="always")
def _repel(current, other, a, b, gamma, alpha):
    """One negative-sample step: push *current* away from a random row (*other* does not move)."""
    dsq = _sq_dist(current, other)
    if dsq > 0.0:
        coeff = 2.0 * gamma * b
        coeff /= (0.001 + dsq) * (a * dsq ** numba.float32(b) + 1)
        for d in range(current.shape[0]):
            current[d] += _clip(coeff * (current[d] - other[d])) * alpha


# ------------------------------------------------------------------------------------------------- the graph
@numba.njit(parallel=True, cache=True, locals={"psum": numba.float32, "lo": numba.float32, "mid": numba.float32,
                                                "hi": numba.float32})
def smooth_knn(dists, k, local_connectivity):
    """(sigma, rho) per row: rho = distance to the ``local_connectivity``-th nearest neighbour, sigma such that
    the memberships exp(−max(0, d − rho) / sigma) of the neighbours after the first sum to log2(k) (binary search,
    as umap-learn's ``smooth_knn_dist``). *dists* rows are sorted ascending."""
    n, m = dists.shape
    target = np.log2(k)
    rho = np.zeros(n, dtype=np.float32)
    sigma = np.zeros(n, dtype=np.float32)
    mean_all = np.mean(dists)
    for i in numba.prange(n):
        row = dists[i]
        nonzero = row[row > 0.0]
        if nonzero.shape[0] >= local_connectivity:
            index = int(np.floor(local_connectivity))
            frac = local_connectivity - index
            if index > 0:
                rho[i] = nonzero[index - 1]
                if frac > SMOOTH_K_TOLERANCE:
                    rho[i] += frac * (nonzero[index] - nonzero[index - 1])
            else:
                rho[i] = frac * nonzero[0]
        elif nonzero.shape[0] > 0:
            rho[i] = np.max(nonzero)
        lo, hi, mid = 0.0, np.inf, 1.0
        for _ in range(64):
            psum = 0.0
            for j in range(1, m):
                d = row[j] - rho[i]
                psum += np.exp(-(d / mid)) if d > 0 else 1.0
            if np.fabs(psum - target) < SMOOTH_K_TOLERANCE:
                break
            if psum > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                mid = mid * 2 if hi == np.inf else (lo + hi) / 2.0
        sigma[i] = mid
        floor = MIN_K_DIST_SCALE * (np.mean(row) if rho[i] > 0.0 else mean_all)
        if sigma[i] < floor:
            sigma[i] = floor
    return sigma, rho


def memberships(idx: np.ndarray, dists: np.ndarray, local_connectivity: float, same_set: bool) -> np.ndarray:
    """n×k fuzzy membership of each row to each of its k neighbours. *same_set*: the neighbours are rows of the
    same set, so a row's own entry (itself as a neighbour) gets 0."""
    dists = np.ascontiguousarray(dists, dtype=np.float32)
    sigma, rho = smooth_knn(dists, float(idx.shape[1]), float(local_connectivity))
    over = dists - rho[:, None]
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        w = np.where((over <= 0.0) | (sigma[:, None] == 0.0), np.float32(1.0),
                     np.exp(-(over / sigma[:, None]))).astype(np.float32)
    if same_set:
        w[idx == np.arange(len(idx))[:, None]] = 0.0
    w[idx < 0] = 0.0
    return w


def fuzzy_graph(idx: np.ndarray, dists: np.ndarray, local_connectivity: float = 1.0) -> scipy.sparse.coo_matrix:
    """The symmetric fuzzy graph of a k-NN graph (fuzzy union: P + Pᵀ − P∘Pᵀ), as UMAP fits on."""
    n, k = idx.shape
    w = memberships(idx, dists, local_connectivity, same_set=True)
    keep = idx.ravel() >= 0
    p = scipy.sparse.coo_matrix((w.ravel()[keep], (np.repeat(np.arange(n), k)[keep], idx.ravel()[keep])),
                                shape=(n, n))
    p.eliminate_zeros()
    pt = p.transpose()
    g = (p + pt - p.multiply(pt)).tocoo()
    g.eliminate_zeros()
    return g


def epochs_per_sample(weights: np.ndarray, n_epochs: int, strongest: np.ndarray | float | None = None) -> np.ndarray:
    """How many epochs pass between two samples of each edge: the strongest edge every epoch, an edge of half
    its weight every other epoch. *strongest*: the weight that counts as strongest (default the largest)."""
    top = weights.max() if strongest is None else strongest
    n_samples = n_epochs * (weights / top)
    out = -np.ones(weights.shape[0], dtype=np.float64)
    out[n_samples > 0] = float(n_epochs) / n_samples[n_samples > 0]
    return out


def ab_params(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """``a``, ``b`` of the low-dimensional similarity 1 / (1 + a d^2b): the least-squares fit of that curve to
    "1 up to *min_dist*, then exp(−(d − min_dist) / spread)" on [0, 3·spread] (the paper's choice, umap-learn's
    numbers)."""
    from scipy.optimize import curve_fit

    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(lambda d, a, b: 1.0 / (1.0 + a * d ** (2 * b)), x, y)
    return float(a), float(b)


# ----------------------------------------------------------------------------------------------------- fit
@numba.njit(fastmath=True, cache=True, nogil=True)
def _optimise_fit(emb, head, tail, eps, eps_neg, alphas, a, b, gamma, rng):
    """Every epoch of the fit's SGD over the edges, in order (sequential: edges move both ends, so this is what
    makes a seed give one layout). Divisions that fastmath would turn into products (``eps_neg``, ``alphas``)
    come in precomputed, so the layout is umap-learn's to the bit."""
    n_vertices = emb.shape[0]
    next_neg = eps_neg.copy()
    next_pos = eps.copy()
    for n in range(alphas.shape[0]):
        alpha = alphas[n]
        for i in range(eps.shape[0]):
            if next_pos[i] > n:
                continue
            j = head[i]
            current = emb[j]
            _attract(current, emb[tail[i]], a, b, alpha, True)
            next_pos[i] += eps[i]
            n_neg = int((n - next_neg[i]) / eps_neg[i])
            for _ in range(n_neg):
                _repel(current, emb[_rand_int(rng[j]) % n_vertices], a, b, gamma, alpha)
            next_neg[i] += n_neg * eps_neg[i]
    return emb


def _alphas(alpha0: float, n_epochs: int) -> np.ndarray:
    """The learning rate of each epoch: *alpha0*, then falling linearly (umap-learn's schedule)."""
    return np.array([alpha0] + [alpha0 * (1.0 - float(n) / float(n_epochs)) for n in range(n_epochs - 1)],
                    dtype=np.float64)[:n_epochs]


def _per_row_rng(seed_state: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Each row's generator state: the run's seed words plus the bits of the row's starting x (umap-learn's rule,
    so rows differ and a row's stream depends on nothing else)."""
    return (np.full((len(start), 3), seed_state, dtype=np.int64)
            + start[:, 0].astype(np.float64).view(np.int64).reshape(-1, 1))


def _pruned(graph: scipy.sparse.coo_matrix, n_epochs: int) -> scipy.sparse.coo_matrix:
    """The graph without edges too weak to be sampled once in *n_epochs* (umap-learn's rule)."""
    g = graph.tocoo(copy=True)
    g.sum_duplicates()
    prune_epochs = n_epochs if n_epochs > 10 else (500 if g.shape[0] <= 10_000 else 200)
    g.data[g.data < g.data.max() / float(prune_epochs)] = 0.0
    g.eliminate_zeros()
    return g


def _spectral(g: scipy.sparse.coo_matrix, data: np.ndarray, n_components: int, rs: np.random.RandomState) -> np.ndarray:
    """The eigenvectors of the normalised graph Laplacian with the smallest eigenvalues after the trivial one,
    found as umap-learn's ``spectral_layout`` finds them (same solver, start vector and draws from *rs*: the same
    layout). A graph in several pieces goes to umap-learn itself, which lays the pieces out apart from each
    other; importing it costs ~1 s, and ~25 s of compiling on a new machine, which a connected graph is spared."""
    import scipy.sparse.csgraph
    import scipy.sparse.linalg

    n = g.shape[0]
    if scipy.sparse.csgraph.connected_components(g)[0] > 1:
        from umap.spectral import spectral_layout

        start = spectral_layout(data, g, n_components, rs, metric="euclidean", metric_kwds={})
    else:
        k = n_components + 1
        sqrt_deg = np.sqrt(np.asarray(g.sum(axis=0)).squeeze())
        d = scipy.sparse.spdiags(1.0 / sqrt_deg, 0, n, n)
        laplacian = scipy.sparse.identity(n, dtype=np.float64) - d * g * d
        rs.normal(size=(n, k))  # umap-learn draws a start block here (used by its other solver): same stream
        try:
            values, vectors = scipy.sparse.linalg.eigsh(laplacian, k, which="SM", ncv=max(2 * k + 1, int(np.sqrt(n))),
                                                        tol=1e-4, v0=np.ones(n), maxiter=n * 5)
            start = vectors[:, np.argsort(values)[1:k]]
        except scipy.sparse.linalg.ArpackError:  # no eigengap to find: a random start, as umap-learn falls back to
            start = rs.uniform(low=-10.0, high=10.0, size=(n, n_components))
    start = (start * (10.0 / np.abs(start).max())).astype(np.float32)
    return start + rs.normal(scale=0.0001, size=start.shape).astype(np.float32)


def spectral_start(graph: scipy.sparse.coo_matrix, data: np.ndarray, n_components: int, n_epochs: int,
                   seed: int) -> np.ndarray:
    """The spectral layout UMAP starts from (eigenvectors of the graph's normalised Laplacian, scaled to ±10,
    a hair of noise). Its first two columns are the 2-D spectral layout, so one eigen-decomposition starts
    both layouts."""
    return _spectral(_pruned(graph, n_epochs), data, n_components, np.random.RandomState(seed))


def fit_layout(graph: scipy.sparse.coo_matrix, data: np.ndarray, n_components: int, min_dist: float,
               n_epochs: int, seed: int, init: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """(layout float32 n×n_components, a, b): UMAP's embedding of the fuzzy *graph* of *data*, started from
    its spectral layout or from *init*. Runs without the GIL, so two layouts can be fit at once."""
    a, b = ab_params(min_dist)
    rs = np.random.RandomState(seed)
    g = _pruned(graph, n_epochs)
    if init is None:
        start = _spectral(g, data, n_components, rs)
    else:
        start = np.asarray(init, dtype=np.float32)
        if np.unique(start, axis=0).shape[0] < start.shape[0]:  # rows on one point: spread them a hair apart
            from sklearn.neighbors import KDTree

            nn = KDTree(start).query(start, k=2)[0][:, 1].mean()
            start = start + rs.normal(scale=0.001 * nn, size=start.shape).astype(np.float32)
    eps = epochs_per_sample(g.data, n_epochs)
    seed_state = rs.randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
    lo, hi = start.min(axis=0), start.max(axis=0)
    emb = np.ascontiguousarray(10.0 * (start - lo) / (hi - lo), dtype=np.float32)
    rng = _per_row_rng(seed_state, emb)
    _optimise_fit(emb, g.row.astype(np.int32), g.col.astype(np.int32), eps, eps / NEGATIVE_SAMPLE_RATE,
                  _alphas(1.0, int(n_epochs)), a, b, 1.0, rng)
    return emb, a, b


# --------------------------------------------------------------------------------------------- new rows
@numba.njit(parallel=True, fastmath=True, cache=True)
def _optimise_new(out, fitted, idx, eps, eps_neg, alphas, a, b, gamma, rng):
    """Place each new row (``out`` holds their starts) against the fixed *fitted* layout: rows in parallel,
    each row's edges in order, epoch by epoch."""
    n_fit = fitted.shape[0]
    for r in numba.prange(out.shape[0]):
        current = out[r]
        state = rng[r]
        next_pos = eps[r].copy()
        next_neg = eps_neg[r].copy()
        for n in range(alphas.shape[0]):
            alpha = alphas[n]
            for e in range(idx.shape[1]):
                if eps[r, e] <= 0.0 or next_pos[e] > n:
                    continue
                _attract(current, fitted[idx[r, e]], a, b, alpha, False)
                next_pos[e] += eps[r, e]
                n_neg = int((n - next_neg[e]) / eps_neg[r, e])
                for _ in range(n_neg):
                    _repel(current, fitted[_rand_int(state) % n_fit], a, b, gamma, alpha)
                next_neg[e] += n_neg * eps_neg[r, e]
    return out


def start_positions(fitted: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Where new rows start: the membership-weighted mean of their neighbours in the fitted layout, or the
    neighbour itself when the row is identical to it (membership 1); NaN for a row without neighbours."""
    w = np.where(idx >= 0, w, 0.0).astype(np.float32)
    safe = np.where(idx >= 0, idx, 0)
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        start = np.einsum("nk,nkd->nd", w / total, fitted[safe]).astype(np.float32)
    exact = w == 1.0
    hit = exact.any(axis=1)
    start[hit] = fitted[safe[hit, exact.argmax(axis=1)[hit]]]
    start[total[:, 0] == 0] = np.nan
    return np.ascontiguousarray(start)


def new_row_epochs(w: np.ndarray, n_epochs: int) -> np.ndarray:
    """Epochs between two samples of each new row's edges: its strongest edge every epoch; edges weaker than
    1/n_epochs of it, and missing neighbours, never (−1)."""
    strongest = w.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((w > 0) & (w >= strongest / float(n_epochs)), strongest / w, -1.0).astype(np.float64)


def place_new(fitted: np.ndarray, idx: np.ndarray, w: np.ndarray, n_epochs: int, a: float, b: float,
              seed: int, start: np.ndarray | None = None) -> np.ndarray:
    """Layout positions of new rows whose neighbours among the fitted rows are *idx* (−1: none) with
    memberships *w* (from :func:`memberships`): from :func:`start_positions` (or *start*), *n_epochs* of SGD
    with the fitted layout fixed."""
    fitted = np.ascontiguousarray(fitted, dtype=np.float32)
    w = np.where(idx >= 0, w, 0.0).astype(np.float32)
    out = start_positions(fitted, idx, w) if start is None else np.array(start, dtype=np.float32, order="C")
    eps = new_row_epochs(w, n_epochs)
    seed_state = np.random.RandomState(seed).randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
    rng = _per_row_rng(seed_state, out)
    _optimise_new(out, fitted, np.ascontiguousarray(np.where(idx >= 0, idx, 0), dtype=np.int64), eps,
                  eps / NEGATIVE_SAMPLE_RATE, _alphas(0.25, int(n_epochs)), a, b, 1.0, rng)
    return out
