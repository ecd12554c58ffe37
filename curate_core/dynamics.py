"""Probe training on frozen embeddings: out-of-fold probabilities and training dynamics (or imported ones).

Label-noise scores need two things from a classifier (see DESIGN.md, science):

* **Out-of-fold predicted probabilities** (confident learning / cleanlab): K stratified folds; each row's
  probabilities come from the probe trained on the other K−1 folds, so a row never grades its own label.
* **Training dynamics** (AUM, data maps, EL2N, forgetting): the logits of every training row *while it is
  trained on*, epoch by epoch. They come from ``threshold_runs`` runs on all labelled rows; in each run a
  different random ~N/(C+1) rows (at most 10 %, see MAX_THRESHOLD_FRAC) are moved to a fake extra class (Pleiss
  et al. 2020, "threshold samples").
  The threshold samples' AUM gives the cutoff below which a row is likely mislabelled; every row keeps its
  own label in at least one run, and its dynamics scores average the runs in which it did.

The probe is a softmax regression (``model="linear"``) or a one-hidden-layer MLP (``"mlp"``) in torch on the
CPU, seeded (identical results for identical inputs with one thread), full-batch by default (``batch_size=0``)
or mini-batch. Features are scaled so the mean squared entry is 1 (unit-norm embeddings × √d), which lets one
learning rate and one L2 strength work across embedders.

What is stored: per-epoch logits are E×N×C, too big to keep (77 classes × 60 epochs × 100k rows = 1.8 GB), and
every dynamics score needs only three numbers per row and epoch, computed by :func:`logit_stats`: the margin
(assigned-class logit − largest other logit), the probability of the assigned class and the sum of squared
probabilities. These go to DuckDB (``probe_epochs``, ``FLOAT[E]`` arrays per row and run, C/3 times smaller),
the out-of-fold probabilities to ``probe_probs``. Keeping them in the workspace database (not loose files)
means they are replaced in the same transaction as the run is recorded, travel with the workspace and never
go stale silently.

Imported predictions from the user's own model: ``probs_file`` (N×C pred_probs) and/or ``logits_file``
(E×N×C per-epoch logits), as ``.npy`` / ``.npz`` (rows in workspace order, or matched through ``ids_file``) or
Parquet / CSV (an ``id`` column, an ``epoch`` column for logits, one column per class named like the labels).
See :func:`load_probs_file` and :func:`load_logits_file`.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from .errors import CurateError, choices
from .columns import Table
from .embed import embeddings, fixed_list, vec_array
from .execution import Task
from .features import Stacked, candidates, choose, feature_scale, issparse, oof_quality, stack, tfidf_matrix
from .labels import encode_labels, judgeable
from .resources import resource
from .stage import Option, StageContext, stage
from .store import parquet_relation

MODELS = ("linear", "mlp")

# ------------------------------------------------------------------------------------- logit maths


def logit_stats(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(margin, p_gold, p_sq) of logits (…, n, C) for target classes (n,); results in float64.

    * margin: logit of the target class − the largest other logit (the per-epoch term of AUM);
    * p_gold: softmax probability of the target class (data maps' confidence);
    * p_sq: Σ_j p_j² — with p_gold it gives EL2N = ‖softmax − onehot‖₂ = √(1 − 2·p_gold + p_sq).

    Maxima and the exponentials run in the logits' own dtype (float32 logits stay float32: half the memory
    traffic); differences and sums are float64.
    """
    z = np.asarray(logits)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    t = np.asarray(targets, dtype=np.int64)
    if z.shape[-1] < 2:
        raise CurateError(f"logits need at least two classes; got shape {z.shape}")
    idx = np.broadcast_to(t[:, None], z.shape[:-1] + (1,))
    target = np.take_along_axis(z, idx, axis=-1)[..., 0]
    work = z.copy()
    np.put_along_axis(work, idx, -np.inf, axis=-1)
    other = work.max(axis=-1)
    margin = target.astype(np.float64) - other
    top = np.maximum(target, other)  # the largest logit
    np.subtract(z, top[..., None], out=work)
    np.exp(work, out=work)
    s = work.sum(axis=-1, dtype=np.float64)
    p_gold = np.exp(target.astype(np.float64) - top) / s
    np.multiply(work, work, out=work)
    p_sq = work.sum(axis=-1, dtype=np.float64) / (s * s)
    return margin, p_gold, p_sq


def margins(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-epoch margins E×n of logits E×n×C: target logit − largest other logit (float64), epoch by epoch."""
    z = np.asarray(logits)
    t = np.asarray(targets, dtype=np.int64)
    rows = np.arange(len(t))
    out = np.empty(z.shape[:2], dtype=np.float64)
    for e, ep in enumerate(z):  # one epoch at a time: memory stays at one n×C copy
        work = np.array(ep, dtype=ep.dtype if ep.dtype in (np.float32, np.float64) else np.float64)
        target = work[rows, t].astype(np.float64)
        work[rows, t] = -np.inf
        out[e] = target - work.max(axis=1)
    return out


def aum_from_logits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Area under the margin (Pleiss et al. 2020) of per-epoch logits E×n×C: mean margin over epochs."""
    return margins(logits, targets).mean(axis=0)


def el2n_from_stats(p_gold: np.ndarray, p_sq: np.ndarray) -> np.ndarray:
    """‖softmax − onehot‖₂ from p_gold and Σp² (clipped at 0 against rounding)."""
    return np.sqrt(np.maximum(0.0, 1.0 - 2.0 * np.asarray(p_gold, np.float64) + np.asarray(p_sq, np.float64)))


# ------------------------------------------------------------------------------------------ training
@dataclass(frozen=True)
class ProbeConfig:
    """How a probe is trained. Defaults were chosen on BANKING77 + MiniLM (see bench/label_scores.py)."""

    model: str = "linear"
    hidden: int = 256
    epochs: int = 60
    lr: float = 0.03
    l2: float = 1e-2
    batch_size: int = 0  # 0 = full batch (one step per epoch)
    seed: int = 0

    def check(self) -> "ProbeConfig":
        for name, kind in (("hidden", int), ("epochs", int), ("batch_size", int), ("seed", int), ("lr", float),
                           ("l2", float)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
                raise CurateError(f"probe.{name} must be a {'whole ' if kind is int else ''}number; got {v!r}",
                                  f"e.g. --param probe.{name}={PROBE_DEFAULTS[name]}")
        if self.model not in MODELS:
            raise CurateError(f"Unknown probe model {self.model!r}", f"use one of {choices(MODELS)}")
        if int(self.epochs) < 2:
            raise CurateError(f"The probe needs at least 2 epochs; got {self.epochs}")
        if not (self.lr > 0 and self.l2 >= 0 and int(self.batch_size) >= 0 and int(self.hidden) > 0):
            raise CurateError("Probe parameters must be positive (lr > 0, l2 ≥ 0, batch_size ≥ 0, hidden > 0)")
        return self


@dataclass
class EpochStats:
    """Per-epoch summaries of one training run, each E×n float32 (rows in the order they were given)."""

    margin: np.ndarray
    p_gold: np.ndarray
    p_sq: np.ndarray

    @classmethod
    def from_logits(cls, logits: np.ndarray, targets: np.ndarray) -> "EpochStats":
        E, n = np.shape(logits)[:2]
        out = cls(*(np.empty((E, n), np.float32) for _ in range(3)))
        for e, ep in enumerate(logits):  # epoch by epoch: bounded memory
            out.margin[e], out.p_gold[e], out.p_sq[e] = logit_stats(ep, targets)
        return out


def _tensor(x):
    """float32 torch tensor of dense rows; a sparse CSR tensor of a scipy sparse matrix; a (dense, sparse) pair of
    :class:`~curate_core.features.Stacked` features."""
    import torch

    if isinstance(x, Stacked):
        return _tensor(x.dense), _tensor(x.sparse)
    if not issparse(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    x = x.tocsr()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul with a dense weight is all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(x.indptr.astype(np.int64)),
                                       torch.from_numpy(x.indices.astype(np.int64)),
                                       torch.from_numpy(np.asarray(x.data, dtype=np.float32)), size=x.shape)


def _forward(model, xb):
    """model(xb), also for sparse or stacked inputs: the first layer as (sparse) matrix products with slices of its
    weight — autograd handles sparse @ dense, and nothing is densified."""
    import torch

    if not isinstance(xb, tuple) and xb.layout != torch.sparse_csr:
        return model(xb)
    first = model if isinstance(model, torch.nn.Linear) else model[0]
    if isinstance(xb, tuple):
        d = xb[0].shape[1]
        h = xb[0] @ first.weight[:, :d].t() + xb[1] @ first.weight[:, d:].t() + first.bias
    else:
        h = xb @ first.weight.t() + first.bias
    return h if first is model else model[1:](h)


def _rows(x, xt, b):
    """The batch *b* (a torch index tensor) of features *x* as the model's input (*xt*: the full tensor)."""
    if isinstance(x, Stacked) or issparse(x):
        return _tensor(x[b.numpy()])
    return xt[b]


def _build(cfg: ProbeConfig, d: int, n_out: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(int(seed))

    def linear(i: int, o: int) -> "torch.nn.Linear":
        layer = torch.nn.Linear(i, o)
        bound = 1.0 / math.sqrt(i)
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=g)
            layer.bias.uniform_(-bound, bound, generator=g)
        return layer

    if cfg.model == "linear":
        model = torch.nn.Linear(d, n_out)
        with torch.no_grad():  # softmax regression is convex: start from zero (no randomness at all)
            model.weight.zero_()
            model.bias.zero_()
        return model, g
    return torch.nn.Sequential(linear(d, int(cfg.hidden)), torch.nn.ReLU(), linear(int(cfg.hidden), n_out)), g


def train_probe(x: "np.ndarray | Stacked | Any", y: np.ndarray, n_out: int, cfg: ProbeConfig, seed: int, *,
                x_eval: "np.ndarray | Stacked | Any | None" = None, record: bool = True,
                on_epoch: Callable[[int], None] | None = None) -> tuple[EpochStats | None, np.ndarray | None]:
    """Train one probe on (x, y) with *n_out* outputs; *x* dense, scipy sparse (CSR) or :class:`Stacked`.

    Returns (per-epoch stats of every training row, taken from the forward pass that trains on it — the
    logits "while it is trained on", or None if not *record*; softmax probabilities of *x_eval* after the last
    epoch, or None). Minimises mean cross-entropy + l2/2 · ‖weights‖² with Adam.
    """
    import torch

    n, d = x.shape
    model, g = _build(cfg, d, n_out, seed)
    xt = _tensor(x)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.lr))
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    E = int(cfg.epochs)
    bs = int(cfg.batch_size) or n
    stats = EpochStats(*(np.empty((E, n), np.float32) for _ in range(3))) if record else None
    y_np = np.asarray(y, dtype=np.int64)
    for ep in range(E):
        order = torch.randperm(n, generator=g) if bs < n else torch.arange(n)
        for lo in range(0, n, bs):
            b = order[lo: lo + bs]
            xb = xt if bs >= n else _rows(x, xt, b)  # full batch: the rows in order
            logits = _forward(model, xb)
            loss = torch.nn.functional.cross_entropy(logits, yt[b])
            if cfg.l2:
                loss = loss + 0.5 * float(cfg.l2) * sum((w * w).sum() for w in weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if stats is not None:
                bi = b.numpy()
                m, pg, ps = logit_stats(logits.detach().numpy(), y_np[bi])
                stats.margin[ep, bi], stats.p_gold[ep, bi], stats.p_sq[ep, bi] = m, pg, ps
        if on_epoch is not None:
            on_epoch(ep + 1)
    probs = None
    if x_eval is not None:
        with torch.no_grad():
            probs = torch.softmax(_forward(model, _tensor(x_eval)), 1).numpy()
    return stats, probs


def fold_indices(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out index sets of stratified K-fold (every class spread over the folds as evenly as it can be)."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise CurateError(f"Out-of-fold probabilities need at least 2 folds; got {folds}")
    if len(y) < folds:
        raise CurateError(f"{len(y)} labelled rows cannot be split into {folds} folds", "use fewer folds")
    with warnings.catch_warnings():  # "least populated class has only n members": fine, rows still spread
        warnings.simplefilter("ignore", UserWarning)
        skf = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed))
        return [test for _, test in skf.split(np.zeros(len(y)), y)]


#: Largest share of the rows moved to the fake class in one threshold run. The paper's N/(C+1) is a third of the
#: data for two classes: the probe then learns the fake class as a real one (memorises it), the threshold samples'
#: AUM rises and so does the cutoff (SMS Spam, 10 % flips: 1,120 rows flagged for 557 flips; capped at 10 %: 597).
MAX_THRESHOLD_FRAC = 0.1


def threshold_sets(n: int, n_classes: int, runs: int, seed: int, frac: float | None = None) -> list[np.ndarray]:
    """Disjoint random index sets, one per run, each of ~n/(C+1) rows but at most MAX_THRESHOLD_FRAC·n (or
    frac·n when given) to move to the fake class."""
    size = int(round(n * frac)) if frac else int(round(n * min(1.0 / (n_classes + 1), MAX_THRESHOLD_FRAC)))
    size = max(1, size)
    if runs < 1:
        return []
    if size * runs > n:
        raise CurateError(f"{runs} runs × {size} threshold samples exceed the {n} labelled rows",
                          "use fewer threshold_runs or a smaller threshold_frac")
    perm = np.random.default_rng(int(seed) + 7919).permutation(n)
    return [np.sort(perm[r * size:(r + 1) * size]) for r in range(runs)]


# ----------------------------------------------------------------------------------- imported files
@dataclass
class Imported:
    """Predictions read from the user's files, aligned to given row positions."""

    probs: np.ndarray | None = None  # n_labelled × C, rows in the order of the labelled rows
    logits: np.ndarray | None = None  # E × n_labelled × C
    notes: list[str] = field(default_factory=list)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_params(probs: str | Path | None = None, logits: str | Path | None = None,
                  ids: str | Path | None = None, classes: Sequence[str] | None = None) -> dict:
    """Probe-stage parameters for imported predictions, with file hashes so a changed file reruns the stage.

    The result names every import parameter (None for those not given), so it replaces an earlier import set
    (stage parameters are sticky between runs). ``import_params()`` with no files goes back to the probe.

    >>> ws.run(["scores"], params={"probe": import_params(probs="pred_probs.npy")})
    """
    out: dict = {k: None for k in ("probs_file", "probs_sha256", "logits_file", "logits_sha256", "ids_file",
                                   "ids_sha256", "classes")}  # a full set: earlier imports do not linger
    for key, p in (("probs_file", probs), ("logits_file", logits), ("ids_file", ids)):
        if p:
            path = Path(p).expanduser().resolve()
            if not path.is_file():
                raise CurateError(f"No file {path}", f"give an existing file for {key.replace('_file', '')}")
            out[key] = str(path)
            out[key.replace("_file", "_sha256")] = file_sha256(path)
    if classes:
        out["classes"] = list(classes)
    return out


def _check_sha(path: str, sha: str | None, what: str) -> None:
    if sha and file_sha256(path) != sha:
        raise CurateError(f"The {what} file {path} changed since it was given",
                          "pass it again (python -m curate_core run --pred-probs/--pred-logits FILE)")


def _read_ids(path: str | None) -> list[str] | None:
    if not path:
        return None
    p = Path(path)
    if p.suffix.lower() == ".npy":
        return [str(v) for v in np.load(p, allow_pickle=False).tolist()]
    return [line.rstrip("\r\n") for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _positions(file_ids: list[str] | None, n_rows: int, all_ids: list[str], labelled: np.ndarray, what: str) -> np.ndarray:
    """For each labelled workspace row, the row of the file that holds it (matched by id)."""
    if file_ids is None:
        if n_rows == len(all_ids):
            return np.flatnonzero(labelled)
        if n_rows == int(labelled.sum()):
            return np.arange(n_rows)
        raise CurateError(f"The {what} have {n_rows:,} rows; the workspace has {len(all_ids):,} rows "
                          f"({int(labelled.sum()):,} labelled)",
                          "give one row per workspace row (or per labelled row) in row order, or an ids file")
    if len(file_ids) != n_rows:
        raise CurateError(f"The ids file has {len(file_ids):,} ids but the {what} have {n_rows:,} rows")
    where: dict[str, int] = {}
    dups = []
    for i, v in enumerate(file_ids):
        if v in where:
            dups.append(v)
        where[v] = i
    if dups:
        raise CurateError(f"The {what} repeat {len(dups):,} id(s), e.g. {choices(dups[:5])}", "give each id once")
    known = set(all_ids)
    unknown = [v for v in file_ids if v not in known]
    if unknown:
        raise CurateError(f"{len(unknown):,} id(s) in the {what} are not in the workspace, e.g. {choices(unknown[:5])}",
                          "ids must match the workspace's id column")
    lab_ids = [all_ids[i] for i in np.flatnonzero(labelled)]
    missing = [v for v in lab_ids if v not in where]
    if missing:
        raise CurateError(f"{len(missing):,} labelled row(s) have no {what}, e.g. ids {choices(missing[:5])}",
                          "give predictions for every labelled row")
    return np.array([where[v] for v in lab_ids], dtype=np.int64)


def _class_order(file_classes: Sequence[str] | None, classes: list[str], width: int, what: str) -> np.ndarray:
    """Column index in the file of each workspace class (validated: same set of class names)."""
    if file_classes is None:
        if width != len(classes):
            raise CurateError(f"The {what} have {width} columns but the workspace has {len(classes)} classes",
                              f"columns must be the classes in sorted order: {choices(classes)}; "
                              "or pass the file's class order (--pred-classes)")
        if all(re.fullmatch(r"[+-]?\d+", c) for c in classes):
            # integer labels: a model's column j is class j, so the columns go in numeric order, not text order
            # ("10" sorts before "2" as text). Any other labels: the columns must be in sorted (text) order.
            numeric = sorted(classes, key=int)
            pos = {c: i for i, c in enumerate(numeric)}
            return np.array([pos[c] for c in classes], dtype=np.int64)
        return np.arange(width)
    file_classes = [str(c) for c in file_classes]
    if len(file_classes) != width:
        raise CurateError(f"{len(file_classes)} class names given for {width} columns of the {what}")
    missing = [c for c in classes if c not in file_classes]
    extra = [c for c in file_classes if c not in classes]
    if missing or extra or len(set(file_classes)) != len(file_classes):
        raise CurateError(f"The {what}' classes do not match the workspace labels"
                          + (f"; missing {choices(missing)}" if missing else "")
                          + (f"; unknown {choices(extra)}" if extra else ""),
                          f"workspace labels: {choices(classes)}")
    pos = {c: i for i, c in enumerate(file_classes)}
    return np.array([pos[c] for c in classes], dtype=np.int64)


def _finite(a: np.ndarray, what: str) -> None:
    if not np.issubdtype(a.dtype, np.number):
        raise CurateError(f"The {what} must be numbers; got dtype {a.dtype}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise CurateError(f"The {what} contain {int(bad.sum()):,} NaN or infinite values", "fix them before importing")


def _read_table(path: Path):
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"id": str})
    raise CurateError(f"Unknown file type {path.suffix!r}", "use .npy, .npz, .parquet or .csv")


def _load_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise CurateError(f"{path.name} holds {len(z.files)} arrays", "put exactly one array in the .npz")
                return z[z.files[0]]
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CurateError(f"Could not read {path}: {str(e).splitlines()[0]}") from None


def load_probs_file(path: str | Path, all_ids: list[str], labelled: np.ndarray, classes: list[str],
                    ids_file: str | None = None, file_classes: Sequence[str] | None = None) -> np.ndarray:
    """pred_probs for the labelled rows (n_labelled × C, workspace class order), validated."""
    path = Path(path)
    what = "predicted probabilities"
    if path.suffix.lower() in (".npy", ".npz"):
        a = _load_array(path)
        if a.ndim != 2:
            raise CurateError(f"The {what} must be a 2-D array N×C; {path.name} has shape {a.shape}")
        rows = _positions(_read_ids(ids_file), a.shape[0], all_ids, labelled, what)
        cols = _class_order(file_classes, classes, a.shape[1], what)
    else:
        df = _read_table(path)
        if "id" not in df.columns:
            raise CurateError(f"{path.name} has no `id` column", f"columns: {choices(list(df.columns))}")
        value_cols = [c for c in df.columns if c != "id"]
        cols = _class_order(value_cols, classes, len(value_cols), what)
        rows = _positions(df["id"].astype(str).tolist(), len(df), all_ids, labelled, what)
        a = df[value_cols].to_numpy()
    _finite(a, what)
    p = np.asarray(a, dtype=np.float64)[rows][:, cols]
    if (p < -1e-6).any() or (p > 1 + 1e-6).any():
        raise CurateError(f"The {what} must lie in [0, 1]", "did you pass logits? give them as --pred-logits")
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > 1e-3)
    if bad.size:
        raise CurateError(f"{bad.size:,} rows of the {what} do not sum to 1 (e.g. {sums[bad[0]]:.4f})",
                          "give softmax probabilities over exactly the workspace's classes")
    return np.clip(p, 0.0, 1.0)


def load_logits_file(path: str | Path, all_ids: list[str], labelled: np.ndarray, classes: list[str],
                     ids_file: str | None = None, file_classes: Sequence[str] | None = None) -> np.ndarray:
    """Per-epoch logits for the labelled rows (E × n_labelled × C, workspace class order), validated."""
    path = Path(path)
    what = "per-epoch logits"
    if path.suffix.lower() in (".npy", ".npz"):
        a = _load_array(path)
        if a.ndim != 3:
            raise CurateError(f"The {what} must be a 3-D array E×N×C (epochs × rows × classes); "
                              f"{path.name} has shape {a.shape}")
        rows = _positions(_read_ids(ids_file), a.shape[1], all_ids, labelled, what)
        cols = _class_order(file_classes, classes, a.shape[2], what)
    else:
        df = _read_table(path)
        need = [c for c in ("id", "epoch") if c not in df.columns]
        if need:
            raise CurateError(f"{path.name} lacks column(s) {choices(need)}",
                              "long format: id, epoch, then one column per class")
        value_cols = [c for c in df.columns if c not in ("id", "epoch")]
        cols = _class_order(value_cols, classes, len(value_cols), what)
        epochs = sorted(df["epoch"].unique().tolist())
        counts = df.groupby("epoch").size()
        if counts.nunique() != 1:
            raise CurateError(f"Epochs of the {what} have different row counts ({counts.min()}–{counts.max()})",
                              "give every row once per epoch")
        df = df.sort_values(["epoch", "id"], kind="stable")
        ids = df.loc[df["epoch"] == epochs[0], "id"].astype(str).tolist()
        for e in epochs[1:]:
            if df.loc[df["epoch"] == e, "id"].astype(str).tolist() != ids:
                raise CurateError(f"Epoch {e} of the {what} has other ids than epoch {epochs[0]}",
                                  "give the same rows in every epoch")
        rows = _positions(ids, len(ids), all_ids, labelled, what)
        a = df[value_cols].to_numpy().reshape(len(epochs), len(ids), len(value_cols))
    _finite(a, what)
    if a.shape[0] < 1:
        raise CurateError(f"The {what} have no epochs")
    a = np.asarray(a, dtype=np.float32)
    if not np.array_equal(rows, np.arange(a.shape[1])):
        a = a[:, rows]
    if not np.array_equal(cols, np.arange(a.shape[2])):
        a = a[:, :, cols]
    return a


# ---------------------------------------------------------------------------------- stage plumbing
def probs_part(row_ids: np.ndarray, probs: np.ndarray) -> pa.Table:
    """Checkpoint part of one fold: held-out row_ids and their probabilities."""
    return pa.table({"row_id": pa.array(row_ids, pa.int64()), "probs": vec_array(probs)})


def epochs_part(run: int, row_ids: np.ndarray, threshold: np.ndarray, stats: EpochStats) -> pa.Table:
    """Checkpoint part of one dynamics run: per row, its flag and E-long arrays of the three stats."""
    return pa.table({"run": pa.array(np.full(len(row_ids), run), pa.int32()),
                     "row_id": pa.array(row_ids, pa.int64()),
                     "threshold": pa.array(np.asarray(threshold, bool)),
                     **{k: vec_array(getattr(stats, k).T) for k in ("margin", "p_gold", "p_sq")}})  # per row: E-long


@dataclass
class ProbeData:
    """What the score plugins read (resource ``probe``), aligned to the workspace rows (row_id order).

    ``probs`` is N×C (NaN rows where unlabelled); the dynamics arrays are R×E×N float32 (NaN where the row is
    not in run r); ``own_label[r]`` marks rows trained with their own label in run r, ``threshold[r]`` the
    threshold samples of run r (trained with the fake class, whose margins are about that class).
    """

    classes: list[str]
    probs: np.ndarray | None
    margin: np.ndarray | None
    p_gold: np.ndarray | None
    p_sq: np.ndarray | None
    own_label: np.ndarray | None
    threshold: np.ndarray | None
    info: dict = field(default_factory=dict)

    @property
    def has_dynamics(self) -> bool:
        return self.margin is not None

    def per_run_mean(self, values: np.ndarray) -> np.ndarray:
        """Mean over the runs where each row kept its own label (NaN if none); *values* is R×N."""
        own = self.own_label
        v = np.where(own, values, 0.0)
        cnt = own.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, v.sum(axis=0) / np.maximum(cnt, 1), np.nan)


def config_dict(cfg: ProbeConfig) -> dict:
    return asdict(cfg)


# ------------------------------------------------------------------------------------------- stage
PROBE_DEFAULTS = {
    "model": "linear", "hidden": 256, "epochs": 60, "lr": 0.03, "l2": 0.01, "batch_size": 0, "seed": 0,
    "folds": 5, "threshold_runs": 2, "threshold_frac": None, "threads": 1, "features": "auto",
    # imported predictions (see import_params): file paths, their hashes, the files' class order
    "probs_file": None, "probs_sha256": None, "logits_file": None, "logits_sha256": None,
    "ids_file": None, "ids_sha256": None, "classes": None,
}
SUMMARY = "probe"  # name of the stored summary the `probe` resource checks against the data


def _imports(p: dict, ids: list[str], codes: np.ndarray, classes: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(pred_probs, per-epoch logits) from the user's files named in the stage parameters (None when not given)."""
    for key, what in (("probs", "predicted probabilities"), ("logits", "per-epoch logits"), ("ids", "ids")):
        if p.get(f"{key}_file"):
            _check_sha(p[f"{key}_file"], p.get(f"{key}_sha256"), what)
    labelled = codes >= 0
    probs = logits = None
    if p.get("probs_file"):
        probs = load_probs_file(p["probs_file"], ids, labelled, classes, p.get("ids_file"), p.get("classes"))
    if p.get("logits_file"):
        logits = load_logits_file(p["logits_file"], ids, labelled, classes, p.get("ids_file"), p.get("classes"))
    return probs, logits


def _features(store, row_ids: np.ndarray) -> np.ndarray:
    """Embeddings of the given rows, scaled to a mean squared entry of 1."""
    emb_ids, vecs = embeddings(store)
    pos = np.minimum(np.searchsorted(emb_ids, row_ids), max(0, len(emb_ids) - 1))
    if len(emb_ids) == 0 or not np.array_equal(emb_ids[pos], row_ids):
        raise CurateError("The embeddings do not cover every labelled row", "run the embed stage again")
    x = vecs[pos]
    return x * np.float32(feature_scale(x))


class FeatureSets:
    """The probe's inputs by name (``embedding``, ``tfidf``, ``both``; see curate_core.features), built on first
    use: a resumed run whose parts are all there builds none."""

    def __init__(self, store, row_ids: np.ndarray, seed: int) -> None:
        self.store, self.row_ids, self.seed = store, row_ids, seed
        self._built: dict = {}

    def __getitem__(self, name: str):
        if name not in self._built:
            if name == "embedding":
                self._built[name] = _features(self.store, self.row_ids)
            elif name == "tfidf":
                texts = self.store.sample_frame(["row_id", "text"], self.row_ids.tolist())  # row_id order, as ours
                if not np.array_equal(texts["row_id"].to_numpy(np.int64), self.row_ids):
                    raise CurateError("Rows changed while the probe stage ran", "run the probe stage again")
                self._built[name] = tfidf_matrix(texts["text"].tolist(), self.seed)
            else:
                self._built[name] = stack(self["embedding"], self["tfidf"])
        return self._built[name]

    def subset(self, names) -> dict:
        return {k: self[k] for k in names}


def _fold_quality(ck, names: list[str], row_ids: np.ndarray, y: np.ndarray) -> dict:
    """Out-of-fold accuracy and log-loss of one feature set's fold parts."""
    t = pa.concat_tables([ck.read(n) for n in names])
    probs = np.empty((len(y), fixed_list(t.column("probs")).shape[1]), np.float32)
    probs[np.searchsorted(row_ids, t.column("row_id").to_numpy())] = fixed_list(t.column("probs"))
    return oof_quality(y, probs)


def _params_from_options(values: dict) -> dict:
    """`run --pred-probs/--pred-logits/--pred-ids/--pred-classes/--probe-model` → probe parameters."""
    out: dict = {}
    if values.get("pred_probs") or values.get("pred_logits"):
        classes = [c.strip() for c in values["pred_classes"].split(",")] if values.get("pred_classes") else None
        out.update(import_params(probs=values.get("pred_probs"), logits=values.get("pred_logits"),
                                 ids=values.get("pred_ids"), classes=classes))
    elif values.get("pred_ids") or values.get("pred_classes"):
        raise CurateError("--pred-ids and --pred-classes describe an imported file",
                          "give --pred-probs FILE and/or --pred-logits FILE too")
    if values.get("probe_model"):
        out["model"] = values["probe_model"]
    return out


OPTIONS = (
    Option("--pred-probs", "import your model's out-of-fold pred_probs (N×C .npy/.npz, or .parquet/.csv with id + one "
           "column per class) instead of training the probe's folds", metavar="FILE"),
    Option("--pred-logits", "import per-epoch training logits (E×N×C .npy/.npz, or .parquet/.csv with id, epoch + one "
           "column per class) instead of the probe's threshold runs", metavar="FILE"),
    Option("--pred-ids", "ids of the rows of a .npy import (.npy or one id per line)", metavar="FILE"),
    Option("--pred-classes", "class order of the columns of a .npy import (default: the workspace labels in sorted "
           "order)", metavar="A,B,…"),
    Option("--probe-model", "probe classifier (default: linear)", choices=MODELS),
)


@dataclass(frozen=True)
class ProbeTask:
    """Task function of the probe stage. ``("fold", features, k)``: train on the other folds, predict fold k
    (out-of-fold probabilities); ``("threshold", features, r)``: train on every labelled row with threshold set r
    moved to a fake extra class, recording each row's per-epoch statistics. Shared data: x (feature set name →
    features), y, row_ids, folds, thresholds."""

    cfg: ProbeConfig
    n_classes: int
    threads: int = 1

    def __call__(self, task: Task, shared: dict, report: Callable[[int], None]) -> pa.Table:
        import torch

        kind, features, i = task.arg
        x, y, row_ids, C, cfg = shared["x"][features], shared["y"], shared["row_ids"], self.n_classes, self.cfg
        old = torch.get_num_threads()
        torch.set_num_threads(max(1, int(self.threads)))  # 1 thread: bit-identical reruns and resumes
        try:
            if kind == "fold":
                held = shared["folds"][i]
                train = np.setdiff1d(np.arange(len(y)), held, assume_unique=True)
                _, probs = train_probe(x[train], y[train], C, cfg, seed=cfg.seed * 1000 + i, x_eval=x[held],
                                       record=False, on_epoch=report)
                return probs_part(row_ids[held], probs)
            thr = shared["thresholds"][i]
            yy = y.copy()
            yy[thr] = C  # the fake extra class
            stats, _ = train_probe(x, yy, C + 1, cfg, seed=cfg.seed * 1000 + 500 + i, on_epoch=report)
            return epochs_part(i, row_ids, np.isin(np.arange(len(y)), thr), stats)
        finally:
            torch.set_num_threads(old)


@stage("probe", version="2", title="Probe classifier (out-of-fold probabilities, training dynamics)",
       requires=("embed",), outputs=(Table("probe_probs", features=False), Table("probe_epochs", features=False)),
       defaults=PROBE_DEFAULTS, options=OPTIONS, apply_options=_params_from_options)
def run_probe(ctx: StageContext) -> dict:
    """K fold tasks and R threshold-run tasks through the executor (one part each), or imported predictions."""
    store, p = ctx.store, ctx.params
    frame = store.sample_frame(["row_id", "id", "label"])
    enc = encode_labels(frame["label"].tolist())
    try:
        codes, classes, set_aside = judgeable(enc["label_codes"], enc["classes"])  # singleton classes set aside
        problem = None
    except CurateError as e:
        problem = e.message
    if problem:  # not an error: the other scores still run; the label scores say why they are missing
        with store.transaction() as cur:
            store.drop_table("probe_probs", cur)
            store.drop_table("probe_epochs", cur)
            store.put_summary(SUMMARY, {"skipped": problem, "data": store.data_fingerprint()}, cur=cur)
        ctx.progress(1, 1, "skipped: " + problem)
        return {"skipped": problem}
    cfg = ProbeConfig(**{k: p[k] for k in ("model", "hidden", "epochs", "lr", "l2", "batch_size", "seed")}).check()
    y = codes[codes >= 0]
    row_ids = frame["row_id"].to_numpy(np.int64)[codes >= 0]
    C, E = len(classes), cfg.epochs
    imp_probs, imp_logits = _imports(p, frame["id"].astype(str).tolist(), codes, classes)
    folds = [] if imp_probs is not None else fold_indices(y, int(p["folds"]), cfg.seed)
    R = 0 if imp_logits is not None else int(p["threshold_runs"])
    if R == 1:  # the rows moved to the fake class need a second run in which they keep their own label
        raise CurateError("threshold_runs must be 0 (no training dynamics) or at least 2; got 1",
                          "with one run, the rows moved to the fake class get no AUM or data-map scores at all")
    thr_sets = threshold_sets(len(y), C, R, cfg.seed, p.get("threshold_frac"))
    requested = str(p.get("features") or "auto")
    tried = candidates(requested) if folds else ()  # validates the name either way
    named = (lambda f, what: f"{f}: {what}") if len(tried) > 1 else (lambda f, what: what)  # progress labels
    fold_tasks = {f: [Task(f"fold-{f}-{k:02d}", named(f, f"fold {k + 1}/{len(folds)}"), E, ("fold", f, k))
                      for k in range(len(folds))] for f in tried}
    ck = ctx.checkpoint
    sets = FeatureSets(store, row_ids, cfg.seed)
    fn = ProbeTask(cfg, C, int(p.get("threads") or 1))
    tracker = ctx.tracker((sum(len(t) for t in fold_tasks.values()) + R) * E, unit="epochs")
    shared = {"y": y, "row_ids": row_ids, "folds": folds, "thresholds": thr_sets}

    def run_tasks(tasks: list[Task]) -> list[str]:
        missing = sorted({t.arg[1] for t in tasks if not ck.has(ck.task_name(t.key))})
        return ctx.executor.tasks(fn, tasks, ck, tracker, {**shared, "x": sets.subset(missing)})

    fold_names = {f: run_tasks(ts) for f, ts in fold_tasks.items()}  # every candidate's folds, then choose
    quality = {f: _fold_quality(ck, names, row_ids, y) for f, names in fold_names.items()}
    if quality:
        chosen, why = choose(quality)
    else:
        candidates(requested)
        chosen = "embedding" if requested == "auto" else requested
        why = f"predicted probabilities were imported: the threshold runs train on features={chosen}"
    names = list(fold_names.get(chosen, []))
    if R:
        names += run_tasks([Task(f"threshold-{r:02d}", named(chosen, f"threshold run {r + 1}/{R}"), E,
                                 ("threshold", chosen, r)) for r in range(R)])
    if not fold_tasks and not R:
        ctx.progress(0, 1)
    prob_parts, epoch_parts = names[:len(folds)], names[len(folds):]
    if imp_probs is not None:
        ck.write(ck.task_name("imported-probs"), probs_part(row_ids, imp_probs))
        prob_parts.append(ck.task_name("imported-probs"))
    if imp_logits is not None:
        ck.write(ck.task_name("imported-logits"),
                 epochs_part(0, row_ids, np.zeros(len(y), bool), EpochStats.from_logits(imp_logits, y)))
        epoch_parts.append(ck.task_name("imported-logits"))
    ck.mark_complete()
    n_epochs = E if imp_logits is None else int(imp_logits.shape[0])
    info = {
        "classes": classes, "data": store.data_fingerprint(), "labelled": int(len(y)), "epochs": n_epochs,
        "probs": "imported" if imp_probs is not None else f"{len(folds)}-fold out-of-fold",
        "dynamics": "imported" if imp_logits is not None else f"{R} threshold runs",
        "threshold_samples": int(sum(len(t) for t in thr_sets)), "config": config_dict(cfg),
        "features": {"chosen": chosen, "why": why, "candidates": quality}, "set_aside": set_aside,
    }
    with store.transaction() as cur:  # the outputs and the summary that describes them, together
        write_probe(cur, ck.parts(prob_parts).source(), ck.parts(epoch_parts).source() if epoch_parts else None,
                    C, n_epochs)
        store.put_summary(SUMMARY, info, cur=cur)
    return {k: v for k, v in info.items() if k not in ("classes", "data")}


# ------------------------------------------------------------------------------------------ storage
def write_probe(cur, prob_parts, epoch_parts, n_classes: int, n_epochs: int) -> None:
    """Replace ``probe_probs(row_id, probs FLOAT[C])`` and ``probe_epochs(run, row_id, threshold,
    margin/p_gold/p_sq FLOAT[E])`` with the rows of the probe's checkpoint parts, in the caller's transaction."""
    c, e = int(n_classes), int(n_epochs)
    with parquet_relation(cur, prob_parts) as (rel, params):
        cur.execute(f"""CREATE OR REPLACE TABLE probe_probs AS
                        SELECT row_id, CAST(probs AS FLOAT[{c}]) AS probs FROM {rel} ORDER BY row_id""", params)
    if epoch_parts is None:  # no training dynamics (threshold_runs=0): an empty table says so
        cur.execute(f"""CREATE OR REPLACE TABLE probe_epochs (run INTEGER, row_id BIGINT, threshold BOOLEAN,
                        margin FLOAT[{e}], p_gold FLOAT[{e}], p_sq FLOAT[{e}])""")
        return
    with parquet_relation(cur, epoch_parts) as (rel, params):
        cur.execute(f"""CREATE OR REPLACE TABLE probe_epochs AS
                        SELECT CAST(run AS INTEGER) AS run, row_id, threshold, CAST(margin AS FLOAT[{e}]) AS margin,
                               CAST(p_gold AS FLOAT[{e}]) AS p_gold, CAST(p_sq AS FLOAT[{e}]) AS p_sq
                        FROM {rel} ORDER BY run, row_id""", params)


def probe_probs(store) -> tuple[np.ndarray, np.ndarray]:
    """(row_ids, out-of-fold probabilities n×C float32) of the labelled rows (in table order)."""
    if not store.table_exists("probe_probs"):
        raise CurateError("No probe outputs yet", "run the probe stage")
    t = store.read_table("probe_probs", ["row_id", "probs"], order_by=None, arrow=True)  # callers map row_ids
    return t.column("row_id").to_numpy(), fixed_list(t.column("probs"))


def probe_epochs(store) -> dict[str, np.ndarray]:
    """Per (run, row), in table order: run, row_id, threshold flags and the E-long per-epoch stats (n×E float32)."""
    if not store.table_exists("probe_epochs"):
        raise CurateError("No probe outputs yet", "run the probe stage")
    t = store.read_table("probe_epochs", ["run", "row_id", "threshold", "margin", "p_gold", "p_sq"], order_by=None,
                         arrow=True)
    out = {"run": t.column("run").to_numpy().astype(np.int64), "row_id": t.column("row_id").to_numpy(),
           "threshold": t.column("threshold").to_numpy(zero_copy_only=False).astype(bool)}
    for k in ("margin", "p_gold", "p_sq"):
        out[k] = fixed_list(t.column(k)) if t.num_rows else np.zeros((0, 0), np.float32)
    return out


@resource("probe", stage="probe")
def load_probe(store) -> ProbeData:
    """Probe outputs aligned to the workspace rows; refuses outputs of older data."""
    info = store.get_summary(SUMMARY)
    hint = f"run the probe stage: python -m curate_core run --workspace {store.path} --stages probe"
    if info is None:
        raise CurateError("No probe outputs in this workspace yet", hint)
    if info.get("data") != store.data_fingerprint():
        raise CurateError("The probe outputs are from older data (rows were added since)", hint)
    if info.get("skipped"):
        raise CurateError(info["skipped"])
    all_ids = store.row_ids()
    N, C = len(all_ids), len(info["classes"])
    rid, probs = probe_probs(store)
    P = np.full((N, C), np.nan, np.float32)
    P[np.searchsorted(all_ids, rid)] = probs
    ep = probe_epochs(store)
    R = int(ep["run"].max()) + 1 if len(ep["run"]) else 0
    if R == 0:  # trained without threshold runs: out-of-fold probabilities only
        return ProbeData(info["classes"], P, None, None, None, None, None, info)
    E = ep["margin"].shape[1]
    arrays = {k: np.full((R, E, N), np.nan, np.float32) for k in ("margin", "p_gold", "p_sq")}
    own = np.zeros((R, N), bool)
    thr = np.zeros((R, N), bool)
    cols = np.searchsorted(all_ids, ep["row_id"])
    for k in arrays:
        arrays[k][ep["run"], :, cols] = ep[k]
    own[ep["run"], cols] = ~ep["threshold"]
    thr[ep["run"], cols] = ep["threshold"]
    return ProbeData(info["classes"], P, arrays["margin"], arrays["p_gold"], arrays["p_sq"], own, thr, info)
