"""Score plugins: one module per score (or family of scores), each registering itself on import.

The plugin contract (:class:`Score`, :class:`ScoreContext`, :func:`register` …) is in :mod:`.base`. Importing
this package imports every module in it: the built-in ones below in the order of the scores table, then any
other module found here (alphabetically) — so adding a score is one new file (and its test), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import (DIRECTIONS, Score, ScoreContext, ScoreResult, compute_all, labelled_classes,  # noqa: F401
                   ordered, register, registered)
from . import label_quality, aum, datamaps, el2n, consensus, text_quality, duplicates, outliers  # noqa: F401,E402

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):  # plugins added as files of this package
    importlib.import_module(f"{__name__}.{_m}")


def registry() -> dict[str, Score]:
    """Every registered score, built-in ones first (plugin modules are imported with this package)."""
    return registered()
