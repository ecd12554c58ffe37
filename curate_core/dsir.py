"""Target selection by importance resampling (DSIR, Xie et al., 2023): the maths and the target.

Each text becomes hashed counts of its lower-cased word unigrams and bigrams (10,000 buckets by default, as in
the paper; scikit-learn's murmur hashing, the same on every machine). Two bag-of-hashed-n-grams models are
estimated with additive smoothing: ``p_t`` from the *target* texts, ``p_r`` from every row of the workspace
(the raw pool). A row's log importance weight is ``Σ_j c_j · (log p_t(j) − log p_r(j))`` over its bucket
counts ``c``; sampling rows with probability ∝ ``exp`` of it (the paper's Gumbel top-k is the same as the
recipe sampler's Efraimidis–Spirakis keys) selects data whose n-gram distribution is like the target's.

**KL reduction** (the paper's measure of fit): ``KL(p_t ‖ p_random) − KL(p_t ‖ p_selected)``, where
``p_random`` is the model of a seeded random sample of the workspace of the selection's size: how much closer
to the target the selection is than chance. Positive is good.

The target is one of: an eval-like file (any ingestible format with a text column), ``selection:NAME`` (a
saved selection), ``source:VALUE`` (the rows of one source), or — from Python — a list of texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import CurateError

BUCKETS = 10_000
SMOOTHING = 1.0
KL_SAMPLE = 200_000  # the most rows whose texts are hashed for one KL figure (a seeded sample beyond)


def hashed_counts(texts: Sequence[str], buckets: int = BUCKETS) -> Any:
    """Sparse (rows × buckets) counts of each text's hashed word unigrams and bigrams."""
    from sklearn.feature_extraction.text import HashingVectorizer

    hv = HashingVectorizer(n_features=int(buckets), ngram_range=(1, 2), alternate_sign=False, norm=None,
                           lowercase=True, token_pattern=r"(?u)\b\w+\b", dtype=np.float64)
    return hv.transform([t if isinstance(t, str) else "" for t in texts])


def log_model(counts: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """Log probabilities of the buckets from their total counts, with additive smoothing."""
    c = np.asarray(counts, dtype=np.float64) + float(smoothing)
    return np.log(c / c.sum())


def log_weights(x: Any, target_counts: np.ndarray, raw_counts: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """Per-row log importance weights ``x @ (log p_t − log p_r)``."""
    return np.asarray(x @ (log_model(target_counts, smoothing) - log_model(raw_counts, smoothing))).ravel()


def kl(p_counts: np.ndarray, q_counts: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """KL(p ‖ q) of two smoothed bucket models, in nats."""
    lp, lq = log_model(p_counts, smoothing), log_model(q_counts, smoothing)
    return float(np.sum(np.exp(lp) * (lp - lq)))


# ------------------------------------------------------------------------------------------- target
def target_texts(store: Any, target: Any, text: str | None = None) -> tuple[list[str], str]:
    """(texts, description) of a DSIR target: a file, ``selection:NAME``, ``source:VALUE`` or a list of texts."""
    if isinstance(target, (list, tuple)):
        texts = [str(t) for t in target]
        what = f"{len(texts):,} given texts"
    elif not isinstance(target, str) or not target.strip():
        raise CurateError("scores.dsir.target: no target given",
                          "e.g. --param scores.dsir.target=eval.csv (a file with a text column), "
                          "selection:NAME or source:VALUE")
    elif target.startswith("selection:"):
        name = target.split(":", 1)[1]
        names = store.selection_names()
        if name not in names:
            raise CurateError(f"scores.dsir.target: no saved selection {name!r}",
                              f"saved selections: {', '.join(names) or 'none yet'}")
        texts = store.sample_frame(["text"], row_ids=store.selection(name))["text"].tolist()
        what = f"selection {name!r}"
    elif target.startswith("source:"):
        value = target.split(":", 1)[1]
        df = store.query_df("SELECT text FROM samples WHERE source = ? ORDER BY row_id", [value])
        texts = df["text"].tolist()
        if not texts:
            have = store.query_df("SELECT DISTINCT source FROM samples ORDER BY 1")["source"].astype(str).tolist()
            raise CurateError(f"scores.dsir.target: no rows with source {value!r}",
                              f"sources: {', '.join(have[:20])}")
        what = f"source {value!r}"
    else:
        texts = _file_texts(store, target, text)
        what = Path(target).name
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise CurateError(f"scores.dsir.target: {what} has no texts")
    return texts, what


def check_target(target: Any) -> None:
    """Refuse a target that cannot be one before any score is computed (a file target must exist)."""
    if target is None or isinstance(target, (list, tuple)):
        return
    if not isinstance(target, str):
        raise CurateError(f"scores.dsir.target: expected a file, selection:NAME or source:VALUE; got {target!r}")
    if not target.startswith(("selection:", "source:")) and not Path(target).expanduser().is_file():
        raise CurateError(f"scores.dsir.target: no file {target!r}",
                          "give a file with a text column (CSV, JSONL, Parquet …), selection:NAME or source:VALUE")


def _file_texts(store: Any, path: str, text: str | None) -> list[str]:
    from .ingest import detect_mapping, open_input
    from .inputs import read_input

    inp = open_input(store, str(Path(path).expanduser()))
    m = detect_mapping([c for c, _ in inp.columns], text=text)
    col = read_input(store, inp.reader, [m.text]).iloc[:, 0]
    return col[col.notna()].astype(str).tolist()


# ---------------------------------------------------------------------------------------- KL figure
def has_target(store: Any) -> bool:
    """Has the dsir score run with a target in this workspace (so a selection has a KL figure)?"""
    summary = store.get_summary("score:dsir_log_weight")
    return bool(summary) and "target_buckets" in summary and "dsir_log_weight" in _score_columns(store)


def _score_columns(store: Any) -> set[str]:
    return {c for c, _ in store.table_columns("scores")} if store.table_exists("scores") else set()


def kl_reduction(store: Any, row_ids: np.ndarray, repeats: np.ndarray | None = None, seed: int = 0) -> dict | None:
    """The KL reduction of a selection against the workspace's DSIR target (None when the dsir score has not
    run): ``kl_reduction``, ``kl_selected``, ``kl_random``, ``kl_all``, rows hashed and whether sampled."""
    if not has_target(store):
        return None
    summary = store.get_summary("score:dsir_log_weight")
    buckets, smoothing = int(summary["buckets"]), float(summary["smoothing"])
    target = np.zeros(buckets)
    target[np.asarray(summary["target_buckets"], dtype=np.int64)] = summary["target_counts"]
    raw = np.zeros(buckets)
    raw[np.asarray(summary["raw_buckets"], dtype=np.int64)] = summary["raw_counts"]
    rng = np.random.default_rng(seed)
    row_ids = np.asarray(row_ids, dtype=np.int64)
    reps = np.ones(len(row_ids)) if repeats is None else np.asarray(repeats, dtype=np.float64)
    sampled = len(row_ids) > KL_SAMPLE
    if sampled:
        keep = np.sort(rng.choice(len(row_ids), KL_SAMPLE, replace=False))
        row_ids, reps = row_ids[keep], reps[keep]
    all_ids = store.row_ids()
    rand = np.sort(rng.choice(all_ids, min(len(row_ids), len(all_ids)), replace=False))

    def counts(ids: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        frame = store.sample_frame(["row_id", "text"], row_ids=ids)
        x = hashed_counts(frame["text"].tolist(), buckets)
        if w is None:
            return np.asarray(x.sum(axis=0)).ravel()
        order = np.argsort(ids, kind="stable")  # each text's repeats, whatever order the frame comes in
        w = w[order][np.searchsorted(ids[order], frame["row_id"].to_numpy())]
        return np.asarray(x.T @ w).ravel()

    k_sel = kl(target, counts(row_ids, reps), smoothing)
    k_rand = kl(target, counts(rand), smoothing)
    return {"kl_reduction": k_rand - k_sel, "kl_selected": k_sel, "kl_random": k_rand,
            "kl_all": kl(target, raw, smoothing), "target": summary.get("target"), "rows_hashed": int(len(row_ids)),
            "sampled": sampled}
