"""Tiny seeded data for the duplicates/outliers tests: texts with planted repeats and vectors with planted
near-duplicates, ingested with the `precomputed` embedder so no model runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from curate_core import Workspace

REPO = Path(__file__).resolve().parent.parent
# the shared data sets (read-only); the worktree layout puts them two levels up, the main checkout one
DATA_DIRS = [REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data", Path("/work/shared/data")]
DATA = next((d for d in DATA_DIRS if d.exists()), DATA_DIRS[0])

DIM = 16


def frame(n_base: int = 40, seed: int = 0) -> pd.DataFrame:
    """56 rows: 40 base rows in 4 topics (vectors = topic centre + noise); rows 40–49 are near-duplicate vectors of
    rows 0–9 with other texts; row 50 is a far-away outlier; rows 51–55 are exact repeats after normalisation
    (51 ≈ 0 by case/punctuation, 52 = 1 with spaces and a *conflicting label*, 53–55 one text with 3 URLs)."""
    rng = np.random.default_rng(seed)
    topics = ["billing", "travel", "weather", "music"]
    centres = rng.normal(size=(4, DIM))
    texts = [f"{topics[i % 4]} question number {i} about item {rng.integers(1000)}" for i in range(n_base)]
    labels = [topics[i % 4] for i in range(n_base)]
    vecs = [centres[i % 4] + 0.35 * rng.normal(size=DIM) for i in range(n_base)]
    for j in range(10):
        texts.append(f"paraphrase {j} of something else")
        labels.append(labels[j])
        vecs.append(vecs[j] + 0.005 * rng.normal(size=DIM))
    texts.append("ZZZ completely different")
    labels.append("music")
    vecs.append(rng.normal(size=DIM) * 3)
    repeats = [  # (text, label, row whose vector it copies or None)
        (texts[0].replace("billing question", "Billing QUESTION") + "!!", labels[0], 0),
        ("  " + texts[1] + "  ", "billing", 1),
        ("see http://a.co/x now", "travel", None),
        ("see https://b.co/y now", "travel", None),
        ("SEE www.c.org now.", "travel", None),
    ]
    url_vec = centres[1] + 0.35 * rng.normal(size=DIM)
    for t, lab, src in repeats:
        texts.append(t)
        labels.append(lab)
        vecs.append((vecs[src] if src is not None else url_vec) + 0.001 * rng.normal(size=DIM))
    df = pd.DataFrame({"id": [f"r{i:03d}" for i in range(len(texts))], "text": texts, "label": labels})
    m = np.asarray(vecs)
    for d in range(DIM):
        df[f"emb_{d}"] = m[:, d]
    return df


def workspace(path: Path, run: bool = True, **kw) -> Workspace:
    ws = Workspace(path)
    ws.ingest(frame(**kw), label="label", id="id")
    if run:
        ws.run(["scores"], params={"embed": {"embedder": "precomputed"}})
    return ws
