"""Mixtures: per-group target shares (weights or a temperature over group sizes) and budgets split among groups
with capacities (water-filling), plus the warnings a person needs when a group cannot fill its share."""

from __future__ import annotations

import json
import math

import pandas as pd

from ..errors import choices
from .model import Mixture, _bad

#: a mixture without a budget that keeps less than this share of the rows that pass gets a warning naming why
SHRINK_WARN = 0.75

def group_shares(sizes: dict[str, float], temperature: float = 1.0, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Target share of each group: normalised *weights* if given (missing groups get 0), else
    size^(1/T) normalised — T = 1 keeps the natural proportions, T → ∞ gives every non-empty group the same."""
    if weights is not None:
        w = {g: float(weights.get(g, 0.0)) for g in sizes}
        top = max(w.values(), default=0.0)
        # relative to the largest first: weights near the float limit (1e308 each) summed to inf, and every
        # share became NaN — a mixture that silently selected nothing
        w = {g: v / top for g, v in w.items()} if top > 0 else w
        tot = sum(w.values())
        return {g: (v / tot if tot > 0 else 0.0) for g, v in w.items()}
    logs = {g: math.log(s) for g, s in sizes.items() if s > 0}
    if not logs:
        return {g: 0.0 for g in sizes}
    top = max(logs.values())
    # (log size − log largest) / T, never log size / T: a tiny temperature (1e-308) made every term inf and
    # every share NaN; this way the largest groups get exp(0) = 1 and the rest tend to 0, as T → 0 should
    ex = {g: math.exp((v - top) / temperature) for g, v in logs.items()}
    tot = sum(ex.values())
    return {g: ex.get(g, 0.0) / tot for g in sizes}


def allocate(shares: dict[str, float], capacity: dict[str, float], budget: float | None,
             redistribute: bool = True, integer: bool = True) -> dict[str, float]:
    """Per-group targets for *budget* split by *shares*, none above its *capacity*.

    Water-filling: a group whose share exceeds its capacity gets its capacity, and (with *redistribute*) the
    rest of the budget is split among the others by their shares, repeatedly. No budget means the largest total
    that meets the shares exactly without exceeding any capacity. With *integer*, targets are whole numbers
    summing to the (reachable) budget by largest remainders, so each is within ±1 of share × budget where the
    group has room.
    """
    active = {g for g, s in shares.items() if s > 0}
    if budget is None:
        # with redistribute, a group that has nothing to give does not shrink the mix of the others to nothing
        ratios = [capacity[g] / shares[g] for g in active if capacity[g] > 0 or not redistribute]
        budget = min(ratios) if ratios else 0.0
        if integer:
            budget = math.floor(budget + 1e-9)
    alloc = {g: 0.0 for g in shares}
    if not redistribute:
        for g in active:
            alloc[g] = min(shares[g] * budget, capacity[g])
    else:
        remaining = float(budget)
        while active and remaining > 1e-12:
            tot = sum(shares[g] for g in active)
            full = {g for g in active if remaining * shares[g] / tot >= capacity[g] - 1e-9}
            if not full:
                for g in active:
                    alloc[g] = remaining * shares[g] / tot
                break
            for g in full:
                alloc[g] = float(capacity[g])
                remaining -= capacity[g]
            active -= full
    if not integer:
        return alloc
    floors = {g: math.floor(v + 1e-9) for g, v in alloc.items()}
    reach = min(float(budget), sum(min(alloc[g], capacity[g]) for g in alloc)) if redistribute else sum(alloc.values())
    left = int(round(reach)) - sum(floors.values())
    order = sorted((g for g in alloc if floors[g] + 1 <= capacity[g] and alloc[g] - floors[g] > 1e-9),
                   key=lambda g: (-(alloc[g] - floors[g]), -shares[g], g))
    for g in order[:max(left, 0)]:
        floors[g] += 1
    return {g: float(v) for g, v in floors.items()}


def mixture_counts(m: Mixture, groups: pd.DataFrame) -> tuple[pd.DataFrame, list[str], bool]:
    names = list(groups.index)
    if m.weights is not None:
        unknown = [g for g in m.weights if g not in names]
        if unknown:
            raise _bad(f"mixture.weights[{json.dumps(unknown[0])}]",
                       f"no group {json.dumps(unknown[0])} in column `{m.group_by}`",
                       f"groups: {choices(names, limit=40)}")
    rows = dict(zip(names, groups["rows_pool"].astype(float)))
    toks = dict(zip(names, groups["tokens_pool"].astype(float)))
    size = toks if m.unit == "tokens" else rows
    shares = group_shares(size, m.temperature, m.weights)
    reps = math.inf if m.max_repeats is None else m.max_repeats
    cap = math.inf if m.cap is None else float(m.cap)
    if m.mode == "reweight":
        target = {g: size[g] if shares[g] > 0 else 0.0 for g in names}
        capacity = dict(size)
    else:
        budget = m.budget
        epochs = reps
        if budget is None:
            # the largest mix that meets the shares without repeats; the cap then clips big groups and (with
            # redistribute) the others keep their rows — cap + T = 1 is ClusterClip-style clipping
            epochs = 1
            fits = allocate(shares, {g: size[g] for g in names}, None, m.redistribute, integer=m.unit == "rows")
            budget = sum(fits.values())
        capacity = {g: min(size[g] * epochs, cap) if size[g] > 0 else 0.0 for g in names}  # 0 × ∞ is not a room
        target = allocate(shares, capacity, budget, m.redistribute, integer=m.unit == "rows")
    groups["share_target"] = [shares[g] for g in names]
    groups["target"] = [target[g] for g in names]
    sel_rows, sel_tok, repeats = [], [], []
    for g in names:
        t, s = target[g], size[g]
        rep = t / s if s > 0 else 0.0
        repeats.append(rep)
        if m.unit == "rows":
            sel_rows.append(int(round(t)))
            mean_tok = toks[g] / rows[g] if rows[g] else 0.0
            sel_tok.append(int(round(t * mean_tok)))
        else:
            mean_tok = toks[g] / rows[g] if rows[g] else 0.0
            sel_rows.append(int(round(t / mean_tok)) if mean_tok > 0 else 0)
            sel_tok.append(int(round(t)))
    groups["rows_selected"] = sel_rows
    groups["tokens_selected"] = sel_tok
    groups["repeats"] = repeats
    # what each group was asked for before capacities: share × budget (no budget: as if uncapped)
    if m.mode == "reweight":
        wanted = dict(target)
    else:
        wanted = {g: shares[g] * budget for g in names}
        if m.budget is None:  # without a budget the cap is the point, not a shortfall
            wanted = {g: min(wanted[g], cap) for g in names}
    # short: a group that gave all it can (rows × repeats, or its cap) and still has less than its share;
    # a group with room is never short (rounding to whole rows is not a shortfall)
    short = {g: wanted[g] - target[g] if target[g] >= capacity[g] - 1e-9 and wanted[g] - target[g] > 0.5 else 0.0
             for g in names}
    groups["shortfall"] = [short[g] for g in names]
    # a partly sampled group's tokens (token budget: its rows) depend on which rows are drawn: estimated here
    est = m.mode == "sample" and any(size[g] > 0 and abs(target[g] / size[g] - round(target[g] / size[g])) > 1e-9
                                     for g in names)
    warnings = _mixture_warnings(m, names, shares, wanted, target, size, cap, short)
    if m.mode == "sample" and m.budget is None:  # the shares' own shrink, before any cap clips
        warnings += _shrink_warning(m, names, shares, budget, size)
    return groups, warnings, est


def _mixture_warnings(m: Mixture, names: list[str], shares: dict, wanted: dict, target: dict, size: dict,
                      cap: float, short: dict) -> list[str]:
    out = []
    unit = m.unit
    for g in names:
        if shares[g] <= 0:
            continue
        if short[g] > 0:
            why = ("it has no rows left after the filters" if size[g] == 0 else
                   f"it is capped at {cap:,.0f} {unit}" if target[g] >= cap - 1e-9 else
                   f"it would have to repeat {wanted[g] / size[g]:.1f}× (max_repeats = {m.max_repeats})")
            out.append(f"Group {g!r} cannot fill its share: {target[g]:,.0f} of {wanted[g]:,.0f} {unit} "
                       f"({shares[g]:.1%} wanted) — {why}.")
        elif size[g] > 0 and target[g] > size[g] + 1e-9:
            out.append(f"Group {g!r} repeats {target[g] / size[g]:.1f}× to fill its share.")
    if m.budget is not None and m.mode == "sample":
        got = sum(target.values())
        if got + 0.5 < m.budget:
            out.append(f"The budget of {m.budget:,} {unit} is not met: {got:,.0f} {unit} can be selected "
                       f"(shortfall {m.budget - got:,.0f})"
                       + ("" if m.redistribute else "; set redistribute to let other groups fill in") + ".")
    if m.weights is not None:
        zero = [g for g in names if m.weights.get(g, 0) == 0]
        if zero:
            out.append(f"{len(zero):,} group(s) have weight 0 and are left out: {choices(zero, limit=8)}.")
    return out


def _shrink_warning(m: Mixture, names: list[str], shares: dict, kept: float, size: dict) -> list[str]:
    """Without a budget the mixture takes the largest mix that meets its shares without repeating a row, so
    shares far from the natural ones (a high temperature, hand weights) silently shrink the selection to what
    the scarcest group allows. Say so, name that group, and what to do instead."""
    pool = sum(size.values())
    if pool <= 0 or kept >= SHRINK_WARN * pool:
        return []
    room = {g: size[g] / shares[g] for g in names if shares[g] > 0 and size[g] > 0}
    scarce = min(room, key=lambda g: (room[g], g)) if room else None
    why = (f"; group {scarce!r} runs out first: its {size[scarce]:,.0f} {m.unit} are {shares[scarce]:.1%} of "
           f"the mix" if scarce is not None else "")
    return [f"The mixture's shares keep {kept:,.0f} of the {pool:,.0f} {m.unit} that pass the filters "
            f"({1 - kept / pool:.0%} fewer): without a budget it takes the largest mix that meets the target "
            f"shares without repeating a row{why}. To keep more, set a budget with max repeats above 1, move the "
            f"temperature towards 1 (natural shares), or leave the shares natural and use a cap to clip only the big groups."]
