"""Outcome check (evaluate): same probe on all rows vs the selection, eval file or held-out split."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from curate_core import CurateError, Workspace
from curate_core.evaluate import evaluate, held_out_mask

from .conftest import REPO

TOPICS = {
    "billing": "card charged twice payment fee refund statement",
    "travel": "flight hotel trip booking airport luggage",
    "weather": "rain snow sunny forecast storm temperature",
}
CLEAN_RECIPE = {"version": 1, "filters": [{"column": "consensus", "op": "<", "value": 2}]}


def make_rows(n: int, seed: int, flip: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    rows = []
    for i in range(n):
        true = names[i % 3]
        words = rng.choice(TOPICS[true].split(), 4)
        label = names[(i % 3 + 1) % 3] if rng.random() < flip else true
        rows.append({"id": f"s{seed}-{i:04d}", "text": " ".join(words) + f" #{i}", "label": label, "true": true})
    return pd.DataFrame(rows)


@pytest.fixture
def noisy_ws(tmp_path):
    """240 rows, a third of them with a wrong label; `consensus` flags exactly the wrong ones (an oracle)."""
    df = make_rows(240, 0, 0.33)
    ws = Workspace(tmp_path / "w")
    ws.ingest(df[["id", "text", "label", "true"]])
    ws.run(["embed"], params={"embed": {"embedder": "tfidf", "dim": 32}})
    flags = (df["label"] != df["true"]).to_numpy()
    ws.store.replace_table("scores", pd.DataFrame({"row_id": np.arange(len(df), dtype=np.int64),
                                                   "consensus": np.where(flags, 2, 0)}))
    yield ws, df
    ws.close()


def test_eval_file_selection_beats_all_rows_and_caches_vectors(noisy_ws, tmp_path):
    ws, df = noisy_ws
    ev = make_rows(60, 1, 0.0)[["text", "label"]]
    ev.to_csv(tmp_path / "eval.csv", index=False)
    out = evaluate(ws, CLEAN_RECIPE, tmp_path / "eval.csv")
    n_flipped = int((df["label"] != df["true"]).sum())
    assert out.n_all == 240 and out.n_selected == 240 - n_flipped and out.n_eval == 60
    assert out.acc_selected >= 0.95 and out.acc_selected > out.acc_all
    assert 0 <= out.f1_all <= 1 and out.f1_selected >= 0.95
    cached = ws.store.count("embed_cache")
    again = evaluate(ws, CLEAN_RECIPE, tmp_path / "eval.csv")
    assert ws.store.count("embed_cache") == cached  # eval texts embedded once
    assert again.as_dict() | {"seconds": 0} == out.as_dict() | {"seconds": 0}  # deterministic


def test_held_out_split_is_never_trained_on(noisy_ws):
    ws, df = noisy_ws
    out = evaluate(ws, CLEAN_RECIPE)
    held = held_out_mask(df["id"].tolist(), df["label"].to_numpy(dtype=object), 0.2, 0)
    assert out.n_eval == held.sum() and out.n_all == 240 - held.sum()
    flipped = (df["label"] != df["true"]).to_numpy()
    assert out.n_selected == int((~held & ~flipped).sum())
    assert "held-out 20%" in out.eval


def test_held_out_mask_is_stratified_and_order_free():
    ids = [f"r{i}" for i in range(100)]
    labels = np.array(["a"] * 50 + ["b"] * 40 + ["c"] * 9 + ["d"], dtype=object)
    m = held_out_mask(ids, labels, 0.2, 7)
    assert (m[:50].sum(), m[50:90].sum(), m[90:99].sum(), m[99]) == (10, 8, 2, False)
    perm = np.random.default_rng(0).permutation(100)
    m2 = held_out_mask([ids[i] for i in perm], labels[perm], 0.2, 7)
    assert np.array_equal(m2, m[perm])
    assert not np.array_equal(held_out_mask(ids, labels, 0.2, 8), m)


def test_relabels_and_repeats_reach_the_training_rows(noisy_ws, tmp_path):
    ws, df = noisy_ws
    wrong = np.flatnonzero((df["label"] != df["true"]).to_numpy())
    ws.relabel_each(wrong.tolist(), df["true"].to_numpy()[wrong].tolist())
    ev = make_rows(60, 1, 0.0)[["text", "label"]]
    ev.to_csv(tmp_path / "eval.csv", index=False)
    out = evaluate(ws, {"version": 1, "decisions": True}, tmp_path / "eval.csv")
    assert out.n_selected == 240 and out.acc_selected >= 0.95


def test_errors(tmp_path, noisy_ws):
    ws, _ = noisy_ws
    (tmp_path / "nolabel.csv").write_text("text\nhello\n")
    with pytest.raises(CurateError, match="no label column"):
        evaluate(ws, CLEAN_RECIPE, tmp_path / "nolabel.csv")
    with pytest.raises(CurateError, match="consensus"):
        bare = Workspace(tmp_path / "bare")
        bare.ingest(make_rows(30, 3, 0.0)[["id", "text", "label"]])
        evaluate(bare, CLEAN_RECIPE)
    with pytest.raises(CurateError, match="No embeddings"):
        evaluate(bare, {"version": 1})


def test_cli_json_keys(noisy_ws, tmp_path):
    ws, _ = noisy_ws
    path = ws.path
    ws.close()
    (tmp_path / "r.json").write_text(json.dumps(CLEAN_RECIPE))
    r = subprocess.run([sys.executable, "-m", "curate_core", "evaluate", "--workspace", str(path), "--recipe",
                        str(tmp_path / "r.json"), "--json"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for k in ("n_all", "n_selected", "acc_all", "acc_selected", "f1_all", "f1_selected"):
        assert k in out
    bad = subprocess.run([sys.executable, "-m", "curate_core", "evaluate", "--workspace", str(path), "--recipe",
                          str(tmp_path / "missing.json")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_export_page_outcome_panel(noisy_ws, tmp_path, app_env):
    from .conftest import app_test

    ws, _ = noisy_ws
    ws.store.save_recipe("__draft__", CLEAN_RECIPE)
    path = ws.path
    ws.close()
    ev = make_rows(60, 1, 0.0)[["text", "label"]]
    ev.to_csv(tmp_path / "eval.csv", index=False)
    app_env(path)
    at = app_test("pages/5_Export.py").run()
    assert not at.exception
    at.text_input(key="exp_eval_file").set_value(str(tmp_path / "eval.csv")).run()
    at.button(key="exp_eval").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m for m in at.metric}
    assert float(metrics["Accuracy, selection"].value.rstrip("%")) >= 95
    assert any("eval.csv (60 rows)" in c.value for c in at.caption)
    at.text_input(key="exp_eval_file").set_value(str(tmp_path / "missing.csv")).run()
    at.button(key="exp_eval").click().run()
    assert any("File not found" in e.value for e in at.error)
