"""Label issues page pieces: cached score loads, the AUM histogram with its cutoff slider, the data map with
lasso, the consensus panel, and the suspects table with its actions. The maths lives in
curate_core.labelissues; this module only draws."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from curate_core import CurateError, Workspace
from curate_core import labelissues as li

from . import cache, charts, layout, runner, state
from .text import md, md_message, plural

TABLE_ROWS = 500  # rows the suspects table shows (filters narrow the rest)
MAP_POINTS = 20_000  # points drawn on the data map (flagged rows always included)
NONE = "(none)"
FLASH = "_li_flash"


def _data_key(ws: Workspace) -> str:
    runs = cache.latest_runs(ws)
    parts = [f"{s}:{runs[s]['run_key']}:{runs[s]['finished']}" for s in ("scores", "cluster") if s in runs]
    return "|".join(parts)


@st.cache_resource(show_spinner="Loading the label scores …", max_entries=4)
def _load(path: str, key: str) -> li.LabelData:
    return li.load(state.open_workspace(path).store)


def require_data(ws: Workspace, what: str, needs: str) -> li.LabelData:
    """The label scores for a page about them, or the page stops saying what is missing: the scores stage
    (with its run button) or usable labels. *what* names the page ("Label issues"), *needs* starts the
    sentence about labels ("Label issues need")."""
    if not layout.stage_gate(ws, ["scores"], what):
        st.stop()
    data = load(ws)
    if data.missing:
        st.info(f"{data.missing} {needs} a label column with at least two classes of two or more rows each.",
                icon=":material/info:")
        st.stop()
    return data


def load(ws: Workspace) -> li.LabelData:
    """The label scores of the open workspace (cached per workspace and scores run).

    Cached as a resource, not copied per rerun (a pickled copy of every labelled row's scores cost more than the
    page at 1M rows); what is handed out is a copy — the frame a shallow copy-on-write one — so changing it never
    changes the cached one."""
    data = _load(str(ws.path), _data_key(ws))
    return dataclasses.replace(data, frame=data.frame.copy(deep=False), summaries=copy.deepcopy(data.summaries),
                               classes=list(data.classes))


def flash() -> None:
    msg = st.session_state.pop(FLASH, None)
    if msg:
        st.success(md_message(msg), icon=":material/check_circle:")


def _gen() -> int:
    """Generation of the table widget: bumped after an action so the old row selection is dropped."""
    return int(st.session_state.get("_li_gen", 0))


def _done(msg: str) -> None:
    st.session_state[FLASH] = msg
    st.session_state["_li_gen"] = _gen() + 1
    st.rerun()


# ------------------------------------------------------------------------------------------ header
def metrics(data: li.LabelData, decisions: pd.DataFrame) -> None:
    df = data.frame
    counts = li.decision_counts(decisions)
    c = st.columns(6)
    c[0].metric("Labelled rows", f"{len(df):,}")
    c[1].metric("Confident learning", f"{int(df['is_label_issue'].sum()):,}",
                help=data.summaries.get("label_quality", {}).get("why"))
    if "aum_flag" in df:
        c[2].metric("AUM flags", f"{int(df['aum_flag'].sum()):,}", help=data.summaries.get("aum", {}).get("why"))
    c[3].metric(f"≥ 2 {_units(data)} flag", f"{int((df['consensus'] >= 2).sum()):,}",
                help=md_message(data.summaries.get("consensus", {}).get("why") or "") or None)
    c[4].metric("Excluded · relabelled", f"{counts['excluded']:,} · {counts['relabelled']:,}",
                help="decisions in force (all rows of the workspace)")
    c[5].metric("Reviewed (keep)", f"{counts['kept']:,}")
    probe = data.summaries.get("probe", {})
    cfg = probe.get("config", {})
    st.caption(f"Probabilities: {probe.get('probs', '?')}; training dynamics: {probe.get('dynamics', '?')}; "
               f"probe: {cfg.get('model', '?')}, {probe.get('epochs', '?')} epochs on {probe.get('labelled', 0):,} "
               "labelled rows. Unlabelled rows are not scored. " + md_message(li.features_note(probe)))
    if note := li.set_aside_note(probe):
        st.info(md_message(note), icon=":material/info:")
    for w in li.flag_warnings(data.summaries):
        st.warning(md_message(w), icon=":material/warning:")


# --------------------------------------------------------------------------------------------- AUM
def aum_panel(ws: Workspace, data: li.LabelData) -> float | None:
    """Histogram of AUM with the threshold-sample cutoff and a slider to move it; returns the slider's cutoff."""
    st.subheader("Area under the margin")
    s = data.summaries.get("aum")
    if not s or "aum" not in data.frame:
        st.info("No AUM: the probe has no training dynamics.")
        return None
    aum = data.frame["aum"].to_numpy(float)
    thr = data.threshold_aum
    stored = float(s["cutoff"])
    finite = np.concatenate([aum[np.isfinite(aum)], thr, [stored]])
    lo, hi = float(np.floor(finite.min())), float(np.ceil(finite.max()))
    step = max(0.001, round((hi - lo) / 400, 3))
    cutoff = st.slider("AUM cutoff (rows below it are suspects)", lo, hi, value=float(np.clip(stored, lo, hi)),
                       step=step, key="li_aum_cutoff", format="%.3f",
                       help="Starts at the stored cutoff: the 99th percentile of the threshold samples' AUM.")
    stats = li.aum_cutoff_stats(aum, thr, cutoff)
    if abs(cutoff - stored) < step / 2:
        st.caption(f"{stats['below']:,} of {stats['rows']:,} rows below the cutoff {cutoff:.3f} are flagged. "
                   f"Why this cutoff: {md_message(s['why'])}.")
    else:
        pct = ("" if stats["percentile"] is None
               else f", {stats['percentile']:.1f} % of the threshold samples are below it too")
        st.caption(f"{stats['below']:,} of {stats['rows']:,} rows below {cutoff:.3f}{pct}. The stored cutoff "
                   f"{stored:.3f} flags {plural(int(s['flagged']), 'row')}.")
    x, counts = li.histogram(aum, lo, hi)
    traces = [go.Bar(x=x, y=counts, name="labelled rows", marker_color="#4C78A8", opacity=0.75,
                     hovertemplate="AUM %{x:.2f}: %{y:,} rows<extra></extra>")]
    if thr.size:
        tx, tc = li.histogram(thr, lo, hi)
        traces.append(go.Bar(x=tx, y=tc, name="threshold samples", marker_color="#F58518", yaxis="y2", opacity=0.75,
                             hovertemplate="AUM %{x:.2f}: %{y:,} threshold samples<extra></extra>"))
    # each line's label on its outer side, so two close lines never write over each other; one label when equal
    same = abs(cutoff - stored) <= 1e-9
    slider_left = cutoff < stored
    lines = [charts.vline(stored, color="gray", dash="dot", text="" if same else "stored cutoff",
                          position="top right" if slider_left else "top left", font_color="gray"),
             charts.vline(cutoff, color="#E45756", text="cutoff (stored)" if same else "slider",
                          position="top left" if slider_left else "top right", font_color="#E45756")]
    fig = go.Figure(data=traces, layout=dict(
        barmode="overlay", height=340, margin=dict(l=10, r=10, t=50, b=40), xaxis={"title": {"text": "AUM"}},
        yaxis={"title": {"text": "rows"}}, bargap=0, legend=dict(orientation="h", x=0, y=1.06, yanchor="bottom"),
        yaxis2=dict(title={"text": "threshold samples"}, overlaying="y", side="right", showgrid=False,
                    tickmode="auto", rangemode="tozero"),
        shapes=[shape for shape, _ in lines], annotations=[note for _, note in lines]))
    st.plotly_chart(fig, key="li_aum_hist")
    c1, c2 = st.columns(2)
    busy = (r := runner.get_run(ws)) is not None and r.running
    params = dict(cache.stage_params(ws, "scores").get("params") or {})
    manual = params.get("aum", {}).get("cutoff") is not None
    if c1.button("Apply this cutoff", width="stretch", disabled=busy or abs(cutoff - stored) < step / 2, key="li_aum_apply",
                 help="reruns the scores stage with this cutoff: aum_flag and the consensus follow"):
        params["aum"] = {**params.get("aum", {}), "cutoff": float(cutoff)}
        runner.start_run(ws, ["scores"], params={"scores": {"params": params}})
        st.rerun()
    if manual and c1.button("Back to the automatic cutoff", width="stretch", disabled=busy, key="li_aum_reset",
                            help="the 99th percentile of the threshold samples' AUM"):
        params["aum"] = {k: v for k, v in params["aum"].items() if k != "cutoff"}
        runner.start_run(ws, ["scores"], params={"scores": {"params": params}})
        st.rerun()
    if c2.button("Add to recipe: drop flagged", key="li_aum_draft", width="stretch",
                 help="adds the filter aum_flag is false to the recipe draft the Select page opens"):
        li.draft_filter(ws.store, "aum_flag", "is", False)
        _done("Added `aum_flag is false` to the recipe draft (open it on the Select page).")
    return cutoff


# ------------------------------------------------------------------------------------------ data map
def datamap_panel(ws: Workspace, data: li.LabelData) -> np.ndarray | None:
    """Variability × confidence coloured by correctness; a lasso (or a saved selection) narrows the table."""
    st.subheader("Data map")
    df = data.frame
    if "confidence" not in df:
        st.info("No data map: the probe has no training dynamics.")
        return None
    dm = _datamap(str(ws.path), _data_key(ws))
    fig = go.Figure(data=[go.Scattergl(
        x=dm["x"], y=dm["y"], mode="markers", customdata=dm["row_id"], text=dm["hover"],
        marker=dict(size=5, color=dm["color"], colorscale="Viridis", cmin=0, cmax=1, opacity=0.7,
                    colorbar=dict(title={"text": "correctness"})),
        hovertemplate="%{text}<br>variability %{x:.3f}, confidence %{y:.3f}<extra></extra>")],
        layout=dict(height=360, margin=dict(l=10, r=10, t=10, b=40),
                    xaxis={"title": {"text": "variability (std over epochs)"}},
                    yaxis={"title": {"text": "confidence (mean p of given label)"}}, dragmode="lasso"))
    event = st.plotly_chart(fig, key="li_map", on_select="rerun", selection_mode=("lasso", "box"))
    shown = len(dm["row_id"])
    note = "" if shown == len(df) else f" Showing {shown:,} of {len(df):,} rows (every flagged row)."
    st.caption("Top: easy to learn; right: ambiguous; bottom left: hard to learn — often mislabelled." + note)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    lasso = None
    if points:
        idx = [p.get("point_index", p.get("point_number")) for p in points]
        lasso = dm["row_id"][np.asarray([i for i in idx if i is not None], dtype=int)]
    saved = ws.selections()
    c1, c2 = st.columns([2, 1])
    if lasso is not None and lasso.size:
        name = c1.text_input("Save the lassoed rows as a selection", value="label-issues-lasso", key="li_sel_name")
        if c2.button(f"Save {lasso.size:,} rows", key="li_sel_save"):
            try:
                n = ws.save_selection(name, lasso)
            except CurateError as e:
                state.show_error(e)
            else:
                _done(f"Saved selection “{name.strip()}” with {plural(n, 'row')} (usable on the Map and Select "
                      "pages).")
        return lasso
    options = [NONE, *saved]
    # the option labels stay the names alone: a label with a count would reset the choice when the count changes
    pick = c1.selectbox("Or narrow the table to a saved selection (e.g. a lasso on the Map page)", options,
                        key="li_sel_use", help="saved selections: lasso or box on the Map page or on this data map")
    if pick != NONE:
        c1.caption(f"“{md(pick)}”: {plural(saved.get(pick, 0), 'row')}")
        return ws.selection(pick)
    return None


@st.cache_resource(show_spinner=False, max_entries=4)
def _datamap(path: str, key: str) -> dict[str, np.ndarray]:
    """The data map's points (every flagged row, the rest sampled up to MAP_POINTS) as arrays, with their
    escaped hover texts: the same for every rerun of one scores run, so built once (read-only: shared)."""
    df = _load(path, key).frame
    shown = li.sample_for_plot(df, MAP_POINTS, keep=df["consensus"].to_numpy() > 0)
    hover = [f"{charts.plot_text(i, 40)}<br>given: {charts.plot_text(a, 40)}<br>suggested: {charts.plot_text(b, 40)}"
             for i, a, b in zip(shown["id"].to_numpy(dtype=object), shown["label"].to_numpy(dtype=object),
                                shown["suggested_label"].to_numpy(dtype=object))]
    out = {"x": shown["variability"].to_numpy(dtype=np.float32, na_value=np.nan),
           "y": shown["confidence"].to_numpy(dtype=np.float32, na_value=np.nan),
           "color": shown["correctness"].to_numpy(dtype=np.float32, na_value=np.nan),
           "row_id": shown["row_id"].to_numpy(dtype=np.int64), "hover": np.array(hover, dtype=object)}
    for a in out.values():
        a.flags.writeable = False
    return out


# ----------------------------------------------------------------------------------------- consensus
def _units(data: li.LabelData) -> str:
    """What the consensus counts: "methods" (default) or "families" (``scores.consensus.count``)."""
    return "families" if data.summaries.get("consensus", {}).get("count") == "families" else "methods"


def _votes(data: li.LabelData) -> int:
    """How many votes the consensus has (its largest value), at least 1."""
    return max(len(data.summaries.get("consensus", {}).get("distribution", {})) - 1, 1)


def consensus_panel(ws: Workspace, data: li.LabelData) -> None:
    s = data.summaries.get("consensus")
    if not s:
        return
    st.subheader("Consensus of the methods")
    fams = s.get("families") or {}
    if s.get("count") == "families" and fams:
        st.caption("The consensus counts each *family* of evidence once: " + md(" · ".join(
            f if m == [f] else f"{f} ({', '.join(m)})" for f, m in fams.items()))
            + ". AUM and data maps read the same probe runs, so they err together and are one vote.")
    elif s.get("methods"):
        st.caption(f"The consensus counts {plural(len(s['methods']), 'method')}, one vote each: "
                   + md(" · ".join(s["methods"].values())) + ". AUM and data maps read the same probe runs, so "
                   "they often agree (the matrix shows how often); on seeded flips their agreement is mostly right "
                   "where confident learning misses. One vote per family of evidence instead: "
                   "`--param 'scores.params={\"consensus\": {\"count\": \"families\"}}'` (see the README).")
    if s.get("warning"):
        st.caption(":material/warning: " + md_message(s["warning"]))
    ov = li.overlap_frame(data)
    dist = s.get("distribution", {})
    silent = [n for n in ov.columns if n not in set((s.get("methods") or {}).values())]
    if silent:
        st.caption(f"{md(', '.join(silent))}: in the matrix for comparison, not counted by the consensus "
                   "(`\"include\": [...]` in its parameters adds a method).")
    c1, c2 = st.columns(2)
    with c1:
        fig = go.Figure(data=[go.Heatmap(z=ov.to_numpy(), x=list(ov.columns), y=list(ov.index), colorscale="Blues",
                                         text=ov.to_numpy(), texttemplate="%{text:,}", showscale=False,
                                         hovertemplate="%{y} ∩ %{x}: %{z:,} rows<extra></extra>")],
                        layout=dict(height=280, margin=dict(l=10, r=10, t=30, b=10),
                                    title={"text": "rows flagged by both (diagonal: by each)"},
                                    yaxis={"autorange": "reversed"}))
        st.plotly_chart(fig, key="li_overlap")
    with c2:
        ks = sorted(dist, key=int)
        unit = _units(data)
        fig = go.Figure(data=[go.Bar(x=[f"{k} of {len(ks) - 1}" for k in ks], y=[dist[k] for k in ks],
                                     marker_color="#54A24B", text=[f"{dist[k]:,}" for k in ks], textposition="outside",
                                     cliponaxis=False, hovertemplate=f"%{{x}} {unit}: %{{y:,}} rows<extra></extra>")],
                        layout=dict(height=280, margin=dict(l=10, r=10, t=30, b=40),
                                    title={"text": f"rows by number of {unit} flagging"},
                                    xaxis={"title": {"text": f"{unit} flagging the row"}},
                                    yaxis={"title": {"text": "rows"}}))
        st.plotly_chart(fig, key="li_consensus")
    # its own k, next to its button: 2 by default, as clean.json (one method alone is often a hard example)
    n, units = _votes(data), _units(data)
    unit = {"families": "family", "methods": "method"}[units]
    a, b = st.columns([1, 3], vertical_alignment="bottom")
    k = int(a.number_input("Drop rows flagged by ≥", 1, n, value=min(2, n), step=1, key="li_cons_k",
                           help=f"of the {plural(n, unit, units)}; 2 is what assets/recipes/clean.json uses"))
    if b.button(f"Add to recipe: drop rows flagged by ≥ {plural(k, unit, units)}", key="li_cons_draft",
                help="adds the filter consensus < k to the recipe draft the Select page opens"):
        li.draft_filter(ws.store, "consensus", "<", k)
        _done(f"Added `consensus < {k}` to the recipe draft (open it on the Select page).")


# ------------------------------------------------------------------------------------------ suspects
def suspects_panel(ws: Workspace, data: li.LabelData, decisions: pd.DataFrame, cutoff: float | None,
                   selection: np.ndarray | None) -> None:
    st.subheader("Suspects")
    n_methods = _votes(data)
    c = st.columns([2, 2, 1.3, 1.5, 1.2])
    labels = c[0].multiselect("Given label", data.classes, key="li_labels", placeholder="all labels")
    clusters: list[int] = []
    if data.has_clusters:
        sizes = data.frame["cluster"].value_counts()
        opts = sorted(int(k) for k in sizes.index if pd.notna(k))
        clusters = c[1].multiselect("Cluster", opts, key="li_clusters", placeholder="all clusters",
                                    format_func=lambda k: f"{'noise' if k == -1 else k} ({int(sizes.get(k, 0)):,})")
    else:
        c[1].caption("Cluster filter: run the `cluster` stage (Map page) to filter by cluster.")
    k = c[2].number_input(f"{_units(data).capitalize()} flagging ≥", 0, n_methods, value=1, step=1,
                          key="li_min_consensus", help="the consensus; 0 shows every labelled row")
    rank_by = c[3].selectbox("Rank by", list(li.RANKINGS), key="li_rank",
                             format_func=lambda r: li.RANKINGS[r][0])
    hide = c[4].checkbox("Hide decided", key="li_hide", help="hide rows with a decision in force")
    use_aum = cutoff is not None and st.checkbox("Also rows below the AUM slider's cutoff", key="li_use_aum",
                                                 value=False)
    query = st.text_input("Narrow by a search of the texts", key="li_query", placeholder="words (all of them, "
                          "any case); start with re: for a regular expression, e.g. re:^how (do|can) i")
    if query.strip():
        from curate_core.search import search

        mode, q = ("regex", query.strip()[3:]) if query.strip().startswith("re:") else ("keyword", query)
        found = state.guarded(ws, search, ws.store, q, mode=mode, k=1)
        if found is not None:
            hits = found.matched
            selection = hits if selection is None else np.intersect1d(selection, hits)
    f = li.SuspectFilter(labels=labels, clusters=clusters, min_consensus=int(k),
                         aum_below=cutoff if use_aum else None, selection=selection, hide_decided=hide,
                         rank_by=rank_by)
    table = li.suspects(data, f, decisions)
    scope_note = "" if selection is None else f" within the {plural(len(selection), 'selected row')}"
    match = f"{plural(len(table), 'row')} {'matches' if len(table) == 1 else 'match'}{scope_note}"
    shown_note = (f"; the worst {TABLE_ROWS:,} are shown" if len(table) > TABLE_ROWS
                  else (", worst first" if len(table) > 1 else ""))
    st.caption(f"{match}{shown_note}. Tick rows at the left edge to act on them.")
    if table.empty:
        st.info("No rows match these filters. Lower “Methods flagging ≥” or clear the label/cluster filters.")
        _undo_row(ws)
        return
    shown = table.head(TABLE_ROWS)
    texts = ws.store.rows(["row_id", "text"], row_ids=shown["row_id"].to_numpy())
    view = shown.merge(texts, on="row_id", how="left")
    cols = ["text", "label", "suggested_label", "consensus", "label_quality", "aum", "decision", "id"]
    event = st.dataframe(
        view[[c for c in cols if c in view]], key=f"li_table_{_gen()}", on_select="rerun",
        selection_mode="multi-row", hide_index=True, height=min(420, 35 * (len(view) + 1) + 3),
        column_config={
            "text": st.column_config.TextColumn("text", width=300, help="hover a cell to read all of it"),
            "label": st.column_config.TextColumn("given label", width=140),
            "suggested_label": st.column_config.TextColumn("suggested", width=140),
            "label_quality": st.column_config.NumberColumn("quality", format="%.3g", width="small",
                                                           help="cleanlab label quality (low = suspicious; "
                                                                "three significant digits, so 4.2e-05 < 0.0003)"),
            "aum": st.column_config.NumberColumn("AUM", format="%.2f", width="small"),
            "consensus": st.column_config.NumberColumn(_units(data), format="%d", width="small",
                                                       help=f"how many {_units(data)} flag the row"),
            "decision": st.column_config.TextColumn("decision", width=100),
            "id": st.column_config.TextColumn("id", width="small"),
        })
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    picked = view["row_id"].to_numpy()[rows] if rows else np.array([], dtype=np.int64)
    if rows:
        _read_rows(view.iloc[rows])
    _actions(ws, data, picked, table["row_id"].to_numpy())


def _read_rows(rows, limit: int = 20) -> None:
    """The full text of the selected rows (the table cuts long texts), shown as plain text, never as HTML."""
    with st.expander(f"Read the {plural(len(rows), 'selected row')}", expanded=len(rows) <= 3,
                     icon=":material/article:"):
        for r in rows.head(limit).itertuples(index=False):
            meta = f"{r.id} · given label: {r.label} · suggested: {getattr(r, 'suggested_label', '') or '-'}"
            st.text(meta)
            st.code(str(r.text), language=None, wrap_lines=True)
        if len(rows) > limit:
            st.caption(f"… and {len(rows) - limit:,} more.")


def _actions(ws: Workspace, data: li.LabelData, picked: np.ndarray, matching: np.ndarray) -> None:
    # stable option labels: a label that changes with the counts makes Streamlit reset the radio to no choice
    scope = st.radio("Apply to", ["selected", "all"], horizontal=True, key="li_scope",
                     format_func={"selected": "the selected rows", "all": "every row matching the filters"}.get,
                     captions=[f"{len(picked):,} selected", plural(len(matching), "row")])
    ids = matching if scope == "all" else picked  # anything but an explicit "all" acts on the selection only
    c = st.columns([1, 1.9, 0.9, 1.8, 0.9, 0.9], vertical_alignment="bottom")
    # the menu starts at the chosen rows' (most common) suggested label, not at the alphabetically first class
    sugg = (data.frame.set_index("row_id")["suggested_label"].reindex(picked).dropna().astype(str)
            if "suggested_label" in data.frame else pd.Series([], dtype=str))
    if st.session_state.get("_li_target_for") != tuple(picked.tolist()):
        st.session_state["_li_target_for"] = tuple(picked.tolist())
        if len(sugg) and sugg.mode().iloc[0] in data.classes:
            st.session_state["li_target"] = sugg.mode().iloc[0]
    target = c[3].selectbox("or relabel to", data.classes, key="li_target",
                            help="starts at the suggested label of the selected rows")
    clicked = None
    if c[0].button("Exclude", key="li_exclude", icon=":material/block:", disabled=not len(ids)):
        clicked = ("exclude", None)
    if c[1].button("Relabel to suggested", key="li_relabel_sugg", icon=":material/auto_fix_high:", disabled=not len(ids)):
        clicked = ("relabel_suggested", None)
    if c[2].button("Keep", key="li_keep", icon=":material/check:", disabled=not len(ids),
                   help="mark as reviewed: the given label is right"):
        clicked = ("keep", None)
    if c[4].button("Relabel", key="li_relabel", disabled=not len(ids), help="relabel to the label chosen left"):
        clicked = ("relabel", target)
    with c[5]:
        _undo_row(ws)
    if clicked is not None:
        try:
            _, msg = li.act(ws, ids, clicked[0], data, label=clicked[1])
        except CurateError as e:
            state.show_error(e)
        else:
            _done(msg + " Undo reverts it.")


def _undo_row(ws: Workspace) -> None:
    if st.button("Undo", key="li_undo", icon=":material/undo:", help="undo the latest decision (any page)"):
        _done(ws.undo_described())
