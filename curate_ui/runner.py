"""Pipeline runs in a background thread of the app's own process, with progress the pages can poll.

One run at a time per workspace. The thread calls ``Workspace.run`` (the same code the CLI runs); progress
events land in a :class:`BackgroundRun` that a fragment redraws every second. Other long core work (a mixture
search) runs the same way as a :class:`BackgroundJob`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st

from curate_core import CurateError, Workspace
from curate_core.demo import RUN_ON_OPEN
from curate_core.execution import Executor, make_executor
from curate_core.pipeline import ProgressEvent, RunCancelled, format_seconds

from . import state


@dataclass(kw_only=True)
class Background:
    """What every piece of background work has: how it ended, when, its thread and the engine it ran on."""

    error: CurateError | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    thread: threading.Thread | None = None
    engine: str = "local"

    @property
    def running(self) -> bool:
        return self.finished is None

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def _launch(ws: Workspace, job: Background, name: str, body: Callable[[Executor], None]) -> None:
    """Make the Overview's engine here (Ray connects from the app's thread; a bad address is reported at once),
    then run ``body(executor)`` in a daemon thread; a CurateError is kept as is, a bug is logged and kept as one
    line, and the job is marked finished either way."""
    try:
        executor = make_engine(engine_settings())
    except CurateError as e:
        job.error, job.finished = e, time.monotonic()
        return
    job.engine = executor.name

    def target() -> None:
        try:
            body(executor)
        except CurateError as e:
            job.error = e
        except Exception as e:  # a bug: keep the app alive, log the traceback, show one line
            job.error = state.bug_error(ws, e)
        finally:
            job.finished = time.monotonic()

    job.thread = threading.Thread(target=target, name=f"curate-{name}-{ws.path.name}", daemon=True)
    job.thread.start()


@dataclass
class BackgroundRun(Background):
    stages: list[str] | None
    params: dict
    events: dict[str, ProgressEvent] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancelled: str | None = None  # the stage it stopped in, once a cancel took effect

    def on_progress(self, ev: ProgressEvent) -> None:
        self.events[ev.stage] = ev
        if self.cancel.is_set():  # stop at this progress report (the next batch): the stage resumes next time
            raise RunCancelled(ev.stage)

    def current(self) -> ProgressEvent | None:
        return next(reversed(self.events.values()), None) if self.events else None


@st.cache_resource(show_spinner=False)
def _runs() -> dict[str, BackgroundRun]:
    return {}


def get_run(ws: Workspace) -> BackgroundRun | None:
    return _runs().get(str(ws.path))


ENGINE_KEY = "_engine"  # session state: the Overview's "where it runs" choice, used by every run the app starts


def engine_settings() -> dict:
    """{engine, device, address, num_cpus}: what the Overview's engine panel holds (default: local, auto)."""
    return {"engine": "local", "device": "auto", "address": "local", "num_cpus": None,
            **st.session_state.get(ENGINE_KEY, {})}


def make_engine(settings: dict) -> Executor:
    """The executor the settings name, made here (not in the run's thread): Ray connects from the app's thread,
    and a bad address or a missing GPU is reported at once."""
    options = {}
    if settings["engine"] == "ray":
        options = {"address": settings.get("address") or "local", "num_cpus": settings.get("num_cpus") or None}
    return make_executor(settings["engine"], device=settings.get("device") or "auto", **options)


def start_run(ws: Workspace, stages: list[str] | None = None, params: dict | None = None,
              force: bool = False) -> BackgroundRun:
    """Start the pipeline in a background thread unless one is already running for this workspace, on the
    engine the Overview's panel names."""
    runs = _runs()
    old = runs.get(str(ws.path))
    if old is not None and old.running:
        return old
    run = BackgroundRun(stages, params or {})
    runs[str(ws.path)] = run

    def body(executor: Executor) -> None:
        try:
            run.results = ws.run(stages, params=params, progress=run.on_progress, force=force, engine=executor)
        except CurateError as e:
            run.results = getattr(e, "results", [])
            raise
        except RunCancelled as e:
            run.cancelled = str(e) or "?"

    _launch(ws, run, "run", body)
    return run


def run_on_open(ws: Workspace) -> BackgroundRun | None:
    """Start the pipeline of a workspace marked to finish in the app (``curate demo --quick``: the data and its
    vectors are in, the rest runs here in the background while the pages open), once."""
    if ws.store.read_only or ws.store.get_meta(RUN_ON_OPEN) != "1":
        return None
    ws.store.set_meta(RUN_ON_OPEN, "0")
    return start_run(ws)


def describe(run: BackgroundRun) -> str:
    took = (run.finished or time.monotonic()) - run.started
    return format_seconds(took)


# ------------------------------------------------------------------------------------- other work
@dataclass
class BackgroundJob(Background):
    """One piece of core work other than a pipeline run (e.g. a mixture search) in a background thread: the
    core's ``progress(done, total, message)`` lands here, the result or the error when it ends."""

    what: str
    done: int = 0
    total: int = 0
    message: str = ""
    result: Any = None

    def on_progress(self, done: int, total: int, message: str = "", **_: Any) -> None:
        self.done, self.total, self.message = int(done), int(total), message


@st.cache_resource(show_spinner=False)
def _jobs() -> dict[tuple[str, str], BackgroundJob]:
    return {}


def get_job(ws: Workspace, what: str) -> BackgroundJob | None:
    return _jobs().get((str(ws.path), what))


def start_job(ws: Workspace, what: str, work: Callable[[Executor, Callable[..., None]], Any]) -> BackgroundJob:
    """Run ``work(executor, progress)`` in a background thread on the Overview's engine, unless a job of this
    kind is already running for this workspace (that one is returned)."""
    jobs = _jobs()
    old = jobs.get((str(ws.path), what))
    if old is not None and old.running:
        return old
    job = jobs[(str(ws.path), what)] = BackgroundJob(what)

    def body(executor: Executor) -> None:
        job.result = work(executor, job.on_progress)

    _launch(ws, job, what, body)
    return job
