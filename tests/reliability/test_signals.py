"""A run stopped from outside: Ctrl-C (SIGINT) in the middle of a stage, Ctrl-C while a run waits for another,
and kill -9 at seeded random moments over every stage (bench/kill9.py, on a small budget). The workspace keeps
what it had, and the same command resumes to the result of an uninterrupted run."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb

from .helpers import REPO, fingerprint, same_data
from .test_concurrency import HANG, HeldRun, _wait

RUN = ["run", "--stages", "embed", "--embedder", "tfidf", "--param", "embed.shard_size=50"]


def _run(ws: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate_core", *RUN[:1], "--workspace", str(ws), *RUN[1:]], cwd=REPO,
                          capture_output=True, text=True, timeout=HANG)


def test_ctrl_c_in_the_middle_of_a_stage_keeps_the_workspace_and_the_same_command_resumes(ingested, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(ingested, reference)
    assert _run(reference).returncode == 0
    before = fingerprint(ingested)
    held = HeldRun(ingested, tmp_path / "gate")
    try:
        parts = sorted(p.name for p in (ingested / "checkpoints" / "embed").rglob("part-*.parquet"))
        held.proc.send_signal(signal.SIGINT)
        out, err = held.proc.communicate(timeout=HANG)
    finally:
        held.kill()
    assert held.proc.returncode == 130, err
    assert "error: interrupted (finished batches are kept; run the same command again to resume)" in err
    assert "this is a bug" not in err and "Traceback" not in err
    assert same_data(before, fingerprint(ingested))  # nothing imported, nothing half-written
    con = duckdb.connect(str(ingested / "curate.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT status FROM runs WHERE stage = 'embed'").fetchall() == [("interrupted",)]
    finally:
        con.close()
    kept = sorted(p.name for p in (ingested / "checkpoints" / "embed").rglob("part-*.parquet"))
    assert parts and set(parts) <= set(kept)  # the finished batches are still there
    (tmp_path / "gate").unlink(missing_ok=True)
    r = _run(ingested)
    assert r.returncode == 0 and "embed: done" in r.stdout, r.stderr
    got, want = fingerprint(ingested), fingerprint(reference)
    assert got["embeddings"] == want["embeddings"] and got["samples"] == want["samples"]


def test_ctrl_c_while_a_run_waits_for_another_stops_only_the_waiting_one(ingested, tmp_path):
    held = HeldRun(ingested, tmp_path / "gate")
    try:
        second = subprocess.Popen([sys.executable, "-m", "curate_core", RUN[0], "--workspace", str(ingested), *RUN[1:]],
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(second.stderr.readline, "")), daemon=True)
        reader.start()
        _wait(lambda: any(x.startswith("waiting: another pipeline run") for x in lines), "the second run waits", second)
        second.send_signal(signal.SIGINT)
        second.wait(timeout=HANG)
        reader.join(HANG)
        err = "".join(lines)
        assert second.returncode == 130 and "error: interrupted" in err and "Traceback" not in err, err
        assert held.proc.poll() is None
        rc, out, err = held.release()
        assert rc == 0 and "embed: done" in out, err
    finally:
        held.kill()


def _kill9():
    """bench/kill9.py as a module (for its digest of the stage-output tables)."""
    spec = importlib.util.spec_from_file_location("kill9", REPO / "bench" / "kill9.py")
    mod = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    try:
        spec.loader.exec_module(mod)  # it points sys.path[0] at the repository, as when run as a script
    finally:
        sys.path[:] = path
    return mod


def test_kill_9_at_seeded_moments_over_every_stage_resumes_to_the_uninterrupted_result(tmp_path, templates):
    """bench/kill9.py on a small budget: 3 SIGKILLs, the k-th in the k-th third of a slowed run of every stage
    (TF-IDF + PCA), each killed run resumed and compared table by table (rows and a digest of every value and
    row) with the uninterrupted run. It exits 1 on any difference, as it did for a projection resumed 3e-8 off."""
    # the comparison it makes is not blind: one changed value in one stage output is a difference
    kill9 = _kill9()
    built = templates["built"]
    copy = Path(shutil.copytree(built, tmp_path / "copy"))
    con = duckdb.connect(str(copy / "curate.duckdb"))
    con.execute("UPDATE projection SET x = x + 1e-6 WHERE row_id = 5")
    con.close()
    a, b = kill9.digests(built), kill9.digests(copy)
    assert set(a) == set(kill9.OUTPUTS) and {t for t in a if a[t] != b[t]} == {"projection"}

    r = subprocess.run([sys.executable, "bench/kill9.py", "--kills", "3", "--seed", "3", "--rows", "300",
                        "--stratified", "--reference", "slowed"], cwd=REPO, capture_output=True, text=True,
                       timeout=1200, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert r.returncode == 0 and "3 of 3 killed runs resumed to the reference's outputs" in r.stdout, \
        r.stdout + r.stderr[-2000:]
    # a stage name, or a note in brackets such as "(between stages)"
    stages = re.findall(r"^ok   kill +\d+ at +[\d.]+ s, in (\S+|\([^)]*\)): resumed identical$", r.stdout, re.M)
    assert len(stages) == 3, r.stdout
    inside = {s for s in stages if not s.startswith("(")}  # not "(had finished)", "(between stages)" …
    assert len(inside) >= 2, r.stdout  # the kills landed inside at least two different stages
