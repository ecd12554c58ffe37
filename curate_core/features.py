"""Feature sets the probe can train on, and the evidence that picks one.

A frozen sentence embedding is a good probe input for short texts with many classes (BANKING77: the probe's
flags reach AUROC 0.999), but it sees only the model's window (MiniLM: 256 tokens) and carries little of what
some labels are about (spam words, sentiment). Word n-grams see the whole text. So the probe stage can train on

* ``embedding``: the workspace's embedding (dense, scaled to a mean squared entry of 1);
* ``tfidf``: word unigram + bigram TF-IDF (sublinear tf, min_df 2, at most 100,000 terms; vocabulary and idf fit
  on a seeded sample of at most 200,000 texts, then every text transformed) — sparse, never densified;
* ``both``: the two side by side (:class:`Stacked`): one linear layer over [embedding, TF-IDF], the embedding
  block scaled so both blocks have the same mean squared row norm (neither drowns the other);

and ``auto`` (the default) trains the probe's K folds on each and keeps the feature set with the lowest
out-of-fold log-loss — a proper scoring rule, i.e. the probabilities confident learning reads are the best
calibrated ones — reporting every candidate's out-of-fold accuracy and log-loss. The threshold runs (AUM, data
maps) then train on the chosen set only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import CurateError, choices

FEATURES = ("auto", "embedding", "tfidf", "both")
CANDIDATES = ("embedding", "tfidf", "both")  # what ``auto`` compares, in order of preference on a tie
TFIDF_MAX_FEATURES = 100_000
TFIDF_FIT_SAMPLE = 200_000


def candidates(features: str) -> tuple[str, ...]:
    """The feature sets a run trains folds on (``auto``: all of them; otherwise the one named)."""
    if features not in FEATURES:
        raise CurateError(f"Unknown probe features {features!r}", f"use one of {choices(FEATURES)}")
    return CANDIDATES if features == "auto" else (features,)


def issparse(x: Any) -> bool:
    """A scipy sparse matrix (TF-IDF features) rather than a dense array (scipy imported on first use, not at
    start-up)."""
    from scipy.sparse import issparse as scipy_issparse

    return scipy_issparse(x)


def mean_square(x: Any) -> float:
    """Mean squared entry of a dense array; of the stored (nonzero) entries of a sparse one — for TF-IDF the
    squared mean over every entry would be ~1/d, and scaling it to 1 would blow each row up to √d."""
    if issparse(x):
        return float(np.square(x.data, dtype=np.float64).mean()) if x.nnz else 0.0
    return float(np.mean(np.square(x, dtype=np.float64))) if np.size(x) else 0.0


def feature_scale(x: Any) -> float:
    """Factor that makes the mean squared entry 1 (√d for unit-norm vectors; of the stored entries of a sparse
    matrix), so one learning rate and one L2 strength work across feature sets."""
    ms = mean_square(x)
    return 1.0 / math.sqrt(ms) if ms > 0 else 1.0


def scaled(x: Any) -> Any:
    """*x* times :func:`feature_scale`."""
    return x * np.float32(feature_scale(x))


@dataclass(frozen=True)
class Stacked:
    """Dense and sparse features side by side, without densifying the sparse block (row-indexable like both)."""

    dense: np.ndarray
    sparse: Any

    @property
    def shape(self) -> tuple[int, int]:
        return self.dense.shape[0], self.dense.shape[1] + self.sparse.shape[1]

    def __getitem__(self, rows: Any) -> "Stacked":
        return Stacked(self.dense[rows], self.sparse[rows])


def stack(embedding: np.ndarray, tfidf: Any) -> Stacked:
    """[embedding, TF-IDF], the embedding block scaled to the TF-IDF block's mean squared row norm."""
    tf_norm = float(np.square(tfidf.data, dtype=np.float64).sum()) / max(1, tfidf.shape[0])
    emb_norm = float(np.square(embedding, dtype=np.float64).sum()) / max(1, embedding.shape[0])
    w = math.sqrt(tf_norm / emb_norm) if emb_norm > 0 else 1.0
    return Stacked(np.ascontiguousarray(embedding * np.float32(w), dtype=np.float32), tfidf)


def tfidf_matrix(texts: Sequence[str], seed: int = 0) -> Any:
    """Word 1–2-gram TF-IDF of *texts* (CSR float32, rows L2-normalised, then scaled), vocabulary fit on a seeded
    sample. Texts with no known term get an all-zero row (the probe then sees only its bias)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["" if t is None else str(t) for t in texts]
    n = len(texts)
    sample = texts
    if n > TFIDF_FIT_SAMPLE:
        idx = np.sort(np.random.default_rng(int(seed) + 104729).choice(n, TFIDF_FIT_SAMPLE, replace=False))
        sample = [texts[i] for i in idx]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=TFIDF_MAX_FEATURES,
                          dtype=np.float32)
    try:
        vec.fit(sample)
    except ValueError:  # every term occurs once (tiny data): keep them all
        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=TFIDF_MAX_FEATURES,
                              dtype=np.float32)
        try:
            vec.fit(sample)
        except ValueError as e:  # no word at all (e.g. only punctuation)
            raise CurateError("The texts have no words for TF-IDF features",
                              "use --param probe.features=embedding") from e
    return scaled(vec.transform(texts).astype(np.float32).tocsr())


def oof_quality(y: np.ndarray, probs: np.ndarray) -> dict:
    """Out-of-fold accuracy and log-loss (mean −log p of the given label, p clipped at 1e-7) of one feature set."""
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(y)), y], 1e-7, 1.0)
    return {"oof_accuracy": round(float((np.argmax(probs, axis=1) == y).mean()), 6),
            "oof_log_loss": round(float(-np.log(p).mean()), 6)}


def choose(quality: dict[str, dict]) -> tuple[str, str]:
    """(feature set with the lowest out-of-fold log-loss, why) among the candidates trained."""
    if len(quality) == 1:
        (name, q), = quality.items()
        return name, f"features={name} was asked for (out-of-fold accuracy {q['oof_accuracy']:.3f})"
    order = sorted(quality, key=lambda k: (quality[k]["oof_log_loss"], CANDIDATES.index(k)))
    best, q = order[0], quality[order[0]]
    others = ", ".join(f"{k} {quality[k]['oof_log_loss']:.4f}" for k in order[1:])
    return best, (f"lowest out-of-fold log-loss: {best} {q['oof_log_loss']:.4f} (accuracy {q['oof_accuracy']:.3f}) "
                  f"vs {others}")
