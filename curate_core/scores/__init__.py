"""Score plugins: one module per score (or family of scores), each registering itself on import.

The plugin base (:class:`Score`, :class:`ScoreContext`, :func:`register` …) lives in :mod:`.base`; importing
this package imports every plugin below, so :func:`registry` is complete. Adding a score = a new module here,
one line in the import list, and its test.
"""

from __future__ import annotations

from .base import (DIRECTIONS, Score, ScoreContext, ScoreResult, compute_all, labelled_classes,  # noqa: F401
                   register, registered)
from . import label_quality, aum, datamaps, el2n, consensus, text_quality, duplicates, outliers  # noqa: F401,E402


def registry() -> dict[str, Score]:
    """Every registered score, in registration order (plugin modules are imported with this package)."""
    return registered()
