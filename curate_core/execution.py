"""The execution seam: a stage says *what* to compute, an executor decides *where*.

A stage body is a plan over a few shapes of work, each a pure function over Arrow data:

* ``map_batches(fn, batches)`` — a row-wise map (text statistics, embeddings, heuristics, hashing): every
  input batch gives one output part;
* ``fit_sample_then_map(fit, apply, batches)`` — fit a model on a sample (UMAP, HDBSCAN, TF-IDF), then map the
  rest through it;
* ``tasks(fn, tasks)`` — independent pieces (probe folds, threshold runs, per-cluster work), one part each;
* ``totals(fn, files, merge)`` — mergeable totals (sums, counts, maxima) over batches or parts.

The driver snapshots each batch's input to Parquet (``input/batch-<lo>-<hi>.parquet``) and the executor writes
each output to ``part-<lo>-<hi>.parquet`` (or ``task-<key>.parquet``) in the run's :class:`Checkpoint`. Names come
from the row-id range (or task key) a part covers, never from arrival order, so any executor — this module's
:class:`LocalExecutor` in-process, or one that spreads batches over a cluster — writes the same files, a run
killed at any moment resumes from the parts that exist, and the Store imports them in one transaction.
Batch boundaries and seeds depend on the data and the parameters only, never on the number of workers.

A batch function is any picklable callable ``fn(table) -> table``; one with a ``setup()`` method (e.g. one that
loads a model) gets it called once per worker, before its first batch, and not at all when every part exists.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import pickle
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .errors import CurateError, choices


# ------------------------------------------------------------------------------------------- progress
@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    done: int
    total: int
    elapsed: float
    message: str = ""
    resumed: int = 0  # of `done`, how much came from a checkpoint (no time spent on it in this run)
    unit: str = "rows"  # what done/total count (rows, texts, epochs, trainings)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate of the work done in this run (None until there is a rate): work taken from
        a checkpoint cost no time, so it does not speed the estimate up."""
        worked = self.done - self.resumed
        if worked <= 0 or self.total <= 0 or self.elapsed <= 0:
            return None
        return max(0.0, self.elapsed / worked * (self.total - self.done))

    def describe(self) -> str:
        eta = self.eta
        left = "" if eta is None else f", about {format_seconds(eta)} left"
        msg = f" · {self.message}" if self.message else ""
        return f"{self.stage}: {self.done:,}/{self.total:,} {self.unit}{left}{msg}"


ProgressFn = Callable[[ProgressEvent], None]


def format_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


class Tracker:
    """How far one piece of work is, in its own unit (rows, texts, epochs), reported as ``(done, total, message,
    resumed=…)``.

    Executors call :meth:`add` as batches or tasks finish (``resumed`` for work found in the checkpoint) and
    :meth:`partial` from inside a long task; *offset* counts work done before this piece (e.g. the fit sample).
    """

    def __init__(self, report: Callable[..., None] | None, total: int, *, offset: int = 0,
                 unit: str = "rows", working: str = "", resumed_note: Callable[[int], str] | None = None) -> None:
        self.report, self.total, self.offset, self.unit, self.working = report, int(total), int(offset), unit, working
        self.resumed_note = resumed_note or (lambda n: f"{n:,} {unit} from checkpoint")
        self.done = self.resumed = 0

    def _say(self, extra: int = 0, message: str | None = None) -> None:
        if self.report is not None:
            msg = message if message is not None else (self.resumed_note(self.resumed) if self.resumed else self.working)
            self.report(self.offset + self.done + extra, self.total, msg, resumed=self.resumed, unit=self.unit)

    def start(self) -> None:
        self._say()

    def add(self, n: int, resumed: bool = False, message: str | None = None) -> None:
        self.done += int(n)
        if resumed:
            self.resumed += int(n)
        self._say(message=message)

    def partial(self, n: int, message: str | None = None) -> None:
        """Inside a task: *n* of its units are done (not yet counted in ``done``)."""
        self._say(int(n), message)


# ----------------------------------------------------------------------------------------- checkpoint
class Parts:
    """Output files of a run, for the Store to import: local paths, or a pyarrow dataset on another filesystem."""

    def __init__(self, fs: pafs.FileSystem, paths: Sequence[str]) -> None:
        self.fs, self.paths = fs, list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def source(self) -> list[str] | Any:
        """What DuckDB reads: the file paths (local) or a pyarrow Dataset over them (it scans it lazily)."""
        if self.local:
            return list(self.paths)
        import pyarrow.dataset as ds

        return ds.dataset(self.paths, filesystem=self.fs, format="parquet")

    def read(self) -> pa.Table:
        return pa.concat_tables([pq.read_table(p, filesystem=self.fs) for p in self.paths]) if self.paths else pa.table({})


def filesystem(root: str | Path | tuple[pafs.FileSystem, str]) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of a checkpoint root: a local path, a URI pyarrow knows (``file://``, ``s3://`` …) or a
    ``(FileSystem, path)`` pair."""
    if isinstance(root, tuple):
        return root[0], str(root[1]).rstrip("/")
    text = str(root)
    if "://" not in text:
        return pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())
    fs, path = pafs.FileSystem.from_uri(text)
    return fs, path.rstrip("/")


def _debug_pause() -> None:
    """Testing aids after each part is written, off unless set: ``CURATE_DEBUG_BATCH_DELAY`` (seconds: kill -9 at
    random moments of a slowed run) and ``CURATE_DEBUG_BATCH_GATE`` (a file: wait while it exists, so a test holds
    a run in the middle of a stage for as long as it needs, with no timing in the test)."""
    delay = float(os.environ.get("CURATE_DEBUG_BATCH_DELAY", "0") or 0)
    if delay:
        time.sleep(delay)
    gate = os.environ.get("CURATE_DEBUG_BATCH_GATE")
    while gate and os.path.exists(gate):
        time.sleep(0.05)


class Checkpoint:
    """The files of one run in progress: input snapshots, output parts, small objects (a fitted model) and a
    ``_COMPLETE`` marker. Every write is atomic (a temporary name, then a rename): a file is whole or absent."""

    INPUTS = "input"

    def __init__(self, root: str | Path | tuple[pafs.FileSystem, str]) -> None:
        self.fs, self.path = filesystem(root)

    def __repr__(self) -> str:
        return f"Checkpoint({self.path!r})"

    def child(self, *names: str) -> "Checkpoint":
        return Checkpoint((self.fs, "/".join([self.path, *names])))

    def _p(self, name: str) -> str:
        return f"{self.path}/{name}"

    def exists(self, name: str = "") -> bool:
        return self.fs.get_file_info(self._p(name) if name else self.path).type != pafs.FileType.NotFound

    # the names of things
    @staticmethod
    def part_name(lo: int, hi: int) -> str:
        return f"part-{int(lo):012d}-{int(hi):012d}.parquet"

    @staticmethod
    def task_name(key: str) -> str:
        return f"task-{key}.parquet"

    def has(self, name: str) -> bool:
        return self.exists(name)

    # writing and reading
    def _atomic(self, name: str, write: Callable[[Any], None]) -> None:
        final = self._p(name)
        parent = final.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{final.rsplit('/', 1)[1]}.{os.getpid()}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            write(f)
        self.fs.move(tmp, final)

    def write(self, name: str, table: pa.Table) -> None:
        self._atomic(name, lambda f: pq.write_table(table, f))
        if not name.startswith(self.INPUTS):
            _debug_pause()

    def read(self, name: str) -> pa.Table:
        return pq.read_table(self._p(name), filesystem=self.fs)

    def save_object(self, name: str, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self._atomic(name, lambda f: f.write(data))

    def load_object(self, name: str) -> Any:
        with self.fs.open_input_stream(self._p(name)) as f:
            return pickle.loads(f.read())

    def names(self, prefix: str = "part-") -> list[str]:
        """Names of the finished files starting with *prefix*, sorted."""
        if not self.exists():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.startswith(prefix)
                      and i.base_name.endswith(".parquet"))

    def parts(self, names: Iterable[str] | None = None) -> Parts:
        """The given part files (default: every ``part-*``) for the Store to import."""
        names = self.names() if names is None else list(names)
        return Parts(self.fs, [self._p(n) for n in names])

    # completion
    def mark_complete(self) -> None:
        self._atomic("_COMPLETE", lambda f: f.write(time.strftime("%Y-%m-%dT%H:%M:%S").encode()))

    @property
    def complete(self) -> bool:
        return self.exists("_COMPLETE")

    def clear(self) -> None:
        if self.exists():
            self.fs.delete_dir(self.path)


# --------------------------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class Batch:
    """Input rows ``lo ≤ key < hi`` (row ids, or positions in an ordered input), snapshot by the driver."""

    lo: int
    hi: int
    rows: int

    @property
    def part(self) -> str:
        return Checkpoint.part_name(self.lo, self.hi)

    @property
    def input(self) -> str:
        return f"{Checkpoint.INPUTS}/batch-{self.lo:012d}-{self.hi:012d}.parquet"


def cut(keys: Sequence[int], batch_rows: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, lo, hi) slices of *batch_rows* consecutive entries of sorted *keys*, where ``lo`` is the
    first key and ``hi`` one past the last: the same keys always give the same batches."""
    out = []
    n = len(keys)
    for start in range(0, n, int(batch_rows)):
        stop = min(start + int(batch_rows), n)
        out.append((start, stop, int(keys[start]), int(keys[stop - 1]) + 1))
    return out


def snapshot(ck: Checkpoint, batches: Sequence[Batch], read: Callable[[Batch], pa.Table]) -> list[Batch]:
    """Write ``read(batch)`` as the input of every batch whose part and input are both missing (nothing once
    the run is complete): what a killed run already wrote is never read again."""
    if not ck.complete:
        for b in batches:
            if not ck.has(b.part) and not ck.has(b.input):
                ck.write(b.input, read(b))
    return list(batches)


def snapshot_table(ck: Checkpoint, table: pa.Table, batch_rows: int, key: str | None = "row_id") -> list[Batch]:
    """Cut *table* into batches of *batch_rows* rows and snapshot them (see :func:`snapshot`). *key* (sorted,
    unique) names the batches; ``None`` names them by row position."""
    keys = table.column(key).to_numpy() if key else range(table.num_rows)
    slices = {Batch(lo, hi, stop - start): start for start, stop, lo, hi in cut(keys, batch_rows)}
    return snapshot(ck, list(slices), lambda b: table.slice(slices[b], b.rows))


# -------------------------------------------------------------------------------------------- executors
@dataclass(frozen=True)
class Task:
    """One independent piece of work: *key* names its part, *label* and *units* are for progress."""

    key: str
    label: str = ""
    units: int = 1
    arg: Any = None


BatchFn = Callable[[pa.Table], pa.Table]
#: fn(task, shared, report) -> table; ``report(units_done)`` shows progress inside a long task
TaskFn = Callable[[Task, Any, Callable[[int], None]], pa.Table]


class Executor(Protocol):
    """Runs the shapes of work a stage plans; see the module docstring. Every method skips work whose part
    already exists and returns the names of the parts in the order of its input."""

    name: str
    device: str  # "cpu" or "cuda": where model stages compute

    def map_batches(self, fn: BatchFn, batches: Sequence[Batch], ck: Checkpoint, tracker: Tracker) -> list[str]: ...

    def fit_sample_then_map(self, fit: Callable[[], tuple[Any, pa.Table | None]],
                            apply: Callable[[Any, pa.Table], pa.Table], batches: Sequence[Batch], ck: Checkpoint,
                            tracker: Tracker) -> tuple[Any, list[str]]: ...

    def tasks(self, fn: TaskFn, tasks: Sequence[Task], ck: Checkpoint, tracker: Tracker,
              shared: Any = None) -> list[str]: ...

    def totals(self, fn: Callable[[pa.Table], Any], names: Sequence[str], ck: Checkpoint,
               merge: Callable[[Any, Any], Any]) -> Any: ...


MODEL = "model.pkl"
FIT_PART = "fit.parquet"


DEVICES = ("auto", "cpu", "cuda")


def torch_gpus() -> int:
    """CUDA devices torch sees in this process (0 without CUDA or without torch)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a requirement
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


#: the most copies of a ``per_core`` batch function the local engine runs at once (each holds its own model:
#: MiniLM ~90 MB and ~1 s to load)
MAX_COPIES = 8


def cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's share, not the whole machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """Everything in this process, one batch or task after the other — except a ``per_core`` batch function (a
    model on the CPU computing on one thread), which runs one copy per core at once.

    *device* (``auto``, ``cpu``, ``cuda``) is where model stages compute (``run --device``): ``auto`` takes CUDA
    when there is a GPU; ``cuda`` without one is refused here, before any stage starts. *gpus* counts the GPUs
    the executor can use (default: those torch sees in this process)."""

    name = "local"

    def __init__(self, device: str = "auto", gpus: Callable[[], int] = torch_gpus) -> None:
        if device not in DEVICES:
            raise CurateError(f"Unknown device {device!r}", f"use one of {choices(DEVICES)}")
        self.gpus = gpus
        self._device = device
        if device == "cuda" and gpus() == 0:
            raise CurateError(f"--device cuda: no CUDA GPU is visible to the {self.name} engine",
                              "run with --device cpu (or auto, which takes a GPU only when there is one)")

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda``: resolved on first use, so a run that loads no model never looks for a GPU."""
        if self._device == "auto":
            self._device = "cuda" if self.gpus() > 0 else "cpu"
        return self._device

    def map_batches(self, fn: BatchFn, batches: Sequence[Batch], ck: Checkpoint, tracker: Tracker) -> list[str]:
        tracker.start()
        todo = []
        for b in batches:
            if ck.has(b.part):
                tracker.add(b.rows, resumed=True)
            else:
                todo.append(b)
        workers = min(len(todo), cores(), MAX_COPIES) if getattr(fn, "per_core", False) else 1
        if workers > 1:
            self._per_core(fn, todo, ck, tracker, workers)
        elif todo:  # a model loads only when there is work for it
            getattr(fn, "setup", lambda: None)()
            for b in todo:
                ck.write(b.part, fn(ck.read(b.input)))
                tracker.add(b.rows)
        return [b.part for b in batches]

    @staticmethod
    def _per_core(fn: BatchFn, todo: Sequence[Batch], ck: Checkpoint, tracker: Tracker, workers: int) -> None:
        """A ``per_core`` batch function (one thread per call, e.g. a model on the CPU): one copy per core, each
        with its own model (a pickled copy loads its own in ``setup``), batches handed out in order; parts are
        written and counted here, in this thread. Ctrl-C or a failure lets the running batches finish and starts
        no more."""
        copies = [fn] + [pickle.loads(pickle.dumps(fn)) for _ in range(workers - 1)]
        for c in copies:  # loaded one after the other: model loading is not made for threads
            getattr(c, "setup", lambda: None)()
        free = queue.SimpleQueue()
        for c in copies:
            free.put(c)

        def run(b: Batch) -> pa.Table:
            c = free.get()
            try:
                return c(ck.read(b.input))
            finally:
                free.put(c)

        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="curate-batch") as pool:
            futures = {pool.submit(run, b): b for b in todo}
            try:
                for f in concurrent.futures.as_completed(futures):
                    b = futures[f]
                    ck.write(b.part, f.result())
                    tracker.add(b.rows)
            finally:
                for f in futures:
                    f.cancel()

    def fit_sample_then_map(self, fit: Callable[[], tuple[Any, pa.Table | None]],
                            apply: Callable[[Any, pa.Table], pa.Table], batches: Sequence[Batch], ck: Checkpoint,
                            tracker: Tracker) -> tuple[Any, list[str]]:
        """Fit once (a resumed run loads the pickled model instead), write the sample's own outputs as
        ``fit.parquet``, then map the batches through the model."""
        model = fit_once(fit, ck)
        parts = self.map_batches(functools.partial(apply, model), batches, ck, tracker)
        return model, ([FIT_PART] if ck.has(FIT_PART) else []) + parts

    def tasks(self, fn: TaskFn, tasks: Sequence[Task], ck: Checkpoint, tracker: Tracker,
              shared: Any = None) -> list[str]:
        tracker.start()
        for t in tasks:
            name = Checkpoint.task_name(t.key)
            if ck.has(name):
                tracker.add(t.units, resumed=True, message=f"{t.label} done (from checkpoint)" if t.label else None)
                continue
            out = fn(t, shared, lambda u, label=t.label: tracker.partial(u, label or None))
            ck.write(name, out)
            tracker.add(t.units, message=f"{t.label} done" if t.label else None)
        return [Checkpoint.task_name(t.key) for t in tasks]

    def totals(self, fn: Callable[[pa.Table], Any], names: Sequence[str], ck: Checkpoint,
               merge: Callable[[Any, Any], Any]) -> Any:
        """``merge`` over ``fn(file)`` of each named checkpoint file (a part, an input): e.g. sums and maxima."""
        return functools.reduce(merge, (fn(ck.read(n)) for n in names))


def fit_once(fit: Callable[[], tuple[Any, pa.Table | None]], ck: Checkpoint) -> Any:
    """The model of a fit-on-sample step: fitted now (and saved with the sample's outputs), or loaded from the
    checkpoint of a run that got past its fit before it was killed."""
    if ck.has(MODEL):
        return ck.load_object(MODEL)
    model, fitted = fit()
    if fitted is not None:
        ck.write(FIT_PART, fitted)
    ck.save_object(MODEL, model)
    # map with the model as read back, as a resumed run (and every Ray worker) does: the freshly fitted object
    # can differ from its unpickled copy in the last bit of a float32 product (BLAS takes other paths for
    # other memory layouts), and kill -9 during the transforms then resumed to a different projection
    return ck.load_object(MODEL)


#: engine name → executor factory; ``ray_engine`` adds "ray" when the pipeline imports it (Ray itself is
#: imported only when that engine is made)
EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor}


def make_executor(name: str = "local", **options: Any) -> Executor:
    """The executor called *name* (``run --engine``), built with its options."""
    if name not in EXECUTORS:
        raise CurateError(f"Unknown engine {name!r}", f"use one of {choices(EXECUTORS)}")
    return EXECUTORS[name](**options)
