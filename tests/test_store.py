"""Store: schema version, the decisions log, selections and recipes (the lock message and concurrent writers:
tests/reliability/test_concurrency.py)."""

from __future__ import annotations

import pytest

from curate_core import CurateError, Workspace
from curate_core.store import SCHEMA_VERSION, Store, quote_ident


def test_schema_version_recorded_and_newer_refused(tmp_path):
    with Workspace(tmp_path / "w") as ws:
        assert ws.store.get_meta("schema_version") == str(SCHEMA_VERSION)
        ws.store.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(CurateError, match="schema version"):
        Workspace(tmp_path / "w")


def test_open_missing_without_create(tmp_path):
    with pytest.raises(CurateError, match="No workspace"):
        Workspace(tmp_path / "nothing", create=False)


def test_quote_ident_is_injection_safe(ws):
    nasty = 'x"; DROP TABLE samples; --'
    with ws.store.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE t ({quote_ident(nasty)} INTEGER)")
        cols = [r[0] for r in cur.execute("DESCRIBE t").fetchall()]
    assert cols == [nasty]
    assert ws.store.table_exists("samples")


def test_unknown_table_refused(ws):
    with pytest.raises(ValueError):
        ws.store.read_table("samples; DROP TABLE samples")


def test_decisions_log_append_only_with_undo(ws, small_csv):
    ws.ingest(small_csv)
    b1 = ws.decide([0, 1, 2], "exclude", reason="junk")
    b2 = ws.decide([1], "relabel", "travel")
    cur = ws.decisions().set_index("row_id")
    assert cur.loc[0, "action"] == "exclude" and cur.loc[1, "action"] == "relabel" and cur.loc[1, "value"] == "travel"
    assert ws.undo() == b2
    cur = ws.decisions().set_index("row_id")
    assert cur.loc[1, "action"] == "exclude"  # the earlier decision is back in force
    assert ws.undo() == b1
    assert ws.decisions().empty
    assert ws.undo() is None
    log = ws.store.decision_log()
    assert len(log) == 6 and (log["action"] == "undo").sum() == 2  # nothing was deleted


def test_decision_errors(ws, small_csv):
    ws.ingest(small_csv)
    with pytest.raises(CurateError, match="Unknown action"):
        ws.decide([0], "delete")
    with pytest.raises(CurateError, match="Unknown label"):
        ws.decide([0], "relabel", "nope")
    with pytest.raises(CurateError, match="do not exist"):
        ws.decide([10_000], "exclude")
    with pytest.raises(CurateError, match="No rows"):
        ws.decide([], "exclude")
    with pytest.raises(CurateError, match="for relabel decisions"):
        ws.store.decide([0, 1], "exclude", ["a", "b"])  # one value per row means relabel to each one's label


def test_a_version_1_workspace_migrates_to_the_decisions_view(tmp_path, small_csv):
    with Workspace(tmp_path / "w") as ws:
        ws.ingest(small_csv)
        ws.decide([3, 4], "exclude")
        b = ws.decide([4], "keep")
        ws.undo()
        assert b and ws.decisions()["action"].tolist() == ["exclude", "exclude"]
        with ws.store.cursor() as cur:  # as the code before schema 2 left it
            cur.execute("DROP VIEW decisions_in_force")
            cur.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Workspace(tmp_path / "w") as ws:
        assert ws.store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert ws.decisions()[["row_id", "action"]].values.tolist() == [[3, "exclude"], [4, "exclude"]]


def test_decisions_survive_reopen(tmp_path, small_csv):
    with Workspace(tmp_path / "w") as ws:
        ws.ingest(small_csv)
        ws.decide([3], "keep")
    with Workspace(tmp_path / "w") as ws:
        assert ws.decisions()["row_id"].tolist() == [3]


def test_selections_and_recipes(ws, small_csv):
    ws.ingest(small_csv)
    assert ws.save_selection("odd ones", [5, 3, 3, 9]) == 3
    assert ws.selections() == {"odd ones": 3}
    assert ws.selection("odd ones").tolist() == [3, 5, 9]
    with pytest.raises(CurateError, match="No selection named"):
        ws.selection("missing")
    ws.store.save_recipe("r1", {"version": 1, "filters": []})
    assert ws.store.recipe("r1") == {"version": 1, "filters": []}
    assert ws.store.recipe_names() == ["r1"]


def test_memory_limit_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATE_MEMORY_LIMIT", "lots")
    with pytest.raises(CurateError, match="memory limit"):
        Store(tmp_path / "w")

