"""DSIR target selection: the hashed n-gram maths against an independent implementation, the score on a
two-domain workspace (its top rows come from the target's domain), the KL reduction, and the target's errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from curate_core import Workspace, dsir
from curate_core import select as S

from .conftest import REPO

WORDS = {"bank": "card payment refund transfer balance account atm fee pin statement",
         "sky": "rain snow storm sunny cloud wind forecast cold warm thunder"}


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, signed: written from the reference algorithm, independent of scikit-learn."""
    c1, c2, m = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & m  # noqa: E731
    h, n = seed, len(data)
    for i in range(n // 4):
        k = rotl((int.from_bytes(data[4 * i:4 * i + 4], "little") * c1) & m, 15) * c2 & m
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & m
    tail, k = data[n // 4 * 4:], 0
    for j in reversed(range(len(tail))):
        k = (k << 8) | tail[j]
    if tail:
        h ^= rotl((k * c1) & m, 15) * c2 & m
    h ^= n
    for shift, mul in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = ((h ^ (h >> shift)) * mul) & m
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def reference_counts(text: str, buckets: int) -> np.ndarray:
    toks = re.findall(r"\b\w+\b", text.lower())
    grams = toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]
    out = np.zeros(buckets)
    for g in grams:
        out[abs(murmur3_32(g.encode("utf-8"))) % buckets] += 1
    return out


def test_hashing_and_log_weights_match_an_independent_reference():
    assert murmur3_32(b"foo") == -156908512 and murmur3_32(b"") == 0  # published test vectors (seed 0)
    texts = ["Card payment REFUND, please!", "rain and snow — then sun", "ünïcode wörds über alles", "", "a b a b"]
    b = 97
    ref = np.array([reference_counts(t, b) for t in texts])
    assert np.array_equal(dsir.hashed_counts(texts, b).toarray(), ref)
    target, raw = ref[:2].sum(0), ref.sum(0)
    lt, lr = np.log((target + 1) / (target + 1).sum()), np.log((raw + 1) / (raw + 1).sum())
    np.testing.assert_allclose(dsir.log_weights(dsir.hashed_counts(texts, b), target, raw), ref @ (lt - lr))
    p, q = np.exp(lt), np.exp(lr)
    assert dsir.kl(target, raw) == pytest.approx(float(np.sum(p * np.log(p / q))))
    assert dsir.kl(target, target) == pytest.approx(0.0, abs=1e-12)


def _texts(domain: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS[domain].split(), 6)) + f" {i}" for i in range(n)]


@pytest.fixture(scope="module")
def two_domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsir")
    df = pd.DataFrame({"id": [f"b{i}" for i in range(150)] + [f"s{i}" for i in range(450)],
                       "text": _texts("bank", 150, 0) + _texts("sky", 450, 1),
                       "source": ["bank"] * 150 + ["sky"] * 450})
    pd.DataFrame({"text": _texts("bank", 80, 2)}).to_csv(root / "target.csv", index=False)
    ws = Workspace(root / "ws")
    ws.ingest(df)
    ws.run(["scores"], params={"scores": {"params": {"dsir": {"target": str(root / "target.csv")}}}})
    yield ws, root
    ws.close()


def test_the_rows_most_like_the_target_come_from_its_domain(two_domains):
    ws, _ = two_domains
    df = ws.store.rows(["row_id", "source", "dsir_log_weight", "dsir_weight"])
    top = df.sort_values("dsir_log_weight", ascending=False).head(150)
    assert (top["source"] == "bank").all()
    assert df["dsir_weight"].max() == pytest.approx(1.0) and (df["dsir_weight"] > 0).all()
    np.testing.assert_allclose(np.log(df["dsir_weight"]), df["dsir_log_weight"] - df["dsir_log_weight"].max())
    s = ws.store.get_summary("score:dsir_log_weight")
    assert s["target_texts"] == 80 and "target.csv" in s["target"] and dsir.has_target(ws.store)


def test_importance_resampling_lowers_the_kl_to_the_target_and_select_reports_it(two_domains):
    ws, _ = two_domains
    recipe = {"mixture": {"group_by": None, "budget": {"rows": 150},
                          "quality": {"column": "dsir_weight", "strength": 1}}}
    sel = S.select(ws, recipe)
    got = ws.store.sample_frame(["row_id", "source"], row_ids=sel.row_ids)
    assert len(sel) == 150 and (got["source"] == "bank").mean() > 0.9
    fit = dsir.kl_reduction(ws.store, sel.row_ids, sel.repeats)
    assert fit["kl_reduction"] > 0 and fit["kl_selected"] < fit["kl_random"] and fit["rows_hashed"] == 150
    sky = ws.store.sample_frame(["row_id", "source"]).query("source == 'sky'")["row_id"].to_numpy()[:150]
    assert dsir.kl_reduction(ws.store, sky)["kl_reduction"] < 0  # the other domain is further than chance


def test_a_missing_target_file_refuses_the_run_and_no_target_skips_the_score(tmp_path):
    with Workspace(tmp_path / "plain") as plain:
        plain.ingest(pd.DataFrame({"id": ["a", "b", "c"], "text": ["x y", "y z", "z x"]}))
    r = subprocess.run([sys.executable, "-m", "curate_core", "run", "--workspace", str(tmp_path / "plain"),
                        "--stages", "scores", "--param", f"scores.dsir.target={tmp_path / 'nope.csv'}"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2 and "scores.dsir.target" in r.stderr and "nope.csv" in r.stderr, r.stderr
    with Workspace(tmp_path / "plain") as plain:
        assert "scores" not in plain.store.latest_runs()  # refused before anything ran
        res = plain.run(["scores"])
        summary = res[-1]["summary"]
        assert "dsir_log_weight" in summary["skipped"] and "scores.dsir.target" in json.dumps(summary["skipped"])
        assert not dsir.has_target(plain.store) and dsir.kl_reduction(plain.store, np.array([0])) is None


def test_kl_counts_each_row_by_its_repeats_whatever_the_order(two_domains):
    ws, _ = two_domains
    ids = np.array([5, 300, 7, 420], dtype=np.int64)
    reps = np.array([3.0, 1.0, 2.0, 1.0])
    a = dsir.kl_reduction(ws.store, ids, reps)
    b = dsir.kl_reduction(ws.store, ids[::-1], reps[::-1])
    texts = ws.store.sample_frame(["row_id", "text"]).set_index("row_id").loc[np.repeat(ids, reps.astype(int)), "text"]
    s = ws.store.get_summary("score:dsir_log_weight")
    target = np.zeros(s["buckets"])
    target[s["target_buckets"]] = s["target_counts"]
    want = dsir.kl(target, np.asarray(dsir.hashed_counts(texts.tolist(), s["buckets"]).sum(0)).ravel())
    assert a["kl_selected"] == pytest.approx(want) == pytest.approx(b["kl_selected"])
