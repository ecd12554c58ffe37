"""The bundled demo: BANKING77 train with 10 % seeded label flips (true label kept), and seeded noise for benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .pipeline import ProgressFn

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets" / "demo"
DEMO_WORKSPACE = REPO / "workspaces" / "demo"  # where `demo` builds it, and where the app looks first
DEMO_CLEAN = ASSETS / "banking77_train.csv"
DEMO_TEST = ASSETS / "banking77_test.csv"
DEMO_NOISY = ASSETS / "banking77_train_noisy10.csv"
DEMO_RATE, DEMO_SEED = 0.10, 7


def make_noisy(df: pd.DataFrame, rate: float, seed: int, label: str = "label") -> pd.DataFrame:
    """Flip ``rate`` of the labels uniformly to another class; the true label goes to ``true_label``.

    Which rows flip and to what is fixed by *seed* (numpy PCG64), so the same call gives the same file.
    """
    rng = np.random.default_rng(seed)
    out = df.copy()
    out["true_label"] = out[label]
    classes = np.array(sorted(out[label].astype(str).unique()))
    n_flip = int(round(rate * len(out)))
    rows = rng.choice(len(out), size=n_flip, replace=False)
    idx = {c: i for i, c in enumerate(classes)}
    cur = out[label].astype(str).map(idx).to_numpy()[rows]
    # a uniform draw among the other C-1 classes: shift by 1..C-1
    new = (cur + rng.integers(1, len(classes), size=n_flip)) % len(classes)
    col = out[label].astype(str).to_numpy().copy()
    col[rows] = classes[new]
    out[label] = col
    return out


def write_demo_file() -> Path:
    """(Re)write the noisy demo CSV from the clean one (deterministic)."""
    df = pd.read_csv(DEMO_CLEAN, dtype=str, keep_default_na=False)
    make_noisy(df, DEMO_RATE, DEMO_SEED).to_csv(DEMO_NOISY, index=False, lineterminator="\n")
    return DEMO_NOISY


def build_demo(path: str | Path, stages: list[str] | None = None, progress: ProgressFn | None = None) -> Path:
    """Create the demo workspace at *path* if it has no rows, then run the pipeline (finished stages are reused)."""
    from .workspace import Workspace

    with Workspace(path) as ws:
        if ws.store.count() == 0:
            ws.ingest(DEMO_NOISY, source_name="banking77")
        ws.run(stages, progress=progress)
        return ws.path
