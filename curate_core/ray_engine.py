"""``run --engine ray``: the executor seam on a Ray cluster (or an in-process Ray on this machine).

The driver plans exactly as on the local executor — the same batches (row-id ranges), the same input snapshots,
the same part names — and Ray only decides where each piece runs:

* ``map_batches`` is a Ray Data pipeline over the batches still to do: one item per batch (its input file and
  part name), ``batch_size=1``; a batch function with a ``setup()`` (one that loads a model) runs in a fixed
  pool of actors, so the model loads once per actor; a plain function runs as Ray Data tasks. Each worker
  reads its input snapshot from the checkpoint and writes its part there (atomically), so on a cluster of
  several machines the checkpoints must be on storage every node sees (a shared folder, or
  ``CURATE_CHECKPOINTS=s3://…``); on one machine — an in-process Ray, or ``ray start`` nodes on loopback —
  they are where they always are.
* ``tasks`` are Ray tasks (probe folds, threshold runs), the shared argument put in the object store once.
* ``fit_sample_then_map`` fits on the driver (or loads the checkpointed model), then ``map_batches``.
* ``totals`` reads small per-part totals on the driver.

Nothing a worker computes depends on how many workers there are: results equal the local executor's, and a run
killed on either engine resumes on either. A worker that dies is retried (``RETRIES`` times), then the stage
fails with a clear error and nothing is imported.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import warnings
from typing import Any, Sequence

from .errors import CurateError
from .execution import EXECUTORS, Batch, BatchFn, Checkpoint, LocalExecutor, Task, TaskFn, Tracker

RETRIES = 2  # a batch or task whose worker died runs again this many times before the stage fails
START_HINT = ("start one with `ray start --head --node-ip-address 127.0.0.1 --port 6379 --include-dashboard=false`"
              " and pass --ray-address 127.0.0.1:6379, or use --ray-address local for a Ray inside this process")


def _quiet_ray(level: int = logging.WARNING) -> None:
    """No usage reports, progress bars or INFO lines from Ray: the CLI and the app draw their own progress."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves this machine
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ray's C++ layer prints warnings to the driver's stderr that a user can do nothing about (e.g. ray#53727 for
    # every Ray Data actor pool); errors reach us as exceptions. RAY_BACKEND_LOG_LEVEL=info brings them back.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(level)


_OWN_TOKEN = "RAY_AUTH_TOKEN"


def _auth_for(local: bool) -> None:
    """An in-process Ray gets a token of its own in this process's environment (its workers inherit it), so it
    is not open to the network and writes no ``~/.ray/auth_token`` — a file Ray would then demand of every
    cluster started on this machine, whose worker nodes do not send it. Joining a cluster uses the user's own
    settings. Ray reads the mode once at import; ``Config.initialize`` re-reads it, as Ray itself does."""
    ours = os.environ.get("CURATE_RAY_OWN_TOKEN") == "1"
    if local and "RAY_AUTH_MODE" not in os.environ and _OWN_TOKEN not in os.environ:
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), CURATE_RAY_OWN_TOKEN="1")
    elif not local and ours:
        for k in ("RAY_AUTH_MODE", _OWN_TOKEN, "CURATE_RAY_OWN_TOKEN"):
            os.environ.pop(k, None)
    else:
        return
    if "ray" in sys.modules:
        try:
            from ray._raylet import Config

            Config.initialize("")
        except Exception:  # pragma: no cover - a Ray without this hook keeps the mode it read at import
            pass


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast (seconds, not Ray's minute of retries) when nothing listens at host:port."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise CurateError(f"--ray-address {address!r} is not host:port, `auto` or `local`",
                          "e.g. --ray-address 127.0.0.1:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            # Ray's head speaks gRPC: an HTTP/2 server answers the client preface with a SETTINGS frame (type 4)
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9)[:3] + b"\x04" + bytes(5))
            head = sock.recv(9)
    except OSError as e:
        raise CurateError(f"Ray is not reachable at {address} ({e.strerror or type(e).__name__})", START_HINT) from None
    if len(head) < 4 or head[3] != 4:
        raise CurateError(f"Something listens at {address}, but it is not a Ray head (no gRPC answer)",
                          "give the address `ray start --head` printed (its --port, default 6379)")


def connect(address: str | None = "local", num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialised for *address*: ``local`` (default) starts a Ray inside this process with
    *num_cpus* CPUs (default: all), bound to 127.0.0.1; ``auto`` joins the cluster this machine is part of;
    ``host:port`` joins the cluster whose head listens there. Reuses a connection to the same place."""
    address = (address or "local").strip()
    _quiet_ray()
    _auth_for(address == "local")
    try:
        import ray
    except ImportError:
        raise CurateError("Ray is not installed", "pip install 'ray[data]==2.60.0' (it is in requirements.txt)") from None
    want = ("local", num_cpus) if address == "local" else (address, None)
    if ray.is_initialized():
        if getattr(connect, "_current", None) == want:
            return ray
        ray.shutdown()
    if address not in ("local", "auto") and not address.startswith("ray://"):
        _probe(address)
    common = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                  configure_logging=True)
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, _node_ip_address="127.0.0.1", **common)
        else:
            common.pop("include_dashboard")
            # the cluster's workers were started elsewhere: give them this run's CURATE_* settings
            env = {k: v for k, v in os.environ.items() if k.startswith("CURATE_") and k != "CURATE_RAY_OWN_TOKEN"}
            ray.init(address=address, runtime_env={"env_vars": env} if env else None, **common)
    except CurateError:
        raise
    except Exception as e:  # ConnectionError for `auto` with no cluster, timeouts, version mismatches
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CurateError(f"Could not connect to Ray at {address}: {first}", START_HINT) from None
    connect._current = want  # type: ignore[attr-defined]
    return ray


# ------------------------------------------------------------------------------------------- workers
def _set_threads(n: int) -> None:
    """One worker's torch threads = the CPUs Ray gave it (torch would otherwise take every core of the node).
    Only where torch is loaded already (a model's setup loads it): a text-statistics worker does not pay for
    importing it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, int(n)))


def _write_parts(fn: BatchFn, ck: Checkpoint, batch: dict[str, Any]) -> dict[str, Any]:
    """Write each batch's part; a CurateError comes back as data (Ray Data would flatten it into a traceback)."""
    errors = []
    for inp, part in zip(batch["input"], batch["part"]):
        try:
            if not ck.has(part):  # a retried batch may have been finished by its first attempt
                if not ck.has(str(inp)):
                    raise CurateError(f"A Ray worker on {socket.gethostname()} cannot see the checkpoint {ck.path}",
                                      "on a cluster of several machines, put checkpoints on storage every node "
                                      "sees: CURATE_CHECKPOINTS=s3://bucket/path (or a shared folder)")
                ck.write(str(part), fn(ck.read(str(inp))))
            errors.append("")
        except CurateError as e:
            errors.append(json.dumps([e.message, e.hint]))
    return {"part": batch["part"], "rows": batch["rows"], "error": errors}


def _raise_sent(error: str) -> None:
    if error:
        message, hint = json.loads(error)
        raise CurateError(message, hint)


class _ModelWorker:
    """An actor of the pool: loads the batch function's model once, then writes one part per call."""

    def __init__(self, fn: BatchFn, ck: Checkpoint, threads: int) -> None:
        self.fn, self.ck = fn, ck
        fn.setup()  # type: ignore[attr-defined]
        _set_threads(threads)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return _write_parts(self.fn, self.ck, batch)


def _plain_worker(batch: dict[str, Any], fn: BatchFn, ck: Checkpoint, threads: int) -> dict[str, Any]:
    _set_threads(threads)
    return _write_parts(fn, ck, batch)


def _run_task(fn: TaskFn, task: Task, shared: Any, ck: Checkpoint) -> str:
    name = Checkpoint.task_name(task.key)
    try:
        if not ck.has(name):
            ck.write(name, fn(task, shared, lambda units: None))
    except CurateError as e:  # as data: Ray would wrap it in its own exception type
        return json.dumps([e.message, e.hint])
    return ""


def _retries(actor: bool) -> dict:
    """Ray Data restarts dead actors forever by default: a batch that always kills its worker would never end.
    Ray 2.60 takes these only as plain remote arguments (deprecated there, with no named replacement yet)."""
    warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
    return {"max_restarts": RETRIES, "max_task_retries": RETRIES} if actor else {"max_retries": RETRIES}


def _explain(e: BaseException, what: str) -> CurateError:
    """The CurateError a user should see for an exception out of Ray: the worker's own CurateError, a package
    the workers cannot import, or a worker that kept dying."""
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    for x in reversed(seen):  # raised on the driver side of Ray (workers send theirs back as data)
        if type(x) is CurateError:
            return x
    for x in seen:
        if isinstance(x, ModuleNotFoundError) or "No module named" in str(x):
            name = getattr(x, "name", None) or str(x).split("No module named", 1)[-1].strip(" '\"\n").split("'")[0]
            return CurateError(f"Ray workers cannot import {name!r} while running {what}",
                               "install the project on every node of the cluster (pip install -r requirements.txt"
                               " -e .), with the same Python as this driver")
    text = " ".join(f"{type(x).__name__}: {x}" for x in seen)
    if any(k in text for k in ("ActorDiedError", "WorkerCrashedError", "ActorUnavailableError", "died",
                               "OutOfMemoryError", "NodeDiedError")):
        return CurateError(f"A Ray worker died while running {what}, {RETRIES} retries included",
                           "see the Ray logs (/tmp/ray/session_latest/logs); nothing of this stage was imported, "
                           "and the same command resumes from the parts already written")
    first = str(seen[-1]).strip().splitlines()[0] if str(seen[-1]).strip() else type(seen[-1]).__name__
    return CurateError(f"{what} failed on Ray: {type(seen[-1]).__name__}: {first}",
                       "the same command resumes from the parts already written")


def _what(fn: Any) -> str:
    f = getattr(fn, "func", fn)  # functools.partial
    return getattr(f, "__qualname__", None) or type(f).__name__


# ------------------------------------------------------------------------------------------ executor
class RayExecutor(LocalExecutor):
    """The seam on Ray: see the module docstring. *address*: ``local``, ``auto`` or ``host:port``;
    *num_cpus*: the in-process Ray's CPUs (``local``) or the most CPUs this run uses at once on a cluster;
    *cpus_per_worker*: CPUs (and compute threads) of each actor or task; *device*: ``auto``, ``cpu`` or
    ``cuda`` for model stages (a CUDA actor asks Ray for one GPU)."""

    name = "ray"

    def __init__(self, address: str | None = "local", num_cpus: int | None = None, device: str = "auto",
                 cpus_per_worker: float = 1.0) -> None:
        if num_cpus is not None and int(num_cpus) < 1:
            raise CurateError(f"--ray-num-cpus must be at least 1; got {num_cpus}")
        self.ray = connect(address, num_cpus)
        self.address = address or "local"
        self.cpus_per_worker = float(cpus_per_worker)
        resources = self.ray.cluster_resources()
        self.cpus = min(float(num_cpus or resources.get("CPU", 1)), float(resources.get("CPU", 1)))
        super().__init__(device=device, gpus=lambda: int(resources.get("GPU", 0)))
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        _quiet_ray(level=logging.ERROR)  # ray.data sets up its loggers on import: quiet them again

    def _pool(self, todo: int) -> int:
        if self.device == "cuda":
            return max(1, min(todo, self.gpus()))
        return max(1, min(todo, int(self.cpus // self.cpus_per_worker) or 1))

    def map_batches(self, fn: BatchFn, batches: Sequence[Batch], ck: Checkpoint, tracker: Tracker) -> list[str]:
        tracker.start()
        todo = []
        for b in batches:
            if ck.has(b.part):
                tracker.add(b.rows, resumed=True)
            else:
                todo.append(b)
        if todo:
            ds = self.ray.data.from_items([{"input": b.input, "part": b.part, "rows": b.rows} for b in todo],
                                          override_num_blocks=len(todo))
            threads = max(1, int(self.cpus_per_worker))
            if hasattr(fn, "setup"):
                gpu = self.device == "cuda"
                pool = self.ray.data.ActorPoolStrategy(size=self._pool(len(todo)))
                out = ds.map_batches(_ModelWorker, fn_constructor_kwargs={"fn": fn, "ck": ck, "threads": threads},
                                     batch_size=1, compute=pool,
                                     num_cpus=self.cpus_per_worker, num_gpus=1 if gpu else 0,
                                     **_retries(actor=True))
            else:
                pool = self.ray.data.TaskPoolStrategy(size=self._pool(len(todo)))
                out = ds.map_batches(_plain_worker, fn_kwargs={"fn": fn, "ck": ck, "threads": threads},
                                     batch_size=1, compute=pool,
                                     num_cpus=self.cpus_per_worker, **_retries(actor=False))
            try:
                for row in out.iter_rows():
                    _raise_sent(row["error"])
                    tracker.add(int(row["rows"]))
            except CurateError:
                raise
            except Exception as e:
                raise _explain(e, _what(fn)) from None
        return [b.part for b in batches]

    def tasks(self, fn: TaskFn, tasks: Sequence[Task], ck: Checkpoint, tracker: Tracker,
              shared: Any = None) -> list[str]:
        tracker.start()
        todo = []
        for t in tasks:
            if ck.has(Checkpoint.task_name(t.key)):
                tracker.add(t.units, resumed=True, message=f"{t.label} done (from checkpoint)" if t.label else None)
            else:
                todo.append(t)
        if todo:
            ray = self.ray
            remote = ray.remote(_run_task).options(num_cpus=self.cpus_per_worker, max_retries=RETRIES)
            fn_ref, shared_ref = ray.put(fn), ray.put(shared)
            pending = {remote.remote(fn_ref, t, shared_ref, ck): t for t in todo}
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        t = pending.pop(ref)
                        _raise_sent(ray.get(ref))
                        tracker.add(t.units, message=f"{t.label} done" if t.label else None)
            except BaseException as e:
                for ref in pending:
                    ray.cancel(ref, force=True)
                if isinstance(e, CurateError) or not isinstance(e, Exception):
                    raise
                raise _explain(e, _what(fn)) from None
        return [Checkpoint.task_name(t.key) for t in tasks]


EXECUTORS["ray"] = RayExecutor
