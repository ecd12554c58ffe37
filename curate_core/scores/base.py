"""Score plugins: one file per score, registered with :func:`register`, computed by the `scores` stage.

A score is a frozen dataclass with ``name``, ``title``, ``requires``, ``direction``, ``version`` and a
``compute(ctx) -> ScoreResult`` that returns one value per row (plus optional extra columns such as
``is_<name>`` flags, and a small summary: how many rows it flags, the cutoff and why). ::

    @register
    @dataclass(frozen=True)
    class TextLength(Score):
        name: str = "text_length"
        title: str = "Text length (characters)"
        requires: tuple = ("texts",)
        direction: str = "neutral"

        def compute(self, ctx):
            return ScoreResult(np.array([len(t) for t in ctx.texts], dtype=float))

``requires`` names *resources* of the :class:`ScoreContext`: ``texts``, ``labels`` (and ``classes``),
``embeddings``, plus any resource another module registers with :func:`resource` (e.g. ``probe``), and
``score:<name>`` for the columns of a score computed earlier. A score whose resources are missing is skipped
with the reason in the stage summary; a score that raises a :class:`CurateError` (e.g. "only one class") is
skipped the same way — the other scores still run.

The contract test (tests/test_score_contract.py) runs every registered score on tiny synthetic data and checks
shape, dtype, NaN policy, determinism and direction. Add a module name to :data:`SCORE_MODULES` to register it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import resources
from ..errors import CurateError
from ..labels import check_judgeable, encode_labels

DIRECTIONS = ("higher_better", "higher_worse", "neutral")


@dataclass
class ScoreResult:
    """One value per row; extra per-row columns (flags, suggestions); a summary dict for the pages."""

    values: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    name: str = ""
    title: str = ""
    requires: tuple = ()
    direction: str = "neutral"  # higher_better | higher_worse | neutral
    version: str = "1"
    description: str = ""
    #: value for rows a score cannot judge (e.g. unlabelled rows for label scores)
    nan_policy: str = "never"  # "never" | "unlabelled" (NaN exactly where the label is missing) | "allowed"
    params: dict = field(default_factory=dict)

    def compute(self, ctx: "ScoreContext") -> ScoreResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def settings(self, ctx: "ScoreContext") -> dict:
        """This score's parameters: its defaults (``params``) updated by the run's ``scores.params[name]``."""
        return {**self.params, **ctx.params.get(self.name, {})}


_SCORES: dict[str, Score] = {}


def register(cls: type) -> type:
    """Class decorator: instantiate the score dataclass with its defaults and add it to the registry."""
    inst = cls()
    if not inst.name or inst.name in _SCORES and type(_SCORES[inst.name]) is not cls:
        raise ValueError(f"score name {inst.name!r} is empty or already taken")
    if inst.direction not in DIRECTIONS:
        raise ValueError(f"score {inst.name}: direction must be one of {DIRECTIONS}")
    _SCORES[inst.name] = inst
    return cls


def registered() -> dict[str, Score]:
    """The scores registered so far (``curate_core.scores.registry()`` imports every plugin first)."""
    return _SCORES


# ---------------------------------------------------------------------------------------------- context
class ScoreContext:
    """Lazy access to what scores need. Built from a workspace (``from_store``) or from arrays (tests)."""

    def __init__(self, n: int, values: dict[str, Any] | None = None, store: Any = None,
                 params: dict[str, dict] | None = None) -> None:
        self.n = n
        self._values: dict[str, Any] = dict(values or {})
        self.store = store
        self.params = params or {}
        self.scores: dict[str, np.ndarray] = {}  # columns of scores computed so far (name -> values)
        #: set by the `scores` stage: ``fn(done, total, message)`` for progress inside a long score
        self.on_progress: Callable[[int, int, str], None] | None = None

    @classmethod
    def from_arrays(cls, texts: list[str], labels: list[str | None] | None = None,
                    embeddings: np.ndarray | None = None, **resources: Any) -> "ScoreContext":
        """For tests and notebooks: a context over in-memory data (ids are 0..n-1)."""
        n = len(texts)
        vals: dict[str, Any] = {"texts": list(texts), "row_ids": np.arange(n, dtype=np.int64),
                                "ids": [str(i) for i in range(n)]}
        if labels is not None:
            vals.update(encode_labels(labels))
        if embeddings is not None:
            vals["embeddings"] = np.asarray(embeddings, dtype=np.float32)
        vals.update(resources)
        return cls(n, vals)

    @classmethod
    def from_store(cls, store: Any, params: dict[str, dict] | None = None) -> "ScoreContext":
        return cls(store.count(), store=store, params=params)

    def has(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except CurateError:
            return False

    def get(self, name: str) -> Any:
        if name.startswith("score:"):
            key = name.split(":", 1)[1]
            if key not in self.scores:
                raise CurateError(f"needs the score `{key}`, which was not computed")
            return self.scores[key]
        if name not in self._values:
            self._values[name] = self._load(name)
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def report(self, done: int, total: int, message: str = "") -> None:
        """Progress inside a long score (k-means, neighbour search); a no-op outside the stage."""
        if self.on_progress is not None:
            self.on_progress(done, total, message)

    def param(self, score: str, key: str, default: Any) -> Any:
        return self.params.get(score, {}).get(key, default)

    def _load(self, name: str) -> Any:
        if self.store is None:
            raise CurateError(f"no `{name}` in this context")
        if name in resources.SAMPLE_RESOURCES:
            df = self.store.sample_frame(["row_id", "id", "text", "label"])
            self._values.update({"texts": df["text"].tolist(), "row_ids": df["row_id"].to_numpy(np.int64),
                                 "ids": df["id"].tolist()})
            self._values.update(encode_labels(df["label"].tolist()))
            return self._values[name]
        return resources.get(name).load(self.store)


def labelled_classes(ctx: ScoreContext) -> tuple[np.ndarray, list[str]]:
    """(codes, classes) for label-based scores, refusing data they cannot judge with a clear message."""
    codes, classes = ctx.label_codes, ctx.classes
    check_judgeable(codes, classes)
    return codes, classes


def compute_all(ctx: ScoreContext, only: list[str] | None = None,
                progress: Callable[[int, int, str], None] | None = None) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Compute every registered score that can run. Returns (columns, summaries, skipped name → reason)."""
    reg = registered()
    names = [n for n in reg if only is None or n in only]
    columns: dict[str, np.ndarray] = {}
    summaries: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for i, name in enumerate(names):
        sc = reg[name]
        if progress:
            progress(i, len(names), name)
        try:
            for req in sc.requires:
                ctx.get(req)
            res = sc.compute(ctx)
        except CurateError as e:
            skipped[name] = str(e)  # message (hint): the hint names the stage to run
            continue
        vals = np.asarray(res.values)
        if vals.shape != (ctx.n,):
            raise ValueError(f"score {name} returned shape {vals.shape}, expected ({ctx.n},)")
        columns[name] = vals
        ctx.scores[name] = vals
        for col, v in res.columns.items():
            v = np.asarray(v)
            if v.shape[0] != ctx.n:
                raise ValueError(f"score {name} column {col} has {v.shape[0]} rows, expected {ctx.n}")
            columns[col] = v
            ctx.scores[col] = v
        summaries[name] = {"title": sc.title, "direction": sc.direction, "version": sc.version, **res.summary}
    if progress:
        progress(len(names), len(names), "")
    return columns, summaries, skipped
