"""What a stage is: its declaration (:func:`stage`), the context it runs in, its checkpoint, its run key.

Stage modules (textstats, embed, project, cluster, dynamics, scoring) import this module only; the pipeline
(:mod:`curate_core.pipeline`) imports them, so the imports run one way.

A *stage* turns workspace tables into new ones (``embed`` → ``embeddings``, ``project`` → ``projection`` …).
Its **run key** hashes its name, implementation version, parameters and inputs (the data fingerprint plus the
run keys of the stages it requires), so a finished run is found and reused instead of recomputed, and any change
upstream makes it stale.

Long stages work in deterministic batches. Each finished batch is written to
``checkpoints/<stage>/<run_key>/part-NNNNN.parquet`` (atomically: temp file + rename); when all are there a
``_COMPLETE`` marker is written, the parts are imported into DuckDB in one transaction and the folder is removed.
A run killed at any moment resumes from the parts already written and gives the same result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CurateError
from .store import Store, register_output_table


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    done: int
    total: int
    elapsed: float
    message: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None until there is a rate)."""
        if self.done <= 0 or self.total <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, self.elapsed / self.done * (self.total - self.done))

    def describe(self) -> str:
        eta = self.eta
        left = "" if eta is None else f", about {format_seconds(eta)} left"
        msg = f" · {self.message}" if self.message else ""
        return f"{self.stage}: {self.done:,}/{self.total:,}{left}{msg}"


ProgressFn = Callable[[ProgressEvent], None]


def format_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


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
    outputs: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)
    options: tuple[Option, ...] = ()
    #: {option dest: value given} → this stage's parameters; None: each option's value goes to its `param`
    apply_options: Callable[[dict[str, Any]], dict] | None = None

    def params_from_options(self, values: dict[str, Any]) -> dict:
        """This stage's parameters from the values of its options (None = not given)."""
        if self.apply_options is not None:
            return self.apply_options(values)
        return {o.param: values[o.dest] for o in self.options if o.param and values.get(o.dest) is not None}


_REGISTRY: dict[str, Stage] = {}


def stage(name: str, *, version: str, title: str, requires: tuple[str, ...] = (), outputs: tuple[str, ...] = (),
          defaults: dict | None = None, options: tuple[Option, ...] = (),
          apply_options: Callable[[dict[str, Any]], dict] | None = None) -> Callable:
    """Register ``fn(ctx) -> summary`` as a pipeline stage. *outputs* are the per-row tables it writes;
    *options* are the `run` flags that set its parameters."""

    def deco(fn: Callable[["StageContext"], dict]) -> Callable:
        for t in outputs:
            register_output_table(t, name)
        _REGISTRY[name] = Stage(name, version, title, fn, tuple(requires), tuple(outputs), dict(defaults or {}),
                                tuple(options), apply_options)
        return fn

    return deco


def registered() -> dict[str, Stage]:
    """The stages declared so far, by name (:func:`curate_core.pipeline.registry` imports them all, in order)."""
    return _REGISTRY


# --------------------------------------------------------------------------------------- checkpoints
class Checkpoint:
    """Parquet shards of one run in progress, plus a completion marker."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def part_path(self, i: int) -> Path:
        return self.root / f"part-{i:05d}.parquet"

    def has(self, i: int) -> bool:
        return self.part_path(i).exists()

    def write(self, i: int, table: pa.Table) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".part-{i:05d}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.part_path(i))  # atomic: a part is either whole or absent
        delay = float(os.environ.get("CURATE_DEBUG_BATCH_DELAY", "0") or 0)  # testing aid: reliable kill -9 tests
        if delay:
            time.sleep(delay)

    def read(self, i: int) -> pa.Table:
        return pq.read_table(self.part_path(i))

    def parts(self) -> list[Path]:
        return sorted(self.root.glob("part-*.parquet")) if self.root.exists() else []

    def mark_complete(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)  # a run with nothing left to do wrote no parts
        (self.root / "_COMPLETE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))

    @property
    def complete(self) -> bool:
        return (self.root / "_COMPLETE").exists()

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -------------------------------------------------------------------------------------------- context
@dataclass
class StageContext:
    store: Store
    stage: Stage
    params: dict
    run_key: str
    on_progress: ProgressFn | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.store.checkpoint_dir / self.stage.name / self.run_key)

    def progress(self, done: int, total: int, message: str = "") -> None:
        if self.on_progress is not None:
            self.on_progress(ProgressEvent(self.stage.name, int(done), int(total),
                                           time.monotonic() - self.started, message))

    def map_batches(self, columns: list[str], fn: Callable[[pa.Table], pa.Table],
                    batch_size: int, unit: str = "rows") -> list[Path]:
        """Apply *fn* to ``samples`` in fixed row_id batches, one checkpoint part per batch; resumable.

        Returns the part files, in order. *fn* must be a pure row-wise map (the same batch gives the same table),
        so a resumed run equals an uninterrupted one.
        """
        if int(batch_size) < 1:
            raise CurateError(f"batch_size must be at least 1; got {batch_size}", f"e.g. --param {self.stage.name}.batch_size=10000")
        total = self.store.count()
        ck = self.checkpoint
        done = resumed = 0
        self.progress(0, total)
        for i, table, n in self.store.iter_samples(columns, batch_size, skip=ck.has):
            if table is None:
                resumed += n
            else:
                ck.write(i, fn(table))
            done += n
            self.progress(done, total, f"{resumed:,} {unit} from checkpoint" if resumed else "")
        ck.mark_complete()
        return ck.parts()


# ---------------------------------------------------------------------------------------------- keys
def run_key(st: Stage, params: dict, inputs: str) -> str:
    blob = json.dumps({"stage": st.name, "version": st.version, "params": params, "inputs": inputs},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def import_parts(ctx: StageContext, table: str, parts: list[Path]) -> int:
    """Replace *table* with the rows of checkpoint *parts* in one transaction."""
    return ctx.store.replace_table(table, parquet_files=parts)
