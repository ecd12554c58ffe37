"""The pipeline: which stages there are, in which order, what a run would reuse, and the run itself.

Stages are declared in their own modules with :func:`curate_core.stage.stage`; this module imports them (the
list below is the pipeline's order) and runs them. See :mod:`curate_core.stage` for run keys and checkpoints.

Adding a stage: a module with a function ``run(ctx) -> summary dict`` decorated with ``@stage(...)``, and one
import line below.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from .columns import EXPORT_ADDED
from .errors import CurateError, choices
from .execution import Checkpoint, Executor, LocalExecutor, ProgressEvent, ProgressFn, format_seconds  # noqa: F401
from .stage import Option, Stage, StageContext, _REGISTRY, checkpoint_of, registered, run_key, stage  # noqa: F401
from .store import Store
# the stages, in pipeline order: importing a module registers its stage, and registration order is run order
from . import textstats, embed, project, cluster, dynamics, scoring  # noqa: F401,E402
from . import ray_engine  # noqa: F401,E402  (registers the "ray" engine; imports Ray only when it is used)


def registry() -> dict[str, Stage]:
    """All stages, in dependency order (otherwise in registration order: the pipeline's own first, then any
    registered later, e.g. by a test)."""
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

    for name in list(_REGISTRY):
        visit(name)
    return ordered


def _effective_params(st: Stage, last: dict | None, overrides: dict | None) -> dict:
    """Defaults ← parameters of the stage's last run (sticky) ← explicit overrides."""
    params = dict(st.defaults)
    if last is not None and last.get("params"):
        prev = last["params"] if isinstance(last["params"], dict) else json.loads(last["params"])
        params.update({k: v for k, v in prev.items() if k in st.defaults})
    if overrides:
        overrides = _nest(st, params, overrides)
        unknown = sorted(set(overrides) - set(st.defaults))
        if unknown:
            raise CurateError(f"Unknown parameter(s) {choices(unknown)} for stage `{st.name}`",
                              f"parameters of {st.name}: {choices(sorted(st.defaults))}")
        params.update(overrides)
    return params


def _nest(st: Stage, params: dict, overrides: dict) -> dict:
    """Fold ``part.key`` overrides into the stage's nested parameter (``scores.dsir.target=F`` →
    ``params["dsir"]["target"] = F``), on top of its sticky value and of a whole one given in the same run."""
    dotted = {k: v for k, v in overrides.items() if "." in k and k not in st.defaults}
    if not dotted or st.nested is None:
        return overrides
    out = {k: v for k, v in overrides.items() if k not in dotted}
    nested = dict(out.get(st.nested, params.get(st.nested)) or {})
    for k, v in dotted.items():
        part, key = k.split(".", 1)
        nested[part] = {**(nested.get(part) or {}), key: v}
    out[st.nested] = nested
    return out



class RunCancelled(KeyboardInterrupt):
    """A caller asked a run to stop (the app's Cancel button, raised from its progress callback at the next
    progress report): handled like Ctrl-C — the stage is marked interrupted and its checkpoints are kept, so the
    next run resumes where this one stopped."""

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
        elif name in latest or checkpoint_of(store, name).exists():
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
        progress: ProgressFn | None = None, force: bool = False, executor: Executor | None = None) -> list[dict]:
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
        return _run_locked(store, reg, wanted, params or {}, progress, force, executor or LocalExecutor())
    finally:
        lock.release()


def _run_locked(store: Store, reg: dict[str, Stage], wanted: list[str], overrides: dict[str, dict],
                progress: ProgressFn | None, force: bool, executor: Executor) -> list[dict]:
    # any run still marked running belongs to a process that died (we hold the lock now)
    with store.cursor() as cur:
        cur.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
    for name in overrides:
        if name not in reg:
            raise CurateError(f"Parameters given for unknown stage `{name}`", f"stages: {choices(list(reg))}")
    order = closure(wanted)  # a wanted stage pulls in every stage it needs
    first = plan(store, overrides)
    for name in order:  # bad parameters are refused before any stage starts (nothing run, nothing replaced)
        if reg[name].check is not None:
            reg[name].check(first.params[name])
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
        ctx = StageContext(store, st, params, key, progress, executor, json.loads(p.inputs[name]),
                           force=force and name in wanted)
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
        checkpoint_of(store, name).clear()  # this run's parts, and those of runs abandoned with other keys
        results.append({"stage": name, "status": "done", "run_key": key, "summary": summary})
    if failed:
        lines = "; ".join(f"{k}: {v}" for k, v in failed.items())
        err = CurateError(f"Some stages did not finish — {lines}", "fix the cause and run again; finished stages are kept")
        err.results = results  # type: ignore[attr-defined]
        raise err
    return results



def column_origins() -> dict[str, tuple[str, str]]:
    """Every per-row column a stage declares → (the stage, what the column is): for "run stage X" hints."""
    out: dict[str, tuple[str, str]] = {}
    for st in registry().values():
        for c in st.columns:
            out.setdefault(c.name, (st.name, c.title or st.title))
    return out


def tool_columns() -> frozenset[str]:
    """Every per-row column name the tool writes — stage outputs (scores included) and what an export adds. A
    file column with one of these names is kept as ``input_<name>`` at ingest, so it can never stand in for the
    tool's own (re-ingesting an export made with --with-scores must not make its old scores look current)."""
    return frozenset(column_origins()) | frozenset(EXPORT_ADDED)
