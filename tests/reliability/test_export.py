"""Export under hostile conditions: files already there, folder names that try to leave the export folder (the
app's folder box, symlinks), texts full of control, bidi and zero-width characters, cells a spreadsheet would run
as formulas, a full disk, paths that cannot be written. Nothing half-written, nothing outside, the workspace as
it was."""

from __future__ import annotations

import duckdb
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from curate_core import CurateError, Workspace
from curate_core import cli as curate_cli
from curate_core import export as E

from ..conftest import app_test
from ..select_fixtures import sha
from .helpers import ALL, REPO, app_errors, assert_refused, cli, fingerprint


# --------------------------------------------------------------------------------- files already there
def test_no_overwrite_without_force(ews, tmp_path):
    E.export(ews, {}, tmp_path / "o")
    before = sha(tmp_path / "o" / "data.parquet")
    state = fingerprint(ews)
    with pytest.raises(CurateError, match="already holds"):
        E.export(ews, {"filters": [{"column": "lang", "op": "in", "value": ["de"]}]}, tmp_path / "o")
    assert sha(tmp_path / "o" / "data.parquet") == before and fingerprint(ews) == state
    E.export(ews, {"filters": [{"column": "lang", "op": "in", "value": ["de"]}]}, tmp_path / "o", force=True)
    assert sha(tmp_path / "o" / "data.parquet") != before
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("existing", ["data.csv", "manifest.json", "recipe.json"])
def test_the_cli_keeps_any_file_an_export_would_replace(built, tmp_path, existing):
    """Any one of the files an export writes, already in --out (even another format's data file), stops it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_bytes(b"precious")
    before = fingerprint(built)
    assert_refused(cli("export", "--workspace", built, "--recipe", ALL, "--out", out), "already holds", "--force")
    assert sorted(p.name for p in out.iterdir()) == [existing] and (out / existing).read_bytes() == b"precious"
    assert fingerprint(built) == before
    assert cli("export", "--workspace", built, "--recipe", ALL, "--out", out, "--force").rc == 0
    assert pq.read_metadata(out / "data.parquet").num_rows == 300


@pytest.mark.parametrize("bad", [
    {"filters": [{"score": "no_such_score", "op": ">", "value": 1}]},
    {"filters": [{"column": "outlier_score", "op": "<", "value": "x"}]},
    {"mixture": {"group_by": "label", "weights": {"alpha": 0}}},
    {"mixture": {"group_by": "label", "budget": {"rows": -1}}},
    {"mixture": {"group_by": "label", "weights": {"no_group": 1}}},
])
def test_bad_recipe_writes_nothing(ews, tmp_path, bad):
    before = fingerprint(ews)
    with pytest.raises(CurateError, match="Recipe field"):
        E.export(ews, bad, tmp_path / "out" / "deeper")
    assert not (tmp_path / "out").exists() and fingerprint(ews) == before


# ------------------------------------------------------------------------------- folders that try to leave
def test_export_folder_is_confined_to_the_base(tmp_path):
    base = tmp_path / "exports"
    base.mkdir()
    assert E.out_dir("run-1", base) == (base / "run-1").resolve()
    assert E.out_dir("2024/run-1", base) == (base / "2024" / "run-1").resolve()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (base / "link").symlink_to(outside)
    for bad in ["../x", "a/../../x", "/etc", str(outside), "~/x", "", ".", "a/./b", "a//b", ".hidden", "a b", "link/x"]:
        with pytest.raises(CurateError):
            E.out_dir(bad, base)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(CurateError, match="not a folder"):
        E.out_dir(f)


def test_export_with_base_refuses_traversal_before_writing(ews, tmp_path):
    base = tmp_path / "exports"
    before = fingerprint(ews)
    with pytest.raises(CurateError):
        E.export(ews, {}, "../escape", base=base)
    assert not (tmp_path / "escape").exists() and fingerprint(ews) == before
    res = E.export(ews, {}, "ok", base=base)
    assert res.out == (base / "ok").resolve() and (res.out / "manifest.json").exists()


def test_a_symlink_back_to_the_export_folder_is_refused(tmp_path):
    base = tmp_path / "exports"
    base.mkdir()
    (base / "loop").symlink_to(base)
    with pytest.raises(CurateError, match="outside"):
        E.out_dir("loop", base)


def test_the_app_export_folder_is_set_by_the_server_and_names_cannot_leave_it(built, tmp_path, app_env, monkeypatch):
    """Issue 17: a base folder box let a browser write anywhere (base `/` + name `tmp` wrote into /tmp). The
    folder name is the only box: `..`, absolute paths, `~user` and a symlink out are refused on the page."""
    root = tmp_path / "exports-root"
    monkeypatch.setenv("CURATE_EXPORT_DIR", str(root))
    base = root / built.name
    base.mkdir(parents=True)
    (base / "out-link").symlink_to(tmp_path / "outside", target_is_directory=True)
    (tmp_path / "outside").mkdir()
    before = fingerprint(built)
    app_env(built)
    at = app_test("pages/5_Export.py").run()
    assert not app_errors(at) and not [t for t in at.text_input if t.key == "exp_base"]  # no box for the base
    assert any(f"`{base}`" in c.value for c in at.caption)
    for bad in ("../escape", "/tmp", "..", "~root", "out-link", "out-link/x", "a/../../b"):
        at.text_input(key="exp_name").set_value(bad).run()
        at.button(key="exp_write").click().run()
        assert app_errors(at), bad
    assert not (tmp_path / "escape").exists() and not any((tmp_path / "outside").iterdir())
    at.text_input(key="exp_name").set_value("mine").run()
    at.button(key="exp_write").click().run()
    assert not app_errors(at)
    assert (base / "mine" / "data.parquet").exists()
    from curate_ui import state

    state.close_all()
    assert fingerprint(built) == before


@pytest.mark.parametrize("out, words", [("", "The export folder is empty"),
                                        ("/proc/no/such/folder", "Cannot use /proc/no"),
                                        ("file", "exists and is not a folder")])
def test_an_export_folder_that_cannot_be_used_is_refused(built, tmp_path, out, words):
    """`--out ''` wrote into the current folder, `--out /proc/x` was "a bug"."""
    if out == "file":
        out = tmp_path / "file"
        out.write_text("mine")
    before = fingerprint(built)
    assert_refused(cli("export", "--workspace", built, "--recipe", ALL, "--out", out), words)
    assert fingerprint(built) == before
    assert not list(Path.cwd().glob("data.parquet")) and not list(Path.cwd().glob("manifest.json"))


def test_the_app_refuses_broken_recipe_files_in_words(built, app_env):
    """Found here: an uploaded recipe nested 100,000 deep raised RecursionError on the Export page (a traceback);
    a recipe saved with a BOM was refused there (the CLI reads it) and a Latin-1 file was silently changed (its
    é replaced by �). Now: every broken file gets st.error, a BOM is fine, other encodings are refused."""
    before = fingerprint(built)
    app_env(built)
    at = app_test("pages/5_Export.py").run()
    at.radio(key="exp_src").set_value("upload").run()
    cases = {"deep.json": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nests too deeply"),
             "latin1.json": ('{"name": "café"}'.encode("latin-1"), "not UTF-8"),
             "broken.json": (b"{nope", "not valid JSON"),
             "newer.json": (b'{"version": 2}', "up to version 1"),
             "list.json": (b"[1, 2]", "A recipe is a JSON object"),
             "sql.json": (json.dumps({"filters": [{"column": 'x"; DROP TABLE samples; --', "op": "==",
                                                   "value": 1}]}).encode(), "unknown column")}
    for name, (data, words) in cases.items():
        at.file_uploader(key="exp_upload").set_value((name, data, "application/json")).run()
        errors = app_errors(at)
        assert any(words in e for e in errors), (name, errors)
        assert not [m for m in at.metric if m.label == "Rows to export"], name  # nothing to export from it
    at.file_uploader(key="exp_upload").set_value(("bom.json", "\ufeff".encode() + Path(ALL).read_bytes(),
                                                  "application/json")).run()
    assert not app_errors(at) and next(m.value for m in at.metric if m.label == "Rows to export") == "300"
    from curate_ui import state

    state.close_all()
    assert fingerprint(built) == before


# ----------------------------------------------------------------------------- texts that must survive
HOSTILE = ["=HYPERLINK(\"http://x\",\"click\")", "+1 555 0100", "-2+3", "@SUM(A1:A9)", "\tTAB first", "-0.5",
           "+7", "plain = text", "zero\u200bwidth", "rtl \u202eevil\u202c", "bell \x07 and \x1b[31m", "line\nbreak",
           "tab\tinside", "emoji 😀", "quote \" and , comma"]
#: every kind of character a text can carry that a careless writer changes: line ends, NUL, C0/C1 controls,
#: bidi overrides and isolates, zero-width joiners, a BOM, combining marks, separators, non-breaking spaces
UNICODE = ["crlf\r\nend", "cr\ronly", "nul\x00byte", "ls\u2028ps\u2029", "nel\u0085", "\ufeffbom first",
           "e\u0301 combining", "rtl \u202eevil\u202c", "lri \u2066x\u2069 rlm\u200f", "zw\u200b\u200c\u200d\u2060",
           "tab\there\tand\tthere", "trailing space ", " leading", "\x1b[31mansi\x1b[0m", "del\x7f", "c1 \x9b",
           "family 👩\u200d👩\u200d👧", "quote \" ' `", "backslash \\n literal", "\u00a0nbsp\u3000ideographic",
           "many\n\n\nlines\n"]


def _hostile(tmp_path: Path, texts: list[str] = HOSTILE) -> Workspace:
    ws = Workspace(tmp_path / "hw")
    ws.ingest(pd.DataFrame({"id": [f"h{i}" for i in range(len(texts))], "text": texts,
                            "label": ["=cmd|' /C calc'!A0" if i == 0 else "ok" for i in range(len(texts))]}))
    return ws


def test_texts_labels_ids_and_column_names_round_trip_byte_exact_in_parquet_and_jsonl(tmp_path):
    """Controls, RTL overrides, zero-width characters, tabs and newlines in texts, labels, ids and a column name
    come back from Parquet and JSONL exactly as they went in (compared as UTF-8 bytes)."""
    odd_col = "col\u200b\twith \"quotes\"\nand a newline"
    with Workspace(tmp_path / "uw") as ws:
        ws.ingest(pd.DataFrame({"id": [f"i{i}\u202e\t" for i in range(len(UNICODE))], "text": UNICODE,
                                "label": UNICODE[::-1], odd_col: UNICODE}))
        before = fingerprint(ws)
        E.export(ws, {}, tmp_path / "pq", "parquet")
        E.export(ws, {}, tmp_path / "js", "jsonl")
        assert fingerprint(ws) == before
    enc = lambda xs: [x.encode("utf-8") for x in xs]  # noqa: E731
    t = pq.read_table(tmp_path / "pq" / "data.parquet")
    ids = [f"i{i}\u202e\t" for i in range(len(UNICODE))]
    for got in (t.to_pydict(), {k: [json.loads(line)[k] for line in
                                    (tmp_path / "js" / "data.jsonl").read_bytes().decode("utf-8").split("\n") if line]
                                for k in t.column_names}):
        assert enc(got["text"]) == enc(UNICODE) and enc(got["label"]) == enc(UNICODE[::-1])
        assert enc(got["id"]) == enc(ids) and enc(got[odd_col]) == enc(UNICODE)
    assert (tmp_path / "js" / "data.jsonl").read_bytes().count(b"\n") == len(UNICODE)  # one line per row


def test_csv_export_counts_formula_cells_warns_and_csv_safe_neutralises_them(tmp_path):
    """Issue 17: CSV cells starting with = + - @ were written as they are, with no warning."""
    with _hostile(tmp_path) as ws:
        before = fingerprint(ws)
        res = E.export(ws, {}, tmp_path / "plain", "csv")
        m = res.manifest
        # = + - @ and a leading tab, not numbers (-0.5, +7) nor an = inside the text
        assert m["csv_formula_cells"] == {"text": 5, "label": 1, "label_original": 1} and m["csv_safe"] is False
        assert any("7 CSV cells" in w and "text (5), label (1), label_original (1)" in w and "--csv-safe" in w
                   for w in m["warnings"])
        back = pd.read_csv(tmp_path / "plain" / "data.csv", dtype=str, keep_default_na=False)
        assert back["text"].tolist() == HOSTILE  # the default does not touch the data
        safe = E.export(ws, {}, tmp_path / "safe", "csv", csv_safe=True)
        assert safe.manifest["csv_safe"] is True and "--csv-safe" in safe.manifest["command"]
        got = pd.read_csv(tmp_path / "safe" / "data.csv", dtype=str, keep_default_na=False)
        risky = {0, 1, 2, 3, 4}
        assert got["text"].tolist() == [("'" + t if i in risky else t) for i, t in enumerate(HOSTILE)]
        assert got["label"].iloc[0] == "'=cmd|' /C calc'!A0" and set(got["label"].iloc[1:]) == {"ok"}
        # parquet and jsonl: every text byte-exact
        E.export(ws, {}, tmp_path / "pq", "parquet")
        assert pq.read_table(tmp_path / "pq" / "data.parquet").column("text").to_pylist() == HOSTILE
        E.export(ws, {}, tmp_path / "js", "jsonl")
        lines = (tmp_path / "js" / "data.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(x)["text"] for x in lines] == HOSTILE
        assert "csv_formula_cells" not in E.export(ws, {}, tmp_path / "pq2", "parquet").manifest
        assert fingerprint(ws) == before


def test_cli_csv_export_warns_on_stderr_and_csv_safe_needs_csv(tmp_path):
    _hostile(tmp_path).close()
    before = fingerprint(tmp_path / "hw")
    run = lambda *a: subprocess.run([sys.executable, "-m", "curate_core", "export", "--workspace",  # noqa: E731
                                     str(tmp_path / "hw"), "--recipe", ALL, *a],
                                    cwd=REPO, capture_output=True, text=True)
    r = run("--out", str(tmp_path / "o"), "--format", "csv", "--json")
    assert r.returncode == 0 and "warning: 6 CSV cells" in r.stderr and json.loads(r.stdout)["csv_formula_cells"]
    r = run("--out", str(tmp_path / "o2"), "--csv-safe")
    assert r.returncode == 2 and "error: --csv-safe is for --format csv" in r.stderr
    assert not (tmp_path / "o2").exists()
    assert fingerprint(tmp_path / "hw") == before


# ------------------------------------------------------------------------------------------- a full disk
def test_a_full_disk_during_export_leaves_no_partial_file(built, monkeypatch, capsys):
    from curate_core.store import Store

    def full(self, sql, path, fmt, params=None, tables=None):
        Path(path).write_bytes(b"half a file")
        raise duckdb.IOException(f'IO Error: Could not write file "{path}": No space left on device')

    before = fingerprint(built)
    monkeypatch.setattr(Store, "copy", full)
    out = built.parent / "out"
    rc = curate_cli.main(["export", "--workspace", str(built), "--recipe", ALL, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "error: The disk is full" in err and "this is a bug" not in err
    assert not any(out.iterdir()) if out.exists() else True  # no data file, no temporary file, no manifest
    assert fingerprint(built) == before


def test_a_full_disk_while_exporting_from_the_app_is_said_on_the_page(built, tmp_path, app_env, monkeypatch):
    from curate_core.store import Store

    def full(self, sql, path, fmt, params=None, tables=None):
        raise duckdb.IOException(f'IO Error: Could not write file "{path}": No space left on device')

    monkeypatch.setenv("CURATE_EXPORT_DIR", str(tmp_path / "exports"))
    before = fingerprint(built)
    monkeypatch.setattr(Store, "copy", full)
    app_env(built)
    at = app_test("pages/5_Export.py").run()
    at.text_input(key="exp_name").set_value("full").run()
    at.button(key="exp_write").click().run()
    assert any("The disk is full" in e for e in app_errors(at))
    out = tmp_path / "exports" / built.name / "full"
    assert not out.exists() or not any(out.iterdir())
    from curate_ui import state

    state.close_all()
    assert fingerprint(built) == before
