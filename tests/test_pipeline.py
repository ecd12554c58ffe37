"""Pipeline: run keys and reuse, staleness, progress events, and a real kill -9 + resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from curate_core import CurateError, Workspace
from curate_core import pipeline

from .conftest import REPO, kill_9_when, write_csv


def test_run_records_and_reuses(ws, small_csv):
    ws.ingest(small_csv)
    assert ws.status()["textstats"] == "missing"
    r1 = ws.run(["textstats"])
    assert [r["status"] for r in r1] == ["done"]
    assert ws.status()["textstats"] == "done"
    r2 = ws.run(["textstats"])
    assert r2[0]["status"] == "reused" and r2[0]["run_key"] == r1[0]["run_key"]
    r3 = ws.run(["textstats"], force=True)
    assert r3[0]["status"] == "done"
    stats = ws.store.rows(["text", "n_chars", "n_words"])
    assert (stats["n_chars"] == stats["text"].str.len()).all()
    assert (stats["n_words"] == stats["text"].str.split().str.len()).all()
    # the summary's totals are merged over the parts by the executor
    s = r3[0]["summary"]
    assert s["chars"] == stats["n_chars"].sum() and s["longest_words"] == stats["n_words"].max()


def test_new_data_makes_stage_stale_and_params_change_key(ws, small_csv, tmp_path):
    ws.ingest(small_csv)
    key1 = ws.run(["textstats"])[0]["run_key"]
    ws.ingest(write_csv(tmp_path / "more.csv", [{"text": "one more row"}]))
    assert ws.status()["textstats"] == "partial"  # finished on older data
    key2 = ws.run(["textstats"])[0]["run_key"]
    assert key2 != key1 and ws.store.count("textstats") == 41
    key3 = ws.run(["textstats"], params={"textstats": {"batch_size": 7}})[0]["run_key"]
    assert key3 not in (key1, key2)
    # parameters are sticky: the next plain run reuses the last choice
    assert ws.run(["textstats"])[0]["status"] == "reused"


def test_unknown_stage_and_param(ws, small_csv):
    ws.ingest(small_csv)
    with pytest.raises(CurateError, match="Unknown stage"):
        ws.run(["nope"])
    with pytest.raises(CurateError, match="Unknown parameter"):
        ws.run(["textstats"], params={"textstats": {"bogus": 1}})


def test_empty_workspace_refuses_to_run(ws):
    with pytest.raises(CurateError, match="no rows"):
        ws.run()


def test_progress_events_have_eta(ws, small_csv):
    ws.ingest(small_csv)
    events: list[pipeline.ProgressEvent] = []
    res = ws.run(["textstats"], params={"textstats": {"batch_size": 10}}, progress=events.append)
    stats = ws.store.rows(["n_chars", "n_words"])  # 4 parts: their totals merge to the whole table's
    assert res[0]["summary"]["words"] == stats["n_words"].sum()
    assert res[0]["summary"]["longest_chars"] == stats["n_chars"].max()
    ts = [e for e in events if e.stage == "textstats"]
    assert [e.done for e in ts] == [0, 10, 20, 30, 40] and all(e.total == 40 for e in ts)
    assert ts[-1].fraction == 1.0 and ts[-1].eta == 0.0
    assert "textstats: 40/40" in ts[-1].describe()


def test_failing_stage_is_recorded_and_others_continue(ws, small_csv, monkeypatch):
    ws.ingest(small_csv)

    @pipeline.stage("boom_test", version="1", title="fails on purpose")
    def boom(ctx):
        raise CurateError("bad input for boom")

    try:
        with pytest.raises(CurateError, match="boom_test: bad input for boom") as ei:
            ws.run(["boom_test", "textstats"])
        statuses = {r["stage"]: r["status"] for r in ei.value.results}
        assert statuses == {"textstats": "done", "boom_test": "failed"}
        assert ws.status()["boom_test"] == "partial"
    finally:
        pipeline._REGISTRY.pop("boom_test")


def test_checkpoint_parts_are_atomic(tmp_path):
    import pyarrow as pa

    ck = pipeline.Checkpoint(tmp_path / "ck")
    name = ck.part_name(300, 400)  # named by the row-id range it covers, not by arrival order
    ck.write(name, pa.table({"a": [1, 2]}))
    assert ck.has(name) and not ck.has(ck.part_name(0, 100))
    assert ck.names() == ["part-000000000300-000000000400.parquet"]
    assert not list((tmp_path / "ck").glob(".*tmp"))
    ck.mark_complete()
    assert ck.complete
    ck.clear()
    assert not (tmp_path / "ck").exists()


def test_checkpoint_root_can_be_a_uri_or_another_filesystem(tmp_path):
    """A stage's parts can live on any pyarrow filesystem (e.g. storage a cluster's workers share)."""
    import pyarrow as pa
    from pyarrow.fs import _MockFileSystem

    t = pa.table({"row_id": [0, 1], "v": [0.5, 1.5]})
    for root in (f"file://{tmp_path}/uri", (_MockFileSystem(), "ck")):
        ck = pipeline.Checkpoint(root).child("textstats", "key")
        ck.write(ck.part_name(0, 2), t)
        ck.save_object("model.pkl", {"fitted": True})
        assert ck.names() == [ck.part_name(0, 2)] and ck.load_object("model.pkl") == {"fitted": True}
        assert ck.parts().read().equals(t)
        ck.clear()
        assert not ck.exists()
    assert not (tmp_path / "uri" / "textstats" / "key").exists()


def test_stages_run_with_their_checkpoints_on_another_filesystem(tmp_path, small_csv):
    """Parts written to (and imported from) a non-local pyarrow filesystem give the same tables as local ones."""
    from pyarrow.fs import _MockFileSystem

    fs = _MockFileSystem()
    params = {"embed": {"embedder": "tfidf", "dim": 8, "shard_size": 7}, "textstats": {"batch_size": 9},
              "project": {"method": "pca", "sample_size": 15, "batch_size": 6}}
    with Workspace(tmp_path / "local") as a, Workspace(tmp_path / "remote", checkpoints=(fs, "ck")) as b:
        for w in (a, b):
            w.ingest(small_csv)
            w.run(["textstats", "embed", "project"], params=params)
        for table in ("textstats", "projection", "embeddings"):
            pd.testing.assert_frame_equal(a.store.read_table(table), b.store.read_table(table))
        assert not list((tmp_path / "remote" / "checkpoints").rglob("*.parquet"))  # nothing went to the local disk
        assert not b.store.query_df("SELECT count(*) AS n FROM runs WHERE status <> 'done'")["n"][0]


def _big_csv(path: Path, n: int) -> Path:
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)],
                       "text": [("alpha beta " * (i % 7 + 1)) + f"gamma {i}\nline two" for i in range(n)],
                       "label": [f"c{i % 5}" for i in range(n)]})
    df.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_kill_9_midway_then_resume_equals_uninterrupted(tmp_path):
    """A real `run` subprocess is SIGKILLed after a few checkpoint parts; the rerun resumes and matches."""
    data = _big_csv(tmp_path / "d.csv", 2_000)
    args = ["--param", "textstats.batch_size=100"]
    env = {**os.environ, "CURATE_DEBUG_BATCH_DELAY": "0.15"}
    cli = [sys.executable, "-m", "curate_core"]
    for name in ("killed", "clean"):
        subprocess.run([*cli, "ingest", str(data), "--workspace", str(tmp_path / name)], check=True, cwd=REPO,
                       capture_output=True, timeout=120)

    proc = subprocess.Popen([*cli, "run", "--workspace", str(tmp_path / "killed"), "--stages", "textstats", *args],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck_root = tmp_path / "killed" / "checkpoints" / "textstats"
    kill_9_when(proc, lambda: len(list(ck_root.glob("*/part-*.parquet"))) >= 4)
    parts_before = len(list(ck_root.glob("*/part-*.parquet")))
    assert 4 <= parts_before < 20, "the run was not killed midway"

    with Workspace(tmp_path / "killed") as ws:
        assert ws.status()["textstats"] == "partial"
    resumed = subprocess.run([*cli, "run", "--workspace", str(tmp_path / "killed"), "--stages", "textstats", *args],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{parts_before * 100:,} rows from checkpoint" in resumed.stderr  # it really resumed
    subprocess.run([*cli, "run", "--workspace", str(tmp_path / "clean"), "--stages", "textstats", *args],
                   cwd=REPO, check=True, capture_output=True, timeout=300)

    with Workspace(tmp_path / "killed") as a, Workspace(tmp_path / "clean") as b:
        assert a.status()["textstats"] == "done"
        ta, tb = a.store.read_table("textstats"), b.store.read_table("textstats")
        assert len(ta) == 2_000
        pd.testing.assert_frame_equal(ta, tb)
        runs = a.store.run_history()
        assert set(runs["status"]) == {"interrupted", "done"}
        assert not list(ck_root.glob("*/part-*.parquet")), "checkpoints are removed once imported"


def test_failed_parameters_do_not_stick(ws, small_csv):
    ws.ingest(small_csv)
    ws.run(["textstats"], params={"textstats": {"batch_size": 7}})
    with pytest.raises(CurateError, match="batch_size must be at least 1"):
        ws.run(["textstats"], params={"textstats": {"batch_size": 0}})
    r = ws.run(["textstats"])  # back to the last parameters that worked, not the failed ones
    assert r[0]["status"] in ("done", "reused")
    assert ws.status()["textstats"] == "done"


def test_a_run_that_died_after_writing_its_table_is_not_covered_by_an_older_reuse(ws, small_csv):
    """A: done. B: writes its table, then dies. A again must recompute: the table holds B's output now."""
    import pandas as pd

    from curate_core.store import register_output_table

    register_output_table("dirty_out", "dirty_test")

    @pipeline.stage("dirty_test", version="1", title="writes then maybe dies", outputs=("dirty_out",),
                    defaults={"value": 1, "die": False})
    def dirty(ctx):
        ctx.store.replace_table("dirty_out", pd.DataFrame({"row_id": [0], "v": [ctx.params["value"]]}))
        if ctx.params["die"]:
            raise RuntimeError("killed after the import")
        return {}

    try:
        ws.ingest(small_csv)
        ws.run(["dirty_test"], params={"dirty_test": {"value": 1}})
        with pytest.raises(RuntimeError):
            ws.run(["dirty_test"], params={"dirty_test": {"value": 2, "die": True}})
        r = ws.run(["dirty_test"], params={"dirty_test": {"value": 1, "die": False}})
        assert r[0]["status"] == "done"
        assert ws.store.read_table("dirty_out")["v"].tolist() == [1]
        assert ws.run(["dirty_test"])[0]["status"] == "reused"
    finally:
        pipeline._REGISTRY.pop("dirty_test")


def test_closure_pulls_in_requirements_in_run_order():
    assert pipeline.closure(["cluster"]) == ["embed", "project", "cluster"]
    assert pipeline.closure(["scores", "textstats"])[-1] == "scores"
    assert set(pipeline.closure(["scores"])) >= {"textstats", "embed", "probe"}


def test_stage_table_marks_what_a_running_run_covers(monkeypatch):
    """A run of `cluster` covers cluster and what it needs that is not done; a done requirement stays done."""
    from types import SimpleNamespace

    from curate_ui import runner, widgets

    monkeypatch.setattr(runner, "get_run", lambda ws: SimpleNamespace(running=True, stages=["cluster"]))
    stages = {"textstats": "done", "embed": "done", "project": "partial", "cluster": "done", "probe": "missing",
              "scores": "missing"}
    t = widgets.stage_table(None, stages).set_index("stage")["status"].to_dict()
    assert t == {"textstats": "done", "embed": "done", "project": "in this run", "cluster": "in this run",
                 "probe": "not run", "scores": "not run"}


def test_engines_are_named_executors(ws, small_csv):
    from curate_core.execution import EXECUTORS, LocalExecutor, make_executor

    assert isinstance(make_executor("local"), LocalExecutor) and "local" in EXECUTORS
    with pytest.raises(CurateError, match="Unknown engine") as e:
        make_executor("nope")
    assert "`local`" in e.value.hint
    ws.ingest(small_csv)
    assert ws.run(["textstats"], engine="local")[0]["status"] == "done"


def test_eta_counts_only_the_work_done_in_this_run():
    """90 of 100 done, 80 of them from a checkpoint, in 10 s: 10 rows took 10 s, so 10 s are left (not 1 s)."""
    ev = pipeline.ProgressEvent("embed", 90, 100, 10.0, resumed=80)
    assert abs(ev.eta - 10.0) < 1e-9 and pipeline.ProgressEvent("embed", 80, 100, 10.0, resumed=80).eta is None


def test_the_scores_stage_version_names_every_score():
    """A new or changed score plugin makes the scores stage due (its own key then limits what recomputes)."""
    from curate_core import scores

    v = pipeline.registry()["scores"].version
    assert all(f"{n}@{s.version}" in v for n, s in scores.registry().items())


def test_a_fit_then_map_maps_with_the_model_as_read_back_from_its_checkpoint(tmp_path):
    """bench/kill9.py found it: kill -9 during the project stage's transforms resumed to a projection 3e-8 off,
    because the uninterrupted run mapped with the in-memory model and the resumed one with its unpickled copy."""
    import numpy as np

    from curate_core.execution import Checkpoint, fit_once
    from curate_core.project import Projector

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fit = lambda: (Projector("pca", cluster_dims=5).fit(x[:150], total_rows=400), None)  # noqa: E731
    first = fit_once(fit, Checkpoint(str(tmp_path / "a")))
    resumed = fit_once(lambda: pytest.fail("a resumed run must not fit again"), Checkpoint(str(tmp_path / "a")))
    assert np.array_equal(first.transform(x[150:])[0], resumed.transform(x[150:])[0])
