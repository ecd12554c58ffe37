"""Select page pieces: the recipe editor (filter panels, decisions, dedup, selections, mixture), live counts,
composition charts, and save / load / diff of recipes.

The workspace's draft recipe (``store.recipe("__draft__")``) is the source of truth: the editor starts from it,
writes every change back, and re-reads it when another page (Duplicates) changed it. Widget keys start with
``sel_w_`` so a reload can reset them all at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from curate_core import CurateError, Workspace
from curate_core import select as S
from curate_core.pipeline import format_seconds
from curate_core.dedup import DEFAULT_EPS
from curate_core.recipes.draft import RecipeDraft

from . import cache, charts, runner, state
from .text import md, md_message, plural

W = "sel_w_"  # editor widget keys
SEEN = "sel_seen_draft"
#: what this page drew from the stored draft before anyone changed anything (FIRST until it has drawn it): the
#: draft is written only when the page's recipe differs from it, so opening the page never rewrites a draft
BASE, FIRST = "sel_base_draft", "(first drawing)"
TEMPERATURES = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0, 1000.0]
MAX_SLIDERS = 30  # more groups than this: a table of weights instead of sliders
NONE = "(none)"


# ----------------------------------------------------------------------------------------- draft
def _dump(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, default=str)


def _normalised(doc: dict) -> dict:
    try:
        return S.parse_recipe(doc).to_json()
    except CurateError:
        return doc  # e.g. all weights at zero: kept as is, the counts show the error


def load_draft(ws: Workspace) -> dict:
    """The draft recipe, normalised; resets the editor when someone else changed it since this page saw it."""
    stored = ws.store.recipe(S.DRAFT)
    raw = S.new_recipe() if stored is None else stored
    seen = st.session_state.get(SEEN)
    if seen != _dump(raw):
        if seen is not None:
            reset_editor()
        # a stored draft is replaced only by a change made here (a draft this version cannot read, weights of
        # groups that are gone: opening the page rewrote them); with no draft yet, the first drawing is saved
        st.session_state[BASE] = FIRST if stored is not None else None
    st.session_state[SEEN] = _dump(raw)
    try:
        return S.parse_recipe(raw).to_json()
    except CurateError as e:
        state.show_error(e)
        st.caption("The draft recipe has a problem (above). The editor shows what of it could be read; the draft "
                   "is replaced once you change something here (or load another recipe under *Recipe tools*).")
        return _lenient(raw)


def _lenient(raw: dict) -> dict:
    """As much of a broken draft as parses (each top-level part on its own), the rest from the defaults."""
    out = S.parse_recipe(S.new_recipe()).to_json()
    for k in ("seed", "filters", "decisions", "dedup", "selections", "search", "mixture"):
        if k in raw:
            try:
                part = S.parse_recipe({k: raw[k]}).to_json()
            except CurateError:
                continue
            if k in part:
                out[k] = part[k]
    return out


def save_draft(ws: Workspace, recipe: dict) -> None:
    """Write the page's recipe as the draft if the person changed something since the page drew it."""
    norm = _normalised(recipe)
    if ws.store.read_only:  # the page still counts; the draft lives in this browser session only
        return
    if st.session_state.get(BASE) == FIRST:  # drawn from the stored draft, nobody changed anything yet
        st.session_state[BASE] = _dump(norm)
        return
    if _dump(norm) != st.session_state.get(BASE):
        RecipeDraft(ws.store).replace(norm).save()
        st.session_state[BASE] = st.session_state[SEEN] = _dump(norm)


def replace_draft(ws: Workspace, recipe: dict) -> None:
    """Make *recipe* the draft (load / apply JSON) and redraw the editor from it."""
    RecipeDraft(ws.store).replace(S.parse_recipe(recipe).to_json()).save()
    reset_editor()
    st.session_state.pop(SEEN, None)


def reset_editor() -> None:
    for k in [k for k in st.session_state if str(k).startswith(W)]:
        del st.session_state[k]


def _init(key: str, value: Any) -> str:
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def _key(*parts: Any) -> str:
    return W + "_".join(hashlib.md5(str(p).encode()).hexdigest()[:8] if not str(p).isidentifier() else str(p)
                        for p in parts)


# ------------------------------------------------------------------------------------- profiles
@st.cache_data(show_spinner=False, max_entries=256)
def _profile(path: str, key: str, column: str) -> S.Profile:
    return S.column_profile(state.open_workspace(path).store, column)


@st.cache_data(show_spinner=False, max_entries=64)
def _groups(path: str, key: str, column: str) -> dict[str, int]:
    return S.group_sizes(state.open_workspace(path).store, column)


def profile(ws: Workspace, column: str, tables: str | None = None) -> S.Profile:
    """A column's profile (histogram, range, values), cached until a table changes; *tables* is
    ``ws.store.state("tables")`` when the caller has read it already (one query per rerun, not one per panel)."""
    return _profile(str(ws.path), tables or ws.store.state("tables"), column)


def groups(ws: Workspace, column: str) -> dict[str, int]:
    return _groups(str(ws.path), ws.store.state("tables"), column)


# -------------------------------------------------------------------------------------- filters
def _panel_kind(f: dict, kinds: dict[str, str]) -> bool:
    """Can a panel show this filter (so it is edited there rather than listed as 'other')?"""
    kind = kinds.get(f["column"])
    if kind == "number":
        return f["op"] in ("<", "<=", ">", ">=", "between") and all(
            v is None or isinstance(v, (int, float)) for v in (f["value"] if f["op"] == "between" else [f["value"]]))
    if kind == "bool":
        return f["op"] in ("is", "is_not") and isinstance(f["value"], bool)
    if kind == "text":
        return f["op"] in ("in", "==")
    return False


def filter_editor(ws: Workspace, draft: dict) -> tuple[list[dict], dict[int, Any]]:
    """One panel per chosen column; returns the filters (panel filters first) and caption slots by filter index."""
    kinds = S.filterable_columns(ws.store)
    by_col: dict[str, dict] = {}
    other: list[dict] = []
    for f in draft["filters"]:
        if f["column"] not in by_col and _panel_kind(f, kinds):
            by_col[f["column"]] = f
        else:
            other.append(f)
    if not any(t != "samples" for t, _ in ws.store.catalog().values()):
        st.caption("Only the columns of your file so far. Run the pipeline (Overview page) for score columns: "
                   "label issues, duplicates, outliers, text statistics.")
    options = sorted(kinds, key=lambda c: (c not in by_col, c))
    cols = st.multiselect("Filter on", options, key=_init(W + "cols", list(by_col)),
                          help="a panel per column: histogram, range and how many rows the filter removes",
                          placeholder="choose score columns …")
    filters: list[dict] = []
    slots: dict[int, Any] = {}
    grid = st.columns(2)
    tables = ws.store.state("tables") if cols else None
    for i, col in enumerate(cols):
        with grid[i % 2].container(border=True):
            f, slot = _panel(ws, col, kinds[col], by_col.get(col), tables)
            if f is not None:
                slots[len(filters)] = slot
                filters.append(f)
            else:
                slot.caption("no restriction: every row passes")
    if other:
        st.caption("Other filters in the recipe (edit them as JSON under *Recipe tools*):")
        keep_other = []
        for j, f in enumerate(other):
            c1, c2 = st.columns([6, 1])
            c1.markdown(f"`{S.describe_filter(S.parse_recipe({'filters': [f]}).filters[0])}`")
            slot = c1.empty()
            if not c2.button("Remove", key=_key("rm", j, _dump(f))):
                slots[len(filters) + len(keep_other)] = slot
                keep_other.append(f)
        filters += keep_other
    return filters, slots


def _panel(ws: Workspace, col: str, kind: str, f: dict | None, tables: str | None = None) -> tuple[dict | None, Any]:
    st.markdown(f"**{col}**")
    p = state.guarded(ws, profile, ws, col, tables)
    if p is None:
        return f, st.empty()
    out: dict | None = None
    if kind == "number":
        out = _number_panel(col, p, f)
    elif kind == "bool":
        out = _bool_panel(col, p, f)
    else:
        out = _text_panel(col, p, f)
    if p.missing and out is not None and not (out["op"] in ("is", "is_not") and out["value"] is None):
        drop = st.checkbox(f"Also drop rows without a value ({p.missing:,})", key=_init(_key("nulls", col),
                           (f or {}).get("nulls") == "drop"))
        out["nulls"] = "drop" if drop else "keep"
    elif p.missing:
        st.caption(f"{plural(p.missing, 'row')} without a value pass the filter unless you ask to drop them")
    return out, st.empty()


def _number_panel(col: str, p: S.Profile, f: dict | None) -> dict | None:
    if p.lo is None:
        st.caption("no values")
        return None
    lo, hi = p.lo, p.hi
    init = (lo, hi)
    if f is not None:
        v = f["value"]
        a, b = (v if f["op"] == "between" else (v, None) if f["op"] in (">", ">=") else (None, v))
        init = (lo if a is None else min(max(a, lo), hi), hi if b is None else max(min(b, hi), lo))
    st.plotly_chart(histogram(p, init), key=_key("hist", col), config={"displayModeBar": False})
    if hi <= lo:
        st.caption(f"every row has the value {lo:g}")
        return f
    if p.integer:
        init = (int(round(init[0])), int(round(init[1])))
        sel = st.slider(f"Keep {col} in", int(lo), int(hi), key=_init(_key("rng", col), init))
    else:
        step = _nice_step((hi - lo) / 200)
        sel = st.slider(f"Keep {col} in", float(lo), float(hi), key=_init(_key("rng", col), (float(init[0]), float(init[1]))),
                        step=step, format=_fmt(step))
    if f is not None and tuple(sel) == tuple(init):
        return dict(f)  # untouched: keep the recipe's own operator (e.g. a strict <)
    a = None if sel[0] <= lo else sel[0]
    b = None if sel[1] >= hi else sel[1]
    if a is None and b is None:
        return None
    return {"column": col, "op": "between", "value": [a, b], "nulls": "keep"}


def _nice_step(x: float) -> float:
    if x <= 0:
        return 0.01
    import math

    e = math.floor(math.log10(x))
    return float(f"{10 ** e:.10g}")


def _fmt(step: float) -> str:
    import math

    digits = max(0, -int(math.floor(math.log10(step)))) if step < 1 else 0
    return f"%.{min(digits, 6)}f"


def _bool_panel(col: str, p: S.Profile, f: dict | None) -> dict | None:
    # stable option labels (counts in the captions): a label that changes makes Streamlit drop the choice
    names = {"all": "all rows", "true": "only true", "false": "only false"}
    init = "all"
    if f is not None:
        init = "true" if (f["op"] == "is") == bool(f["value"]) else "false"
    total = sum(p.values.values()) + p.missing
    choice = st.radio(f"Keep rows where {col} is", list(names), format_func=names.get, horizontal=True,
                      key=_init(_key("bool", col), init),
                      captions=[f"{total:,}", f"{p.values.get('true', 0):,}", f"{p.values.get('false', 0):,}"])
    if choice == "all":
        return None
    if f is not None and choice == init:
        return dict(f)
    return {"column": col, "op": "is", "value": choice == "true", "nulls": "keep"}


def _text_panel(col: str, p: S.Profile, f: dict | None) -> dict | None:
    values = list(p.values)
    if p.distinct > len(values):
        st.caption(f"{p.distinct:,} distinct values — too many for a list; use the recipe JSON for this column")
        return f
    init = values
    if f is not None:
        chosen = f["value"] if f["op"] == "in" else [f["value"]]
        init = [v for v in values if v in chosen]
    st.caption(", ".join(f"{md(v, 40)} ({n:,})" for v, n in list(p.values.items())[:12])
               + (" …" if len(values) > 12 else ""))
    sel = st.multiselect(f"Keep {col} values", values, key=_init(_key("in", col), init))
    if not sel:
        st.warning("Choose at least one value; with none chosen this panel does not filter.")
        return None
    if len(sel) == len(values):
        return None
    if f is not None and sel == init:
        return dict(f)
    return {"column": col, "op": "in", "value": list(sel), "nulls": "keep"}


def histogram(p: S.Profile, keep: tuple[float, float] | None = None) -> go.Figure:
    """The column's histogram, the kept range shaded (built in one call: it is redrawn on every slider move)."""
    mids = [(a + b) / 2 for a, b in zip(p.edges[:-1], p.edges[1:])]
    width = p.edges[1] - p.edges[0] if len(p.edges) > 1 else 1
    shapes = ([charts.vrect(keep[0], keep[1], "#54a24b", 0.15)]
              if keep is not None and (keep[0] > p.lo or keep[1] < p.hi) else [])
    return go.Figure(
        data=[go.Bar(x=mids, y=p.counts, width=[width] * len(mids), marker_color="#4c78a8",
                     hovertemplate=f"{charts.plot_text(p.column)} ≈ %{{x:.3g}}: %{{y:,}} rows<extra></extra>")],
        layout=dict(height=150, margin=dict(l=10, r=10, t=5, b=30), bargap=0.05, showlegend=False,
                    xaxis={"title": {"text": charts.plot_text(p.column, 60)}}, yaxis={"title": {"text": "rows"}},
                    shapes=shapes))


# ------------------------------------------------------------------------- decisions, dedup, sets
def steps_editor(ws: Workspace, draft: dict) -> dict:
    cat = ws.store.catalog()
    dec = draft["decisions"]
    cur = ws.store.current_decisions()
    n = cur["action"].value_counts().to_dict() if len(cur) else {}
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Decisions**")
        exclude = st.checkbox(f"Drop excluded rows ({n.get('exclude', 0):,})", key=_init(W + "dec_ex", dec["exclude"]))
        relabel = st.checkbox(f"Apply relabels ({n.get('relabel', 0):,})", key=_init(W + "dec_re", dec["relabel"]))
        reviewed = st.checkbox("Kept / relabelled rows pass the filters", key=_init(W + "dec_rv", dec["reviewed_pass_filters"]),
                               help=f"{n.get('keep', 0) + n.get('relabel', 0):,} rows a person reviewed skip the filters")
    dd = draft["dedup"]
    with c2:
        st.markdown("**Duplicates**")
        has_exact = "dup_rank" in cat
        exact = st.checkbox("Keep one row per exact-duplicate group", key=_init(W + "dd_ex", dd["exact"]),
                            disabled=not has_exact and not dd["exact"],
                            help=None if has_exact else "needs the duplicate scores (run the scores stage)")
        has_sem = "semdedup_sim" in cat
        sem_on = st.checkbox("SemDeDup (near duplicates)", key=_init(W + "dd_sem", dd["semantic_eps"] is not None),
                             disabled=not has_sem and dd["semantic_eps"] is None,
                             help=None if has_sem else "needs the duplicate scores (run the scores stage)")
        eps = None
        if sem_on:
            eps = st.slider("eps (drop rows more similar than 1 − eps to a kept row)", 0.0, 0.5, step=0.005,
                            format="%.3f", help=f"starts at {DEFAULT_EPS}: near-identical texts only; larger eps "
                                                "removes paraphrases too (see Duplicates & outliers)",
                            key=_init(W + "dd_eps", float(dd["semantic_eps"] if dd["semantic_eps"] is not None
                                                          else DEFAULT_EPS)))
    sel = draft["selections"]
    with c3:
        st.markdown("**Saved selections**")
        names = list(dict.fromkeys([*ws.store.selection_names(), *sel["only"], *sel["except"]]))
        if not names:
            st.caption("No saved selections yet (lasso rows on the Map page to save one).")
        only = st.multiselect("Only rows in", names, key=_init(W + "only", sel["only"]), disabled=not names)
        except_ = st.multiselect("Except rows in", names, key=_init(W + "except", sel["except"]), disabled=not names)
        search = search_step_editor(draft.get("search") or [])
    return {"decisions": {"exclude": exclude, "relabel": relabel, "reviewed_pass_filters": reviewed},
            "dedup": {"exact": exact, "semantic_eps": eps}, "selections": {"only": only, "except": except_},
            "search": search}


def search_step_editor(steps: list[dict]) -> list[dict]:
    """One "only / except rows matching a search" step; the recipe stores the query, so it replays on new data.
    Further steps of a loaded recipe are kept as they are."""
    first = steps[0] if steps else {"query": "", "mode": "keyword", "match": "only"}
    st.markdown("**Rows matching a search**")
    q = st.text_input("Search the texts", key=_init(W + "srch_q", first["query"]),
                      placeholder="words (all of them, any case) or a regex",
                      help="stored in the recipe as a query, not as rows: a replay searches the data it runs on")
    a, b = st.columns(2)
    mode = a.selectbox("Match", ["keyword", "regex"], key=_init(W + "srch_mode", first["mode"]),
                       label_visibility="collapsed")
    match = b.selectbox("Keep", ["only", "except"], key=_init(W + "srch_match", first["match"]),
                        format_func={"only": "keep only these", "except": "drop these"}.get,
                        label_visibility="collapsed")
    own = [{"query": q, "mode": mode, "match": match}] if q.strip() else []
    return own + list(steps[1:])


# --------------------------------------------------------------------------------------- mixture
POOL = "(no groups: the whole pool)"


def mixture_editor(ws: Workspace, draft: dict) -> dict | None:
    m = draft["mixture"]
    on = st.toggle("Mix groups: balance, budget, caps, temperature, quality", key=_init(W + "mix_on", m is not None))
    if not on:
        return None
    m = m or S.parse_recipe({"mixture": {}}).to_json()["mixture"]
    cat = ws.store.catalog()
    kinds = S.filterable_columns(ws.store)
    opts = [c for c in ("label", "source", "cluster") if c in cat]
    opts += [c for c, k in kinds.items() if k in ("text", "bool") and c not in opts]
    if m["group_by"] is not None and m["group_by"] not in opts:
        opts.append(m["group_by"])
    opts.append(POOL)
    c1, c2, c3 = st.columns(3)
    group_by = c1.selectbox("Group by", opts, key=_init(W + "mix_by", m["group_by"] or POOL),
                            help=f"{POOL}: one group, e.g. to draw a budget by a quality column (DSIR resampling)")
    group_by = None if group_by == POOL else group_by
    kind = c2.radio("Budget", ["none", "rows", "tokens"], horizontal=True,
                    key=_init(W + "mix_bk", next(iter(m["budget"] or {"none": 0}))),
                    help="none: the largest mix that meets the shares without repeating rows")
    budget = None
    if kind != "none":
        start = (m["budget"] or {}).get(kind) or (1000 if kind == "rows" else 100_000)
        n = c2.number_input(f"Budget ({kind})", min_value=1, step=100 if kind == "rows" else 10_000,
                            key=_init(W + f"mix_b_{kind}", int(start)))
        budget = {kind: int(n)}
    c3.number_input("Seed", min_value=0, step=1, key=_init(W + "seed", int(draft["seed"])),
                           help="the random key of a row is md5(seed:id): same seed, same rows, on any machine")
    c1, c2, c3 = st.columns(3)
    cap = c1.number_input("Cap per group (0 = none)", min_value=0, step=100, key=_init(W + "mix_cap", int(m["cap"] or 0)),
                          help="in the budget's unit (rows, or tokens with a token budget)")
    reps = c2.number_input("Max repeats (epochs; 0 = no limit)", min_value=0, step=1,
                           key=_init(W + "mix_rep", int(m["max_repeats"] or 0)),
                           help="1 = never repeat a row; a small group can repeat up to this many times to fill its share")
    mode = c3.radio("Mode", ["sample", "reweight"], horizontal=True, key=_init(W + "mix_mode", m["mode"]),
                    help="sample: draw rows to meet the shares · reweight: keep every row, the weight column carries the mix")
    temps = sorted(set(TEMPERATURES) | {float(m["temperature"])})
    c1, c2, c3 = st.columns(3)
    custom = bool(st.session_state.get(W + f"mix_custom_{group_by}", m["weights"] is not None))
    temperature = c1.select_slider("Temperature over group sizes", temps, key=_init(W + "mix_t", float(m["temperature"])),
                                   disabled=custom,
                                   help="share ∝ size^(1/T): 1 = natural proportions, large = uniform over groups"
                                        + (" — not used while weights are set per group" if custom else ""))
    nums = [c for c, k in kinds.items() if k == "number"]
    q = m["quality"] or {}
    qopts = [NONE, *nums] + ([q["column"]] if q.get("column") and q["column"] not in nums else [])
    qcol = c2.selectbox("Quality column", qopts, key=_init(W + "mix_q", q.get("column") or NONE),
                        help="inside a group, rows with a higher value are drawn more often")
    strength = c3.slider("Quality strength", 0.0, 5.0, step=0.1, key=_init(W + "mix_qs", float(q.get("strength", 1.0))),
                         disabled=qcol == NONE, help="sampling weight ∝ quality^strength (0 = uniform)")
    redistribute = st.checkbox("A group that cannot fill its share leaves the rest to the others",
                               key=_init(W + "mix_rd", bool(m["redistribute"])))
    weights = None if group_by is None else _weights_editor(ws, group_by, m, temperature)
    # a search's record stays while its weights do: move a slider and the weights are the person's own
    origin = m.get("origin") if weights is not None and group_by == m["group_by"] and weights == m["weights"] else None
    if origin is not None:
        st.caption(f"These weights came from a mixture search ({origin.get('trials', '?')} trials of "
                   f"{origin.get('budget', '?'):,} rows, seed {origin.get('seed', 0)}); the recipe records it until "
                   "a slider moves." if isinstance(origin.get("budget"), int) else
                   "These weights came from elsewhere (the recipe's `mixture.origin` records where).")
    return {"group_by": group_by, "weights": weights, "budget": budget, "cap": int(cap) or None,
            "temperature": float(temperature), "max_repeats": int(reps) or None,
            "quality": None if qcol == NONE else {"column": qcol, "strength": float(strength)},
            "mode": mode, "redistribute": redistribute, **({"origin": origin} if origin is not None else {})}


def _weights_editor(ws: Workspace, group_by: str, m: dict, temperature: float) -> dict | None:
    try:
        sizes = groups(ws, group_by)
        names = list(sizes)
    except CurateError as e:
        state.show_error(e)
        return None
    if len(names) > S.MAX_GROUPS:
        st.warning(f"`{group_by}` has more than {S.MAX_GROUPS:,} distinct values: choose another column to group by.")
        return None
    old = m["weights"] if m["group_by"] == group_by and m["weights"] else None
    if old is not None and not set(old) <= set(names):
        gone = [g for g in old if g not in sizes]
        st.warning(f"The draft's weights name {len(gone)} group(s) that `{md(group_by)}` does not have: "
                   + ", ".join(f"`{md(g, 30)}`" for g in gone[:10]) + ". The sliders start from the temperature; "
                   "moving one replaces the draft's weights.", icon=":material/warning:")
        old = None
    given = old  # the draft's own weights: kept exactly while the sliders stay where they started
    if old is not None and (max(old.values()) > 100 or any(w != int(w) for w in old.values())):
        top = max(old.values()) or 1.0  # weights are relative: onto the sliders' 0–100 (1e308 broke the slider)
        old = {g: round(100 * (w / top)) for g, w in old.items()}
    custom = st.toggle("Set a weight per group", key=_init(W + f"mix_custom_{group_by}", old is not None),
                       help="off: the temperature sets the shares from the group sizes")
    if not custom:
        return None
    if old is None:  # start the sliders from the temperature's shares of all rows
        shares = S.group_shares({g: float(n) for g, n in sizes.items()}, temperature)
        top = max(shares.values()) or 1
        old = {g: round(100 * shares[g] / top) for g in names}
    if len(names) > MAX_SLIDERS:
        df = pd.DataFrame({"group": names, "weight": [float(old.get(g, 0)) for g in names]})
        edited = st.data_editor(df, key=W + f"mix_table_{group_by}", hide_index=True, width="stretch",
                                disabled=["group"], column_config={"weight": st.column_config.NumberColumn(min_value=0)})
        weights = dict(zip(edited["group"], edited["weight"].astype(float)))
    else:
        weights = {}
        cols = st.columns(3)
        for i, g in enumerate(names):
            weights[g] = float(cols[i % 3].slider(md(g, 40), 0, 100, step=1,
                                                  key=_init(_key("w", group_by, g), int(old.get(g, 0)))))
    if given is not None and weights == {g: float(old.get(g, 0)) for g in names}:
        weights = {g: float(given.get(g, 0.0)) for g in names}  # untouched: 0.3 / 0.7 stay, not 30 / 70 rounded
    tot = sum(weights.values())
    if tot <= 0:
        st.warning("All weights are 0: give at least one group a weight.")
        return {g: 0.0 for g in names}
    st.caption("Shares: " + " · ".join(f"{md(g, 30)} {w / tot:.1%}" for g, w in weights.items() if w > 0))
    return weights


# -------------------------------------------------------------------------------- mixture search
SEARCH = "mixsearch"  # the background job's name
HELD_OUT_CHOICE = "a held-out 20 % of the labelled rows"


def suggest_weights(ws: Workspace, recipe: dict) -> None:
    """"Suggest weights": a RegMix-style mixture search (curate_core.mixsearch) over the mixture's groups, in
    the background with progress; its trials as plots, and one button that puts the suggestion on the sliders."""
    m = recipe.get("mixture")
    if not m or m.get("group_by") is None:
        return
    group_by = m["group_by"]
    box = st.container(border=True)
    box.markdown(f"**Suggest weights** · let the data choose the shares of `{md(group_by, 40)}`")
    if "embed" not in cache.latest_runs(ws):
        box.caption("The search trains the outcome probe on the embeddings: run the embed stage first (Overview).")
        return
    job = runner.get_job(ws, SEARCH)
    if job is not None and job.running:
        with box:
            _search_progress(ws)
        return
    c = box.columns([1, 1, 2, 1])
    trials = c[0].number_input("Trials", min_value=6, max_value=500, step=6, key=_init(W + "ms_trials", 24),
                               help="mixtures drawn and trained on: natural, uniform and random ones (RegMix used "
                                    "hundreds; 24–48 fit a few groups)")
    if W + "ms_budget" not in st.session_state:  # start from the recipe's row budget, else half the pool
        rows = (m.get("budget") or {}).get("rows")
        if not rows:
            try:
                rows = max(1, S.live_counts(ws, recipe).rows_pool // 2)
            except CurateError:  # a recipe the counts refuse (they say why, above): no pool to halve
                rows = 1000
        st.session_state[W + "ms_budget"] = int(rows)
    budget = c[1].number_input("Rows per trial", min_value=1, step=100, key=W + "ms_budget",
                               help="each trial draws this many rows with the recipe's own sampler")
    names = [n for n in ws.store.selection_names() if not n.startswith("_")]
    held = c[2].selectbox("Scored on", [HELD_OUT_CHOICE, *names], key=_init(W + "ms_eval", HELD_OUT_CHOICE),
                          help="the rows each trial's probe is scored on, never trained on: a held-out share, or a "
                               "saved selection (e.g. a hand-checked set); an eval file: `mixture suggest --eval`")
    metric = c[3].radio("Metric", ["accuracy", "macro_f1"], key=_init(W + "ms_metric", "accuracy"))
    seed = int(recipe.get("seed") or 0)
    eval_selection = None if held == HELD_OUT_CHOICE else held
    # the base: the recipe's filters and sampler settings; its own weights and budget do not change the search
    base = {**recipe, "mixture": {**m, "weights": None, "budget": None, "origin": None}}
    if box.button("Suggest weights", key="sel_mix_suggest", icon=":material/auto_awesome:",
                  help=f"trains the outcome probe {int(trials)} + 1 times (seconds each); resumable"):
        from curate_core import mixsearch

        def work(executor: Any, progress: Any) -> Any:
            return mixsearch.suggest(ws.store, base, group_by, eval_selection=eval_selection, trials=int(trials),
                                     budget=int(budget), seed=seed, metric=metric, executor=executor,
                                     progress=progress)

        runner.start_job(ws, SEARCH, work)
        st.rerun()
    box.caption(f"From a terminal: `python -m curate_core mixture suggest --workspace {ws.path} --recipe R.json "
                f"--group-by {group_by} --trials {int(trials)} --budget {int(budget)}"
                + (f" --eval-selection {eval_selection}" if eval_selection else " --holdout 0.2") + "`")
    if job is None:
        return
    if job.error is not None:
        with box:
            state.show_error(job.error)
        return
    r = job.result
    if r.group_by != group_by:
        box.caption(f"The last search was over `{md(r.group_by, 40)}`; run one over `{md(group_by, 40)}`.")
        return
    with box:
        search_results(r)
        st.button("Apply the suggested weights to the sliders", key="sel_mix_apply", type="primary",
                  icon=":material/check:", on_click=_apply_suggestion, args=(ws, r),
                  help="the recipe records the search (its parameters and seed) while the weights stay as suggested")


@st.fragment(run_every=1.0)
def _search_progress(ws: Workspace) -> None:
    job = runner.get_job(ws, SEARCH)
    if job is not None and job.running:
        frac = job.done / job.total if job.total else 0.0
        st.progress(min(frac, 1.0), text=f"{job.message or 'starting'} · {job.done} of {job.total or '…'} trainings")
        st.caption(f"running on {job.engine} for {format_seconds(time.monotonic() - job.started)} "
                   "· the rest of the page waits for it; other pages do not")
        return
    st.rerun()  # the results are there: draw the whole page


def search_results(r: Any) -> None:
    """The suggestion next to natural and uniform, and the trials: predicted vs measured, metric by share."""
    c = st.columns(4)
    c[0].metric(f"Suggested: {r.metric}", f"{r.measured:.4f}", f"{r.measured - max(r.natural.metric, r.uniform.metric):+.4f}",
                help=f"measured on {r.eval}; the delta is against the better of natural and uniform")
    c[1].metric("Predicted", f"{r.predicted:.4f}", help=f"{r.model} fit, cross-validated R² {r.fit_r2:.3f}")
    c[2].metric("Natural shares", f"{r.natural.metric:.4f}")
    c[3].metric("Uniform shares", f"{r.uniform.metric:.4f}")
    left, right = st.columns(2)
    left.plotly_chart(trials_chart(r), key="sel_ms_fit")
    right.plotly_chart(shares_chart(r), key="sel_ms_shares")
    st.dataframe(pd.DataFrame({"group": list(r.weights), "suggested": [r.weights[g] for g in r.weights],
                               "natural": [r.natural.shares.get(g, 0.0) for g in r.weights]}),
                 hide_index=True, width="stretch",
                 column_config={k: st.column_config.ProgressColumn(k, min_value=0, max_value=1, format="percent")
                                for k in ("suggested", "natural")})
    st.caption(f"{len(r.trials)} trials of {r.budget:,} rows in {r.seconds:.0f} s; fit: {r.model} (cross-validated "
               f"R² " + ", ".join(f"{k} {v:.2f}" for k, v in r.models.items()) + ")")


KIND_COLOURS = {"natural": "#1f77b4", "uniform": "#ff7f0e", "random": "#9e9e9e"}


def trials_chart(r: Any) -> go.Figure:
    """Each trial's out-of-fold prediction against its measured metric (how far the fit can be trusted), and the
    suggestion's prediction against its measurement."""
    fig = go.Figure()
    for kind, colour in KIND_COLOURS.items():
        ts = [t for t in r.trials if t.kind == kind]
        fig.add_scatter(x=[t.predicted for t in ts], y=[t.metric for t in ts], mode="markers", name=kind,
                        marker=dict(color=colour, size=9 if kind != "random" else 6),
                        hovertemplate="predicted %{x:.4f}, measured %{y:.4f}<extra>" + kind + "</extra>")
    fig.add_scatter(x=[r.predicted], y=[r.measured], mode="markers", name="suggested",
                    marker=dict(color="#2ca02c", size=14, symbol="star"),
                    hovertemplate="predicted %{x:.4f}, measured %{y:.4f}<extra>suggested</extra>")
    vals = [t.metric for t in r.trials] + [t.predicted for t in r.trials] + [r.predicted, r.measured]
    lo, hi = min(vals), max(vals)
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#c7c7c7", dash="dot"), showlegend=False,
                    hoverinfo="skip")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=40), title=dict(text="Trials: predicted vs measured",
                      font=dict(size=13)), xaxis_title=f"predicted {r.metric} (out of fold)",
                      yaxis_title=f"measured {r.metric}", legend=dict(orientation="h", y=-0.25))
    return fig


def shares_chart(r: Any, top: int = 8) -> go.Figure:
    """The metric of every trial against the share each group had in it: a group whose points fall as its
    share grows is one the suggestion gives less."""
    fig = go.Figure()
    groups = sorted(r.weights, key=lambda g: -r.weights[g])[:top]
    for i, g in enumerate(groups):
        fig.add_scatter(x=[t.shares.get(g, 0.0) for t in r.trials], y=[t.metric for t in r.trials], mode="markers",
                        name=charts.plot_text(g, 30), marker=dict(color=charts.PALETTE[i % len(charts.PALETTE)], size=7),
                        hovertemplate=charts.plot_text(g, 60) + " %{x:.0%}: %{y:.4f}<extra></extra>")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=40), title=dict(
                      text="Metric by each group's share in a trial", font=dict(size=13)),
                      xaxis=dict(title="share of the trial's rows", tickformat=".0%"), yaxis_title=f"measured {r.metric}",
                      legend=dict(orientation="h", y=-0.25))
    return fig


def _apply_suggestion(ws: Workspace, r: Any) -> None:
    """Button callback (runs before the widgets are drawn): the suggested weights onto the sliders and into the
    draft, with the search's record as the mixture's origin."""
    top = max(r.weights.values()) or 1.0
    weights = {g: float(round(100 * w / top)) for g, w in r.weights.items()}
    draft = load_draft(ws)
    mix = {**(draft["mixture"] or {}), "group_by": r.group_by, "weights": weights, "origin": r.params}
    save_draft(ws, {**draft, "mixture": mix})
    st.session_state[W + f"mix_custom_{r.group_by}"] = True
    st.session_state.pop(W + f"mix_table_{r.group_by}", None)
    for g, w in weights.items():
        st.session_state[_key("w", r.group_by, g)] = int(w)


# ---------------------------------------------------------------------------------------- results
def counts(ws: Workspace, recipe: dict) -> S.Counts | None:
    return state.guarded(ws, S.live_counts, ws.store, recipe)


def fill_step_captions(c: S.Counts, slots: dict[int, Any]) -> None:
    for s in c.steps:
        if s.key.startswith("filters[") and int(s.key[8:-1]) in slots:
            slots[int(s.key[8:-1])].caption(f"removes **{s.removes_alone:,}** {'row' if s.removes_alone == 1 else 'rows'}"
                                            f" alone · **{s.removes_only:,}** only by this filter")


def estimate_marks(c: S.Counts) -> tuple[str, str]:
    """("≈ " or "", "≈ " or "") for the row and token totals: with a token budget the row count is the estimate,
    with a row budget the token count is."""
    est = c.tokens_estimated
    return ("≈ " if est and c.unit == "tokens" else "", "≈ " if est and c.unit == "rows" else "")


def warnings(c: S.Counts) -> None:
    for w in c.warnings:
        st.warning(md_message(w), icon=":material/warning:")


def group_expander(c: S.Counts) -> None:
    """Per-group counts before and after, folded away (Select and Export pages)."""
    if c.group_by:
        with st.expander(f"Per group ({c.group_by}): before → after", icon=":material/table:"):
            st.dataframe(group_table(c), hide_index=True, width="stretch", column_config=group_table_config())


def metrics(c: S.Counts) -> None:
    m = st.columns(4)
    rows_est, approx = estimate_marks(c)
    m[0].metric("Selected rows", f"{rows_est}{c.rows_selected:,}",
                help="rows in the selection (repeats counted)" + (
                    "; with a token budget the rows depend on which rows are drawn: estimated from each group's "
                    "mean length" if rows_est else ""),
                delta=f"{c.rows_selected - c.rows_total:,} vs all" if c.rows_selected != c.rows_total else None,
                delta_color="off")
    m[1].metric("Tokens", approx + charts.human(c.tokens_selected),
                help=f"{approx}{c.tokens_selected:,} of {c.tokens_total:,} whitespace tokens")
    m[2].metric("Pass the filters", f"{c.rows_pool:,}", help="rows left after decisions, filters, selections, dedup")
    m[3].metric("All rows", f"{c.rows_total:,}")


def dsir_fit(ws: Workspace, recipe: dict) -> None:
    """The DSIR target's KL reduction for this selection (when the dsir score has run), on request: it hashes
    the selection's texts, too slow for every slider move at scale."""
    from curate_core import dsir

    if not dsir.has_target(ws.store):
        return
    target = (ws.store.get_summary("score:dsir_log_weight") or {}).get("target", "the target")
    if not st.button("Measure fit to the DSIR target", key="sel_dsir_fit", icon=":material/target:",
                     help=f"KL(target ‖ random sample of the same size) − KL(target ‖ selection), in nats, over "
                          f"hashed word unigrams and bigrams; target: {target}"):
        return
    try:
        sel = S.select(ws, recipe)
        fit = dsir.kl_reduction(ws.store, sel.row_ids, sel.repeats, seed=int(recipe.get("seed") or 0))
    except CurateError as e:
        st.error(e.message)
        return
    c = st.columns(3)
    c[0].metric("KL reduction", f"{fit['kl_reduction']:+.3f} nats",
                help="positive: the selection is closer to the target than a random sample of its size")
    c[1].metric("KL to target: selection", f"{fit['kl_selected']:.3f}")
    c[2].metric("KL to target: random", f"{fit['kl_random']:.3f}", help=f"all rows: {fit['kl_all']:.3f}")


def composition_chart(c: S.Counts, top: int = 12) -> go.Figure:
    """Stacked 100 % bars: the share of each group among all rows, rows that pass, and the selection."""
    g = c.groups.sort_values("rows_before", ascending=False)
    head, rest = g.head(top), g.iloc[top:]
    series = list(zip(head["group"], head["rows_before"], head["rows_pool"], head["rows_selected"]))
    if len(rest):
        series.append((f"{len(rest):,} other groups", rest["rows_before"].sum(), rest["rows_pool"].sum(),
                       rest["rows_selected"].sum()))
    totals = [max(c.rows_total, 1), max(c.rows_pool, 1), max(c.rows_selected, 1)]
    bars = [f"all rows<br>{c.rows_total:,}", f"pass the filters<br>{c.rows_pool:,}",
            f"selected<br>{estimate_marks(c)[0]}{c.rows_selected:,}"]
    palette = charts.PALETTE
    traces = []
    for i, (name, *vals) in enumerate(series):
        other = len(rest) and i == len(series) - 1
        traces.append(go.Bar(
            y=bars, x=[100 * v / t for v, t in zip(vals, totals)], orientation="h", name=charts.plot_text(name, 30),
            customdata=[[int(v)] for v in vals], marker_color="#c7c7c7" if other else palette[i % len(palette)],
            hovertemplate=charts.plot_text(name, 60) + ": %{x:.1f}% (%{customdata[0]:,} rows)<extra></extra>"))
    # the legend sits right of the bars (one entry a line), never over the axis title
    # the top margin leaves the plot toolbar its own strip, above the legend
    return go.Figure(data=traces, layout=dict(
        barmode="stack", height=max(220, 22 * len(series) + 100), margin=dict(l=10, r=10, t=34, b=40),
        xaxis=dict(title={"text": f"share of rows (%), by {charts.plot_text(c.group_by or '', 40)}"}, range=[0, 100]),
        yaxis=dict(autorange="reversed"),
        legend=dict(orientation="v", x=1.02, y=1, yanchor="top", traceorder="normal",
                    title={"text": charts.plot_text(c.group_by or "", 30)})))


def group_table(c: S.Counts) -> pd.DataFrame:
    g = c.groups
    return pd.DataFrame({
        "group": g["group"], "rows (all)": g["rows_before"], "pass filters": g["rows_pool"],
        "target share": g["share_target"], "selected": g["rows_selected"],
        "× its rows": g["repeats"].round(2), "short by": g["shortfall"].round(0),
    })


def group_table_config() -> dict:
    """Column formats for :func:`group_table` (thousands separators, a percentage, plain repeats)."""
    n = lambda label, help=None: st.column_config.NumberColumn(label, format="localized", help=help)  # noqa: E731
    return {"rows (all)": n("rows (all)"), "pass filters": n("pass filters"), "selected": n("selected"),
            "target share": st.column_config.NumberColumn("target share", format="percent",
                                                          help="the group's share of the selection the mixture aims at"),
            "× its rows": st.column_config.NumberColumn("× its rows", format="%.2f",
                                                        help="selected rows / rows that pass the filters (above 1 = repeats)"),
            "short by": n("short by", "rows the group lacks to reach its target share")}


def steps_table(c: S.Counts, recipe: dict | None = None) -> pd.DataFrame:
    """One row per step; with a mixture, a last row: what it would remove from all rows on its own, and the rows
    of the pool it does not draw (they passed every other step, so only the mixture removes them)."""
    t = pd.DataFrame({"step": [s.name for s in c.steps], "removes alone": [s.removes_alone for s in c.steps],
                      "removes only it": [s.removes_only for s in c.steps]})
    alone = None if recipe is None else S.mixture_removes_alone(c, recipe)
    if alone is not None:
        m = recipe["mixture"]
        row = {"step": f"mixture by {m.get('group_by') or '(the whole pool)'}", "removes alone": alone,
               "removes only it": max(c.rows_pool - c.rows_unique, 0)}
        t = pd.concat([t, pd.DataFrame([row])], ignore_index=True)
    return t


def steps_table_config() -> dict:
    return {"removes alone": st.column_config.NumberColumn(
                "removes alone", format="localized", help="rows this step removes from all rows on its own"),
            "removes only it": st.column_config.NumberColumn(
                "removes only it", format="localized", help="rows no other step removes (what turning it off gives back)")}


# ----------------------------------------------------------------------------------- recipe tools
def recipe_tools(ws: Workspace, recipe: dict) -> None:
    saved = [n for n in ws.store.recipe_names() if n != S.DRAFT]
    t1, t2, t3 = st.tabs(["Save / load", "Diff", "JSON"])
    with t1:
        c1, c2 = st.columns(2)
        name = c1.text_input("Save the current recipe as", key="sel_t_name", placeholder="e.g. clean-v1")
        if c1.button("Save", key="sel_t_save", disabled=not name.strip()):
            try:
                ws.store.save_recipe(name.strip(), {**recipe, "name": name.strip()})
                st.success(f"Saved recipe “{md(name.strip())}”.")
            except CurateError as e:
                state.show_error(e)
        pick = c2.selectbox("Saved recipes", saved, index=None, key="sel_t_pick", placeholder="choose one …")
        if c2.button("Load into the editor", key="sel_t_load", disabled=pick is None):
            replace_draft(ws, ws.store.recipe(pick))
            st.rerun()
        st.download_button("Download recipe.json", json.dumps(recipe, indent=2), file_name="recipe.json",
                           mime="application/json", key="sel_t_dl")
    with t2:
        opts = ["(current draft)", *saved]
        c1, c2 = st.columns(2)
        a = c1.selectbox("Recipe A", opts, key="sel_t_da")
        b = c2.selectbox("Recipe B", opts, index=min(1, len(opts) - 1), key="sel_t_db")
        get = lambda n: recipe if n == opts[0] else ws.store.recipe(n)  # noqa: E731
        try:
            diff = S.recipe_diff(get(a), get(b))
        except CurateError as e:
            state.show_error(e)
            diff = []
        if not diff:
            st.caption("No differences.")
        else:
            st.dataframe(pd.DataFrame({"field": [d[0] for d in diff], "A": [_dump(d[1]) for d in diff],
                                       "B": [_dump(d[2]) for d in diff]}), hide_index=True, width="stretch")
    with t3:
        text = st.text_area("Recipe JSON (edit and apply)", json.dumps(recipe, indent=2), height=300, key="sel_t_json")
        if st.button("Apply", key="sel_t_apply"):
            try:
                doc = S.parse_recipe(text).to_json()
                S.check_recipe(ws.store, doc)
            except CurateError as e:
                state.show_error(e)
            else:
                replace_draft(ws, doc)
                st.session_state.pop("sel_t_json", None)
                st.rerun()
