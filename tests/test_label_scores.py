"""Label-noise scores: equality with a direct cleanlab call, NaN for unlabelled rows, refusal of data they
cannot judge, the probe stage end to end (resume per fold, imported predictions), CLI export and info."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from curate_core import Workspace, cli
from curate_core import dynamics
from curate_core.scores.aum import AUM_CAP
from curate_core.scores import ScoreContext, compute_all
from curate_core.scores.consensus import FLAGS
from curate_core.scores.el2n import forgetting_events
from curate_core.scores.label_quality import LabelQuality

from . import labeldata

torch.set_num_threads(1)
LABEL_COLUMNS = ["label_quality", "is_label_issue", "suggested_label", "aum", "aum_flag", "confidence",
                 "variability", "correctness", "is_hard_to_learn", "el2n", "forgetting", "consensus"]


def _ctx(probe, codes):
    labels = [probe.classes[c] if c >= 0 else None for c in codes]
    return ScoreContext.from_arrays([f"t{i}" for i in range(len(codes))], labels, probe=probe)


def test_cleanlab_flags_equal_a_direct_cleanlab_call():
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probe, codes, _ = labeldata.synthetic_probe(n=200, rate=0.2, seed=2)
    res = LabelQuality().compute(_ctx(probe, codes))
    probs = np.asarray(probe.probs, dtype=np.float64)
    assert np.array_equal(res.columns["is_label_issue"], find_label_issues(codes, probs, n_jobs=1))
    assert np.array_equal(res.values, get_label_quality_scores(codes, probs))
    assert list(res.columns["suggested_label"]) == [probe.classes[i] for i in probs.argmax(1)]
    assert res.summary["flagged"] == int(res.columns["is_label_issue"].sum()) > 0


def test_label_scores_are_nan_for_unlabelled_rows_and_flags_false():
    probe, codes, _ = labeldata.synthetic_probe(n=120, unlabelled=20)
    label_scores = ["label_quality", "aum", "confidence", "el2n", "forgetting", "consensus"]
    cols, _, skipped = compute_all(_ctx(probe, codes), only=label_scores)
    assert not skipped, skipped
    unl = codes < 0
    for c in ("label_quality", "aum", "confidence", "variability", "correctness", "el2n", "forgetting"):
        assert np.isnan(cols[c][unl]).all() and not np.isnan(cols[c][~unl]).any(), c
    for c in FLAGS:
        if c in cols:  # the neighbourhood flag needs embeddings, which this context has not
            assert not cols[c][unl].any()
    assert (cols["consensus"][unl] == 0).all()
    assert all(v is None for v in cols["suggested_label"][unl])


def test_consensus_counts_the_flags_and_reports_overlaps():
    probe, codes, _ = labeldata.synthetic_probe(n=160, rate=0.2)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(160, 8)) + 3 * np.eye(8)[np.maximum(codes, 0) % 8]  # neighbours mostly share a label
    labels = [probe.classes[c] if c >= 0 else None for c in codes]
    ctx = ScoreContext.from_arrays([f"t{i}" for i in range(160)], labels, embeddings=emb, probe=probe)
    cols, summaries, skipped = compute_all(ctx)
    assert "knn_label_agreement" not in skipped, skipped
    voting = ["is_label_issue", "aum_flag", "is_hard_to_learn"]  # the neighbours' flag votes only on request
    flags = np.stack([cols[c] for c in voting])
    assert np.array_equal(cols["consensus"], flags.sum(0))
    s = summaries["consensus"]
    assert s["count"] == "methods" and list(s["methods"]) == voting
    assert s["counts"] == {c: int(cols[c].sum()) for c in voting}
    m = np.array(s["overlap"]["matrix"])
    assert m[0, 1] == int((cols["is_label_issue"] & cols["aum_flag"]).sum()) and (np.diag(m) == flags.sum(1)).all()
    # families: AUM and data maps (the same probe runs) are one vote; the neighbours a third when included
    ctx.params = {"consensus": {"count": "families", "include": ["kNN labels"]}}
    cols, summaries, _ = compute_all(ctx)
    families = (cols["is_label_issue"].astype(int) + (cols["aum_flag"] | cols["is_hard_to_learn"])
                + cols["knn_label_flag"])
    assert np.array_equal(cols["consensus"], families)
    assert (cols["aum_flag"] & cols["is_hard_to_learn"]).any()  # the case where the two counts differ
    s = summaries["consensus"]
    assert s["families"] == {"confident learning": ["confident learning"], "training dynamics": ["AUM", "data maps"],
                             "neighbourhood": ["kNN labels"]}
    assert set(s["distribution"]) == {"0", "1", "2", "3"} and "training dynamics (AUM, data maps)" in s["why"]


def test_consensus_parameters_are_checked():
    from curate_core.errors import CurateError
    from curate_core.scores import registry

    sc = registry()["consensus"]
    for bad in ({"count": "votes"}, {"include": ["nope"]}, {"include": "kNN labels"}):
        with pytest.raises(CurateError, match="consensus"):
            sc.settings({"consensus": bad})


def test_a_failed_calibration_is_named_and_the_fallback_flags_the_estimated_count():
    """Memorised threshold samples (cutoff above 0) or a cutoff that flags far more than confident learning
    estimates are both failures; the fallback flags the k lowest values, never one above the cap."""
    from curate_core.scores.aum import calibration_problem, lowest_cutoff

    values = np.linspace(-1, 1, 101)  # 50 rows below 0
    assert "memorised" in calibration_problem(5.9, AUM_CAP, values, (10, 0.1), 101)
    assert "not separated" in calibration_problem(-0.2, AUM_CAP, values, (10, 0.1), 101)  # 40 rows > 2×10
    assert calibration_problem(-0.7, AUM_CAP, values, (10, 0.1), 101) is None  # 15 rows ≤ 2×10
    assert calibration_problem(-0.78, AUM_CAP, values, (5, 0.05), 101) is None  # 11 rows: over 2× by < 1 % of rows
    assert "harder to fit" in calibration_problem(-0.99, AUM_CAP, values, (30, 0.3), 101)  # 0 rows < 30/2
    assert calibration_problem(-0.99, AUM_CAP, values, (2, 0.02), 101) is None  # 0 rows, but < 1 % of rows off
    assert (values < lowest_cutoff(values, 7)).sum() == 7
    ties = np.array([0.0, 0.0, 1.0, np.nan])
    assert (ties < lowest_cutoff(ties, 1)).sum() == 2  # ties are flagged together
    assert (values < lowest_cutoff(values, 0)).sum() == 0


def test_a_probe_that_memorises_its_threshold_samples_fails_calibration_and_says_so():
    """A probe built to fail: half of the rows in each run are threshold samples of a wide, tiny data set."""
    from curate_core.scores.label_quality import estimated_noise

    probe, codes, _ = labeldata.synthetic_probe(n=60, rate=0.1, epochs=40, threshold_frac=0.45, dim=64)
    cols, summaries, _ = compute_all(_ctx(probe, codes), only=["aum", "confidence"])
    n_est = estimated_noise(codes, probe.probs)[0]
    for score, flag in (("aum", "aum_flag"), ("confidence", "is_hard_to_learn")):
        s = summaries[score]
        assert s["calibration"] == "failed" and s["why"].startswith("calibration failed: "), s["why"]
        assert s["calibration_problem"] and "Fallback" in s["why"]
        assert cols[flag].sum() == n_est == s["flagged"]  # the estimated count, lowest values first
        values = cols[score][codes >= 0]
        assert values[cols[flag][codes >= 0]].max() <= np.sort(values)[n_est - 1]


def test_forgetting_events():
    c = np.array([[1, 0, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]], bool)
    assert forgetting_events(c).tolist() == [2, 0, 5, 1]


def test_aum_cutoff_is_the_percentile_of_threshold_samples():
    probe, codes, flipped = labeldata.synthetic_probe(n=200, rate=0.15)
    ctx = _ctx(probe, codes)
    cols, summaries, _ = compute_all(ctx)
    runs = probe.margin.astype(np.float64).mean(axis=1)
    thr = runs[probe.threshold]
    p99 = np.percentile(thr, 99)
    assert summaries["aum"]["calibration"] == "ok", summaries["aum"]["why"]
    assert summaries["aum"]["cutoff"] == pytest.approx(p99)
    assert summaries["aum"]["flag_rate"] == pytest.approx(cols["aum_flag"].sum() / len(codes), abs=1e-6)
    assert summaries["aum"]["threshold_samples"] == len(thr) == probe.threshold.sum()
    assert np.array_equal(cols["aum_flag"], cols["aum"] < summaries["aum"]["cutoff"])
    ctx.params = {"aum": {"percentile": 50}}
    lower, summ50, _ = compute_all(ctx, only=["aum"])
    assert summ50["aum"]["cutoff"] <= summaries["aum"]["cutoff"] and lower["aum_flag"].sum() <= cols["aum_flag"].sum()


# ---------------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "ws"
    labeldata.workspace(path).close()
    return path


def test_scores_stage_finds_the_flips(built):
    df = labeldata.frame()
    flipped = (df["label"] != df["true_label"]).to_numpy()
    with Workspace(built) as ws:
        s = ws.store.read_table("scores")
        info = ws.info()
    for c in LABEL_COLUMNS:
        assert c in info["scores"], c
    assert roc_auc_score(flipped, -s["label_quality"]) > 0.95
    assert roc_auc_score(flipped, -s["aum"]) > 0.95
    assert s["aum_flag"][flipped].mean() > 0.8
    assert s["consensus"].dtype.kind == "i"


def test_info_json_and_scores_export_carry_every_label_column(built, tmp_path, capsys):
    assert cli.main(["info", "--workspace", str(built), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(LABEL_COLUMNS) <= set(info["scores"])
    out = tmp_path / "scores.parquet"
    assert cli.main(["scores", "--workspace", str(built), "--out", str(out)]) == 0
    t = pd.read_parquet(out)
    assert set(["id", *LABEL_COLUMNS]) <= set(t.columns)
    assert t["id"].tolist() == labeldata.frame()["id"].tolist()


def test_one_class_or_one_class_besides_a_singleton_skips_label_scores_with_a_message(tmp_path):
    """A singleton label is set aside (see the next test); what is left must still have two classes."""
    df = labeldata.frame(n=40)
    df["label"] = "only"
    df.loc[0, "label"] = "rare"  # a class with one row, and one real class
    with labeldata.workspace(tmp_path / "ws", df=df) as ws:
        res = {r["stage"]: r for r in ws.run(["scores"])}
        assert res["scores"]["status"] in ("done", "reused")
        summary = ws.store.latest_runs()["scores"]["summary"]
        skipped = json.loads(summary)["skipped"] if isinstance(summary, str) else summary["skipped"]
        assert "at least two classes" in skipped["label_quality"] and "`rare`" in skipped["label_quality"]
        assert "aum" in skipped and "consensus" in skipped
        assert "probe" in [r["stage"] for r in ws.run(["probe"])]
        assert ws.store.get_summary("probe")["skipped"].startswith("needs at least two classes; this data has 1 besides `rare`")
    df["label"] = "only"
    with labeldata.workspace(tmp_path / "ws1", df=df) as ws:
        summary = ws.store.latest_runs()["scores"]["summary"]
        skipped = json.loads(summary)["skipped"] if isinstance(summary, str) else summary["skipped"]
        assert "at least two classes" in skipped["label_quality"]


def test_probe_resumes_from_finished_folds_with_identical_results(tmp_path, monkeypatch):
    with labeldata.workspace(tmp_path / "ref", run=False) as ws:
        ws.run(["probe"], params=labeldata.params())
        ref = dynamics.probe_probs(ws.store)[1], dynamics.probe_epochs(ws.store)["margin"]

    calls = []
    real = dynamics.train_probe

    def counting(*a, **kw):
        calls.append(kw.get("record", True))
        return real(*a, **kw)

    monkeypatch.setattr(dynamics, "train_probe", counting)
    seen = []

    def stop_after_two_folds(ev):
        seen.append(ev.message)
        if ev.stage == "probe":  # the probe counts epochs, and says so (the bar used to call them rows)
            assert ev.unit == "epochs" and " epochs" in ev.describe()
        if ev.stage == "probe" and ev.message == "fold 2/3 done":
            raise KeyboardInterrupt

    with labeldata.workspace(tmp_path / "ws", run=False) as ws:
        with pytest.raises(KeyboardInterrupt):
            ws.run(["probe"], params=labeldata.params(), progress=stop_after_two_folds)
        assert len(calls) == 2 and ws.status()["probe"] == "partial"
        calls.clear()
        ws.run(["probe"], params=labeldata.params())
        assert calls == [False, True, True]  # fold 3 and the two threshold runs; folds 1–2 came from checkpoints
        assert np.array_equal(dynamics.probe_probs(ws.store)[1], ref[0])
        assert np.array_equal(dynamics.probe_epochs(ws.store)["margin"], ref[1])


def test_imported_predictions_replace_the_probe(tmp_path, capsys):
    df = labeldata.frame()
    classes = sorted(df["label"].unique())
    rng = np.random.default_rng(0)
    true = df["true_label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = np.full((len(df), len(classes)), 0.05)
    probs[np.arange(len(df)), true] = 1 - 0.05 * (len(classes) - 1)
    logits = rng.normal(size=(4, len(df), len(classes))).astype(np.float32)
    logits[:, np.arange(len(df)), true] += 5
    pq = pd.DataFrame({"id": df["id"], **{c: probs[:, i] for i, c in enumerate(classes)}})
    pq = pq.sample(frac=1, random_state=0)[["id", *classes[::-1]]]  # shuffled rows and columns
    pq.to_parquet(tmp_path / "probs.parquet")
    np.save(tmp_path / "logits.npy", logits)
    with labeldata.workspace(tmp_path / "ws", run=False):
        pass
    ws_path = str(tmp_path / "ws")
    code = cli.main(["run", "--workspace", ws_path, "--stages", "scores", "--embedder", "precomputed",
                     "--pred-probs", str(tmp_path / "probs.parquet"), "--pred-logits", str(tmp_path / "logits.npy")])
    assert code == 0
    with Workspace(ws_path) as ws:
        info = ws.store.get_summary("probe")
        assert info["probs"] == "imported" and info["dynamics"] == "imported" and info["epochs"] == 4
        s = ws.store.read_table("scores")
        assert np.allclose(dynamics.probe_probs(ws.store)[1], probs, atol=1e-6)
    flipped = (df["label"] != df["true_label"]).to_numpy()
    assert (s["aum"].to_numpy() < 0).tolist() == flipped.tolist()  # the given label is the model's top class iff not flipped
    assert s["is_label_issue"].sum() > 0 and s["suggested_label"].tolist() == df["true_label"].tolist()
    # a bad file: clear error, exit 2
    np.save(tmp_path / "bad.npy", probs[:, :2])
    capsys.readouterr()
    assert cli.main(["run", "--workspace", ws_path, "--pred-probs", str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "2 columns but the workspace has 4 classes" in err and "Traceback" not in err


def test_stage_leaves_unlabelled_rows_out_of_training_and_scores(tmp_path):
    df = labeldata.frame(n=120, unlabelled=20)
    with labeldata.workspace(tmp_path / "ws", df=df) as ws:
        s = ws.store.read_table("scores")
        assert ws.store.get_summary("probe")["labelled"] == 100
        rid, _ = dynamics.probe_probs(ws.store)
        assert sorted(rid.tolist()) == list(range(100))
        assert set(dynamics.probe_epochs(ws.store)["row_id"].tolist()) == set(range(100))
    unl = df["label"].isna().to_numpy()
    assert s.loc[unl, ["label_quality", "aum", "confidence", "el2n", "forgetting"]].isna().all().all()
    assert s.loc[~unl, ["label_quality", "aum"]].notna().all().all()
    assert not s.loc[unl, "is_label_issue"].any() and (s.loc[unl, "consensus"] == 0).all()


def test_without_threshold_runs_only_confident_learning_runs(tmp_path):
    with labeldata.workspace(tmp_path / "ws", threshold_runs=0) as ws:
        summary = ws.store.latest_runs()["scores"]["summary"]
        skipped = json.loads(summary)["skipped"] if isinstance(summary, str) else summary["skipped"]
        cols = ws.info()["scores"]
    assert "label_quality" in cols and "is_label_issue" in cols and "consensus" in cols
    assert "aum" not in cols and "no training dynamics" in skipped["aum"]


@pytest.mark.slow
def test_kill_9_during_probe_resumes_to_identical_outputs(tmp_path):
    """A real `run --stages probe` subprocess is SIGKILLed between its fold tasks; the rerun takes the finished
    folds from the checkpoint (through the LocalExecutor) and its outputs equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO

    for name in ("killed", "clean"):
        with labeldata.workspace(tmp_path / name, run=False):
            pass
    args = ["--stages", "probe", "--embedder", "precomputed", "--param", "probe.epochs=40", "--param",
            "probe.folds=4", "--param", "probe.lr=0.05"]
    cli_ = [sys.executable, "-m", "curate_core", "run", "--workspace"]
    tasks = lambda: sorted((tmp_path / "killed" / "checkpoints" / "probe").rglob("task-*.parquet"))  # noqa: E731
    proc = subprocess.Popen([*cli_, str(tmp_path / "killed"), *args], cwd=REPO,
                            env={**os.environ, "CURATE_DEBUG_BATCH_DELAY": "1.0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(tasks()) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = len(tasks())
    assert 2 <= done_before < 6  # 4 folds + 2 threshold runs
    for name in ("killed", "clean"):
        r = subprocess.run([*cli_, str(tmp_path / name), *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert ("(from checkpoint)" in r.stderr) == (name == "killed")  # the rerun really resumed
    with Workspace(tmp_path / "killed") as a, Workspace(tmp_path / "clean") as b:
        assert a.status()["probe"] == "done"
        np.testing.assert_array_equal(dynamics.probe_probs(a.store)[1], dynamics.probe_probs(b.store)[1])
        ea, eb = dynamics.probe_epochs(a.store), dynamics.probe_epochs(b.store)
        for k in ("run", "row_id", "threshold", "margin", "p_gold", "p_sq"):
            np.testing.assert_array_equal(ea[k], eb[k])
        assert not tasks(), "checkpoints are removed once imported"


def test_the_consensus_warns_when_a_method_flags_far_more_than_confident_learning():
    probe, codes, _ = labeldata.synthetic_probe(n=160, rate=0.1)
    ctx = _ctx(probe, codes)
    _, quiet, _ = compute_all(ctx)
    assert quiet["consensus"]["over_estimate"] == [] and quiet["consensus"]["warning"] is None
    ctx.params = {"aum": {"cutoff": 100.0}}  # set by hand: every row is below it
    cols, loud, _ = compute_all(ctx)
    assert cols["aum_flag"].all() and loud["aum"]["over_estimate"] and loud["aum"]["flag_rate"] == 1.0
    assert loud["consensus"]["over_estimate"] == ["AUM"] and "AUM flags more than 2×" in loud["consensus"]["warning"]


def test_a_label_with_one_row_is_set_aside_and_every_other_row_is_scored(tmp_path, capsys):
    """Issue 17: one singleton label used to skip the probe for every row (exit 0, no label scores at all)."""
    from curate_core import labels as L

    codes, classes, aside = L.judgeable(np.array([0, 0, 1, 2, 2, -1, 2]), ["a", "b", "c"])
    assert codes.tolist() == [0, 0, -1, 1, 1, -1, 1] and classes == ["a", "c"] and aside == {"b": 1}

    df = labeldata.frame()
    df.loc[0, "label"] = "lonely"  # a label seen once
    with labeldata.workspace(tmp_path / "ws", df=df) as ws:
        s = ws.store.read_table("scores")
        probe = ws.store.get_summary("probe")
    assert probe["set_aside"] == {"lonely": 1} and "lonely" not in probe["classes"]
    lonely = (df["label"] == "lonely").to_numpy()
    for c in ("label_quality", "aum", "confidence"):
        assert np.isnan(s[c][lonely]).all() and not np.isnan(s[c][~lonely]).any(), c
    assert not s["is_label_issue"][lonely].any() and s["is_label_issue"][~lonely].sum() > 0
    assert cli.main(["info", "--workspace", str(tmp_path / "ws"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["probe"]["set_aside"] == {"lonely": 1}
    from curate_core import labelissues as li

    assert "1 label with a single row (`lonely`)" in li.set_aside_note(probe)
