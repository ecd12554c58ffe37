"""The workspace's draft recipe (saved as ``__draft__``): the working recipe every page adds to and Export writes.

One writer, :class:`RecipeDraft`, used by every page. A page changes the filters on the columns it owns, the
``dedup`` entry, or — the Select page's editor — the whole recipe; every change merges the same way: what the
page does not own is left as it found it, an unchanged filter keeps the keys another page added (such as
``"nulls"``, which the Select page spells out), and the draft is written only when it changed.
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

from ..store import Store
from .model import DRAFT, filter_column, new_recipe


def with_filters(recipe: dict | None, owned: Iterable[str], filters: Sequence[dict]) -> dict:
    """*recipe* (not modified) with every filter on an *owned* column replaced by *filters*: the other filters
    first, in their order, then these; a filter whose op and value did not change keeps its dict."""
    r = copy.deepcopy(recipe) if recipe else new_recipe()
    r.setdefault("version", 1)
    owned = set(owned)
    bad = [f for f in filters if filter_column(f) not in owned]
    if bad:
        raise ValueError(f"not a column this page owns: {bad}")
    before = {filter_column(f): f for f in (r.get("filters") or []) if filter_column(f) in owned}
    kept = [f for f in (r.get("filters") or []) if filter_column(f) not in owned]
    same = lambda old, f: old is not None and (old.get("op"), old.get("value")) == (f["op"], f["value"])  # noqa: E731
    r["filters"] = kept + [before[f["column"]] if same(before.get(f["column"]), f) else dict(f) for f in filters]
    return r


def with_dedup(recipe: dict | None, exact: bool, semantic_eps: float | None) -> dict:
    """*recipe* (not modified) with its ``dedup`` entry set."""
    r = copy.deepcopy(recipe) if recipe else new_recipe()
    r.setdefault("version", 1)
    r["dedup"] = {**(r.get("dedup") or {}), "exact": bool(exact),
                  "semantic_eps": None if semantic_eps is None else float(semantic_eps)}
    return r


class RecipeDraft:
    """The draft of one workspace: read once, changed by the page, :meth:`save` writes it if it changed.

    >>> RecipeDraft(store).set_filter("aum_flag", "is", False).save()
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.saved = store.recipe(DRAFT)
        self.doc = copy.deepcopy(self.saved) if self.saved is not None else new_recipe()

    def set_filters(self, owned: Iterable[str], filters: Sequence[dict]) -> "RecipeDraft":
        """The filters on the columns a page *owns*, all at once (see :func:`with_filters`)."""
        self.doc = with_filters(self.doc, owned, filters)
        return self

    def set_filter(self, column: str, op: str, value) -> "RecipeDraft":
        """One filter on *column*, replacing an earlier one on the same column."""
        return self.set_filters([column], [{"column": column, "op": op, "value": value}])

    def set_dedup(self, exact: bool, semantic_eps: float | None) -> "RecipeDraft":
        self.doc = with_dedup(self.doc, exact, semantic_eps)
        return self

    def replace(self, recipe: dict) -> "RecipeDraft":
        """The whole recipe (the Select page's editor, a loaded recipe, pasted JSON)."""
        self.doc = copy.deepcopy(recipe)
        return self

    def save(self) -> bool:
        """Write the draft if it changed; True if it did."""
        if self.doc == self.saved:
            return False
        self.store.save_recipe(DRAFT, self.doc)
        self.saved = copy.deepcopy(self.doc)
        return True
