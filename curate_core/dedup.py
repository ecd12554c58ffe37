"""Exact and semantic (SemDeDup) duplicates: the maths behind the `dup_*` and `semdedup_*` score columns.

Exact duplicates
    Texts are *normalised* (each step an option of :class:`Normalise`, all on by default), then rows with the
    same normalised text form a group. Grouping uses Arrow dictionary encoding of the normalised strings: an
    exact hash table, so there are no hash collisions to worry about. :func:`normalise_py` applies the same rules
    character by character in plain Python; tests and ``bench/dedup.py`` check the Arrow path against it.

SemDeDup (Abbas et al., 2023)
    Spherical k-means on the L2-normalised embeddings (k = ⌈√N⌉ by default, so clusters hold about √N rows and
    the pairwise step costs about N^1.5·d), clusters above ``max_cluster_size`` split again by k-means, then
    within each cluster rows are put in *keep order* (default ``hard``: farthest from the centroid first, as in
    the paper; ``first``: row order) and each row gets ``semdedup_sim`` = its largest cosine similarity to a row
    earlier in that order (−1 for the first row of a cluster, which is always kept) and ``semdedup_match`` = that
    row. A row is removed at ``eps`` iff ``semdedup_sim > 1 − eps`` — exactly the quantity the reference
    implementation thresholds — so the eps slider is a pure filter: no recomputation, and the removed set only
    grows with eps. Every removed row has a near-duplicate earlier in its cluster (which may itself be removed
    at the same eps: a chain of near-duplicates collapses to its first member).
"""

from __future__ import annotations

import math
import unicodedata
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import rules
from .errors import CurateError, choices

Progress = Callable[[int, int, str], None]

#: a URL becomes this private-use character, so "see http://a" == "see http://b" but != "see"
URL_MARK = "\ue000"
# "http://", "https://" or "www." (ASCII, any case) followed by everything up to the next separator/control char
URL_PATTERN = r"(?:[Hh][Tt][Tt][Pp][Ss]?://|[Ww][Ww][Ww]\.)[^\p{Z}\p{Cc}]*"
_URL_STARTS = ("http://", "https://", "www.")


# ============================================================================================ exact
@dataclass(frozen=True)
class Normalise:
    """How texts are normalised before exact-duplicate grouping (applied in this order).

    * ``unicode``: NFKC (full-width letters, ligatures and compatibility forms fold to their plain form).
    * ``urls``: every ``http(s)://…`` / ``www.…`` run up to the next space becomes one placeholder, so the same
      tweet posted with two short links is one group.
    * ``case``: lower-case.
    * ``punctuation``: punctuation and symbols (Unicode categories P*, S*: ``.,!?'"-``, emoji, ``£``) become
      spaces — "Ok." and "ok!" are one group.
    * ``whitespace``: invisible format characters (zero-width space …) are removed; runs of spaces, tabs,
      line breaks and other separator/control characters become one space; the ends are trimmed.

    Default: all on. On SMS Spam this finds 444 repeats of an earlier row (403 byte-identical; 415 with only
    case and whitespace folded). A text that normalises to nothing (only punctuation/emoji) is grouped by its
    raw text instead, so ":)" and ":(" stay apart.
    """

    unicode: bool = True
    urls: bool = True
    case: bool = True
    punctuation: bool = True
    whitespace: bool = True

    @classmethod
    def from_params(cls, params: dict | None) -> "Normalise":
        params = dict(params or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise CurateError(f"Unknown normalisation option(s) {choices(unknown)}", f"options: {choices(names)}")
        bad = [k for k, v in params.items() if not isinstance(v, bool) and v not in (0, 1)]
        if bad:
            raise CurateError(f"Normalisation option(s) {choices(bad)} need true or false",
                              "e.g. --param 'scores.params={\"dup_rank\": {\"urls\": false}}'")
        return cls(**{k: bool(v) for k, v in params.items()})

    def describe(self) -> str:
        on = [f.name for f in fields(self) if getattr(self, f.name)]
        return ", ".join(on) if on else "none (byte-identical texts only)"

    def as_dict(self) -> dict:
        return asdict(self)


def normalise(texts: pa.Array | pa.ChunkedArray | Sequence[str], opts: Normalise = Normalise()) -> pa.Array:
    """Normalised texts (Arrow string array), vectorised with Arrow compute kernels (RE2 regular expressions)."""
    t = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    if isinstance(t, pa.ChunkedArray):
        t = t.combine_chunks()
    if opts.unicode:
        t = pc.utf8_normalize(t, "NFKC")
    if opts.urls:
        t = pc.replace_substring_regex(t, URL_PATTERN, f" {URL_MARK} ")
    if opts.case:
        t = pc.utf8_lower(t)
    if opts.punctuation:
        t = pc.replace_substring_regex(t, r"[\p{P}\p{S}]", " ")
    if opts.whitespace:
        t = pc.replace_substring_regex(t, r"\p{Cf}", "")
        t = pc.replace_substring_regex(t, r"[\p{Z}\p{Cc}]+", " ")
        t = pc.utf8_trim(t, " ")
    return t


def normalise_py(text: str, opts: Normalise = Normalise()) -> str:
    """The same rules as :func:`normalise`, one character at a time in plain Python (the reference)."""
    cat = unicodedata.category
    if opts.unicode:
        text = unicodedata.normalize("NFKC", text)
    if opts.urls:
        out, i, low = [], 0, text.lower() if text.isascii() else "".join(c.lower() if c.isascii() else "\0" for c in text)
        while i < len(text):
            if any(low.startswith(s, i) for s in _URL_STARTS):
                j = i
                while j < len(text) and cat(text[j])[0] != "Z" and cat(text[j]) != "Cc":
                    j += 1
                out.append(f" {URL_MARK} ")
                i = j
            else:
                out.append(text[i])
                i += 1
        text = "".join(out)
    if opts.case:  # simple (one-to-one) case mapping, like Arrow: only U+0130 lowers to two characters
        text = "".join(c.lower() if len(c.lower()) == 1 else "i" for c in text)
    if opts.punctuation:
        text = "".join(" " if cat(c)[0] in "PS" else c for c in text)
    if opts.whitespace:
        text = "".join(c for c in text if cat(c) != "Cf")
        text = "".join(" " if cat(c)[0] == "Z" or cat(c) == "Cc" else c for c in text)
        text = " ".join(p for p in text.split(" ") if p)
    return text


@dataclass
class ExactGroups:
    """Per row: group id (−1 = no duplicate), rank in group (0 = kept), label conflict; plus totals."""

    group: np.ndarray  # int64
    rank: np.ndarray  # int64
    conflict: np.ndarray  # bool
    n_groups: int
    rows_in_groups: int
    conflict_groups: int

    @property
    def n_duplicates(self) -> int:
        """Rows that repeat an earlier kept row (dup_rank > 0)."""
        return int((self.rank > 0).sum())


def group_codes(texts: pa.Array | Sequence[str], opts: Normalise = Normalise()) -> np.ndarray:
    """An int code per row; equal codes = equal normalised text (empty normalisations fall back to raw text)."""
    raw = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    norm = normalise(raw, opts)
    codes = pc.dictionary_encode(norm).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    empty = pc.equal(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)
    if empty.any():
        raw_codes = pc.dictionary_encode(raw.filter(pa.array(empty))).indices.to_numpy(zero_copy_only=False)
        codes[empty] = codes.max() + 1 + raw_codes.astype(np.int64)
    return codes


def exact_groups(codes: np.ndarray, label_codes: np.ndarray | None = None,
                 quality: np.ndarray | None = None) -> ExactGroups:
    """Groups of equal *codes*. The kept row (rank 0) is the first seen, or the best *quality* (higher = better,
    NaN last; ties go to the first seen) when given. A group conflicts when its labelled rows carry 2+ labels."""
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    if n == 0:
        e = np.zeros(0, np.int64)
        return ExactGroups(e, e.copy(), np.zeros(0, bool), 0, 0, 0)
    _, inv, counts = np.unique(codes, return_inverse=True, return_counts=True)
    idx = np.arange(n)
    if quality is not None:
        q = np.asarray(quality, dtype=np.float64)
        key = np.where(np.isnan(q), np.inf, -q)
        order = np.lexsort((idx, key, inv))
    else:
        order = np.lexsort((idx, inv))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    multi = counts[inv] > 1
    # dense group ids over multi-row groups, numbered by first occurrence
    first = np.full(counts.size, n, np.int64)
    np.minimum.at(first, inv, idx)
    multi_groups = np.flatnonzero(counts > 1)
    gid_of = np.full(counts.size, -1, np.int64)
    gid_of[multi_groups[np.argsort(first[multi_groups], kind="stable")]] = np.arange(multi_groups.size)
    group = gid_of[inv]
    conflict = np.zeros(n, bool)
    n_conflict = 0
    if label_codes is not None:
        lab = np.asarray(label_codes, dtype=np.int64)
        sel = multi & (lab >= 0)
        pairs = np.unique(np.stack([inv[sel], lab[sel]], axis=1), axis=0) if sel.any() else np.zeros((0, 2), np.int64)
        n_labels = np.bincount(pairs[:, 0], minlength=counts.size) if len(pairs) else np.zeros(counts.size, np.int64)
        bad = n_labels > 1
        conflict = bad[inv]
        n_conflict = int(bad.sum())
    return ExactGroups(group, rank, conflict, int(multi_groups.size), int(multi.sum()), n_conflict)


# ========================================================================================= SemDeDup
KEEP_ORDERS = ("hard", "first")

#: The eps the app starts from: remove a row only when it is near-identical (cosine > 0.99) to an earlier row of
#: its cell. On BANKING77 train (MiniLM) eps 0.01 removes 1.5 % (pairs like "delivery date of / for my card"),
#: 0.02 4.4 %, the paper's web-scale 0.05 16.6 % and 0.08 29.8 %: pairs at cosine 0.92–0.96 are paraphrases
#: of one intent ("Can you help me track my card?" / "Can you track my card for me?"), which on a labelled set
#: are training signal, not waste. Raise it on purpose, reading the pairs.
DEFAULT_EPS = 0.01


@dataclass
class SemDeDupResult:
    cluster: np.ndarray  # int64 per row
    sim: np.ndarray  # float32 per row: largest cosine similarity to an earlier row in keep order (−1: first)
    match: np.ndarray  # int64 per row: index of that row (−1: none)
    n_clusters: int
    largest_cluster: int
    split_clusters: int  # clusters above max_cluster_size that were split again


def default_k(n: int) -> int:
    """Clusters for *n* rows: ⌈√n⌉, so a cluster holds ~√n rows and the pairwise step costs ~n^1.5·d."""
    return max(1, min(n, math.ceil(math.sqrt(n))))


def assign(x: np.ndarray, centroids: np.ndarray, block: int = 8192) -> np.ndarray:
    """The nearest centroid by cosine of every row, in blocks to bound memory."""
    lab = np.empty(len(x), np.int64)
    for lo in range(0, len(x), block):
        lab[lo: lo + block] = (x[lo: lo + block] @ centroids.T).argmax(1)
    return lab


def spherical_kmeans(x: np.ndarray, k: int, seed: int = 0, sample: int | None = None,
                     max_iter: int = 20) -> np.ndarray:
    """Unit-norm centroids of k-means fit on a seeded sample (fit-then-assign, like FAISS's training set).

    The sample has ``max(40·k, 10,000)`` rows unless *sample* is given: enough for stable centroids, and the
    fit costs the same at 100k and 10M rows.
    """
    from sklearn.cluster import KMeans, kmeans_plusplus
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    n = len(x)
    k = max(1, min(k, n))
    size = max(40 * k, 10_000) if sample is None else max(int(sample), k)
    rng = np.random.default_rng(seed)
    fit = x if n <= size else x[np.sort(rng.choice(n, size=size, replace=False))]
    if k == 1:
        c = fit.mean(0, keepdims=True)
    else:
        fit = fit.astype(np.float64)  # sklearn's k-means++ upcasts float32 in small chunks: ~10x slower
        # k-means++ seeds from 8·k rows (its cost grows with k × rows), then Lloyd iterations on the whole sample
        seed_rows = fit if len(fit) <= 8 * k else fit[np.sort(rng.choice(len(fit), size=8 * k, replace=False))]
        with warnings.catch_warnings():  # duplicate points: fewer distinct clusters than k is fine here
            warnings.simplefilter("ignore", ConvergenceWarning)
            with threadpool_limits(1):  # many tiny matrix products: threads only add overhead
                init, _ = kmeans_plusplus(seed_rows, k, random_state=seed)
            c = KMeans(n_clusters=k, init=init, n_init=1, max_iter=max_iter).fit(fit).cluster_centers_
    c = np.asarray(c, np.float32)
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    return c / np.maximum(norms, 1e-12)


def _split(x: np.ndarray, members: np.ndarray, cap: int, seed: int) -> list[np.ndarray]:
    """Split an oversized cluster by k-means until every piece has at most *cap* rows.

    A piece k-means cannot split (e.g. many identical vectors) is cut into consecutive chunks of *cap* rows.
    """
    out, todo = [], [members]
    while todo:
        m = todo.pop()
        if len(m) <= cap:
            out.append(m)
            continue
        k = math.ceil(len(m) / cap) * 2
        lab = assign(x[m], spherical_kmeans(x[m], k, seed=seed))
        pieces = [m[lab == c] for c in np.unique(lab)]
        if max(len(p) for p in pieces) == len(m):  # no progress
            out.extend(m[i: i + cap] for i in range(0, len(m), cap))
        else:
            todo.extend(pieces)
    return out


def semdedup(emb: np.ndarray, n_clusters: int | None = None, max_cluster_size: int = 4_000, keep: str = "hard",
             seed: int = 0, progress: Progress | None = None) -> SemDeDupResult:
    """SemDeDup per-row similarities (see the module docstring). *emb* rows must be L2-normalised."""
    if keep not in KEEP_ORDERS:
        raise CurateError(f"Unknown SemDeDup keep order {keep!r}", f"use one of {choices(KEEP_ORDERS)}")
    if max_cluster_size < 2:
        raise CurateError("max_cluster_size must be at least 2")
    x = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(x)
    sim = np.full(n, -1.0, np.float32)
    match = np.full(n, -1, np.int64)
    if n == 0:
        return SemDeDupResult(np.zeros(0, np.int64), sim, match, 0, 0, 0)
    k = default_k(n) if n_clusters is None else max(1, min(int(n_clusters), n))
    if progress:
        progress(0, n, f"k-means with k = {k:,}")
    lab = assign(x, spherical_kmeans(x, k, seed=seed))
    order = np.argsort(lab, kind="stable")
    bounds = np.flatnonzero(np.diff(lab[order])) + 1
    groups: list[np.ndarray] = []
    split = 0
    for m in np.split(order, bounds):
        if len(m) > max_cluster_size:
            split += 1
            groups.extend(_split(x, m, max_cluster_size, seed))
        else:
            groups.append(m)
    groups.sort(key=lambda g: g.min())  # cluster ids numbered by their first row: stable and readable
    cluster = np.empty(n, np.int64)
    done = 0
    for cid, m in enumerate(groups):
        cluster[m] = cid
        v = x[m]
        if keep == "hard":
            c = v.mean(0)
            c /= max(float(np.linalg.norm(c)), 1e-12)
            m = m[np.lexsort((m, v @ c))]  # least similar to the centroid first; ties: row order
        else:
            m = np.sort(m)
        if len(m) > 1:
            v = x[m]
            s = v @ v.T
            ar = np.arange(len(m))
            np.putmask(s, ar[:, None] >= ar[None, :], -np.inf)  # keep j < i only: column i sees earlier rows
            best = s.argmax(0)
            best_s = s[best, np.arange(len(m))]
            sim[m[1:]] = np.clip(best_s[1:], -1.0, 1.0)
            match[m[1:]] = m[best[1:]]
        done += len(m)
        if progress and (cid % 64 == 0 or cid == len(groups) - 1):
            progress(done, n, f"pairwise similarity in {len(groups):,} clusters")
    return SemDeDupResult(cluster, sim, match, len(groups), max(len(g) for g in groups), split)


def removed_mask(sim: np.ndarray, eps: float) -> np.ndarray:
    """Rows SemDeDup removes at *eps*: ``semdedup_sim > 1 − eps`` (a pure filter; NaN is never removed) — the
    recipe's own rule (:func:`curate_core.rules.semdedup_removes`), evaluated on the array."""
    p = rules.Params()
    return rules.evaluate({"semdedup_sim": np.asarray(sim, dtype=np.float64)}, [rules.semdedup_removes(eps, p)],
                          p.values)[0]


def removed_counts(sim: np.ndarray, eps_values: Sequence[float]) -> list[int]:
    """Rows removed at each eps, by the recipe's rule, in one scan."""
    p = rules.Params()
    return rules.count({"semdedup_sim": np.asarray(sim, dtype=np.float64)},
                       [rules.semdedup_removes(e, p) for e in eps_values], p.values)


def removed_count(sim: np.ndarray, eps: float) -> int:
    return removed_counts(sim, [eps])[0]


def kept_by_cell(cell: np.ndarray, sim: np.ndarray, eps: float) -> pd.DataFrame:
    """Per SemDeDup k-means cell at *eps*: cell, size, kept, removed, kept_frac — sorted by kept_frac, then size
    (desc); counted with the recipe's rule, in one scan. ("Cell", not "cluster": these are SemDeDup's own k-means
    partition, unrelated to the map's HDBSCAN clusters.)"""
    p = rules.Params()
    t = rules.query({"c": np.asarray(cell, dtype=np.int64), "semdedup_sim": np.asarray(sim, dtype=np.float64)},
                    f"s.c AS cell, count(*) AS size, count(*) FILTER (WHERE {rules.semdedup_removes(eps, p)}) "
                    "AS removed FROM _rows s GROUP BY s.c", p.values).to_pandas()
    df = pd.DataFrame({"cell": t["cell"].to_numpy(np.int64), "size": t["size"].to_numpy(np.int64),
                       "kept": (t["size"] - t["removed"]).to_numpy(np.int64), "removed": t["removed"].to_numpy(np.int64)})
    df["kept_frac"] = df["kept"] / df["size"]
    return df.sort_values(["kept_frac", "size", "cell"], ascending=[True, False, True]).reset_index(drop=True)


def removed_curve(sim: np.ndarray, eps_values: Sequence[float]) -> pd.DataFrame:
    """Rows removed at each eps (for a "removed vs eps" line)."""
    eps = [float(e) for e in eps_values]
    return pd.DataFrame({"eps": np.asarray(eps, dtype=np.float64),
                         "removed": np.asarray(removed_counts(sim, eps), dtype=np.int64)})
