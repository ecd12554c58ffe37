"""Label-noise scores on BANKING77 with seeded label flips, and the scores stage at 100k × 77.

    python bench/label_scores.py                    # everything (≈ 10 min on 2 busy cores, most of it MiniLM)
    python bench/label_scores.py --skip-big         # only BANKING77
    python bench/label_scores.py --skip-banking     # only the 100k × 77 timing
    python bench/label_scores.py --only-real        # only SMS Spam and the long documents (≈ 6 min)

Prints, for 10 % and 20 % uniform flips (curate_core.demo.make_noisy, seed 7):
* AUROC of every label score against the true flips, precision/recall of the flags;
* the time of our `scores` stage vs calling cleanlab directly on the same probabilities (ratio);
* the probe stage with torch on 1 and 2 threads (and whether the results are identical);
* an outcome preview for issue 8: test accuracy of the probe trained on all rows, on the true labels, and on
  rows kept by each flag (share of the noisy→clean gap recovered), on BANKING77's test split.
On SMS Spam (2 classes) with 10 % and 20 % flips, as a new user runs it (MiniLM, every default): AUROC, P/R/F1
of every flag, flag rate vs the true rate, and the probe's out-of-fold accuracy per feature set. On long documents
built from BANKING77 (each 24–36 questions, a third of them of the document's intent, the rest of random other
intents, so the evidence is spread over 350–550 words, 2–3 MiniLM windows; 10 % flips): out-of-fold accuracy of
the embedding probe with truncated vs windowed (chunked) embeddings, of each feature set with ``auto``, and of a
TF-IDF + logistic regression baseline (scikit-learn) on the same folds.
Then, on synthetic 100k rows × 77 classes × 20 epochs of imported probs/logits: our `scores` stage vs cleanlab
direct + AUM in numpy on the logits (must be ≤ 1.1×), and the import time.

MiniLM vectors of BANKING77 are computed once with the embed stage's own encoder and cached in bench/out/; the
workspaces then ingest them as precomputed vectors (identical to what `--embedder minilm` stores), so the two
noise rates do not embed the same texts twice.
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from curate_core import Workspace, dynamics  # noqa: E402
from curate_core.demo import make_noisy  # noqa: E402
from curate_core.dynamics import ProbeConfig, aum_from_logits, feature_scale, train_probe  # noqa: E402
from curate_core.scores import registry  # noqa: E402

DATA = next((p for p in (REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data",
                         Path("/work/shared/data")) if (p / "banking77").exists()), None)
OUT = REPO / "bench" / "out"
FLAGS = ["is_label_issue", "aum_flag", "is_hard_to_learn"]
LABEL_SCORES = ["label_quality", "aum", "confidence", "el2n", "forgetting", "consensus"]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def minilm(split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """BANKING77 split and its MiniLM vectors (cached)."""
    from curate_core.embed import MiniLM

    df = pd.read_csv(DATA / "banking77" / f"{split}.csv", dtype=str, keep_default_na=False)
    OUT.mkdir(parents=True, exist_ok=True)
    cache = OUT / f"banking77_{split}_minilm.npy"
    if cache.exists():
        vecs = np.load(cache)
        if len(vecs) == len(df):
            return df, vecs
    t = time.time()
    vecs = MiniLM().encode(df["text"].tolist())
    np.save(cache, vecs)
    print(f"embedded banking77 {split} with MiniLM: {len(df):,} texts in {time.time() - t:.0f} s", flush=True)
    return df, vecs


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(s)
    return float(roc_auc_score(y[ok], s[ok]))


def pr(flag: np.ndarray, y: np.ndarray) -> str:
    tp = int((flag & y).sum())
    return f"P {tp / max(1, flag.sum()):.2f} R {tp / max(1, y.sum()):.2f} ({int(flag.sum()):,} flagged)"


def banking(rate: float, seed: int, train: pd.DataFrame, vecs: np.ndarray, test: pd.DataFrame, tvecs: np.ndarray,
            threads: bool, outcome: bool) -> None:
    noisy = make_noisy(train, rate, seed)
    flipped = (noisy["label"] != noisy["true_label"]).to_numpy()
    tag = f"banking77 {rate:.0%} flips"
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.ingest(noisy.assign(embedding=list(vecs.astype(np.float64))), text="text", label="label", id="id")
        ws.run(["embed"], params={"embed": {"embedder": "precomputed", "column": "embedding"}})
        t = time.time()
        ws.run(["probe"])
        probe_s = time.time() - t
        t = time.time()
        ws.run(["scores"])
        scores_s = time.time() - t
        s = ws.store.read_table("scores")
        reg = registry()
        parts = []
        for name in ["label_quality", "aum", "confidence", "correctness", "el2n", "forgetting", "consensus"]:
            sign = -1 if reg.get(name) and reg[name].direction == "higher_better" or name == "correctness" else 1
            parts.append(f"{name} {auroc(flipped, sign * s[name].to_numpy(float)):.4f}")
        parts.append(f"variability {auroc(flipped, s['variability'].to_numpy(float)):.4f} (high = flipped)")
        print(f"{tag}: AUROC " + ", ".join(parts), flush=True)
        features_line(tag, ws)
        for f in FLAGS:
            print(f"{tag}: {f} {pr(s[f].to_numpy(bool), flipped)}")
        for k in (1, 2, 3):
            print(f"{tag}: consensus >= {k} {pr(s['consensus'].to_numpy() >= k, flipped)}")
        sugg = s["suggested_label"].to_numpy(object)
        fl = s["is_label_issue"].to_numpy(bool) & flipped
        print(f"{tag}: suggested_label equals the true label on {np.mean(sugg[fl] == noisy['true_label'].to_numpy()[fl]):.1%} "
              f"of the flipped rows cleanlab flags, {np.mean(sugg[flipped] == noisy['true_label'].to_numpy()[flipped]):.1%} "
              "of all flipped rows")

        # scores stage vs cleanlab directly on the same probabilities
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        _, probs = dynamics.probe_probs(ws.store)
        classes = ws.store.get_summary("probe")["classes"]
        codes = noisy["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        p64 = probs.astype(np.float64)
        t = time.time()
        get_label_quality_scores(codes, p64)
        find_label_issues(codes, p64, n_jobs=1)
        base = time.time() - t
        t = time.time()
        res = ws.run(["scores"], params={"scores": {"only": LABEL_SCORES}}, force=True)
        wall = time.time() - t
        ours = next(r for r in res if r["stage"] == "scores")["summary"]["seconds"]
        print(f"scores stage {tag} ({len(noisy):,} x {len(classes)}): ours {ours:.2f} s, baseline {base:.2f} s "
              f"(cleanlab direct), ratio {ours / base:.2f}  [ours adds AUM, data maps, EL2N, forgetting, consensus "
              f"and reading/writing the workspace; with the pipeline's bookkeeping {wall:.2f} s]")
        print(f"probe stage {tag}: {probe_s:.1f} s (5 folds + 2 threshold runs, threads=1); first scores run {scores_s:.1f} s")
        if threads:
            ref = dynamics.probe_probs(ws.store)[1], dynamics.probe_epochs(ws.store)["margin"]
            t = time.time()
            ws.run(["probe"], params={"probe": {"threads": 2}})
            two = time.time() - t
            same = np.array_equal(ref[0], dynamics.probe_probs(ws.store)[1]) and np.array_equal(ref[1], dynamics.probe_epochs(ws.store)["margin"])
            print(f"probe stage threads: ours(2 threads) {two:.1f} s, baseline(1 thread) {probe_s:.1f} s, ratio "
                  f"{two / probe_s:.2f}; identical results: {same}")
        if outcome:
            outcome_preview(tag, noisy, vecs, test, tvecs, s, classes)
        ws.close()


def outcome_preview(tag: str, noisy: pd.DataFrame, vecs: np.ndarray, test: pd.DataFrame, tvecs: np.ndarray,
                    s: pd.DataFrame, classes: list[str]) -> None:
    """Issue 8's question with our default probe: how much of the noisy→clean accuracy gap does a flag recover?"""
    idx = {c: i for i, c in enumerate(classes)}
    y = noisy["label"].map(idx).to_numpy()
    yt = noisy["true_label"].map(idx).to_numpy()
    ytest = test["label"].map(idx).to_numpy()
    scale = np.float32(feature_scale(vecs))
    x, xt = vecs * scale, tvecs * scale
    cfg = ProbeConfig()

    def acc(mask: np.ndarray, labels: np.ndarray) -> float:
        _, p = train_probe(x[mask], labels[mask], len(classes), cfg, seed=0, x_eval=xt, record=False)
        return float((p.argmax(1) == ytest).mean())

    allrows = np.ones(len(y), bool)
    a_noisy, a_true = acc(allrows, y), acc(allrows, yt)
    gap = a_true - a_noisy
    flipped = y != yt
    line = [f"noisy {a_noisy:.4f}", f"true labels {a_true:.4f}"]
    sugg = s["suggested_label"].map(idx).to_numpy()
    options = {"drop flipped (oracle)": (~flipped, y)}
    for f in FLAGS:
        options[f"drop {f}"] = (~s[f].to_numpy(bool), y)
    options["drop consensus>=2"] = (s["consensus"].to_numpy() < 2, y)
    iss = s["is_label_issue"].to_numpy(bool)
    relab = y.copy()
    relab[iss] = sugg[iss]
    options["relabel is_label_issue to suggested"] = (allrows, relab)
    cons = s["consensus"].to_numpy()
    mix = y.copy()
    mix[cons == 3] = sugg[cons == 3]
    options["relabel consensus=3 to suggested, drop consensus=2"] = (cons != 2, mix)
    for name, (mask, labels) in options.items():
        a = acc(mask, labels)
        line.append(f"{name} {a:.4f} ({(a - a_noisy) / gap:.0%} of gap)" if gap > 0 else f"{name} {a:.4f}")
    print(f"outcome {tag} (test accuracy, BANKING77 test split, default probe): " + "; ".join(line), flush=True)


def big(n: int, C: int, E: int, seed: int = 0, repeat: int = 3) -> None:
    """Scores stage on imported synthetic probs/logits vs cleanlab direct + AUM numpy on the same arrays."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    rng = np.random.default_rng(seed)
    true = rng.integers(0, C, n)
    given = true.copy()
    flip = rng.random(n) < 0.1
    given[flip] = (true[flip] + rng.integers(1, C, flip.sum())) % C
    classes = [f"class_{i:02d}" for i in range(C)]
    logits = rng.normal(size=(E, n, C)).astype(np.float32)
    ramp = np.linspace(0.5, 4, E, dtype=np.float32)[:, None]
    logits[:, np.arange(n), true] += ramp  # the true class grows more likely over epochs
    logits[:, np.arange(n), given] += 0.3 * ramp
    last = logits[-1].astype(np.float64)
    probs = np.exp(last - last.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "probs.npy", probs)
        np.save(tmp / "logits.npy", logits)
        df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [f"synthetic row {i}" for i in range(n)],
                           "label": np.array(classes)[given],
                           "embedding": list(rng.normal(size=(n, 8)))})
        ws = Workspace(tmp / "ws")
        ws.ingest(df, text="text", label="label", id="id")
        ws.run(["embed"], params={"embed": {"embedder": "precomputed", "column": "embedding"}})
        from curate_core.dynamics import import_params

        t = time.time()
        ws.run(["probe"], params={"probe": import_params(probs=tmp / "probs.npy", logits=tmp / "logits.npy")})
        imp = time.time() - t
        # only the label-noise plugins: other features' scores (duplicates, outliers …) are not part of the baseline
        only = {"scores": {"only": LABEL_SCORES}}
        ws.run(["scores"], params=only)  # warm: the first run also builds the scores table
        stage, wall = [], []
        for _ in range(repeat):
            t = time.time()
            res = ws.run(["scores"], params=only, force=True)
            wall.append(time.time() - t)
            stage.append(next(r for r in res if r["stage"] == "scores")["summary"]["seconds"])
        ws.close()
        # baseline: the same arrays, straight from .npy, through cleanlab and a numpy AUM
        t = time.time()
        P = np.load(tmp / "probs.npy")
        L = np.load(tmp / "logits.npy")
        t_load = time.time() - t
        cl, au = [], []
        for _ in range(repeat):
            t = time.time()
            get_label_quality_scores(given, P)
            find_label_issues(given, P, n_jobs=1)
            cl.append(time.time() - t)
            t = time.time()
            aum_from_logits(L, given)
            au.append(time.time() - t)
    ours, ours_wall, t_cl, t_aum = (float(np.median(v)) for v in (stage, wall, cl, au))
    base = t_cl + t_aum
    print(f"scores stage {n:,} x {C} x {E} epochs: ours {ours:.2f} s, baseline {base:.2f} s (cleanlab direct "
          f"{t_cl:.2f} s + AUM numpy {t_aum:.2f} s; np.load {t_load:.2f} s not counted), ratio {ours / base:.2f}  "
          f"[median of {repeat}; ours = the stage itself; with the pipeline's bookkeeping {ours_wall:.2f} s, "
          f"ratio {ours_wall / base:.2f}]")
    print(f"probe import {n:,} x {C} x {E} epochs (read, validate, per-epoch stats, store): {imp:.2f} s")


def flag_lines(tag: str, s: pd.DataFrame, flipped: np.ndarray) -> None:
    """AUROC of the two main scores; P/R/F1 and flag rate vs the true flip rate of every flag."""
    print(f"{tag}: AUROC label_quality {auroc(flipped, -s['label_quality'].to_numpy(float)):.4f}, "
          f"aum {auroc(flipped, -s['aum'].to_numpy(float)):.4f}", flush=True)
    for f in [*FLAGS, "consensus>=2"]:
        flag = s["consensus"].to_numpy() >= 2 if f == "consensus>=2" else s[f].to_numpy(bool)
        tp = int((flag & flipped).sum())
        p, r = tp / max(1, flag.sum()), tp / max(1, flipped.sum())
        print(f"{tag}: {f} {pr(flag, flipped)} F1 {2 * p * r / max(1e-9, p + r):.2f}; flag rate "
              f"{flag.mean():.1%} vs true {flipped.mean():.1%} ({flag.sum() / max(1, flipped.sum()):.2f}x)")


def features_line(tag: str, ws: Workspace) -> None:
    f = ws.store.get_summary("probe")["features"]
    cand = ", ".join(f"{k} {v['oof_accuracy']:.4f} (log-loss {v['oof_log_loss']:.4f})"
                     for k, v in f["candidates"].items())
    print(f"{tag}: probe out-of-fold accuracy per feature set: {cand}; auto chose {f['chosen']}", flush=True)


def sms(rate: float, seed: int) -> None:
    """SMS Spam as a new user runs it: ingest, every default stage but the map, then the flags vs the true flips."""
    df = pd.read_csv(DATA / "sms_spam" / "sms_spam.csv", dtype=str, keep_default_na=False)
    noisy = make_noisy(df[["id", "text", "label"]], rate, seed)
    flipped = (noisy["label"] != noisy["true_label"]).to_numpy()
    tag = f"sms spam {rate:.0%} flips"
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.ingest(noisy.drop(columns="true_label"), text="text", label="label", id="id")
        t = time.time()
        ws.run(["scores"])
        print(f"{tag}: embed + probe + scores {time.time() - t:.0f} s", flush=True)
        s = ws.store.read_table("scores")
        flag_lines(tag, s, flipped)
        features_line(tag, ws)
        ws.close()


def long_documents(seed: int, intents: int = 10, per_intent: int = 50) -> pd.DataFrame:
    """Documents of 24–36 BANKING77 questions: a third of the document's intent, the rest of random others
    (shuffled), so a model that reads only the start of a document sees a third of its evidence."""
    train = pd.read_csv(DATA / "banking77" / "train.csv", dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    names = sorted(train["label"].unique())
    chosen = [names[i] for i in rng.choice(len(names), intents, replace=False)]
    by = {k: g["text"].tolist() for k, g in train.groupby("label")}
    rows = []
    for intent in chosen:
        for j in range(per_intent):
            k = int(rng.integers(24, 37))
            own = k // 3
            qs = [by[intent][i] for i in rng.choice(len(by[intent]), own, replace=False)]
            others = [n for n in names if n != intent]
            for o in rng.choice(len(others), k - own, replace=True):
                pool = by[others[o]]
                qs.append(pool[int(rng.integers(len(pool)))])
            rng.shuffle(qs)
            rows.append({"id": f"{intent}-{j:03d}", "text": " ".join(qs), "label": intent})
    return pd.DataFrame(rows)


def long_docs(seed: int) -> None:
    from curate_core.dynamics import fold_indices
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    docs = long_documents(seed)
    noisy = make_noisy(docs, 0.10, seed)
    flipped = (noisy["label"] != noisy["true_label"]).to_numpy()
    words = noisy["text"].str.split().str.len()
    tag = f"long documents ({len(docs):,} docs, {docs['label'].nunique()} intents, {words.median():.0f} words median, 10 % flips)"
    with tempfile.TemporaryDirectory() as tmp:
        acc = {}
        for windows in (1, 8):
            ws = Workspace(Path(tmp) / f"ws{windows}")
            ws.ingest(noisy.drop(columns="true_label"), text="text", label="label", id="id")
            t = time.time()
            res = ws.run(["embed"], params={"embed": {"max_windows": windows}})
            emb_s = time.time() - t
            ws.run(["scores"], params={"probe": {"features": "embedding"}})
            f = ws.store.get_summary("probe")["features"]["candidates"]["embedding"]
            s = ws.store.read_table("scores")
            acc[windows] = f["oof_accuracy"]
            summary = res[-1]["summary"]
            print(f"{tag}: embedding {'truncated (max_windows=1)' if windows == 1 else 'windowed (max_windows=8)'}: "
                  f"out-of-fold accuracy {f['oof_accuracy']:.4f}, AUROC label_quality "
                  f"{auroc(flipped, -s['label_quality'].to_numpy(float)):.4f}; embed {emb_s:.0f} s, "
                  f"{summary.get('long_texts', 0):,} texts longer than the window", flush=True)
            if windows == 8:
                ws.run(["scores"], params={"probe": {"features": "auto"}})
                features_line(tag, ws)
                flag_lines(tag + " auto", ws.store.read_table("scores"), flipped)
                chosen = ws.store.get_summary("probe")["features"]
                auto_acc = chosen["candidates"][chosen["chosen"]]["oof_accuracy"]
            ws.close()
    classes = sorted(noisy["label"].unique())
    y = noisy["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    x = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(noisy["text"])
    pred = np.empty(len(y), np.int64)
    for held in fold_indices(y, 5, 0):  # the probe's own folds
        train = np.setdiff1d(np.arange(len(y)), held)
        pred[held] = LogisticRegression(C=10, max_iter=2000).fit(x[train], y[train]).predict(x[held])
    base = float((pred == y).mean())
    print(f"{tag}: windowed vs truncated embedding: out-of-fold accuracy {acc[8]:.4f} vs {acc[1]:.4f} "
          f"(+{acc[8] - acc[1]:.4f}); auto features {auto_acc:.4f} vs baseline TF-IDF + logistic regression "
          f"(scikit-learn, same folds) {base:.4f}: {auto_acc - base:+.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="0.1,0.2")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-banking", action="store_true")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--big-rows", type=int, default=100_000)
    ap.add_argument("--big-classes", type=int, default=77)
    ap.add_argument("--big-epochs", type=int, default=20)
    ap.add_argument("--big-repeat", type=int, default=7, help="timed runs per side (median; sub-second timings)")
    ap.add_argument("--skip-real", action="store_true", help="skip SMS Spam and the long documents")
    ap.add_argument("--only-real", action="store_true", help="only SMS Spam and the long documents")
    a = ap.parse_args()
    if a.only_real:
        a.skip_banking = a.skip_big = True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    print(f"load: {load()}", flush=True)
    if not a.skip_banking:
        if DATA is None:
            sys.exit("BANKING77 not found (expected shared/data/banking77/{train,test}.csv)")
        train, vecs = minilm("train")
        test, tvecs = minilm("test")
        for i, rate in enumerate(float(r) for r in a.rates.split(",")):
            banking(rate, a.seed, train, vecs, test, tvecs, threads=i == 0, outcome=True)
    if not a.skip_real:
        for rate in (0.1, 0.2):
            sms(rate, 13)
        long_docs(a.seed)
    if not a.skip_big:
        big(a.big_rows, a.big_classes, a.big_epochs, repeat=a.big_repeat)
    print(f"load: {load()}", flush=True)


if __name__ == "__main__":
    main()
