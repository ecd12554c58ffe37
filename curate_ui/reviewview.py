"""The review queue page: one suspect at a time with keyboard shortcuts (K keep, X exclude, L relabel to the
suggestion, S skip, U undo). The logic is curate_core.review; this module draws it."""

from __future__ import annotations

import streamlit as st

from curate_core import Workspace
from curate_core import labelissues as li
from curate_core import review as rv
from curate_core.execution import format_seconds

from . import state
from .text import md, md_message, plural

FLASH = "_review_flash"
SKIPPED = "_review_skipped"


def _done(msg: str) -> None:
    st.session_state[FLASH] = msg
    st.rerun()


def header(ws: Workspace, q, order: str, noun: str = "flagged row") -> None:
    reviewed = int((q["decision"] != "").sum()) if not q.empty else 0
    n, per = rv.pace(ws.store)
    speed = f", ~{format_seconds(per)} per row" if per else ""
    left = len(q) - reviewed
    eta = f" · about {format_seconds(per * left)} to go" if per and left else ""
    st.progress(reviewed / len(q) if len(q) else 1.0,
                text=f"{reviewed:,} of {plural(len(q), noun)} reviewed{speed}{eta}")
    st.caption(f"Order: {rv.ORDERS[order]}. Rows decided here or on Label issues count as reviewed; the queue "
               f"resumes at the first row without a decision. {plural(n, 'decision')} made in the queue so far.")


def card(it: rv.Item) -> None:
    """The row: whole text (as typed: HTML stays text), labels with probabilities, reasons, neighbours."""
    with st.container(border=True):
        p = f" (probe: {it.p_label:.1%})" if it.p_label is not None else ""
        ps = f" (probe: {it.p_suggested:.1%})" if it.p_suggested is not None else ""
        sugg = f" · suggested **{md(it.suggested)}**{ps}" if it.suggested and it.suggested != it.label else ""
        where = f" · cluster {it.cluster}" if it.cluster is not None else ""
        st.markdown(f"`{md(it.id)}` · given **{md(it.label)}**{p}{sugg}{where}")
        st.text(it.text)
        st.markdown("\n".join(f"- {md(r)}" for r in it.reasons))
        if it.second is not None:
            lab, p2, agree = it.second
            st.caption(f"Second opinion: a probe trained on the unflagged rows says **{md(lab)}** ({p2:.0%})"
                       f"{' — the given label' if lab == it.label else ''}; {agree:.0%} of the nearest unflagged "
                       "rows carry it")
        if it.decision:
            st.caption(f"Decision in force: {md(it.decision)}")
    if not it.neighbours.empty:
        st.caption("Nearest neighbours in the embedding (cosine similarity) and their labels:")
        st.dataframe(it.neighbours.rename(columns={"score": "similarity"}), hide_index=True, width="stretch",
                     column_config={"similarity": st.column_config.NumberColumn(format="%.3f")})


def _act(ws: Workspace, it: rv.Item, action: str, label: str | None = None) -> None:
    msg = state.guarded(ws, rv.decide, ws, it, action, label)
    if msg:
        _done(msg)


def actions(ws: Workspace, data: li.LabelData, it: rv.Item) -> None:
    c = st.columns([1, 1, 1.6, 1, 1])
    can_suggest = bool(it.suggested and it.suggested != it.label)
    if c[0].button("Keep", key="rv_keep", shortcut="k", icon=":material/check:", width="stretch",
                   help="the label is right (K)"):
        _act(ws, it, "keep")
    if c[1].button("Exclude", key="rv_exclude", shortcut="x", icon=":material/block:", width="stretch",
                   help="leave the row out of exports (X)"):
        _act(ws, it, "exclude")
    if c[2].button(f"Relabel to {it.suggested}" if can_suggest else "Relabel to suggested", key="rv_suggest",
                   shortcut="l", icon=":material/label:", width="stretch", disabled=not can_suggest,
                   type="primary" if can_suggest else "secondary", help="take the probe's suggestion (L; R is Streamlit's rerun key)"):
        _act(ws, it, "relabel")
    if c[3].button("Skip", key="rv_skip", shortcut="s", icon=":material/skip_next:", width="stretch",
                   help="decide later (S); skipped rows come back in a new session"):
        st.session_state.setdefault(SKIPPED, []).append(it.row_id)
        st.rerun()
    if c[4].button("Undo", key="rv_undo", shortcut="u", icon=":material/undo:", width="stretch",
                   help="revert the latest decision batch (U), wherever it was made"):
        msg = state.guarded(ws, ws.undo_described)
        if msg is not None:
            _done(msg)
    other = [c for c in data.classes if c != it.label]
    with st.form("rv_other", border=False):
        a, b = st.columns([3, 1])
        pick = a.selectbox("Relabel to another label", other, index=other.index(it.suggested)
                           if it.suggested in other else 0, key=f"rv_label_{it.row_id}", label_visibility="collapsed")
        if b.form_submit_button("Relabel to this", width="stretch"):
            _act(ws, it, "relabel", pick)


def page(ws: Workspace, data: li.LabelData) -> None:
    msg = st.session_state.pop(FLASH, None)
    if msg:
        st.success(md_message(msg), icon=":material/check_circle:")
    order = st.segmented_control("Order", list(rv.ORDERS), default="consensus", key="rv_order",
                                 format_func=lambda o: {"consensus": "Consensus", "aum": "AUM",
                                                        "label_quality": "Quality", "cluster": "Cluster"}[o]) \
        or "consensus"
    every = st.toggle("Every labelled row, not only the flagged ones", key="rv_every",
                      help="a spot check of the rows no method flags, in the chosen order (by consensus: after the "
                           "flagged ones)")
    q = rv.queue(data, order, ws.decisions(), flagged_only=not every)
    if q.empty:
        st.success("No method flags any row: nothing to review (the toggle above queues every row).",
                   icon=":material/check_circle:")
        return
    noun = "labelled row" if every else "flagged row"
    header(ws, q, order, noun)
    row = rv.next_row(q, st.session_state.get(SKIPPED, []))
    if row is None:
        skipped = len(st.session_state.get(SKIPPED, []))
        st.success(f"Every {noun} has a decision" + (f" or was skipped ({skipped:,})." if skipped else "."),
                   icon=":material/task_alt:")
        if skipped and st.button("Show the skipped rows again", key="rv_unskip"):
            st.session_state[SKIPPED] = []
            st.rerun()
        return
    it = rv.item(ws.store, data, q, row)
    card(it)
    actions(ws, data, it)
    st.caption("Keys: **K** keep · **X** exclude · **L** relabel to the suggestion · **S** skip · **U** undo. "
               "Decisions go to the same undoable log as the Label issues page.")
