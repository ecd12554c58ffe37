"""Mixture search: let the data choose the group weights of a mixture (RegMix-style).

RegMix (Liu et al., 2024) trains many small proxy models on random mixtures, fits a regression from the
mixture weights to the target metric and takes the mixture the regression predicts to be best. Here the
proxy is the outcome probe of :mod:`curate_core.evaluate` (softmax regression on the workspace's embeddings,
seconds per training), so a search runs while a person watches:

1. **trials**: natural shares, uniform shares and ``trials − 2`` Dirichlet(1) draws over the groups (seeded;
   each within what the groups can give at the budget), each drawn with the recipe's own deterministic sampler
   at the budget and trained and scored on the held-out set — through the executor, one checkpoint part per
   trial, so a killed search resumes and a cluster spreads the trainings;
2. **fit**: a linear model and gradient boosting (scikit-learn) from the trials' *achieved* shares to the
   metric; the one with the better cross-validated R² is kept (both are reported);
3. **search**: the fitted model predicts ≥ 10,000 seeded candidate mixtures that fit the groups' capacity; the
   best prediction is the suggestion;
4. **check**: the suggestion is drawn and trained like a trial, and its measured metric is reported next to
   the prediction and to natural and uniform.

Everything is seeded and the trials' order is fixed, so the same workspace, recipe and arguments give the same
suggestion on any executor.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from .errors import CurateError
from .evaluate import EVAL_PROBE, HELD_OUT, EvalData, eval_data
from .execution import Checkpoint, Executor, LocalExecutor, Task, Tracker
from .recipes.model import Mixture, Recipe, parse_recipe
from .select import _store, live_counts, select
from .stage import digest

VERSION = "1"
METRICS = ("accuracy", "macro_f1")
CANDIDATES = 10_000
MIN_TRIALS = 6  # below this a 5-fold cross-validated fit means nothing


@dataclass
class Trial:
    weights: dict[str, float]  # the shares asked for
    shares: dict[str, float]  # the shares achieved in the drawn selection (what the regression sees)
    metric: float
    rows: int
    kind: str = "random"  # natural | uniform | random | suggested
    predicted: float | None = None  # the kept model's out-of-fold prediction (how well the fit generalises)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Suggestion:
    group_by: str
    metric: str
    budget: int
    weights: dict[str, float]
    predicted: float
    measured: float
    natural: Trial
    uniform: Trial
    best_trial: Trial
    trials: list[Trial]
    fit_r2: float
    model: str
    models: dict[str, float]  # model → cross-validated R²
    eval: str
    params: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"group_by": self.group_by, "metric": self.metric, "budget": self.budget, "weights": self.weights,
                "predicted": self.predicted, "measured": self.measured,
                # the reference mixtures carry their figure as `measured` too, like the suggestion's
                **{k: {**t.as_dict(), "measured": t.metric}
                   for k, t in (("natural", self.natural), ("uniform", self.uniform), ("best_trial", self.best_trial))},
                "trials": [t.as_dict() for t in self.trials],
                "fit_r2": self.fit_r2, "model": self.model, "models": self.models, "eval": self.eval,
                "params": self.params, "seconds": self.seconds}

    def lines(self) -> list[str]:
        w = ", ".join(f"{g} {v:.1%}" for g, v in sorted(self.weights.items(), key=lambda kv: -kv[1]))
        return [
            f"mixture search over {self.group_by!r}: {len(self.trials)} trials of {self.budget:,} rows, "
            f"{self.metric} on {self.eval}",
            f"  fit: {self.model} (cross-validated R² {self.fit_r2:.3f}; "
            + ", ".join(f"{m} {r:.3f}" for m, r in self.models.items()) + ")",
            f"  suggested  {w}",
            f"             predicted {self.predicted:.4f}, measured {self.measured:.4f}",
            f"  natural    measured {self.natural.metric:.4f}",
            f"  uniform    measured {self.uniform.metric:.4f}",
            f"  best trial measured {self.best_trial.metric:.4f}",
        ]

    def recipe(self, base: Recipe, name: str | None = None) -> Recipe:
        """*base* with the suggested weights as its mixture, recording the search that chose them."""
        return replace(base, name=name or base.name, mixture=trial_mixture(base, self.group_by, self.weights,
                                                                           self.budget, origin=self.params),
                       description=f"Mixture weights over {self.group_by!r} suggested by a mixture search "
                                   f"({len(self.trials)} trials, seed {self.params.get('seed', 0)}): predicted "
                                   f"{self.metric} {self.predicted:.4f}, measured {self.measured:.4f}.")


def trial_mixture(base: Recipe, group_by: str, weights: dict[str, float], budget: int,
                  origin: dict | None = None) -> Mixture:
    """The mixture a trial draws: the recipe's own sampler settings (repeats, quality), these weights, a row
    budget."""
    m = base.mixture or Mixture()
    return replace(m, group_by=group_by, weights=dict(weights), budget_rows=int(budget), budget_tokens=None,
                   mode="sample", redistribute=True, origin=origin)


# ------------------------------------------------------------------------------------------- trials
class TrialTask:
    """Executor task: train the outcome probe on one trial's rows and score it on the held-out set."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def __call__(self, task: Task, shared: Any, report: Callable[[int], None]) -> pa.Table:
        import torch

        torch.set_num_threads(1)
        data: EvalData = shared
        pos, labels, reps = task.arg
        x, y = np.repeat(data.vecs[pos], reps, axis=0), np.repeat(labels, reps)
        acc, f1 = data.score(x, y, EVAL_PROBE)
        return pa.table({"accuracy": [acc], "macro_f1": [f1], "rows": [int(len(y))]})


def _trial_rows(data: EvalData, sel: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, final labels, repeats) of a selection's trainable rows: what a trial task trains on."""
    pos = np.searchsorted(data.row_ids, sel.row_ids)
    labels, reps = sel.labels, sel.repeats.astype(np.int64)
    keep = (np.array([x is not None for x in labels], dtype=bool) & (reps > 0))
    keep[keep] &= ~data.held[pos[keep]]
    return pos[keep], labels[keep].astype(str), reps[keep]


def _achieved(sel: Any, groups: list[str]) -> dict[str, float]:
    got = sel.group_counts
    tot = sum(got.get(g, 0) for g in groups)
    return {g: (got.get(g, 0) / tot if tot else 0.0) for g in groups}


def feasible(w: np.ndarray, capacity: np.ndarray, budget: int) -> np.ndarray:
    """Rows of *w* (shares) whose every group can give its share of the budget (rows × max repeats)."""
    return np.all(w * budget <= capacity + 0.5, axis=1)


def draw_mixtures(n: int, capacity: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """*n* Dirichlet(1) shares over the groups that the groups can fill (rejection sampling; after many
    rejections the rest are taken as drawn, and the sampler's redistribution makes them feasible)."""
    g = len(capacity)
    out: list[np.ndarray] = []
    for _ in range(200):
        w = rng.dirichlet(np.ones(g), size=max(4 * n, 64))
        out.extend(w[feasible(w, capacity, budget)])
        if len(out) >= n:
            return np.array(out[:n])
    extra = rng.dirichlet(np.ones(g), size=n - len(out))
    return np.array(out + list(extra))


# ---------------------------------------------------------------------------------------------- fit
def fit_models(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[str, Any, dict[str, float], np.ndarray]:
    """(name, fitted model, name → cross-validated R², the kept model's out-of-fold predictions) of the better
    of a linear model and gradient boosting from achieved shares to the metric."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    models = {
        "linear": lambda: Ridge(alpha=1e-3),
        "gradient_boosting": lambda: GradientBoostingRegressor(n_estimators=200, max_depth=2, learning_rate=0.05,
                                                              random_state=seed),
    }
    folds = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=seed)
    r2, oof = {}, {}
    for name, make in models.items():
        oof[name] = cross_val_predict(make(), x, y, cv=folds)
        r2[name] = float(r2_score(y, oof[name])) if np.var(y) > 0 else 0.0
    best = max(r2, key=lambda k: (r2[k], k == "linear"))  # a tie goes to the simpler model
    return best, models[best]().fit(x, y), r2, oof[best]


# -------------------------------------------------------------------------------------------- search
def _eval_key(store, eval_file: str | Path | None, eval_selection: str | None, held_out: float, seed: int) -> dict:
    """What the held-out set is made of, for the search's checkpoint key."""
    if eval_file is not None:
        return {"file": hashlib.md5(Path(eval_file).read_bytes()).hexdigest()}
    if eval_selection is not None:
        ids = store.selection(eval_selection) if eval_selection in store.selection_names() else []
        return {"selection": eval_selection, "rows": hashlib.md5(np.asarray(ids, np.int64).tobytes()).hexdigest()}
    return {"held_out": held_out, "seed": seed}


def suggest(store_or_ws: Any, recipe: Any, group_by: str, *, eval_file: str | Path | None = None,
            eval_selection: str | None = None, held_out: float = HELD_OUT, trials: int = 48,
            budget: int | None = None, seed: int = 0, metric: str = "accuracy", candidates: int = CANDIDATES,
            executor: Executor | None = None, progress: Callable[..., None] | None = None,
            text: str | None = None, label: str | None = None) -> Suggestion:
    """Search the mixture weights over *group_by* that the outcome probe predicts to score best (module docs).

    *budget* (rows a trial draws) defaults to the recipe's row budget, else half the pool: a search at the
    whole pool could only move weights by repeating rows. Raises CurateError naming the argument for bad input.
    """
    t0 = time.monotonic()
    store = _store(store_or_ws)
    base = parse_recipe(recipe)
    if metric not in METRICS:
        raise CurateError(f"--metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if not isinstance(trials, int) or trials < MIN_TRIALS:
        raise CurateError(f"--trials must be at least {MIN_TRIALS}; got {trials}",
                          "a regression over fewer trials cannot be cross-validated; 24–48 is a good start")
    if not 0 < held_out < 1:
        raise CurateError(f"--held-out must be between 0 and 1; got {held_out}",
                          "the share of labelled rows kept apart for scoring, e.g. --held-out 0.2")
    if eval_file is not None and eval_selection is not None:
        raise CurateError("Give --eval or --eval-selection, not both")
    natural_mix = replace(base.mixture or Mixture(), group_by=group_by, weights=None, temperature=1.0,
                          budget_rows=None, budget_tokens=None)
    # checks the recipe and the column (errors name the mixture's group_by)
    counts = live_counts(store, replace(base, mixture=natural_mix), cached=False)
    groups_df = counts.groups[counts.groups["rows_pool"] > 0]
    groups = groups_df["group"].astype(str).tolist()
    if len(groups) < 2:
        raise CurateError(f"--group-by {group_by}: the recipe's pool has {len(groups)} group(s); "
                          "a mixture search needs at least two", "group by a column with several values (e.g. source)")
    pool = groups_df["rows_pool"].to_numpy(float)
    if budget is None:
        budget = base.mixture.budget_rows if base.mixture is not None and base.mixture.budget_rows else int(pool.sum() // 2)
    if not isinstance(budget, int) or budget < 1:
        raise CurateError(f"--budget must be a whole number of rows ≥ 1; got {budget}")
    reps = (base.mixture.max_repeats if base.mixture is not None else 1)
    capacity = pool * (math.inf if reps is None else reps)
    if budget > capacity.sum():
        raise CurateError(f"--budget {budget:,} is more than the pool can give ({capacity.sum():,.0f} rows with "
                          f"max_repeats {reps})", "lower the budget, or allow repeats in the recipe's mixture")
    data = eval_data(store, eval_file, text=text, label=label, held_out=held_out, seed=seed,
                     eval_selection=eval_selection)

    rng = np.random.default_rng(seed)
    natural = pool / pool.sum()
    uniform = np.full(len(groups), 1 / len(groups))
    asked = np.vstack([natural, uniform, draw_mixtures(trials - 2, capacity, budget, rng)])
    kinds = ["natural", "uniform"] + ["random"] * (trials - 2)
    params = {"group_by": group_by, "trials": trials, "budget": budget, "seed": seed, "metric": metric,
              "eval": _eval_key(store, eval_file, eval_selection, held_out, seed), "candidates": candidates}
    embed_run = (store.latest_runs().get("embed") or {}).get("run_key")
    ck = Checkpoint(store.checkpoint_root).child("mixsearch", digest(
        {"version": VERSION, "recipe": base.to_json(), "params": params, "embed": embed_run,
         "data": store.data_fingerprint(), "probe": asdict(EVAL_PROBE)}))
    executor = executor or LocalExecutor()
    fn = TrialTask(metric)
    tracker = Tracker(progress, trials + 1, unit="trainings", working="training on trial mixtures")

    def run(rows: list[tuple[str, np.ndarray, str]]) -> list[Trial]:
        tasks, sels = [], []
        for key, w, label_ in rows:
            weights = {g: float(v) for g, v in zip(groups, w)}
            sel = select(store, replace(base, mixture=trial_mixture(base, group_by, weights, budget)))
            sels.append((weights, _achieved(sel, groups)))
            tasks.append(Task(key, label_, 1, _trial_rows(data, sel)))
        names = executor.tasks(fn, tasks, ck, tracker, data)
        out = []
        for (weights, shares), name, (_, _, kind) in zip(sels, names, rows):
            t = ck.read(name)
            out.append(Trial(weights, shares, float(t.column(metric)[0].as_py()), int(t.column("rows")[0].as_py()),
                             kind))
        return out

    done = run([(f"trial-{i:03d}", w, kinds[i]) for i, w in enumerate(asked)])
    done = [replace(t, kind=k) for t, k in zip(done, kinds)]
    x = np.array([[t.shares[g] for g in groups] for t in done])
    y = np.array([t.metric for t in done])
    model_name, model, r2, oof = fit_models(x, y, seed)
    done = [replace(t, predicted=round(float(p), 6)) for t, p in zip(done, oof)]
    cand = rng.dirichlet(np.ones(len(groups)), size=max(int(candidates), 10_000))
    cand = np.vstack([cand[feasible(cand, capacity, budget)], x])
    pred = model.predict(cand)
    best = int(np.argmax(pred))
    w_best = cand[best] / cand[best].sum()
    [check] = run([("suggested", w_best, "the suggested mixture")])
    ck.mark_complete()
    weights = {g: round(float(v), 6) for g, v in zip(groups, w_best)}
    return Suggestion(group_by=group_by, metric=metric, budget=budget, weights=weights,
                      predicted=float(pred[best]), measured=check.metric, natural=done[0], uniform=done[1],
                      best_trial=max(done, key=lambda t: t.metric), trials=done, fit_r2=r2[model_name],
                      model=model_name, models=r2, eval=data.where, params=params,
                      seconds=round(time.monotonic() - t0, 2))
