"""Plotly figures shared by pages (labelled axes, readable numbers)."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly import colors as _colors

#: distinct colours without greys (grey is kept for "other" / "noise")
PALETTE = [*_colors.qualitative.Plotly, *_colors.qualitative.Bold[:11]]


def human(n: float) -> str:
    """12,345 → 12.3k; 1,234,567 → 1.23M (for metric tiles)."""
    n = float(n)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:,.0f}"


def count_bars(counts: dict[str, int], what: str, unit: str, top: int = 40) -> go.Figure:
    """Horizontal bars of the *top* largest counts, biggest first; the axis title says how many are left out."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    names = [plot_text(k, 60) for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    left_out = len(counts) - len(items)
    return go.Figure(
        data=[go.Bar(x=values, y=names, orientation="h", hovertemplate="%{y}: %{x:,} " + unit + "<extra></extra>")],
        layout=dict(height=max(260, 18 * len(items) + 80), margin=dict(l=10, r=10, t=10, b=40),
                    xaxis={"title": {"text": unit + (f" (the {left_out:,} smallest not drawn)" if left_out else "")}},
                    yaxis={"title": {"text": what}, "automargin": True}))


def vrect(x0: float, x1: float, fillcolor: str, opacity: float) -> dict:
    """A band over the whole height between x0 and x1, as ``fig.add_vrect(..., line_width=0)`` makes it: a
    layout shape given when the figure is built (add_vrect's axis bookkeeping costs more than the chart)."""
    return {"type": "rect", "x0": x0, "x1": x1, "xref": "x", "y0": 0, "y1": 1, "yref": "y domain",
            "fillcolor": fillcolor, "opacity": opacity, "line": {"width": 0}}


def vline(x: float, color: str | None = None, dash: str | None = None, text: str | None = None,
          position: str = "top right", font_color: str | None = None) -> tuple[dict, dict | None]:
    """(shape, annotation or None) of a vertical line over the whole height with an optional label at its top,
    as ``fig.add_vline(x, line_color=, line_dash=, annotation_text=, annotation_position=)`` makes them."""
    line = {k: v for k, v in (("color", color), ("dash", dash)) if v is not None}
    shape = {"type": "line", "x0": x, "x1": x, "xref": "x", "y0": 0, "y1": 1, "yref": "y domain", "line": line}
    if text is None:
        return shape, None
    if position not in ("top left", "top right"):
        raise ValueError(f"vline labels go at the top left or top right, not {position!r}")
    note = {"text": text, "showarrow": False, "x": x, "xref": "x", "y": 1, "yref": "y domain", "yanchor": "top",
            "xanchor": "right" if position.endswith("left") else "left",
            **({"font": {"color": font_color}} if font_color else {})}
    return shape, note


def plot_text(s: object, limit: int = 200) -> str:
    """Dataset text made safe for plotly labels/hover: truncated and HTML-escaped (plotly renders some tags)."""
    s = "" if s is None else str(s)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False)
