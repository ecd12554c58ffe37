"""What every reliability case uses: the workspace's fingerprint, the CLI (in this process or another) and the
assertion that a command was refused in words."""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from curate_core import Workspace
from curate_core import cli as curate_cli
from curate_core.check import check_workspace, table_digests

REPO = Path(__file__).resolve().parents[2]
ALL = str(REPO / "assets" / "recipes" / "all.json")
#: the fast pipeline of the suite's workspace: TF-IDF vectors, a PCA map, a short probe (no model, no numba)
FAST_RUN = {"embed": {"embedder": "tfidf"}, "project": {"method": "pca"}, "probe": {"epochs": 15}}
#: hostile values the suite's workspace holds, to be matched literally by recipes and searches
SQL_LABEL = "x' OR '1'='1"
SQL_SOURCE = 'books"; DROP TABLE samples; --'
SQL_COLUMN = 'score"; DROP TABLE samples; --'


def fingerprint(where: Path | Workspace) -> dict[str, tuple[int, str]]:
    """(rows, digest) of every table but the run log (a failed or interrupted run is recorded there on purpose).

    The digest covers every value and every whole row (``curate check``'s), so the decision log, selections,
    recipes and every score are in it. A path is read through its own read-only connection; an open Workspace
    (DuckDB lets one process hold a file one way only) through its cursor."""
    if isinstance(where, Workspace):
        with where.store.cursor() as cur:
            tables = table_digests(cur)
    else:
        tables = check_workspace(where)["tables"]
    return {k: (t["rows"], t["digest"]) for k, t in tables.items() if k != "runs"}


def same_data(before: dict, after: dict) -> bool:
    """*after* holds the same tables as *before* with the same contents, plus at most tables with no rows (a stage
    that was stopped may have created its empty cache table: structure, not data)."""
    return {k: after.get(k) for k in before} == before and all(after[k][0] == 0 for k in after if k not in before)


@dataclass
class Result:
    """Exit code and output of one CLI command."""

    rc: int
    out: str
    err: str


def cli(*args: str) -> Result:
    """The CLI's ``main`` in this process (fast: no interpreter start), output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = curate_cli.main([str(a) for a in args])
        except SystemExit as e:  # argparse's refusal of a bad command line
            rc = int(e.code or 0)
    return Result(rc, out.getvalue(), err.getvalue())


def cli_process(*args: str, env: dict | None = None, timeout: float = 300) -> Result:
    """``python -m curate_core …`` in a new process (what a person runs); *timeout* only guards against a hang."""
    r = subprocess.run([sys.executable, "-m", "curate_core", *map(str, args)], cwd=REPO, capture_output=True,
                       text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    return Result(r.returncode, r.stdout, r.stderr)


def assert_refused(r: Result, *words: str) -> None:
    """Exit 2, ``error: …`` first on stderr (after a run's progress bars, if any) with a ``hint:``, every one of
    *words* said, and nothing that reads as a crash (a bug report or a traceback)."""
    lines = [x for x in r.err.strip().splitlines() if "%|" not in x]  # tqdm's bars of the stages that ran
    assert r.rc == 2, (r.rc, r.err)
    assert lines and lines[0].startswith("error: "), r.err
    assert any(x.startswith("hint: ") for x in lines[1:]), r.err
    for w in words:
        assert w in r.err, (w, r.err)
    assert "this is a bug" not in r.err and "Traceback" not in r.err + r.out, r.err


def app_errors(at) -> list[str]:
    """The st.error texts of an AppTest run, after asserting that it drew no traceback."""
    assert not at.exception, [e.value for e in at.exception]
    return [e.value.replace("\\", "") for e in at.error]  # markdown escapes of the core's message


def review_queue(app_test):
    """The Review queue page with every labelled row queued (the suite's data has few flagged rows), run."""
    at = app_test("pages/2_Review_queue.py").run()
    at.toggle(key="rv_every").set_value(True).run()
    return at


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """The suite's dataset: three topics, some rows with an SQL-looking label, half with an SQL-looking source,
    a numeric column whose name is SQL, and texts with `%`/`_` (LIKE wildcards) that must match literally."""
    rng = random.Random(seed)
    topics = {"billing": ["card charged {n} times", "refund of {n} euros", "fee of {n} on my statement"],
              "travel": ["flight to city {n}", "hotel for {n} nights", "train {n} delayed"],
              "weather": ["rain in {n} days", "{n} degrees tonight", "snow for {n} hours"]}
    rows = []
    for i in range(n):
        lab = list(topics)[i % 3]
        text = rng.choice(topics[lab]).format(n=rng.randint(1, 999))
        if i % 50 == 7:
            text += " 100% sure_thing"
        rows.append({"id": f"r{i:04d}", "text": f"{text} {rng.choice(['please', 'now', 'today', 'asap'])}",
                     "label": SQL_LABEL if i % 25 == 0 else lab, "source": "web" if i % 2 else SQL_SOURCE,
                     SQL_COLUMN: i % 7})
    return pd.DataFrame(rows)
