"""Stages: registry, content-addressed run keys, checkpoints, resume, progress.

A *stage* turns workspace tables into new ones (``embed`` → ``embeddings``, ``project`` → ``projection`` …).
Its **run key** hashes its name, implementation version, parameters and inputs (the data fingerprint plus the
run keys of the stages it requires), so a finished run is found and reused instead of recomputed, and any change
upstream makes it stale.

Long stages work in deterministic batches. Each finished batch is written to
``checkpoints/<stage>/<run_key>/part-NNNNN.parquet`` (atomically: temp file + rename); when all are there a
``_COMPLETE`` marker is written, the parts are imported into DuckDB in one transaction and the folder is removed.
A run killed at any moment resumes from the parts already written and gives the same result.

Adding a stage: write a function ``run(ctx) -> summary dict`` in its own module, decorate it with
:func:`stage`, and add the module to :data:`STAGE_MODULES`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CurateError, choices
from .store import Store, register_output_table

#: modules whose import registers stages, in pipeline order
STAGE_MODULES = [
    "curate_core.textstats",
    "curate_core.embed",
    "curate_core.project",
    "curate_core.cluster",
    "curate_core.dynamics",
    "curate_core.scoring",
]


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
class Stage:
    name: str
    version: str
    title: str
    fn: Callable[["StageContext"], dict]
    requires: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, Stage] = {}


def stage(name: str, *, version: str, title: str, requires: tuple[str, ...] = (), outputs: tuple[str, ...] = (),
          defaults: dict | None = None) -> Callable:
    """Register ``fn(ctx) -> summary`` as a pipeline stage. *outputs* are the per-row tables it writes."""

    def deco(fn: Callable[["StageContext"], dict]) -> Callable:
        for t in outputs:
            register_output_table(t, name)
        _REGISTRY[name] = Stage(name, version, title, fn, tuple(requires), tuple(outputs), dict(defaults or {}))
        return fn

    return deco


def registry() -> dict[str, Stage]:
    """All stages, in dependency order (imports the stage modules on first use)."""
    for mod in STAGE_MODULES:
        importlib.import_module(mod)
    ordered: dict[str, Stage] = {}

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in ordered:
            return
        if name in path:
            raise RuntimeError(f"stage dependency cycle: {' -> '.join(path + (name,))}")
        if name not in _REGISTRY:
            raise RuntimeError(f"stage {path[-1]} requires unknown stage {name}")
        for r in _REGISTRY[name].requires:
            visit(r, path + (name,))
        ordered[name] = _REGISTRY[name]

    order = {m.rsplit(".", 1)[-1]: i for i, m in enumerate(STAGE_MODULES)}
    for name in sorted(_REGISTRY, key=lambda n: order.get(_REGISTRY[n].fn.__module__.rsplit(".", 1)[-1], 99)):
        visit(name)
    return ordered


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


def _effective_params(st: Stage, last: dict | None, overrides: dict | None) -> dict:
    """Defaults ← parameters of the stage's last run (sticky) ← explicit overrides."""
    params = dict(st.defaults)
    if last is not None and last.get("params"):
        prev = last["params"] if isinstance(last["params"], dict) else json.loads(last["params"])
        params.update({k: v for k, v in prev.items() if k in st.defaults})
    if overrides:
        unknown = sorted(set(overrides) - set(st.defaults))
        if unknown:
            raise CurateError(f"Unknown parameter(s) {choices(unknown)} for stage `{st.name}`",
                              f"parameters of {st.name}: {choices(sorted(st.defaults))}")
        params.update(overrides)
    return params


@dataclass
class Plan:
    """For each stage: the parameters and run key a run would use now, and whether that run exists."""

    params: dict[str, dict]
    keys: dict[str, str]
    inputs: dict[str, str]
    done: dict[str, bool]


def plan(store: Store, overrides: dict[str, dict] | None = None) -> Plan:
    reg = registry()
    # sticky parameters come from the last run that did not fail (a failed run's parameters may be the cause);
    # an interrupted run counts, so a plain rerun resumes it from its checkpoints
    latest = store.latest_runs(statuses=("done", "running", "interrupted"))
    # the tables hold the output of each stage's last started run: a key is done only if that run is it and
    # finished (a later run that died may have written its tables already; after runs A, B, A recomputes)
    last = store.latest_runs()
    fp = store.data_fingerprint()
    p = Plan({}, {}, {}, {})
    for name, st in reg.items():
        params = _effective_params(st, latest.get(name), (overrides or {}).get(name))
        inputs = json.dumps({"data": fp, **{r: p.keys[r] for r in st.requires}}, sort_keys=True)
        key = run_key(st, params, inputs)
        p.params[name], p.keys[name], p.inputs[name] = params, key, inputs
        run = last.get(name)
        p.done[name] = run is not None and run["status"] == "done" and run["run_key"] == key
    return p


def stage_status(store: Store) -> dict[str, str]:
    """stage → "done" (a finished run matches the current data and parameters), "partial" (started,
    interrupted, failed, or finished on older data), or "missing" (never run)."""
    reg = registry()
    p = plan(store)
    latest = store.latest_runs()
    out = {}
    for name in reg:
        if p.done[name]:
            out[name] = "done"
        elif name in latest or (store.checkpoint_dir / name).exists():
            out[name] = "partial"
        else:
            out[name] = "missing"
    return out


# ----------------------------------------------------------------------------------------------- run
_run_locks: dict[str, threading.Lock] = {}
_run_locks_guard = threading.Lock()


def _workspace_lock(store: Store) -> threading.Lock:
    with _run_locks_guard:
        return _run_locks.setdefault(str(store.path), threading.Lock())


def resolve(names: Iterable[str] | None) -> list[str]:
    reg = registry()
    if names is None:
        return list(reg)
    names = [n.strip() for n in names if n and n.strip()]
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise CurateError(f"Unknown stage(s) {choices(unknown)}", f"stages: {choices(list(reg))}")
    return names


def closure(names: Iterable[str]) -> list[str]:
    """*names* and every stage they need, in registry (run) order."""
    reg = registry()
    todo: set[str] = set()

    def need(name: str) -> None:
        if name not in todo:
            todo.add(name)
            for r in reg[name].requires:
                need(r)

    for n in names:
        need(n)
    return [n for n in reg if n in todo]


def run(store: Store, stages: Iterable[str] | None = None, params: dict[str, dict] | None = None,
        progress: ProgressFn | None = None, force: bool = False) -> list[dict]:
    """Run the given stages (all when None) and whatever they require that is not done yet.

    Finished runs with the same key are reused (``force`` recomputes the named stages). A stage that fails
    with a CurateError marks its run failed; stages that need it are skipped, independent ones still run,
    and a CurateError listing the failures is raised at the end. Returns one record per stage.
    """
    reg = registry()
    wanted = resolve(stages)
    if store.count() == 0:
        raise CurateError("The workspace has no rows yet", "ingest a file first: python -m curate_core ingest FILE --workspace DIR")
    lock = _workspace_lock(store)
    if not lock.acquire(blocking=False):
        raise CurateError("A pipeline run is already in progress for this workspace", "wait for it to finish")
    try:
        return _run_locked(store, reg, wanted, params or {}, progress, force)
    finally:
        lock.release()


def _run_locked(store: Store, reg: dict[str, Stage], wanted: list[str], overrides: dict[str, dict],
                progress: ProgressFn | None, force: bool) -> list[dict]:
    # any run still marked running belongs to a process that died (we hold the lock now)
    with store.cursor() as cur:
        cur.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
    for name in overrides:
        if name not in reg:
            raise CurateError(f"Parameters given for unknown stage `{name}`", f"stages: {choices(list(reg))}")
    order = closure(wanted)  # a wanted stage pulls in every stage it needs
    results: list[dict] = []
    failed: dict[str, str] = {}
    for name in order:
        st = reg[name]
        broken = [r for r in st.requires if r in failed]
        if broken:
            results.append({"stage": name, "status": "skipped", "reason": f"needs {', '.join(broken)}"})
            failed[name] = f"skipped: needs {', '.join(broken)}"
            continue
        p = plan(store, overrides)  # recomputed: upstream keys change as stages finish
        key, params = p.keys[name], p.params[name]
        if p.done[name] and not (force and name in wanted):
            results.append({"stage": name, "status": "reused", "run_key": key})
            continue
        ctx = StageContext(store, st, params, key, progress)
        store.start_run(key, name, st.version, params, p.inputs[name])
        t0 = time.monotonic()
        try:
            summary = st.fn(ctx) or {}
        except CurateError as e:
            store.finish_run(key, "failed", error=str(e))
            failed[name] = str(e)
            results.append({"stage": name, "status": "failed", "error": str(e)})
            continue
        except KeyboardInterrupt:  # Ctrl-C: keep checkpoints and parameters, so the same command resumes
            store.finish_run(key, "interrupted", error="interrupted")
            raise
        except BaseException as e:  # a bug: record it, keep checkpoints, re-raise
            store.finish_run(key, "failed", error=f"{type(e).__name__}: {e}")
            raise
        summary = {**summary, "seconds": round(time.monotonic() - t0, 2)}
        store.finish_run(key, "done", summary)
        ctx.checkpoint.clear()
        results.append({"stage": name, "status": "done", "run_key": key, "summary": summary})
    if failed:
        lines = "; ".join(f"{k}: {v}" for k, v in failed.items())
        err = CurateError(f"Some stages did not finish — {lines}", "fix the cause and run again; finished stages are kept")
        err.results = results  # type: ignore[attr-defined]
        raise err
    return results


def import_parts(ctx: StageContext, table: str, parts: list[Path]) -> int:
    """Replace *table* with the rows of checkpoint *parts* in one transaction."""
    return ctx.store.replace_table(table, parquet_files=parts)
