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


def check_judgeable(codes: np.ndarray, classes: list[str]) -> None:
    """Refuse labels a classifier-based score cannot judge (one class, a class with one row), saying why."""
    if len(classes) < 2:
        raise CurateError(f"needs at least two classes; this data has {len(classes)}")
    counts = np.bincount(codes[codes >= 0], minlength=len(classes))
    single = [classes[i] for i in np.flatnonzero(counts < 2)]
    if single:
        shown = ", ".join(f"`{c}`" for c in single[:5]) + (" …" if len(single) > 5 else "")
        raise CurateError(f"needs at least two rows per class; {len(single)} class(es) have one: {shown}")
