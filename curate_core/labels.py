"""Labels as the label-based stages and scores see them: sorted class names and integer codes.

Kept apart from the stages and the score plugins so both can use it without importing each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import CurateError


def encode_labels(labels: list) -> dict[str, Any]:
    """labels (list, None = unlabelled) → ``labels`` (object array), sorted ``classes`` and int ``label_codes``
    (-1 = unlabelled)."""
    arr = np.array([None if (v is None or (isinstance(v, float) and v != v)) else str(v) for v in labels],
                   dtype=object)
    known = arr != None  # noqa: E711 - elementwise
    classes = sorted(set(arr[known].tolist()))
    index = {c: i for i, c in enumerate(classes)}
    codes = np.full(len(arr), -1, dtype=np.int64)
    codes[known] = [index[v] for v in arr[known]]
    return {"labels": arr, "classes": classes, "label_codes": codes}


#: a class needs this many labelled rows before a classifier can judge its labels (out-of-fold, one row of a class
#: is never seen by the model that grades it)
MIN_CLASS_ROWS = 2


def judgeable(codes: np.ndarray, classes: list[str]) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """(codes, classes) without the classes of fewer than MIN_CLASS_ROWS rows — their rows count as unlabelled
    for the label scores, so one singleton label does not stop the scoring of every other row — and the classes
    set aside with their row counts. Refuses labels a classifier cannot judge at all (fewer than two classes
    left), naming what was set aside."""
    counts = np.bincount(codes[codes >= 0], minlength=len(classes))
    keep = counts >= MIN_CLASS_ROWS
    aside = {c: int(n) for c, n, k in zip(classes, counts, keep) if not k}
    kept = [c for c, k in zip(classes, keep) if k]
    if len(kept) < 2:
        also = (" besides " + ", ".join(f"`{c}`" for c in list(aside)[:5]) + " with a single row") if aside else ""
        raise CurateError(f"needs at least two classes; this data has {len(kept)}{also}")
    if not aside:
        return codes, classes, {}
    remap = np.where(keep, np.cumsum(keep) - 1, -1)
    return np.where(codes >= 0, remap[np.maximum(codes, 0)], -1), kept, aside
