"""The score plugin contract: what a score declares, the context it computes in, and the registry.

A score is a frozen dataclass; :func:`register` adds it. It **declares** everything the rest of the tool needs::

    @register
    @dataclass(frozen=True)
    class TextLength(Score):
        name: str = "text_length"
        title: str = "Text length (characters)"
        columns: tuple = (Column("text_length", "DOUBLE", "Text length"),)
        kind: str = "row"              # row (a function of the row alone) | group | global
        requires: tuple = ("texts",)
        topic: str = "quality"
        direction: str = "neutral"

        def compute(self, ctx):
            return ScoreResult(np.array([len(t) for t in ctx.texts], dtype=float))

* ``columns``: its output columns with DuckDB types — the first is the score itself (named like the score),
  the others extra columns such as a boolean flag (``flag=True``) or a suggestion. Every column list elsewhere
  (the scores table, exports, the pages' lists, names reserved at ingest) is derived from these.
* ``kind``: ``row`` scores are a pure function of each row (``compute_batch`` over an Arrow batch), so the
  stage runs them through the executor in row-id batches; ``group`` scores work per group (per label, per
  k-means cell); ``global`` scores need every row at once.
* ``requires``: *resources* (``texts``, ``labels``, ``classes``, ``label_codes``, ``embeddings``, ``probe`` …,
  see :mod:`curate_core.resources`) and ``score:<name>`` for another score it cannot do without; ``uses``: scores
  it reads when they exist (e.g. the exact-duplicate rank prefers the row with the best label quality). The
  computing order is derived from these, and so is each score's run key: changing one score's parameters
  recomputes it and the scores that require or use it, nothing else.
* ``params``: its parameters and their defaults (``--param 'scores.params={"aum": {"percentile": 95}}'``);
  unknown keys are refused.
* ``topic``: which page shows it (``label``, ``duplicates``, ``outliers``, ``quality``); ``method``: a short name
  for flags counted by the label-noise consensus; ``family``: the kind of evidence it is (``confident
  learning``, ``training dynamics``, ``neighbourhood``): with ``consensus.count = "families"`` a family counts
  once, however many of its methods flag a row (default: the method is its own family); ``votes = False``: the
  consensus counts it only when ``consensus.include`` names it.

A score whose resources are missing, or whose compute raises a :class:`CurateError` (e.g. "only one class"), is
skipped with the reason in the stage summary; the other scores still run. The contract test
(tests/test_score_contract.py) runs every registered score on tiny synthetic data and checks shape, dtype,
NaN policy, determinism, direction and that it returns exactly the columns it declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from .. import resources
from ..columns import Column
from ..errors import CurateError, choices
from ..labels import encode_labels, judgeable

DIRECTIONS = ("higher_better", "higher_worse", "neutral")
KINDS = ("row", "group", "global")
TOPICS = ("label", "duplicates", "outliers", "quality")


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
    columns: tuple = ()  # tuple[Column, ...]: the score's own column first
    kind: str = "global"  # row | group | global
    requires: tuple = ()
    uses: tuple = ()  # scores read when they exist
    topic: str = "quality"
    method: str = ""  # short name of its flag for the label-noise consensus ("" = not counted)
    family: str = ""  # its kind of evidence; methods of one family are one vote in the consensus ("" = the method)
    votes: bool = True  # counted by the consensus by default (False: only when consensus.include names it)
    direction: str = "neutral"  # higher_better | higher_worse | neutral
    version: str = "1"
    description: str = ""
    #: value for rows a score cannot judge (e.g. unlabelled rows for label scores)
    nan_policy: str = "never"  # "never" | "unlabelled" (NaN exactly where the label is missing) | "allowed"
    params: dict = field(default_factory=dict)
    #: a short name its parameters may go by (``--param scores.dsir.target=…`` for ``dsir_log_weight``)
    alias: str = ""

    def compute(self, ctx: "ScoreContext") -> ScoreResult:
        """Every row at once. Row scores get this for free from :meth:`compute_batch` and :meth:`summarise`."""
        if self.kind != "row":  # pragma: no cover - abstract
            raise NotImplementedError
        batch = pa.table({"row_id": pa.array(ctx.row_ids, pa.int64()), "text": pa.array(ctx.texts, pa.string())})
        cols = self.compute_batch(batch, self.settings(ctx))
        values = {c.name: np.asarray(cols[c.name]) for c in self.columns}
        main = self.columns[0].name
        return ScoreResult(values[main], {k: v for k, v in values.items() if k != main}, self.summarise(values))

    def compute_batch(self, batch: pa.Table, settings: dict) -> dict[str, np.ndarray]:  # pragma: no cover
        """Row scores: column name → values for one batch of (row_id, text)."""
        raise NotImplementedError

    def summarise(self, values: dict[str, np.ndarray]) -> dict:
        """Row scores: the summary of every row's values (computed on the driver after the batches)."""
        return {}

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def flag(self) -> str | None:
        """Its boolean "flagged" column, if it has one."""
        return next((c.name for c in self.columns if c.flag), None)

    @property
    def needs(self) -> tuple[str, ...]:
        """Scores this one reads: the ``score:`` requirements and the ``uses``."""
        return tuple(r.split(":", 1)[1] for r in self.requires if r.startswith("score:")) + tuple(self.uses)

    def settings(self, ctx: "ScoreContext | dict") -> dict:
        """This score's parameters: its defaults updated by the run's ``scores.params[name]``; unknown keys are
        refused (a typo must not silently run the default)."""
        params = ctx if isinstance(ctx, dict) else ctx.params
        given = params.get(self.name, params.get(self.alias, {}) if self.alias else {}) or {}
        if not isinstance(given, dict):
            raise CurateError(f"Parameters of `{self.name}` must be an object, got {given!r}",
                              f'e.g. --param \'scores.params={{"{self.name}": {{…}}}}\'')
        self.check(given)
        merged = {**self.params, **given}
        self.validate(merged)
        return merged

    def validate(self, settings: dict) -> None:
        """Refuse parameter values the score cannot use (ranges, choices), so the scores stage can refuse a run
        before anything is replaced. Default: nothing to check."""

    def check(self, given: dict) -> None:
        """Refuse parameters the score does not have (a plugin may override this to say it in its own terms)."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise CurateError(f"Unknown parameter(s) {choices(unknown)} for `{self.name}`",
                              f"parameters: {choices(sorted(self.params))}")

    def describe(self) -> dict:
        """What ``scores --list --json`` prints for it."""
        return {"name": self.name, "title": self.title, "columns": [c.as_json() for c in self.columns],
                "kind": self.kind, "requires": list(self.requires), "uses": list(self.uses), "topic": self.topic,
                "direction": self.direction, "version": self.version, "params": dict(self.params),
                "description": self.description}


_SCORES: dict[str, Score] = {}


def register(cls: type) -> type:
    """Class decorator: instantiate the score dataclass with its defaults, check its declaration, add it."""
    inst = cls()
    if not inst.name or inst.name in _SCORES and type(_SCORES[inst.name]) is not cls:
        raise ValueError(f"score name {inst.name!r} is empty or already taken")
    if inst.direction not in DIRECTIONS:
        raise ValueError(f"score {inst.name}: direction must be one of {DIRECTIONS}")
    if inst.kind not in KINDS or inst.topic not in TOPICS:
        raise ValueError(f"score {inst.name}: kind must be one of {KINDS}, topic one of {TOPICS}")
    if not inst.columns or not all(isinstance(c, Column) for c in inst.columns) or inst.columns[0].name != inst.name:
        raise ValueError(f"score {inst.name}: declare its columns, its own column (named {inst.name!r}) first")
    taken = {c for s in _SCORES.values() if s.name != inst.name for c in s.column_names}
    if taken & set(inst.column_names):
        raise ValueError(f"score {inst.name}: column(s) {sorted(taken & set(inst.column_names))} already declared")
    _SCORES[inst.name] = inst
    return cls


def canonical(name: str) -> str | None:
    """The registered score called *name* or going by it as its alias (None if there is none)."""
    if name in _SCORES:
        return name
    return next((s.name for s in _SCORES.values() if s.alias and s.alias == name), None)


def registered() -> dict[str, Score]:
    """The scores registered so far (``curate_core.scores.registry()`` imports every plugin first)."""
    return _SCORES


def ordered(scores: dict[str, Score]) -> list[str]:
    """Score names in computing order: each after the scores it requires or uses (registration order otherwise)."""
    out: list[str] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in out or name not in scores:
            return
        if name in path:
            raise RuntimeError(f"score dependency cycle: {' -> '.join(path + (name,))}")
        for dep in scores[name].needs:
            visit(dep, path + (name,))
        out.append(name)

    for n in scores:
        visit(n)
    return out


# ---------------------------------------------------------------------------------------------- context
class ScoreContext:
    """Lazy access to what scores need. Built from a workspace (``from_store``) or from arrays (tests)."""

    def __init__(self, n: int, values: dict[str, Any] | None = None, store: Any = None,
                 params: dict[str, dict] | None = None) -> None:
        self.n = n
        self._values: dict[str, Any] = dict(values or {})
        self.store = store
        self.params = params or {}
        self.scores: dict[str, np.ndarray] = {}  # columns of scores computed so far (column -> values)
        #: ``fn(column) -> values | None``: columns of scores computed in an earlier run (the scores table)
        self.earlier: Callable[[str], np.ndarray | None] | None = None
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
            return self.column(name.split(":", 1)[1])
        if name not in self._values:
            self._values[name] = self._load(name)
        return self._values[name]

    def column(self, name: str) -> np.ndarray:
        """A column of a score computed before this one (in this run, or kept from an earlier one)."""
        if name not in self.scores and self.earlier is not None:
            v = self.earlier(name)
            if v is not None:
                self.scores[name] = v
        if name not in self.scores:
            raise CurateError(f"needs the score `{name}`, which was not computed")
        return self.scores[name]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def report(self, done: int, total: int, message: str = "") -> None:
        """Progress inside a long score (k-means, neighbour search); a no-op outside the stage."""
        if self.on_progress is not None:
            self.on_progress(done, total, message)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """A value several scores derive from the same resources (e.g. the estimated noise rate), computed once
        per context, i.e. once per scores run."""
        if key not in self._values:
            self._values[key] = compute()
        return self._values[key]

    def param(self, score: str, key: str, default: Any) -> Any:
        return self.params.get(score, {}).get(key, default)

    def _load(self, name: str) -> Any:
        if self.store is None:
            raise CurateError(f"no `{name}` in this context")
        if name == "row_ids":
            return self.store.row_ids()
        if name in ("texts", "ids"):  # the texts only when a score reads them (label scores do not)
            df = self.store.sample_frame(["id", "text"])
            self._values.update({"texts": df["text"].tolist(), "ids": df["id"].tolist()})
            return self._values[name]
        if name in resources.SAMPLE_RESOURCES:  # labels, classes, label_codes
            self._values.update(encode_labels(self.store.sample_frame(["label"])["label"].tolist()))
            return self._values[name]
        return resources.get(name).load(self.store)


def labelled_classes(ctx: ScoreContext) -> tuple[np.ndarray, list[str]]:
    """(codes, classes) for label-based scores — without classes too small to judge, whose rows then get NaN
    and no flag — refusing data they cannot judge at all with a clear message."""
    codes, classes, _ = judgeable(ctx.label_codes, ctx.classes)  # singleton classes: their rows are not judged
    return codes, classes


def compute_one(sc: Score, ctx: ScoreContext) -> tuple[dict[str, np.ndarray], dict]:
    """Run one score: (its declared columns → values, its summary); checks shape and columns. A CurateError
    means "skip it" (its message says why)."""
    for req in sc.requires:
        ctx.get(req)
    res = sc.compute(ctx)
    out = {sc.name: np.asarray(res.values), **{k: np.asarray(v) for k, v in res.columns.items()}}
    if sorted(out) != sorted(sc.column_names):
        raise ValueError(f"score {sc.name} returned columns {sorted(out)}, but declares {sorted(sc.column_names)}")
    for col, v in out.items():
        if v.shape[:1] != (ctx.n,) or (col == sc.name and v.ndim != 1):
            raise ValueError(f"score {sc.name} column {col} has shape {v.shape}, expected ({ctx.n},)")
    ctx.scores.update(out)
    return out, {"title": sc.title, "direction": sc.direction, "version": sc.version, **res.summary}


def compute_all(ctx: ScoreContext, only: list[str] | None = None,
                progress: Callable[[int, int, str], None] | None = None) -> tuple[dict[str, np.ndarray], dict, dict]:
    """Compute every registered score that can run, in dependency order, in memory (notebooks, tests; the
    `scores` stage does the same per score run key). Returns (columns, summaries, skipped name → reason)."""
    reg = registered()
    names = [n for n in ordered(reg) if only is None or n in only]
    columns: dict[str, np.ndarray] = {}
    summaries: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for i, name in enumerate(names):
        if progress:
            progress(i, len(names), name)
        try:
            cols, summaries[name] = compute_one(reg[name], ctx)
        except CurateError as e:
            skipped[name] = str(e)  # message (hint): the hint names the stage to run
            continue
        columns.update(cols)
    if progress:
        progress(len(names), len(names), "")
    return columns, summaries, skipped
