"""Export: data file + recipe.json + manifest.json; byte-identical reruns; safe paths; nothing written on errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from curate_core import export as E
from curate_core import select as S

from .select_fixtures import build, sha, truth

REPO = Path(__file__).resolve().parent.parent
MIX = {"seed": 2, "filters": [{"column": "outlier_score", "op": "<=", "value": 0.9}],
       "dedup": {"exact": True},
       "mixture": {"group_by": "label", "budget": {"rows": 150}, "temperature": 3.0, "max_repeats": 2,
                   "quality": {"column": "label_quality", "strength": 1.0}}}


def test_export_twice_is_byte_identical_also_from_a_fresh_process(ews, tmp_path):
    a = E.export(ews, MIX, tmp_path / "a")
    b = E.export(ews, MIX, tmp_path / "b")
    assert sha(a.out / "data.parquet") == sha(b.out / "data.parquet")
    assert (a.out / "recipe.json").read_bytes() == (b.out / "recipe.json").read_bytes()
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps(MIX))
    path = ews.path
    ews.close()  # one process owns a workspace: hand it to the CLI
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "curate_core", "export", "--workspace", str(path), "--recipe", str(recipe),
           "--out", str(tmp_path / "c")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sha(tmp_path / "c" / "data.parquet") == sha(a.out / "data.parquet")
    # the exported recipe.json replays the same selection
    cmd[cmd.index(str(recipe))] = str(a.out / "recipe.json")
    cmd[-1] = str(tmp_path / "d")
    assert subprocess.run(cmd, capture_output=True, env=env, cwd=REPO, timeout=120).returncode == 0
    assert sha(tmp_path / "d" / "data.parquet") == sha(a.out / "data.parquet")


def test_data_manifest_and_recipe_contents(ews, tmp_path):
    df = truth(ews)
    rid = int(df.loc[df["outlier_score"] <= 0.9, "row_id"].iloc[3])
    old = df.set_index("row_id").loc[rid, "label"]
    new = "delta" if old != "delta" else "alpha"
    ews.decide([rid], "relabel", value=new)
    res = E.export(ews, MIX, tmp_path / "x", with_scores=True, with_weights=True)
    data = pq.read_table(res.out / "data.parquet").to_pandas()
    sel = S.select(ews, MIX)
    assert data["id"].tolist() == sel.table.column("id").to_pylist()  # row_id order
    assert len(data) == len(sel) == res.manifest["rows"]
    assert list(data.columns[:4]) == ["id", "text", "label", "label_original"]
    assert {"outlier_score", "label_quality", "n_chars"} - set(data.columns) == {"n_chars"}  # no textstats run
    assert {"repeats", "weight", "extra_num", "source", "n_tokens"} <= set(data.columns)
    assert data["repeats"].sum() == res.manifest["rows_with_repeats"] == 150
    m = res.manifest
    assert m["groups"] == data.groupby("label")["repeats"].sum().to_dict()
    assert m["files"][0]["sha256"] == sha(res.out / "data.parquet")
    assert m["files"][1]["sha256"] == sha(res.out / "recipe.json")
    assert m["workspace"]["fingerprint"]["data"] == ews.store.data_fingerprint()
    assert {"duckdb", "pyarrow", "python", "curate_core"} <= set(m["packages"])
    assert m["created"] and m["columns"] == list(data.columns)
    assert json.loads((res.out / "recipe.json").read_text()) == S.parse_recipe(MIX).to_json()
    if rid in set(sel.row_ids.tolist()):
        row = data[data["id"] == df.set_index("row_id").loc[rid, "id"]].iloc[0]
        assert row["label"] == new and row["label_original"] == old
    # relabel shows in the exported label even without a mixture
    plain = E.export(ews, {"filters": []}, tmp_path / "y")
    pdata = pq.read_table(plain.out / "data.parquet").to_pandas().set_index("id")
    rid_id = df.set_index("row_id").loc[rid, "id"]
    assert pdata.loc[rid_id, "label"] == new and pdata.loc[rid_id, "label_original"] == old
    assert "weight" not in pdata.columns and "repeats" not in pdata.columns
    # the streaming export (no mixture) writes exactly the rows select() gives, with the same labels
    rec = {"filters": [{"column": "consensus", "op": "<", "value": 2}], "dedup": {"exact": True}}
    ews.decide([int(df["row_id"].iloc[7])], "exclude")
    both = E.export(ews, rec, tmp_path / "z", with_weights=True)
    zdata = pq.read_table(both.out / "data.parquet").to_pandas()
    zsel = S.select(ews, rec)
    assert zdata["id"].tolist() == zsel.table.column("id").to_pylist()
    assert zdata["label"].tolist() == zsel.labels.tolist()
    assert (zdata["weight"] == 1.0).all() and both.manifest["rows"] == len(zsel)
    assert both.manifest["groups"] == zdata.groupby("label").size().to_dict()
    assert both.manifest["tokens"] == int(zdata["n_tokens"].sum())


def test_filtered_export_is_the_same_bytes_with_or_without_the_wide_table(ews, tmp_path):
    """A recipe on scores is evaluated over the wide table when live counts built it (the app, bench/select.py) and
    over samples joined with scores when not (a one-off CLI export); the texts are joined afterwards either way.
    Both give the rows select() gives, in row_id order, with the same bytes; a recipe on samples columns alone
    (one scan of samples) too."""
    from curate_core.recipes.source import SEL_DB

    rec = {"filters": [{"column": "outlier_score", "op": "<=", "value": 0.8},
                       {"column": "label_quality", "op": ">=", "value": 0.1, "nulls": "drop"},
                       {"column": "label", "op": "in", "value": ["alpha", "beta", "gamma"]}]}
    cold = E.export(ews, rec, tmp_path / "cold", with_scores=True)
    S.live_counts(ews, rec, cached=True)  # builds the wide table
    with ews.store.cursor() as cur:
        assert cur.execute(f"SELECT count(*) FROM {SEL_DB}.wide").fetchall()[0][0] == 300
        # stored for slider moves: numbers and the unique ids as they are, a label as a dictionary of its values
        storage = dict(cur.execute(f"SELECT column_name, list_sort(list_distinct(list(compression))) FROM "
                                   f"pragma_storage_info('{SEL_DB}.wide') WHERE compression <> 'Constant' "
                                   "GROUP BY ALL").fetchall())
    assert storage["label"] == ["DICT_FSST"], storage
    assert storage["id"] == storage["outlier_score"] == storage["n_tokens"] == ["Uncompressed"], storage
    warm = E.export(ews, rec, tmp_path / "warm", with_scores=True)
    assert sha(cold.out / "data.parquet") == sha(warm.out / "data.parquet")
    data = pq.read_table(warm.out / "data.parquet").to_pandas()
    assert data["id"].tolist() == S.select(ews, rec).table.column("id").to_pylist()
    assert len(data) == warm.manifest["rows"] > 0 and (data["label"] == data["label_original"]).all()
    only_samples = {"filters": [{"column": "n_tokens", "op": ">=", "value": 3}]}
    a = E.export(ews, only_samples, tmp_path / "s1")
    assert pq.read_table(a.out / "data.parquet").column("id").to_pylist() == \
        S.select(ews, only_samples).table.column("id").to_pylist()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_other_formats(ews, tmp_path, fmt):
    res = E.export(ews, {"filters": [{"column": "lang", "op": "in", "value": ["en"]}]}, tmp_path / fmt, fmt=fmt)
    path = res.out / f"data.{fmt}"
    n = len(pd.read_csv(path)) if fmt == "csv" else len(pd.read_json(path, lines=True))
    assert n == res.manifest["rows"] == int((truth(ews)["lang"] == "en").sum())
    again = E.export(ews, {"filters": [{"column": "lang", "op": "in", "value": ["en"]}]}, tmp_path / "2", fmt=fmt)
    assert sha(path) == sha(again.out / f"data.{fmt}")


def test_export_download_in_memory(ews):
    d = E.export_download(ews, {"filters": []}, fmt="csv")
    z = zipfile.ZipFile(BytesIO(d.zip))
    assert sorted(z.namelist()) == ["data.csv", "manifest.json", "recipe.json"]
    assert z.read("data.csv") == d.data and d.data_name == "data.csv"
    assert len(pd.read_csv(BytesIO(d.data))) == d.manifest["rows"] == 300


def test_cli_export_and_select(ews, tmp_path):
    path = ews.path
    ews.store.save_recipe("saved", {"filters": [{"column": "lang", "op": "in", "value": ["en"]}]})
    ews.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "curate_core", *args], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=120)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"filters": [{"score": "no_such_score", "op": ">", "value": 1}]}))
    r = cli("export", "--workspace", str(path), "--recipe", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "filters[0].column" in r.stderr
    assert not (tmp_path / "o").exists()
    r = cli("export", "--workspace", str(path), "--recipe", "saved", "--out", str(tmp_path / "o"), "--format", "csv",
            "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] == len(pd.read_csv(tmp_path / "o" / "data.csv"))
    r = cli("export", "--workspace", str(path), "--recipe", "saved", "--out", str(tmp_path / "o"), "--format", "csv")
    assert r.returncode == 2 and "--force" in r.stderr
    r = cli("select", "--workspace", str(path), "--recipe", str(REPO / "assets/recipes/balanced.json"), "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["rows_selected"] == 300 and c["group_by"] == "label" and c["warnings"]
    r = cli("select", "--workspace", str(path), "--recipe", "saved", "--save-selection", "english")
    assert r.returncode == 0 and "saved selection" in r.stdout


def test_force_with_another_format_leaves_one_data_file(tmp_path):
    from curate_core import export as E

    ws = build(tmp_path / "w")
    E.export(ws, {"version": 1}, tmp_path / "out", "csv")
    E.export(ws, {"version": 1}, tmp_path / "out", "parquet", force=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.parquet", "manifest.json", "recipe.json"]


def test_columns_an_export_adds_are_reserved_at_ingest(ews):
    """Re-ingesting an export must not let its label_original / repeats / weight pose as the tool's own:
    every column an export adds is in the names ingest reserves (columns.EXPORT_ADDED)."""
    from curate_core.pipeline import tool_columns
    from curate_core.store import CORE_COLUMNS

    user = {c for c, _ in ews.store.sample_columns()} - set(CORE_COLUMNS)
    cols = E.data_columns(ews.store, S.parse_recipe(MIX), with_scores=False, with_weights=True)
    added = {out for src, _, out in cols if src == "selection"} - {"label"}
    assert added == {"label_original", "repeats", "weight"} - user and added <= tool_columns()
