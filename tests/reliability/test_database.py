"""The workspace itself in a bad state: a truncated or corrupted database file, a file that is no database, a
read-only folder, a workspace path that is a file. Each is named with what to do (exit 2, `error:` + hint; in the
app st.error, no traceback), and what can be read is read."""

from __future__ import annotations

import errno
import json
import random
import shutil
from pathlib import Path

import duckdb
import pytest

from curate_core import cli as curate_cli
from curate_core.check import check_workspace
from curate_core.errors import environment_error

from ..conftest import app_test
from .helpers import ALL, app_errors, assert_refused, cli, cli_process, fingerprint, review_queue

PAGES = ("app.py", "pages/1_Map.py", "pages/2_Label_issues.py", "pages/2_Review_queue.py",
         "pages/3_Duplicates_and_outliers.py", "pages/4_Select.py", "pages/5_Export.py")


def _damaged(path: Path, how) -> Path:
    db = path / "curate.duckdb"
    db.write_bytes(how(db.read_bytes()))
    return path


def test_a_truncated_database_is_found_at_open_and_check_says_what_is_readable(built):
    _damaged(built, lambda b: b[: len(b) // 2])
    damaged = (built / "curate.duckdb").read_bytes()
    for verb in (["info"], ["select", "--recipe", ALL], ["export", "--recipe", ALL, "--out", str(built / "o")]):
        r = cli_process(*verb, "--workspace", str(built))
        assert r.rc == 2 and "is damaged (truncated:" in r.err and "restore curate.duckdb" in r.err, verb
        assert "this is a bug" not in r.err
    r = cli_process("check", "--workspace", str(built))
    assert r.rc == 2 and "problem: the file is truncated" in r.out and "damaged:" in r.out
    assert not (built / "o").exists()
    assert (built / "curate.duckdb").read_bytes() == damaged  # nothing tried to "repair" it


def test_free_blocks_trimmed_off_the_end_are_not_damage(built):
    """DuckDB cuts free blocks off the end of its file and still counts them: after a big table is dropped, the
    file holds fewer bytes than its blocks — healthy, and it opened as "damaged (truncated)" before."""
    db = built / "curate.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE _big AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000)")
    con.execute("CHECKPOINT")
    con.execute("DROP TABLE _big")
    con.execute("CHECKPOINT")
    con.close()
    con = duckdb.connect(str(db))
    _, _, block, total, used, *_ = con.execute("PRAGMA database_size").fetchall()[0]
    con.close()
    assert db.stat().st_size < total * block and total > used  # the state that was read as damage
    before = fingerprint(built)
    for verb in (["info"], ["check"], ["select", "--recipe", ALL]):
        r = cli(*verb, "--workspace", built)
        assert r.rc == 0 and "damaged" not in r.err + r.out, (verb, r.err)
    assert fingerprint(built) == before
    _damaged(built, lambda b: b[: len(b) - 2 * block])  # cut into the blocks in use: damage again
    r = cli("info", "--workspace", built)
    assert r.rc == 2 and "is damaged (truncated:" in r.err


@pytest.mark.parametrize("block", range(4))
def test_a_corrupted_block_is_named_as_damage_and_check_finds_it(built, block):
    size = (built / "curate.duckdb").stat().st_size
    off = 3 * 4096 + 262144 * block + 64
    assert off + 2048 <= size  # the suite's workspace fills more than 4 blocks
    rng = random.Random(block)
    _damaged(built, lambda b: b[:off] + bytes(rng.randrange(256) for _ in range(2048)) + b[off + 2048:])
    r = cli("check", "--workspace", built, "--json")
    report = json.loads(r.out)
    assert r.rc == 2 and not report["ok"] and any("Corrupt database file" in p for p in report["problems"])
    r = cli("select", "--workspace", built, "--recipe", ALL)
    assert r.rc in (0, 2) and "this is a bug" not in r.err  # a block select never reads may be fine
    if r.rc == 2:
        assert "is damaged" in r.err and "check --workspace" in r.err


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_a_file_that_is_not_a_database(built, content):
    (built / "curate.duckdb").write_bytes(content)
    assert_refused(cli("info", "--workspace", built), "is damaged (not a DuckDB database file)")
    assert (built / "curate.duckdb").read_bytes() == content


def test_a_damaged_database_in_the_app_is_an_error_on_every_page_not_a_traceback(built, app_env):
    _damaged(built, lambda b: b[: len(b) // 2])
    app_env(built)
    for page in PAGES:
        at = app_test(page).run()
        assert any("is damaged" in e and "restore curate.duckdb" in e for e in app_errors(at)), page


def test_check_on_a_sound_workspace_lists_stale_tables_and_orphaned_checkpoints(ingested):
    orphan = ingested / "checkpoints" / "embed" / "0123456789abcdef0123"
    orphan.mkdir(parents=True)
    (orphan / "part-000.parquet").write_bytes(b"x" * 1000)
    r = check_workspace(ingested)
    assert r["ok"] and r["tables"]["samples"]["rows"] == 300 and r["schema_version"] >= 1
    assert r["orphaned_checkpoints"] == {"folders": ["checkpoints/embed/0123456789abcdef0123"], "bytes": 1000}
    assert any("safe to delete" in n for n in r["notes"])
    assert cli("check", "--workspace", ingested).rc == 0


def test_the_fingerprint_sees_two_rows_trading_values(built):
    """Found here: the digest was a sum of per-column hashes, blind to two rows swapping their labels (or
    vectors moving to the wrong row_id) — the kill -9 soak and every "unchanged" check here rely on it."""
    before = fingerprint(built)
    con = duckdb.connect(str(built / "curate.duckdb"))
    try:
        a, b = con.execute("SELECT label FROM samples WHERE row_id IN (1, 2) ORDER BY row_id").fetchall()
        assert a != b
        con.execute("UPDATE samples SET label = CASE row_id WHEN 1 THEN ? ELSE ? END WHERE row_id IN (1, 2)",
                    [b[0], a[0]])
    finally:
        con.close()
    after = fingerprint(built)
    assert after["samples"] != before["samples"] and {k for k in after if after[k] != before[k]} == {"samples"}


def test_a_workspace_copied_whole_still_opens(built, tmp_path):
    """The control case: copying the folder (a backup) gives a sound workspace with the same data."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    assert fingerprint(copy) == fingerprint(built) and check_workspace(copy)["ok"]


def test_a_newer_schema_is_refused_with_how_to_update(built):
    con = duckdb.connect(str(built / "curate.duckdb"))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    before = fingerprint(built)
    for verb in (["info"], ["select", "--recipe", ALL], ["run"]):
        assert_refused(cli(*verb, "--workspace", built), "schema version 99", "update the tool")
    assert fingerprint(built) == before


# --------------------------------------------------------------------------------------------- read-only
def test_environment_errors_are_told_apart_from_bugs():
    ro = environment_error(OSError(errno.EROFS, "Read-only file system", "/ws/curate.duckdb"), "/ws")
    assert ro is not None and ro.message.startswith("Not allowed in /ws") and "reading commands" in ro.hint
    assert environment_error(PermissionError(errno.EACCES, "Permission denied", "/x"), None) is not None
    assert "disk is full" in environment_error(duckdb.IOException("IO Error: No space left on device"), "/w").message
    assert "damaged" in environment_error(duckdb.IOException("Corrupt database file: checksum"), "/w").message
    assert environment_error(RecursionError("maximum recursion depth exceeded"), None) is not None
    for bug in (ValueError("no space left in the list"), KeyError("corrupt"), ZeroDivisionError()):
        assert environment_error(bug, "/w") is None, bug  # a bug stays a bug


def test_a_read_only_workspace_answers_reading_verbs_and_refuses_writes_clearly(built, tmp_path, monkeypatch,
                                                                                capsys):
    """Issue 17: a workspace on a read-only filesystem refused even `info`. The folder test is patched (a
    read-only mount needs root, see bench/faults.py for the real one); DuckDB's read-only connection is real."""
    from curate_core import store

    before = fingerprint(built)
    monkeypatch.setattr(store, "_writable", lambda path: False)
    assert curate_cli.main(["info", "--workspace", str(built)]) == 0
    assert curate_cli.main(["select", "--workspace", str(built), "--recipe", ALL, "--json"]) == 0
    assert curate_cli.main(["search", "--workspace", str(built), "--query", "refund", "--k", "3"]) == 0
    assert curate_cli.main(["export", "--workspace", str(built), "--recipe", ALL, "--out", str(tmp_path / "o")]) == 0
    assert curate_cli.main(["check", "--workspace", str(built)]) == 0
    assert (tmp_path / "o" / "data.parquet").exists()
    capsys.readouterr()
    for write in (["select", "--recipe", ALL, "--save-selection", "mine"], ["run", "--stages", "textstats", "--force"]):
        assert curate_cli.main([*write, "--workspace", str(built)]) == 2, write
        err = capsys.readouterr().err
        assert "is read-only here" in err and "reading commands work" in err and "bug" not in err, write
    assert not list((built / "logs").glob("*"))  # nothing was written into the workspace
    monkeypatch.undo()
    assert fingerprint(built) == before


def test_the_app_on_a_read_only_workspace_reads_and_says_why_it_cannot_write(built, app_env, monkeypatch):
    from curate_core import store
    from curate_ui import state

    before = fingerprint(built)
    monkeypatch.setattr(store, "_writable", lambda path: False)
    app_env(built)
    for page in ("app.py", "pages/4_Select.py", "pages/2_Label_issues.py", "pages/5_Export.py"):
        at = app_test(page).run()
        assert not at.exception, (page, at.exception)
        assert any("cannot be written" in i.value for i in at.info), page
    at = review_queue(app_test)  # a decision: refused in words, not a traceback
    at.button(key="rv_exclude").click().run()
    assert any("is read-only here" in e for e in app_errors(at))
    state.close_all()
    monkeypatch.undo()
    assert fingerprint(built) == before


# ------------------------------------------------------------------------------ a path that is a file
@pytest.mark.parametrize("verb", [["info"], ["run"], ["select", "--recipe", ALL], ["check"],
                                  ["search", "--query", "refund"], ["scores", "--out", "s.parquet"]])
def test_a_workspace_path_that_is_a_file_is_named_as_such(tmp_path, verb):
    """Found here: reading verbs said "No workspace at …" with a hint to create one — over a file."""
    f = tmp_path / "notes.txt"
    f.write_text("my notes")
    assert_refused(cli(*verb, "--workspace", f), "is a file, not a workspace directory")
    assert f.read_text() == "my notes"


def test_the_database_file_given_as_the_workspace_points_to_its_folder(built):
    before = fingerprint(built)
    assert_refused(cli("info", "--workspace", built / "curate.duckdb"), "is a file",
                   f"give the folder that holds it: {built}")
    r = cli("ingest", ALL, "--workspace", built / "curate.duckdb")  # never removed as "a failed new workspace"
    assert_refused(r, "is a file")
    assert fingerprint(built) == before


def test_the_app_given_a_file_as_its_workspace_says_so(built, tmp_path, app_env):
    f = tmp_path / "notes.txt"
    f.write_text("my notes")
    app_env(f)
    for page in ("app.py", "pages/4_Select.py"):
        at = app_test(page).run()
        assert any("is a file, not a workspace directory" in e for e in app_errors(at)), page
    app_env(built)
    at = app_test("app.py").run()  # the sidebar's Open with a file: refused, the open workspace stays
    at.text_input(key="ws_path_input").set_value(str(built / "curate.duckdb")).run()
    at.button(key="ws_open").click().run()
    assert any("give the folder that holds it" in e for e in app_errors(at))
    assert f.read_text() == "my notes"
