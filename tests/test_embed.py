"""Embed stage: embedders, the text cache, precomputed vectors (good and bad), --model PATH, kill -9 resume.

The real MiniLM is loaded only by the slow-marked test; the others use TF-IDF or a tiny randomly initialised
sentence-transformers model built here (same code path as MiniLM, 1 layer, 32 dims).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate_core import CurateError, Workspace, embed
from curate_core.embed import MiniLM, TfidfSVD, read_precomputed
from tests.conftest import REPO, write_csv

TEXTS = ["my card was charged twice", "book a flight to paris", "will it rain tomorrow", "refund my payment",
         "hotel near the airport", "snow in the mountains", "card declined at the shop", "train tickets to rome"]


def frame(n: int, **cols) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(n)],
                         "label": [f"l{i % 3}" for i in range(n)], **cols})


def vectors(ws: Workspace) -> np.ndarray:
    return embed.embeddings(ws.store)[1]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 1-layer, 32-dim sentence-transformers model (random weights, seeded) with MiniLM's tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny") / "tiny-st"
    tok = BertTokenizerFast.from_pretrained(str(MiniLM()._path()))
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=128))
    raw = out.parent / "raw"
    bert.save_pretrained(raw)
    tok.save_pretrained(raw)
    tr = models.Transformer(str(raw), max_seq_length=64)
    SentenceTransformer(modules=[tr, models.Pooling(32, "mean"), models.Normalize()], device="cpu").save(str(out))
    return out


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate_core", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, **kw)


# ------------------------------------------------------------------------------------------- embedders
def test_tfidf_vectors_are_normalised_and_deterministic():
    a = TfidfSVD(dim=4).fit(TEXTS).encode(TEXTS)
    b = TfidfSVD(dim=4).fit(TEXTS).encode(TEXTS)
    assert a.shape == (8, 4) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError):
        TfidfSVD().encode(TEXTS)


def test_embed_stage_tfidf_caches_distinct_texts(ws, tmp_path):
    df = frame(12)
    df.loc[5, "text"] = df.loc[0, "text"]  # a repeated text is embedded once and shares its vector
    ws.ingest(write_csv(tmp_path / "a.csv", df))
    res = ws.run(["embed"], params={"embed": {"embedder": "tfidf", "dim": 6, "shard_size": 4}})
    s = res[-1]["summary"]
    assert s["rows"] == 12 and s["embedded_texts"] == 11 and s["dim"] == 6
    v = vectors(ws)
    np.testing.assert_array_equal(v[5], v[0])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    assert not (ws.store.checkpoint_dir / "embed").exists() or not any((ws.store.checkpoint_dir / "embed").rglob("*.parquet"))


def test_model_path_second_source_is_served_from_cache(tiny_model, tmp_path):
    """`--model PATH` loads a local model; texts embedded before (another source) are not embedded again."""
    w = tmp_path / "w"
    write_csv(tmp_path / "a.csv", frame(10))
    assert cli("ingest", str(tmp_path / "a.csv"), "--workspace", str(w)).returncode == 0
    r = cli("run", "--workspace", str(w), "--stages", "embed", "--model", str(tiny_model), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)[-1]["summary"]
    assert s["dim"] == 32 and s["embedded_texts"] == 10 and s["model_key"].startswith("st:tiny-st:")
    # the same texts again, under other ids: only the cache is used
    b = frame(10)
    b["id"] = [f"b{i}" for i in range(10)]
    write_csv(tmp_path / "b.csv", b)
    assert cli("ingest", str(tmp_path / "b.csv"), "--workspace", str(w)).returncode == 0
    r = cli("run", "--workspace", str(w), "--stages", "embed", "--json")  # --model is sticky
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)[-1]["summary"]
    assert s["rows"] == 20 and s["embedded_texts"] == 0 and s["cached_texts"] == 20
    with Workspace(w) as ws:
        v = vectors(ws)
    np.testing.assert_array_equal(v[:10], v[10:])
    # a missing model folder is a clear error, exit 2
    r = cli("run", "--workspace", str(w), "--stages", "embed", "--model", str(tmp_path / "nope"))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_switching_back_to_earlier_parameters_recomputes(ws, tmp_path):
    """Runs A, B, then A again: A's finished run must not be 'reused' while B's vectors are in the table."""
    ws.ingest(write_csv(tmp_path / "a.csv", frame(10)))
    for dim in (3, 5, 3):
        ws.run(["embed"], params={"embed": {"embedder": "tfidf", "dim": dim}})
        assert vectors(ws).shape[1] == dim


def test_import_twice_adds_no_duplicate_cache_rows(ws, tmp_path):
    ws.ingest(write_csv(tmp_path / "a.csv", frame(6)))
    part = tmp_path / "p.parquet"
    todo = embed.embed_todo(ws.store, "k").to_pandas()
    v = np.eye(6, 3, dtype=np.float32)
    pq.write_table(pa.table({"text_hash": todo["text_hash"].tolist(),
                             "vec": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), 3)}), part)
    embed.import_embeddings(ws.store, "k", [part])
    embed.import_embeddings(ws.store, "k", [part])  # e.g. parts left behind by a run killed after the import
    assert len(embed.embed_todo(ws.store, "k")) == 0
    assert ws.store.query_df("SELECT count(*) AS n FROM embed_cache WHERE model_key = 'k'")["n"][0] == 6


# ----------------------------------------------------------------------------------------- precomputed
def _ingest_jsonl(ws: Workspace, tmp_path: Path, vecs: list) -> None:
    df = frame(len(vecs))
    path = tmp_path / "v.jsonl"
    with open(path, "w") as f:
        for rec, v in zip(df.to_dict("records"), vecs):
            f.write(json.dumps({**rec, "embedding": v}) + "\n")
    ws.ingest(path)


def test_precomputed_list_column(ws, tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(7, 5)).round(4)
    _ingest_jsonl(ws, tmp_path, vecs.tolist())
    res = ws.run(["embed"], params={"embed": {"embedder": "precomputed"}})
    assert res[-1]["summary"] == {**res[-1]["summary"], "rows": 7, "dim": 5}
    np.testing.assert_allclose(vectors(ws), vecs / np.linalg.norm(vecs, axis=1, keepdims=True), rtol=1e-5)


def test_precomputed_numbered_columns_jsonl_and_parquet(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(6, 4))
    df = frame(6, **{f"emb_{j}": vecs[:, j] for j in range(4)})
    # (CSV is left out: this branch's base infers "0.35" as an integer column; fixed on main by a stricter check)
    df.to_json(tmp_path / "v.jsonl", orient="records", lines=True)
    df.to_parquet(tmp_path / "v.parquet")
    for path in (tmp_path / "v.jsonl", tmp_path / "v.parquet"):
        with Workspace(tmp_path / f"ws-{path.suffix[1:]}") as ws:
            ws.ingest(path)
            ws.run(["embed"], params={"embed": {"embedder": "precomputed"}})
            np.testing.assert_allclose(vectors(ws), vecs / np.linalg.norm(vecs, axis=1, keepdims=True), rtol=1e-5)


@pytest.mark.parametrize("case, vecs, message", [
    ("ragged", [[1, 2, 3], [1, 2], [1, 2, 3]], "different lengths"),
    ("nan", [[1, 2, 3], [1, None, 3], [1, 2, 3]], "NaN, inf or non-numeric"),
    ("missing", [[1, 2, 3], None, [1, 2, 3]], "missing"),
    ("text", [[1, 2, 3], ["a", "b", "c"], [1, 2, 3]], "non-numeric"),
    ("one-dim", [[1], [2], [3]], "at least 2 dimensions"),
    ("zero", [[1, 2], [0, 0], [3, 4]], "all zeros"),
])
def test_precomputed_bad_vectors_are_refused_and_nothing_written(ws, tmp_path, case, vecs, message):
    _ingest_jsonl(ws, tmp_path, vecs)
    with pytest.raises(CurateError) as e:
        read_precomputed(ws.store)
    assert message in e.value.message
    with pytest.raises(CurateError):
        ws.run(["embed"], params={"embed": {"embedder": "precomputed"}})
    assert not ws.store.table_exists("embeddings")
    assert ws.status()["embed"] != "done"


def test_precomputed_batch_without_any_vector_is_reported_as_missing(ws):
    """Vectors are read in batches of 100,000 rows: a last batch in which every vector is missing is 'missing'."""
    import pandas as pd

    n = 100_003
    vecs = [[1.0, float(i)] for i in range(100_000)] + [None] * (n - 100_000)
    ws.ingest(pd.DataFrame({"text": [f"t{i}" for i in range(n)], "embedding": vecs}))
    with pytest.raises(CurateError, match="3 vectors .* are missing"):
        read_precomputed(ws.store)


def test_precomputed_inf_in_numbered_columns(ws, tmp_path):
    df = frame(3, emb_0=["1", "inf", "2"], emb_1=["1", "2", "3"])
    ws.ingest(write_csv(tmp_path / "v.csv", df))
    with pytest.raises(CurateError, match="NaN, inf"):
        read_precomputed(ws.store)


def test_precomputed_without_vectors_lists_columns(ws, tmp_path):
    ws.ingest(write_csv(tmp_path / "a.csv", frame(3)))
    with pytest.raises(CurateError) as e:
        read_precomputed(ws.store)
    assert "no precomputed vectors" in e.value.message.lower() and "`text`" in e.value.hint


# ---------------------------------------------------------------------------------------------- resume
#: every run of the comparison computes on one thread (this process too: the tiny_model fixture sets it), so
#: float results cannot differ by how a matrix product was split between threads
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _parts(w: Path) -> list[Path]:
    return sorted((w / "checkpoints" / "embed").rglob("part-*.parquet"))


def test_kill_9_during_embed_resumes_and_equals_uninterrupted_run(tiny_model, tmp_path):
    """A real subprocess is SIGKILLed mid-run; the rerun resumes from its shards; vectors equal a clean run."""
    data = write_csv(tmp_path / "a.csv", frame(48))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    args = ["--stages", "embed", "--model", str(tiny_model), "--param", "embed.shard_size=6", "--json"]
    for w in (killed, clean):
        with Workspace(w) as ws:
            ws.ingest(data)
    proc = subprocess.Popen([sys.executable, "-m", "curate_core", "run", "--workspace", str(killed), *args], cwd=REPO,
                            env={**os.environ, **ONE_THREAD, "CURATE_DEBUG_BATCH_DELAY": "0.4"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(_parts(killed)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    n_parts = len(_parts(killed))
    assert 3 <= n_parts < 8
    r = cli("run", "--workspace", str(killed), *args, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert "texts from checkpoint" in r.stderr  # the progress line says it resumed
    s = json.loads(r.stdout)[-1]["summary"]
    assert s["embedded_texts"] == 48
    with Workspace(clean) as b:  # the uninterrupted run, in this process
        b.run(["embed"], params={"embed": {"embedder": "minilm", "model": str(tiny_model), "shard_size": 6}})
    with Workspace(killed) as a, Workspace(clean) as b:
        np.testing.assert_array_equal(vectors(a), vectors(b))
        assert a.status()["embed"] == "done"


@pytest.mark.slow
def test_minilm_default_model_semantics(ws, tmp_path):
    """The bundled MiniLM loads offline and puts paraphrases closer than unrelated texts."""
    import torch

    torch.set_num_threads(1)
    pd.DataFrame({"id": ["a", "b", "c"], "text": ["How do I reset my password?", "I forgot my password, help",
                                                  "The weather is sunny today"]}).to_csv(tmp_path / "m.csv", index=False)
    ws.ingest(tmp_path / "m.csv")
    res = ws.run(["embed"])
    assert res[-1]["summary"]["dim"] == 384 and res[-1]["summary"]["model_key"].startswith("st:all-MiniLM-L6-v2:")
    v = vectors(ws)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_model_key_changes_with_the_weights(tiny_model, tmp_path):
    """A fine-tuned copy (same file sizes, other weights) must not hit the cache of the original."""
    import shutil

    copy = tmp_path / "other" / tiny_model.name
    shutil.copytree(tiny_model, copy)
    assert MiniLM(str(copy)).key == MiniLM(str(tiny_model)).key
    weights = next(p for p in copy.rglob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert MiniLM(str(copy)).key != MiniLM(str(tiny_model)).key


def test_a_resumed_embed_keeps_its_shards_when_the_cache_grew_meanwhile(ws, tmp_path):
    """Between a kill and the rerun, vectors of some not-yet-embedded texts reach the cache (an eval file, a
    search query). The rerun must still cut the shards it planned, or texts after them would be skipped."""
    import hashlib

    ws.ingest(write_csv(tmp_path / "a.csv", frame(40)))
    params = {"embed": {"embedder": "tfidf", "dim": 6, "shard_size": 5}}

    def stop_after_two_shards(ev):
        if ev.stage == "embed" and ev.done >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ws.run(["embed"], params=params, progress=stop_after_two_shards)
    run = ws.store.latest_runs()["embed"]
    key = f"tfidf:{run['run_key']}"
    late = ws.samples(["row_id", "text"]).tail(7)["text"].tolist()  # texts the killed run had not reached
    embed.cache_vectors(ws.store, key, [hashlib.md5(t.encode()).hexdigest() for t in late],
                        np.eye(len(late), 6, dtype=np.float32))
    res = ws.run(["embed"], params=params)
    assert res[-1]["summary"]["rows"] == 40 and len(vectors(ws)) == 40  # every row has its vector


def test_long_texts_are_embedded_as_the_mean_of_their_windows(tiny_model):
    """Past the model's window (the tiny model: 64 tokens with [CLS]/[SEP]), a text is the normalised mean of its
    first max_windows windows; a text that fits keeps the plain vector; max_windows=1 is the old truncation."""
    from curate_core.embedders import normalise

    m = MiniLM(str(tiny_model))
    model = m.load()
    short, long = "refund my card please", " ".join(f"payment {i} failed at the shop" for i in range(60))
    ids = model.tokenizer(long, add_special_tokens=False)["input_ids"]
    vecs, windows = m.encode_windows([short, long])
    assert windows.tolist() == [1, -(-len(ids) // 62)] and windows[1] > 2
    plain = model.encode([short, long], normalize_embeddings=True)
    np.testing.assert_allclose(vecs[0], plain[0], atol=1e-5)
    for cap in (8, 2):
        pieces = [model.tokenizer.decode(ids[w * 62:(w + 1) * 62]) for w in range(min(cap, int(windows[1])))]
        want = normalise(model.encode(pieces, normalize_embeddings=True).mean(0, keepdims=True))[0]
        np.testing.assert_allclose(MiniLM(str(tiny_model), max_windows=cap).encode([long])[0], want, atol=1e-5)
    assert not np.allclose(vecs[1], plain[1], atol=1e-3)  # the rest of the text counts
    truncated = MiniLM(str(tiny_model), max_windows=1)
    np.testing.assert_allclose(truncated.encode([long])[0], plain[1], atol=1e-5)
    assert m.key == truncated.key + ":w8" and m.window_tokens == 64
    with pytest.raises(CurateError, match="max_windows"):
        MiniLM(str(tiny_model), max_windows=0)


def test_the_embed_summary_counts_texts_longer_than_the_window(tiny_model, ws, tmp_path):
    long = " ".join(f"payment {i} failed at the shop" for i in range(60))
    pd.DataFrame({"id": ["a", "b", "c"], "text": ["short one", long, long + " again"]}).to_csv(tmp_path / "l.csv",
                                                                                             index=False)
    ws.ingest(tmp_path / "l.csv")
    res = ws.run(["embed"], params={"embed": {"model": str(tiny_model), "max_windows": 2}})
    s = res[-1]["summary"]
    assert (s["long_texts"], s["beyond_max"], s["max_windows"], s["window_tokens"]) == (2, 2, 2, 64)
    assert ws.info()["long_texts"] == {"long_texts": 2, "beyond_max": 2, "max_windows": 2, "window_tokens": 64}


def test_the_overview_says_how_many_texts_exceed_the_window(tiny_model, ws, tmp_path, app_env):
    from .conftest import app_test

    long = " ".join(f"payment {i} failed at the shop" for i in range(60))
    pd.DataFrame({"id": ["a", "b"], "text": ["short one", long]}).to_csv(tmp_path / "l.csv", index=False)
    ws.ingest(tmp_path / "l.csv")
    ws.run(["embed"], params={"embed": {"model": str(tiny_model)}})
    app_env(ws.path)
    at = app_test("app.py").run()
    assert not at.exception, at.exception
    note = next(c.value for c in at.caption if "longer than the embedding model" in c.value)
    assert note.startswith(":material/notes: 1 text is longer") and "(64 tokens)" in note and "up to 8" in note


# ------------------------------------------------------------------------------- engine-independent vectors
class _ThreadSpy:
    """An embedder like MiniLM on the CPU that records torch's thread count while it encodes."""

    name, from_data, torch_model, device = "spy", False, True, "cpu"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def encode(self, texts):
        import torch

        self.seen.append(torch.get_num_threads())
        return np.ones((len(texts), 4), np.float32)


def test_a_cpu_model_encodes_on_one_torch_thread_whatever_its_worker_was_given():
    """MiniLM's float32 sums depend on torch's thread count (1 vs 2 threads moved 16 of 2,000 BANKING77 vectors
    by 1.5e-7 here, and a Ray actor of 1 CPU then disagreed with the local engine): every batch is encoded on one
    thread, and the caller's own setting is left as it was."""
    import torch

    spy, before = _ThreadSpy(), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fn = embed.EncodeTexts(spy)
        assert fn.per_core
        fn(pa.table({"text_hash": ["a", "b"], "text": ["x", "y"]}))
        assert spy.seen == [1]
        assert torch.get_num_threads() == 2
        spy.device = "cuda"  # on a GPU the CPU threads do not change the numbers: nothing is forced
        assert not embed.EncodeTexts(spy).per_core
    finally:
        torch.set_num_threads(before)


class _Barrier:
    """A per_core batch function whose calls wait for each other: it only finishes if two copies run at once."""

    per_core = True
    setups = 0

    def __init__(self, barrier) -> None:
        self.barrier = barrier

    def __reduce__(self):  # the executor's copies share the test's barrier (a threading object does not pickle)
        return (_Barrier._shared, ())

    @staticmethod
    def _shared():
        return _Barrier(_Barrier.current)

    def setup(self) -> None:
        _Barrier.setups += 1

    def __call__(self, batch: pa.Table) -> pa.Table:
        self.barrier.wait(timeout=20)
        return pa.table({"x": pa.array(batch.column("x").to_numpy() * 2)})


def test_the_local_engine_runs_a_per_core_batch_function_one_copy_per_core(tmp_path, monkeypatch):
    import threading

    from curate_core import execution
    from curate_core.execution import Checkpoint, LocalExecutor, Tracker, snapshot_table

    monkeypatch.setattr(execution, "cores", lambda: 2)
    _Barrier.current, _Barrier.setups = threading.Barrier(2), 0
    ck = Checkpoint(tmp_path / "ck")
    batches = snapshot_table(ck, pa.table({"x": np.arange(40)}), 10, key=None)
    seen: list[int] = []
    parts = LocalExecutor(device="cpu").map_batches(_Barrier(_Barrier.current), batches, ck,
                                                    Tracker(lambda done, *a, **k: seen.append(done), 40))
    assert _Barrier.setups == 2  # each copy loaded its own model
    got = np.concatenate([ck.read(p).column("x").to_numpy() for p in parts])
    assert got.tolist() == (np.arange(40) * 2).tolist()  # parts named by position, whatever order they finished in
    assert seen[-1] == 40
