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
    """Write the full traceback of *exc* under *log_dir* — or, where that cannot be written (a read-only
    workspace, /proc), under the system's temporary folder; return the file (None if neither could be written)."""
    import tempfile

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for folder in ([log_dir] if log_dir is not None else []) + [Path(tempfile.gettempdir()) / "curate-logs"]:
        try:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"error-{stamp}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


#: DuckDB's words for a database file it cannot trust (truncated, overwritten, bad checksums)
_DAMAGED = ("could not read enough bytes", "not a valid duckdb database", "corrupt", "checksum", "invalid block",
            "failed to read database header")


def environment_error(exc: BaseException, workspace: str | Path | None = None) -> CurateError | None:
    """The user's or the machine's problem behind an unexpected exception, as a CurateError with what to do —
    a full disk, a damaged database file, a read-only folder, input nested too deeply — or None for a bug.

    The CLI and the app call this before reporting "this is a bug", so these exit 2 with advice instead."""
    import errno

    where = f" in {Path(workspace).expanduser()}" if workspace else ""
    text = str(exc)
    low = text.lower()
    first = text.splitlines()[0] if text else type(exc).__name__
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "no space left on device" in low:
        import re

        named = getattr(exc, "filename", None) or (re.search(r'file "([^"]+)"', text) or [None, None])[1]
        target = f" while writing in {Path(named).parent}" if named else (f" (workspace {workspace})" if workspace else "")
        return CurateError(f"The disk is full: no space left on device{target}",
                           "free space on that disk (or point CURATE_CHECKPOINTS and the workspace's tmp/ elsewhere), "
                           "then run the same command again: finished work is kept and nothing was half-imported")
    if "attached in read-only mode" in low:
        return CurateError(f"The workspace{where} is read-only here (its folder cannot be written), and this needs "
                           "to write to it",
                           "reading commands work (info, select, export or scores to a writable --out, search, "
                           "check); copy the workspace somewhere writable to change it")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or "read-only file system" in low or "permission denied" in low:
        return CurateError(f"Not allowed{where}: {first}",
                           "the file or folder is read-only or not yours; a workspace that cannot be written still "
                           "answers reading commands (info, select, export to a writable --out, scores, search)")
    if any(w in low for w in _DAMAGED) and ("duckdb" in type(exc).__module__.lower() or "duckdb" in low):
        return damaged_database(workspace, first)
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)) and exc.filename:
        return CurateError(f"Cannot use {exc.filename}: {exc.strerror or first}",
                           "choose a folder that exists or can be created, and that you can write to")
    if isinstance(exc, RecursionError):
        return CurateError("The input nests too deeply to read (a recipe or JSON value inside thousands of levels)",
                           "recipes are flat objects: see assets/recipes/*.json")
    return None


def damaged_database(workspace: str | Path | None, detail: str) -> CurateError:
    """The database file of a workspace cannot be read as it is: say which file and how to recover."""
    db = Path(workspace).expanduser() / "curate.duckdb" if workspace else Path("curate.duckdb")
    return CurateError(f"The workspace database {db} is damaged ({detail})",
                       "restore curate.duckdb from a backup, or make a new workspace and ingest the data again "
                       "(recipe files and exports are not affected); `python -m curate_core check --workspace DIR` "
                       "says what can still be read")
