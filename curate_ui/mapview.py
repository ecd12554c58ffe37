"""Map page pieces: cached reads of the projection, the scatter figure, lasso selections, the cluster browser.

Reads are cached with ``st.cache_data`` keyed on the workspace path and the latest run keys (so a rerun of any
stage refreshes them and nothing else does). Above :data:`MAX_POINTS` rows the map draws a deterministic sample
stratified by cluster (``curate_core.project.stratified_sample``) and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly import colors as px_colors
import streamlit as st

from curate_core import CurateError, Workspace
from curate_core.cluster import cluster_info, cluster_means
from curate_core import mapdata
from curate_core.store import NUMERIC_TYPES

from . import cache, state
from .charts import plot_text
from .text import md, plural

MAX_POINTS = 200_000
HOVER_CHARS = 140
CATEGORY_LIMIT = 80  # categories with their own colour at most; the rest share one grey "other"
TOP_CHOICES = (10, 20, 40, CATEGORY_LIMIT)  # the Map's "Own colours" menu (default 20)
CATEGORICAL = ("label", "cluster", "source")
#: per-cluster means the cluster browser shows when a later stage has produced the column
CLUSTER_MEANS = {"label_quality": "mean label quality", "is_label_issue": "label issue rate",
                 "outlier_score": "mean outlier score"}
CLUSTER_RATES = {"dup_rank": "duplicate rate"}
NOISE_NAME = "noise"
#: 74 distinguishable colours (plotly's Alphabet, Dark24, Light24), so e.g. 77 intents mostly get their own
PALETTE = [*px_colors.qualitative.Alphabet, *px_colors.qualitative.Dark24, *px_colors.qualitative.Light24]


def data_version(ws: Workspace) -> str:
    """Changes whenever any stage finishes a run: the cache key for everything the page reads."""
    runs = cache.latest_runs(ws)
    return json.dumps({k: str(v.get("run_key")) + str(v.get("status")) for k, v in sorted(runs.items())})


def projection_method(ws: Workspace) -> str:
    """"UMAP" or "PCA" (fallback), from the summary of the latest project run — for axis titles."""
    summary = (cache.latest_runs(ws).get("project") or {}).get("summary")
    try:
        s = json.loads(summary) if isinstance(summary, str) else (summary or {})
    except ValueError:
        s = {}
    return "PCA" if s.get("method") == "pca" else "UMAP"


# ----------------------------------------------------------------------------------------- colouring
def colour_options(ws: Workspace) -> dict[str, str]:
    """Columns the map can be coloured by: name → "category" or "number"."""
    out = {c: "category" for c in CATEGORICAL}
    for col, (table, typ) in ws.store.catalog().items():
        if col in out or col in ("row_id", "x", "y") or table in ("projection",):
            continue
        if typ == "BOOLEAN":
            out[col] = "category"
        elif typ in NUMERIC_TYPES or typ.startswith("DECIMAL"):
            out[col] = "number"
    return out


@dataclass
class MapData:
    points: pd.DataFrame  # row_id, x, y, text, label, source, cluster (+ colour column)
    total: int  # rows in the workspace's projection (points may be a sample)


@st.cache_resource(show_spinner="Reading the map …", max_entries=8)
def _load_points(path: str, version: str, colour: str, max_points: int) -> MapData:
    ws = state.open_workspace(path)
    df, total = mapdata.load_points(ws.store, list(dict.fromkeys([*CATEGORICAL, colour])), max_points, HOVER_CHARS)
    # hover text is most of what goes to the browser (~100 bytes a point): shorter when there are many points
    chars = HOVER_CHARS if len(df) <= 50_000 else HOVER_CHARS // 2
    df["hover"] = pd.Series([plot_text(t, chars) for t in df["text"]], index=df.index, dtype=object)
    return MapData(df, total)


def load_points(path: str, version: str, colour: str, max_points: int = MAX_POINTS) -> MapData:
    """The points to draw (a stratified sample above *max_points*), with short escaped hover texts.

    Cached as a resource (no copy per rerun: at 200k points a pickled copy cost more than the page); the frame
    handed out is a shallow copy-on-write copy, so a caller that changes it never changes the cached one."""
    data = _load_points(path, version, colour, max_points)
    return MapData(data.points.copy(deep=False), data.total)


def _categories(values: pd.Series, name: str) -> pd.Series:
    """Each value's group name (computed once per distinct value, not per row)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if name == "cluster":
        def one(c):
            return NOISE_NAME if pd.isna(c) or int(c) < 0 else f"cluster {int(c)}"
    else:
        def one(v):
            return "(none)" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
    names = np.array([one(u) for u in uniques] + [None], dtype=object)
    if (codes < 0).any():  # the missing value, named as the page always named it
        names[-1] = one(values[codes < 0].iloc[0])
    return pd.Series(names[codes], index=values.index)


def map_figure(points: pd.DataFrame, colour: str, kind: str, highlight: int | None = None,
               axis: str = "UMAP", marked: np.ndarray | None = None, top: int = CATEGORY_LIMIT) -> go.Figure:
    """Scattergl of the map coloured by *colour*; *highlight* (a cluster id) and *marked* rows (search matches)
    are drawn on top, the rest dimmed. The *top* most common groups of a category get their own colour, the
    others one grey "other" (77 colours are confetti nobody can tell apart).

    Every trace carries the row ids as customdata, which is what a lasso/box selection returns. The traces are
    cut from numpy arrays (float32 coordinates: half the bytes, the same pixels) and the figure is built in one
    call, not grown trace by trace: a rerun that only changes the highlight rebuilds it in a few milliseconds.
    """
    size = 4 if len(points) > 50_000 else 6
    dim = highlight is not None or marked is not None
    x = points["x"].to_numpy(dtype=np.float32)
    y = points["y"].to_numpy(dtype=np.float32)
    ids = points["row_id"].to_numpy()
    hover = points["hover"].to_numpy(dtype=object)
    traces: list[go.Scattergl] = []

    number = "<br>" + plot_text(colour, 40) + " %{marker.color:.4g}" if kind == "number" else ""

    def add(at: np.ndarray, name: str, marker: dict, **kw) -> None:
        traces.append(go.Scattergl(
            x=x[at], y=y[at], mode="markers", name=plot_text(name, 40), customdata=ids[at], hovertext=hover[at],
            # the trace name is the colour group (label, cluster …): hover shows it without repeating it per point
            hovertemplate="%{hovertext}<br><i>%{fullData.name}</i>" + (number if "colorscale" in marker else "")
                          + "<extra></extra>",
            marker={"size": size, **marker}, **kw))

    if kind == "number":
        vals = pd.to_numeric(points[colour], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(vals)
        if missing.any():
            add(np.flatnonzero(missing), f"{colour}: missing", {"color": "#bbbbbb", "opacity": 0.4})
        have = np.flatnonzero(~missing)
        add(have, colour, {"color": vals[have], "colorscale": "Viridis", "opacity": 0.25 if dim else 0.8,
                           "showscale": True, "colorbar": {"title": {"text": plot_text(colour, 30)}}})
    else:
        cats = _categories(points[colour], colour)
        counts = cats.value_counts()
        named = [c for c in counts.index if c != NOISE_NAME][:min(int(top), CATEGORY_LIMIT)]
        codes = pd.Index(named).get_indexer(cats)  # position in *named*, -1 for the rest
        for i, c in enumerate(named):
            add(np.flatnonzero(codes == i), f"{c} ({counts[c]:,})",
                {"color": "#cccccc" if dim else PALETTE[i % len(PALETTE)], "opacity": 0.3 if dim else 0.75})
        rest = np.flatnonzero(codes < 0)
        if rest.size:
            n_other = counts.drop(named).sum()
            label = (NOISE_NAME if set(cats.iloc[rest].unique()) == {NOISE_NAME}
                     else f"other ({len(counts) - len(named)} more)")
            add(rest, f"{label} ({n_other:,})", {"color": "#bbbbbb", "opacity": 0.35})
    if dim:
        sel = np.flatnonzero((points["cluster"] == highlight).to_numpy())
        add(sel, f"cluster {highlight} ({sel.size:,})", {"color": "#d62728", "size": size + 2, "opacity": 0.95,
                                                         "line": {"width": 0.5, "color": "#222"}})
    if marked is not None:
        hits = np.flatnonzero(np.isin(ids, np.asarray(marked, dtype=np.int64)))
        add(hits, f"search matches ({hits.size:,} drawn)", {"color": "#ff7f0e", "size": size + 2, "opacity": 0.95,
                                                            "line": {"width": 0.5, "color": "#222"}})
    # a colour bar takes the right edge: the (short) legend then goes on one line above the plot
    legend = (dict(itemsizing="constant", orientation="h", x=0, y=1.02, yanchor="bottom") if kind == "number"
              else dict(itemsizing="constant", title={"text": plot_text(colour, 30)}))
    return go.Figure(data=traces, layout=dict(
        height=640, margin=dict(l=10, r=10, t=40, b=10), dragmode="lasso", hovermode="closest", legend=legend,
        xaxis=dict(title={"text": f"{axis} 1"}, showgrid=False, zeroline=False),
        yaxis=dict(title={"text": f"{axis} 2"}, showgrid=False, zeroline=False)))


def selected_row_ids(points: list[dict]) -> np.ndarray:
    """Row ids of the points a lasso/box selection returned (their customdata), unique and sorted."""
    ids = []
    for p in points or []:
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        if cd is not None:
            ids.append(int(cd))
    return np.unique(np.asarray(ids, dtype=np.int64))


# ------------------------------------------------------------------------------------------ clusters
@st.cache_data(show_spinner=False, max_entries=16)
def load_clusters(path: str, version: str) -> pd.DataFrame:
    """cluster_info plus per-cluster means of later scores (when those columns exist)."""
    ws = state.open_workspace(path)
    info = cluster_info(ws.store)
    means = cluster_means(ws.store, list(CLUSTER_MEANS), nonzero=list(CLUSTER_RATES))
    info = info.merge(means, on="cluster", how="left")
    names = {**CLUSTER_MEANS, **{f"{k}_rate": v for k, v in CLUSTER_RATES.items()}}
    info = info.rename(columns={k: v for k, v in names.items() if k in info.columns})
    return info.sort_values(["size", "cluster"], ascending=[False, True], kind="stable").reset_index(drop=True)


def cluster_counts(info: pd.DataFrame) -> tuple[int, int]:
    """(number of real clusters, rows in noise)."""
    return int((info["cluster"] >= 0).sum()), int(info.loc[info["cluster"] < 0, "size"].sum())


def cluster_labels(info: pd.DataFrame) -> dict[int, str]:
    """cluster id → "12 · card, payment, refund · 340 rows", in the order of *info*."""
    return {int(c): _cluster_label(int(c), k, int(n))
            for c, k, n in zip(info["cluster"], info["keywords"], info["size"])}


def cluster_label(row: pd.Series) -> str:
    return _cluster_label(int(row["cluster"]), row["keywords"], int(row["size"]))


def _cluster_label(cluster: int, keywords: object, size: int) -> str:
    if cluster < 0:
        return f"noise · {size:,} rows"
    kw = ", ".join(str(keywords or "").split(", ")[:3])
    return f"{cluster} · {kw} · {size:,} rows"


def cluster_table(info: pd.DataFrame) -> pd.DataFrame:
    cols = ["cluster", "size", "purity", "top_labels", "keywords",
            *[c for c in info.columns if c in {*CLUSTER_MEANS.values(), *CLUSTER_RATES.values()}]]
    return info[cols]


def cluster_column_config() -> dict:
    cfg = {"purity": st.column_config.ProgressColumn("purity", help="share of the cluster's majority label",
                                                     format="percent", min_value=0, max_value=1),
           "size": st.column_config.NumberColumn("size", format="localized"),
           "keywords": st.column_config.TextColumn("keywords", help="c-TF-IDF: words that mark this cluster"),
           "top_labels": st.column_config.TextColumn("top labels", help="the most common labels and their shares")}
    for name in (*CLUSTER_MEANS.values(), *CLUSTER_RATES.values()):
        cfg[name] = st.column_config.NumberColumn(name, format="%.3f")
    return cfg


# ------------------------------------------------------------------------------------------ selection
SEL_KEY = "map_selection"


def set_selection(ids: np.ndarray, source: str) -> None:
    st.session_state[SEL_KEY] = {"ids": [int(i) for i in ids], "source": source}


def current_selection() -> tuple[np.ndarray, str]:
    sel = st.session_state.get(SEL_KEY) or {}
    return np.asarray(sel.get("ids", []), dtype=np.int64), sel.get("source", "")


def selection_panel(ws: Workspace, ids: np.ndarray, source: str) -> None:
    """Table of the selected rows and a form to save them as a named selection."""
    if ids.size == 0:
        st.caption("Draw a lasso or a box on the map (toolbar, top right) to select points, or pick a cluster below.")
    else:
        st.markdown(f"**{plural(ids.size, 'row')} selected** ({md(source)})")
        rows = ws.store.rows(["row_id", "id", "text", "label", "source", "cluster"], row_ids=ids[:2000], limit=2000)
        st.dataframe(rows, hide_index=True, width="stretch", height=260,
                     column_config={"text": st.column_config.TextColumn("text", width="large")})
        if ids.size > 2000:
            st.caption(f"showing the first 2,000 of {ids.size:,} rows")
        with st.form("save_selection", border=False):
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            name = c1.text_input("Save as a named selection", key="sel_name", placeholder="e.g. odd cluster near top",
                                 help="Saved in the workspace; recipes and export can include or exclude it.")
            save = c2.form_submit_button("Save selection", type="primary", icon=":material/bookmark_add:")
        if save:
            try:
                n = ws.save_selection(name, ids)
            except CurateError as e:
                state.show_error(e)
            else:
                st.session_state["_sel_flash"] = f"Saved selection “{md(name)}” ({plural(n, 'row')})."
                st.rerun()
    flash = st.session_state.pop("_sel_flash", None)
    if flash:
        st.success(flash, icon=":material/bookmark_added:")
    saved = ws.selections()
    if saved:
        st.caption("Saved selections: " + ", ".join(f"{md(k, 60)} ({v:,})" for k, v in saved.items()))


# ------------------------------------------------------------------------------------------- settings
def settings_form(ws: Workspace) -> None:
    """Rerun embed → project → cluster with another embedder or cluster size (the CLI's --embedder and
    --param, from the app), in the background thread; finished runs with the same settings are reused."""
    from curate_core.cluster import auto_min_cluster_size
    from curate_core.embedders import names as embedder_names

    from . import runner

    run = runner.get_run(ws)
    busy = run is not None and run.running
    with st.expander("Map settings: embedder and cluster size", icon=":material/tune:"):
        with st.form("map_settings", border=False):
            c1, c2, c3 = st.columns(3)
            embedder = c1.selectbox("Embedder", embedder_names(), key="map_embedder",
                                    help="minilm: sentence embeddings (default) · tfidf: character n-grams, any "
                                         "language, no model · precomputed: vectors from your file")
            auto = auto_min_cluster_size(ws.store.count())
            mcs = c2.number_input("Min cluster size", min_value=2, value=auto, step=1, key="map_mcs",
                                  help=f"HDBSCAN's smallest cluster; the default scales with the data ({auto:,} here)")
            selection = c3.selectbox("Cluster selection", ["eom", "leaf"], key="map_selection_method",
                                     help="eom: fewer, larger clusters · leaf: finer clusters")
            go_ = st.form_submit_button("Run embed, project, cluster", disabled=busy, icon=":material/play_arrow:")
        st.caption(f"CLI: `python -m curate_core run --workspace {ws.path} --stages embed,project,cluster "
                   f"--embedder {embedder} --param cluster.min_cluster_size={int(mcs)}`")
    if go_:
        params = {"embed": {"embedder": embedder},
                  "cluster": {"min_cluster_size": None if int(mcs) == auto else int(mcs), "selection": selection}}
        runner.start_run(ws, ["embed", "project", "cluster"], params=params)
        st.rerun()


# --------------------------------------------------------------------------------------------- search
SEARCH_KEY = "_map_search"
SEARCH_MODES = {"keyword": "Keyword", "regex": "Regex", "semantic": "Meaning"}
SEMANTIC_K = 200  # a meaning search marks the 200 nearest rows


def search_form(ws: Workspace) -> np.ndarray | None:
    """A search box over the map: the matches become the selection and are drawn on top; returns their row ids
    (None when no search is active)."""
    from curate_core.search import search

    with st.form("map_search", border=False):
        a, b, c = st.columns([5, 2, 1], vertical_alignment="bottom")
        query = a.text_input("Search the texts", key="map_query", placeholder="words, a regular expression, or a "
                             "sentence to find by meaning")
        mode = b.selectbox("Match", list(SEARCH_MODES), format_func=SEARCH_MODES.get, key="map_query_mode",
                           help="keyword: every word, any case · regex: RE2 pattern · meaning: the "
                                f"{SEMANTIC_K} rows nearest to the sentence in the embedding")
        go_ = c.form_submit_button("Search", icon=":material/search:", width="stretch")
    if go_:
        if not query.strip():
            st.session_state.pop(SEARCH_KEY, None)
        else:
            res = state.guarded(ws, search, ws.store, query, mode=mode, k=SEMANTIC_K if mode == "semantic" else 50)
            if res is not None:
                st.session_state[SEARCH_KEY] = {"query": query, "mode": mode, "count": res.count,
                                                "ids": res.matched.tolist()}
                set_selection(res.matched, f"{SEARCH_MODES[mode].lower()} search “{query}”")
    found = st.session_state.get(SEARCH_KEY)
    if not found:
        return None
    x, y = st.columns([5, 1], vertical_alignment="center")
    what = "nearest rows" if found["mode"] == "semantic" else "rows match"
    x.markdown(f"**{found['count']:,} {what}** “{md(found['query'], 80)}” — orange on the map, listed under "
               "Selection (save them there as a named selection)")
    if y.button("Clear search", key="map_search_clear", icon=":material/close:"):
        st.session_state.pop(SEARCH_KEY, None)
        st.rerun()
    return np.asarray(found["ids"], dtype=np.int64)
