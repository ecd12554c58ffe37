"""Synthetic workspaces for the select / export tests: samples plus score columns written directly.

Score columns come from other stages in real use; here they are made up (seeded) and written with
``store.replace_table("scores", …)`` so the selection logic is tested on its own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from curate_core import Workspace

LABELS = ["alpha", "beta", "gamma", "delta"]


def make_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = rng.integers(1, 12, n)
    return pd.DataFrame({
        "id": [f"row-{i:05d}" for i in range(n)],
        "text": [" ".join(["w"] * int(k)) + f" {i}" for i, k in enumerate(words)],
        "label": rng.choice(LABELS, n, p=[0.5, 0.25, 0.15, 0.10]),
        "source": rng.choice(["web", "books", "news"], n, p=[0.6, 0.3, 0.1]),
        "extra_num": rng.normal(size=n).round(3),
    })


def make_scores(n: int = 600, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    q = rng.random(n)
    q[rng.random(n) < 0.05] = np.nan  # "unlabelled" rows the score cannot judge
    outlier = rng.random(n)
    consensus = rng.integers(0, 4, n).astype(float)
    consensus[np.isnan(q)] = np.nan
    # exact-duplicate groups among the first 60 rows: groups of 3, rank 0 = representative
    dup_group = np.full(n, np.nan)
    dup_rank = np.full(n, np.nan)
    dup_group[:60] = np.arange(60) // 3
    dup_rank[:60] = np.arange(60) % 3
    return pd.DataFrame({
        "row_id": np.arange(n, dtype=np.int64),
        "label_quality": q,
        "outlier_score": outlier,
        "consensus": pd.array(np.where(np.isnan(consensus), None, consensus), dtype="Int64"),
        "is_label_issue": pd.array(np.where(np.isnan(consensus), None, consensus >= 2), dtype="boolean"),
        "dup_group": pd.array(np.where(np.isnan(dup_group), None, dup_group), dtype="Int64"),
        "dup_rank": pd.array(np.where(np.isnan(dup_rank), None, dup_rank), dtype="Int64"),
        "semdedup_sim": rng.random(n),
        "lang": rng.choice(["en", "de", "fr"], n, p=[0.8, 0.1, 0.1]),
    })


def build(path: Path, n: int = 600, seed: int = 0, scores: bool = True) -> Workspace:
    ws = Workspace(path)
    ws.ingest(make_frame(n, seed))
    if scores:
        ws.store.replace_table("scores", make_scores(n, seed + 1))
    return ws


def truth(ws: Workspace) -> pd.DataFrame:
    """Every row with its score columns, in row_id order (the pandas reference the tests compare against)."""
    cols = [c for c in ws.store.catalog() if c != "text"]
    return ws.store.rows(cols)


def sha(p: Path) -> str:
    """The sha256 of a file's bytes (exports must be byte-identical)."""
    return hashlib.sha256(p.read_bytes()).hexdigest()
