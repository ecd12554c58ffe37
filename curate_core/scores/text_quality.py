"""Text-quality heuristics as score plugins, one column each (definitions in curate_core/textquality.py).

They are row scores — a function of each text alone — so the `scores` stage runs them through the executor in
row-id batches (one checkpoint part per batch, resumable; a cluster spreads the batches). They are filters
rather than verdicts (what counts as "too many capitals" depends on the data), so they flag nothing by
themselves; the Duplicates & outliers page shows each one's histogram with a range slider.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from .. import textquality as tq
from ..columns import Column
from .base import Score, register


@dataclass(frozen=True)
class _Heuristic(Score):
    """A per-text statistic computed from the texts alone by ``fn(texts, **params)``."""

    kind: str = "row"
    requires: tuple = ("texts",)
    topic: str = "quality"
    direction: str = "neutral"
    version: str = "1"
    fn: Callable[..., np.ndarray] | None = None

    def compute_batch(self, batch: pa.Table, settings: dict) -> dict[str, np.ndarray]:
        return {self.name: np.asarray(self.fn(batch.column("text").combine_chunks(), **settings))}

    def summarise(self, values: dict[str, np.ndarray]) -> dict:
        v = np.asarray(values[self.name], dtype=np.float64)
        if v.size == 0:
            return {}
        q = np.percentile(v, [1, 50, 99])
        return {"p1": float(q[0]), "median": float(q[1]), "p99": float(q[2])}


def heuristic(name: str, title: str, short: str, description: str, fn: Callable[..., np.ndarray],
              direction: str = "neutral", params: dict | None = None, integer: bool = False) -> type:
    """Register a heuristic plugin from a function of an Arrow string array (one line per heuristic below).
    *short* titles its column on the page; *integer* counts take whole-number sliders."""
    column = Column(name, "BIGINT" if integer else "DOUBLE", short)
    defaults = {"name": name, "title": title, "description": description, "direction": direction, "fn": fn,
                "columns": (column,), "params": field(default_factory=lambda: dict(params or {}))}
    cls = make_dataclass(f"Heuristic_{name}", [(k, Any, v) for k, v in defaults.items()], bases=(_Heuristic,),
                         frozen=True)
    return register(cls)


heuristic("mean_word_len", "Mean word length (characters)", "Mean word length",
          "Characters per whitespace-separated word; Gopher keeps 3–10.", tq.mean_word_len)
heuristic("frac_non_alpha", "Share of non-letter characters", "Share of non-letter characters",
          "Digits, punctuation and symbols as a share of the non-space characters.", tq.frac_non_alpha,
          "higher_worse")
heuristic("frac_upper", "Share of upper-case letters", "Share of upper-case letters",
          "1.0 = ALL CAPS; 0 when the text has no letters.", tq.frac_upper)
heuristic("n_urls", "Number of URLs", "URLs", "http(s):// and www. links.", tq.n_urls, integer=True)
heuristic("frac_dup_lines", "Share of repeated lines", "Share of repeated lines",
          "Non-empty lines that repeat an earlier line of the same text (Gopher).", tq.frac_dup_lines, "higher_worse")
heuristic("frac_dup_ngrams", "Share of repeated word 3-grams", "Share of repeated word 3-grams",
          "Word n-grams (lower-cased) that repeat an earlier n-gram of the same text (Gopher).", tq.frac_dup_ngrams,
          "higher_worse", {"n": 3})


@register
@dataclass(frozen=True)
class Language(_Heuristic):
    name: str = "lang"
    title: str = "Language (langid; `lang_score` = its probability)"
    columns: tuple = (Column("lang", "VARCHAR", "Language (langid)"),
                      Column("lang_score", "DOUBLE", "Language probability (langid)"))
    description: str = "ISO 639-1 code from langid's 97-language model, run vectorised; text cut to 2,000 bytes."
    params: dict = field(default_factory=lambda: {"max_bytes": 2000})

    def compute_batch(self, batch: pa.Table, settings: dict) -> dict[str, np.ndarray]:
        lang, prob = tq.detect_language(batch.column("text").combine_chunks(), max_bytes=int(settings["max_bytes"]))
        return {"lang": lang, "lang_score": prob}

    def summarise(self, values: dict[str, np.ndarray]) -> dict:
        lang = values["lang"]
        codes, counts = np.unique(lang.astype(str), return_counts=True) if len(lang) else ([], [])
        top = sorted(zip(codes, counts), key=lambda kv: -kv[1])[:10]
        return {"languages": {str(k): int(v) for k, v in top}}
