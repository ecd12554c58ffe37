"""Ingest throughput vs bare DuckDB, and peak memory.

    python bench/ingest.py [--rows 1000000] [--format csv|parquet] [--repeat 3]

Generates N synthetic labelled rows (short texts, 50 labels, an extra numeric column), then in separate
processes (so peak memory is per run: VmHWM, which unlike ru_maxrss does not inherit the parent's peak) times
  * baseline: ``CREATE TABLE t AS SELECT * FROM read_csv(file)`` into a fresh on-disk DuckDB file, and
  * ours:     ``Workspace(dir).ingest(file)`` (UTF-8 check + hash, staging, validation, token counts, commit).
Prints ``ingest_rows_per_s`` and ``ingest: ours X s, baseline Y s, ratio R`` (R = ours/baseline speed, the
best of --repeat runs each), plus our peak RSS.
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import random
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORDS = ("account card transfer payment balance refund limit verify identity pending top up exchange rate "
         "fee cash withdrawal atm pin blocked lost stolen declined country currency apple pay virtual").split()


def make_file(path: Path, n: int, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 24))) for _ in range(n)]
    t = pa.table({"id": [f"r{i:07d}" for i in range(n)], "text": texts,
                  "label": [f"intent_{rng.randrange(50)}" for _ in range(n)],
                  "quality": [round(rng.random(), 4) for _ in range(n)]})
    if fmt == "csv":
        pacsv.write_csv(t, path)
    else:
        pq.write_table(t, path)


CHILD_BASE = """
import duckdb, sys, time, resource
path, db, fmt = sys.argv[1:4]
con = duckdb.connect(db)
r0 = resource.getrusage(resource.RUSAGE_SELF); cpu0 = r0.ru_utime + r0.ru_stime
t = time.perf_counter()
reader = "read_csv" if fmt == "csv" else "read_parquet"
con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}(?)", [path])
n = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
con.close()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - t, n, int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))), ru.ru_utime + ru.ru_stime - cpu0)
"""

CHILD_OURS = """
import sys, time, resource
sys.path.insert(0, sys.argv[4])
from curate_core import Workspace
path, ws_dir = sys.argv[1:3]
ws = Workspace(ws_dir)
r0 = resource.getrusage(resource.RUSAGE_SELF); cpu0 = r0.ru_utime + r0.ru_stime
t = time.perf_counter()
s = ws.ingest(path)
ws.close()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - t, s.rows_added, int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))), ru.ru_utime + ru.ru_stime - cpu0)
"""


def run_child(code: str, *args: str) -> tuple[float, int, int, float]:
    """(wall seconds, rows, peak RSS kB, CPU seconds) of one run in a fresh process."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    secs, n, rss, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(secs), int(n), int(rss), float(cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / f"data.{a.format}"
        t = time.perf_counter()
        make_file(data, a.rows, a.format)
        print(f"generated {a.rows:,} rows ({data.stat().st_size / 1e6:.0f} MB {a.format}) in {time.perf_counter() - t:.1f} s")
        base, ours = [], []
        for i in range(a.repeat):  # interleaved, so load changes hit both alike
            base.append(run_child(CHILD_BASE, str(data), str(tmp / f"base{i}.duckdb"), a.format))
            ours.append(run_child(CHILD_OURS, str(data), str(tmp / f"ws{i}"), a.format, str(REPO)))
        b, o = min(base), min(ours)
        assert o[1] == b[1] == a.rows, (o, b)
        ratio = b[0] / o[0]
        print(f"ingest_rows_per_s: ours {a.rows / o[0]:,.0f}, baseline {a.rows / b[0]:,.0f}")
        print(f"ingest: ours {o[0]:.2f} s, baseline {b[0]:.2f} s, ratio {ratio:.2f} (ours/bare speed; goal >= 0.50)")
        oc, bc = min(r[3] for r in ours), min(r[3] for r in base)
        print(f"ingest_cpu: ours {oc:.2f} s, baseline {bc:.2f} s, ratio {bc / oc:.2f} (CPU seconds: steadier on a busy machine)")
        print(f"ingest_peak_rss: ours {max(r[2] for r in ours) / 1024:,.0f} MB, "
              f"baseline {max(r[2] for r in base) / 1024:,.0f} MB")
        print(json.dumps({"rows": a.rows, "ours_s": o[0], "baseline_s": b[0], "ratio": ratio}))


if __name__ == "__main__":
    main()
