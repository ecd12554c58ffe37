"""Text-quality heuristics as score plugins, one column each (definitions in curate_core/textquality.py).

They are filters rather than verdicts (what counts as "too many capitals" depends on the data), so they flag
nothing by themselves; the Duplicates & outliers page shows each one's histogram with a range slider.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import textquality as tq
from . import Score, ScoreContext, ScoreResult, register


@dataclass(frozen=True)
class _Heuristic(Score):
    """A per-text statistic computed from the texts alone."""

    requires: tuple = ("texts",)
    direction: str = "neutral"
    version: str = "1"

    def values(self, texts, params: dict) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        p = {**self.params, **ctx.params.get(self.name, {})}
        v = self.values(tq.as_arrow(ctx.texts), p)
        return ScoreResult(v, summary=_describe(v))


def _describe(v: np.ndarray) -> dict:
    v = np.asarray(v, dtype=np.float64)
    if v.size == 0:
        return {}
    q = np.percentile(v, [1, 50, 99])
    return {"p1": float(q[0]), "median": float(q[1]), "p99": float(q[2])}


@register
@dataclass(frozen=True)
class MeanWordLen(_Heuristic):
    name: str = "mean_word_len"
    title: str = "Mean word length (characters)"
    description: str = "Characters per whitespace-separated word; Gopher keeps 3–10."

    def values(self, texts, params):
        return tq.mean_word_len(texts)


@register
@dataclass(frozen=True)
class FracNonAlpha(_Heuristic):
    name: str = "frac_non_alpha"
    title: str = "Share of non-letter characters"
    direction: str = "higher_worse"
    description: str = "Digits, punctuation and symbols as a share of the non-space characters."

    def values(self, texts, params):
        return tq.frac_non_alpha(texts)


@register
@dataclass(frozen=True)
class FracUpper(_Heuristic):
    name: str = "frac_upper"
    title: str = "Share of upper-case letters"
    description: str = "1.0 = ALL CAPS; 0 when the text has no letters."

    def values(self, texts, params):
        return tq.frac_upper(texts)


@register
@dataclass(frozen=True)
class NUrls(_Heuristic):
    name: str = "n_urls"
    title: str = "Number of URLs"
    description: str = "http(s):// and www. links."

    def values(self, texts, params):
        return tq.n_urls(texts)


@register
@dataclass(frozen=True)
class FracDupLines(_Heuristic):
    name: str = "frac_dup_lines"
    title: str = "Share of repeated lines"
    direction: str = "higher_worse"
    description: str = "Non-empty lines that repeat an earlier line of the same text (Gopher)."

    def values(self, texts, params):
        return tq.frac_dup_lines(texts)


@register
@dataclass(frozen=True)
class FracDupNgrams(_Heuristic):
    name: str = "frac_dup_ngrams"
    title: str = "Share of repeated word 3-grams"
    direction: str = "higher_worse"
    description: str = "Word n-grams (lower-cased) that repeat an earlier n-gram of the same text (Gopher)."
    params: dict = field(default_factory=lambda: {"n": 3})

    def values(self, texts, params):
        return tq.frac_dup_ngrams(texts, int(params["n"]))


@register
@dataclass(frozen=True)
class Language(_Heuristic):
    name: str = "lang"
    title: str = "Language (langid; `lang_score` = its probability)"
    description: str = "ISO 639-1 code from langid's 97-language model, run vectorised; text cut to 2,000 bytes."
    params: dict = field(default_factory=lambda: {"max_bytes": 2000})

    def compute(self, ctx: ScoreContext) -> ScoreResult:
        p = {**self.params, **ctx.params.get(self.name, {})}
        lang, prob = tq.detect_language(ctx.texts, max_bytes=int(p["max_bytes"]))
        codes, counts = np.unique(lang.astype(str), return_counts=True) if len(lang) else ([], [])
        top = sorted(zip(codes, counts), key=lambda kv: -kv[1])[:10]
        return ScoreResult(lang, columns={"lang_score": prob},
                           summary={"languages": {str(k): int(v) for k, v in top}})
