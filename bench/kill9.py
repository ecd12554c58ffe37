"""kill -9 at seeded random moments over the whole pipeline; each killed run, resumed, must equal an uninterrupted one.

    python bench/kill9.py [--kills 20] [--seed 0] [--rows 600] [--stratified] [--reference plain|slowed]

A small labelled dataset (TF-IDF embeddings, PCA map, so no numba compile per process) is run once without
interruption (the reference), then, per kill, from a fresh copy of the ingested workspace: `run` in a subprocess
with every batch slowed (CURATE_DEBUG_BATCH_DELAY), SIGKILL after a seeded random delay, then the same `run`
again to the end. Every stage-output table (rows and a digest of every value, from `curate check`) must equal
the reference. Prints one line per kill (when, in which stage, identical or not) and a summary; exits 1 on any
difference. Issue 17 asks for ≥ 20 moments; tests/reliability/test_signals.py runs 3 on every `.ci/run`
(``--stratified``: the k-th moment falls in the k-th equal slice of the run, so few kills still spread over the
stages; ``--reference slowed``: the slowed uninterrupted run is the reference, one run fewer).
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PARAMS = ["--embedder", "tfidf", "--param", "embed.shard_size=60", "--param", "textstats.batch_size=60",
          "--param", "project.method=pca", "--param", "project.sample_size=200", "--param", "project.batch_size=80",
          "--param", "probe.epochs=15"]
OUTPUTS = ("textstats", "embeddings", "projection", "projection5", "clusters", "cluster_info", "probe_probs",
           "probe_epochs", "scores")


def dataset(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    topics = {"billing": ["card charged {n} times", "refund of {n} euros", "fee of {n} on my statement"],
              "travel": ["flight to city {n}", "hotel for {n} nights", "train {n} delayed"],
              "weather": ["rain in {n} days", "{n} degrees tonight", "snow for {n} hours"]}
    rows = []
    for i in range(n):
        lab = list(topics)[i % 3]
        text = rng.choice(topics[lab]).format(n=rng.randint(1, 999))
        rows.append({"id": f"r{i:05d}", "text": f"{text} {rng.choice(['please', 'now', 'today', 'asap'])}",
                     "label": lab if rng.random() > 0.1 else rng.choice(list(topics))})
    return pd.DataFrame(rows)


def run(ws: Path, delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "CURATE_DEBUG_BATCH_DELAY": str(delay)}
    return subprocess.Popen([sys.executable, "-m", "curate_core", "run", "--workspace", str(ws), *PARAMS],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def digests(ws: Path) -> dict:
    from curate_core.check import check_workspace

    tables = check_workspace(ws)["tables"]
    return {t: (tables[t]["rows"], tables[t]["digest"]) for t in OUTPUTS if t in tables}


def running_stage(ws: Path) -> str:
    con = duckdb.connect(str(ws / "curate.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT stage FROM runs WHERE status = 'running' ORDER BY started DESC LIMIT 1").fetchall()
        done = con.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchall()[0][0]
    finally:
        con.close()
    return row[0][0] if row else ("(between stages)" if done else "(before the first stage)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--delay", type=float, default=0.15, help="seconds added to every batch of the killed runs")
    ap.add_argument("--keep", action="store_true", help="keep the workspaces of failed cases (and the reference)")
    ap.add_argument("--stratified", action="store_true",
                    help="the k-th kill at a random moment of the k-th of --kills equal slices of the run")
    ap.add_argument("--reference", choices=["plain", "slowed"], default="plain",
                    help="compare with the uninterrupted run without delays (default) or with the slowed one")
    a = ap.parse_args()
    from curate_core import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="curate-kill9-"))
    try:
        base = tmp / "base"
        with Workspace(base) as w:
            w.ingest(dataset(a.rows, a.seed))
        ref = tmp / "ref"
        plain = None
        if a.reference == "plain":
            shutil.copytree(base, ref)
            t0 = time.monotonic()
            p = run(ref)
            if p.wait() != 0:
                print("FAIL: the reference run failed:", p.stderr.read()[-500:])
                return 1
            plain = time.monotonic() - t0
        t0 = time.monotonic()
        slow_ref = tmp / "slow"
        shutil.copytree(base, slow_ref)
        p = run(slow_ref, a.delay)
        if p.wait() != 0:
            print("FAIL: the slowed run failed:", p.stderr.read()[-500:])
            return 1
        slow = time.monotonic() - t0
        want = digests(ref if a.reference == "plain" else slow_ref)
        print((f"reference run {plain:.1f} s; " if plain is not None else "reference: the slowed run; ")
              + f"with {a.delay} s per batch {slow:.1f} s; {len(want)} output tables")
        rng = random.Random(a.seed)
        same = 0
        for k in range(a.kills):
            ws = tmp / f"k{k}"
            shutil.copytree(base, ws)
            lo, hi = 0.5, slow * 0.95
            if a.stratified:
                lo, hi = lo + (hi - lo) * k / a.kills, lo + (hi - lo) * (k + 1) / a.kills
            at = rng.uniform(lo, hi)
            p = run(ws, a.delay)
            time.sleep(at)
            alive = p.poll() is None
            if alive:
                os.kill(p.pid, signal.SIGKILL)
            p.wait()
            stage = running_stage(ws) if alive else "(had finished)"
            r = run(ws)
            rc = r.wait()
            got = digests(ws) if rc == 0 else {}
            diff = [t for t in want if got.get(t) != want[t]]
            ok = rc == 0 and not diff
            same += ok
            print(f"{'ok  ' if ok else 'FAIL'} kill {k + 1:2d} at {at:5.1f} s, in {stage}: resumed "
                  + ("identical" if ok else f"exit {rc}; tables that differ: {', '.join(diff)} "
                     + (r.stderr.read()[-300:] if rc else "")))
            if not ok and a.keep:
                print(f"     kept {ws} (reference {ref})")
            else:
                shutil.rmtree(ws)
        print(f"{same} of {a.kills} killed runs resumed to the reference's outputs")
        return 0 if same == a.kills else 1
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
