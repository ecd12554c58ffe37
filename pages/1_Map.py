"""Map: the dataset in 2-D (UMAP of the embeddings), coloured by label, cluster, source or any score;
lasso/box selections saved as named selections; a cluster browser with keywords and label purity."""

import streamlit as st

from curate_core import CurateError, cluster
from curate_ui import layout, mapview, state
from curate_ui.text import md

ws = layout.require_workspace("Map", ":material/scatter_plot:")
if not layout.stage_gate(ws, ["project", "cluster"], "The map"):
    mapview.settings_form(ws)
    st.stop()

path, version = str(ws.path), mapview.data_version(ws)
try:
    clusters = mapview.load_clusters(path, version)  # biggest first
except CurateError as e:
    state.show_error(e)
    st.stop()

# a row picked in the cluster table (below) becomes the highlighted cluster before the selectbox is drawn
picked = (st.session_state.get("cluster_table") or {}).get("selection", {}).get("rows", [])
if picked and picked != st.session_state.get("_cluster_table_seen"):
    st.session_state["_cluster_table_seen"] = picked
    st.session_state["map_cluster"] = int(clusters.iloc[picked[0]]["cluster"])

options = mapview.colour_options(ws)
labels = mapview.cluster_labels(clusters)
c1, c0, c2 = st.columns([2, 1, 4])
colour = c1.selectbox("Colour by", list(options), key="map_colour",
                      help="label, cluster, source, or any numeric column (scores, text statistics) on a colour scale")
top = c0.selectbox("Own colours", mapview.TOP_CHOICES, index=1, key="map_top",
                   format_func=lambda n: "all" if n == mapview.CATEGORY_LIMIT else f"top {n}",
                   disabled=options[colour] == "number",
                   help="the most common groups get their own colour, the rest one grey 'other' (hover names them)")
highlight = c2.selectbox("Highlight a cluster", [None, *labels], key="map_cluster",
                         format_func=lambda c: "(none)" if c is None else labels[c],
                         help="draws the cluster on top of the dimmed map and lists its most typical rows below")

marked = mapview.search_form(ws)
data = mapview.load_points(path, version, colour, mapview.MAX_POINTS)
pts = data.points
method = mapview.projection_method(ws)
if data.total > len(pts):
    st.info(f"Showing {len(pts):,} of {data.total:,} rows: a deterministic sample stratified by cluster (every "
            "cluster keeps its share). Selections cover the drawn points.", icon=":material/filter_alt:")
n_clusters, noise = mapview.cluster_counts(clusters)
st.caption(f"{data.total:,} rows · {n_clusters:,} clusters · {noise:,} rows in no cluster (noise) · "
           f"{method} of the embeddings; hover a point to read it, lasso or box to select.")
# (the figure is rebuilt each run: a figure returned by st.cache_data loses lasso/box selection in the browser)
fig = mapview.map_figure(pts, colour, options[colour], highlight, axis=method, marked=marked, top=top)
event = st.plotly_chart(fig, key="map_chart", on_select="rerun", selection_mode=("lasso", "box"),
                        config={"displaylogo": False})

lasso = mapview.selected_row_ids(event.selection.points if event else [])
if lasso.size and lasso.tolist() != st.session_state.get("_lasso_seen"):
    st.session_state["_lasso_seen"] = lasso.tolist()
    mapview.set_selection(lasso, "lasso/box on the map")

st.subheader("Selection")
ids, source = mapview.current_selection()
mapview.selection_panel(ws, ids, source)

st.subheader("Clusters")
st.caption("Sort by any column; click a row to highlight that cluster on the map. Keywords are c-TF-IDF terms; "
           "purity is the share of the majority label.")
st.dataframe(mapview.cluster_table(clusters), key="cluster_table", on_select="rerun", selection_mode="single-row",
             hide_index=True, width="stretch", height=min(360, 35 * (len(clusters) + 1) + 3),
             column_config=mapview.cluster_column_config())
if highlight is not None:
    row = clusters.set_index("cluster").loc[highlight]
    st.markdown(f"**{md(labels[highlight])}** — top labels: {md(row['top_labels']) or '(unlabelled)'}")
    sample = cluster.cluster_rows(ws.store, highlight, ["row_id", "id", "text", "label", "cluster_prob"], limit=50)
    st.dataframe(sample, hide_index=True, width="stretch",
                 column_config={"text": st.column_config.TextColumn("text", width="large"),
                                "cluster_prob": st.column_config.NumberColumn("membership", format="%.2f")})
    if st.button(f"Use cluster {highlight} as the selection", key="cluster_to_selection",
                 icon=":material/select_all:"):
        mapview.set_selection(cluster.cluster_members(ws.store, highlight), f"cluster {highlight}")
        st.rerun()

st.divider()
mapview.settings_form(ws)
