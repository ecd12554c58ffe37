"""The one error type users see.

Every failure a user can cause (bad file, unknown column, locked workspace, bad recipe …) is raised as a
``CurateError`` with a message that says what was wrong and a hint that says what to do. The CLI prints
``error: <message>`` and ``hint: <hint>`` and exits 2; the app shows ``st.error``. Anything else is a bug:
its traceback goes to ``<workspace>/logs/``, never to the user.
"""

from __future__ import annotations

import datetime as _dt
import traceback
from pathlib import Path


class CurateError(Exception):
    """A problem the user can fix, with a hint how."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


def choices(values, limit: int = 20) -> str:
    """Format valid options for an error message: `a`, `b`, … (+3 more)."""
    values = [str(v) for v in values]
    shown = ", ".join(f"`{v}`" for v in values[:limit])
    if len(values) > limit:
        shown += f", … (+{len(values) - limit} more)"
    return shown or "(none)"


def log_exception(log_dir: str | Path | None, exc: BaseException) -> Path | None:
    """Write the full traceback of *exc* under *log_dir*; return the file (None if it could not be written)."""
    if log_dir is None:
        return None
    try:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = log_dir / f"error-{stamp}.log"
        path.write_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), encoding="utf-8")
        return path
    except OSError:
        return None
