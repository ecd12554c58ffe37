"""Words on pages: dataset values made safe for Streamlit markdown, short plain-text versions for widget options,
and counts with the right plural ("1 row", "2 rows").

Where dataset text goes:
- ``st.markdown``/``st.caption``/``st.info``/``st.success``/``st.warning``, widget *labels*: Streamlit renders
  markdown there (``*bold*``, ``$maths$``, ``:red[colour]``, ``:emoji:``, links) → wrap values in :func:`md`;
- widget *options* (``format_func``), ``st.text``, ``st.code``, ``st.dataframe``: shown as typed → :func:`short`
  at most (never HTML-escape there: ``&lt;`` would show as such);
- plotly labels and hover: ``charts.plot_text`` (plotly renders a few HTML tags).
"""

from __future__ import annotations

import re

# CommonMark lets any ASCII punctuation be backslash-escaped. Escaped: what means something inside a line in
# markdown/GFM (emphasis, code, links, autolinks, HTML, entities, strike-through), in Streamlit's directives
# (:red[...], :material/...:, emoji shortcodes) and maths ($...$); at the start of a line also what starts a
# block (heading, quote, list, rule). Other punctuation is left alone so messages stay readable in tests.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>$~:&])")
_MD_BLOCK = re.compile(r"^(\s*)(?:([#>+=-])|(\d+)([.)]))")  # heading, quote, list item, rule, setext line
_CODE = re.compile(r"(`[^`\n]+`)")
_SPACE = re.compile(r"\s+")


def _escape_block(s: str) -> str:
    """Escape what would start a block at the beginning of *s* (a line)."""
    return _MD_BLOCK.sub(lambda m: m[1] + ("\\" + m[2] if m[2] else m[3] + "\\" + m[4]), s, count=1)


def _escape_line(s: str) -> str:
    return _escape_block(_MD_SPECIAL.sub(r"\\\1", s))


def short(s: object, limit: int | None = None) -> str:
    """*s* on one line, cut to *limit* characters with an ellipsis (plain text: widget options, st.text)."""
    s = _SPACE.sub(" ", "" if s is None else str(s)).strip()
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)].rstrip() + "…"
    return s


def md(s: object, limit: int | None = None) -> str:
    """A dataset value (label, source, keyword, file or selection name …) to put inside markdown: one line,
    optionally cut to *limit* characters, every markdown character escaped so it shows exactly as typed."""
    return _escape_line(short(s, limit))


def md_message(s: object) -> str:
    """A message written by the core (an error, a warning, a summary line) that quotes user values: its
    `code spans` stay code (their inside is shown as typed anyway), everything else is escaped; lines are kept."""
    lines = []
    for line in str(s or "").splitlines():
        parts = _CODE.split(line)  # odd items are the code spans
        text = "".join(p if i % 2 else _MD_SPECIAL.sub(r"\\\1", p) for i, p in enumerate(parts))
        lines.append(text if _CODE.match(line) else _escape_block(text))
    return "  \n".join(lines)


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``plural(1, "row")`` → "1 row", ``plural(12345, "row")`` → "12,345 rows" (*many* for irregular nouns)."""
    n = int(n)
    return f"{n:,} {noun if n == 1 else (many or noun + 's')}"
