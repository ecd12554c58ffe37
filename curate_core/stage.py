"""What a stage is: its declaration (:func:`stage`), the context it runs in, its checkpoint, its run key.

Stage modules (textstats, embed, project, cluster, dynamics, scoring) import this module only; the pipeline
(:mod:`curate_core.pipeline`) imports them, so the imports run one way.

A *stage* turns workspace tables into new ones (``embed`` → ``embeddings``, ``project`` → ``projection`` …).
Its **run key** hashes its name, implementation version, parameters and inputs (the data fingerprint plus the
run keys of the stages it requires), so a finished run is found and reused instead of recomputed, and any change
upstream makes it stale.

A stage body is a plan over the shapes of work in :mod:`curate_core.execution`, run by ``ctx.executor``: its
inputs are snapshot to ``checkpoints/<stage>/<run_key>/input/``, each finished batch or task is written there as
a part named by the rows it covers (atomically); when all are there a ``_COMPLETE`` marker is written, the parts
are imported into DuckDB in one transaction and the folder is removed. A run killed at any moment resumes from
the parts already written and gives the same result.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .columns import Column, Table, table
from .errors import CurateError
from .execution import (Batch, BatchFn, Checkpoint, Executor, LocalExecutor, Parts, ProgressEvent,  # noqa: F401
                        ProgressFn, Tracker, cut, format_seconds, snapshot)
from .store import Store, register_output_table


@dataclass(frozen=True)
class Option:
    """A convenience flag of `run` that sets parameters of its stage — declared here, as data; the CLI builds
    its arguments from these (the core never imports the CLI)."""

    flag: str  # e.g. "--embedder"
    help: str
    param: str | None = None  # the stage parameter the value goes to (None: only the stage's apply_options uses it)
    choices: tuple = ()
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Stage:
    name: str
    version: str
    title: str
    fn: Callable[["StageContext"], dict]
    requires: tuple[str, ...] = ()
    outputs: tuple[Table, ...] = ()
    defaults: dict = field(default_factory=dict)
    options: tuple[Option, ...] = ()
    #: {option dest: value given} → this stage's parameters; None: each option's value goes to its `param`
    apply_options: Callable[[dict[str, Any]], dict] | None = None
    #: a parameter holding per-part settings (scores: ``params``), so ``--param stage.part.key=v`` sets
    #: ``params[part][key]`` and keeps the other parts' settings
    nested: str | None = None
    #: ``fn(params)`` raising CurateError for parameters this stage would refuse: called for every stage of a
    #: run before the first one starts
    check: Callable[[dict], Any] | None = None

    @property
    def columns(self) -> tuple[Column, ...]:
        """The per-row feature columns this stage writes."""
        return tuple(c for t in self.outputs if t.features for c in t.columns)

    def params_from_options(self, values: dict[str, Any]) -> dict:
        """This stage's parameters from the values of its options (None = not given)."""
        if self.apply_options is not None:
            return self.apply_options(values)
        return {o.param: values[o.dest] for o in self.options if o.param and values.get(o.dest) is not None}


_REGISTRY: dict[str, Stage] = {}


def stage(name: str, *, version: str, title: str, requires: tuple[str, ...] = (),
          outputs: Sequence[str | Table] = (), defaults: dict | None = None, options: tuple[Option, ...] = (),
          apply_options: Callable[[dict[str, Any]], dict] | None = None, nested: str | None = None,
          check: Callable[[dict], Any] | None = None) -> Callable:
    """Register ``fn(ctx) -> summary`` as a pipeline stage. *outputs* are the tables it writes (with their
    declared per-row columns); *options* are the `run` flags that set its parameters."""

    def deco(fn: Callable[["StageContext"], dict]) -> Callable:
        tables = tuple(table(t) for t in outputs)
        for t in tables:
            register_output_table(t.name, name, features=t.features)
        _REGISTRY[name] = Stage(name, version, title, fn, tuple(requires), tables, dict(defaults or {}),
                                tuple(options), apply_options, nested, check)
        return fn

    return deco


def registered() -> dict[str, Stage]:
    """The stages declared so far, by name (:func:`curate_core.pipeline.registry` imports them all, in order)."""
    return _REGISTRY


# -------------------------------------------------------------------------------------------- context
@dataclass
class StageContext:
    """What a stage body gets: the workspace, its parameters and run key, an executor and progress reporting."""

    store: Store
    stage: Stage
    params: dict
    run_key: str
    on_progress: ProgressFn | None = None
    executor: Executor = field(default_factory=LocalExecutor)
    #: what the run key was made of: the data fingerprint (``data``) and the run key of each required stage
    inputs: dict = field(default_factory=dict)
    force: bool = False  # recompute even what could be reused (``run --force``)
    started: float = field(default_factory=time.monotonic)

    @property
    def checkpoint(self) -> Checkpoint:
        return checkpoint_of(self.store, self.stage.name, self.run_key)

    def progress(self, done: int, total: int, message: str = "", resumed: int = 0, unit: str = "rows") -> None:
        """Report progress (*resumed*: how much of *done* came from a checkpoint, for an honest ETA; *unit*:
        what the counts count, e.g. epochs)."""
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.stage.name, int(done), int(total),
                                           time.monotonic() - self.started, message, int(resumed), unit))

    def phase(self) -> None:
        """A new phase with its own unit of progress (e.g. rows, then scores): its ETA starts from now."""
        self.started = time.monotonic()

    def tracker(self, total: int, **kw: Any) -> Tracker:
        """Progress of a piece of work the executor runs (see :class:`~curate_core.execution.Tracker`)."""
        return Tracker(self.progress, total, **kw)

    def snapshot_samples(self, columns: Sequence[str], batch_rows: int, ck: Checkpoint | None = None) -> list[Batch]:
        """``samples`` cut into row-id ranges of *batch_rows*; the input of each range whose part is missing is
        written to the checkpoint (row ids are dense from 0 and never deleted, so range *i* is always the same
        rows and a killed run's parts line up with the rerun)."""
        if int(batch_rows) < 1:
            raise CurateError(f"batch_size must be at least 1; got {batch_rows}",
                              f"e.g. --param {self.stage.name}.batch_size=10000")
        batches = [Batch(lo, hi, stop - start) for start, stop, lo, hi in cut(range(self.store.count()),
                                                                              int(batch_rows))]
        return snapshot(ck or self.checkpoint, batches, lambda b: self.store.sample_range(columns, b.lo, b.hi))

    def map_samples(self, columns: Sequence[str], fn: BatchFn, batch_size: int, unit: str = "rows",
                    ck: Checkpoint | None = None) -> Parts:
        """Apply the row-wise *fn* to ``samples`` in fixed row-id batches through the executor; resumable.

        *fn* must be a pure row-wise map (the same batch gives the same table), so a resumed run equals an
        uninterrupted one, on any executor. *ck*: a checkpoint of its own (default: the run's), for a stage that
        maps more than one function."""
        ck = ck or self.checkpoint
        batches = self.snapshot_samples(columns, batch_size, ck)
        names = self.executor.map_batches(fn, batches, ck, self.tracker(self.store.count(), unit=unit))
        return ck.parts(names)

    def import_parts(self, table: str, parts: Parts) -> int:
        """Replace the output *table* with the rows of *parts*, in one transaction (marks the run complete)."""
        self.checkpoint.mark_complete()
        return self.store.replace_table(table, parquet_files=parts.source())


def checkpoint_of(store: Store, stage_name: str, run_key: str | None = None) -> Checkpoint:
    """The checkpoint of a stage's run (or the folder of all its runs) under the workspace's checkpoint root."""
    ck = Checkpoint(store.checkpoint_root).child(stage_name)
    return ck.child(run_key) if run_key else ck


# ---------------------------------------------------------------------------------------------- keys
def digest(doc: Any) -> str:
    """The content address of a JSON-able document (a run key): 20 hex digits of its sha256."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def run_key(st: Stage, params: dict, inputs: str) -> str:
    return digest({"stage": st.name, "version": st.version, "params": params, "inputs": inputs})

