"""Mixture search (RegMix-style) on a small synthetic workspace: a clean source, a noisy one, and a third
in between; the search must prefer the clean one, report what it promised, resume, and refuse bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from curate_core import CurateError, Workspace
from curate_core import mixsearch
from curate_core.mixsearch import suggest
from curate_core.recipes.model import parse_recipe

from .conftest import REPO

TOPICS = {
    "billing": "card charged twice payment fee refund statement bank",
    "travel": "flight hotel trip booking airport luggage train",
    "weather": "rain snow sunny forecast storm temperature wind",
    "food": "pizza pasta salad dinner lunch recipe bread",
}
SOURCES = (("clean", 0.0), ("half", 0.4), ("noisy", 0.8))
ALL = {"version": 1}


def rows(n: int, seed: int, flip: float, source: str) -> list[dict]:
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    out = []
    for i in range(n):
        true = names[i % len(names)]
        words = list(rng.choice(TOPICS[true].split(), 3)) + list(rng.choice(" ".join(TOPICS.values()).split(), 2))
        label = rng.choice([x for x in names if x != true]) if rng.random() < flip else true
        out.append({"id": f"{source}-{i:04d}", "text": " ".join(words), "label": label, "source": source})
    return out


@pytest.fixture(scope="module")
def mix(tmp_path_factory):
    root = tmp_path_factory.mktemp("mix")
    df = pd.DataFrame([r for k, (s, f) in enumerate(SOURCES) for r in rows(160, k, f, s)])
    pd.DataFrame(rows(200, 9, 0.0, "eval"))[["text", "label"]].to_csv(root / "eval.csv", index=False)
    ws = Workspace(root / "ws")
    ws.ingest(df)
    ws.run(["embed"], params={"embed": {"embedder": "tfidf", "dim": 32}})
    yield ws, root / "eval.csv"
    ws.close()


@pytest.fixture(scope="module")
def result(mix):
    ws, ev = mix
    return suggest(ws, ALL, "source", eval_file=ev, trials=10, budget=200, seed=1)


def test_the_suggestion_beats_natural_and_uniform_and_avoids_the_noisy_source(result):
    r = result
    assert set(r.weights) == {"clean", "half", "noisy"} and abs(sum(r.weights.values()) - 1) < 1e-6
    assert r.measured >= max(r.natural.metric, r.uniform.metric)
    assert r.weights["noisy"] < 1 / 3 < r.weights["clean"]  # natural share is a third each
    assert r.natural.kind == "natural" and r.uniform.kind == "uniform" and len(r.trials) == 10
    assert r.best_trial.metric == max(t.metric for t in r.trials)
    assert set(r.models) == {"linear", "gradient_boosting"} and r.fit_r2 == r.models[r.model]
    assert abs(r.predicted - r.measured) <= 0.1
    assert all(abs(sum(t.shares.values()) - 1) < 1e-9 and t.rows > 0 for t in r.trials)


def test_the_same_search_again_resumes_without_training_and_gives_the_same_answer(mix, result, monkeypatch):
    ws, ev = mix
    calls = []
    real = mixsearch.TrialTask.__call__
    monkeypatch.setattr(mixsearch.TrialTask, "__call__", lambda self, *a: calls.append(1) or real(self, *a))
    again = suggest(ws, ALL, "source", eval_file=ev, trials=10, budget=200, seed=1)
    assert calls == [] and again.weights == result.weights and again.measured == result.measured
    other = suggest(ws, ALL, "source", eval_file=ev, trials=10, budget=200, seed=2)
    assert len(calls) == 11 and [t.weights for t in other.trials[2:]] != [t.weights for t in result.trials[2:]]


def test_the_suggested_recipe_records_the_search(result):
    base = parse_recipe(ALL)
    rec = result.recipe(base, "suggested")
    doc = rec.to_json()
    assert doc["mixture"]["weights"] == result.weights and doc["mixture"]["budget"] == {"rows": 200}
    assert doc["mixture"]["origin"]["seed"] == 1 and doc["mixture"]["origin"]["trials"] == 10
    assert parse_recipe(doc) == rec and "mixture search" in doc["description"]
    assert "origin" not in (parse_recipe({"mixture": {"group_by": "source"}}).to_json()["mixture"])


@pytest.mark.parametrize("kwargs, field", [
    ({"group_by": "nope"}, "mixture.group_by"),
    ({"group_by": "label", "trials": 3}, "--trials"),
    ({"budget": 0}, "--budget"),
    ({"budget": 10_000}, "--budget"),
    ({"metric": "loss"}, "--metric"),
    ({"held_out": 1.5}, "--held-out"),
    ({"eval_selection": "x"}, "--eval or --eval-selection"),
])
def test_bad_input_names_the_argument(mix, kwargs, field):
    ws, ev = mix
    args = {"group_by": "source", "eval_file": ev, "trials": 6, "budget": 100} | kwargs
    with pytest.raises(CurateError, match=field.replace("(", r"\(")):
        suggest(ws, ALL, args.pop("group_by"), **args)


def test_one_group_is_refused(mix):
    ws, ev = mix
    with pytest.raises(CurateError, match="at least two"):
        suggest(ws, {"filters": [{"column": "source", "op": "==", "value": "clean"}]}, "source", eval_file=ev)


def test_cli_json_keys_and_save(mix, tmp_path):
    ws, ev = mix
    cmd = [sys.executable, "-m", "curate_core", "mixture", "suggest", "--workspace", str(ws.path),
           "--recipe", str(REPO / "assets/recipes/all.json"), "--group-by", "source", "--eval", str(ev),
           "--trials", "8", "--budget", "200", "--json", "--save", "searched"]
    ws.close()  # the CLI opens the workspace itself (this test runs last in the module)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert {"weights", "predicted", "measured", "natural", "uniform", "best_trial", "trials", "fit_r2"} <= set(j)
    assert j["natural"]["measured"] == j["natural"]["metric"] and "measured" in j["uniform"]
    assert len(j["trials"]) == 8 and {"weights", "metric"} <= set(j["trials"][0]) and j["saved"] == "searched"
    bad = subprocess.run(cmd[:-3] + ["--trials", "2"], capture_output=True, text=True, timeout=600)
    # (cmd[:-4] dropped the budget's value: argparse refused that, and its usage text named --trials)
    assert bad.returncode == 2 and "error: --trials must be at least" in bad.stderr
    with Workspace(ws.path, create=False) as again:
        assert again.store.recipe("searched")["mixture"]["weights"] == j["weights"]
