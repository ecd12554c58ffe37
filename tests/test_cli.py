"""CLI contract: ingest/info/run, `info --json` keys, errors as `error:` + hint, exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from curate_core.cli import main

from .conftest import REPO, write_csv


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate_core", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_ingest_info_json_run(tmp_path, small_csv):
    w = str(tmp_path / "w")
    r = cli("ingest", str(small_csv), "--workspace", w)
    assert r.returncode == 0, r.stderr
    assert "added 40 rows" in r.stdout
    info = json.loads(cli("info", "--workspace", w, "--json").stdout)
    assert info["rows"] == 40 and info["labels"] == 3 and info["sources"] == ["small"]
    assert {"row_id", "id", "text", "label", "source", "n_tokens"} <= set(info["columns"])
    assert set(info["stages"].values()) <= {"done", "partial", "missing"}
    assert info["stages"]["textstats"] == "missing"
    r = cli("run", "--workspace", w, "--stages", "textstats")
    assert r.returncode == 0 and "textstats: done" in r.stdout
    assert json.loads(cli("info", "--workspace", w, "--json").stdout)["stages"]["textstats"] == "done"


def test_real_file_row_count(tmp_path):
    """A real file with quoting, punctuation and non-ASCII text: the bundled BANKING77 test split, 3,080 rows."""
    w = str(tmp_path / "w")
    assert cli("ingest", str(REPO / "assets" / "demo" / "banking77_test.csv"), "--workspace", w).returncode == 0
    assert json.loads(cli("info", "--workspace", w, "--json").stdout)["rows"] == 3080


def test_ingest_errors_exit_2_with_hint_and_no_traceback(tmp_path, small_csv):
    """Ingest's refusals; the other commands' are in tests/reliability/ (test_commands, test_recipes …)."""
    w = str(tmp_path / "w")
    cli("ingest", str(small_csv), "--workspace", w)
    bad = write_csv(tmp_path / "notext.csv", [{"foo": 1, "bar": 2}])
    cases = [
        (["ingest", str(bad), "--workspace", w], "no text column"),
        (["ingest", str(small_csv), "--workspace", w, "--text", "nope"], "No column 'nope'"),
        (["ingest", str(tmp_path / "missing.csv"), "--workspace", w], "File not found"),
    ]
    for args, msg in cases:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert lines[0].startswith("error: ") and msg in lines[0], r.stderr
        assert lines[1].startswith("hint: ")
        assert "Traceback" not in r.stderr + r.stdout
    assert json.loads(cli("info", "--workspace", w, "--json").stdout)["rows"] == 40


def test_unexpected_error_logged_not_shown(tmp_path, small_csv, monkeypatch, capsys):
    w = tmp_path / "w"
    assert main(["ingest", str(small_csv), "--workspace", str(w)]) == 0
    import curate_core.workspace as wsmod

    monkeypatch.setattr(wsmod.Workspace, "info", lambda self: 1 / 0)
    assert main(["info", "--workspace", str(w)]) == 1
    err = capsys.readouterr().err
    assert "error: unexpected ZeroDivisionError" in err and "Traceback" not in err
    logs = list((w / "logs").glob("error-*.log"))
    assert logs and "ZeroDivisionError" in logs[0].read_text()


def test_help_lists_commands():
    r = cli("--help")
    for c in ("ingest", "info", "run", "scores", "demo", "stages"):
        assert c in r.stdout
