"""Two at once: another process while a run holds the workspace, two app sessions deciding together, the app
while the CLI runs a stage (and the CLI while the app has the workspace). DuckDB allows one writing process:
whoever comes second is told who has the workspace, at once, and the one that holds it finishes intact.

The run that holds the workspace is stopped in the middle of a stage by a gate file
(``CURATE_DEBUG_BATCH_GATE``: the run waits after each part while the file exists), so no case depends on timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from curate_core import CurateError, Workspace
from curate_core.check import check_workspace

from ..conftest import REPO, app_test, write_csv
from .helpers import ALL, app_errors, assert_refused, cli_process, fingerprint, review_queue

HANG = 240.0  # seconds: only a guard against a test that would wait forever


def _wait(cond: Callable[[], bool], what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + HANG
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()[-800:]}")
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


class HeldRun:
    """`curate run --stages embed` on *ws*, held after its first part until :meth:`release`."""

    def __init__(self, ws: Path, gate: Path) -> None:
        self.ws, self.gate = ws, gate
        gate.write_text("held")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "curate_core", "run", "--workspace", str(ws), "--stages", "embed", "--embedder",
             "tfidf", "--param", "embed.shard_size=50"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "CURATE_DEBUG_BATCH_GATE": str(gate)})
        _wait(lambda: any((ws / "checkpoints" / "embed").rglob("part-*.parquet")), "its first part", self.proc)

    def release(self) -> tuple[int, str, str]:
        self.gate.unlink()
        out, err = self.proc.communicate(timeout=HANG)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def held(ingested, tmp_path):
    run = HeldRun(ingested, tmp_path / "gate")
    yield run
    run.kill()


def test_a_second_process_writing_while_a_run_holds_the_workspace_is_told_and_the_run_finishes(held, tmp_path):
    ws = held.ws
    extra = write_csv(tmp_path / "more.csv", [{"text": "one more row", "label": "billing"}])
    decide = textwrap.dedent(f"""
        from curate_core import Workspace
        Workspace({str(ws)!r}).decide([1], "exclude")
    """)
    writers = {
        "select --save-selection": [sys.executable, "-m", "curate_core", "select", "--workspace", str(ws), "--recipe",
                                    ALL, "--save-selection", "mine"],
        "ingest": [sys.executable, "-m", "curate_core", "ingest", str(extra), "--workspace", str(ws)],
        "info": [sys.executable, "-m", "curate_core", "info", "--workspace", str(ws)],
        "export": [sys.executable, "-m", "curate_core", "export", "--workspace", str(ws), "--recipe", ALL, "--out",
                   str(tmp_path / "out")],
    }
    procs = {k: subprocess.Popen(v, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, v in writers.items()}
    py = subprocess.run([sys.executable, "-c", decide], cwd=REPO, capture_output=True, text=True, timeout=HANG)
    for name, p in procs.items():
        out, err = p.communicate(timeout=HANG)
        r = type("R", (), {"rc": p.returncode, "out": out, "err": err})
        assert_refused(r, "open in another process (a `curate run`, process", "wait until that run has finished")
    assert "CurateError" in py.stderr and "open in another process" in py.stderr  # from Python: our error
    assert held.proc.poll() is None  # all of that while the run held the workspace
    rc, out, err = held.release()
    assert rc == 0 and "embed: done" in out, err
    report = check_workspace(ws)
    assert report["ok"] and report["tables"]["embeddings"]["rows"] == 300
    assert report["tables"]["decisions"]["rows"] == 0 and report["tables"]["selections"]["rows"] == 0
    assert report["tables"]["samples"]["rows"] == 300 and not (tmp_path / "out").exists()


def test_a_second_run_waits_for_the_first_then_reuses_its_work(held):
    """A run that finds the workspace held by another `curate run` waits for it (a run whose shell was killed
    while its Python process went on) and then reuses what it finished."""
    second = subprocess.Popen([sys.executable, "-m", "curate_core", "run", "--workspace", str(held.ws), "--stages",
                               "embed", "--embedder", "tfidf", "--param", "embed.shard_size=50"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(second.stderr.readline, "")), daemon=True)
    reader.start()
    _wait(lambda: any("waiting: another pipeline run" in x for x in lines), "the second run says it waits", second)
    assert second.poll() is None
    rc, _, err = held.release()
    assert rc == 0, err
    out, _ = second.communicate(timeout=HANG)
    reader.join(HANG)
    assert second.returncode == 0 and "embed: reused" in out, "".join(lines)


def test_cli_run_waits_for_another_pipeline_run_and_no_other_holder(tmp_path):
    """Moved from test_map_stages: a run that finds the workspace held by another `curate_core run` process
    waits for it; any other holder is an error at once."""
    w = tmp_path / "w"
    with Workspace(w) as ws:
        ws.ingest(pd.DataFrame({"text": [f"text {i} about {['cards', 'trips'][i % 2]}" for i in range(20)],
                                "label": ["a", "b"] * 10}))
    hold = ("import sys, time; from curate_core import Workspace; w = Workspace(sys.argv[1]); "
            "print('ready', flush=True); time.sleep(float(sys.argv[2])); w.close()")
    for extra, waits in ((["curate_core", "run"], True), ([], False)):
        holder = subprocess.Popen([sys.executable, "-c", hold, str(w), "3", *extra], cwd=REPO, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert holder.stdout.readline().strip() == "ready"
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "curate_core", "run", "--workspace", str(w), "--stages",
                                "embed", "--embedder", "tfidf"], cwd=REPO, capture_output=True, text=True, timeout=120)
        finally:
            holder.wait()
        if waits:
            assert r.returncode == 0, r.stderr
            assert "waiting: another pipeline run" in r.stderr and time.monotonic() - t0 > 1.5
        else:
            assert r.returncode == 2 and "open in another process" in r.stderr


def test_second_process_gets_lock_message(tmp_path, small_csv):
    """While this process holds the workspace, the CLI in another process says so (exit 2, no traceback)."""
    with Workspace(tmp_path / "w") as ws:
        ws.ingest(small_csv)
        before = fingerprint(ws)
        r = subprocess.run([sys.executable, "-m", "curate_core", "info", "--workspace", str(tmp_path / "w")],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
        assert fingerprint(ws) == before
    assert r.returncode == 2
    assert "error: The workspace" in r.stderr and "open in another process" in r.stderr
    assert "hint:" in r.stderr and "Traceback" not in r.stderr
    # and from Python in the other process: a CurateError, not a duckdb exception
    code = textwrap.dedent(f"""
        from curate_core import Workspace, CurateError
        try:
            Workspace({str(tmp_path / 'w')!r})
        except CurateError as e:
            print("CURATE", e.message)
    """)
    with Workspace(tmp_path / "w"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "CURATE The workspace" in r.stdout, r.stderr


def test_concurrent_writers_in_one_process_get_distinct_numbers(ws, small_csv):
    """Two app sessions acting at once: decisions and ingests must not share batch numbers or row ids."""
    ws.ingest(small_csv)
    errors: list[BaseException] = []

    def decide(i: int) -> None:
        try:
            for _ in range(5):
                ws.decide([i], "keep")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log = ws.store.decision_log(1000)
    assert log["seq"].is_unique and log["batch"].nunique() == 20

    def ingest(k: int) -> None:
        ws.ingest(pd.DataFrame({"text": [f"t{k}-{j}" for j in range(50)]}), source_name=f"s{k}")

    threads = [threading.Thread(target=ingest, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = ws.store.query_df("SELECT row_id FROM samples ORDER BY row_id")["row_id"]
    assert ids.tolist() == list(range(40 + 150))


def test_two_app_sessions_deciding_at_the_same_time_lose_no_decision(built, app_env, monkeypatch):
    """Two people on the Review queue of one app, clicking at the same moment: every click is one entry of the
    decision log, with its own sequence and batch number.

    AppTest keeps one mock runtime in a global and clears it after each run, so a run ending in one thread
    pulled it from under a run in the other ("Runtime hasn't been created!" at the end of a script): the test
    keeps the last one in place. A real server has one runtime for all its sessions."""
    from streamlit.runtime import runtime as rt

    from curate_ui import state

    last: dict = {}

    def instance(cls):
        if cls._instance is not None:
            last["runtime"] = cls._instance
        return last.get("runtime") if cls._instance is None else cls._instance

    monkeypatch.setattr(rt.Runtime, "instance", classmethod(instance))
    app_env(built)
    sessions = [review_queue(app_test), review_queue(app_test)]
    clicks, errors = 6, []
    start = threading.Barrier(len(sessions))

    def person(at, key: str) -> None:
        try:
            start.wait()
            for _ in range(clicks):
                at.button(key=key).click().run()
                app_errors(at)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=person, args=(at, key)) for at, key in zip(sessions, ["rv_keep", "rv_exclude"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert not errors, errors
    log = state.open_workspace(str(built)).store.decision_log(1000)
    assert len(log) == 2 * clicks and log["seq"].is_unique and log["batch"].nunique() == 2 * clicks
    assert sorted(log["action"].value_counts().to_dict().items()) == [("exclude", clicks), ("keep", clicks)]


def test_the_app_while_the_cli_runs_a_stage_says_so_and_opens_when_it_ends(held, app_env):
    """Found here: every page said "open in another process … close the app or the other command" and then "No
    workspace is open. Open or create one" — which it was not. Now: who has it (a `curate run`), that the pages
    open it when the run ends, and a Try again button; after the run the same page works."""
    app_env(held.ws)
    pages = ("app.py", "pages/4_Select.py", "pages/2_Label_issues.py")
    for page in pages:
        at = app_test(page).run()
        errors = app_errors(at)
        assert any("open in another process (a `curate run`, process" in e and "wait until that run has finished"
                   in e for e in errors), (page, errors)
        assert any("A pipeline run started from a terminal" in i.value for i in at.info), page
        assert not any("No workspace is open" in i.value or "Open or create a workspace" in i.value
                       for i in at.info), page
        assert at.button(key="ws_in_use_retry")
    at = app_test("app.py").run()
    rc, out, err = held.release()
    assert rc == 0, err
    at.button(key="ws_in_use_retry").click().run()
    assert not app_errors(at) and not [b for b in at.button if b.key == "ws_in_use_retry"]
    assert any(m.label == "Rows" and m.value == "300" for m in at.metric)


def test_locked_workspace_shows_error(app_env, tmp_path, small_csv):
    """Moved from test_app: a Python process (neither `curate` nor the app) holds the workspace."""
    wpath = tmp_path / "w"
    with Workspace(wpath) as w:
        w.ingest(small_csv)
    before = fingerprint(wpath)
    holder = subprocess.Popen([sys.executable, "-c",
                               f"from curate_core import Workspace; w = Workspace({str(wpath)!r}); "
                               "print('ready', flush=True); import time; time.sleep(60)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        app_env(wpath)
        at = app_test("app.py").run()
        assert not at.exception
        assert any("open in another process" in e.value for e in at.error)
        assert any("Another program has this workspace open" in i.value for i in at.info)
        assert not any("Open or create a workspace" in i.value for i in at.info)
    finally:
        holder.kill()
        holder.wait()
    assert fingerprint(wpath) == before


def test_the_cli_while_the_app_has_the_workspace_names_the_app(built, app_env):
    """The app keeps its workspace open; a CLI command meanwhile is told that the app has it and what to do."""
    from curate_ui import state

    app_env(built)
    at = app_test("app.py").run()  # the app opens the workspace and keeps it open
    assert not app_errors(at)
    before = fingerprint(state.open_workspace(str(built)))
    for verb in (["run", "--stages", "textstats", "--force"], ["select", "--recipe", ALL, "--save-selection", "x"]):
        r = cli_process(*verb, "--workspace", built)
        assert_refused(r, f"open in another process (the Curate app, process {os.getpid()})",
                       "do it in the app")
    assert fingerprint(state.open_workspace(str(built))) == before


def test_a_lock_error_from_an_unknown_holder_keeps_the_plain_words(tmp_path):
    """No holder file, a process that is neither `curate` nor streamlit: the message names the process only."""
    from curate_core.store import _lock_error

    other = subprocess.Popen(["sleep", "60"])
    try:
        e = _lock_error(tmp_path, Exception(f"IO Error: Could not set lock on file: Conflicting lock is held in "
                                            f"/usr/bin/sleep (PID {other.pid}) by user root"))
    finally:
        other.kill()
        other.wait()
    assert isinstance(e, CurateError) and e.holder is None and e.pid == other.pid
    assert e.message.endswith(f"open in another process (process {other.pid}); DuckDB allows one writer at a time")
    assert "close the app or the other command" in e.hint
