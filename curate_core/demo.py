"""The bundled demo: BANKING77 train with 10 % seeded label flips (true label kept), and seeded noise for benches.

The demo ships the vectors of its texts (``DEMO_VECTORS``, made by the default model and keyed by its model key),
so a new user does not spend a minute or more embedding them: ``build_demo`` puts them in the workspace's
embedding cache, and the embed stage finds every text done. A different model (or model version) has another
key, and the demo is embedded as usual.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CurateError
from .pipeline import ProgressFn
from .store import Store

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets" / "demo"
DEMO_WORKSPACE = REPO / "workspaces" / "demo"  # where `demo` builds it, and where the app looks first
DEMO_CLEAN = ASSETS / "banking77_train.csv"
DEMO_TEST = ASSETS / "banking77_test.csv"
DEMO_NOISY = ASSETS / "banking77_train_noisy10.csv"
DEMO_VECTORS = ASSETS / "banking77_minilm_vectors.parquet"
DEMO_RATE, DEMO_SEED = 0.10, 7
MODEL_KEY_META = b"curate.model_key"  # in DEMO_VECTORS' Parquet metadata: the model key its vectors belong to
RUN_ON_OPEN = "run_on_open"  # workspace meta: "1" = the app starts the pipeline when it opens the workspace


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


def default_model_key() -> str:
    """The model key of the embed stage's default embedder (what the shipped vectors must match)."""
    from . import embed  # noqa: F401 - registers the stage
    from .embedders import make_embedder
    from .stage import registered

    return make_embedder(dict(registered()["embed"].defaults)).key


def import_demo_vectors(store: Store) -> int:
    """Put the shipped vectors of the demo texts into the embedding cache when they belong to the model the
    embed stage will use (same model key); returns how many texts now have a vector (0 when the key differs)."""
    import pyarrow.parquet as pq

    from .embed import import_embeddings

    if not DEMO_VECTORS.exists():
        return 0
    meta = pq.read_schema(DEMO_VECTORS).metadata or {}
    key = meta.get(MODEL_KEY_META, b"").decode()
    if not key or key != default_model_key():
        return 0
    n, _ = import_embeddings(store, key, [str(DEMO_VECTORS)])
    return n


def write_demo_vectors(path: str | Path) -> Path:
    """For maintainers, when the default model changes: write ``DEMO_VECTORS`` from the embedding cache of a
    demo workspace built with that model (``python -m curate_core demo --workspace DIR``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .workspace import Workspace

    key = default_model_key()
    with Workspace(path) as ws, ws.store.cursor() as cur:
        t = cur.sql("""SELECT c.text_hash, c.vec, c.windows FROM embed_cache c
                       WHERE c.model_key = ? AND c.text_hash IN (SELECT md5(text) FROM samples)
                       ORDER BY c.text_hash""", params=[key]).to_arrow_table()
    if t.num_rows == 0:
        raise CurateError(f"No vectors of model {key} in {path}", "build the demo there first")
    vec = t.column("vec").combine_chunks()
    dim = len(vec[0])
    t = t.set_column(1, "vec", pa.FixedSizeListArray.from_arrays(vec.flatten(), dim))
    t = t.replace_schema_metadata({MODEL_KEY_META: key.encode()})
    # float vectors barely compress; split bytes + zstd keep the file at ~13 MB for 10k × 384
    pq.write_table(t, DEMO_VECTORS, compression="zstd", compression_level=19, use_dictionary=False,
                   use_byte_stream_split=["vec.list.element"])
    return DEMO_VECTORS


def build_demo(path: str | Path, stages: list[str] | None = None, progress: ProgressFn | None = None,
               quick: bool = False) -> Path:
    """Create the demo workspace at *path* if it has no rows (with the shipped vectors of its texts), then run
    the pipeline (finished stages are reused). *quick*: run nothing yet, and mark the workspace so the app
    starts the pipeline in the background when it opens it (the pages fill in as stages finish)."""
    from .workspace import Workspace

    with Workspace(path) as ws:
        if ws.store.count() == 0:
            ws.ingest(DEMO_NOISY, source_name="banking77")
        if not ws.store.table_exists("embeddings"):
            import_demo_vectors(ws.store)
        if quick:
            if any(v != "done" for v in ws.status().values()):
                ws.store.set_meta(RUN_ON_OPEN, "1")
        else:
            ws.run(stages, progress=progress)
        return ws.path
