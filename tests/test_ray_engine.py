"""The Ray engine on a real two-node Ray cluster on loopback: the same results as the local engine, resumable
after the driver is killed, and clear errors for a bad address, a dying worker or a package workers lack.

Kept few and small (tiny data, TF-IDF or precomputed vectors where the embedder is not the point, one MiniLM
case); the cluster is started once for the module and stopped in a ``finally``. Nothing listens beyond what
``ray start --node-ip-address 127.0.0.1`` opens, and usage reports are off.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from curate_core import CurateError, Workspace
from curate_core.execution import Checkpoint, Tracker, snapshot_table
from curate_core.scoring import score_columns

from .conftest import REPO, kill_9_when

RAY = str(Path(sys.executable).with_name("ray"))
CLI = [sys.executable, "-m", "curate_core"]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A head (1 CPU) and a second node (1 CPU) on 127.0.0.1; yields the head's address."""
    port = _free_port()
    addr = f"127.0.0.1:{port}"
    try:
        subprocess.run([RAY, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                        "--num-cpus", "1", "--include-dashboard=false", "--disable-usage-stats"],
                       check=True, capture_output=True, timeout=120, env=ENV)
        subprocess.run([RAY, "start", "--address", addr, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                        "--disable-usage-stats"], check=True, capture_output=True, timeout=120, env=ENV)
        yield addr
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def _data(path: Path, n: int = 240) -> Path:
    """Labelled texts in 4 topics, a few exact repeats and a few flipped labels: every score has work."""
    rng = np.random.default_rng(3)
    topics = {"billing": "card payment refund charge", "music": "song album guitar concert",
              "travel": "flight hotel airport ticket", "weather": "rain storm sunny forecast"}
    names = list(topics)
    rows = []
    for i in range(n):
        t = names[i % 4]
        words = rng.choice(topics[t].split(), 3).tolist() + rng.choice(["today", "please", "again", "now"], 2).tolist()
        label = names[(i + 1) % 4] if i % 23 == 0 else t
        rows.append({"id": f"r{i:04d}", "text": " ".join(words) + f" {i % 40}", "label": label})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


PARAMS = {"embed": {"embedder": "tfidf", "dim": 16, "shard_size": 50}, "textstats": {"batch_size": 60},
          "project": {"method": "pca", "sample_size": 100, "batch_size": 40}}


def _tables(ws: Workspace) -> dict[str, pd.DataFrame]:
    out = {t: ws.store.read_table(t) for t in ("textstats", "embeddings", "projection", "clusters")}
    out["scores"] = ws.store.query_df(f"SELECT row_id, {', '.join(score_columns(ws.store))} FROM scores "
                                      "ORDER BY row_id")
    return out


def test_the_pipeline_on_a_two_node_cluster_equals_local(tmp_path, cluster):
    data = _data(tmp_path / "d.csv")
    with Workspace(tmp_path / "L") as a, Workspace(tmp_path / "R") as b:
        for w in (a, b):
            w.ingest(data)
        a.run(params=PARAMS)
        seen = []
        b.run(params=PARAMS, engine="ray", engine_options={"address": cluster}, progress=seen.append)
        ta, tb = _tables(a), _tables(b)
        assert len(tb["scores"].columns) > 10 and len(tb["embeddings"]) == 240
        for name in ta:
            pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=False, rtol=0, atol=1e-9, obj=name)
        assert len({e.stage for e in seen}) >= 5 and seen[-1].done == seen[-1].total  # progress as on local
        for w in (a, b):
            w.export(REPO / "assets" / "recipes" / "clean.json", tmp_path / f"out-{w.path.name}")
        assert (tmp_path / "out-L" / "data.parquet").read_bytes() == (tmp_path / "out-R" / "data.parquet").read_bytes()
        nodes = {r["NodeID"] for r in __import__("ray").nodes() if r["Alive"]}
        assert len(nodes) == 2


def test_a_umap_map_whose_rows_are_placed_on_ray_workers_equals_local(tmp_path, cluster):
    """Rows outside the fit sample are placed on the workers (numba threads there): same coordinates as local."""
    data = _data(tmp_path / "d.csv")
    params = {"embed": PARAMS["embed"], "project": {"sample_size": 150, "batch_size": 40, "epochs": 30}}
    with Workspace(tmp_path / "L") as a, Workspace(tmp_path / "R") as b:
        for w in (a, b):
            w.ingest(data)
        a.run(["embed", "project"], params=params)
        b.run(["embed", "project"], params=params, engine="ray", engine_options={"address": cluster})
        assert json.loads(a.store.latest_runs()["project"]["summary"])["method"] == "umap"
        for t in ("projection", "projection5"):
            pd.testing.assert_frame_equal(a.store.read_table(t), b.store.read_table(t), check_exact=True, obj=t)


def test_minilm_embeddings_on_ray_equal_local(tmp_path, cluster):
    data = _data(tmp_path / "d.csv", 64)
    params = {"embed": {"embedder": "minilm", "shard_size": 16}}
    with Workspace(tmp_path / "L") as a, Workspace(tmp_path / "R") as b:
        for w in (a, b):
            w.ingest(data)
        a.run(["embed"], params=params)
        b.run(["embed"], params=params, engine="ray", engine_options={"address": cluster})
        va, vb = (np.vstack(w.store.read_table("embeddings")["vec"]) for w in (a, b))
        assert va.shape == (64, 384)
        assert np.abs(va - vb).max() <= 1e-6


def test_driver_killed_during_a_ray_run_resumes_on_either_engine(tmp_path, cluster):
    """kill -9 of a `run --engine ray` driver after a few parts; a local rerun resumes and equals a clean run."""
    data = _data(tmp_path / "d.csv", 600)
    args = ["--stages", "textstats", "--param", "textstats.batch_size=30"]
    for name in ("killed", "clean"):
        subprocess.run([*CLI, "ingest", str(data), "--workspace", str(tmp_path / name)], check=True, cwd=REPO,
                       capture_output=True, timeout=120)
    proc = subprocess.Popen([*CLI, "run", "--workspace", str(tmp_path / "killed"), *args, "--engine", "ray",
                             "--ray-address", cluster], cwd=REPO, env={**ENV, "CURATE_DEBUG_BATCH_DELAY": "0.4"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = tmp_path / "killed" / "checkpoints" / "textstats"
    kill_9_when(proc, lambda: len(list(root.glob("*/part-*.parquet"))) >= 3)
    time.sleep(2)  # a batch a worker had started may still land (whole, or not at all)
    before = len(list(root.glob("*/part-*.parquet")))
    assert 3 <= before < 20, "the run was not killed midway"
    rerun = subprocess.run([*CLI, "run", "--workspace", str(tmp_path / "killed"), *args], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "rows from checkpoint" in rerun.stderr
    subprocess.run([*CLI, "run", "--workspace", str(tmp_path / "clean"), *args], cwd=REPO, check=True,
                   capture_output=True, timeout=300)
    with Workspace(tmp_path / "killed") as a, Workspace(tmp_path / "clean") as b:
        pd.testing.assert_frame_equal(a.store.read_table("textstats"), b.store.read_table("textstats"))


def _executor(cluster):
    from curate_core.ray_engine import RayExecutor

    return RayExecutor(address=cluster)


class DiesOnce:
    """A batch function whose worker process dies the first time it sees each batch (a marker file remembers)."""

    def __init__(self, folder: str, always: bool = False) -> None:
        self.folder, self.always = folder, always

    def __call__(self, t: pa.Table) -> pa.Table:
        marker = Path(self.folder) / f"seen-{t.column('row_id')[0].as_py()}"
        if self.always or not marker.exists():
            marker.touch()
            os._exit(1)
        return pa.table({"row_id": t.column("row_id"), "double": pa.compute.multiply(t.column("row_id"), 2)})


def _batches(tmp_path):
    ck = Checkpoint(tmp_path / "ck")
    return ck, snapshot_table(ck, pa.table({"row_id": list(range(40))}), 10)


def test_a_worker_that_dies_is_retried(tmp_path, cluster):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    ck, batches = _batches(tmp_path)
    names = _executor(cluster).map_batches(DiesOnce(str(tmp_path)), batches, ck, Tracker(None, 40))
    got = ck.parts(names).read().sort_by("row_id")
    assert got.column("double").to_pylist() == [2 * i for i in range(40)]
    assert len(list(tmp_path.glob("seen-*"))) == 4  # each batch's first worker really died


def test_a_worker_that_keeps_dying_fails_clearly_and_writes_nothing_more(tmp_path, cluster):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ck, batches = _batches(tmp_path)
    with pytest.raises(CurateError, match="A Ray worker died while running DiesOnce"):
        _executor(cluster).map_batches(DiesOnce(str(tmp_path), always=True), batches, ck, Tracker(None, 40))
    assert ck.names() == []


def test_workers_that_cannot_import_a_module_get_a_clear_error(tmp_path, cluster, monkeypatch):
    (tmp_path / "only_on_the_driver.py").write_text("def f(t):\n    return t\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_driver

    ck, batches = _batches(tmp_path)
    with pytest.raises(CurateError, match="Ray workers cannot import 'only_on_the_driver'") as e:
        _executor(cluster).map_batches(only_on_the_driver.f, batches, ck, Tracker(None, 40))
    assert "install the project on every node" in e.value.hint


def test_bad_address_and_cuda_without_a_gpu_exit_2(tmp_path):
    data = _data(tmp_path / "d.csv", 20)
    subprocess.run([*CLI, "ingest", str(data), "--workspace", str(tmp_path / "w")], check=True, capture_output=True,
                   timeout=120)
    ws = ["--workspace", str(tmp_path / "w")]
    t0 = time.monotonic()
    r = subprocess.run([*CLI, "run", *ws, "--engine", "ray", "--ray-address", f"127.0.0.1:{_free_port()}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: Ray is not reachable at 127.0.0.1:")
    assert "ray start --head" in r.stderr and time.monotonic() - t0 < 30
    r = subprocess.run([*CLI, "run", *ws, "--ray-address", "auto"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "add --engine ray" in r.stderr

    import torch

    r = subprocess.run([*CLI, "run", *ws, "--stages", "textstats", "--device", "cuda"], capture_output=True,
                       text=True, timeout=120)
    if torch.cuda.is_available():
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 2 and r.stderr.startswith("error: --device cuda: no CUDA GPU")


def test_device_is_not_part_of_a_run_key(tmp_path):
    """The device only says where the model runs: a run on another device reuses what is done."""
    data = _data(tmp_path / "d.csv", 20)
    with Workspace(tmp_path / "w") as ws:
        ws.ingest(data)
        ws.run(["textstats"], device="cpu")
        assert ws.run(["textstats"], device="auto")[0]["status"] == "reused"
        with pytest.raises(CurateError, match="Unknown device 'tpu'"):
            ws.run(["textstats"], device="tpu")



class Refuses:
    """A batch function that raises a user-facing error inside the worker."""

    def __call__(self, t: pa.Table) -> pa.Table:
        raise CurateError("row 7 has no text", "fix the file")


def test_a_curate_error_in_a_worker_reaches_the_user_as_it_was_raised(tmp_path, cluster):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ck, batches = _batches(tmp_path)
    with pytest.raises(CurateError) as e:
        _executor(cluster).map_batches(Refuses(), batches, ck, Tracker(None, 40))
    assert type(e.value) is CurateError and str(e.value) == "row 7 has no text (fix the file)"
