"""Ingest throughput vs bare DuckDB, and peak memory.

    python bench/ingest.py [--rows 1000000] [--format csv|parquet] [--repeat 3]

Generates N synthetic labelled rows (short texts, 50 labels, an extra numeric column), then in separate
processes (so peak memory is per run: VmHWM, which unlike ru_maxrss does not inherit the parent's peak) times
  * baseline: ``CREATE TABLE t AS SELECT * FROM read_csv(file)`` into a fresh on-disk DuckDB file, and
  * ours:     ``Workspace(dir).ingest(file)`` (UTF-8 check + hash, staging, validation, token counts, commit).
Prints ``ingest: ours X s, baseline Y s, ratio R`` (R = ours/baseline speed, the best of --repeat runs each), the
median, the CPU-seconds and busiest-thread ratios (steadier when the machine is shared), our peak RSS, and the
time and peak RSS of one ingest of a 2,000-column × 100-row CSV (``--wide``).
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import json
import random
import statistics
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


#: per-thread CPU seconds of this process (Linux): the busiest thread's share bounds the wall time on an idle
#: machine, which a busy one hides (there, wall time follows total CPU)
THREADS = """
import os, time, resource
def thread_cpu():
    out = {}
    for t in os.listdir('/proc/self/task'):
        try:
            f = open(f'/proc/self/task/{t}/stat').read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        out[t] = (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
    return out
def report(t0, cpu0, threads0, threads1, rows, close_cpu):
    ru = resource.getrusage(resource.RUSAGE_SELF)
    busy = {k: v - threads0.get(k, 0) for k, v in threads1.items()}
    busy[str(os.getpid())] = busy.get(str(os.getpid()), 0) + close_cpu  # the checkpoint at close: main thread
    hwm = int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))
    print(time.perf_counter() - t0, rows, hwm, ru.ru_utime + ru.ru_stime - cpu0, max(busy.values()))
"""

CHILD_BASE = THREADS + """
import duckdb, sys, time, resource
path, db, fmt = sys.argv[1:4]
con = duckdb.connect(db)
r0 = resource.getrusage(resource.RUSAGE_SELF); cpu0 = r0.ru_utime + r0.ru_stime
th0 = thread_cpu(); t = time.perf_counter()
reader = "read_csv" if fmt == "csv" else "read_parquet"
con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}(?)", [path])
n = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
th1 = thread_cpu(); c = time.process_time()
con.close()
report(t, cpu0, th0, th1, n, time.process_time() - c)
"""

CHILD_OURS = THREADS + """
import sys, time, resource
sys.path.insert(0, sys.argv[4])
from curate_core import Workspace
path, ws_dir = sys.argv[1:3]
ws = Workspace(ws_dir)
r0 = resource.getrusage(resource.RUSAGE_SELF); cpu0 = r0.ru_utime + r0.ru_stime
th0 = thread_cpu(); t = time.perf_counter()
s = ws.ingest(path)
th1 = thread_cpu(); c = time.process_time()
ws.close()
report(t, cpu0, th0, th1, s.rows_added, time.process_time() - c)
"""


def run_child(code: str, *args: str) -> tuple[float, int, int, float, float]:
    """(wall seconds, rows, peak RSS kB, CPU seconds, busiest thread's CPU seconds) of one run in a fresh process."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    secs, n, rss, cpu, busiest = out.stdout.strip().splitlines()[-1].split()
    return float(secs), int(n), int(rss), float(cpu), float(busiest)


def wide_file(path: Path, columns: int, rows: int) -> None:
    """A CSV of *rows* texts with *columns* integer columns besides text and label (issue 17's wide file)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = {"text": [f"t {i}" for i in range(rows)], "label": ["a", "b"] * (rows // 2)}
    cols.update({f"c{j}": pa.array([i * j for i in range(rows)], pa.int64()) for j in range(columns)})
    pacsv.write_csv(pa.table(cols), path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--wide", type=int, default=2000, help="columns of the wide-file run (0: skip it)")
    a = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), cpus {os.cpu_count()}")
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
        bm, om = statistics.median(r[0] for r in base), statistics.median(r[0] for r in ours)
        print(f"ingest_rows_per_s: ours {a.rows / o[0]:,.0f}, baseline {a.rows / b[0]:,.0f}")
        print(f"ingest: ours {o[0]:.2f} s, baseline {b[0]:.2f} s, ratio {ratio:.2f} "
              f"(ours/bare speed, best of {a.repeat}; goal >= 0.80)")
        print(f"ingest_median: ours {om:.2f} s, baseline {bm:.2f} s, ratio {bm / om:.2f} (median of {a.repeat})")
        oc, bc = min(r[3] for r in ours), min(r[3] for r in base)
        print(f"ingest_cpu: ours {oc:.2f} s, baseline {bc:.2f} s, ratio {bc / oc:.2f} (CPU seconds: steadier on a busy machine)")
        ot, bt = min(r[4] for r in ours), min(r[4] for r in base)
        print(f"ingest_busiest_thread: ours {ot:.2f} s, baseline {bt:.2f} s, ratio {bt / ot:.2f} (CPU seconds of the "
              "busiest thread: about the wall time on an idle machine)")
        print(f"ingest_peak_rss: ours {max(r[2] for r in ours) / 1024:,.0f} MB, "
              f"baseline {max(r[2] for r in base) / 1024:,.0f} MB")
        size = lambda p: sum(f.stat().st_size for f in p.rglob("*.duckdb")) if p.is_dir() else p.stat().st_size  # noqa
        from curate_core.store import TEXT_TYPE

        print(f"ingest_disk: ours {size(tmp / 'ws0') / 1e6:,.0f} MB (texts: {TEXT_TYPE}), "
              f"baseline {size(tmp / 'base0.duckdb') / 1e6:,.0f} MB (default compression), csv {data.stat().st_size / 1e6:,.0f} MB")
        if a.wide:
            wide = tmp / "wide.csv"
            wide_file(wide, a.wide, 100)
            w = run_child(CHILD_OURS, str(wide), str(tmp / "wide-ws"), "csv", str(REPO))
            print(f"ingest_wide: {a.wide:,} columns x 100 rows: ours {w[0]:.2f} s, peak RSS {w[2] / 1024:,.0f} MB "
                  "(issue 17: below 1 GB)")
        print(json.dumps({"rows": a.rows, "ours_s": o[0], "baseline_s": b[0], "ratio": ratio, "cpu_ratio": bc / oc}))


if __name__ == "__main__":
    main()
