"""Duplicates & outliers page pieces: cached reads, the four sections, their charts.

Each section draws itself and returns what the user chose; the page merges the choices into the recipe draft
(curate_core.dupview.save_draft). Counts come from columns already computed by the `scores` stage, so every
slider move is a filter over cached arrays, never a stage run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from curate_core import CurateError, Workspace
from curate_core import dupview as core
from curate_core.dedup import DEFAULT_EPS

from . import charts, state
from .text import md_message, plural, short

_TEXT = st.column_config.TextColumn("text", width="large", help="hover a cell to read all of it")
_ROW_CONFIG = {"text": _TEXT, "row_id": None,  # row_id is internal: the id column names the row
               "label_quality": st.column_config.NumberColumn("label quality", format="%.3f"),
               "outlier_score": st.column_config.NumberColumn("outlier score", format="%.3f"),
               "label_outlier_score": st.column_config.NumberColumn("label outlier score", format="%.3f"),
               "dup_rank": st.column_config.NumberColumn("rank", help="0 = the row kept; 1, 2 … = repeats")}


def _text_first(df: pd.DataFrame) -> pd.DataFrame:
    """Rows to read: the text first (it is what a person looks at), then label, scores and id."""
    return df[[c for c in ("text", "label") if c in df] + [c for c in df if c not in ("text", "label")]]


# ------------------------------------------------------------------------------------------- cached reads
# Everything below is keyed by the scores run (its run key): a new run changes every key. What a slider moves
# (eps, a threshold, a range) is part of the key of the few results that depend on it, so a rerun that changes
# one slider recomputes that slider's numbers only.
@st.cache_resource(show_spinner="Reading scores …", max_entries=16)
def _columns_shared(path: str, run_key: str, columns: tuple[str, ...]) -> pd.DataFrame:
    return core.load_columns(state.open_workspace(path).store, columns)


def _columns(path: str, run_key: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """row_id plus *columns* for every row: one shared read per scores run (no pickled copy per rerun: at 1M
    rows that copy cost more than the page), handed out as a shallow copy-on-write copy."""
    return _columns_shared(path, run_key, columns).copy(deep=False)


@st.cache_data(show_spinner=False, max_entries=16)
def _groups(path: str, run_key: str) -> pd.DataFrame:
    return core.dup_groups(state.open_workspace(path).store, limit=2000)


@st.cache_data(show_spinner=False, max_entries=16)
def _group_sizes(path: str, run_key: str) -> pd.DataFrame:
    return core.dup_group_sizes(state.open_workspace(path).store)


@st.cache_data(show_spinner=False, max_entries=16)
def _removed_curve(path: str, run_key: str) -> pd.DataFrame:
    """Rows removed at eps 0 … 0.3: the same for every slider position, so computed once per scores run."""
    sim = _columns(path, run_key, ("semdedup_sim",))["semdedup_sim"].to_numpy()
    return core.dedup.removed_curve(sim, [i / 200 for i in range(61)])


@st.cache_data(show_spinner=False, max_entries=64)
def _histogram(path: str, run_key: str, columns: tuple[str, ...], column: str, integer: bool = False) -> pd.DataFrame:
    """The bars of *column*'s histogram (the same for every slider position)."""
    return core.histogram(_columns(path, run_key, columns)[column].to_numpy(dtype=float, na_value=np.nan),
                          integer=integer)


@st.cache_data(show_spinner=False, max_entries=256)
def _outside(path: str, run_key: str, columns: tuple[str, ...], column: str, lo: float | None, hi: float | None,
             nulls: str) -> int:
    """Rows a range on *column* drops (core.outside), per range."""
    return core.outside(_columns(path, run_key, columns)[column].to_numpy(dtype=float, na_value=np.nan), lo, hi,
                        nulls)


@st.cache_data(show_spinner=False, max_entries=64)
def _semdedup_view(path: str, run_key: str, eps: float) -> dict:
    return core.semdedup_view(_columns(path, run_key, tuple(core.SEMDEDUP_COLUMNS)), eps)


@st.cache_data(show_spinner=False, max_entries=64)
def _semdedup_pairs(path: str, run_key: str, eps: float, closest: bool) -> pd.DataFrame:
    return core.semdedup_pairs(state.open_workspace(path).store, _columns(path, run_key, tuple(core.SEMDEDUP_COLUMNS)),
                               eps, limit=50, closest_first=closest)


@st.cache_data(show_spinner=False, max_entries=64)
def _top_rows(path: str, run_key: str, column: str, above: float, n: int) -> pd.DataFrame:
    return core.top_rows(state.open_workspace(path).store, _columns(path, run_key, (column,)), column, above=above,
                         n=n)


@st.cache_data(show_spinner=False, max_entries=64)
def _distinct(path: str, run_key: str, columns: tuple[str, ...], column: str) -> int:
    return int(_columns(path, run_key, columns)[column].nunique(dropna=True))


@st.cache_data(show_spinner=False, max_entries=16)
def _value_counts(path: str, run_key: str, columns: tuple[str, ...], column: str) -> pd.Series:
    return _columns(path, run_key, columns)[column].value_counts()


def columns(ws: Workspace, run_key: str, cols: list[str]) -> pd.DataFrame:
    return _columns(str(ws.path), run_key, tuple(cols))


@dataclass
class Choices:
    """What the page writes into the recipe draft (starts as the draft's current values)."""

    exact: bool = False
    eps: float | None = None
    filters: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_draft(cls, draft: dict | None) -> "Choices":
        d = (draft or {}).get("dedup") or {}
        return cls(bool(d.get("exact", False)), d.get("semantic_eps"), core.owned_filters(draft))

    def set_filter(self, column: str, f: dict | None) -> None:
        if f is None:
            self.filters.pop(column, None)
        else:
            self.filters[column] = f


def _unavailable(ws: Workspace, cols: list[str], what: str) -> bool:
    """Show why a section cannot be drawn (and which stage to run); True when it cannot."""
    try:
        core.require_columns(ws.store, cols, what)
    except CurateError as e:
        state.show_error(e)
        return True
    return False


# ------------------------------------------------------------------------------------------------ charts
def bars(hist: pd.DataFrame, x_title: str, lo: float | None = None, hi: float | None = None,
         line: float | None = None, line_name: str = "") -> go.Figure:
    """A histogram from pre-binned counts, with the kept range shaded and an optional marker line."""
    left, right = hist["left"].to_numpy(dtype=float), hist["right"].to_numpy(dtype=float)
    shapes, notes = [], []
    if lo is not None and hi is not None:
        shapes.append(charts.vrect(lo, hi, "green", 0.08))
    if line is not None:
        shape, note = charts.vline(line, color="firebrick", dash="dash", text=line_name)
        shapes.append(shape)
        notes.append(note)
    return go.Figure(data=[go.Bar(x=(left + right) / 2, y=hist["count"].to_numpy(), width=(right - left) * 0.95,
                                  customdata=np.column_stack([left, right]),
                                  hovertemplate="%{customdata[0]:.3g} – %{customdata[1]:.3g}: %{y:,} rows"
                                                "<extra></extra>")],
                     layout=dict(height=220, margin=dict(l=10, r=10, t=20, b=40), xaxis={"title": {"text": x_title}},
                                 yaxis={"title": {"text": "rows"}}, bargap=0.02, showlegend=False, shapes=shapes,
                                 annotations=notes))


def _kept_bars(cells: pd.DataFrame, top: int = 40) -> go.Figure:
    shown = cells.head(top)
    names = [f"cell {c} ({s:,} rows)" for c, s in zip(shown["cell"], shown["size"])][::-1]
    return go.Figure(data=[go.Bar(x=shown["kept_frac"].to_numpy()[::-1], y=names, orientation="h",
                                  customdata=shown[["kept", "size"]].to_numpy()[::-1],
                                  hovertemplate="%{y}: keeps %{customdata[0]:,} of %{customdata[1]:,} "
                                                "(%{x:.0%})<extra></extra>")],
                     layout=dict(height=max(240, 16 * len(shown) + 80), margin=dict(l=10, r=10, t=10, b=40),
                                 xaxis=dict(title={"text": "share of the cell kept"}, range=[0, 1], tickformat=".0%"),
                                 yaxis=dict(automargin=True)))


def _curve(curve: pd.DataFrame, eps: float) -> go.Figure:
    shape, _ = charts.vline(eps, color="firebrick", dash="dash")
    return go.Figure(data=[go.Scatter(x=curve["eps"].to_numpy(), y=curve["removed"].to_numpy(), mode="lines",
                                      hovertemplate="eps %{x:.3f}: %{y:,} rows removed<extra></extra>")],
                     layout=dict(height=220, margin=dict(l=10, r=10, t=20, b=40), xaxis={"title": {"text": "eps"}},
                                 yaxis={"title": {"text": "rows removed"}}, shapes=[shape]))


# ---------------------------------------------------------------------------------------------- sections
def exact_section(ws: Workspace, run_key: str, choices: Choices) -> None:
    cols = ["dup_rank", "dup_group", "dup_label_conflict"]
    if _unavailable(ws, cols, "Exact duplicates"):
        return
    summary = ws.store.get_summary("score:dup_rank") or {}
    counts = core.exact_counts(columns(ws, run_key, cols))
    groups = _groups(str(ws.path), run_key)
    repeats = counts["repeats"]
    c = st.columns(4)
    c[0].metric("Groups", f"{counts['groups']:,}")
    c[1].metric("Rows in groups", f"{counts['rows_in_groups']:,}")
    c[2].metric("Repeats (rank > 0)", f"{repeats:,}", help="rows that repeat an earlier kept row")
    c[3].metric("Groups with conflicting labels", f"{counts['conflict_groups']:,}")
    st.caption(f"Normalisation: {md_message(summary.get('why', ''))}. Change it with "
               "`--param 'scores.params={\"dup_rank\": {\"urls\": false}}'`.")
    choices.exact = st.toggle("Drop repeats in the recipe (keep rank 0 of each group)", value=choices.exact,
                              key="dup_exact", help=f"removes {repeats:,} rows")
    if groups.empty:
        st.info("No exact duplicates in this data.", icon=":material/check_circle:")
        return
    left, right = st.columns([2, 3])
    with left:
        sizes = _group_sizes(str(ws.path), run_key)
        fig = go.Figure(data=[go.Bar(x=[str(v) for v in sizes["size"]], y=sizes["groups"].to_numpy(),
                                     hovertemplate="size %{x}: %{y:,} groups<extra></extra>")],
                        layout=dict(height=260, margin=dict(l=10, r=10, t=20, b=40),
                                    xaxis={"title": {"text": "group size (rows)"}, "type": "category"},
                                    yaxis={"title": {"text": "groups"}}))
        st.plotly_chart(fig, key="dup_sizes")
    with right:
        # plain text in a selectbox (shown as typed): shortened, not HTML-escaped
        labels = {int(g): f"{'⚠ conflicting labels · ' if bad else ''}{size:,} rows · {short(text, 70)}"
                  for g, size, bad, text in zip(groups["dup_group"], groups["size"], groups["conflict"],
                                                groups["text"])}
        g = st.selectbox("Browse a group (label conflicts first, then the largest)", list(labels),
                         format_func=labels.get, key="dup_pick")
        extra = [c for c in ("label_quality",) if c not in core.missing_columns(ws.store, [c])]
        rows = core.dup_group_rows(ws.store, int(g), extra=extra)
        st.dataframe(_text_first(rows), hide_index=True, width="stretch", column_config=_ROW_CONFIG,
                     key="dup_rows")
        st.caption(f"Rank 0 is kept: {md_message(summary.get('keep_rule', 'first seen'))}.")


def semdedup_section(ws: Workspace, run_key: str, choices: Choices) -> None:
    if _unavailable(ws, list(core.SEMDEDUP_COLUMNS), "SemDeDup"):
        return
    default = choices.eps if choices.eps is not None else DEFAULT_EPS
    eps = st.slider("eps: remove a row when its cosine similarity to an earlier row of its cell is above 1 − eps",
                    min_value=0.0, max_value=0.3, value=float(min(max(default, 0.0), 0.3)), step=0.005,
                    format="%.3f", key="dup_eps",
                    help=f"starts at {DEFAULT_EPS} (cosine > {1 - DEFAULT_EPS:.2f}: near-identical texts). The "
                         "paper's web-scale eps of 0.05 and up also removes paraphrases (on BANKING77 pairs at "
                         "cosine 0.92–0.95 are rewordings of one intent), which on a labelled set is training "
                         "signal, not waste: raise it on purpose, reading the pairs below.")
    view = _semdedup_view(str(ws.path), run_key, float(eps))
    c = st.columns(3)
    c[0].metric("Rows removed", f"{view['removed']:,}", help=f"semdedup_sim > {1 - eps:.3f}")
    c[1].metric("Share removed", f"{view['share']:.1%}")
    c[2].metric("k-means cells", f"{len(view['cells']):,}",
                help="SemDeDup compares each row only with the rows of its own k-means cell (⌈√N⌉ cells, big ones "
                     "split again): its own partition of the embeddings, not the Map's clusters")
    use = st.toggle("Drop near-duplicates at this eps in the recipe", value=choices.eps is not None,
                    key="dup_use_eps")
    choices.eps = float(eps) if use else None
    left, right = st.columns(2)
    with left:
        st.markdown("**Rows removed as eps grows**")
        st.plotly_chart(_curve(_removed_curve(str(ws.path), run_key), eps), key="dup_curve")
    with right:
        cells = view["cells"]
        hit = cells[cells["removed"] > 0]
        st.markdown(f"**Share kept per k-means cell** ({len(hit):,} of {plural(len(cells), 'cell')} "
                    f"{'loses' if len(hit) == 1 else 'lose'} rows"
                    + ("; the 40 that lose the most shown)" if len(hit) > 40 else ")"))
        if hit.empty:
            st.caption("No cell loses a row at this eps.")
        else:
            st.plotly_chart(_kept_bars(hit), key="dup_kept")
    st.markdown("**Pairs at this eps** (removed row next to the earlier row it duplicates)")
    closest = st.radio("Order", ["closest to the threshold first", "most similar first"], horizontal=True,
                       key="dup_pair_order", label_visibility="collapsed") == "closest to the threshold first"
    pairs = _semdedup_pairs(str(ws.path), run_key, float(eps), closest)
    if pairs.empty:
        st.caption("No pairs at this eps.")
    else:
        st.dataframe(pairs, hide_index=True, width="stretch", key="dup_pairs", column_config={
            "similarity": st.column_config.NumberColumn("cosine", format="%.4f"),
            "removed_text": st.column_config.TextColumn("removed row", width="large"),
            "removed_label": st.column_config.TextColumn("label (removed)"),
            "kept_text": st.column_config.TextColumn("kept (earlier) row", width="large"),
            "kept_label": st.column_config.TextColumn("label (kept)")})


def outlier_section(ws: Workspace, run_key: str, choices: Choices) -> None:
    if _unavailable(ws, ["outlier_score"], "Outliers"):
        return
    path, cols = str(ws.path), ("outlier_score",)
    v = _columns(path, run_key, cols)["outlier_score"]
    summary = ws.store.get_summary("score:outlier_score") or {}
    tukey = summary.get("cutoff")
    hi = float(v.max()) if v.notna().any() else 1.0
    current = choices.filters.get("outlier_score")
    start = float(current["value"]) if current else float(tukey if tukey is not None else hi)
    t = st.slider("Keep rows whose outlier score is at most", min_value=0.0, max_value=round(hi + 0.0005, 3),
                  value=min(max(start, 0.0), round(hi + 0.0005, 3)), step=0.001, format="%.3f", key="dup_outlier")
    new = {"column": "outlier_score", "op": "<=", "value": t}
    n_out = _outside(path, run_key, cols, "outlier_score", None, t, core.kept_nulls(current, new))
    c = st.columns(3)
    c[0].metric("Rows above the threshold", f"{n_out:,}")
    c[1].metric("Tukey cutoff (Q3 + 1.5·IQR)", f"{tukey:.3f}" if tukey is not None else "–")
    c[2].metric("Flagged by the cutoff", f"{summary.get('flagged', 0):,}")
    use = st.toggle("Drop rows above the threshold in the recipe", value=current is not None, key="dup_use_outlier")
    choices.set_filter("outlier_score", new if use else None)
    st.plotly_chart(bars(_histogram(path, run_key, cols, "outlier_score"),
                         "outlier score (mean cosine distance to 10 nearest rows)", line=t, line_name="threshold"),
                    key="dup_outlier_hist")
    top = _top_rows(path, run_key, "outlier_score", t, 20)
    if not top.empty:
        st.markdown("**Most isolated rows above the threshold**")
        st.dataframe(_text_first(top), hide_index=True, width="stretch", column_config=_ROW_CONFIG,
                     key="dup_outlier_rows")
    if not core.missing_columns(ws.store, ["label_outlier_score"]):
        with st.expander("Rows far from the other rows of their own label (`label_outlier_score`)",
                         icon=":material/call_split:"):
            st.dataframe(_text_first(_top_rows(path, run_key, "label_outlier_score", -1.0, 30)),
                         hide_index=True, width="stretch", column_config=_ROW_CONFIG, key="dup_label_outliers")
            st.caption("Odd members of their class, or mislabelled ones: compare with the Label issues page.")


def heuristics_section(ws: Workspace, run_key: str, choices: Choices) -> None:
    missing = set(core.missing_columns(ws.store, [h.column for h in core.HEURISTICS] + ["lang"]))
    hs = [h for h in core.HEURISTICS if h.column not in missing]
    if not hs:
        _unavailable(ws, [h.column for h in core.HEURISTICS], "Text quality")
        return
    cols = tuple([h.column for h in hs] + ([] if "lang" in missing else ["lang"]))
    frame = _columns(str(ws.path), run_key, cols)
    st.caption("Move a range to keep only the rows inside it; the count of rows outside updates live. "
               "A range that spans all the data adds no filter.")
    constant = [h for h in hs if _distinct(str(ws.path), run_key, cols, h.column) <= 1]
    varying = [h for h in hs if h not in constant]
    for i in range(0, len(varying), 2):
        for col, h in zip(st.columns(2), varying[i: i + 2]):
            with col:
                _range_filter(frame[h.column], h, choices, (str(ws.path), run_key, cols))
    for h in constant:
        choices.set_filter(h.column, None)
    if constant:
        st.caption("Nothing to filter (every row has the same value): "
                   + ", ".join(f"`{h.column}` = {frame[h.column].iloc[0]:g}" for h in constant))
    if "lang" in frame:
        _lang_filter(frame["lang"], choices, _value_counts(str(ws.path), run_key, cols, "lang"))


def _range_filter(values: pd.Series, h: core.Heuristic, choices: Choices,
                  cached: tuple[str, str, tuple[str, ...]]) -> None:
    """A range slider on one text statistic; *cached* = (path, run key, columns) of the frame *values* is from."""
    lo, hi = float(values.min()), float(values.max())
    if h.integer:
        lo, hi, step, fmt = int(lo), int(hi), 1, "%d"
    else:  # whole hundredths around the data, so the full span is exactly the slider's ends
        lo, hi = math.floor(lo * 100) / 100, math.ceil(hi * 100) / 100
        hi = max(hi, lo + 0.01)
        step, fmt = 0.01, "%.2f"
    current = choices.filters.get(h.column)
    start = (lo, hi)
    if current:
        if current["op"] == "between":  # an open end (None, as the Select page writes it) is the data's end
            a0, b0 = current["value"]
            start = (lo if a0 is None else a0, hi if b0 is None else b0)
        elif current["op"] == ">=":
            start = (current["value"], hi)
        elif current["op"] == "<=":
            start = (lo, current["value"])
    cast = int if h.integer else float
    start = (cast(min(max(start[0], lo), hi)), cast(min(max(start[1], lo), hi)))
    a, b = st.slider(h.title, min_value=cast(lo), max_value=cast(hi), value=start, step=step, format=fmt,
                     key=f"dup_range_{h.column}")
    f = core.range_filter(h.column, a, b, lo, hi)
    choices.set_filter(h.column, f)
    n_out = _outside(*cached, h.column, a, b, core.kept_nulls(current, f)) if f else 0
    st.plotly_chart(bars(_histogram(*cached, h.column, h.integer), h.column, a, b), key=f"dup_hist_{h.column}")
    st.caption(f"`{h.column}`: **{n_out:,}** {'row' if n_out == 1 else 'rows'} outside the range")


def _lang_filter(values: pd.Series, choices: Choices, counts: pd.Series) -> None:
    """The language filter; *counts* = ``values.value_counts()`` (cached)."""
    langs = counts.index.tolist()
    current = choices.filters.get("lang")
    start = [x for x in (current["value"] if current and current["op"] == "in" else []) if x in langs]
    chosen = st.multiselect("Keep only these languages (langid; empty = keep every language)", langs,
                            default=start, key="dup_langs", format_func=lambda x: f"{x} ({counts[x]:,})")
    keep_all = not chosen or set(chosen) == set(langs)
    choices.set_filter("lang", None if keep_all else {"column": "lang", "op": "in", "value": sorted(chosen)})
    n_out = 0 if keep_all else int((~values.isin(chosen)).sum())
    st.caption(f"`lang`: **{n_out:,}** {'row' if n_out == 1 else 'rows'} in other languages"
               + ("" if keep_all else " — short texts are often misdetected; check `lang_score` too"))
    st.plotly_chart(charts.count_bars(counts.to_dict(), "language", "rows", top=12), key="dup_lang_bars")


def draft_footer(ws: Workspace, choices: Choices) -> None:
    """Save the choices into the recipe draft (only when they changed) and show this page's part of it."""
    filters = [choices.filters[c] for c in sorted(choices.filters)]
    d = core.RecipeDraft(ws.store)
    had_draft = d.saved is not None
    changed = core.save_draft(ws.store, choices.exact, choices.eps, filters, draft=d)
    draft = d.doc
    with st.expander("Recipe draft (what this page adds)", expanded=False, icon=":material/receipt_long:"):
        st.json({"dedup": draft.get("dedup"), "filters": list(core.owned_filters(draft).values())})
        st.caption("The Select page applies the draft; other entries in it are left as they are.")
    if changed and had_draft:  # (the first visit only writes an empty draft: nothing to tell)
        st.toast("Recipe draft updated", icon=":material/save:")
