"""A full disk, wherever it strikes: a stage's part, the final import, a decision, a saved selection, a run the
app started. The error says the disk is full and what to free (exit 2 / st.error, never "a bug"), nothing is
half-imported, and the same command finishes once there is space.

The kernel's ENOSPC is simulated by raising it where the write happens (a real small tmpfs needs root:
bench/faults.py does that)."""

from __future__ import annotations

import errno

import duckdb

from curate_core import cli as curate_cli
from curate_core.execution import Checkpoint
from curate_core.stage import StageContext
from curate_core.store import Store

from ..conftest import app_test
from .helpers import ALL, app_errors, assert_refused, cli, fingerprint, review_queue, same_data

FULL = 'IO Error: Could not write file "{}": No space left on device'


def test_a_full_disk_during_run_exits_2_and_the_workspace_still_reads(ingested, monkeypatch, capsys):
    before = fingerprint(ingested)
    write, calls = Checkpoint.write, []

    def full(self, name, table):  # the disk fills up after the first part
        calls.append(name)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(ingested / "checkpoints" / name))
        return write(self, name, table)

    monkeypatch.setattr(Checkpoint, "write", full)
    rc = curate_cli.main(["run", "--workspace", str(ingested), "--stages", "embed", "--embedder", "tfidf",
                          "--param", "embed.shard_size=100"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: The disk is full" in err and "run the same command again" in err
    assert "this is a bug" not in err
    monkeypatch.setattr(Checkpoint, "write", write)
    assert same_data(before, fingerprint(ingested))  # nothing half-imported: at most an empty cache table more
    assert curate_cli.main(["info", "--workspace", str(ingested)]) == 0
    assert curate_cli.main(["run", "--workspace", str(ingested), "--stages", "embed", "--embedder", "tfidf",
                            "--param", "embed.shard_size=100"]) == 0  # with space again, the same command finishes


def test_a_full_disk_during_the_final_import_leaves_the_old_result(built, monkeypatch):
    """Every part written, then DuckDB cannot grow the file while importing them: the stage's table keeps its
    previous content (one transaction), and the run can be repeated."""
    def full(self, table, parts):
        raise duckdb.IOException(FULL.format(built / "curate.duckdb"))

    before = fingerprint(built)
    monkeypatch.setattr(StageContext, "import_parts", full)
    r = cli("run", "--workspace", built, "--stages", "textstats", "--force")
    assert_refused(r, "The disk is full", f"while writing in {built}", "free space")
    assert fingerprint(built) == before
    monkeypatch.undo()
    assert cli("run", "--workspace", built, "--stages", "textstats", "--force").rc == 0
    assert fingerprint(built) == before  # the same result again


def test_a_full_disk_when_saving_a_selection(built, monkeypatch):
    def full(self, name, row_ids):
        raise duckdb.IOException(FULL.format(built / "curate.duckdb.wal"))

    before = fingerprint(built)
    monkeypatch.setattr(Store, "save_selection", full)
    assert_refused(cli("select", "--workspace", built, "--recipe", ALL, "--save-selection", "mine"),
                   "The disk is full")
    assert fingerprint(built) == before


def test_a_full_disk_during_a_decision_in_the_app_is_said_and_the_log_is_unchanged(built, app_env, monkeypatch):
    from curate_ui import state

    def full(self, *a, **k):
        raise duckdb.IOException(FULL.format(built / "curate.duckdb.wal"))

    before = fingerprint(built)
    app_env(built)
    at = review_queue(app_test)
    monkeypatch.setattr(Store, "decide", full)
    at.button(key="rv_exclude").click().run()
    assert any("The disk is full" in e and "free space" in e for e in app_errors(at))
    state.close_all()
    assert fingerprint(built) == before


def test_a_full_disk_in_a_run_the_app_started_is_said_on_the_page(ingested, app_env, monkeypatch):
    from curate_ui import runner, state

    def full(self, name, table):
        raise OSError(errno.ENOSPC, "No space left on device", str(ingested / "checkpoints" / name))

    before = fingerprint(ingested)
    monkeypatch.setattr(Checkpoint, "write", full)
    app_env(ingested)
    ws = state.open_workspace(str(ingested))
    run = runner.start_run(ws, ["embed"], params={"embed": {"embedder": "tfidf"}})
    run.wait(240)
    assert not run.running and run.error is not None and "The disk is full" in run.error.message
    at = app_test("app.py").run()
    assert any("The disk is full" in e for e in app_errors(at))
    state.close_all()
    assert same_data(before, fingerprint(ingested))
