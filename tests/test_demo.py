"""The demo's cold start: the shipped vectors belong to the installed model and are what it computes, a quick
demo is ready in seconds with every text already embedded, and the app finishes its pipeline when it opens."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from curate_core import Workspace
from curate_core import demo
from curate_core.embed import embed_todo
from curate_ui import runner, state

from .conftest import app_test


def test_the_shipped_vectors_are_the_installed_models_vectors_of_every_demo_text():
    """If this fails after a model upgrade: rebuild the demo with the new model and run
    ``curate_core.demo.write_demo_vectors(that workspace)``."""
    from curate_core.embedders import MiniLM

    table = pq.read_table(demo.DEMO_VECTORS)
    key = table.schema.metadata[demo.MODEL_KEY_META].decode()
    assert key == demo.default_model_key()
    texts = pd.read_csv(demo.DEMO_NOISY, dtype=str, keep_default_na=False)["text"]
    hashes = {hashlib.md5(t.encode("utf-8")).hexdigest(): t for t in texts}
    assert set(table.column("text_hash").to_pylist()) == set(hashes)
    pick = np.random.default_rng(0).choice(table.num_rows, 16, replace=False)
    shipped = np.stack(table.column("vec").take(pick).to_numpy(zero_copy_only=False))
    computed = MiniLM().encode([hashes[h] for h in table.column("text_hash").take(pick).to_pylist()])
    cosine = (shipped * computed).sum(1) / np.linalg.norm(shipped, axis=1) / np.linalg.norm(computed, axis=1)
    assert cosine.min() > 0.9999


def test_a_quick_demo_has_its_data_and_vectors_and_waits_for_the_app(tmp_path):
    path = demo.build_demo(tmp_path / "d", quick=True)
    with Workspace(path) as ws:
        assert ws.store.count() == 10_003
        assert ws.store.get_meta(demo.RUN_ON_OPEN) == "1"
        assert ws.store.latest_runs() == {}  # nothing ran yet: the app starts it
        assert embed_todo(ws.store, demo.default_model_key()).num_rows == 0
        res = ws.run(["embed"])
        summary = res[-1]["summary"]
        assert summary["embedded_texts"] == 0 and summary["rows"] == 10_003


def test_vectors_of_another_model_are_not_imported(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "default_model_key", lambda: "st:some-other-model:000000000000:w8")
    with Workspace(tmp_path / "d") as ws:
        ws.ingest(demo.DEMO_NOISY)
        assert demo.import_demo_vectors(ws.store) == 0
        assert not ws.store.table_exists("embeddings")


def test_the_app_starts_a_marked_workspaces_pipeline_once(app_env, tmp_path, monkeypatch):
    wpath = tmp_path / "w"
    with Workspace(wpath) as ws:
        ws.ingest(pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["a", "b", "c"] * 10}))
        ws.store.set_meta(demo.RUN_ON_OPEN, "1")
    started = []
    monkeypatch.setattr(runner, "start_run", lambda ws, *a, **k: started.append(str(ws.path)))
    app_env(wpath)
    at = app_test("app.py").run()
    assert not at.exception and started == [str(wpath)]
    assert state.open_workspace(str(wpath)).store.get_meta(demo.RUN_ON_OPEN) == "0"
    app_test("pages/1_Map.py").run()
    assert started == [str(wpath)]  # once, not on every page


@pytest.mark.parametrize("flag", [None, "0"])
def test_an_unmarked_workspace_does_not_start_by_itself(app_env, tmp_path, monkeypatch, flag):
    wpath = tmp_path / "w"
    with Workspace(wpath) as ws:
        ws.ingest(pd.DataFrame({"text": ["a b", "c d", "e f"], "label": ["x", "y", "x"]}))
        if flag is not None:
            ws.store.set_meta(demo.RUN_ON_OPEN, flag)
    started = []
    monkeypatch.setattr(runner, "start_run", lambda ws, *a, **k: started.append(ws))
    app_env(wpath)
    assert not app_test("app.py").run().exception and started == []
