"""The `embed` stage and the embedding cache.

The stage embeds each *distinct* text once with the embedder its parameters name (:mod:`curate_core.embedders`)
and keeps vectors in ``embed_cache`` keyed by (model key, md5 of the text), where the model key names the model
and its version: texts embedded before — re-ingested, or repeated in another source — are not embedded again.
The texts still to embed (longest first, so a batch pads little) are snapshot in shards; the executor encodes
each shard (an embedder that learns from the corpus is fit once first), writing one checkpoint part per shard,
so a killed run resumes from the last one. Vectors are L2-normalised float32, stored as ``FLOAT[d]`` in
``embeddings(row_id, vec)``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .columns import Table
from .embedders import (Embedder, MiniLM, Precomputed, TfidfSVD, make_embedder, names,  # noqa: F401 - the API
                        precomputed_columns, read_precomputed)
from .errors import CurateError
from .execution import snapshot_table
from .resources import resource
from .stage import Option, StageContext, stage
from .store import Store, parquet_relation

EMBEDDERS = names()


# --------------------------------------------------------------------------------------------- the cache
def _ensure_cache(cur) -> None:
    """``embed_cache(model_key, text_hash, vec, windows)``: *windows* = how many model windows the text needs
    (NULL for embedders without windows, and for vectors cached before windows were counted)."""
    cur.execute("CREATE TABLE IF NOT EXISTS embed_cache (model_key VARCHAR, text_hash VARCHAR, vec FLOAT[], "
                "windows SMALLINT)")
    cur.execute("ALTER TABLE embed_cache ADD COLUMN IF NOT EXISTS windows SMALLINT")


def embed_todo(store: Store, model_key: str) -> pa.Table:
    """(text_hash, row_id, text) of each distinct text with no cached vector for *model_key*, longest first
    (ties by row_id): shards then hold texts of similar length, so batches pad little, and the order is
    deterministic, which lets a resumed run line up with its checkpoint parts."""
    with store.cursor() as cur:
        _ensure_cache(cur)
        return cur.sql(
            """SELECT h AS text_hash, r AS row_id, t AS text FROM (
                   SELECT md5(text) AS h, min(row_id) AS r, arg_min(text, row_id) AS t, max(length(text)) AS n
                   FROM samples GROUP BY h) t
               WHERE NOT EXISTS (SELECT 1 FROM embed_cache c WHERE c.model_key = ? AND c.text_hash = t.h)
               ORDER BY n DESC, r""", params=[model_key]).to_arrow_table()


def import_embeddings(store: Store, model_key: str, parts: Sequence[Path | str] | Any) -> tuple[int, int]:
    """Add checkpoint parts to the cache and rebuild ``embeddings(row_id, vec FLOAT[d])``; one transaction."""
    with store.transaction() as cur:
        _ensure_cache(cur)
        if not isinstance(parts, (list, tuple)) or parts:
            with parquet_relation(cur, parts) as (rel, params):
                have = {d[0] for d in cur.execute(f"SELECT * FROM {rel} LIMIT 0", params).description}
                windows = "CAST(p.windows AS SMALLINT)" if "windows" in have else "NULL"  # parts of older runs
                # anti-join: parts left by a run killed after this transaction committed are not added twice
                cur.execute(f"""INSERT INTO embed_cache (model_key, text_hash, vec, windows)
                                SELECT DISTINCT ON (p.text_hash) ?, p.text_hash, CAST(p.vec AS FLOAT[]), {windows}
                                FROM {rel} p
                                WHERE NOT EXISTS (SELECT 1 FROM embed_cache c
                                                  WHERE c.model_key = ? AND c.text_hash = p.text_hash)""",
                            [model_key, *params, model_key])
        row = cur.execute("SELECT len(vec) FROM embed_cache WHERE model_key = ? LIMIT 1", [model_key]).fetchall()
        if not row:
            raise CurateError("No vectors were produced", "is the workspace empty?")
        dim = int(row[0][0])
        cur.execute(
            f"""CREATE OR REPLACE TABLE embeddings AS
                SELECT s.row_id, CAST(c.vec AS FLOAT[{dim}]) AS vec
                FROM samples s JOIN (SELECT DISTINCT ON (text_hash) text_hash, vec FROM embed_cache
                                     WHERE model_key = ?) c ON c.text_hash = md5(s.text)
                ORDER BY s.row_id""", [model_key])
        n = cur.execute("SELECT count(*) FROM embeddings").fetchall()[0][0]
    return int(n), dim


def cached_vectors(store: Store, model_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
    """Vectors in ``embed_cache`` for (model key, md5 of text)."""
    with store.cursor() as cur:
        _ensure_cache(cur)
        cur.register("_h", pa.table({"text_hash": pa.array(list(hashes), pa.string())}))
        try:
            t = cur.sql("""SELECT DISTINCT ON (c.text_hash) c.text_hash, c.vec FROM embed_cache c
                           SEMI JOIN _h USING (text_hash) WHERE c.model_key = ?""",
                        params=[model_key]).to_arrow_table()
        finally:
            cur.unregister("_h")
    vec = t.column("vec").to_pylist()
    return {h: np.asarray(v, dtype=np.float32) for h, v in zip(t.column("text_hash").to_pylist(), vec)}


def cache_vectors(store: Store, model_key: str, hashes: Sequence[str], vecs: np.ndarray) -> None:
    """Add vectors of texts outside the workspace (e.g. an eval file) to ``embed_cache``."""
    vecs = np.asarray(vecs, dtype=np.float32)
    data = pa.table({"text_hash": pa.array(list(hashes), pa.string()),
                     "vec": pa.array(list(vecs), pa.list_(pa.float32()))})
    with store.transaction() as cur:
        _ensure_cache(cur)
        cur.register("_v", data)
        try:
            cur.execute("INSERT INTO embed_cache (model_key, text_hash, vec) SELECT ?, text_hash, vec FROM _v",
                        [model_key])
        finally:
            cur.unregister("_v")


def embeddings(store: Store) -> tuple[np.ndarray, np.ndarray]:
    """(row_ids, float32 matrix N×d) in row_id order; CurateError if the embed stage has not run."""
    if not store.table_exists("embeddings"):
        raise CurateError("No embeddings in this workspace yet",
                          f"run the embed stage: python -m curate_core run --workspace {store.path} --stages embed")
    t = store.read_table("embeddings", ["row_id", "vec"], arrow=True)
    return t.column("row_id").to_numpy(), fixed_list(t.column("vec"))


def fixed_list(col: pa.ChunkedArray) -> np.ndarray:
    """A ``FLOAT[d]`` column as an N×d float32 matrix (no copy per row)."""
    arr = col.combine_chunks()
    width = arr.type.list_size
    return np.asarray(arr.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, width)


@resource("embeddings", stage="embed")
def _load_embeddings(store: Store) -> np.ndarray:
    """Embeddings of every row, in row_id order (refuses stale ones: rows added since the embed run)."""
    ids, vecs = embeddings(store)
    if len(ids) != store.count():
        raise CurateError(f"Embeddings cover {len(ids):,} of {store.count():,} rows (data was added since)",
                          f"run the embed stage again: python -m curate_core run --workspace {store.path} --stages embed")
    return vecs


def workspace_embedder(store: Store) -> Embedder:
    """The embedder the workspace's embeddings came from, ready to embed other texts the same way (an eval
    file, a search query): built from the last finished embed run, refit on the same corpus if it learns one."""
    run = store.latest_runs(statuses=("done",)).get("embed")
    if run is None:
        raise CurateError("The workspace has no finished embed run",
                          f"run it first: python -m curate_core run --workspace {store.path} --stages embed")
    params = run["params"] if isinstance(run["params"], dict) else json.loads(run["params"])
    emb = make_embedder(params, corpus_key=run["run_key"])
    if emb.from_data:
        emb.encode([])  # says why vectors of new texts cannot be made
    if hasattr(emb, "fit"):  # the stage's fit is deterministic: the same corpus gives the same model
        emb.fit(store.sample_frame(["text"])["text"].tolist())
    return emb


def embed_texts(store: Store, texts: list[str]) -> np.ndarray:
    """Vectors of *texts* from the workspace's own embedder, through (and into) ``embed_cache``."""
    emb = workspace_embedder(store)
    hashes = [hashlib.md5(t.encode("utf-8")).hexdigest() for t in texts]
    cached = cached_vectors(store, emb.key, sorted(set(hashes)))
    todo = sorted({h: t for h, t in zip(hashes, texts) if h not in cached}.items())
    if todo:
        vecs = emb.encode([t for _, t in todo])
        cache_vectors(store, emb.key, [h for h, _ in todo], vecs)
        cached.update({h: v for (h, _), v in zip(todo, vecs)})
    return np.stack([cached[h] for h in hashes]).astype(np.float32) if hashes else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------------------------------------- stage
PLAN = "input/plan.parquet"


def _planned_todo(store: Store, ck, model_key: str) -> pa.Table:
    """The texts to embed, in shard order: planned once per run and kept in its checkpoint, so a resumed run
    cuts the same shards even if the cache gained vectors meanwhile (an eval file or a query embedded between
    the kill and the rerun would otherwise shift every shard after it)."""
    if not ck.has(PLAN):
        todo = embed_todo(store, model_key)
        ck.write(PLAN, todo.select(["text_hash", "row_id"]))
        return todo
    plan = ck.read(PLAN)
    texts = store.sample_frame(["row_id", "text"], row_ids=plan.column("row_id").to_numpy())
    by_row = dict(zip(texts["row_id"].tolist(), texts["text"].tolist()))
    return plan.append_column("text", pa.array([by_row[r] for r in plan.column("row_id").to_pylist()], pa.string()))


def vec_array(v: np.ndarray) -> pa.FixedSizeListArray:
    v = np.ascontiguousarray(v, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])


class EncodeTexts:
    """Batch function: (text_hash, text) → (text_hash, vec). The embedder travels without its weights and
    loads them in :meth:`setup`, once per worker.

    A torch model on the CPU computes each batch on one thread, whatever the engine gave its worker: MiniLM's
    float32 sums depend on the thread count (1 vs 2 threads moved 16 of 2,000 BANKING77 vectors by up to 1.5e-7
    on a 2-core machine, and every score downstream with them), and the vectors must not depend on the engine.
    ``per_core`` then lets the local engine run one copy per core at once, as Ray runs one actor per CPU."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    @property
    def per_core(self) -> bool:
        return bool(getattr(self.embedder, "torch_model", False)) and getattr(self.embedder, "device", "cpu") == "cpu"

    def setup(self) -> None:
        getattr(self.embedder, "setup", lambda: None)()

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self.per_core:
            return encode_batch(self.embedder, batch)
        import torch

        threads = torch.get_num_threads()  # OpenMP: this thread's own setting, not another worker's
        torch.set_num_threads(1)
        try:
            return encode_batch(self.embedder, batch)
        finally:
            torch.set_num_threads(threads)


def encode_batch(embedder: Embedder, batch: pa.Table) -> pa.Table:
    """(text_hash, vec, windows): *windows* from an embedder that cuts long texts (``encode_windows``), else NULL."""
    texts = batch.column("text").to_pylist()
    if hasattr(embedder, "encode_windows"):
        vecs, windows = embedder.encode_windows(texts)
        win = pa.array(np.minimum(windows, np.iinfo(np.int16).max).astype(np.int16))  # a count, clipped to SMALLINT
    else:
        vecs, win = embedder.encode(texts), pa.nulls(len(texts), pa.int16())
    return pa.table({"text_hash": batch.column("text_hash"), "vec": vec_array(vecs), "windows": win})


def long_texts(store: Store, model_key: str, max_windows: int) -> dict:
    """How many workspace rows need more than one model window (``long_texts``: embedded as the mean of their
    windows) and more than *max_windows* of them (``beyond_max``: only their first windows count), read from the
    cache's window counts."""
    with store.cursor() as cur:
        _ensure_cache(cur)
        row = cur.execute("""SELECT count(*) FILTER (WHERE c.windows > 1), count(*) FILTER (WHERE c.windows > ?)
                             FROM samples s JOIN (SELECT DISTINCT ON (text_hash) text_hash, windows FROM embed_cache
                                                  WHERE model_key = ?) c ON c.text_hash = md5(s.text)""",
                          [int(max_windows), model_key]).fetchall()[0]
    return {"long_texts": int(row[0] or 0), "beyond_max": int(row[1] or 0)}


def _params_from_options(values: dict) -> dict:
    """`run --embedder/--model` → embed parameters (``--model`` means the minilm embedder with that folder)."""
    out: dict = {}
    embedder, model = values.get("embedder"), values.get("model")
    if embedder:
        out["embedder"] = embedder
    if model:
        if embedder not in (None, "minilm"):
            raise CurateError(f"--model is for the minilm embedder, not {embedder!r}",
                              "drop --model, or use --embedder minilm")
        # absolute, so the run key and the sticky parameter do not depend on the current folder
        out.update(embedder="minilm", model=str(Path(model).expanduser().resolve()))
    return out


OPTIONS = (
    Option("--embedder", "embedder for the embed stage (default: minilm)", choices=EMBEDDERS),
    Option("--model", "local sentence-transformers model folder (implies --embedder minilm)"),
)


def check_params(params: dict) -> None:
    """The embed stage's sizes, refused before any stage starts and whatever the embedder: TF-IDF ignored
    ``batch_size=0``, recomputed with it (exit 0) and kept it as the sticky parameter for the next model."""
    for key, hint in (("batch_size", "e.g. --param embed.batch_size=64"),
                      ("shard_size", "e.g. --param embed.shard_size=1024 (texts per checkpoint part)"),
                      ("max_windows", "1 embeds the first window of each text only (truncation)")):
        v = params.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CurateError(f"embed.{key} must be a whole number of at least 1; got {v!r}", hint)


@stage("embed", version="1", title="Embeddings",
       outputs=(Table("embeddings", features=False), Table("embed_cache", features=False)),
       defaults={"embedder": "minilm", "model": None, "batch_size": 64, "shard_size": 1024, "dim": None,
                 "column": None, "seed": 0, "max_windows": 8}, options=OPTIONS, apply_options=_params_from_options,
       check=check_params)
def run_embed(ctx: StageContext) -> dict:
    store, params = ctx.store, ctx.params
    emb = make_embedder(params, corpus_key=ctx.run_key)
    if hasattr(emb, "device"):  # a model that can use a GPU: where the executor says (run --device)
        emb.device = getattr(ctx.executor, "device", "cpu")
    if emb.from_data:
        row_ids, vecs = emb.vectors(store)
        ctx.progress(len(row_ids), len(row_ids))
        store.replace_table("embeddings", pa.table({"row_id": row_ids, "vec": vec_array(vecs)}))
        return {"embedder": emb.name, "rows": int(len(row_ids)), "dim": int(vecs.shape[1])}

    model_key = emb.key
    ck = ctx.checkpoint
    todo = _planned_todo(store, ck, model_key)
    total = todo.num_rows
    batches = snapshot_table(ck, todo.select(["text_hash", "text"]), int(params["shard_size"]), key=None)
    tracker = ctx.tracker(total, unit="texts")
    if total == 0:
        names_: list[str] = []
        ctx.progress(1, 1, "all texts were embedded before (cache)")
    elif hasattr(emb, "fit"):  # learns from the corpus: fit once (kept in the checkpoint), then encode the shards
        def fit() -> tuple[Any, None]:
            return emb.fit(store.sample_frame(["text"])["text"].tolist()), None

        _, names_ = ctx.executor.fit_sample_then_map(fit, encode_batch, batches, ck, tracker)
    else:
        names_ = ctx.executor.map_batches(EncodeTexts(emb), batches, ck, tracker)
    ck.mark_complete()
    n, dim = import_embeddings(store, model_key, ck.parts([p for p in names_ if p.startswith("part-")]).source())
    out = {"embedder": emb.name, "model_key": model_key, "rows": n, "dim": dim,
           "embedded_texts": total, "cached_texts": n - total if n >= total else 0}
    if hasattr(emb, "encode_windows"):
        out.update(long_texts(store, model_key, emb.max_windows), max_windows=emb.max_windows,
                   window_tokens=emb.window_tokens)
    return out
